"""Grid points that differ only in memory-layer fields that mean nothing for their design run once.

``memories=1,4 x landmark=mean_k,learned`` holds two points with one memory, which has no landmark:
``MemoryAttentionSpec.inert_fields`` says which fields a design ignores (setting one is a SpecError).
Such a point takes those fields at their defaults, and equal points are kept once.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable

from memkit.blocks.attention_spec import MemoryAttentionSpec, ignoring_inert_fields
from memkit.spec import SpecError


def distinct_points(space: list[tuple[str, str, list]], build: Callable[[dict], Any]) -> tuple[list[dict[str, Any]], str | None]:
    """The cross product of ``space`` (as ``grid_points``, before it validates; ``build(point)`` makes a
    point's spec), points that differ only in fields inert for their design merged -> (points, one line
    saying what merged, or None)."""
    paths = [p for _, p, _ in space]
    points, seen, merged, fields = [], set(), 0, []
    for combo in itertools.product(*[v for _, _, v in space]):
        point = dict(zip(paths, combo))
        ignored = []
        try:
            build(point)  # a point wrong in itself (top_k=2 with one memory) stays wrong: grid_points says so
            with ignoring_inert_fields() as ignored:
                build(point)
        except SpecError:
            pass
        defaults = MemoryAttentionSpec.model_fields
        point = {p: defaults[p.rsplit(".", 1)[-1]].default if p.rsplit(".", 1)[-1] in ignored else v
                 for p, v in point.items()}
        key = repr(sorted(point.items(), key=lambda item: item[0]))
        if key in seen:
            merged += 1
            fields += [f for f in ignored if f not in fields]
            continue
        seen.add(key)
        points.append(point)
    if not merged:
        return points, None
    return points, (f"grid: {merged} point(s) differ from another only in {', '.join(fields)}, which mean nothing "
                    f"for their memory design: each runs once")

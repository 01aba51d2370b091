"""Equal parameters: size each design's MLP so its model has the parameter count of a named design's.

``--match-params layer=infini`` (a ``--space`` key and one of its values): for every grid point whose value of
that key is another, ``model.intermediate_size`` is chosen so that the model's parameter count is the closest to
the same point's with the named value, within 2% (``TOLERANCE``; a design that cannot get that close is one clear
error). The count is the model the trial builds (``spec.model``, with the text data's vocabulary where the recipe
has one), so the table's ``params`` column shows what was matched.
"""

from __future__ import annotations

from typing import Any, Callable

from ablations.space import SpaceError, apply_overrides

TOLERANCE = 0.02
WIDTH = "model.intermediate_size"


def model_params(spec) -> int:
    """Parameters of the model a trial of ``spec`` builds (its ``model`` spec; a text recipe's vocabulary is its
    tokenizer's size)."""
    model = spec.model
    vocab = getattr(getattr(getattr(spec, "data", None), "tokenizer", None), "vocab_size", None)
    if vocab:
        model = model.with_overrides(vocab_size=vocab)
    return sum(p.numel() for p in model.build().parameters())


def matched_width(make: Callable[[int], Any], target: int, count: Callable[[Any], int], upper: int) -> tuple[int, int]:
    """The intermediate size in 1..``upper`` whose spec (``make(size)``) counts closest to ``target``: (size,
    count). Parameters grow with the size, so a bisection finds it."""
    lo, hi = 1, upper
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if count(make(mid)) <= target:
            lo = mid
        else:
            hi = mid
    return min(((s, count(make(s))) for s in (lo, hi)), key=lambda sc: abs(sc[1] - target))


def match_params(base, points: list[dict], path: str, reference: Any, key: str,
                 count: Callable[[Any], int] = model_params) -> list[dict]:
    """``points`` with ``model.intermediate_size`` set where ``points[i][path]`` is not ``reference``, so the
    model counts what the same point with ``reference`` counts (within ``TOLERANCE``)."""
    targets: dict[str, int] = {}
    out = []
    for point in points:
        if point.get(path) == reference or WIDTH in point:
            out.append(point)
            continue
        ref_point = {**point, path: reference}
        ref_key = repr(sorted((k, str(v)) for k, v in ref_point.items()))
        if ref_key not in targets:
            targets[ref_key] = count(apply_overrides(base, ref_point))
        target = targets[ref_key]
        start = apply_overrides(base, point).model.intermediate_size
        size, got = matched_width(lambda s: apply_overrides(base, {**point, WIDTH: s}), target, count,
                                  upper=max(4 * start, 8))
        if abs(got - target) > TOLERANCE * target:
            raise SpaceError(f"--match-params {key}={reference}: {key}={point.get(path)} counts {got:,} parameters at "
                             f"best (intermediate size {size}) against {target:,}; it cannot be matched within "
                             f"{TOLERANCE:.0%} by the MLP's width")
        out.append({**point, WIDTH: size})
    return out


def matched_points(given: str, space: list[tuple[str, str, list]], base, points: list[dict]) -> list[dict]:
    """``--match-params KEY=VALUE``: ``points`` sized to the design KEY=VALUE (KEY a --space key; VALUE one of its
    values, or another value whose point is counted and never run: ``--space design=gated_deltanet
    --match-params design=single`` sizes a rerun of one design against the reference it was matched to)."""
    key, eq, value = given.partition("=")
    keys = {k: (p, vs) for k, p, vs in space if k != "seed"}
    if not eq or key not in keys:
        raise SpaceError(f"--match-params {given!r}: give KEY=VALUE with KEY a --space key; given here: "
                         f"{', '.join(keys) or 'none'}")
    path, values = keys[key]
    reference = next((v for v in values if str(v) == value.strip()), None)
    if reference is None:
        reference = _parsed(value.strip())
        try:
            apply_overrides(base, {path: reference})
        except (SpaceError, ValueError) as e:
            raise SpaceError(f"--match-params {given!r}: {value!r} is not a value {key} can take ({e})") from None
    return match_params(base, points, path, reference, key)


def _parsed(text: str):
    """A value given on the command line: an int or a float where it reads as one, else the text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text

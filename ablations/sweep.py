"""The per-design learning-rate sweep (``--lr-sweep``): parse the rates, choose one per design.

Every design runs at every rate with the first seed; the rate is chosen on validation figures
only, and the remaining seeds repeat the chosen setting. ``choose_rates`` reads a trial through
``validation_view`` (its ``val_*`` figures), so a test figure cannot steer the choice. No Ray here.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from ablations.space import SpaceError, expand_range, parse_value


def parse_rates(text: str) -> list[float]:
    """'1e-3,3e-3,1e-2' or a range '1e-3:1e-2:log3' (or both, comma-separated) -> rates > 0."""
    key = "--lr-sweep"
    parts = text.split(",")
    if not text.strip() or any(not p.strip() for p in parts):
        raise SpaceError(f"{key}: empty value in {text!r}; expected rates like 1e-3,3e-3,1e-2 or 1e-3:1e-2:log3")
    rates = [v for p in parts for v in (expand_range(p, float, key) if ":" in p else [parse_value(p, float, key)])]
    bad = [r for r in rates if not (math.isfinite(r) and 0 < r <= 10)]
    if bad:
        raise SpaceError(f"{key}: learning rates must be in (0, 10], got {bad[0]:g}")
    if len(rates) < 2:
        raise SpaceError(f"{key}: give at least 2 rates to choose from (e.g. 1e-3,3e-3,1e-2); for one, use --space lr=")
    if len(set(rates)) != len(rates):
        raise SpaceError(f"{key}: repeated rate in {text!r}")
    return rates


def validation_view(trial: dict) -> dict[str, Any]:
    """Only the validation figures of a trial: all the choice may read."""
    return {k: trial[k] for k in trial if k.startswith("val_")}


def choose_rates(trials: list[dict], design_of: Callable[[dict], str], rate_of: Callable[[dict], float],
                 select_by: str, better: Callable = max) -> dict[str, float]:
    """{design: the rate whose trial has the best ``select_by`` (a val_* figure)} over finished
    trials. ``design_of`` and ``rate_of`` read a trial's point; figures are read only through
    ``validation_view``. Ties go to the smaller rate."""
    if not select_by.startswith("val_"):
        raise ValueError(f"the learning rate is chosen on validation figures (val_*), not {select_by!r}")
    best: dict[str, tuple[float, float]] = {}
    for t in trials:
        if t.get("status") != "ok":
            continue
        value = validation_view(t).get(select_by)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        design, rate = design_of(t), rate_of(t)
        key = (value if better is max else -value, -rate)
        if design not in best or key > best[design][0:2]:
            best[design] = (*key, rate)
    return {d: v[2] for d, v in best.items()}

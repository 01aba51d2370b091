"""Statistics over seeds (the grid's table and summary, the report recipes' claims); no numpy needed.

- ``bootstrap_ci``: 95% percentile bootstrap interval of a mean. Up to ``EXACT_MAX`` values it is
  exact (every resample, weighted by its multinomial probability), so it is deterministic and can be
  checked by hand; above that, 20,000 resamples from a fixed seed.
- ``paired_difference``: mean and interval of a − b over the seeds both have (same seeds, same data).
- ``solve_stats``: for a recall figure with a threshold, the solve rate, the mean over solving seeds,
  and whether the seeds split into two groups (bimodal) rather than spreading around one value.

With 3 seeds every resample mean lies between the smallest and the largest value, and the interval
is [min, max] whenever the values differ: a paired interval excludes 0 only when every seed agrees
on the sign.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections import Counter

EXACT_MAX = 8
RESAMPLES = 20_000


def _percentile(dist: list[tuple[float, float]], q: float) -> float:
    """Smallest value whose cumulative probability reaches q; dist: (value, probability) sorted."""
    acc = 0.0
    for v, p in dist:
        acc += p
        if acc >= q - 1e-12:
            return v
    return dist[-1][0]


def _resample_means(values: list[float]) -> list[tuple[float, float]]:
    n = len(values)
    if n <= EXACT_MAX:
        dist: dict[float, list] = {}
        for combo in itertools.combinations_with_replacement(range(n), n):
            # probability of this multiset of indices among the n^n ordered resamples
            ways = math.factorial(n)
            for c in Counter(combo).values():
                ways //= math.factorial(c)
            mean = sum(values[i] for i in combo) / n
            slot = dist.setdefault(round(mean, 12), [mean, 0.0])  # equal means merge despite float order
            slot[1] += ways / n**n
        return sorted((v, p) for v, p in dist.values())
    rng = random.Random(0)
    means = sorted(sum(rng.choice(values) for _ in range(n)) / n for _ in range(RESAMPLES))
    return [(m, 1 / RESAMPLES) for m in means]


def bootstrap_ci(values: list[float], level: float = 0.95) -> tuple[float, float] | None:
    """(low, high) percentile bootstrap interval of the mean of ``values``; None for no values.
    One value gives (v, v): no spread is known."""
    if not values:
        return None
    dist = _resample_means(list(values))
    tail = (1 - level) / 2
    return _percentile(dist, tail), _percentile(dist, 1 - tail)


def paired_difference(a: dict, b: dict, level: float = 0.95) -> dict | None:
    """a, b: {seed: value}. The difference a − b over the seeds both have:
    {"mean", "low", "high", "n", "excludes_zero"}; None when no seed is shared."""
    common = sorted(set(a) & set(b))
    if not common:
        return None
    diffs = [a[s] - b[s] for s in common]
    low, high = bootstrap_ci(diffs, level)
    return {"mean": statistics.fmean(diffs), "low": low, "high": high, "n": len(diffs),
            "excludes_zero": len(diffs) > 1 and (low > 0 or high < 0)}


def solve_stats(values: list[float], threshold: float, min_gap: float = 0.1) -> dict:
    """Solve rate (share of values >= threshold), mean over the solving ones (None if none), and
    ``bimodal``: the values straddle the threshold and the two groups' means lie further apart
    than ``min_gap`` and than twice the larger spread (std) inside a group."""
    solved = [v for v in values if v >= threshold]
    unsolved = [v for v in values if v < threshold]
    out = {"solve_rate": len(solved) / len(values) if values else None,
           "solved_mean": statistics.fmean(solved) if solved else None, "bimodal": False}
    if solved and unsolved:
        gap = statistics.fmean(solved) - statistics.fmean(unsolved)
        spread = max(statistics.pstdev(solved), statistics.pstdev(unsolved))
        out["bimodal"] = gap > max(min_gap, 2 * spread)
    return out

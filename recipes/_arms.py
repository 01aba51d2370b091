"""Report tables with the two arms side by side ("as run": the report's code; "careful": memkit's
defaults), and each report's headline claims checked in each arm: does the claim appear in the as-run
arm, and does it survive in the careful one?

Rows are the grid's aggregated rows (``<figure>_mean``, ``_std``, the 95% bootstrap interval
``_lo``/``_hi`` over seeds, ``seeds``, ``capped``, and ``_seeds``: each figure's value per seed). A
difference counts as real when the 95% bootstrap interval of the paired difference (same seeds, same
data) excludes 0; rows without per-seed values fall back to non-overlapping intervals. With one seed
nothing can be told from noise, and a point with trials cut off at the epoch cap while still improving
is not ranked; the verdict says which.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from memkit.eval.stats import paired_difference
from recipes._tables import fmt_pm, table

ARMS = ("as_run", "careful")
ARM_NAMES = {"as_run": "as run", "careful": "careful"}


def by_arm(rows: list[dict], key: str) -> dict[str, dict[str, dict]]:
    """{arm: {value of ``key``: row}}; rows without an arm count as careful."""
    out: dict[str, dict[str, dict]] = {arm: {} for arm in ARMS}
    for r in rows:
        out.setdefault(r.get("arm") or "careful", {})[str(r.get(key))] = r
    return out


def side_by_side(title: str, rows: list[dict], key: str, figures: list[tuple[str, str, int | str]]) -> str:
    """One line per value of ``key`` (a design, a landmark); per figure (label, metric, digits) a column
    for each arm present."""
    arms = by_arm(rows, key)
    present = [a for a in ARMS if arms[a]]
    values = list(dict.fromkeys(str(r.get(key)) for r in rows))
    cols = [key] + [f"{label} ({ARM_NAMES[a]})" for label, _, _ in figures for a in present]
    capped = any(r.get("capped") for r in rows)
    if capped:  # trials stopped at the epoch cap while still improving: their figures are not final
        cols += [f"capped ({ARM_NAMES[a]})" for a in present]
    cells = []
    for v in values:
        line = [v]
        for _, metric, digits in figures:
            for a in present:
                r = arms[a].get(v)
                line.append(fmt_pm([r], metric, digits)[0] if r else "")
        if capped:
            line += [f"{arms[a][v].get('capped', 0)}/{arms[a][v].get('seeds', 1)}" if v in arms[a] else "" for a in present]
        cells.append(line)
    return table(title, cols, cells)


def memory_use_table(rows: list[dict], key: str) -> str:
    """Is the memory used? Per design and arm: val PPL, its relative change with the memory read zeroed (gate as
    trained) and with the gate forced local, the gate and the memory's share of the layer's output
    (``memkit.eval.memory_use``). Empty when no row has the figures (no memory layer)."""
    if not any(r.get("ko_read_val_ppl_change_mean") is not None for r in rows):
        return ""
    columns = [("val PPL", "val_ppl", 1), ("read zeroed", "ko_read_val_ppl_change", "+.2%"),
               ("gate local", "ko_gate_val_ppl_change", "+.1%"), ("gate", "gate_mean", 2),
               ("memory share", "mem_share_mean", 3)]
    # a memory without a gate (context-KV) has no gate columns: left out rather than shown empty
    columns = [c for c in columns if any(r.get(f"{c[1]}_mean") is not None for r in rows)]
    if key == "arm":  # one design in two arms (report 004): one line, the arms side by side
        rows, key = [{**r, "design": "the preset"} for r in rows], "design"
    gated = any(metric == "gate_mean" for _, metric, _ in columns)
    return side_by_side(f"Is the memory used? (knock-outs of val PPL{', gate, memory share' if gated else ''})", rows,
                        key, columns)


def mean(r: dict | None, metric: str) -> float | None:
    return None if r is None else r.get(f"{metric}_mean")


def difference(a: dict | None, b: dict | None, metric: str) -> tuple[float, str] | None:
    """(a − b, whether the gap is real: "beyond noise" | "within noise" | "one seed" | "capped")."""
    ma, mb = mean(a, metric), mean(b, metric)
    if ma is None or mb is None:
        return None
    if a.get("capped") or b.get("capped"):
        return ma - mb, "capped"
    if min(a.get("seeds", 1) - a.get("failed", 0), b.get("seeds", 1) - b.get("failed", 0)) < 2:
        return ma - mb, "one seed"
    seeds_a, seeds_b = (x.get("_seeds", {}).get(metric) for x in (a, b))
    if seeds_a and seeds_b:
        paired = paired_difference(seeds_a, seeds_b)
        if paired and paired["n"] > 1:
            return ma - mb, "beyond noise" if paired["excludes_zero"] else "within noise"
    lo_a, hi_a, lo_b, hi_b = (x.get(f"{metric}_{e}") for x in (a, b) for e in ("lo", "hi"))
    if None in (lo_a, hi_a, lo_b, hi_b):  # rows without intervals: the sum of the seed stds
        apart = abs(ma - mb) > (a.get(f"{metric}_std") or 0.0) + (b.get(f"{metric}_std") or 0.0)
    else:
        apart = lo_a > hi_b or lo_b > hi_a
    return ma - mb, "beyond noise" if apart else "within noise"


@dataclass(frozen=True)
class Claim:
    """A report's headline: what it said, its own figures, and a check of one arm's rows
    (``{key value: row}`` -> (figures shown, verdict))."""

    text: str
    reported: str
    check: Callable[[dict[str, dict]], tuple[str, str]]


def claims_table(claims: list[Claim], rows: list[dict], key: str) -> str:
    """Each claim in each arm: the figures and whether it holds."""
    arms = by_arm(rows, key)
    present = [a for a in ARMS if arms[a]]
    cols = ["the report's claim", "the report's figures"] + [ARM_NAMES[a] for a in present]
    cells = []
    for c in claims:
        line = [c.text, c.reported]
        for a in present:
            try:
                shown, verdict = c.check(arms[a])
            except (KeyError, TypeError, ZeroDivisionError, StopIteration):  # a figure this run does not have
                shown, verdict = "", "n/a"
            line.append(f"{shown}: **{verdict}**" if shown else verdict)
        cells.append(line)
    return table("The report's claims, as run and careful", cols, cells)


def lower(rows: dict[str, dict], metric: str, better: str, worse: str, digits: int = 1) -> tuple[str, str]:
    """Claim "``better`` has a lower ``metric`` than ``worse``": the two means and the verdict."""
    d = difference(rows[better], rows[worse], metric)
    shown = f"{better} {mean(rows[better], metric):.{digits}f} vs {worse} {mean(rows[worse], metric):.{digits}f}"
    if d is None:
        return shown, "n/a"
    gap, noise = d
    if noise == "capped":
        return shown, "not ranked: trials capped while improving"
    if gap >= 0:
        return shown, "does not hold"
    return shown, "holds" if noise == "beyond noise" else f"holds, {noise}"


def relative_change(rows: dict[str, dict], metric: str, new: str, base: str) -> tuple[float, str]:
    """(100·(new − base)/base, noise verdict of the gap)."""
    gap, noise = difference(rows[new], rows[base], metric)
    return 100 * gap / mean(rows[base], metric), noise

"""Tables of aggregated grid rows: one rule for a cell and one markdown layout, used by the grid's results and the
report recipes' tables alike.

A row holds, per figure ``m``, ``m_mean`` and, over several seeds, ``m_lo``/``m_hi`` (the 95% bootstrap interval)
or ``m_std``; ``seeds`` is how many seeds it aggregates.
"""

from __future__ import annotations

from typing import Callable


def interval_cell(row: dict, metric: str, number: Callable[[float], str] = str) -> str:
    """'mean [lo, hi]' over several seeds; 'mean ± std' for a row that has a spread but no interval; the mean alone
    for one seed or a figure that is the same at every seed (a parameter count); '' when the row lacks it."""
    mean = row.get(f"{metric}_mean")
    if mean is None:
        return ""
    lo, hi, std = row.get(f"{metric}_lo"), row.get(f"{metric}_hi"), row.get(f"{metric}_std")
    if row.get("seeds", 1) > 1 and lo is not None and hi is not None:
        return f"{number(mean)} [{number(lo)}, {number(hi)}]" if lo != hi else number(mean)
    if row.get("seeds", 1) > 1 and std:
        return f"{number(mean)} ± {number(std).lstrip('+')}"
    return number(mean)


def markdown_table(cols: list[str], cells: list[list[str]]) -> str:
    """A markdown table; a '|' inside a cell becomes '/' so it cannot split the cell."""
    out = ["| " + " | ".join(c.replace("|", "/") for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    out += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in cells]
    return "\n".join(out)

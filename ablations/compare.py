"""One table from several finished grids: designs as rows, each grid's main figure as a column, with costs.

    python -m ablations.compare --grid "MQAR 64/4=runs/mqar-tiny-..." --grid "passkey=runs/passkey-tiny-..."
    python -m ablations.compare --grid "MQAR=DIR_A,DIR_B" --key design --reference single --out comparison.md

Each ``--grid NAME=DIR[,DIR...]`` is a column: the designs (the ``--key`` values) of the grids' ``results.json``,
a later folder's row replacing an earlier one's for the same design (a design rerun with a longer floor, say).
The cell is the figure's mean and 95% bootstrap interval over seeds (``--figure NAME=FIGURE``; by default the
grid's recipe's first figure); "capped k/n" marks seeds stopped at max_epochs while still improving. The costs
(``--costs``) come from the first column that has the design. Under the table, per column: the best design and
its difference from each other one, paired over the seeds both ran, and whether the 95% interval excludes 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ablations.plan import UsageError, check_recipe
from ablations.results import fmt
from memkit.eval.stats import paired_difference
from memkit.eval.tables import interval_cell, markdown_table

COSTS = ("params", "sec_per_epoch", "memory_bytes")
COST_NAMES = {"params": "params", "sec_per_epoch": "s/epoch", "memory_bytes": "state bytes/seq"}


@dataclass
class Column:
    """One column: its name, its figure, the rows by design and each design's values by seed."""

    name: str
    figure: str
    rows: dict[str, dict] = field(default_factory=dict)
    seeds: dict[str, dict[int, float]] = field(default_factory=dict)


def _grid_files(folder: Path) -> tuple[dict, dict]:
    results, grid = folder / "results.json", folder / "grid.json"
    if not results.is_file() or not grid.is_file():
        raise UsageError(f"--grid: {folder} holds no finished grid (results.json and grid.json); give a grid's folder")
    try:
        return json.loads(results.read_text()), json.loads(grid.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"--grid: {folder}'s results.json or grid.json is not a grid's JSON ({e})") from None


def read_column(spec: str, key: str, figures: dict[str, str]) -> Column:
    """``NAME=DIR[,DIR...]`` -> the column, its figure from ``figures`` or the first grid's recipe."""
    name, sep, dirs = spec.partition("=")
    if not sep or not name.strip() or not dirs.strip():
        raise UsageError(f"--grid: expected NAME=DIR[,DIR...], got {spec!r}")
    column = None
    for folder in (Path(d.strip()) for d in dirs.split(",") if d.strip()):
        results, grid = _grid_files(folder)
        if column is None:
            recipe = check_recipe(grid["recipe"])
            column = Column(name.strip(), figures.get(name.strip(), recipe.metrics[0]))
        seed_path = recipe.aliases.get("seed", "train.seed")
        for row in results["points"]:
            if key not in row:
                raise UsageError(f"--key {key}: {folder} has no such column; its keys: "
                                 f"{', '.join(k for k in row if '_' not in k and k not in ('seeds', 'failed', 'capped'))}")
            column.rows[str(row[key])] = row
            column.seeds[str(row[key])] = {}
        for t in results["trials"]:
            design, value = _design_of(t, key, column), t.get(column.figure)
            if design is not None and t.get("status") == "ok" and isinstance(value, (int, float)):
                column.seeds[design][t["point"].get(seed_path, 0)] = float(value)
    return column


def _design_of(trial: dict, key: str, column: Column) -> str | None:
    """The design (row) a trial belongs to: its value of ``key``, by alias or by dotted path."""
    point = trial["point"]
    for k, v in point.items():
        if k == key or k.rsplit(".", 1)[-1] == key:
            return str(v) if str(v) in column.rows else None
    return None


def _cell(row: dict | None, figure: str) -> str:
    if row is None:
        return ""
    cell = interval_cell(row, figure, fmt)
    ok = row.get("seeds", 0) - row.get("failed", 0)
    return cell + (f" (capped {row['capped']}/{ok})" if row.get("capped") else "")


def _number(v, key: str) -> str:
    if v is None:
        return ""
    return f"{round(v):,}" if key in ("params", "memory_bytes") else fmt(v)


def verdicts(column: Column, higher_is_better: bool = True) -> str:
    """The column's best design (highest mean; capped designs are not ranked) and the paired differences."""
    means = {d: r.get(f"{column.figure}_mean") for d, r in column.rows.items()
             if r.get(f"{column.figure}_mean") is not None and not r.get("capped")}
    if not means:
        return f"{column.name}: no design has {column.figure}."
    ranked = sorted(means, key=means.get, reverse=higher_is_better)
    best, parts = ranked[0], []
    for other in ranked[1:]:
        d = paired_difference(column.seeds.get(best, {}), column.seeds.get(other, {}))
        if d is None or d["n"] < 2:
            parts.append(f"{other} (under 2 shared seeds)")
        else:
            parts.append(f"{other} by {d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"
                         + ("" if d["excludes_zero"] else ", not told apart"))
    head = f"{column.name} ({column.figure}): {best} is best ({fmt(means[best])})"
    capped = [d for d, r in column.rows.items() if r.get("capped")]
    tail = f"; not ranked, capped while still improving: {', '.join(capped)}" if capped else ""
    return head + ("; ahead of " + "; ".join(parts) if parts else "; the only design ranked") + tail + "."


def comparison(columns: list[Column], costs: list[str], reference: str | None = None) -> str:
    """The markdown table and one verdict line per column."""
    designs = list(dict.fromkeys(d for c in columns for d in c.rows))
    if reference in designs:
        designs.remove(reference)
        designs.insert(0, reference)
    rates = any("lr" in r for c in columns for r in c.rows.values())  # a learning-rate sweep chose one per design
    head = ["design", *(f"{c.name}: {c.figure}" for c in columns), *(["lr"] if rates else []),
            *(COST_NAMES.get(k, k) for k in costs)]
    cells = []
    for d in designs:
        first = next((c.rows[d] for c in columns if d in c.rows), {})
        lr = [" / ".join(fmt(c.rows[d]["lr"]) if "lr" in c.rows.get(d, {}) else "-" for c in columns)] if rates else []
        cost = [_number(first.get(f"{k}_mean"), k) for k in costs]
        cells.append([d, *(_cell(c.rows.get(d), c.figure) for c in columns), *lr, *cost])
    return markdown_table(head, cells) + "\n\n" + "\n".join(f"- {verdicts(c)}" for c in columns) + "\n"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ablations.compare", description=__doc__.splitlines()[0])
    p.add_argument("--grid", action="append", required=True, metavar="NAME=DIR[,DIR...]", help="a column")
    p.add_argument("--key", default="design", help="the --space key whose values are the rows (default: design)")
    p.add_argument("--figure", action="append", default=[], metavar="NAME=FIGURE", help="a column's figure")
    p.add_argument("--costs", default=",".join(COSTS), help="cost figures, comma-separated")
    p.add_argument("--reference", default=None, help="the design shown first")
    p.add_argument("--out", default=None, help="also write the table to this file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        figures = {}
        for f in args.figure:
            name, sep, figure = f.partition("=")
            if not sep or not figure:
                raise UsageError(f"--figure: expected NAME=FIGURE, got {f!r}")
            figures[name.strip()] = figure.strip()
        columns = [read_column(g, args.key, figures) for g in args.grid]
        unknown = sorted(set(figures) - {c.name for c in columns})
        if unknown:
            raise UsageError(f"--figure: no --grid is named {', '.join(unknown)}")
        text = comparison(columns, [c for c in args.costs.split(",") if c], args.reference)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The report recipes' tables: cells of aggregated grid rows (``memkit.eval.tables``, the grid's own rule) laid out
as the reports laid theirs."""

from __future__ import annotations

from memkit.eval.metrics import bucket_name, position_buckets
from memkit.eval.tables import interval_cell, markdown_table


def fmt_pm(rows: list[dict], metric: str, digits: int | str = 1) -> list[str]:
    """One metric's cell for each aggregated grid row (``interval_cell``: 'mean [low, high]' over seeds);
    ``digits``: decimals, or a format spec for the numbers (e.g. "+,.0f")."""
    spec = f".{digits}f" if isinstance(digits, int) else digits
    return [interval_cell(r, metric, lambda v: f"{v:{spec}}") for r in rows]


def table(title: str, cols: list[str], cells: list[list[str]]) -> str:
    return f"### {title}\n\n" + markdown_table(cols, cells) + "\n"


def position_table(rows: list[dict], names: list[str], seq_len: int) -> str:
    """The reports' position-wise table: a row per bucket, a column per design."""
    cells = [[bucket_name(lo, hi)] + fmt_pm(rows, f"pos_{bucket_name(lo, hi)}") for lo, hi in position_buckets(seq_len)]
    return table("Position-wise PPL", ["Position"] + names, cells)


def fmt_count(rows: list[dict], metric: str) -> list[str]:
    """A count's mean per row with thousands separators (parameters): '658,948'."""
    return [f"{r[f'{metric}_mean']:,.0f}" if r.get(f"{metric}_mean") is not None else "" for r in rows]


def varying(rows, names) -> list[str]:
    """The keys of ``names`` whose value differs between rows: a key the grid was given one value of (a fixed
    override, ``--space data.num_train=48``) names no row apart."""
    return [k for k in names if len({str(r.get(k)) for r in rows}) > 1]


def labels_of(rows, names) -> list[str]:
    """Each row's label: its values of the keys that vary (of every key in ``names`` when none does)."""
    keys = varying(rows, names) or names
    return [", ".join(str(r.get(k)) for k in keys) for r in rows]


def recall_tables(rows, labels, spec) -> str:
    """Passkey by depth and MQAR by distance, each when the rows have it."""
    has = lambda prefix: any(k.startswith(prefix) and r[k] is not None for r in rows for k in r)  # noqa: E731
    out = []
    if has("passkey_"):
        depths = [round(d * 100) for d in spec.passkey.depths]
        out.append(table("Passkey retrieval by depth (share exact)", ["model"] + [f"{d}%" for d in depths],
                         [[lab] + [fmt_pm([r], f"passkey_{d}", 2)[0] for d in depths] for lab, r in zip(labels, rows)]))
    if has("mqar_"):
        dists = sorted({int(k[len("mqar_d"):-len("_mean")]) for r in rows for k in r
                        if k.startswith("mqar_d") and k.endswith("_mean") and r[k] is not None})
        out.append(table("MQAR by distance in segments (accuracy)", ["model"] + [f"{d} back" for d in dists],
                         [[lab] + [fmt_pm([r], f"mqar_d{d}", 2)[0] for d in dists] for lab, r in zip(labels, rows)]))
    return "\n".join(out)

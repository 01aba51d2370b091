"""The grid's results: rows from ``trials.jsonl`` -> per-point table (mean ± std over seeds),
CSV / JSON / Markdown, plots, and a summary that says which differences are within seed noise.
No Ray here."""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path
from typing import Any

# Which way is better, for the summary.
BETTER = {"recall_acc": max, "val_ppl": min, "params": min, "memory_bytes": min, "sec_per_epoch": min,
          "tokens_per_s": max, "trainable_share": min, "val_acc": max, "peak_mb": min, "selection_acc": max,
          "passkey_mean": max, "mqar_mean": max, "rev_forward_acc": max, "rev_reverse_acc": max,
          "rev_reports_backward_ppl": min}


def read_trials(path: Path) -> list[dict]:
    """The latest line per point (a resumed grid appends; a rerun replaces an earlier failure)."""
    latest: dict[str, dict] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                latest[json.dumps(row["point"], sort_keys=True)] = row
    return list(latest.values())


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def aggregate(trials: list[dict], keys: list[tuple[str, str]], seed_path: str | None, metrics: list[str]) -> list[dict]:
    """One row per point (seeds pooled): key values, n_ok, n_failed, and metric mean/std."""
    groups: dict[str, list[dict]] = {}
    for t in trials:
        label = json.dumps({p: t["point"].get(p) for _, p in keys if p != seed_path}, sort_keys=True)
        groups.setdefault(label, []).append(t)
    rows = []
    for members in groups.values():
        first = members[0]["point"]
        row = {k: first.get(p) for k, p in keys if p != seed_path}
        ok = [m for m in members if m["status"] == "ok"]
        row["seeds"] = len(members)
        row["failed"] = len(members) - len(ok)
        for m in metrics + ["train_seconds"]:
            vals = [v for v in (_num(t.get(m)) for t in ok) if v is not None]
            row[f"{m}_mean"] = statistics.fmean(vals) if vals else None
            row[f"{m}_std"] = statistics.stdev(vals) if len(vals) > 1 else (0.0 if vals else None)
        errors = sorted({m.get("error", "") for m in members if m["status"] != "ok"})
        row["error"] = "; ".join(e for e in errors if e)
        rows.append(row)
    rows.sort(key=lambda r: [str(r.get(k)) for k, p in keys if p != seed_path])
    return rows


def fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"
    return str(v)


def display_rows(rows: list[dict], key_names: list[str], metrics: list[str]) -> tuple[list[str], list[list[str]]]:
    """Columns and cells: keys, then 'mean ± std' per metric (just the mean with one seed)."""
    multi = any(r["seeds"] > 1 for r in rows)
    cols = key_names + metrics + ["trial_s", "seeds", "failed"]
    cells = []
    for r in rows:
        line = [fmt(r.get(k)) for k in key_names]
        for m in metrics + ["train_seconds"]:
            mean, std = r.get(f"{m}_mean"), r.get(f"{m}_std")
            line.append("" if mean is None else (f"{fmt(mean)} ± {fmt(std)}" if multi else fmt(mean)))
        line += [str(r["seeds"]), str(r["failed"])]
        cells.append(line)
    if any(r["error"] for r in rows):
        cols.append("error")
        for line, r in zip(cells, rows):
            line.append(r["error"][:120])
    return cols, cells


def text_table(cols: list[str], cells: list[list[str]]) -> str:
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.rjust(w) for v, w in zip(vals, widths))  # noqa: E731
    return "\n".join([line(cols), line(["-" * w for w in widths])] + [line(r) for r in cells])


def markdown_table(cols: list[str], cells: list[list[str]]) -> str:
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    out += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in cells]
    return "\n".join(out)


def summary(rows: list[dict], key_names: list[str], metrics: list[str]) -> list[str]:
    """Best point per metric, and whether the runner-up is within seed noise of it."""
    lines = []
    key_names = [k for k in key_names if len({str(r.get(k)) for r in rows}) > 1] or key_names[:1]  # name what varies
    for m in metrics:
        better = BETTER.get(m)
        scored = [r for r in rows if r.get(f"{m}_mean") is not None]
        if better is None or len(scored) < 1:
            continue
        ranked = sorted(scored, key=lambda r: r[f"{m}_mean"], reverse=better is max)
        best = ranked[0]
        name = ", ".join(f"{k}={best.get(k)}" for k in key_names) or "the only point"
        text = f"{m}: best {fmt(best[f'{m}_mean'])} at {name}"
        if len(ranked) > 1:
            second = ranked[1]
            gap = abs(best[f"{m}_mean"] - second[f"{m}_mean"])
            noise = (best[f"{m}_std"] or 0.0) + (second[f"{m}_std"] or 0.0)
            other = ", ".join(f"{k}={second.get(k)}" for k in key_names)
            if gap == 0:
                text += f"; tied with {other}"
            elif min(best["seeds"] - best["failed"], second["seeds"] - second["failed"]) < 2:
                text += f"; runner-up {other} ({fmt(second[f'{m}_mean'])}): one seed, noise unknown (use --seeds)"
            elif gap <= noise:
                text += f"; runner-up {other} is within seed noise (gap {fmt(gap)} <= std sum {fmt(noise)})"
            else:
                text += f"; ahead of {other} by {fmt(gap)} (std sum {fmt(noise)})"
        lines.append(text)
    return lines


def write_all(out: Path, trials: list[dict], rows: list[dict], key_names: list[str], metrics: list[str]) -> list[str]:
    """results.csv (per point), results_raw.csv (per trial), results.json, results.md, summary, plots."""
    cols, cells = display_rows(rows, key_names, metrics)
    flat_cols = list(rows[0].keys()) if rows else []
    with (out / "results.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=flat_cols)
        w.writeheader()
        w.writerows(rows)
    raw_cols = ["trial", "status", "error"] + metrics + ["train_seconds"]
    with (out / "results_raw.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["point"] + raw_cols, extrasaction="ignore")
        w.writeheader()
        for t in trials:
            w.writerow({**{c: t.get(c) for c in raw_cols}, "point": json.dumps(t["point"], sort_keys=True)})
    (out / "results.json").write_text(json.dumps({"points": rows, "trials": trials}, indent=2, default=str))
    lines = summary(rows, key_names, metrics)
    (out / "results.md").write_text(markdown_table(cols, cells) + "\n\n" + "\n".join(f"- {s}" for s in lines) + "\n")
    plot(out, trials, rows, key_names, metrics)
    return lines


def plot(out: Path, trials: list[dict], rows: list[dict], key_names: list[str], metrics: list[str]) -> None:
    """metric_vs_<key>.png (mean ± std error bars, one line per value of the other keys) and
    learning_curves.png (val figures by epoch, one line per trial)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [m for m in metrics if any(r.get(f"{m}_mean") is not None for r in rows)][:4]
    varying = [k for k in key_names if len({str(r.get(k)) for r in rows}) > 1]
    for key in varying:
        values = sorted({str(r.get(key)) for r in rows})
        others = [k for k in varying if k != key]
        fig, axes = plt.subplots(1, max(len(shown), 1), figsize=(4 * max(len(shown), 1), 3.2), squeeze=False)
        for ax, m in zip(axes[0], shown):
            lines: dict[str, list] = {}
            for r in rows:
                label = ", ".join(f"{k}={r.get(k)}" for k in others) or m
                lines.setdefault(label, []).append(r)
            for label, rs in lines.items():
                rs = [r for r in rs if r.get(f"{m}_mean") is not None]
                xs = [values.index(str(r.get(key))) for r in rs]
                ax.errorbar(xs, [r[f"{m}_mean"] for r in rs], yerr=[r[f"{m}_std"] or 0 for r in rs],
                            marker="o", capsize=3, label=label)
            ax.set_xticks(range(len(values)), values)
            ax.set_xlabel(key)
            ax.set_title(m)
        if len(rows) > 1 and others:
            axes[0][0].legend(fontsize=6)
        fig.tight_layout()
        fig.savefig(out / f"metric_vs_{key}.png", dpi=80)
        plt.close(fig)
    curves = [t for t in trials if t.get("history")]
    if curves:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
        for t in curves:
            epochs = [h["epoch"] for h in t["history"]]
            for ax, m in zip(axes, ("val_acc", "val_ppl")):
                ax.plot(epochs, [h.get(m) for h in t["history"]], marker=".", label=t["trial"])
        for ax, m in zip(axes, ("val_acc", "val_ppl")):
            ax.set_xlabel("epoch")
            ax.set_title(m)
        if len(curves) <= 12:
            axes[0].legend(fontsize=6)
        fig.tight_layout()
        fig.savefig(out / "learning_curves.png", dpi=80)
        plt.close(fig)

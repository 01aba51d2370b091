"""The grid's results: rows from ``trials.jsonl`` -> per-point table (mean and 95% bootstrap
interval over seeds, solve rates, capped trials), CSV / JSON / Markdown, plots, capacity curves,
and a summary that names the winner per figure and whether the paired difference over the same
seeds excludes 0. No Ray here."""

from __future__ import annotations

import csv
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memkit.eval.stats import bootstrap_ci, paired_difference, solve_stats
from memkit.eval.tables import interval_cell, markdown_table

# Which way is better, for the summary.
BETTER = {"recall_acc": max, "val_ppl": min, "params": min, "memory_bytes": min, "sec_per_epoch": min,
          "tokens_per_s": max, "trainable_share": min, "val_acc": max, "peak_mb": min, "selection_acc": max,
          "passkey_mean": max, "mqar_mean": max, "rev_forward_acc": max, "rev_reverse_acc": max,
          "rev_reports_backward_ppl": min}
# what a design costs, not what it reaches: known whether or not its training was cut at the cap
COSTS = {"params", "memory_bytes", "sec_per_epoch", "tokens_per_s", "trainable_share", "peak_mb"}


# Ray's own fields in a trial's result: not figures of the trial
RAY_KEYS = {"timestamp", "done", "training_iteration", "time_this_iter_s", "time_total_s", "pid", "time_since_restore",
            "iterations_since_restore", "final", "epoch", "seconds", "train_loss", "val_loss", "train_ppl", "best", "lr"}
# what each epoch line shows, and what a trial's history keeps
EPOCH_KEYS = ("epoch", "train_ppl", "val_ppl", "val_acc", "lr", "seconds")


def is_figure(key: str, value) -> bool:
    """A number a trial returned about itself (not Ray's bookkeeping nor the per-epoch fields)."""
    return key not in RAY_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool)


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


def point_label(point: dict, keys: list[tuple[str, str]], seed_path: str | None) -> str:
    """The design a trial belongs to: its point without the seed."""
    return json.dumps({p: point.get(p) for _, p in keys if p != seed_path}, sort_keys=True)


def seed_values(trials: list[dict], keys: list[tuple[str, str]], seed_path: str | None,
                metric: str) -> dict[str, dict]:
    """{design label: {seed: value}} of one figure over the finished trials (for paired comparisons)."""
    out: dict[str, dict] = {}
    for t in trials:
        v = _num(t.get(metric))
        if t["status"] == "ok" and v is not None:
            seed = t["point"].get(seed_path) if seed_path else 0
            out.setdefault(point_label(t["point"], keys, seed_path), {})[seed] = v
    return out


def aggregate(trials: list[dict], keys: list[tuple[str, str]], seed_path: str | None, metrics: list[str],
              recall: list[str] = ()) -> list[dict]:
    """One row per point (seeds pooled): key values, seeds, failed, capped (trials stopped at
    max_epochs still improving), and per figure its mean, std, 95% bootstrap interval (``_lo``,
    ``_hi``) and, for never-reached times (inf), ``_never``. For ``recall`` figures, when the trials
    report their threshold (``solve_at``): ``_solve_rate``, ``_solved_mean`` and ``_bimodal``."""
    groups: dict[str, list[dict]] = {}
    for t in trials:
        groups.setdefault(point_label(t["point"], keys, seed_path), []).append(t)
    rows = []
    for label, members in groups.items():
        first = members[0]["point"]
        row = {"_design": label, **{k: first.get(p) for k, p in keys if p != seed_path}}
        ok = [m for m in members if m["status"] == "ok"]
        row["seeds"] = len(members)
        row["failed"] = len(members) - len(ok)
        row["capped"] = sum(bool(m.get("capped")) for m in ok)
        for m in metrics + ["train_seconds"]:
            raw = [t.get(m) for t in ok]
            vals = [v for v in (_num(r) for r in raw) if v is not None]
            row[f"{m}_mean"] = statistics.fmean(vals) if vals else None
            row[f"{m}_std"] = statistics.stdev(vals) if len(vals) > 1 else (0.0 if vals else None)
            ci = bootstrap_ci(vals)
            row[f"{m}_lo"], row[f"{m}_hi"] = ci if ci else (None, None)
            never = sum(isinstance(r, float) and math.isinf(r) for r in raw)
            if never:
                row[f"{m}_never"] = never
            thresholds = {t.get("solve_at") for t in ok} - {None}
            if m in recall and vals and len(thresholds) == 1:
                stats = solve_stats(vals, thresholds.pop())
                row.update({f"{m}_{k}": v for k, v in stats.items()})
        errors = sorted({m.get("error", "") for m in members if m["status"] != "ok"})
        row["error"] = "; ".join(e for e in errors if e)
        rows.append(row)
    rows.sort(key=lambda r: [_sort_key(r.get(k)) for k, p in keys if p != seed_path])
    return rows


def _sort_key(v: Any):
    """Numbers in numeric order (pairs=16 before 128), then everything else as text."""
    return (0, float(v), "") if _num(v) is not None else (1, 0.0, str(v))


def fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "never" if v > 0 else "-inf"
        if abs(v) >= 1e6:
            return f"{v / 1e6:.4g}M"
        if abs(v) >= 1e4:
            return f"{v:.0f}"
        return f"{v:.4g}"
    return str(v)


def _cell(r: dict, m: str, multi: bool) -> str:
    """``interval_cell`` (95% bootstrap interval over seeds; just the mean with one seed); times never reached by
    some seeds say so ('never' when no seed reached them)."""
    mean, never = r.get(f"{m}_mean"), r.get(f"{m}_never", 0)
    if mean is None:
        return "never" if never else ""
    text = interval_cell(r if multi else {**r, "seeds": 1}, m, fmt)
    return text + (f" ({never} never)" if never else "")


def _longer(stuck: list[dict]) -> str:
    """What lets plateaued points train longer: the cap when it stopped every one of their seeds, else min_epochs."""
    if all(r["capped"] == r["seeds"] - r["failed"] for r in stuck):
        return "raise the cap (max_epochs, alias epochs): they stopped there"
    return "raise min_epochs"


def display_rows(rows: list[dict], key_names: list[str], metrics: list[str],
                 chosen: str | None = None) -> tuple[list[str], list[list[str]]]:
    """Columns and cells: keys, the chosen learning rate (``chosen``: its column name, with a
    learning-rate sweep), then per figure 'mean [95% interval]'; for recall figures with a threshold
    the solve rate and the mean over solving seeds ('!' marks bimodal seeds); capped trials."""
    multi = any(r["seeds"] > 1 for r in rows)
    shown = [m for m in metrics if any(r.get(f"{m}_mean") is not None or r.get(f"{m}_never") for r in rows)]
    solved = [m for m in shown if any(r.get(f"{m}_solve_rate") is not None for r in rows)]
    # a figure named as a swept key (``epochs``: the epochs run, beside the cap swept as ``epochs``) is told apart
    cols = key_names + ([chosen] if chosen else []) + [f"{m} run" if m in key_names else m for m in shown]
    cols += [f"{m} solved" for m in solved] + ["capped", "trial_s", "seeds", "failed"]
    cells = []
    for r in rows:
        line = [fmt(r.get(k)) for k in key_names] + ([fmt(r.get(chosen))] if chosen else [])
        line += [_cell(r, m, multi) for m in shown]
        for m in solved:
            rate, mean = r.get(f"{m}_solve_rate"), r.get(f"{m}_solved_mean")
            n = r["seeds"] - r["failed"]
            text = "" if rate is None else f"{round(rate * n)}/{n}" + (f" ({fmt(mean)})" if mean is not None else "")
            line.append(text + (" !" if r.get(f"{m}_bimodal") else ""))
        line += [f"{r['capped']}/{r['seeds'] - r['failed']}", _cell(r, "train_seconds", False), str(r["seeds"]),
                 str(r["failed"])]
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


def _name(r: dict, key_names: list[str]) -> str:
    return ", ".join(f"{k}={r.get(k)}" for k in key_names) or "the only point"


def summary(rows: list[dict], key_names: list[str], metrics: list[str], values: dict[str, dict[str, dict]] | None = None,
            recall: list[str] = ()) -> list[str]:
    """One sentence per figure: the best point (mean, 95% interval) and, against each other point,
    the paired difference over the seeds both ran (same seeds, same data) and whether its 95%
    interval excludes 0. Points with capped trials are named, not ranked. Then a warning per
    point whose seeds are bimodal. ``values``: {figure: {design label: {seed: value}}}."""
    values = values or {}
    lines, warnings = [], []
    key_names = [k for k in key_names if len({str(r.get(k)) for r in rows}) > 1] or key_names[:1]  # name what varies
    for m in metrics:
        better = BETTER.get(m)
        scored = [r for r in rows if r.get(f"{m}_mean") is not None]
        if better is None or not scored:
            continue
        capped = [] if m in COSTS else [r for r in scored if r["capped"]]
        ranked = sorted((r for r in scored if r not in capped), key=lambda r: r[f"{m}_mean"], reverse=better is max)
        parts = []
        if len(ranked) > 1 and len({r[f"{m}_mean"] for r in ranked}) == 1:
            parts.append(f"{m}: the same at every point ({fmt(ranked[0][f'{m}_mean'])})")
        elif ranked:
            best = ranked[0]
            n = best["seeds"] - best["failed"]
            interval = f", 95% CI {fmt(best[f'{m}_lo'])} to {fmt(best[f'{m}_hi'])}" if n > 1 else ""
            parts.append(f"{m}: {_name(best, key_names)} is best ({fmt(best[f'{m}_mean'])}{interval}, {n} seed{'s' * (n != 1)})")
            per_seed = values.get(m, {})
            for other in ranked[1:]:
                d = paired_difference(per_seed.get(best["_design"], {}), per_seed.get(other["_design"], {}))
                # the signed difference reads with the direction that is better for this figure
                head = f"{'ahead of' if better is max else 'below'} {_name(other, key_names)} ({fmt(other[f'{m}_mean'])})"
                if d is None or d["n"] < 2:
                    parts.append(f"{head}, but with under 2 shared seeds no interval can be given (use --seeds)")
                elif d["excludes_zero"]:
                    parts.append(f"{head} by {d['mean']:+.3g} paired over {d['n']} seeds (95% CI {d['low']:+.3g} to "
                                 f"{d['high']:+.3g}, excludes 0: a real difference)")
                else:
                    parts.append(f"{head} by {d['mean']:+.3g} paired over {d['n']} seeds (95% CI {d['low']:+.3g} to "
                                 f"{d['high']:+.3g}, includes 0: these seeds cannot tell them apart)")
        if capped:
            names = "; ".join(f"{_name(r, key_names)} ({r['capped']} of {r['seeds'] - r['failed']} seeds)" for r in capped)
            parts.append(("" if ranked else f"{m}: ") + f"not ranked, still improving at max_epochs (capped): {names}")
        lines.append("; ".join(parts) + ".")
        for r in scored:
            if r.get(f"{m}_bimodal"):
                n = r["seeds"] - r["failed"]
                seeds = ", ".join(fmt(v) for v in sorted(values.get(m, {}).get(r["_design"], {}).values()))
                warnings.append(f"warning: {m} at {_name(r, key_names)} is bimodal across seeds ({seeds}; solved by "
                                f"{round(r[f'{m}_solve_rate'] * n)}/{n}): read its solve rate, not its mean.")
    stuck = [r for r in rows if r["seeds"] - r["failed"] and r.get("epochs_to_50_never") == r["seeds"] - r["failed"]]
    if stuck:
        warnings.append("warning: never left chance (every seed still on the plateau when it stopped, epochs_to_50 "
                        f"never): {'; '.join(_name(r, key_names) for r in stuck)}: a plateau, not what the design can "
                        f"reach; {_longer(stuck)} to tell.")
    return lines + warnings


@dataclass
class Layout:
    """What the table shows: the swept keys (``keys``), figures (``metrics``), recall figures with a
    solve threshold (``recall``), the chosen-learning-rate column (``lr_column``, with a sweep),
    lines printed above the table (``notes``), per-seed values for paired comparisons (``values``:
    {figure: {design: {seed: value}}}) and the key of a capacity curve (``curve``)."""

    keys: list[str]
    metrics: list[str]
    recall: list[str] = field(default_factory=list)
    lr_column: str | None = None
    notes: list[str] = field(default_factory=list)
    values: dict = field(default_factory=dict)
    curve: str | None = None


def write_all(out: Path, trials: list[dict], rows: list[dict], layout: Layout) -> list[str]:
    """results.csv (per point), results_raw.csv (per trial), results.json, results.md (notes,
    table, summary), plots, and ``curve_<key>.csv/png`` with a curve. Returns the summary lines."""
    cols, cells = display_rows(rows, layout.keys, layout.metrics, layout.lr_column)
    flat_cols = [c for c in (rows[0].keys() if rows else []) if not c.startswith("_")]
    flat_cols += sorted({c for r in rows for c in r if not c.startswith("_")} - set(flat_cols))
    with (out / "results.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=flat_cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    raw_cols = ["trial", "status", "error", "capped", "stop"] + layout.metrics + ["train_seconds", "node", "checkpoint"]
    with (out / "results_raw.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["point"] + raw_cols, extrasaction="ignore")
        w.writeheader()
        for t in trials:
            w.writerow({**{c: t.get(c) for c in raw_cols}, "point": json.dumps(t["point"], sort_keys=True)})
    public = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    (out / "results.json").write_text(json.dumps({"points": public, "trials": trials}, indent=2, default=str))
    lines = summary(rows, layout.keys, layout.metrics, layout.values, layout.recall)
    notes = "".join(f"{n}\n\n" for n in layout.notes)
    (out / "results.md").write_text(notes + markdown_table(cols, cells) + "\n\n" + "\n".join(f"- {s}" for s in lines) + "\n")
    plot(out, trials, rows, layout.keys, layout.metrics)
    if layout.curve:
        metric = next((m for m in layout.recall + layout.metrics if any(r.get(f"{m}_mean") is not None for r in rows)),
                      None)
        if metric:
            curve(out, rows, layout.curve, metric, layout.keys)
    return lines


def curve(out: Path, rows: list[dict], x_key: str, metric: str, key_names: list[str]) -> Path:
    """``curve_<x_key>.csv`` (one row per (design, x): mean, 95% interval, solve rate, seeds, capped seeds,
    seeds that never left chance (``epochs_to_50`` never))
    and ``curve_<x_key>.png``: ``metric`` against x_key, one line per design (the other keys),
    error bars the 95% intervals over seeds. Returns the PNG's path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    others = [k for k in key_names if k != x_key and len({str(r.get(k)) for r in rows}) > 1]  # the designs
    lines: dict[str, list[dict]] = {}
    for r in rows:
        lines.setdefault(", ".join(f"{k}={r.get(k)}" for k in others) or metric, []).append(r)
    cols = ["design", x_key, "mean", "ci_low", "ci_high", "solve_rate", "solved_mean", "seeds", "capped",
            "never_left_chance"]
    with (out / f"curve_{x_key}.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for design, rs in lines.items():
            for r in sorted(rs, key=lambda r: _sort_key(r.get(x_key))):
                w.writerow([design, r.get(x_key), r.get(f"{metric}_mean"), r.get(f"{metric}_lo"), r.get(f"{metric}_hi"),
                            r.get(f"{metric}_solve_rate"), r.get(f"{metric}_solved_mean"), r["seeds"] - r["failed"],
                            r["capped"], r.get("epochs_to_50_never", 0)])
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for design, rs in lines.items():
        rs = sorted((r for r in rs if r.get(f"{metric}_mean") is not None), key=lambda r: _sort_key(r.get(x_key)))
        xs = [float(r[x_key]) for r in rs]
        ys = [r[f"{metric}_mean"] for r in rs]
        err = [[max(0.0, y - r[f"{metric}_lo"]) for y, r in zip(ys, rs)],
               [max(0.0, r[f"{metric}_hi"] - y) for y, r in zip(ys, rs)]]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=design)
        for x, y, r in zip(xs, ys, rs):  # neither is a converged capacity figure: say so on the plot
            n = r["seeds"] - r["failed"]
            stuck = bool(n) and r.get("epochs_to_50_never") == n
            note = " ".join(w for w, on in (("never left chance", stuck), ("capped", r["capped"])) if on)
            if note:
                ax.annotate(note, (x, y), fontsize=6, textcoords="offset points", xytext=(3, 3))
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted({float(r[x_key]) for r in rows}), [fmt(v) for v in sorted({r[x_key] for r in rows})])
    ax.set_xlabel(x_key)
    ax.set_ylabel(f"{metric} (mean, 95% CI over seeds)")
    ax.set_title(f"{metric} against {x_key}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / f"curve_{x_key}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot(out: Path, trials: list[dict], rows: list[dict], key_names: list[str], metrics: list[str]) -> None:
    """metric_vs_<key>.png (mean with 95% interval error bars, one line per value of the other
    keys) and learning_curves.png (val figures by epoch, one line per trial)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [m for m in metrics if any(r.get(f"{m}_mean") is not None for r in rows)][:4]
    varying = [k for k in key_names if len({str(r.get(k)) for r in rows}) > 1]
    for key in varying:
        values = [str(v) for v in sorted({r.get(key) for r in rows}, key=_sort_key)]
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
                ys = [r[f"{m}_mean"] for r in rs]
                err = [[max(0.0, y - r[f"{m}_lo"]) for y, r in zip(ys, rs)],
                       [max(0.0, r[f"{m}_hi"] - y) for y, r in zip(ys, rs)]]
                ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=label)
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

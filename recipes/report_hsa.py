"""Recipe for seed report 000: the HSA landmark (ChunkEncoder) vs memory_norm.

    python -m ablations.grid --recipe report_hsa                 # tiny, 2 landmarks x 3 seeds
    python -m ablations.grid --recipe report_hsa --preset report --gpus-per-trial 1

Same trial as ``report_landmarks`` (4 memories on the four-domain text, selection accuracy, MQAR
by distance); the table is report 000's: perplexity, parameters, time per epoch, and the
differences of HSA over memory_norm.
"""

from __future__ import annotations

from recipes._shared import cli
from recipes._text import fmt_count, fmt_pm, labels_of, recall_tables, table
from recipes.report_landmarks import ALIASES, PRESETS, SPEC, preflight, run  # noqa: F401  (the grid reads them here)

SPACE = ["landmark=hsa,memory_norm"]
METRICS = ["val_ppl", "best_epoch", "params", "sec_per_epoch", "selection_acc", "mqar_mean"]


def report(rows: list[dict], names: list[str], spec) -> str:
    labels = labels_of(rows, names)
    params = fmt_count(rows, "params")
    out = [table("Performance", ["landmark", "Best PPL", "Best Epoch", "Params", "s/epoch", "selection acc", "MQAR"],
                 [list(c) for c in zip(labels, fmt_pm(rows, "val_ppl"), fmt_pm(rows, "best_epoch"), params,
                                       fmt_pm(rows, "sec_per_epoch"), fmt_pm(rows, "selection_acc", 2),
                                       fmt_pm(rows, "mqar_mean", 2))])]
    by = {r.get("landmark"): r for r in rows}
    hsa, norm = by.get("hsa"), by.get("memory_norm")
    if hsa and norm and all(x.get(f"{m}_mean") for x in (hsa, norm) for m in ("val_ppl", "params", "sec_per_epoch")):
        d_ppl = hsa["val_ppl_mean"] - norm["val_ppl_mean"]
        noise = (hsa["val_ppl_std"] or 0) + (norm["val_ppl_std"] or 0)
        verdict = "within seed noise" if abs(d_ppl) <= noise else "beyond seed noise"
        d_par = hsa["params_mean"] - norm["params_mean"]
        cells = [["PPL difference", f"{d_ppl:+.2f} ({100 * d_ppl / norm['val_ppl_mean']:+.1f}%, {verdict}: std sum {noise:.2f})"],
                 ["extra parameters", f"{d_par:+,.0f} ({100 * d_par / norm['params_mean']:+.1f}%)"],
                 ["time per epoch", f"{100 * (hsa['sec_per_epoch_mean'] / norm['sec_per_epoch_mean'] - 1):+.0f}%"]]
        out.append(table("HSA vs memory_norm", ["figure", "HSA vs memory_norm"], cells))
    out.append(recall_tables(rows, labels, spec))
    return "\n".join(out)


def main(argv=None) -> None:
    cli(__doc__, PRESETS, run, argv)


if __name__ == "__main__":
    main()

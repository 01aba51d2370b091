"""Recipe for seed report 001: landmark memory_norm vs learned vs mean_k, with memory selection accuracy.

    python -m ablations.grid --recipe report_landmarks                 # tiny, 3 landmarks x 3 seeds
    python -m ablations.grid --recipe report_landmarks --space landmark=memory_norm,learned,mean_k,hsa
    python -m ablations.grid --recipe report_landmarks --preset report --gpus-per-trial 1

Each trial trains a 4-memory model on the four-domain Debian text, then writes each domain's
training text into its own memory (``MemoryBuilder``) and asks which memory held-out text of each
domain selects (chance 1/4), the test the report proposed; MQAR by distance shows where the
landmarks differ when perplexity does not.
"""

from __future__ import annotations

from typing import Callable

from recipes._shared import cli
from recipes._text import (  # noqa: F401  (preflight: the grid calls it)
    TextTrialSpec,
    fmt_count,
    fmt_pm,
    labels_of,
    preflight,
    recall_tables,
    report_parts,
    run_text,
    table,
    text_aliases,
    tiny_parts,
)

ALIASES = text_aliases()
SPACE = ["landmark=memory_norm,learned,mean_k"]
METRICS = ["val_ppl", "best_epoch", "params", "selection_acc", "mqar_mean", "sec_per_epoch"]


def tiny() -> TextTrialSpec:
    """Minutes per trial on one CPU core (``tiny_parts``): selection accuracy and MQAR."""
    return TextTrialSpec.create(**tiny_parts(), evals=["selection", "mqar"], selection=dict(source_tokens=1024, queries=25))


def report() -> TextTrialSpec:
    """The report's settings (``report_parts``, patience 5). Meant for a GPU."""
    return TextTrialSpec.create(**report_parts(patience=5), evals=["selection", "mqar"],
                                selection=dict(source_tokens=4096, queries=50))


PRESETS: dict[str, Callable[[], TextTrialSpec]] = {"tiny": tiny, "report": report}
SPEC = TextTrialSpec


def run(spec: TextTrialSpec, on_epoch=None, progress=None) -> dict:
    return run_text(spec, on_epoch, progress)


def report(rows: list[dict], names: list[str], spec: TextTrialSpec) -> str:
    """Report 001's tables: perplexity and parameters, then selection accuracy per domain."""
    labels = labels_of(rows, names)
    params = fmt_count(rows, "params")
    out = [table("Landmark comparison", ["Landmark Type", "Best PPL", "Epoch", "Params"],
                 [list(c) for c in zip(labels, fmt_pm(rows, "val_ppl"), fmt_pm(rows, "best_epoch"), params)])]
    # the domains are whatever the data's files were (the Debian corpus by default)
    domains = sorted({k[len("selection_"):-len("_mean")] for r in rows for k in r
                      if k.startswith("selection_") and k.endswith("_mean") and r[k] is not None}
                     - {"acc", "chance"})
    if domains:  # none with a single domain (one file): nothing to tell apart
        cells = [[d] + fmt_pm(rows, f"selection_{d}", 2) for d in domains]
        cells.append(["**all**"] + fmt_pm(rows, "selection_acc", 2))
        chance = next((r["selection_chance_mean"] for r in rows if r.get("selection_chance_mean")), None)
        title = "Memory selection accuracy (one domain per memory" + (f", chance {chance:.2f})" if chance else ")")
        out.append(table(title, ["domain"] + labels, cells))
    out.append(recall_tables(rows, labels, spec))
    return "\n".join(out)


def main(argv=None) -> None:
    cli(__doc__, PRESETS, run, argv)


if __name__ == "__main__":
    main()

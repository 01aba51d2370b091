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
    fmt_pm,
    labels_of,
    preflight,
    recall_tables,
    run_text,
    table,
    text_aliases,
)

ALIASES = text_aliases()
SPACE = ["landmark=memory_norm,learned,mean_k"]
METRICS = ["val_ppl", "best_epoch", "params", "selection_acc", "mqar_mean", "sec_per_epoch"]


def tiny() -> TextTrialSpec:
    """Minutes per trial on one CPU core."""
    return TextTrialSpec.create(
        model=dict(hidden_size=128, num_layers=2, num_heads=4, intermediate_size=512, max_position_embeddings=512,
                   local_window="full", memory=dict(segment_len=32, num_memories=4, update="delta", key_shift=True)),
        data=dict(source="debian", max_chars=400_000, seq_len=128, num_train=1500, num_val=200,
                  tokenizer=dict(kind="bpe", vocab_size=1024)),
        train=dict(lr=3e-3, batch_size=32, max_epochs=4, patience=2),
        evals=["selection", "mqar"],
        selection=dict(source_tokens=1024, queries=25),
        mqar=dict(write_segments=3, query_segments=1, num_groups=4, keys_per_group=16, num_values=16,
                  num_train=1024, num_val=128),
        recall_train=dict(lr=3e-3, batch_size=32, max_epochs=5, patience=2),
    )


def report() -> TextTrialSpec:
    """The report's settings: Pythia-70M shape, 5,000 samples of 256 tokens, 4 memories, up to 30
    epochs, patience 5, lr 1e-4. Meant for a GPU."""
    return TextTrialSpec.create(
        model=dict(hidden_size=512, num_layers=6, num_heads=8, intermediate_size=2048, max_position_embeddings=2048,
                   local_window="full", memory=dict(segment_len=64, num_memories=4, update="delta", key_shift=True,
                                                    rotary_dim=16)),
        data=dict(source="debian", max_chars=4_000_000, seq_len=256, num_train=5000, num_val=500,
                  tokenizer=dict(kind="bpe", vocab_size=16384)),
        train=dict(lr=1e-4, batch_size=8, max_epochs=30, patience=5),
        evals=["selection", "mqar"],
        selection=dict(source_tokens=4096, queries=50),
        mqar=dict(write_segments=3, query_segments=1, num_groups=8, keys_per_group=64, num_values=512,
                  num_train=5000, num_val=500),
        recall_train=dict(lr=1e-4, batch_size=8, max_epochs=30, patience=5),
    )


PRESETS: dict[str, Callable[[], TextTrialSpec]] = {"tiny": tiny, "report": report}
SPEC = TextTrialSpec


def run(spec: TextTrialSpec, on_epoch=None, progress=None) -> dict:
    return run_text(spec, on_epoch, progress)


def report(rows: list[dict], names: list[str], spec: TextTrialSpec) -> str:
    """Report 001's tables: perplexity and parameters, then selection accuracy per domain."""
    labels = labels_of(rows, names)
    params = [f"{r['params_mean']:,.0f}" if r.get("params_mean") is not None else "" for r in rows]
    out = [table("Landmark comparison", ["Landmark Type", "Best PPL", "Epoch", "Params"],
                 [list(c) for c in zip(labels, fmt_pm(rows, "val_ppl"), fmt_pm(rows, "best_epoch"), params)])]
    # the domains are whatever the data's files were (the Debian corpus by default)
    domains = sorted({k[len("selection_"):-len("_mean")] for r in rows for k in r
                      if k.startswith("selection_") and k.endswith("_mean") and r[k] is not None}
                     - {"acc", "chance"})
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

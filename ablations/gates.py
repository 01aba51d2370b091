"""The memory gates' path over epochs, per grid: which figures of an epoch are kept (``epoch_figures``) and
``gates.png``, σ(β) by epoch, one line per trial, coloured by design (its seeds share a colour).

A trial of a recipe whose model has a memory layer reports ``gate_mean`` and ``gate_h<i>`` with every epoch
(``memkit.eval.memory_use.with_gates``); a gate that never leaves 0.5 is a memory the optimiser did not use.
"""

from __future__ import annotations

from pathlib import Path

from ablations.results import EPOCH_KEYS

EPOCH_PREFIXES = ("gate_",)  # kept beside EPOCH_KEYS: the gates' path


def epoch_figures(result: dict) -> dict:
    """An epoch's row for epochs.jsonl and a trial's history: the fixed keys, and the gates when there are any."""
    row = {k: result.get(k) for k in EPOCH_KEYS}
    row.update({k: v for k, v in result.items() if k.startswith(EPOCH_PREFIXES)})
    return row


def design_of(trial: dict, seed_key: str | None) -> str:
    """A trial's label without its seed: the design its seeds share."""
    parts = [p.strip() for p in str(trial.get("trial", "")).split(",")]
    return ",".join(p for p in parts if not (seed_key and p.startswith(f"{seed_key}="))) or "the only point"


def plot_gates(out: Path, trials: list[dict], seed_key: str | None = "seed") -> Path | None:
    """gates.png: ``gate_mean`` by epoch for every trial whose history has it; None (no file) when none has."""
    curves = [t for t in trials if any(h.get("gate_mean") is not None for h in t.get("history") or [])]
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    designs = sorted({design_of(t, seed_key) for t in curves})
    colours = {d: plt.get_cmap("tab10")(i % 10) for i, d in enumerate(designs)}
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for t in curves:
        points = [(h["epoch"], h["gate_mean"]) for h in t["history"] if h.get("gate_mean") is not None]
        design = design_of(t, seed_key)
        ax.plot(*zip(*points), marker=".", color=colours[design], alpha=0.8,
                label=design if design not in {line.get_label() for line in ax.lines} else None)
    ax.axhline(0.5, color="grey", lw=0.6, ls=":")
    ax.set_xlabel("epoch")
    ax.set_ylabel("gate σ(β), mean over heads")
    ax.set_title("memory gate by epoch (dotted: 0.5)")
    if len(designs) <= 12:
        ax.legend(fontsize=6)
    fig.tight_layout()
    path = Path(out) / "gates.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path

"""Recipe: a Pythia-shaped GPT-NeoX whose layer 0 is Infini-attention, trained on long-range recall.

Run one trial:   python -m recipes.infini_pythia --preset tiny
Run a grid:      python -m ablations.grid --space memories=1,4,8

Presets:
- ``tiny``: trains on a laptop CPU in about a minute (2 layers, hidden 64, 4 heads).
- ``pythia70m``: the reports' shape (6 layers, hidden 512, 8 heads, vocab 50,304, rotary 0.25,
  about 70.4M parameters plus the memory layer's), on the same task at 256 tokens; for a GPU.
"""

from __future__ import annotations

import time
from typing import Callable

import torch
from pydantic import Field, model_validator

from memkit.eval.tasks.recall import RecallTask
from memkit.models.memory_lm import MemoryLMSpec
from memkit.spec import Spec
from memkit.training.trainer import TrainSpec, evaluate, train
from recipes._shared import as_dict, cli, derive_from_task, training_figures


class InfiniPythiaSpec(Spec):
    """Everything one trial needs: model, task, training. ``task.segment_len`` follows the
    memory layer's segment length, and the model's vocabulary grows to the task's if smaller."""

    model: MemoryLMSpec = Field(default_factory=MemoryLMSpec)
    task: RecallTask = Field(default_factory=RecallTask)
    train: TrainSpec = Field(default_factory=TrainSpec)

    @model_validator(mode="before")
    @classmethod
    def _derive(cls, data):
        return derive_from_task(data, lambda m: as_dict(m.get("memory")).get("segment_len", 64))


# Short names for the grid's --space keys -> dotted paths into the spec.
ALIASES = {
    "memories": "model.memory.num_memories",
    "update": "model.memory.update",
    "segment_len": "model.memory.segment_len",
    "local": "model.memory.local",
    "landmark": "model.memory.landmark",
    "gate": "model.memory.hierarchy",
    "selection": "model.memory.selection",
    "top_k": "model.memory.top_k",
    "write_policy": "model.memory.write_policy",
    "selection_query": "model.memory.selection_query",
    "scope": "model.memory.selection_scope",
    "key_shift": "model.memory.key_shift",
    "compile": "model.memory.compile",
    "window": "model.local_window",
    "memory_layer": "model.memory_layer",
    "hidden": "model.hidden_size",
    "layers": "model.num_layers",
    "heads": "model.num_heads",
    "lr": "train.lr",
    "gate_lr": "train.gate_lr",
    "batch_size": "train.batch_size",
    "epochs": "train.max_epochs",
    "patience": "train.patience",
    "seed": "train.seed",
    "write_segments": "task.write_segments",
    "samples": "task.num_train",
}


def tiny() -> InfiniPythiaSpec:
    """About a minute per trial on one CPU core.

    Sized so that one memory is over capacity (64 pairs in a d = 16 memory per head) while 8
    memories hold 2 segments each; local attention cannot answer (window = one segment).
    """
    return InfiniPythiaSpec.create(
        model=dict(
            hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128, rotary_pct=0.25,
            max_position_embeddings=256, local_window="segment",
            memory=dict(segment_len=8, update="delta", key_shift=True),
        ),
        task=dict(write_segments=16, query_segments=4, num_groups=16, keys_per_group=8, num_values=16,
                  num_train=4096, num_val=256),
        train=dict(lr=3e-3, batch_size=32, max_epochs=6, patience=3),
    )


def pythia70m() -> InfiniPythiaSpec:
    """The reports' model shape; the task at 256 tokens (4 segments of 64). Meant for a GPU."""
    return InfiniPythiaSpec.create(
        model=dict(
            vocab_size=50304, hidden_size=512, num_layers=6, num_heads=8, intermediate_size=2048,
            rotary_pct=0.25, max_position_embeddings=2048, local_window="segment",
            memory=dict(segment_len=64, update="delta", key_shift=True, rotary_dim=16),
        ),
        task=dict(write_segments=3, query_segments=1, num_groups=8, keys_per_group=64, num_values=512,
                  num_train=5000, num_val=500),
        train=dict(lr=1e-4, gate_lr=1e-2, batch_size=8, max_epochs=30, patience=5),
    )


PRESETS: dict[str, Callable[[], InfiniPythiaSpec]] = {"tiny": tiny, "pythia70m": pythia70m}
SPEC = InfiniPythiaSpec


def run(spec: InfiniPythiaSpec, on_epoch: Callable[[dict], None] | None = None, progress: bool | None = None) -> dict:
    """Build, train, evaluate. Returns the figures of the best epoch and the model's costs."""
    torch.manual_seed(spec.train.seed)
    model = spec.model.build()
    train_data, val_data = spec.task.splits(spec.train.seed)
    t0 = time.perf_counter()
    result = train(model, train_data, val_data, spec.train, on_epoch=on_epoch, progress=progress)
    final = evaluate(model, val_data, spec.train.batch_size)  # best weights restored
    gate = model.memory.gate().detach() if model.memory is not None else torch.zeros(0)
    return {
        "val_ppl": final["ppl"],
        "recall_acc": final["acc"],
        **training_figures(model, result),
        "memory_bytes": model.memory_nbytes(),
        "gate_mean": float(gate.mean()) if gate.numel() else float("nan"),
        "expand_share": model.memory.last_expand_share if model.memory is not None else float("nan"),
        "train_seconds": time.perf_counter() - t0,
    }


def main(argv=None) -> None:
    cli(__doc__, PRESETS, run, argv)


if __name__ == "__main__":
    main()

"""Recipe: a Pythia-shaped GPT-NeoX whose layer 0 is Infini-attention, trained on long-range recall.

Run one trial:   python -m recipes.infini_pythia --preset tiny
Run a grid:      python -m ablations.grid --space memories=0,1,4,8
Capacity curve:  python -m ablations.grid --space memories=1,4,8 --space pairs=16,32,64,128 --plot pairs

A trial trains until recall converges (or is solved), with ``max_epochs`` a safety cap, and
reports its figures on a test split that neither training, early stopping nor a learning-rate
choice saw: ``recall_acc`` (test), ``test_ppl``, recall by query segment (``acc_seg<i>``) and by
distance (``acc_d<k>``, segments back), and how long it took (``epochs_to_50``/``_90``,
``tokens_to_50``/``_90``). ``val_acc``/``val_ppl`` are the validation figures a choice may read.

Presets:
- ``tiny``: trains on a laptop CPU in about a minute (2 layers, hidden 32, 4 heads).
- ``pythia70m``: the reports' shape (6 layers, hidden 512, 8 heads, vocab 50,304, rotary 0.25,
  about 70.4M parameters plus the memory layer's), on the same task at 256 tokens; for a GPU.
"""

from __future__ import annotations

import time
from typing import Callable

import torch
from pydantic import Field, model_validator

from memkit.blocks.attention import MemoryAttention
from memkit.eval.memory_use import memory_use_figures, with_gates
from memkit.eval.metrics import accuracy_by_segment
from memkit.eval.tasks.recall import RecallTask, accuracy_by_distance
from memkit.models.memory_lm import MemoryLMSpec
from memkit.spec import Spec
from memkit.training.trainer import TrainSpec, evaluate, train
from recipes._shared import as_dict, derive_from_task, keep_task, training_figures
from recipes.recipe import Recipe


class InfiniPythiaSpec(Spec):
    """Everything one trial needs: model, task, training. ``task.segment_len`` follows the
    memory layer's segment length, and the model's vocabulary grows to the task's if smaller.
    ``pairs`` (the memory load: key-value pairs written before the queries), when set, sets
    ``task.write_segments`` to pairs / (segment_len / 2), with a key group for each segment."""

    model: MemoryLMSpec = Field(default_factory=MemoryLMSpec)
    task: RecallTask = Field(default_factory=RecallTask)
    train: TrainSpec = Field(default_factory=TrainSpec)
    pairs: int | None = Field(None, ge=1, description="pairs written per sample (sets task.write_segments)")

    @model_validator(mode="before")
    @classmethod
    def _derive(cls, data):
        if isinstance(data, dict) and data.get("pairs") is not None:
            task = as_dict(data.get("task"))
            per = as_dict(as_dict(data.get("model")).get("memory")).get("segment_len", 64) // 2
            if not isinstance(data["pairs"], int) or data["pairs"] % max(per, 1):
                raise ValueError(f"pairs ({data['pairs']}) must be a multiple of the pairs per segment ({per})")
            task["write_segments"] = data["pairs"] // per
            task["num_groups"] = max(task.get("num_groups", 0) or 0, task["write_segments"])
            data = {**data, "task": task}
        return derive_from_task(data, lambda m: as_dict(m.get("memory")).get("segment_len", 64))


# Short names for the grid's --space keys -> dotted paths into the spec.
ALIASES = {
    "memories": "model.memory.num_memories",  # 0: no memory layer, local attention alone (the baseline)
    "layer": "model.design.name",  # infini (the memory layer), or a baseline in its place: deltanet, ...
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
    "dropout": "model.hidden_dropout",
    "attention_dropout": "model.attention_dropout",
    "hidden": "model.hidden_size",
    "layers": "model.num_layers",
    "heads": "model.num_heads",
    "lr": "train.lr",
    "gate_lr": "train.gate_lr",
    "batch_size": "train.batch_size",
    "epochs": "train.max_epochs",
    "patience": "train.patience",
    "min_epochs": "train.min_epochs",
    "monitor": "train.monitor",
    "min_delta": "train.min_delta",
    "solve_at": "train.solve_at",
    "schedule": "train.schedule",
    "warmup": "train.warmup_steps",
    "fresh": "train.fresh_samples",
    "seed": "train.seed",
    "write_segments": "task.write_segments",
    "pairs": "pairs",
    "samples": "task.num_train",
}
# the grid's table: test recall and perplexity, how long it took, costs
METRICS = ["recall_acc", "test_ppl", "epochs_to_50", "epochs_to_90", "tokens_to_90", "epochs", "params",
           "memory_bytes", "sec_per_epoch", "ko_read_recall_acc_change", "gate_mean"]
RECALL = ["recall_acc"]  # solve rate and bimodality against the trials' solve_at
SELECT_BY = "val_acc"  # what a learning-rate sweep chooses on (validation only)
TEST_SPLIT = True  # the reported figures come from a split no choice saw


def tiny() -> InfiniPythiaSpec:
    """One to two minutes per trial on one CPU core, trained until recall converges.

    32 pairs of 64 possible values, 4 per segment of 8 tokens, then 4 segments of queries; hidden
    32 in 4 heads (d = 8): one memory holds all 32 pairs and is over capacity (it converges near
    0.7), 4 memories hold 8 pairs each and 8 memories 4 each. Local attention cannot answer (window =
    one segment). Fresh samples every epoch of 1,024; converged = val recall flat (gain < 0.005)
    for 5 epochs after at least 20 (the recall plateau at chance lasts 5-17 epochs), solved at 0.95,
    60 epochs a safety cap. The landmark is ``memory_norm_normalised``: the reports' ``memory_norm``
    hardens the selection as memories fill and slows 4 memories down (README, "The default task").
    """
    return InfiniPythiaSpec.create(
        model=dict(
            hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, rotary_pct=0.25,
            max_position_embeddings=256, local_window="segment",
            memory=dict(segment_len=8, update="delta", key_shift=True, landmark="memory_norm_normalised"),
        ),
        task=dict(write_segments=8, query_segments=4, num_groups=8, keys_per_group=4, num_values=64,
                  num_train=1024, num_val=256, num_test=512),
        train=dict(lr=3e-3, batch_size=32, max_epochs=60, patience=5, min_epochs=20, monitor="acc",
                   min_delta=0.005, solve_at=0.95, fresh_samples=True),
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
        train=dict(lr=1e-4, gate_lr=1e-2, batch_size=8, max_epochs=30, patience=5, monitor="acc", solve_at=0.95),
    )


PRESETS: dict[str, Callable[[], InfiniPythiaSpec]] = {"tiny": tiny, "pythia70m": pythia70m}
SPEC = InfiniPythiaSpec


def run(spec: InfiniPythiaSpec, on_epoch: Callable[[dict], None] | None = None, progress: bool | None = None) -> dict:
    """Build, train, evaluate. Returns the best epoch's figures on validation (``val_*``) and on the
    test split (``recall_acc``, ``test_ppl``, ``acc_seg<i>``, ``acc_d<k>``), and the model's costs."""
    seed, task = spec.train.seed, spec.task
    torch.manual_seed(seed)
    model = spec.model.build()
    train_data, val_data = task.splits(seed)
    if spec.train.fresh_samples:
        train_data = lambda epoch: task.train_epoch(seed, epoch)  # noqa: E731
    keep_task(on_epoch, "mqar", task)
    t0 = time.perf_counter()
    result = train(model, train_data, val_data, spec.train, on_epoch=with_gates(on_epoch, model), progress=progress)
    val = evaluate(model, val_data, spec.train.batch_size)  # best weights restored
    test_data = task.test_split(seed)
    test = evaluate(model, test_data, spec.train.batch_size)
    # is the memory used? the test figures with the read zeroed and with the gate local, gates, shares
    on_test = lambda: (lambda r: {"recall_acc": r["acc"], "test_ppl": r["ppl"]})(  # noqa: E731
        evaluate(model, test_data, spec.train.batch_size))
    use = memory_use_figures(model, on_test, ["recall_acc", "test_ppl"], {"recall_acc": test["acc"],
                                                                           "test_ppl": test["ppl"]})
    by_segment = accuracy_by_segment(model, test_data, task.segment_len, spec.train.batch_size)
    by_distance = accuracy_by_distance(model, task, task.num_test, seed, spec.train.batch_size, split="test")
    memory = model.memory if isinstance(model.memory, MemoryAttention) else None  # a baseline design has no gate
    return {
        "val_acc": val["acc"],
        "val_ppl": val["ppl"],
        "recall_acc": test["acc"],
        "test_ppl": test["ppl"],
        **{f"acc_seg{s}": a for s, a in by_segment.items()},
        **{f"acc_d{d}": a for d, a in sorted(by_distance.items())},
        **training_figures(model, result, spec.train.solve_at, chance=1 / task.num_values),
        "memory_bytes": model.memory_nbytes(),
        "gate_mean": float("nan"),  # a model without a memory layer; memory_use_figures sets it otherwise
        "expand_share": memory.last_expand_share if memory is not None else float("nan"),
        **use,
        "train_seconds": time.perf_counter() - t0,
    }


RECIPE = Recipe(name="infini_pythia", doc=__doc__, spec=SPEC, presets=PRESETS, aliases=ALIASES, run=run,
                metrics=tuple(METRICS), recall=tuple(RECALL), select_by=SELECT_BY, test_split=TEST_SPLIT)
main = RECIPE.main

if __name__ == "__main__":
    RECIPE.main()

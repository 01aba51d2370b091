"""Recipe: context-KV attention with OACD pretraining (seed report 004), on long-range recall.

    python -m recipes.context_kv --preset tiny
    python -m ablations.grid --recipe context_kv --space interval=4,8,16

Phase 1 trains the context block alone with OACD until the convergence rate reaches the
threshold (or the iteration cap); Phase 2 freezes it and trains the rest on the task.
Presets: ``tiny`` (CPU, minutes) and ``large`` (report 004's context sizes: context_dim 256,
interval 20, max_contexts 32, 8 heads, at 256 tokens; for a GPU).
"""

from __future__ import annotations

import sys
import time
from typing import Callable

import torch
from pydantic import Field, model_validator

from memkit.eval.memory_use import memory_use_figures
from memkit.eval.tasks.recall import RecallTask
from memkit.models.context_kv_lm import ContextKVLMSpec
from memkit.spec import Spec
from memkit.training.oacd import OACDPretrainer, OACDSpec
from memkit.training.trainer import TrainSpec, evaluate, train
from recipes._shared import derive_from_task, keep_task, training_figures
from recipes.recipe import Recipe


class ContextKVRecipeSpec(Spec):
    """``task.segment_len`` follows the model's window; the vocabulary grows to the task's if smaller."""

    model: ContextKVLMSpec = Field(default_factory=ContextKVLMSpec)
    task: RecallTask = Field(default_factory=RecallTask)
    oacd: OACDSpec = Field(default_factory=OACDSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)

    @model_validator(mode="before")
    @classmethod
    def _derive(cls, data):
        return derive_from_task(data, lambda m: m.get("window"))


# --space keys of the model and OACD parts (the text recipe of report 004 has them too)
MODEL_ALIASES = {
    "interval": "model.context.interval",
    "max_contexts": "model.context.max_contexts",
    "kv_mode": "model.context.mode",
    "context_dim": "model.context.context_dim",
    "mask_padding": "model.context.mask_padding",
    "window": "model.window",
    "hidden": "model.hidden_size",
    "layers": "model.num_layers",
    "heads": "model.num_heads",
    "oacd_iterations": "oacd.max_iterations",
    "oacd_threshold": "oacd.threshold",
}
ALIASES = {
    **MODEL_ALIASES,
    "lr": "train.lr",
    "batch_size": "train.batch_size",
    "epochs": "train.max_epochs",
    "patience": "train.patience",
    "seed": "train.seed",
    "samples": "task.num_train",
}
METRICS = ["recall_acc", "val_ppl", "params", "trainable_share", "oacd_iterations", "oacd_convergence",
           "effective_rank", "history_tokens", "sec_per_epoch", "tokens_per_s", "best_epoch", "epochs",
           "ko_read_recall_acc_change"]


def tiny() -> ContextKVRecipeSpec:
    return ContextKVRecipeSpec.create(
        model=dict(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128, window=8,
                   context=dict(context_dim=32, interval=4, max_contexts=8)),
        task=dict(write_segments=4, query_segments=2, num_groups=4, keys_per_group=8, num_values=16,
                  num_train=1024, num_val=128),
        oacd=dict(max_iterations=30, batch_size=16, probe_samples=32),
        train=dict(lr=3e-3, batch_size=32, max_epochs=4, patience=2),
    )


def large() -> ContextKVRecipeSpec:
    """Report 004's context sizes (context_dim 256, interval 20, max_contexts 32) on a Pythia-70M-shaped model,
    at 256 tokens (4 windows of 64); for a GPU. Not report 004's system: that is ``report_context_kv``'s
    as-run arm."""
    return ContextKVRecipeSpec.create(
        model=dict(vocab_size=50304, hidden_size=512, num_layers=6, num_heads=8, intermediate_size=2048, window=64,
                   context=dict(context_dim=256, interval=20, max_contexts=32)),
        task=dict(write_segments=3, query_segments=1, num_groups=8, keys_per_group=64, num_values=512,
                  num_train=500, num_val=100),
        oacd=dict(max_iterations=100, batch_size=16, probe_samples=64),
        train=dict(lr=1e-4, batch_size=8, max_epochs=30, patience=3),
    )


PRESETS: dict[str, Callable[[], ContextKVRecipeSpec]] = {"tiny": tiny, "large": large}
SPEC = ContextKVRecipeSpec


def run(spec: ContextKVRecipeSpec, on_epoch: Callable[[dict], None] | None = None, progress: bool | None = None) -> dict:
    torch.manual_seed(spec.train.seed)
    if spec.train.threads:
        torch.set_num_threads(spec.train.threads)
    model = spec.model.build()
    train_data, val_data = spec.task.splits(spec.train.seed)
    keep_task(on_epoch, "mqar", spec.task)
    pre = OACDPretrainer(model, spec.oacd.with_overrides(seed=spec.train.seed))
    t0 = time.perf_counter()
    rows = pre.phase1(train_data[0], on_iteration=(lambda r: print(f"oacd {r}", file=sys.stderr)) if progress else None)
    phase1_seconds = time.perf_counter() - t0
    share = pre.freeze()
    result = train(model, train_data, val_data, spec.train, on_epoch=on_epoch, progress=progress)
    measure = lambda: {"recall_acc": (e := evaluate(model, val_data, spec.train.batch_size))["acc"],  # noqa: E731
                       "val_ppl": e["ppl"]}
    final = measure()
    return {
        **final,
        # is the context memory used? recall with its read adding nothing
        **memory_use_figures(model, measure, ["recall_acc", "val_ppl"], final),
        **training_figures(model, result),
        "trainable_share": share,
        "oacd_iterations": len(rows),
        "oacd_convergence": rows[-1]["convergence"],
        "effective_rank": rows[-1]["effective_rank"],
        "phase1_seconds": phase1_seconds,
        "history_tokens": model.cache.history_tokens,
        "train_seconds": time.perf_counter() - t0,
    }


RECIPE = Recipe(name="context_kv", doc=__doc__, spec=SPEC, presets=PRESETS, aliases=ALIASES, run=run,
                metrics=tuple(METRICS))
main = RECIPE.main

if __name__ == "__main__":
    RECIPE.main()

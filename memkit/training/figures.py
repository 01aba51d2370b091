"""The figures a trained model is reported with, named as the recipes print them, for any model called as
``model(ids) -> (logits, state)`` (memkit's, or a GPT-NeoX baseline): the text recipes (``recipes/_text.py``) and
``python -m memkit.evaluate`` both compute them here.

- ``perplexity_figures``: ``val_ppl``, ``val_acc`` over (ids, targets);
- ``position_figures``: ``pos_<lo>-<hi>``, perplexity per position bucket;
- ``reversal_figures``: ``rev_*``, the reversal curse (standard and the reports' variant);
- ``passkey_figures``: ``passkey_<depth %>`` and ``passkey_mean``;
- ``mqar_figures``: ``mqar_d<segments back>`` and ``mqar_mean``.
Each evaluation starts as a validation does (batch-shared memories reset as their regime says).
"""

from __future__ import annotations

import torch

from memkit.eval.metrics import position_buckets, position_ppl
from memkit.eval.tasks.passkey import PasskeyTask, accuracy_by_depth
from memkit.eval.tasks.recall import RecallTask, accuracy_by_distance
from memkit.eval.tasks.reversal import ReversalTask
from memkit.training.trainer import evaluate, reset_shared_memories

Data = tuple[torch.Tensor, torch.Tensor]


def perplexity_figures(model, data: Data, batch_size: int) -> dict[str, float]:
    final = evaluate(model, data, batch_size)
    return {"val_ppl": final["ppl"], "val_acc": final["acc"]}


def position_figures(model, data: Data, batch_size: int) -> dict[str, float]:
    reset_shared_memories(model, "validation")
    buckets = position_buckets(data[0].shape[1])
    return {f"pos_{name}": ppl for name, ppl in position_ppl(model, data, batch_size, buckets).items()}


def reversal_figures(model, task: ReversalTask, tokenizer) -> dict[str, float]:
    reset_shared_memories(model, "validation")
    return {f"rev_{k}": v for k, v in task.evaluate(model, tokenizer).items()}


def passkey_figures(model, task: PasskeyTask, seed: int, batch_size: int, split: str = "val") -> dict[str, float]:
    """``passkey_<depth %>`` (exact retrieval at each depth) and ``passkey_mean`` on the ``split`` samples."""
    by_depth = accuracy_by_depth(model, task, seed, batch_size, split)
    out = {f"passkey_{round(d * 100)}": a for d, a in by_depth.items()}
    out["passkey_mean"] = sum(by_depth.values()) / len(by_depth)
    return out


def mqar_figures(model, task: RecallTask, seed: int, batch_size: int) -> dict[str, float]:
    by_dist = accuracy_by_distance(model, task, seed=seed, batch_size=batch_size)
    out = {f"mqar_d{d}": a for d, a in sorted(by_dist.items())}
    out["mqar_mean"] = sum(by_dist.values()) / len(by_dist)
    return out

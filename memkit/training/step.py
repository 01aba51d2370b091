"""One optimiser step of the trainer: the learning rate for the step, gradient accumulation over micro-batches,
precision (bf16 autocast) and the loss path (the head only at scored positions, or logits everywhere then the
masked loss), gradient clipping.

Axes: B batch (the step's), b micro-batch, T tokens.
"""

from __future__ import annotations

import inspect
import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from memkit.eval.metrics import IGNORE, masked_loss

if TYPE_CHECKING:
    from memkit.training.trainer import TrainSpec


def lr_factor(step: int, total: int, spec: "TrainSpec") -> float:
    """The learning rate at optimiser step ``step`` (0-based) as a share of ``lr``: linear warmup
    over ``warmup_steps``, then constant, or cosine from 1 down to ``final_lr`` at step ``total``."""
    if spec.warmup_steps and step < spec.warmup_steps:
        return (step + 1) / spec.warmup_steps
    if spec.schedule == "constant":
        return 1.0
    done = min(1.0, (step - spec.warmup_steps) / max(1, total - spec.warmup_steps))
    return spec.final_lr + (1 - spec.final_lr) * 0.5 * (1 + math.cos(math.pi * done))


class OptimiserStep:
    """``step(x [B,T], y [B,T], index) -> mean NLL`` of the batch's scored positions, after one AdamW step.

    The batch runs as ``grad_accumulation`` micro-batches, each micro-batch's mean NLL weighted by its share of
    the batch's scored tokens (so the gradient is the one batch's); ``lr`` is the learning rate of the last step
    (the first group's)."""

    def __init__(self, model: nn.Module, opt: torch.optim.Optimizer, spec: "TrainSpec", total_steps: int):
        self.model, self.opt, self.spec, self.total_steps = model, opt, spec, total_steps
        self.forward = torch.compile(model) if spec.compile_model else model
        # the head at scored positions only needs a model that takes targets= (memkit's)
        self.scored = spec.loss_at == "scored" and "targets" in inspect.signature(model.forward).parameters
        device = next(model.parameters()).device
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec.precision == "bf16")
        self.base_lrs = [g["lr"] for g in opt.param_groups]
        self.lr = self.base_lrs[0]

    def __call__(self, x: torch.Tensor, y: torch.Tensor, index: int, at: str = "") -> float:
        """One optimiser step on (x, y) at global step ``index``; -> its mean NLL. A non-finite loss or gradient
        stops before the step is applied, ``at`` (e.g. "epoch 2, step 3 of 4") saying where."""
        factor = lr_factor(index, self.total_steps, self.spec)
        for group, lr in zip(self.opt.param_groups, self.base_lrs):
            group["lr"] = lr * factor
        self.lr = self.base_lrs[0] * factor
        self.opt.zero_grad(set_to_none=True)
        k = int((y != IGNORE).sum())
        nll = 0.0
        for xs, ys in zip(x.chunk(self.spec.grad_accumulation), y.chunk(self.spec.grad_accumulation)):
            loss = self.loss(xs, ys) * (int((ys != IGNORE).sum()) / max(k, 1))
            loss.backward()
            nll += float(loss.detach())
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.spec.grad_clip)
        check_finite(nll, grad_norm, at or f"step {index + 1}")
        self.opt.step()
        return nll

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean NLL of the micro-batch's scored positions (0, with a graph, when none is scored)."""
        with self.autocast:
            if self.scored:
                return self.forward(x, targets=y, loss_chunk_rows=self.spec.loss_chunk_rows).loss
            logits, _ = self.forward(x)
            return masked_loss(logits, y) if (y != IGNORE).any() else logits.sum() * 0.0


def check_finite(loss: float, grad_norm: torch.Tensor, at: str) -> None:
    """Stop at the first step whose loss or gradient is not finite, before the optimiser applies it (the weights
    stay those of the step before); ``FloatingPointError`` says where (a grid trial ends as ``nan``)."""
    if not math.isfinite(loss):
        raise FloatingPointError(f"loss is not finite ({loss}) at {at}")
    norm = float(grad_norm)  # one sync per step, as the loss's float() above it already is
    if not math.isfinite(norm):
        raise FloatingPointError(f"gradient is not finite (norm {norm}) at {at}, loss {loss:.4g}")

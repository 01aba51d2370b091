"""Running a model for its outputs: eval mode without gradients, and logits batch by batch.

Axes: B batch, T tokens, V vocab.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


@contextmanager
def eval_mode(model) -> Iterator[torch.device]:
    """Eval mode without gradients for the block, yielding the model's device; the model's own mode
    (train or eval) is restored afterwards, also when the block raises."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield next(model.parameters()).device
    finally:
        model.train(was)


@torch.no_grad()  # torch's decorator wraps each step of the generator: the caller's grad mode is kept
def batch_logits(model, data: tuple[torch.Tensor, torch.Tensor], batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(logits [b,T,V], targets [b,T]) for each batch of ``data`` = (ids, targets), in eval mode, on
    the model's device."""
    ids, targets = data
    with eval_mode(model) as device:
        for i in range(0, len(ids), batch_size):
            logits, _ = model(ids[i : i + batch_size].to(device))
            yield logits, targets[i : i + batch_size].to(device)

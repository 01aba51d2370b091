"""Metrics over next-token predictions. Targets use -100 for positions that are not scored.

Axes: B batch, T tokens, V vocab.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

IGNORE = -100


def token_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood per position, [B,T]; 0 where the target is ignored."""
    nll = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE, reduction="none")
    return nll.view(targets.shape)


def masked_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean NLL over scored positions (the training loss)."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE)


def perplexity(total_nll: float, count: int) -> float:
    """exp(mean NLL); inf when the mean overflows."""
    if count == 0:
        return float("nan")
    mean = total_nll / count
    return math.exp(mean) if mean < 700 else float("inf")


def correct_count(logits: torch.Tensor, targets: torch.Tensor) -> tuple[int, int]:
    """(argmax hits, scored positions)."""
    mask = targets != IGNORE
    hits = (logits.argmax(-1) == targets) & mask
    return int(hits.sum()), int(mask.sum())

"""Selector: weights over N memories for each query token.

s_n = q_sel · ℓ_n / √d, with q_sel the query Q; soft selection is softmax over memories.
Memories never written are masked out (their read is 0 and would only dilute the mix).

Axes: B batch, N memories, H heads, T tokens, d head dim.
"""

from __future__ import annotations

import torch
from torch import nn


class Selector(nn.Module):
    """Soft selection. forward(q [B,H,T,d], landmarks [B,N,H,d], written bool [B,N]) -> weights [B,H,T,N]."""

    def forward(self, q: torch.Tensor, landmarks: torch.Tensor, written: torch.Tensor) -> torch.Tensor:
        scores = torch.einsum("bhtd,bnhd->bhtn", q, landmarks) * q.shape[-1] ** -0.5
        # finite fill: if nothing is written the weights come out uniform over zero reads (output 0)
        scores = scores.masked_fill(~written[:, None, None, :], torch.finfo(scores.dtype).min)
        return scores.softmax(-1)

"""The reports' local branch: causal linear attention with the denominator clamped at 1e-6 instead of
adding ε (docs/design.md, the reports' options). Axes: B batch, H heads, S segments, L segment length, d head dim."""

from __future__ import annotations

import torch
from torch import nn

from memkit.ops.memory import causal_linear


class ClampedLinearLocal(nn.Module):
    """forward(q, k, v [B,H,S,L,d]) -> A_loc [B,H,S,L,d]: σ(q_t)Σσ(k_s)ᵀv_s / max(σ(q_t)Σσ(k_s), 1e-6)."""

    def __init__(self, eps: float = 1e-6):
        super().__init__()
        self.eps = eps

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return causal_linear(q, k, v, self.eps, clamp=True)

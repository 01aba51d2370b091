"""Hierarchical memory: a coarse memory (the sum of the fine ones) and a learned ExpansionGate.

Memories are additive: C = Σ_n M_n (and Σ_n z_n) can be formed, the M_n cannot be recovered
from C, so the fine memories are kept and the coarse one is derived on read.
The gate p = sigmoid(MLP(x)), MLP(hidden → hidden/4 → 1) with a GELU, reads the token's hidden
state x (docs/design.md). The reports' gate, which reads the coarse memory's read through a ReLU, is
``memkit.blocks.reports.gate.CoarseReadGate``.
The mix:
- ``soft``: A_mem = p·fine + (1−p)·coarse;
- ``hard``: p ≥ 0.5 picks fine (straight-through gradient). The fine read is computed for every
  token (its weight is exactly 0 where the gate says coarse): skipping tokens would need the gate's
  values on the host, a sync on every read.
Hidden 512 gives 65,793 gate parameters, as in the reports.

Axes: B batch, N memories, H heads, T tokens, d head dim, D hidden.
"""

from __future__ import annotations

import torch
from torch import nn


def coarse(M: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ_n M_n, Σ_n z_n) with the N axis kept (size 1): M [B,N,H,d,d] -> [B,1,H,d,d]."""
    return M.sum(1, keepdim=True), z.sum(1, keepdim=True)


class ExpansionGate(nn.Module):
    """x [B,T,D] -> p [B,T]: probability of expanding to the fine memories, from the token's hidden state."""

    def __init__(self, hidden_size: int, mode: str = "soft", activation: type[nn.Module] = nn.GELU):
        super().__init__()
        self.mode = mode
        act = activation()
        self.mlp = nn.Sequential(nn.Linear(hidden_size, hidden_size // 4), act, nn.Linear(hidden_size // 4, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(x)).squeeze(-1)

    def token_gate(self, x: torch.Tensor) -> torch.Tensor | None:
        """p [B,T] from the hidden states x [B,T,D], known before any read."""
        return self(x)

    def on_read(self, p: torch.Tensor, rough: torch.Tensor) -> torch.Tensor:
        """The probabilities a read mixes with, given ``token_gate``'s p [B,L] and the coarse read
        rough [B,H,L,d]: p itself."""
        return p

    def mix_weight(self, p: torch.Tensor) -> torch.Tensor:
        """Weight of the fine read: p (soft) or 1[p ≥ 0.5] with p's gradient (hard)."""
        if self.mode == "soft":
            return p
        return (p >= 0.5).to(p.dtype) + (p - p.detach())

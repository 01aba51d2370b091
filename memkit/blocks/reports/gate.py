"""The reports' expansion gate (docs/design.md, the reports' options): p = sigmoid(MLP(r)) with a ReLU,
where r is the coarse memory's read of the token (all heads, hidden wide): the gate sees what memory
returns, not the token.

Axes: B batch, H heads, L segment length, d head dim.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from memkit.blocks.hierarchical import ExpansionGate


class CoarseReadGate(ExpansionGate):
    """``ExpansionGate`` whose input is the coarse read: no probability before the read."""

    def __init__(self, hidden_size: int, mode: str = "soft"):
        super().__init__(hidden_size, mode, nn.ReLU)

    def token_gate(self, x: torch.Tensor) -> None:
        return None

    def on_read(self, p, rough: torch.Tensor) -> torch.Tensor:
        return self(rearrange(rough, "b h l d -> b l (h d)").to(self.mlp[0].weight.dtype))

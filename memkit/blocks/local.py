"""The local branch of ``MemoryAttention``: causal attention inside each segment (A_loc).

``softmax``: softmax attention, with GPT-NeoX's rotary embedding on the first ``rotary_dim`` dims;
``linear``: causal linear attention σ(q_t)Σ_{s≤t}σ(k_s)ᵀv_s / (σ(q_t)Σσ(k_s) + ε).

Axes: B batch, H heads, S segments, L segment length, d head dim.
"""

from __future__ import annotations

import torch
from torch import nn

from memkit.ops.memory import causal_linear, causal_softmax


def rotate(x: torch.Tensor, rotary_dim: int, base: float = 10000.0) -> torch.Tensor:
    """GPT-NeoX rotary embedding on the first ``rotary_dim`` dims, positions along axis -2."""
    if rotary_dim == 0:
        return x
    L = x.shape[-2]
    inv = 1.0 / base ** (torch.arange(0, rotary_dim, 2, device=x.device, dtype=torch.float32) / rotary_dim)
    ang = torch.outer(torch.arange(L, device=x.device, dtype=torch.float32), inv)
    cos, sin = ang.cos().repeat(1, 2).to(x.dtype), ang.sin().repeat(1, 2).to(x.dtype)
    rot, rest = x[..., :rotary_dim], x[..., rotary_dim:]
    half = rotary_dim // 2
    rotated = torch.cat((-rot[..., half:], rot[..., :half]), dim=-1)
    return torch.cat((rot * cos + rotated * sin, rest), dim=-1)


class LocalAttention(nn.Module):
    """forward(q, k, v [B,H,S,L,d]) -> A_loc [B,H,S,L,d]. No parameters."""

    def __init__(self, kind: str = "softmax", rotary_dim: int = 0, rotary_base: float = 10000.0, eps: float = 1e-6):
        super().__init__()
        self.kind, self.rotary_dim, self.rotary_base, self.eps = kind, rotary_dim, rotary_base, eps

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.kind == "softmax":
            q, k = (rotate(t, self.rotary_dim, self.rotary_base) for t in (q, k))
            return causal_softmax(q, k, v)
        return causal_linear(q, k, v, self.eps)

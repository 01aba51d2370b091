"""WindowAttention: causal softmax attention over the last W tokens (sliding window), or over all of them.

The baselines a memory is compared with: ``window=None`` is full causal attention (its state grows with
the sequence); ``window=W`` lets token t attend to tokens t−W+1..t (Longformer's / Mistral's sliding
window, Beltagy et al. 2020, arXiv:2004.05150). Rotary on the first ``rotary_dim`` dims of each head, as
``MemoryAttention``'s local branch.

State is explicit: the keys and values (before rotary) of the last W−1 tokens, all of them for full
attention, so a sequence fed in pieces gives the same output as fed whole. Rotary angles count from the
first carried token; scores depend on position differences only, so that changes nothing but rounding.

Axes: B batch, T tokens, D hidden, H heads, d head dim, P carried tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from pydantic import Field, model_validator
from torch import nn

from memkit.blocks.attention import rotate
from memkit.spec import Spec, check_heads


@dataclass(frozen=True)
class WindowAttentionState:
    """What a ``WindowAttention`` carries between calls: k, v [B,H,P,d], the keys (before rotary) and values
    of the last P ≤ W−1 tokens (every token so far for full attention)."""

    k: torch.Tensor
    v: torch.Tensor

    def detach(self) -> "WindowAttentionState":
        return WindowAttentionState(self.k.detach(), self.v.detach())

    def select(self, rows: torch.Tensor) -> "WindowAttentionState":
        """The state of the sequences ``rows`` (LongTensor of batch indices) only."""
        return WindowAttentionState(self.k[rows], self.v[rows])


class WindowAttention(nn.Module):
    """Sliding-window (or full) causal attention. forward(x [B,T,D], state=None) -> (y [B,T,D], state).

    ``window``: tokens each query sees, itself included (None: all earlier tokens).
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        window: int | None = None,
        rotary_dim: int = 0,
        rotary_base: float = 10000.0,
        bias: bool = True,
    ):
        super().__init__()
        self.hidden_size, self.num_heads, self.head_dim = hidden_size, num_heads, hidden_size // num_heads
        self.window, self.rotary_dim, self.rotary_base = window, rotary_dim, rotary_base
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size, bias=bias)
        self.out = nn.Linear(hidden_size, hidden_size, bias=bias)

    def memory_nbytes(self, dtype=torch.float32, seq_len: int | None = None) -> int:
        """Bytes of state per sequence: keys and values of the W−1 tokens carried (of ``seq_len`` tokens
        for full attention, whose state grows with the sequence: then ``seq_len`` is needed)."""
        if self.window is None and seq_len is None:
            raise ValueError("memory_nbytes: full attention keeps every token; give seq_len")
        if self.window is None:
            tokens = seq_len
        else:
            tokens = self.window - 1 if seq_len is None else min(self.window - 1, seq_len)
        return 2 * tokens * self.hidden_size * torch.empty(0, dtype=dtype).element_size()

    def init_state(self, batch_size: int, device=None, dtype=torch.float32) -> WindowAttentionState:
        empty = torch.zeros(batch_size, self.num_heads, 0, self.head_dim, device=device, dtype=dtype)
        return WindowAttentionState(empty, empty)

    def forward(self, x: torch.Tensor, state: WindowAttentionState | None = None):
        """x [B,T,D] -> (y [B,T,D], state)."""
        if state is None:
            state = self.init_state(x.shape[0], x.device, x.dtype)
        T = x.shape[1]
        if T == 0:
            return self.out(x), state
        q, k, v = rearrange(self.qkv(x), "b t (three h d) -> three b h t d", three=3, h=self.num_heads)
        P = state.k.shape[2]
        k, v = torch.cat((state.k, k), 2), torch.cat((state.v, v), 2)  # [B,H,P+T,d]
        # query i sits at position P+i of the keys; rotary angles count from the first carried key
        q_rot = rotate(F.pad(q, (0, 0, P, 0)), self.rotary_dim, self.rotary_base)[:, :, P:]
        k_rot = rotate(k, self.rotary_dim, self.rotary_base)
        pos_q = torch.arange(P, P + T, device=x.device)[:, None]
        pos_k = torch.arange(P + T, device=x.device)[None]
        allowed = pos_k <= pos_q
        if self.window is not None:
            allowed = allowed & (pos_k > pos_q - self.window)
        y = F.scaled_dot_product_attention(q_rot, k_rot, v, attn_mask=allowed)
        first = 0 if self.window is None else max(k.shape[2] - (self.window - 1), 0)  # keep the last W−1
        new = WindowAttentionState(k[:, :, first:], v[:, :, first:])
        return self.out(rearrange(y, "b h t d -> b t (h d)")), new


class WindowAttentionSpec(Spec):
    """Settings of a ``WindowAttention`` layer (``window=None``: full causal attention)."""

    hidden_size: int = Field(512, ge=1, description="model width D")
    num_heads: int = Field(8, ge=1, description="heads H (must divide hidden_size)")
    window: int | None = Field(None, ge=1, le=1 << 20, description="tokens each query sees, itself included "
                               "(None: every earlier token, full attention)")
    rotary_dim: int = Field(0, ge=0, description="rotary dims of each head (0 = none)")
    rotary_base: float = Field(10000.0, gt=1, le=1e9, description="rotary base θ")
    bias: bool = Field(True, description="bias in the layer's projections")

    @model_validator(mode="after")
    def _consistent(self):
        check_heads(self.hidden_size, self.num_heads)
        head_dim = self.hidden_size // self.num_heads
        if self.rotary_dim > head_dim or self.rotary_dim % 2:
            raise ValueError(f"rotary_dim must be even and at most head_dim ({head_dim}), got {self.rotary_dim}")
        return self

    def build(self) -> WindowAttention:
        return WindowAttention(**self.model_dump())

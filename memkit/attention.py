"""MemoryAttention: the Infini-attention layer (Munkhdalai et al. 2024, arXiv:2404.07143).

The sequence is cut into segments of ``segment_len``. Per segment: causal attention inside
the segment (A_dot), a read of the memory left by earlier segments (A_mem), then the
segment is written. Output per head: g·A_mem + (1−g)·A_dot, g = sigmoid(β), β learned.

State is explicit and carried across calls: a sequence fed in pieces gives the same output
as fed whole, whatever the split. A segment is written when it is complete; an incomplete
tail waits in the state (``pending_k``/``pending_v``) for the next call.

Axes: B batch, T tokens, D hidden, H heads, d head dim, S segments, L segment length, N memories.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from pydantic import Field, model_validator
from torch import nn

from memkit.ops.memory import causal_linear, causal_softmax
from memkit.selector import Selector
from memkit.spec import Spec
from memkit.store import MemoryState, MemoryStore


@dataclass(frozen=True)
class MemoryAttentionState:
    """What a ``MemoryAttention`` carries between calls.

    memory: the ``MemoryState`` (M, z); pending_k/pending_v [B,H,P,d]: keys/values of the
    incomplete segment (P < segment_len); prev_k [B,H,1,d]: the last unshifted key (key_shift).
    """

    memory: MemoryState
    pending_k: torch.Tensor
    pending_v: torch.Tensor
    prev_k: torch.Tensor

    def detach(self) -> "MemoryAttentionState":
        return MemoryAttentionState(
            self.memory.detach(), self.pending_k.detach(), self.pending_v.detach(), self.prev_k.detach()
        )


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


class MemoryAttention(nn.Module):
    """Infini-attention layer. forward(x [B,T,D], state=None) -> (y [B,T,D], state).

    With ``num_memories`` N > 1, segment i is written to memory i mod N and each query
    token reads a soft mix of the memories weighted by its match with their memory_norm z.
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        segment_len: int = 64,
        update: str = "linear",
        num_memories: int = 1,
        local: str = "softmax",
        key_shift: bool = False,
        rotary_dim: int = 0,
        gate_init: float = 0.0,
        eps: float = 1e-6,
    ):
        super().__init__()
        self.hidden_size, self.num_heads = hidden_size, num_heads
        self.head_dim = hidden_size // num_heads
        self.segment_len, self.local, self.key_shift = segment_len, local, key_shift
        self.rotary_dim, self.eps = rotary_dim, eps
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.out = nn.Linear(hidden_size, hidden_size)
        self.gate_logit = nn.Parameter(torch.full((num_heads,), float(gate_init)))
        self.gate_logit.memkit_group = "gate"  # trainer: own learning rate, no weight decay
        self.store = MemoryStore(num_heads, self.head_dim, update, eps, num_memories)
        self.selector = Selector() if num_memories > 1 else None

    @property
    def num_memories(self) -> int:
        return self.store.num_memories

    def memory_nbytes(self, dtype=torch.float32) -> int:
        """Bytes of memory state per sequence."""
        return self.store.state_nbytes(dtype)

    def gate(self) -> torch.Tensor:
        """g = sigmoid(β) per head, [H]: the weight of the memory read."""
        return torch.sigmoid(self.gate_logit)

    def init_state(self, batch_size: int, device=None, dtype=torch.float32) -> MemoryAttentionState:
        H, d = self.num_heads, self.head_dim
        empty = torch.zeros(batch_size, H, 0, d, device=device, dtype=dtype)
        return MemoryAttentionState(
            memory=self.store.init_state(batch_size, device, dtype),
            pending_k=empty,
            pending_v=empty,
            prev_k=torch.zeros(batch_size, H, 1, d, device=device, dtype=dtype),
        )

    def forward(self, x: torch.Tensor, state: MemoryAttentionState | None = None):
        B, T, _ = x.shape
        if state is None:
            state = self.init_state(B, x.device, x.dtype)
        if T == 0:
            return self.out(x), state
        q, k, v = rearrange(self.qkv(x), "b t (three h d) -> three b h t d", three=3, h=self.num_heads)
        prev_k = k[:, :, -1:]
        if self.key_shift:  # k_t from token t−1: binds a token to the one after it (recall needs this)
            k = torch.cat((state.prev_k, k[:, :, :-1]), dim=2)

        # Continue the incomplete segment left by the previous call.
        P = state.pending_k.shape[2]
        q = torch.cat((q.new_zeros(B, self.num_heads, P, self.head_dim), q), dim=2)
        k = torch.cat((state.pending_k, k), dim=2)
        v = torch.cat((state.pending_v, v), dim=2)
        n, L = P + T, self.segment_len
        full, S = n // L, -(-n // L)
        pad = lambda t: F.pad(t, (0, 0, 0, S * L - n)).unflatten(2, (S, L))  # noqa: E731  [B,H,S,L,d]
        qs, ks, vs = pad(q), pad(k), pad(v)

        # Local branch: causal inside each segment; padding sits after every real token.
        if self.local == "softmax":
            a_dot = causal_softmax(rotate(qs, self.rotary_dim), rotate(ks, self.rotary_dim), vs)
        else:
            a_dot = causal_linear(qs, ks, vs, self.eps)

        # Memory branch: segment s reads the state written by segments < s, then is written.
        memory, reads = state.memory, []
        for s in range(S):
            reads.append(self._read(memory, qs[:, :, s]))
            if s < full:
                memory = self.store.write(memory, ks[:, :, s], vs[:, :, s])
        a_mem = torch.stack(reads, dim=2)

        g = self.gate().view(1, -1, 1, 1, 1).to(x.dtype)
        y = (g * a_mem + (1 - g) * a_dot).flatten(2, 3)[:, :, P:n]
        y = self.out(rearrange(y, "b h t d -> b t (h d)"))
        new_state = MemoryAttentionState(memory, k[:, :, full * L : n], v[:, :, full * L : n], prev_k)
        return y, new_state

    def _read(self, memory: MemoryState, q: torch.Tensor) -> torch.Tensor:
        """q [B,H,L,d] -> A_mem [B,H,L,d]."""
        reads = self.store.read(memory, q)
        if self.selector is None:
            return reads
        M, z = memory.stacked()
        weights = self.selector(q, z, memory.written())  # memory_norm landmark: ℓ_n = z_n
        return torch.einsum("bhtn,bnhtd->bhtd", weights, reads)


class MemoryAttentionSpec(Spec):
    """Settings of a ``MemoryAttention`` layer."""

    hidden_size: int = Field(512, ge=1, description="model width D")
    num_heads: int = Field(8, ge=1, description="heads H (must divide hidden_size)")
    segment_len: int = Field(64, ge=1, le=65536, description="tokens per segment")
    update: Literal["linear", "delta"] = Field("linear", description="memory write rule")
    num_memories: int = Field(1, ge=1, le=1024, description="number of memories N")
    local: Literal["softmax", "linear"] = Field("softmax", description="local branch inside a segment")
    key_shift: bool = Field(False, description="keys from the previous token (binds pairs at layer 0)")
    rotary_dim: int = Field(0, ge=0, description="rotary dims of the local branch (0 = none)")
    gate_init: float = Field(0.0, ge=-20, le=20, description="initial gate logit β")
    eps: float = Field(1e-6, gt=0, le=1e-1, description="guard of every division")

    @model_validator(mode="after")
    def _consistent(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})"
            )
        head_dim = self.hidden_size // self.num_heads
        if self.rotary_dim > head_dim or self.rotary_dim % 2:
            raise ValueError(f"rotary_dim must be even and at most head_dim ({head_dim}), got {self.rotary_dim}")
        return self

    def build(self) -> MemoryAttention:
        return MemoryAttention(**self.model_dump())

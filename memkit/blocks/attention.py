"""MemoryAttention: the Infini-attention layer (Munkhdalai et al. 2024, arXiv:2404.07143), from parts.

The sequence is cut into segments. Per segment: causal attention inside the segment (A_loc, the
``local`` part), a read of the memory left by earlier segments (A_mem, the memory ``path``), then the
segment is written (by the path). Output per head: g·A_mem + (1−g)·A_loc, g = sigmoid(β), β learned
(``combine``). The maths: docs/design.md.

Memory paths: ``OneMemory`` (memory_path.py), ``ManyMemories`` (many_memories.py: write policy,
landmark, selector, hierarchy); the reports' options live in memkit/blocks/reports/.
``MemoryAttentionSpec`` (attention_spec.py) builds the layer and its parts from flat settings.

State is explicit and carried across calls: a sequence fed in pieces gives the same output as fed
whole, whatever the split. A segment is written when it is complete; an incomplete tail waits in the
state (``pending_k``/``pending_v``) for the next call.

Axes: B batch, T tokens, D hidden, H heads, d head dim, S segments, L segment length, N memories.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from memkit.blocks.local import LocalAttention, rotate  # noqa: F401  (rotate: imported from here before)
from memkit.blocks.segments import FixedSegments, Segments
from memkit.blocks.state import MemoryAttentionState


class MemoryAttention(nn.Module):
    """Infini-attention layer. forward(x [B,T,D], state=None, memory=None) -> (y [B,T,D], state).

    Parts: ``local`` (A_loc from q, k, v [B,H,S,L,d]), ``path`` (a memory path, or a zero-argument
    function building one: built after the projections, so a seed gives the weights it always gave),
    ``segments`` (``length(n)``: tokens per segment for n tokens; default ``FixedSegments(64)``),
    ``clean_read`` (applied to A_mem, or None). ``key_shift``: k_t from token t−1. ``bias``: biases in
    the projections. ``knock_out`` and ``recorder``: see ``memkit.blocks.diagnostics``.
    """

    OWN_PARTS = ("landmark", "q_slc", "expansion")  # saved checkpoints name their parameters so

    def __init__(self, hidden_size: int, num_heads: int, path: nn.Module | Callable[[], nn.Module],
                 local: nn.Module | None = None, segments=None, key_shift: bool = False, gate_init: float = 0.0,
                 bias: bool = True, clean_read: Callable[[torch.Tensor], torch.Tensor] | None = None):
        super().__init__()
        self.hidden_size, self.num_heads = hidden_size, num_heads
        self.head_dim = hidden_size // num_heads
        self.local = local if local is not None else LocalAttention()
        self.segments = segments if segments is not None else FixedSegments(64)
        self.key_shift, self.clean_read = key_shift, clean_read
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size, bias=bias)
        self.out = nn.Linear(hidden_size, hidden_size, bias=bias)
        self.gate_logit = nn.Parameter(torch.full((num_heads,), float(gate_init)))
        self.gate_logit.memkit_group = "gate"  # trainer: own learning rate, no weight decay
        self.path = path if isinstance(path, nn.Module) else path()
        for name in self.OWN_PARTS:  # the path's parts with parameters, under the names they always had
            part = getattr(self.path.per_sequence, name, None)
            if part is not None:
                self.add_module(name, part)
        self.knock_out: str | None = None  # "read": A_mem = 0; "gate": g = 0 (diagnostics.knock_out)
        self.recorder = None  # diagnostics.record

    @property
    def num_memories(self) -> int:
        return self.path.num_memories

    @property
    def segment_len(self) -> int:
        """Tokens per segment as set (``segments.fixed`` says whether a call's segments have that length)."""
        return self.segments.segment_len

    @property
    def rotary_dim(self) -> int:
        return getattr(self.local, "rotary_dim", 0)

    @property
    def rotary_base(self) -> float:
        return getattr(self.local, "rotary_base", 10000.0)

    @property
    def store(self):
        """The path's ``MemoryStore`` (reads and writes of M, z)."""
        return self.path.store

    @property
    def eps(self) -> float:
        return self.path.store.eps

    @property
    def last_expand_share(self) -> float:
        """Share of the last call's tokens that read the fine memories (hierarchy only; else nan)."""
        return self.path.last_expand_share

    def memory_nbytes(self, dtype=torch.float32) -> int:
        """Bytes of memory state per sequence."""
        return self.path.store.state_nbytes(dtype)

    def gate(self) -> torch.Tensor:
        """g = sigmoid(β) per head, [H]: the weight of the memory read."""
        return torch.sigmoid(self.gate_logit)

    def init_state(self, batch_size: int, device=None, dtype=torch.float32) -> MemoryAttentionState:
        H, d = self.num_heads, self.head_dim
        empty = torch.zeros(batch_size, H, 0, d, device=device, dtype=dtype)
        memories = self.path.init_state(batch_size, device, dtype)
        prev_k = torch.zeros(batch_size, H, 1, d, device=device, dtype=dtype)
        return MemoryAttentionState(memories.memory, empty, empty, empty, prev_k, memories.lm_sum, memories.lm_count)

    @contextmanager
    def sequence_scope(self):
        """Within the block, the layer keeps one memory per sequence whatever its path: the state is
        explicit (``MemoryBuilder`` writes each source into its own memory this way)."""
        path = self.path
        self.path = path.per_sequence
        try:
            yield self
        finally:
            self.path = path

    def forward(self, x: torch.Tensor, state: MemoryAttentionState | None = None, memory=None):
        """x [B,T,D] -> (y [B,T,D], state). ``memory`` (int or LongTensor [B]) forces the memory
        every segment of this call is written to (``MemoryBuilder``); None follows the policy."""
        if state is None:
            state = self.init_state(x.shape[0], x.device, x.dtype)
        if x.shape[1] == 0:
            return self.out(x), state
        if isinstance(memory, torch.Tensor) and ((memory < 0) | (memory >= self.num_memories)).any():
            raise ValueError(f"memory: index out of range 0..{self.num_memories - 1}")
        seg = self._segments(x, state)
        a_loc = self.local(seg.q, seg.k, seg.v)
        a_mem, state = self.path(seg, state, memory)
        if self.clean_read is not None:
            a_mem = self.clean_read(a_mem)
        real = lambda a: a.flatten(2, 3)[:, :, seg.pending : seg.end]  # noqa: E731  [B,H,T,d]
        y = self.combine(real(a_mem), real(a_loc))
        return self.out(rearrange(y, "b h t d -> b t (h d)")), state

    def combine(self, a_mem: torch.Tensor, a_loc: torch.Tensor) -> torch.Tensor:
        """g·A_mem + (1−g)·A_loc per head: A_mem, A_loc [B,H,T,d] -> [B,H,T,d]. The one place the two
        paths meet: ``knock_out`` ("read": A_mem = 0; "gate": g = 0, local only) and ``recorder`` act here."""
        g = self.gate().view(1, -1, 1, 1).to(a_loc.dtype)
        if self.knock_out is not None:
            a_mem = torch.zeros_like(a_mem)
            g = torch.zeros_like(g) if self.knock_out == "gate" else g
        mem, loc = g * a_mem, (1 - g) * a_loc
        if self.recorder is not None:
            self.recorder.share(mem, loc)
        return mem + loc

    def _queries(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return rearrange(self.qkv(x), "b t (three h d) -> three b h t d", three=3, h=self.num_heads)

    def _segments(self, x: torch.Tensor, state: MemoryAttentionState) -> Segments:
        """Project x, continue the incomplete segment the previous call left, cut into segments."""
        B, T, _ = x.shape
        H, d = self.num_heads, self.head_dim
        q, k, v = self._queries(x)
        last_k = k[:, :, -1:]
        if self.key_shift:  # k_t from token t−1: binds a token to the one after it (recall needs this)
            k = torch.cat((state.prev_k, k[:, :, :-1]), dim=2)
        f = self.path.selection_features(x, q)
        gate_p = self.path.token_gate(x)  # [B,T] or None
        P = state.pending_k.shape[2]
        if P:  # the copies below are skipped when no segment is pending (the common case)
            q = torch.cat((q.new_zeros(B, H, P, d), q), dim=2)  # pending outputs were already returned
            f = torch.cat((state.pending_q, f), dim=2)  # kept: a sequence-scope selection averages them
            k = torch.cat((state.pending_k, k), dim=2)
            v = torch.cat((state.pending_v, v), dim=2)
        n = P + T
        L = self.segments.length(n)
        S = -(-n // L)
        cut = lambda t: _cut(t, S, L)  # noqa: E731
        if gate_p is not None:
            gate_p = F.pad(gate_p, (P, S * L - n)).unflatten(1, (S, L))  # [B,S,L]
        return Segments(q=cut(q), q_sel=cut(f), k=cut(k), v=cut(v), gate_p=gate_p, pending=P, end=n,
                        full=n // L, last_k=last_k)

    def selection_weights(self, x: torch.Tensor, state: MemoryAttentionState) -> torch.Tensor:
        """The selector's weights over the memories of ``state`` for the tokens of x, as ``forward``
        computes them when it reads that state, per segment.

        x [B,T,D] (this layer's input, starting at a segment boundary), state with memories written
        (batch B or 1) -> [B,H,T,N]. Used to score memory selection against known sources
        (``MemoryBuilder``)."""
        if not hasattr(self.path, "selection_weights"):
            raise ValueError("selection_weights: this layer has one memory, there is nothing to select")
        T = x.shape[1]
        L = self.segments.length(T)
        f = _cut(self.path.selection_features(x, self._queries(x)[0]), -(-T // L), L)
        return self.path.selection_weights(f, T, state)[:, :, :T]


def _cut(t: torch.Tensor, S: int, L: int) -> torch.Tensor:
    """[B,H,n,d] -> [B,H,S,L,d]; padding sits after every real token."""
    extra = S * L - t.shape[2]
    return (F.pad(t, (0, 0, 0, extra)) if extra else t).unflatten(2, (S, L))


def __getattr__(name: str):
    if name == "MemoryAttentionSpec":  # it builds this layer, so it lives beside it (attention_spec.py)
        from memkit.blocks.attention_spec import MemoryAttentionSpec

        return MemoryAttentionSpec
    raise AttributeError(name)

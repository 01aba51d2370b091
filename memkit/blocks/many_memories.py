"""ManyMemories: N compressive memories per sequence, a memory path of ``MemoryAttention``.

A write policy picks the memory a complete segment goes to (``WritePolicy``: ``round_robin``: segment
i to memory i mod N; ``fill``: ``fill_segments`` segments into one memory, then the next; ``nearest``:
the memory whose landmark best matches the segment's mean key, after every memory has been seeded
once). A ``Selector`` weights the memories per query by their ``Landmark``s:
A_mem = Σ_n w_n σ(q) M_n / (σ(q)·z_n + ε). With an ``ExpansionGate`` (hierarchy) a coarse memory (the
sum of the fine ones) is read too and mixed per token: A_mem = m·fine + (1−m)·coarse (docs/design.md).

Axes: B batch, N memories, H heads, S segments, T tokens, L segment length, d head dim, D hidden.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from memkit.blocks.hierarchical import ExpansionGate, coarse
from memkit.blocks.landmark import Landmark
from memkit.blocks.memory_path import SequenceMemory
from memkit.blocks.segments import Memories, Segments
from memkit.blocks.selector import Selector
from memkit.blocks.state import MemoryAttentionState
from memkit.blocks.store import MemoryStore
from memkit.ops.memory import mixed_read, read_memories


class WritePolicy:
    """Which memory the next complete segment goes to: ``round_robin``, ``fill`` or ``nearest``."""

    def __init__(self, kind: str = "round_robin", fill_segments: int = 1, num_memories: int = 2):
        self.kind, self.fill_segments, self.num_memories = kind, fill_segments, num_memories

    def fixed(self, writes: int) -> int | None:
        """The memory of the write after ``writes`` earlier ones, when known in advance; else None."""
        if self.kind == "round_robin":
            return writes % self.num_memories
        if self.kind == "fill":
            return (writes // self.fill_segments) % self.num_memories
        return None

    def nearest(self, now: Memories, k: torch.Tensor, landmark: Landmark) -> torch.Tensor:
        """Seed every memory once (first empty one), then the best-matching landmark: LongTensor [B]."""
        written = now.memory.written()
        M, z = now.memory.stacked()
        landmarks = landmark.landmarks(z, now.lm_sum, now.lm_count)
        scores = torch.einsum("bhd,bnhd->bn", k.mean(2).to(landmarks.dtype), landmarks)
        first_empty = (~written).to(torch.int8).argmax(-1)
        return torch.where(written.all(-1), scores.argmax(-1), first_empty).detach()


class ManyMemories(SequenceMemory):
    """N memories read through a selector. The parts are given: ``landmark``, ``selector``,
    ``q_slc`` (a separate selection projection, HSA's Q_slc; None: Q) and ``expansion`` (None: no
    hierarchy)."""

    def __init__(self, store: MemoryStore, policy: WritePolicy, landmark: Landmark, selector: Selector,
                 q_slc: nn.Linear | None = None, expansion: ExpansionGate | None = None, write_strategy: str = "loop"):
        super().__init__(store, write_strategy)
        self.policy, self.selector = policy, selector
        # Parts with parameters are referred to, not registered: the layer holds them under the names they
        # always had (``MemoryAttention.OWN_PARTS``), so saved checkpoints load as they are.
        for name, part in (("landmark", landmark), ("q_slc", q_slc), ("expansion", expansion)):
            object.__setattr__(self, name, part)
        self._expand_share: torch.Tensor | None = None  # see last_expand_share

    @property
    def last_expand_share(self) -> float:
        """Share of the last call's tokens that read the fine memories (hierarchy only; else nan)."""
        return float("nan") if self._expand_share is None else float(self._expand_share)

    @property
    def excludes_unwritten(self) -> bool:
        return self.selector.excludes_unwritten

    def init_state(self, batch_size: int, device=None, dtype=torch.float32) -> Memories:
        memory = self.store.init_state(batch_size, device, dtype)
        if not self.landmark.keeps_sums:
            return Memories(memory)
        H, d = self.store.num_heads, self.store.head_dim
        return Memories(memory, *self.landmark.init_sums(batch_size, self.num_memories, H, d, device, memory.M.dtype))

    def selection_features(self, x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """f(Q) or f(Q_slc) per token [B,H,T,d], with f the selector's feature map."""
        q_sel = q if self.q_slc is None else rearrange(self.q_slc(x), "b t (h d) -> b h t d", h=self.store.num_heads)
        return self.selector.feature(q_sel)

    def token_gate(self, x: torch.Tensor) -> torch.Tensor | None:
        return None if self.expansion is None else self.expansion.token_gate(x)

    def segment_features(self, seg: Segments) -> torch.Tensor:
        return self.selector.per_segment(seg.q_sel, seg.end)

    def fixed_targets(self, writes: int, full: int, forced) -> list[int] | None:
        targets = super().fixed_targets(writes, full, forced)  # linear writes, no per-row memory
        if targets is None or not self.landmark.sums_add_up or forced is not None:
            return targets if self.landmark.sums_add_up else None
        if self.policy.fixed(writes) is None:  # nearest: known only once the landmarks are
            return None
        return [self.policy.fixed(writes + s) for s in range(full)]

    def target(self, now: Memories, k: torch.Tensor, forced):
        if forced is not None:
            return forced
        fixed = self.policy.fixed(now.memory.writes)
        return fixed if fixed is not None else self.policy.nearest(now, k, self.landmark)

    def chunk_summaries(self, seg: Segments) -> tuple[torch.Tensor, int] | None:
        """What each complete segment adds to the landmark sums: ([B,full,H,...], count per segment);
        None for landmarks that keep no sums. Keys only, so every segment's in one call."""
        if not self.landmark.keeps_sums or not seg.full:
            return None
        flat = seg.k[:, :, : seg.full].transpose(1, 2).flatten(0, 1)  # [B·full,H,L,d]
        adds, count = self.landmark.chunk_summary(flat)
        return adds.unflatten(0, (seg.q.shape[0], seg.full)), count

    def write(self, now: Memories, seg: Segments, s: int, forced, summaries) -> Memories:
        k = seg.k[:, :, s]
        target = self.target(now, k, forced)
        memory = self.store.write(now.memory, k, seg.v[:, :, s], target, checked=False)
        if summaries is None:
            return Memories(memory, now.lm_sum, now.lm_count)
        adds, count = summaries
        onehot = F.one_hot(torch.as_tensor(target, device=k.device).expand(k.shape[0]), self.num_memories)
        return Memories(memory, *self.landmark.add(now.lm_sum, now.lm_count, onehot, adds[:, s], count))

    def read_full(self, memories: Memories, q: torch.Tensor, f: torch.Tensor, p):
        mem = memories.memory
        M, z = mem.stacked()
        landmarks = memories.landmarks
        if landmarks is None:
            landmarks = self.landmark.landmarks(z, memories.lm_sum, memories.lm_count)
        weights = self.selector.weights(f, landmarks.to(M.dtype), mem.written())  # [B,H,L,N]
        if self.recorder is not None:
            self.recorder.selection(weights)
        if self.expansion is None:
            return mixed_read(M, z, q, weights, self.store.eps), p
        Mc, zc = coarse(M, z)
        rough = read_memories(Mc, zc, q, self.store.eps)[:, 0]
        p = self.expansion.on_read(p, rough)
        # every token's fine read, also where a hard gate says coarse (its weight is then exactly 0):
        # skipping those tokens would need the gate's values on the host, a sync per read
        fine = mixed_read(M, z, q, weights, self.store.eps)
        m = self.expansion.mix_weight(p)[:, None, :, None].to(q.dtype)  # [B,1,L,1]
        return m * fine + (1 - m) * rough, p

    def note_gate(self, p: torch.Tensor | None, seg: Segments) -> None:
        if p is not None:  # kept as a tensor: reading it on the host would sync every call
            real = p.flatten(1)[:, seg.pending : seg.end]
            self._expand_share = (real if self.expansion.mode == "soft" else (real >= 0.5)).detach().float().mean()

    def selection_weights(self, f: torch.Tensor, end: int, state: MemoryAttentionState) -> torch.Tensor:
        """The selector's weights over the memories of ``state``, as ``forward`` reads with them, for the
        selection features f [B,H,S,L,d] of ``end`` tokens cut into segments -> [B,H,S·L,N]."""
        B, S = f.shape[0], f.shape[2]
        f = self.selector.per_segment(f, end).transpose(1, 2).flatten(0, 1)  # [B·S,H,L,d]
        grow = lambda t: None if t is None else t.expand(B, *t.shape[1:]).repeat_interleave(S, 0)  # noqa: E731
        M, z = state.memory.stacked()
        landmarks = self.landmark.landmarks(grow(z), grow(state.lm_sum), grow(state.lm_count))
        weights = self.selector.weights(f, landmarks, grow(state.memory.written()))  # [B·S,H,L,N]
        return weights.unflatten(0, (B, S)).transpose(1, 2).flatten(2, 3)

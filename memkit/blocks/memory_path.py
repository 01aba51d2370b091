"""Per-sequence memory paths of ``MemoryAttention``: what reads and writes the memories (A_mem).

``SequenceMemory`` holds what every per-sequence path shares: segment s reads what segments < s wrote,
then is written (by a write strategy of ``writes.py``); reads of ``read_group`` segments run in one
batched call; the carried state. ``OneMemory`` is the single compressive memory; ``ManyMemories``
(many_memories.py) N memories with a write policy, a landmark, a selector and maybe a hierarchy.

A path: forward(seg: Segments, state: MemoryAttentionState, forced) -> (A_mem [B,H,S,L,d], state).
Axes: B batch, N memories, H heads, S segments, L segment length, d head dim, D hidden.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import nn

from memkit.blocks.segments import Memories, Segments
from memkit.blocks.state import MemoryAttentionState
from memkit.blocks.store import MemoryState, MemoryStore
from memkit.blocks.writes import cumulative_writes, loop_writes
from memkit.ops.memory import full_precision


class SequenceMemory(nn.Module):
    """One memory state per sequence, carried in ``MemoryAttentionState``. Subclasses say which memory a
    segment goes to (``target``), what the landmarks keep, and how a segment reads (``read_full``).

    ``write_strategy``: "loop" or "cumulative_sum" (``writes.py``; the latter where writes add up into
    memories known in advance, else the loop). ``read_group``: segments read in one batched call; 1 (one
    call per segment) was fastest on a 2-core CPU (batching copies every segment's N states); None reads
    every segment of a call at once, for a GPU where launches dominate."""

    def __init__(self, store: MemoryStore, write_strategy: str = "loop"):
        super().__init__()
        self.store, self.write_strategy = store, write_strategy
        self.read_group: int | None = 1
        self.recorder = None  # diagnostics.record sets it

    @property
    def num_memories(self) -> int:
        return self.store.num_memories

    @property
    def per_sequence(self) -> "SequenceMemory":
        return self

    @property
    def last_expand_share(self) -> float:
        return float("nan")

    @property
    def excludes_unwritten(self) -> bool:
        return True

    def init_state(self, batch_size: int, device=None, dtype=torch.float32) -> Memories:
        return Memories(self.store.init_state(batch_size, device, dtype))

    def selection_features(self, x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """What a segment selects memories with, per token [B,H,T,d] (kept for the pending tokens): q."""
        return q

    def token_gate(self, x: torch.Tensor) -> torch.Tensor | None:
        return None

    def segment_features(self, seg: Segments) -> torch.Tensor:
        return seg.q_sel

    def forward(self, seg: Segments, state: MemoryAttentionState, forced=None):
        summaries = self.chunk_summaries(seg)
        states = self.writes(Memories(state.memory, state.lm_sum, state.lm_count), seg, forced, summaries)
        f, group = self.segment_features(seg), self.read_group or seg.count
        reads, waiting = [], []
        for s in range(seg.count):
            waiting.append(next(states))
            if len(waiting) == group or s == seg.count - 1:  # read as soon as a group is complete: states can go
                reads.append(self.read_segments(waiting, seg, f, s + 1 - len(waiting)))
                waiting = []
        after = next(states)
        carried = MemoryAttentionState(after.memory, seg.tail(seg.q_sel), seg.tail(seg.k), seg.tail(seg.v),
                                       seg.last_k, after.lm_sum, after.lm_count)
        self.note_gate(None if reads[0][1] is None else torch.cat([p for _, p in reads], dim=1), seg)
        return torch.cat([a for a, _ in reads], dim=2), carried

    def writes(self, start: Memories, seg: Segments, forced, summaries) -> Iterator[Memories]:
        """The memories each segment reads, then those after the call (``writes.py``)."""
        targets = self.fixed_targets(start.memory.writes, seg.full, forced)
        if targets is not None and self.write_strategy == "cumulative_sum":
            k, v = seg.k[:, :, : seg.full], seg.v[:, :, : seg.full]
            return iter(cumulative_writes(start, k, v, seg.count, targets, summaries))
        return loop_writes(start, seg.count, seg.full, lambda now, s: self.write(now, seg, s, forced, summaries))

    def fixed_targets(self, writes: int, full: int, forced) -> list[int] | None:
        """The memory of each of the next ``full`` writes when linear writes go to memories known in
        advance (the cumulative sum applies); else None."""
        if self.store.update != "linear" or isinstance(forced, torch.Tensor):
            return None
        return [forced if forced is not None else 0 for _ in range(full)]

    def target(self, now: Memories, k: torch.Tensor, forced):
        """Which memory segment keys k [B,H,L,d] are written to: an int, or LongTensor [B]."""
        return 0 if forced is None else forced

    def chunk_summaries(self, seg: Segments) -> tuple[torch.Tensor, int] | None:
        return None

    def write(self, now: Memories, seg: Segments, s: int, forced, summaries) -> Memories:
        """Write complete segment s into the memory ``target`` (or ``forced``) picks."""
        k = seg.k[:, :, s]
        memory = self.store.write(now.memory, k, seg.v[:, :, s], self.target(now, k, forced), checked=False)
        return Memories(memory, now.lm_sum, now.lm_count)

    def read_segments(self, before: list[Memories], seg: Segments, f: torch.Tensor, g0: int):
        """Reads of segments g0.. in one batched call: each segment's memories join the batch axis.
        before: the memories each segment reads; f [B,H,S,L,d] the selection features
        -> (A_mem [B,H,g,L,d], gate probabilities [B,g,L] or None)."""
        g = len(before)
        B = seg.q.shape[0]
        if g == 1:  # one segment: its memories as they are, no copy
            a, p = self.read(before[0], seg.q[:, :, g0], f[:, :, g0], seg.gate(g0))
            return a.unsqueeze(2), None if p is None else p.unsqueeze(1)
        join = lambda ts: None if ts[0] is None else torch.stack(ts, 1).flatten(0, 1)  # noqa: E731  [B·g,...]
        memory = MemoryState(M=join([b.memory.M for b in before]), z=join([b.memory.z for b in before]),
                             writes=before[0].memory.writes)
        part = lambda t: t[:, :, g0 : g0 + g].transpose(1, 2).flatten(0, 1)  # noqa: E731  [B·g,H,L,d]
        gate_p = None if seg.gate_p is None else seg.gate_p[:, g0 : g0 + g].flatten(0, 1)
        joined = Memories(memory, join([b.lm_sum for b in before]), join([b.lm_count for b in before]))
        a, p = self.read(joined, part(seg.q), part(f), gate_p)
        return a.unflatten(0, (B, g)).transpose(1, 2), None if p is None else p.unflatten(0, (B, g))

    def read(self, memories: Memories, q: torch.Tensor, f: torch.Tensor, p: torch.Tensor | None):
        """q [B,H,L,d], selection features f [B,H,L,d], gate probabilities p [B,L] (a hidden-state gate)
        or None -> (A_mem [B,H,L,d] in q's dtype, the gate probabilities used [B,L] or None).

        The memory maths (reads, selection scores, the mix) runs in the state's dtype with autocast off:
        scores and normalisers grow with every write and would overflow half precision."""
        mem, lm_sum, lm_count = memories.memory, memories.lm_sum, memories.lm_count
        M, z = mem.stacked()
        # Memories known to be empty read exactly 0 and get selection weight exactly 0: when they are
        # the last ones (round robin / fill before the memories are all used), read the others only.
        # Not when unwritten memories stay in the softmax (the reports'): there they take weight.
        landmarks = memories.landmarks
        live = M.shape[1] - len(mem.empty)
        if mem.empty and self.excludes_unwritten and mem.empty == frozenset(range(live, M.shape[1])):
            if live == 0:
                return torch.zeros_like(q), p
            M, z = M[:, :live], z[:, :live]
            lm_sum = None if lm_sum is None else lm_sum[:, :live]
            lm_count = None if lm_count is None else lm_count[:, :live]
            landmarks = None if landmarks is None else landmarks[:, :live]
            mem = MemoryState(M=M, z=z, writes=mem.writes)
        with full_precision(q.device):
            a, p = self.read_full(Memories(mem, lm_sum, lm_count, landmarks), q.to(M.dtype), f.to(M.dtype), p)
        return a.to(q.dtype), p

    def read_full(self, memories: Memories, q: torch.Tensor, f: torch.Tensor, p):
        """``read`` in the state's dtype, after the memories known empty are left out."""
        return self.store.read(memories.memory, q), p

    def note_gate(self, p: torch.Tensor | None, seg: Segments) -> None:
        """The gate probabilities of a call [B,S,L] (None without hierarchy), for diagnostics."""


class OneMemory(SequenceMemory):
    """One compressive memory per sequence (Infini-attention): every complete segment is written into it;
    A_mem = σ(q) M / (σ(q)·z + ε)."""

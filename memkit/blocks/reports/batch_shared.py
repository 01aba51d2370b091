"""The reports' memory scope: one memory for the whole batch, carried from step to step.

docs/design.md, the reports' options: the reports' code kept one memory state per head for the whole batch. Every
segment of every sequence reads it as it was before the call; then the call's complete segments are
written once, summed over batch and time, detached. It keeps adding until reset (the trainer
resets it each epoch), so a sequence reads what earlier batches wrote.

``write_scale="reports"`` scales the write of M by 1/(B·T) but z by 1/B (their scale: reads come out
at 1/T of proper linear attention, and the delta correction is nearly inert); ``"equal"`` scales
both by 1/B (proper linear attention over the batch's tokens).

``BatchSharedPath`` is the memory path of a ``MemoryAttention`` built with ``memory_scope="batch_shared"``:
it holds one ``BatchSharedMemory`` and reads through the per-sequence path it wraps (one memory, or N with
their selection); the careful default (``"sequence"``: one memory per sequence) never touches this file.

Axes: B batch, N memories, H heads, S segments, L segment length, d head dim.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from memkit.blocks.landmark import Landmark
from memkit.blocks.memory_path import SequenceMemory
from memkit.blocks.segments import Memories, Segments
from memkit.blocks.state import MemoryAttentionState
from memkit.blocks.store import MemoryState, MemoryStore


class BatchSharedMemory:
    """The batch-shared state (batch axis 1) and its read-then-write step. No parameters.

    ``reset_policy``: "each_epoch" empties it when training starts, at every epoch and before every
    validation (002/003, 001); "once" only when training starts (000). ``validation``: "writes" (an
    evaluation writes it as training does: 002/003-multi, 000) or "read_only" (001, 002-hierarchical:
    after the reset, evaluation reads an empty memory and the memory path gives 0).
    """

    def __init__(self, store: MemoryStore, write_scale: str, landmark: Landmark | None,
                 reset_policy: str = "each_epoch", validation: str = "writes"):
        self.store, self.write_scale, self.landmark = store, write_scale, landmark
        self.reset_policy, self.validation = reset_policy, validation
        self.state: Memories | None = None  # None: empty (fresh, or reset)

    def reset(self, moment: str = "epoch") -> None:
        """Empty the memory if the policy resets at ``moment`` ("training", "epoch" or "validation")."""
        if moment == "training" or self.reset_policy == "each_epoch":
            self.state = None

    def export(self) -> dict | None:
        """The state as plain tensors and numbers (for a training checkpoint, and beside a saved model: see
        ``memkit.models.shared_memory``); None when empty."""
        if self.state is None:
            return None
        mem = self.state.memory
        return {"M": mem.M, "z": mem.z, "writes": mem.writes, "empty": sorted(mem.empty),
                "lm_sum": self.state.lm_sum, "lm_count": self.state.lm_count}

    def restore(self, data: dict | None) -> None:
        """Back to what ``export`` gave."""
        if data is None:
            self.state = None
            return
        memory = MemoryState(M=data["M"], z=data["z"], writes=data["writes"], empty=frozenset(data["empty"]))
        self.state = Memories(memory, data["lm_sum"], data["lm_count"])

    def _empty(self, device, dtype) -> Memories:
        if self.landmark is None or not self.landmark.keeps_sums:
            return Memories(self.store.init_state(1, device, dtype))
        N, H, d = self.store.num_memories, self.store.num_heads, self.store.head_dim
        return Memories(self.store.init_state(1, device, dtype), *self.landmark.init_sums(1, N, H, d, device, dtype))

    def read_and_write(self, seg: Segments, read: Callable, features: torch.Tensor, training: bool):
        """(A_mem [B,H,S,L,d], gate probabilities [B,S,L] or None): every segment reads the state as it
        was before this call (``read(memories, q, f, gate_p)``, the per-sequence path's read, f from
        ``features`` [B,H,S,L,d]); then the complete segments are written, detached (in evaluation only if
        ``validation="writes"``)."""
        B = seg.q.shape[0]
        if self.state is None:
            self.state = self._empty(seg.q.device, seg.q.dtype)
        elif self.state.memory.M.device != seg.q.device:  # restored from a file, then the model moved
            self.restore({k: v.to(seg.q.device) if torch.is_tensor(v) else v for k, v in self.export().items()})
        grow = lambda t: None if t is None else t.expand(B, *t.shape[1:])  # noqa: E731
        M, z = self.state.memory.stacked()
        # landmarks of the one shared state, computed once (an encoder landmark would run B times on copies)
        landmarks = None if self.landmark is None else self.landmark.landmarks(z, self.state.lm_sum, self.state.lm_count)
        view = Memories(self.state.memory.unstacked(grow(M), grow(z), self.state.memory.writes),
                        grow(self.state.lm_sum), grow(self.state.lm_count), grow(landmarks))
        reads = [read(view, seg.q[:, :, s], features[:, :, s], seg.gate(s)) for s in range(seg.count)]
        if seg.full and (training or self.validation == "writes"):
            with torch.no_grad():
                self.state = shared_write(self.store, self.landmark, self.state, seg, self.write_scale)
        gate_p = None if reads[0][1] is None else torch.stack([p for _, p in reads], dim=1)
        return torch.stack([a for a, _ in reads], dim=2), gate_p


def shared_write(store: MemoryStore, landmark: Landmark | None, state: Memories, seg: Segments,
                 write_scale: str) -> Memories:
    """The batch-shared write strategy: one write of every complete segment of every sequence of seg
    (batch B) into the shared ``state`` (batch 1), scaled as ``write_scale`` says (M by 1/(B·T) and z by
    1/B for "reports", both by 1/B for "equal"); round robin over the memories."""
    B, H, d = seg.q.shape[0], store.num_heads, store.head_dim
    old = state.memory
    joined = lambda t: t[:, :, : seg.full].flatten(2, 3).transpose(0, 1).reshape(1, H, -1, d)  # noqa: E731
    target = old.writes % store.num_memories
    new = store.write(old, joined(seg.k), joined(seg.v), target)
    tokens = seg.full * seg.length
    m_scale = 1 / (B * tokens) if write_scale == "reports" else 1 / B
    M, z = (before + (after - before) * scale
            for before, after, scale in zip(old.stacked(), new.stacked(), (m_scale, 1 / B)))
    memories = replace(state, memory=new.unstacked(M, z, new.writes))
    if state.lm_sum is None:
        return memories
    onehot = F.one_hot(torch.tensor([target], device=seg.k.device), store.num_memories)  # [1,N]
    if not landmark.sums_add_up:
        # the reports' HSA kept the keys of the last sequence of the batch written to the memory
        adds, count = landmark.chunk_summary(seg.k[-1:, :, : seg.full].flatten(2, 3))
    else:  # sums over every written segment of every sequence (the landmarks are their means)
        flat = seg.k[:, :, : seg.full].transpose(1, 2).flatten(0, 1)  # [B·full,H,L,d]
        summary, count = landmark.chunk_summary(flat)
        adds, count = summary.sum(0, keepdim=True), count * summary.shape[0]
    lm_sum, lm_count = landmark.add(state.lm_sum, state.lm_count, onehot, adds, count)
    return replace(memories, lm_sum=lm_sum, lm_count=lm_count)


class BatchSharedPath(nn.Module):
    """The memory path of the reports' batch-shared layer: forward(seg, state, forced) -> (A_mem
    [B,H,S,L,d], state unchanged). Reads through ``inner`` (a per-sequence path: its selection, landmark,
    hierarchy); ``forced`` is ignored (one memory state for everyone). ``reset_shared`` is what the
    trainer calls; ``shared`` holds the state (``export``/``restore`` for training checkpoints)."""

    def __init__(self, inner: SequenceMemory, write_scale: str = "equal", reset: str = "each_epoch",
                 validation: str = "writes"):
        super().__init__()
        self.inner = inner
        self.shared = BatchSharedMemory(inner.store, write_scale, getattr(inner, "landmark", None), reset, validation)

    @property
    def per_sequence(self) -> SequenceMemory:
        return self.inner

    def __getattr__(self, name: str):  # the rest (store, init_state, features, ...) is the inner path's
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("inner"), name)

    def reset_shared(self, moment: str = "epoch") -> None:
        """Empty the batch-shared memory at ``moment`` ("training" starts, an "epoch" starts, a
        "validation" starts), as ``shared_reset`` says (the trainer calls this)."""
        self.shared.reset(moment)

    def forward(self, seg: Segments, state: MemoryAttentionState, forced=None):
        a_mem, gate_p = self.shared.read_and_write(seg, self.inner.read, self.inner.segment_features(seg), self.training)
        self.inner.note_gate(gate_p, seg)
        return a_mem, state

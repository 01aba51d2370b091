"""What travels between the steps of ``MemoryAttention``'s segment loop, as small named values.

- ``Segments``: one call's projections cut into segments of L tokens, the previous call's
  incomplete segment in front; the local branch, the reads and the writes all take it.
- ``Memories``: the N memories as one segment reads them (``MemoryState`` plus the landmark
  sums that ``mean_k`` and ``hsa`` keep); every write makes a new one.
- ``FixedSegments``: how long a segment is (``segment_len`` tokens).

Axes: B batch, H heads, S segments, L segment length, d head dim, N memories.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from memkit.blocks.store import MemoryState


@dataclass(frozen=True)
class Segments:
    """q, q_sel, k, v [B,H,S,L,d]: queries, selection features (``Selector.feature`` of Q or Q_slc),
    keys, values, zero-padded after the last real token; ``gate_p`` [B,S,L]: the expansion gate's
    probability from the hidden state (None without hierarchy, or when the gate reads the coarse memory).

    ``pending``: tokens at the front that the previous call already returned (the incomplete segment
    it left); ``end``: real tokens (pending + this call's); ``full``: complete segments, the ones
    written; ``last_k`` [B,H,1,d]: this call's last unshifted key (``key_shift`` binds across calls).
    """

    q: torch.Tensor
    q_sel: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    gate_p: torch.Tensor | None
    pending: int
    end: int
    full: int
    last_k: torch.Tensor

    @property
    def count(self) -> int:
        """S: segments, the incomplete last one included."""
        return self.q.shape[2]

    @property
    def length(self) -> int:
        """L: tokens per segment."""
        return self.q.shape[3]

    def tail(self, t: torch.Tensor) -> torch.Tensor:
        """The tokens after the last complete segment, which wait for the next call: [B,H,S,L,d] ->
        [B,H,P',d]."""
        return t.flatten(2, 3)[:, :, self.full * self.length : self.end]

    def gate(self, s: int) -> torch.Tensor | None:
        """Segment s's gate probabilities [B,L] (None without hierarchy)."""
        return None if self.gate_p is None else self.gate_p[:, s]


@dataclass(frozen=True)
class Memories:
    """memory: M [B,(N,)H,d,d] and z; lm_sum and lm_count: the landmark's running state (``mean_k``,
    ``hsa``, the reports' last-keys landmark; else None); landmarks [B,N,H,d]: the landmarks themselves when the
    caller computed them once for many rows (the batch-shared memory), else None (computed on read)."""

    memory: MemoryState
    lm_sum: torch.Tensor | None = None
    lm_count: torch.Tensor | None = None
    landmarks: torch.Tensor | None = None


class FixedSegments:
    """Segments of ``segment_len`` tokens, whatever the call's length n."""

    fixed = True  # a segment's length does not depend on the call

    def __init__(self, segment_len: int):
        self.segment_len = segment_len

    def length(self, n: int) -> int:
        return self.segment_len

"""MemoryAttentionState: what a ``MemoryAttention`` layer carries from one call to the next.

Axes: B batch, H heads, P pending tokens, N memories, d head dim.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from memkit.blocks.store import MemoryState


@dataclass(frozen=True)
class MemoryAttentionState:
    """What a ``MemoryAttention`` carries between calls.

    memory: the ``MemoryState`` (M, z); pending_q/k/v [B,H,P,d]: the incomplete segment (P <
    segment_len; pending_q holds its selection features, see ``Selector.feature``); prev_k [B,H,1,d]:
    the last unshifted key (key_shift); lm_sum and lm_count: the landmark's running state
    (``mean_k``, ``hsa``: sums [B,N,H,d] and counts [B,N]; the reports' last-keys landmark: kept keys;
    else None).
    """

    memory: MemoryState
    pending_q: torch.Tensor
    pending_k: torch.Tensor
    pending_v: torch.Tensor
    prev_k: torch.Tensor
    lm_sum: torch.Tensor | None = None
    lm_count: torch.Tensor | None = None

    def detach(self) -> "MemoryAttentionState":
        d = lambda t: None if t is None else t.detach()  # noqa: E731
        return MemoryAttentionState(
            self.memory.detach(), *(d(t) for t in (self.pending_q, self.pending_k, self.pending_v, self.prev_k,
                                                    self.lm_sum, self.lm_count))
        )

    def select(self, rows: torch.Tensor) -> "MemoryAttentionState":
        """The state of the sequences ``rows`` (LongTensor of batch indices) only."""
        pick = lambda t: None if t is None else t[rows]  # noqa: E731
        return MemoryAttentionState(
            self.memory.select(rows), *(pick(t) for t in (self.pending_q, self.pending_k, self.pending_v, self.prev_k,
                                                           self.lm_sum, self.lm_count))
        )

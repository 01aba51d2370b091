"""The loss at scored positions only: the vocabulary projection and its log-softmax run where a target is scored.

A recall row scores 4 of 64 positions; a text row scores them all. Computing [B,T,V] logits and then
ignoring most of them spends most of a training step on the head (profiled on CPU: ~70% for MQAR). Here the
final hidden states of the scored positions are gathered first, then projected in chunks of ``chunk_rows``;
when there is more than one chunk each chunk's logits are recomputed in backward instead of kept, so peak
memory holds one chunk's [chunk_rows, V] logits rather than every position's (the full-text case), at the price
of one more head forward per chunk (a text step with pythia's vocabulary ~1.3× on CPU at 2,048-row chunks).
Up to ``chunk_rows`` scored positions run in one piece, kept for backward as usual.

The reference is ``memkit.eval.metrics.masked_loss`` on the full logits; the two agree in value and gradients
(tests/test_scored_loss.py).

Axes: B batch, T tokens, D hidden, N scored positions, V vocab.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

IGNORE = -100


def at_least_fp32(logits: torch.Tensor) -> torch.Tensor:
    """Logits in float32 when stored lower (bf16/fp16: a log-softmax over a vocabulary needs it); fp64 stays."""
    return logits if logits.dtype in (torch.float32, torch.float64) else logits.float()


def _chunk_nll(head: Callable[[torch.Tensor], torch.Tensor], h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(at_least_fp32(head(h)), y, reduction="sum")


def scored_cross_entropy(hidden: torch.Tensor, targets: torch.Tensor, head: Callable[[torch.Tensor], torch.Tensor],
                         chunk_rows: int = 8192) -> torch.Tensor:
    """Mean next-token NLL over the scored positions: hidden [B,T,D] (after the final norm), targets [B,T]
    (``IGNORE`` = -100 where not scored), head: [n,D] -> [n,V] -> scalar (0, with a graph, when nothing is
    scored). The log-softmax runs in float32 at least (bf16 logits are upcast), as ``masked_loss``'s."""
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows: {chunk_rows}; must be >= 1")
    mask = targets != IGNORE
    where = mask.flatten().nonzero().squeeze(1)  # the one host sync: the number of scored positions
    h = hidden.flatten(0, 1).index_select(0, where)
    y = targets.flatten().index_select(0, where)
    n = h.shape[0]
    if n <= chunk_rows:
        total = _chunk_nll(head, h, y)
    else:
        total = sum(checkpoint(_chunk_nll, head, h[i : i + chunk_rows], y[i : i + chunk_rows], use_reentrant=False)
                    for i in range(0, n, chunk_rows))
    return total / max(n, 1)

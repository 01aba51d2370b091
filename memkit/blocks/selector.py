"""Selector: weights over N memories for each query token.

s_n = q_sel · ℓ_n / √d, with q_sel the query Q or a separate selection projection (HSA's Q_slc,
built by the memory path). Scores are linear in q, so a mean of scores over tokens is the score of the
mean query.

- ``soft``: softmax over memories. ``hard``: the top-k memories only, weights renormalised over
  them; the gradient is the soft one (straight-through), so the scores keep training at k = 1.
- ``scope="token"`` (default): one weighting per query token. ``"sequence"``: one weighting per
  sequence and head as the reports' code had it, made causal: token t uses the mean score of its
  segment's tokens up to t.
- Memories never written get weight 0 (their read is 0 and would only dilute the mix).

The reports' scores (σ(q)·ℓ unscaled, a mean over the whole call, unwritten memories kept in the
softmax) are ``memkit.blocks.reports.selector.ReportsSelector``; the maths: docs/design.md.

Axes: B batch, N memories, H heads, S segments, T tokens, d head dim.
"""

from __future__ import annotations

import torch
from torch import nn


class Selector(nn.Module):
    """forward(q [B,H,T,d], landmarks [B,N,H,d], written bool [B,N]) -> weights [B,H,T,N]."""

    def __init__(self, mode: str = "soft", top_k: int = 1, scope: str = "token"):
        super().__init__()
        self.mode, self.top_k, self.scope = mode, top_k, scope

    @property
    def excludes_unwritten(self) -> bool:
        """Whether unwritten memories get weight exactly 0 (the memory path may then skip them)."""
        return True

    def feature(self, q: torch.Tensor) -> torch.Tensor:
        """f(q) [...,d]: what the scores are linear in (here q itself, scaled after the product)."""
        return q

    def per_segment(self, f: torch.Tensor, end: int) -> torch.Tensor:
        """The features each segment selects with, from the call's features f [B,H,S,L,d] (``end`` real
        tokens): each token its own."""
        return f

    def scores(self, q: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        """Scores of raw queries q [B,H,T,d] -> [B,H,T,N], after the scope's averaging over T."""
        return self.feature_scores(self.feature(q), landmarks)

    def feature_scores(self, f: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        s = self.scale(torch.einsum("bhtd,bnhd->bhtn", f, landmarks), f.shape[-1])
        if self.scope == "sequence":
            steps = torch.arange(1, s.shape[2] + 1, device=s.device, dtype=s.dtype)
            s = s.cumsum(2) / steps[:, None]
        return s

    def scale(self, s: torch.Tensor, d: int) -> torch.Tensor:
        return s * d**-0.5

    def mask_unwritten(self, scores: torch.Tensor, written: torch.Tensor) -> torch.Tensor:
        # finite fill: if nothing is written the weights come out uniform over zero reads (output 0)
        return scores.masked_fill(~written[:, None, None, :], torch.finfo(scores.dtype).min)

    def forward(self, q: torch.Tensor, landmarks: torch.Tensor, written: torch.Tensor) -> torch.Tensor:
        return self.weights(self.feature(q), landmarks, written)

    def weights(self, f: torch.Tensor, landmarks: torch.Tensor, written: torch.Tensor) -> torch.Tensor:
        """Weights from query features f = ``feature(q)`` [B,H,T,d] (the layer computes them once per call)."""
        scores = self.mask_unwritten(self.feature_scores(f, landmarks), written)
        soft = scores.softmax(-1)
        if self.mode == "soft" or self.top_k >= scores.shape[-1]:
            return soft  # top-k over all N memories is the soft selection
        top = scores.topk(self.top_k, dim=-1).indices
        mask = torch.zeros_like(soft).scatter_(-1, top, 1.0)
        hard = soft * mask
        hard = hard / hard.sum(-1, keepdim=True).clamp_min(torch.finfo(hard.dtype).tiny)
        return self._straight_through(hard, soft)

    @staticmethod
    def _straight_through(value: torch.Tensor, grad_from: torch.Tensor) -> torch.Tensor:
        return value.detach() + (grad_from - grad_from.detach())  # exact value, soft gradient

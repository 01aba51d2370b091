"""Selector: weights over N memories for each query token.

s_n = f(q_sel) · ℓ_n, with q_sel the query Q or a separate selection projection (HSA's Q_slc,
built by the layer) and f the score's feature map:
- ``score="scaled"`` (default): s_n = q·ℓ_n/√d;
- ``score="reports"``: s_n = σ(q)·ℓ_n, unscaled, as the reports' code (DESIGN.md, last section).
Scores are linear in f(q) (q, or σ(q)), so a mean of scores over tokens is the score of the mean f.

- ``soft``: softmax over memories. ``hard``: the top-k memories only, weights renormalised over
  them; the gradient is the soft one (straight-through), so the scores keep training at k = 1.
- ``scope="token"`` (default): one weighting per query token. ``"sequence"``: one weighting per
  sequence and head as the reports' code had it, made causal: token t uses the mean score of its
  segment's tokens up to t. ``"whole_call_leaks_future"``: the reports' code exactly: the mean
  score over ALL tokens of the call, so an earlier token's selection depends on later tokens
  (it leaks the future; the layer averages over the whole call, not per segment).
- ``unwritten="excluded"`` (default): memories never written get weight 0 (their read is 0 and
  would only dilute the mix). ``"kept_at_zero"``: the reports' code: they stay in the softmax with
  score 0.

Axes: B batch, N memories, H heads, T tokens, d head dim.
"""

from __future__ import annotations

import torch
from torch import nn

from memkit.ops.naive import feature


class Selector(nn.Module):
    """forward(q [B,H,T,d], landmarks [B,N,H,d], written bool [B,N]) -> weights [B,H,T,N]."""

    def __init__(self, mode: str = "soft", top_k: int = 1, scope: str = "token", score: str = "scaled",
                 unwritten: str = "excluded"):
        super().__init__()
        self.mode, self.top_k, self.scope, self.score, self.unwritten = mode, top_k, scope, score, unwritten

    def feature(self, q: torch.Tensor) -> torch.Tensor:
        """f(q) [...,d]: what the scores are linear in (σ(q), or q itself, scaled after the product)."""
        return feature(q) if self.score == "reports" else q

    def scores(self, q: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        """Scores of raw queries q [B,H,T,d] -> [B,H,T,N], after the scope's averaging over T."""
        return self.feature_scores(self.feature(q), landmarks)

    def feature_scores(self, f: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        s = torch.einsum("bhtd,bnhd->bhtn", f, landmarks)
        if self.score == "scaled":
            s = s * f.shape[-1] ** -0.5
        if self.scope == "sequence":
            steps = torch.arange(1, s.shape[2] + 1, device=s.device, dtype=s.dtype)
            s = s.cumsum(2) / steps[:, None]
        elif self.scope == "whole_call_leaks_future":
            s = s.mean(2, keepdim=True).expand_as(s)
        return s

    def forward(self, q: torch.Tensor, landmarks: torch.Tensor, written: torch.Tensor) -> torch.Tensor:
        return self.weights(self.feature(q), landmarks, written)

    def weights(self, f: torch.Tensor, landmarks: torch.Tensor, written: torch.Tensor) -> torch.Tensor:
        """Weights from query features f = ``feature(q)`` [B,H,T,d] (the layer computes them once per call)."""
        scores = self.feature_scores(f, landmarks)
        if self.unwritten == "excluded":
            # finite fill: if nothing is written the weights come out uniform over zero reads (output 0)
            scores = scores.masked_fill(~written[:, None, None, :], torch.finfo(scores.dtype).min)
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

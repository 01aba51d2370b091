"""Selector: weights over N memories for each query token.

s_n = q_sel · ℓ_n / √d, with q_sel the query Q or a separate selection projection (HSA's Q_slc,
built by the layer). Memories never written are masked out (their read is 0 and would only
dilute the mix).

- ``soft``: softmax over memories.
- ``hard``: the top-k memories only, weights renormalised over them; the gradient is the soft
  one (straight-through), so the scores keep training even at k = 1.
- ``score="scaled"`` (default): q·ℓ/√d; ``score="reports"``: σ(q)·ℓ unscaled, as the reports' code.
- ``scope="token"`` (default): one weighting per query token. ``scope="sequence"``: one weighting
  per sequence and head as the reports' code had it, made causal: token t uses the mean score of
  its segment's tokens up to t.

Axes: B batch, N memories, H heads, T tokens, d head dim.
"""

from __future__ import annotations

import torch
from torch import nn

from memkit.ops.naive import feature


class Selector(nn.Module):
    """forward(q [B,H,T,d], landmarks [B,N,H,d], written bool [B,N]) -> weights [B,H,T,N]."""

    def __init__(self, mode: str = "soft", top_k: int = 1, scope: str = "token", score: str = "scaled"):
        super().__init__()
        self.mode, self.top_k, self.scope, self.score = mode, top_k, scope, score

    def scores(self, q: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        if self.score == "reports":  # the reports' code: σ(Q)·ℓ, no 1/√d
            s = torch.einsum("bhtd,bnhd->bhtn", feature(q), landmarks)
        else:
            s = torch.einsum("bhtd,bnhd->bhtn", q, landmarks) * q.shape[-1] ** -0.5
        if self.scope == "sequence":
            steps = torch.arange(1, s.shape[2] + 1, device=s.device, dtype=s.dtype)
            s = s.cumsum(2) / steps[:, None]
        return s

    def forward(self, q: torch.Tensor, landmarks: torch.Tensor, written: torch.Tensor) -> torch.Tensor:
        scores = self.scores(q, landmarks)
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

"""The reports' selection scores (docs/design.md, the reports' options): ``Selector`` with

- ``score="reports"``: s_n = σ(q)·ℓ_n, unscaled (``"scaled"``: the careful q·ℓ_n/√d);
- ``scope="whole_call_leaks_future"``: the mean score over ALL tokens of the call, so an earlier
  token's selection depends on later tokens (it leaks the future; the memory path averages the
  selection features over the whole call, not per segment);
- ``unwritten="kept_at_zero"``: memories never written stay in the softmax with score 0.

Axes: B batch, N memories, H heads, S segments, L segment length, T tokens, d head dim.
"""

from __future__ import annotations

import torch

from memkit.blocks.selector import Selector
from memkit.ops.memory import feature


class ReportsSelector(Selector):
    """forward(q [B,H,T,d], landmarks [B,N,H,d], written bool [B,N]) -> weights [B,H,T,N]."""

    def __init__(self, mode: str = "soft", top_k: int = 1, scope: str = "token", score: str = "scaled",
                 unwritten: str = "excluded"):
        super().__init__(mode, top_k, scope)
        self.score, self.unwritten = score, unwritten

    @property
    def leaks_future(self) -> bool:
        return self.scope == "whole_call_leaks_future"

    @property
    def excludes_unwritten(self) -> bool:
        return self.unwritten == "excluded"

    def feature(self, q: torch.Tensor) -> torch.Tensor:
        return feature(q) if self.score == "reports" else q

    def per_segment(self, f: torch.Tensor, end: int) -> torch.Tensor:
        """Whole-call scope: every segment selects with the mean feature of the call's ``end`` tokens."""
        if not self.leaks_future:
            return f
        mean = f.flatten(2, 3)[:, :, :end].mean(2, keepdim=True)  # every token of the call, later ones too
        return mean.unsqueeze(2).expand_as(f)

    def feature_scores(self, f: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        s = super().feature_scores(f, landmarks)
        return s.mean(2, keepdim=True).expand_as(s) if self.leaks_future else s

    def scale(self, s: torch.Tensor, d: int) -> torch.Tensor:
        return super().scale(s, d) if self.score == "scaled" else s

    def mask_unwritten(self, scores: torch.Tensor, written: torch.Tensor) -> torch.Tensor:
        return super().mask_unwritten(scores, written) if self.excludes_unwritten else scores

"""OACD (Origin-Anchored Centroid Dispersion) and the two-phase pretrainer of context-KV models.

loss(X) = −‖X − mean(X)‖_F / n + 0.1·‖mean(X)‖²   for context vectors X [n, C]:
spread the vectors from their centroid, pull the centroid to the origin.

Phase 1 trains the context block alone with OACD, one Adam step per iteration on a batch of
samples, until the convergence rate (share of probe tokens whose context moved by a mean squared
change below ``tol`` since the last iteration) reaches ``threshold``, or ``max_iterations``.
Memory is bounded: contexts are computed per batch and for a fixed probe subset, never cached for
the whole data set (the reports cached 2.4 GB at 500 samples). Phase 2 freezes the block.
"""

from __future__ import annotations

from typing import Callable

import torch
from pydantic import Field

from memkit.spec import Spec


def oacd_loss(X: torch.Tensor, anchor: float = 0.1) -> torch.Tensor:
    """X [n, C] -> scalar."""
    mu = X.mean(0)
    return -(X - mu).norm() / X.shape[0] + anchor * mu.pow(2).sum()


def effective_rank(X: torch.Tensor) -> float:
    """exp(entropy of the normalised singular values of X [n, C]): d for an orthonormal set, 1 for identical rows."""
    s = torch.linalg.svdvals(X.double())
    p = s / s.sum()
    return float(torch.exp(-torch.special.xlogy(p, p).sum()))


def convergence_rate(prev: torch.Tensor, curr: torch.Tensor, tol: float) -> float:
    """Share of tokens whose context's mean squared change is below ``tol``. [..., C] each."""
    return float(((curr - prev).pow(2).mean(-1) < tol).float().mean())


class OACDSpec(Spec):
    lr: float = Field(1e-3, gt=0, le=10)
    batch_size: int = Field(16, ge=1)
    max_iterations: int = Field(50, ge=1)
    threshold: float = Field(0.9, gt=0, le=1, description="stop when the convergence rate reaches this")
    tol: float = Field(0.03, gt=0, description="mean squared change under which a token has converged")
    probe_samples: int = Field(32, ge=1, description="samples whose contexts measure convergence")
    seed: int = Field(0, ge=0)


class OACDPretrainer:
    """Phase 1 on ``model.context_block`` (via ``model.contexts(ids)``), then ``freeze`` for Phase 2."""

    def __init__(self, model, spec: OACDSpec):
        self.model, self.spec = model, spec

    def phase1(self, ids: torch.Tensor, on_iteration: Callable[[dict], None] | None = None) -> list[dict]:
        spec, block = self.spec, self.model.context_block
        gen = torch.Generator().manual_seed(spec.seed)
        opt = torch.optim.Adam(block.parameters(), lr=spec.lr)
        probe = ids[: spec.probe_samples]
        with torch.no_grad():
            prev = self.model.contexts(probe)
        rows = []
        for it in range(1, spec.max_iterations + 1):
            batch = ids[torch.randint(0, len(ids), (spec.batch_size,), generator=gen)]
            X = self.model.contexts(batch).flatten(0, 1)
            loss = oacd_loss(X)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                curr = self.model.contexts(probe)
            flat = curr.flatten(0, 1)
            row = {"iteration": it, "loss": float(loss.detach()), "convergence": convergence_rate(prev, curr, spec.tol),
                   "effective_rank": effective_rank(flat) / flat.shape[-1]}
            rows.append(row)
            if on_iteration is not None:
                on_iteration(row)
            prev = curr
            if row["convergence"] >= spec.threshold:
                break
        return rows

    def freeze(self) -> float:
        """Phase 2: freeze the context block; returns the trainable share of parameters."""
        for p in self.model.context_block.parameters():
            p.requires_grad_(False)
        total = sum(p.numel() for p in self.model.parameters())
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad) / total

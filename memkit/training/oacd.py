"""OACD (Origin-Anchored Centroid Dispersion) and the two-phase pretrainer of context-KV models.

loss(X) = −‖X − mean(X)‖_F / n + 0.1·‖mean(X)‖²   for context vectors X [n, C]:
spread the vectors from their centroid, pull the centroid to the origin.

Phase 1 trains the context block alone with OACD, one Adam step per iteration on a batch of
samples, until the convergence rate (share of probe tokens whose context moved by a mean squared
change below ``tol`` since the last iteration) reaches ``threshold``, or ``max_iterations``.
Memory is bounded: contexts are computed per batch and for a fixed probe subset, never cached for
the whole data set (the reports cached 2.4 GB at 500 samples). Phase 2 freezes the block.

``phase1="parallel_fixed_point"`` is report 004's Phase 1 as its code ran it (docs/design.md, the reports' options):
iteration 0 is a random start (no step); each iteration recomputes every token's context at once from
the previous iteration's contexts shifted by one, plus N(0, ``noise``²) noise
(``ContextBlock.parallel``), over the training tokens joined into one stream; the OACD loss on chunks
of ``chunk_tokens``, gradients accumulated over the chunks, one Adam step per iteration with the
gradient norm clipped at ``grad_clip``. Convergence is the share of tokens whose mean squared change
since the last iteration is below ``tol``; it stops at ``threshold``, or once past 50% when the gain
stays under 1% for 2 iterations. It keeps every token's context (stream × C floats), as they did.
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
import torch.nn.functional as F
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
    phase1: Literal["sequential_batches", "parallel_fixed_point"] = Field(
        "sequential_batches", description="batches through the recurrent block; or the reports' parallel "
        "fixed-point iteration over the whole stream")
    noise: float = Field(0.1, ge=0, description="parallel_fixed_point: std of the noise added at each iteration")
    chunk_tokens: int = Field(5000, ge=2, description="parallel_fixed_point: tokens per OACD loss")
    grad_clip: float = Field(2.0, gt=0, description="parallel_fixed_point: gradient norm clip")


# The reports' second stop rule: once past half converged, a gain under 1% for 2 iterations in a row.
PLATEAU_AFTER, PLATEAU_GAIN, PLATEAU_ITERATIONS = 0.5, 0.01, 2


class OACDPretrainer:
    """Phase 1 on ``model.context_block`` (via ``model.contexts(ids)``), then ``freeze`` for Phase 2."""

    def __init__(self, model, spec: OACDSpec):
        self.model, self.spec = model, spec
        self.iterations = 0  # how many Phase 1 ran

    def phase1(self, ids: torch.Tensor, on_iteration: Callable[[dict], None] | None = None) -> list[dict]:
        """Train the context block on ids [n,T]; one row per iteration (loss, convergence, effective rank)."""
        rows = (self._phase1_parallel if self.spec.phase1 == "parallel_fixed_point" else self._phase1_batches)(
            ids, on_iteration)
        self.iterations = len(rows)
        return rows

    def _phase1_batches(self, ids: torch.Tensor, on_iteration) -> list[dict]:
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

    def _phase1_parallel(self, ids: torch.Tensor, on_iteration) -> list[dict]:
        spec, block = self.spec, self.model.context_block
        torch.manual_seed(spec.seed)
        opt = torch.optim.Adam(block.parameters(), lr=spec.lr)
        with torch.no_grad():
            e = self.model.embed_in(ids.reshape(1, -1))  # the training tokens as one stream [1,N,D]
            prev = torch.randn(1, e.shape[1], block.context_dim, dtype=e.dtype)  # iteration 0: no step
        rows, gains = [], []
        for it in range(1, spec.max_iterations + 1):
            shifted = F.pad(prev, (0, 0, 1, 0))[:, :-1]  # c_{t−1} from the previous iteration
            opt.zero_grad(set_to_none=True)
            chunks, loss_sum = [], 0.0
            for lo in range(0, e.shape[1], spec.chunk_tokens):
                hi = min(lo + spec.chunk_tokens, e.shape[1])
                c = block.cell(shifted[:, lo:hi], block.norm_in(e[:, lo:hi]))
                c = c + spec.noise * torch.randn_like(c)
                loss = oacd_loss(c[0])
                loss.backward()  # accumulated over the chunks: one step per iteration
                loss_sum += float(loss.detach())
                chunks.append(c.detach())
            torch.nn.utils.clip_grad_norm_(block.parameters(), spec.grad_clip)
            opt.step()
            curr = torch.cat(chunks, dim=1)
            conv = convergence_rate(prev, curr, spec.tol)
            row = {"iteration": it, "loss": loss_sum / len(chunks), "convergence": conv,
                   "effective_rank": effective_rank(curr[0]) / curr.shape[-1]}
            rows.append(row)
            if on_iteration is not None:
                on_iteration(row)
            gains.append(conv - rows[-2]["convergence"] if len(rows) > 1 else 1.0)
            prev = curr
            stalled = len(gains) >= PLATEAU_ITERATIONS and all(g < PLATEAU_GAIN for g in gains[-PLATEAU_ITERATIONS:])
            if conv >= spec.threshold or (conv > PLATEAU_AFTER and stalled):
                break
        return rows

    def freeze(self) -> float:
        """Phase 2: freeze the context block; returns the trainable share of parameters. A model whose
        Phase 2 contexts come from parallel iterations trains with as many as Phase 1 ran (the reports
        cached Phase 1's last contexts)."""
        for p in self.model.context_block.parameters():
            p.requires_grad_(False)
        if getattr(self.model, "contexts_mode", None) == "parallel_iterations" and self.iterations:
            self.model.train_context_iterations = self.iterations
        total = sum(p.numel() for p in self.model.parameters())
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad) / total

"""Context-KV attention: attend over K/V of context vectors taken every ``interval`` tokens.

A small recurrent ``ContextBlock`` turns the token stream into context vectors
c_t = LN(c_{t−1} + FFN([c_{t−1}; LN(e_t)])). At position p, ``ContextKVCache`` attends over the
K/V projections of c_p, c_{p−interval}, …, at most ``max_contexts`` of them, never a future one.
``fixed`` mode always has ``max_contexts`` slots (constant shapes), zero-padded where history is
short and masked (``mask_padding=False`` is the reports' code: zero contexts attended as they are);
``dynamic`` keeps only the slots that can exist in the input, and always leaves out a slot that cannot
exist yet at a position (it is not padding: attending it would make a position's output depend on how
long the input is). With masking both give the same output everywhere.

The language model that puts them together is ``memkit.models.context_kv_lm.ContextKVLM``.

Axes: B batch, T tokens, D hidden, C context dim, H heads, K context slots.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from pydantic import Field
from torch import nn

from memkit.spec import Spec

# the seed of the parallel iteration's random start in evaluation (``ContextBlock.parallel``)
EVAL_START_SEED = 0


class ContextBlock(nn.Module):
    """e [B,T,D] -> contexts [B,T,C]; recurrent over tokens, so c_t depends on tokens ≤ t only.

    c_t = LN(c_{t−1} + FFN([c_{t−1}; LN(e_t)])), c_{−1} = 0. ``ffn``: "mlp" (Linear (C+D)→2C, GELU,
    Linear 2C→C) or "one_linear" (GELU(Linear (C+D)→C): the reports' block, 262,912 parameters at C = 256,
    D = 768 with its LayerNorm on c).
    """

    def __init__(self, input_dim: int, context_dim: int, ffn: str = "mlp"):
        super().__init__()
        self.context_dim = context_dim
        self.norm_in = nn.LayerNorm(input_dim)
        if ffn == "one_linear":
            self.ffn = nn.Sequential(nn.Linear(context_dim + input_dim, context_dim), nn.GELU())
        else:
            self.ffn = nn.Sequential(nn.Linear(context_dim + input_dim, 2 * context_dim), nn.GELU(),
                                     nn.Linear(2 * context_dim, context_dim))
        self.norm_out = nn.LayerNorm(context_dim)

    def cell(self, c: torch.Tensor, e_normed: torch.Tensor) -> torch.Tensor:
        """One step: the previous context c [...,C] and LN(e_t) [...,D] -> c_t [...,C]."""
        return self.norm_out(c + self.ffn(torch.cat((c, e_normed), dim=-1)))

    def forward(self, e: torch.Tensor, c0: torch.Tensor | None = None) -> torch.Tensor:
        B, T, _ = e.shape
        c = e.new_zeros(B, self.context_dim) if c0 is None else c0
        e = self.norm_in(e)
        out = []
        for t in range(T):
            c = self.cell(c, e[:, t])
            out.append(c)
        return torch.stack(out, dim=1)

    def parallel(self, e: torch.Tensor, iterations: int, start: torch.Tensor | None = None,
                 noise: float = 0.0) -> torch.Tensor:
        """The reports' parallel fixed-point iteration: every token's context recomputed at once from the
        previous iteration's contexts shifted by one (zero before the first token), plus N(0, noise²)
        noise. e [B,T,D] -> [B,T,C]; ``start`` [B,T,C] (default: random). Without noise, T iterations
        reach the recurrent ``forward`` exactly (each one fixes one more position). The random start is
        drawn from the global generator in training (as the reports ran) and from a generator seeded with
        ``EVAL_START_SEED`` in evaluation (one draw per position, shared by the rows), so that a model measured
        twice on the same data (in its trial, and again from its checkpoint, in batches of any size) gives the
        same figure."""
        e = self.norm_in(e)
        if start is None:
            # evaluation: fewer iterations than positions leave the start in the output; an unseeded start made
            # every evaluation of the same model differ (a checkpoint could not reproduce its trial's val_ppl)
            if self.training:
                start = torch.randn(*e.shape[:-1], self.context_dim, device=e.device, dtype=e.dtype)
            else:  # one draw per position, the same for every row: a sequence's figure is its own, whatever batch
                gen = torch.Generator(device=e.device).manual_seed(EVAL_START_SEED)
                start = torch.randn(e.shape[-2], self.context_dim, device=e.device, dtype=e.dtype, generator=gen)
                start = start.expand(*e.shape[:-1], self.context_dim)
        c = start
        for _ in range(iterations):
            c = self.cell(F.pad(c, (0, 0, 1, 0))[:, :-1], e)
            if noise:
                c = c + noise * torch.randn_like(c)
        return c


def context_slots(T: int, interval: int, slots: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(index [T,K], valid [T,K]): slot j of position p is context p − j·interval, valid when ≥ 0."""
    p = torch.arange(T, device=device)[:, None]
    idx = p - interval * torch.arange(slots, device=device)[None, :]
    return idx.clamp(min=0), idx >= 0


class ContextKVCache(nn.Module):
    """forward(x [B,T,D], contexts [B,T,C]) -> [B,T,D]: queries from x, keys/values from contexts."""

    def __init__(self, hidden_size: int, num_heads: int, context_dim: int, interval: int, max_contexts: int,
                 mode: str = "fixed", mask_padding: bool = True, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)  # on the attention weights (the reports': 0.1)
        self.num_heads, self.interval, self.max_contexts = num_heads, interval, max_contexts
        self.mode, self.mask_padding = mode, mask_padding
        self.knock_out: str | None = None  # "read": the read adds nothing (memkit.blocks.diagnostics.knock_out)
        self.q = nn.Linear(hidden_size, hidden_size)
        self.kv = nn.Linear(context_dim, 2 * hidden_size)
        self.out = nn.Linear(hidden_size, hidden_size)

    @property
    def history_tokens(self) -> int:
        """Tokens of history the slots cover: max_contexts × interval."""
        return self.max_contexts * self.interval

    def theoretical_max_contexts(self, total_tokens: int) -> int:
        """How many contexts a stream of ``total_tokens`` produces: total // interval + 1."""
        return total_tokens // self.interval + 1

    def num_slots(self, T: int) -> int:
        return self.max_contexts if self.mode == "fixed" else min(self.max_contexts, (T - 1) // self.interval + 1)

    def forward(self, x: torch.Tensor, contexts: torch.Tensor) -> torch.Tensor:
        return self.step(x, contexts)[0]

    def step(self, x: torch.Tensor, contexts: torch.Tensor, past=None, seen: int = 0):
        """The streaming form: x [B,T,D] and contexts [B,T,C] after ``seen`` earlier tokens, of which ``past``
        holds the keys and values ([B,H,t,d] each) of the last t <= (max_contexts−1)·interval, all a position
        can reach back to -> (y [B,T,D], past for the next call)."""
        B, T, _ = x.shape
        H = self.num_heads
        q = rearrange(self.q(x), "b t (h d) -> b h t d", h=H)
        k, v = rearrange(self.kv(contexts), "b t (two h d) -> two b h t d", two=2, h=H)
        if past is not None:
            k, v = torch.cat((past[0], k), dim=2), torch.cat((past[1], v), dim=2)
        t = k.shape[2] - T
        idx, valid = context_slots(t + T, self.interval, self.num_slots(seen + T), x.device)
        idx, valid = idx[t:], valid[t:]  # the new positions; a slot before the stream's first token is invalid
        # a missing slot holds a zero context, whose K/V projection is the bias
        k_pad, v_pad = rearrange(self.kv.bias, "(two h d) -> two h d", two=2, h=H)
        keep = valid[None, None, :, :, None]
        ks = torch.where(keep, k[:, :, idx], k_pad[None, :, None, None])  # [B,H,T,K,d]
        vs = torch.where(keep, v[:, :, idx], v_pad[None, :, None, None])
        scores = torch.einsum("bhtd,bhtkd->bhtk", q, ks) * q.shape[-1] ** -0.5
        if self.mask_padding or self.mode == "dynamic":  # dynamic: a missing slot is never padding
            scores = scores.masked_fill(~valid, torch.finfo(scores.dtype).min)
        y = torch.einsum("bhtk,bhtkd->bhtd", self.dropout(scores.softmax(-1)), vs)
        reach = (self.max_contexts - 1) * self.interval
        out = self.out(rearrange(y, "b h t d -> b t (h d)"))
        if self.knock_out == "read":  # the contexts are still taken and cached: the state carried on is the same
            out = torch.zeros_like(out)
        return out, (k[:, :, k.shape[2] - min(reach, k.shape[2]):],
                                                                 v[:, :, v.shape[2] - min(reach, v.shape[2]):])


class ContextKVCacheSpec(Spec):
    """Settings of the context path: block and cache."""

    context_dim: int = Field(256, ge=1, le=65536, description="context vector size C")
    interval: int = Field(20, ge=1, le=1_000_000, description="tokens between cached contexts")
    max_contexts: int = Field(32, ge=1, le=100_000, description="context slots per position")
    mode: Literal["fixed", "dynamic"] = Field("fixed", description="constant slots, or only those that exist")
    mask_padding: bool = Field(True, description="mask zero-padded slots (False: the reports' code)")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the attention weights (the reports': 0.1)")

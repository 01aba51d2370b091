"""DeltaNetAttention: the token-level delta-rule memories used as baselines (DeltaNet, Gated DeltaNet).

DeltaNet (Yang et al. 2024, arXiv:2406.06484) and Gated DeltaNet (Yang et al. 2024, arXiv:2412.06464),
laid out as flash-linear-attention's layers: q, k, v projections; a short causal depthwise convolution
(kernel ``conv_size``) and SiLU on each (SiLU alone when ``conv_size`` is 0); q, k L2-normalised per head;
β = sigmoid(w_β x) per head. The gated layer adds a per-head decay α = exp(g),
g = −exp(A_log)·softplus(w_a x + dt_bias), and gates the output's RMSNorm by SiLU(W_g x); the plain one
RMSNorms the output ungated. The recurrence itself is ``memkit.ops.delta.chunk_delta_rule``.

State is explicit: the S matrix of every head and the convolution's last ``conv_size − 1`` inputs, so a
sequence fed in pieces gives the same output as fed whole.

Axes: B batch, T tokens, D hidden, H heads, d head dim (keys and values alike), c conv_size − 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from pydantic import Field, model_validator
from torch import nn

from memkit.ops.delta import chunk_delta_rule, fla_delta_rule
from memkit.ops.memory import state_dtype
from memkit.spec import Spec, check_heads


@dataclass(frozen=True)
class DeltaNetState:
    """What a ``DeltaNetAttention`` carries between calls: S [B,H,d,d] (values × keys, in the state dtype)
    and conv [B,c,3D], the last q/k/v projections the short convolution still needs (None without one)."""

    S: torch.Tensor
    conv: torch.Tensor | None = None

    def detach(self) -> "DeltaNetState":
        return DeltaNetState(self.S.detach(), None if self.conv is None else self.conv.detach())

    def select(self, rows: torch.Tensor) -> "DeltaNetState":
        """The state of the sequences ``rows`` (LongTensor of batch indices) only."""
        return DeltaNetState(self.S[rows], None if self.conv is None else self.conv[rows])


class DeltaNetAttention(nn.Module):
    """DeltaNet or Gated DeltaNet layer. forward(x [B,T,D], state=None) -> (y [B,T,D], DeltaNetState).

    ``gated``: Gated DeltaNet (decay and output gate); ``conv_size``: the short convolution's kernel
    (0: none); ``chunk_size``: tokens per chunk of the chunked recurrence (any value gives the same
    result); ``kernel``: "torch" (any device) or "fla" (flash-linear-attention's kernels, CUDA only).
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        gated: bool = False,
        conv_size: int = 4,
        chunk_size: int = 64,
        norm_eps: float = 1e-5,
        kernel: str = "torch",
    ):
        super().__init__()
        D, H = hidden_size, num_heads
        self.hidden_size, self.num_heads, self.head_dim = D, H, D // H
        self.gated, self.conv_size, self.chunk_size, self.kernel = gated, conv_size, chunk_size, kernel
        self.qkv = nn.Linear(D, 3 * D, bias=False)
        self.conv = nn.Conv1d(3 * D, 3 * D, conv_size, groups=3 * D, bias=False) if conv_size else None
        self.b_proj = nn.Linear(D, H, bias=False)
        self.norm = nn.RMSNorm(self.head_dim, eps=norm_eps)
        self.out = nn.Linear(D, D, bias=False)
        if gated:
            self.a_proj = nn.Linear(D, H, bias=False)
            self.g_proj = nn.Linear(D, D, bias=False)
            # Mamba2's initialisation, as fla's: decay rates A ~ U(0, 16), time steps log-uniform in [1e-3, 0.1]
            self.A_log = nn.Parameter(torch.empty(H).uniform_(1e-4, 16).log())
            dt = torch.exp(torch.rand(H) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3)).clamp_min(1e-4)
            self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # softplus⁻¹(dt)

    def memory_nbytes(self, dtype=torch.float32) -> int:
        """Bytes of state per sequence: every head's d×d matrix and the convolution's last inputs."""
        size = lambda dt: torch.empty(0, dtype=dt).element_size()  # noqa: E731
        conv = max(self.conv_size - 1, 0) * 3 * self.hidden_size
        return self.num_heads * self.head_dim**2 * size(state_dtype(dtype)) + conv * size(dtype)

    def init_state(self, batch_size: int, device=None, dtype=torch.float32) -> DeltaNetState:
        H, d, c = self.num_heads, self.head_dim, self.conv_size - 1
        S = torch.zeros(batch_size, H, d, d, device=device, dtype=state_dtype(dtype))
        conv = torch.zeros(batch_size, c, 3 * self.hidden_size, device=device, dtype=dtype) if self.conv_size else None
        return DeltaNetState(S, conv)

    def forward(self, x: torch.Tensor, state: DeltaNetState | None = None):
        """x [B,T,D] -> (y [B,T,D], state)."""
        if state is None:
            state = self.init_state(x.shape[0], x.device, x.dtype)
        if x.shape[1] == 0:
            return self.out(x), state
        qkv, conv = self._short_conv(self.qkv(x), state.conv)
        q, k, v = rearrange(qkv, "b t (three h d) -> three b h t d", three=3, h=self.num_heads)
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        beta = rearrange(torch.sigmoid(self.b_proj(x)), "b t h -> b h t")
        g = None
        if self.gated:
            rate = F.softplus(self.a_proj(x).float() + self.dt_bias)  # [B,T,H]; fp32: decays compound
            g = rearrange(-self.A_log.float().exp() * rate, "b t h -> b h t")
        if self.kernel == "fla":
            if not x.is_cuda:
                raise RuntimeError("kernel='fla': flash-linear-attention's kernels need a CUDA device")
            o, S = fla_delta_rule(q, k, v, beta, g, state.S)
        else:
            o, S = chunk_delta_rule(q, k, v, beta, g, state.S, self.chunk_size)
        o = self.norm(rearrange(o.to(x.dtype), "b h t d -> b t h d"))
        if self.gated:
            o = o * F.silu(rearrange(self.g_proj(x), "b t (h d) -> b t h d", h=self.num_heads))
        return self.out(o.flatten(2)), DeltaNetState(S, conv)

    def _short_conv(self, qkv: torch.Tensor, carried: torch.Tensor | None):
        """Causal depthwise convolution, then SiLU. qkv [B,T,3D], carried [B,c,3D] (the inputs before
        this call) -> (SiLU(conv(qkv)) [B,T,3D], the last c inputs to carry)."""
        if self.conv is None:
            return F.silu(qkv), None
        full = torch.cat((carried.to(qkv.dtype), qkv), 1)  # [B,c+T,3D]: the kernel sees c inputs back
        y = F.conv1d(full.transpose(1, 2), self.conv.weight, groups=qkv.shape[-1]).transpose(1, 2)
        return F.silu(y), full[:, full.shape[1] - (self.conv_size - 1):]


class DeltaNetAttentionSpec(Spec):
    """Settings of a ``DeltaNetAttention`` layer (DeltaNet, or Gated DeltaNet with ``gated=True``)."""

    hidden_size: int = Field(512, ge=1, description="model width D")
    num_heads: int = Field(8, ge=1, description="heads H (must divide hidden_size)")
    gated: bool = Field(False, description="Gated DeltaNet: per-head decay and SiLU-gated output norm")
    conv_size: int = Field(4, ge=0, le=64, description="short causal convolution's kernel on q, k, v (0 = none)")
    chunk_size: int = Field(64, ge=1, le=4096, description="tokens per chunk of the chunked recurrence")
    norm_eps: float = Field(1e-5, gt=0, le=1e-1, description="the output RMSNorm's ε")
    kernel: Literal["torch", "fla"] = Field(
        "torch", description="the recurrence in torch (any device), or flash-linear-attention's kernels (CUDA)")

    @model_validator(mode="after")
    def _consistent(self):
        check_heads(self.hidden_size, self.num_heads)
        return self

    def build(self) -> DeltaNetAttention:
        return DeltaNetAttention(**self.model_dump())

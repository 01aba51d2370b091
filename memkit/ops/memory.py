"""Batched compressive-memory read and write: pure tensor functions.

Axes legend: B batch, N memories, H heads, T tokens, S segments, L segment length, d head dim.
Memory tensors always carry the N axis here: M [B,N,H,d,d], z [B,N,H,d].
The per-token loops in ``naive.py`` are the reference these are tested against.

Memory maths runs in the state's dtype (fp32 for half-precision activations, see ``state_dtype``),
with autocast off: σ(q)·z grows with every write and passes fp16's 65,504 within about 10k tokens.
Reads come back in the queries' dtype (they are averages of values, so they fit).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F

__all__ = ["feature", "read_memories", "mixed_read", "segment_write", "causal_softmax", "causal_linear",
           "state_dtype", "full_precision"]


def feature(x: torch.Tensor) -> torch.Tensor:
    """σ(x) = ELU(x) + 1, the positive feature map of Infini-attention. Its own copy, apart from
    ``naive.feature``: the reference must not share what it checks (a wrong σ here fails the tests)."""
    return F.elu(x) + 1.0


def state_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a memory state keeps for activations of ``dtype``: fp32 for half precision, else the same."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


@contextmanager
def full_precision(device: torch.device):
    """Autocast off for the memory maths (a bf16/fp16 autocast region would otherwise cast it down)."""
    with torch.autocast(device_type=device.type, enabled=False):
        yield


def read_memories(M: torch.Tensor, z: torch.Tensor, q: torch.Tensor, eps: float) -> torch.Tensor:
    """σ(q) M_n / (σ(q)·z_n + ε) for every memory n. q [B,H,T,d] -> [B,N,H,T,d]."""
    with full_precision(M.device):
        sq = feature(q.to(M.dtype))
        num = torch.einsum("bhtd,bnhde->bnhte", sq, M)
        den = torch.einsum("bhtd,bnhd->bnht", sq, z).unsqueeze(-1) + eps
        return (num / den).to(q.dtype)


def mixed_read(M: torch.Tensor, z: torch.Tensor, q: torch.Tensor, weights: torch.Tensor, eps: float) -> torch.Tensor:
    """Σ_n w_n · σ(q) M_n / (σ(q)·z_n + ε) without forming the N reads. weights [B,H,T,N] -> [B,H,T,d].

    Fast path of ``einsum("bhtn,bnhtd->bhtd", weights, read_memories(...))``: the weights are
    folded into the normaliser, then one matmul over the joined (memory, dim) axis.
    """
    B, H, T, d = q.shape
    N = M.shape[1]
    with full_precision(M.device):
        sq = feature(q.to(M.dtype))
        coef = weights.to(M.dtype) / (torch.einsum("bhtd,bnhd->bhtn", sq, z) + eps)  # [B,H,T,N]
        a = (coef.unsqueeze(-1) * sq.unsqueeze(-2)).reshape(B, H, T, N * d)
        return (a @ M.transpose(1, 2).reshape(B, H, N * d, M.shape[-1])).to(q.dtype)


def segment_write(
    M: torch.Tensor,
    z: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    target: torch.Tensor,
    eps: float,
    update: str,
    fresh: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Write one segment's keys/values into memory ``target`` of each row.

    M [B,N,H,d,d], z [B,N,H,d]; k, v [B,H,T,d]; target: LongTensor [B] of memory indices, or an
    int when every row writes the same memory (a slice then replaces the one-hot mask over N).
    ``fresh`` (int target only): the caller knows that memory is all zeros, so the delta rule's
    retrieval (exactly 0) and the addition are skipped.
    Returns the new (M, z); the inputs are not modified (autograd-safe).
    """
    with full_precision(M.device):
        return _segment_write(M, z, feature(k.to(M.dtype)), v.to(M.dtype), target, eps, update,
                              fresh and isinstance(target, int))


def _segment_write(M, z, sk, v, target, eps: float, update: str, fresh: bool):
    if fresh:  # nothing to fetch: the target memory is zeros
        M_t = z_t = None
    elif isinstance(target, int):  # same memory for every row: a slice
        M_t, z_t = M[:, target], z[:, target]
    else:
        onehot = F.one_hot(target, M.shape[1]).to(M.dtype)  # [B,N]
        M_t = torch.einsum("bn,bnhde->bhde", onehot, M)
        z_t = torch.einsum("bn,bnhd->bhd", onehot, z)
    if update == "delta" and not fresh:  # subtract what the target memory already returns (pre-segment state)
        retrieved = torch.einsum("bhtd,bhde->bhte", sk, M_t) / (torch.einsum("bhtd,bhd->bht", sk, z_t).unsqueeze(-1) + eps)
        v = v - retrieved
    dM, dz = torch.einsum("bhtd,bhte->bhde", sk, v), sk.sum(2)
    if isinstance(target, int):
        put = lambda full, part: torch.cat((full[:, :target], part.unsqueeze(1), full[:, target + 1 :]), 1)  # noqa: E731
        return (put(M, dM), put(z, dz)) if fresh else (put(M, M_t + dM), put(z, z_t + dz))
    return M + onehot[:, :, None, None, None] * dM[:, None], z + onehot[:, :, None, None] * dz[:, None]


def causal_softmax(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal softmax attention over the last-but-one axis. [..., L, d] -> [..., L, d]."""
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def causal_linear(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, eps: float, clamp: bool = False) -> torch.Tensor:
    """Causal linear attention σ(q_t)Σ_{s≤t}σ(k_s)ᵀv_s / (σ(q_t)Σσ(k_s) + ε). [..., L, d] -> [..., L, d].

    ``clamp``: the denominator is clamped at 1e-6 instead of adding ε (the reports' local branch).
    Quadratic form (mask then matmul): segments are short.
    """
    sq, sk = feature(q), feature(k)
    L = q.shape[-2]
    scores = sq @ sk.transpose(-1, -2)
    scores = scores * torch.ones(L, L, dtype=torch.bool, device=q.device).tril()
    den = scores.sum(-1, keepdim=True)
    return (scores @ v) / (den.clamp_min(1e-6) if clamp else den + eps)

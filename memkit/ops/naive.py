"""Plain per-token reference recurrences: the specification the fast paths are tested against.

Axes: B batch, H heads, T tokens, d head dim. One memory per call (M [B,H,d,d], z [B,H,d]).
Loops are over tokens on purpose, so each line can be checked by eye against docs/design.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def feature(x: torch.Tensor) -> torch.Tensor:
    """σ(x) = ELU(x) + 1, the positive feature map of Infini-attention. The fast paths keep their own
    (``memory.feature``), so a wrong σ there fails the reference tests."""
    return F.elu(x) + 1.0


def naive_read(M, z, q, eps):
    """A_mem[t] = σ(q_t) M / (σ(q_t)·z + ε), token by token. q [B,H,T,d] -> [B,H,T,d]."""
    out = torch.zeros_like(q)
    for t in range(q.shape[2]):
        sq = feature(q[:, :, t])  # [B,H,d]
        num = torch.einsum("bhd,bhde->bhe", sq, M)
        den = (sq * z).sum(-1, keepdim=True) + eps
        out[:, :, t] = num / den
    return out


def naive_write(M, z, k, v, eps, update: str = "linear"):
    """Write one segment, token by token. Returns (M, z).

    linear: M += σ(k_t)ᵀ v_t.
    delta:  M += σ(k_t)ᵀ (v_t − σ(k_t) M_old / (σ(k_t)·z_old + ε)), where M_old, z_old are the
    state before the segment (Infini-attention retrieves with the pre-segment memory).
    Both: z += σ(k_t).
    """
    M_old, z_old = M, z
    M, z = M.clone(), z.clone()
    for t in range(k.shape[2]):
        sk = feature(k[:, :, t])  # [B,H,d]
        vt = v[:, :, t]
        if update == "delta":
            retrieved = torch.einsum("bhd,bhde->bhe", sk, M_old) / ((sk * z_old).sum(-1, keepdim=True) + eps)
            vt = vt - retrieved
        M = M + sk.unsqueeze(-1) * vt.unsqueeze(-2)
        z = z + sk
    return M, z


def naive_causal_softmax(q, k, v):
    """Causal softmax attention, query by query. q,k,v [B,H,T,d] -> [B,H,T,d]."""
    out = torch.zeros_like(q)
    scale = q.shape[-1] ** -0.5
    for t in range(q.shape[2]):
        scores = torch.einsum("bhd,bhsd->bhs", q[:, :, t], k[:, :, : t + 1]) * scale
        out[:, :, t] = torch.einsum("bhs,bhsd->bhd", scores.softmax(-1), v[:, :, : t + 1])
    return out


def naive_delta_rule(q, k, v, beta, g=None, initial_state=None, scale=None):
    """The (gated) delta rule token by token: decay first, then the delta step on the decayed state.

    S_t = α_t S_{t−1} + β_t (v_t − α_t S_{t−1} k_t) k_tᵀ, α_t = exp(g_t) (1 when g is None);
    o_t = scale · S_t q_t. q, k [B,H,T,K], v [B,H,T,V], beta, g [B,H,T], initial_state [B,H,V,K].
    Returns (o [B,H,T,V], final state [B,H,V,K]).
    """
    B, H, T, K = k.shape
    scale = K**-0.5 if scale is None else scale
    S = q.new_zeros(B, H, v.shape[-1], K) if initial_state is None else initial_state
    out = []
    for t in range(T):
        if g is not None:
            S = g[:, :, t, None, None].exp() * S
        kt = k[:, :, t]
        retrieved = torch.einsum("bhvk,bhk->bhv", S, kt)
        S = S + beta[:, :, t, None, None] * torch.einsum("bhv,bhk->bhvk", v[:, :, t] - retrieved, kt)
        out.append(scale * torch.einsum("bhvk,bhk->bhv", S, q[:, :, t]))
    return torch.stack(out, 2), S

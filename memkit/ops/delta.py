"""The token-level delta rule and its gated form, chunked (WY/UT form): pure tensor functions.

Axes legend: B batch, H heads, T tokens, N chunks, C chunk length, K key dim, V value dim.
Per head the state is S [V,K]. With α_t = exp(g_t) (α_t = 1 without a gate), token by token:

    S_t = α_t S_{t−1} + β_t (v_t − α_t S_{t−1} k_t) k_tᵀ;   o_t = scale · S_t q_t

(DeltaNet: Schlag et al. 2021, Yang et al. 2024, arXiv:2406.06484; Gated DeltaNet: Yang et al. 2024,
arXiv:2412.06464). ``naive_delta_rule`` in ``naive.py`` is that loop; this file is tested against it.

Chunked form. Inside a chunk, with γ_t = Σ_{j≤t} g_j (from the chunk's start) and S_0 the state before
it, every S_t is exp(γ_t) S_0 + Σ_{i≤t} exp(γ_t − γ_i) u_i k_iᵀ for "new values" u_i that solve

    (I + A) U = diag(β) V − diag(β e^γ) K S_0ᵀ,   A_ti = β_t e^{γ_t−γ_i} k_t·k_i  (i < t)

so with T = (I + A)⁻¹ (one unit-lower-triangular solve per chunk): U = T diag(β) V − (T diag(β e^γ) K) S_0ᵀ,
O = scale · (diag(e^γ) Q S_0ᵀ + (QKᵀ ⊙ e^{γ_t−γ_i})_{i≤t} U), and the chunk's last state is
e^{γ_C} S_0 + Uᵀ diag(e^{γ_C−γ}) K. Only the state passes from chunk to chunk.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from memkit.ops.memory import full_precision, state_dtype

__all__ = ["chunk_delta_rule", "fla_delta_rule"]


def chunk_delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    g: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
    chunk_size: int = 64,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (gated) delta rule over T tokens, C at a time.

    q, k [B,H,T,K] (L2-normalised by the caller), v [B,H,T,V], beta [B,H,T] in (0, 1), g [B,H,T] the
    log decay (≤ 0; None: DeltaNet, no decay), initial_state [B,H,V,K] or None (zeros); scale defaults
    to K^−1/2. Returns (o [B,H,T,V] in v's dtype, final state [B,H,V,K] in the state dtype: fp32 for
    half-precision inputs). Any T works: the last chunk is padded with tokens that change nothing.
    """
    B, H, T, K = k.shape
    out_dtype, dt = v.dtype, state_dtype(v.dtype)
    scale = K**-0.5 if scale is None else scale
    S = (torch.zeros(B, H, v.shape[-1], K, device=v.device, dtype=dt) if initial_state is None
         else initial_state.to(dt))
    if T == 0:
        return v.new_zeros(v.shape), S
    C = min(chunk_size, T)
    pad = -T % C
    with full_precision(v.device):
        # padding: k = v = β = g = 0 leaves the state as it was (u = 0, decay e^0 = 1)
        q, k, v = (F.pad(t.to(dt), (0, 0, 0, pad)).unflatten(2, (-1, C)) for t in (q, k, v))  # [B,H,N,C,·]
        beta = F.pad(beta.to(dt), (0, pad)).unflatten(2, (-1, C))  # [B,H,N,C]
        gamma = None if g is None else F.pad(g.to(dt), (0, pad)).unflatten(2, (-1, C)).cumsum(-1)
        o, S = _chunks(q * scale, k, v, beta, gamma, S)
    return o.flatten(2, 3)[:, :, :T].to(out_dtype), S


def _within_chunk(q, k, v, beta, gamma):
    """What every chunk computes without the state, all chunks at once.

    -> (W = T diag(β e^γ) K [B,H,N,C,K], Ũ = T diag(β) V [B,H,N,C,V], causal scores with decay
    [B,H,N,C,C], e^γ [B,H,N,C] or None, e^{γ_C−γ} [B,H,N,C] or None)."""
    C = k.shape[-2]
    causal = torch.ones(C, C, dtype=torch.bool, device=k.device).tril()
    kk = k @ k.transpose(-1, -2)  # [B,H,N,C,C]
    qk = q @ k.transpose(-1, -2)
    if gamma is None:
        decay = causal.to(k.dtype)
        e_gamma = to_end = None
    else:  # e^{γ_t−γ_i} for i ≤ t; above the diagonal masked before exp (it could overflow there)
        decay = (gamma[..., :, None] - gamma[..., None, :]).masked_fill(~causal, float("-inf")).exp()
        e_gamma, to_end = gamma.exp(), (gamma[..., -1:] - gamma).exp()
    A = (beta[..., :, None] * kk * decay).tril(-1)
    eye = torch.eye(C, dtype=k.dtype, device=k.device)
    rhs = torch.cat((beta[..., None] * v, (beta if e_gamma is None else beta * e_gamma)[..., None] * k), -1)
    solved = torch.linalg.solve_triangular(eye + A, rhs, upper=False, unitriangular=True)
    U_tilde, W = solved.split((v.shape[-1], k.shape[-1]), -1)
    return W, U_tilde, qk * decay, e_gamma, to_end


def _chunks(q, k, v, beta, gamma, S):
    """q (already scaled), k [B,H,N,C,K], v [B,H,N,C,V], beta [B,H,N,C], gamma [B,H,N,C] or None,
    S [B,H,V,K] -> (o [B,H,N,C,V], final S)."""
    W, U_tilde, scores, e_gamma, to_end = _within_chunk(q, k, v, beta, gamma)
    if e_gamma is not None:  # the decays that do not depend on the state, for every chunk at once
        q, k = e_gamma[..., None] * q, to_end[..., None] * k
        chunk_decay = gamma[..., -1, None, None].exp().unbind(2)  # [B,H,1,1] per chunk
    # unbound once: indexing chunk n inside the loop would cost a full-size zero gradient per chunk
    parts = zip(q.unbind(2), k.unbind(2), W.unbind(2), U_tilde.unbind(2), scores.unbind(2))
    outs = []
    for n, (q_n, k_n, W_n, U_tilde_n, scores_n) in enumerate(parts):  # only the state is sequential
        S_t = S.transpose(-1, -2)  # [B,H,K,V]
        U = U_tilde_n - W_n @ S_t  # new values [B,H,C,V]
        outs.append(q_n @ S_t + scores_n @ U)
        if e_gamma is not None:
            S = chunk_decay[n] * S
        S = S + U.transpose(-1, -2) @ k_n
    return torch.stack(outs, 2), S


def fla_delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    g: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``chunk_delta_rule`` computed by flash-linear-attention's kernels (CUDA, ``pip install
    flash-linear-attention``): same arguments, shapes and state layout ([B,H,V,K]); fla's own are
    [B,T,H,·] and a state [B,H,K,V], converted here. Its kernels want half-precision inputs."""
    import inspect

    from fla.ops.delta_rule import chunk_delta_rule as fla_chunk
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule as fla_gated

    fn = fla_chunk if g is None else fla_gated
    seq = lambda t: t.transpose(1, 2).contiguous()  # noqa: E731  [B,H,T,·] -> [B,T,H,·]
    kwargs = dict(scale=k.shape[-1] ** -0.5 if scale is None else scale, output_final_state=True,
                  initial_state=None if initial_state is None else initial_state.transpose(-1, -2).float().contiguous())
    if "head_first" in inspect.signature(fn).parameters:  # older releases put heads first by default
        kwargs["head_first"] = False
    gates = () if g is None else (seq(g).float(),)
    o, S = fn(seq(q), seq(k), seq(v), *gates, seq(beta).to(q.dtype), **kwargs)
    return o.transpose(1, 2), S.transpose(-1, -2)

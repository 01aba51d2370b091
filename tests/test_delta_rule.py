"""The chunked (gated) delta rule against the per-token loop: outputs, gradients, final state, streaming."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from memkit.ops.delta import chunk_delta_rule
from memkit.ops.naive import naive_delta_rule

B, H, K, V = 2, 3, 4, 5


def inputs(T, gated, seed=0, dtype=torch.float64, decay=2.0):
    """q, k, v, beta, g, S0 as leaves (g None when not gated)."""
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)  # noqa: E731
    q, k = F.normalize(r(B, H, T, K), dim=-1), F.normalize(r(B, H, T, K), dim=-1)
    beta = torch.rand(B, H, T, generator=gen, dtype=torch.float64)
    g = -decay * torch.rand(B, H, T, generator=gen, dtype=torch.float64) if gated else None
    leaves = [q, k, r(B, H, T, V), beta, g, r(B, H, V, K)]
    return [None if t is None else t.to(dtype).requires_grad_() for t in leaves]


def outputs_and_grads(fn, leaves):
    """(o, S, gradients of every leaf) under a fixed random cotangent on o and on S."""
    o, S = fn(*leaves)
    gen = torch.Generator().manual_seed(1)
    # drawn in fp64 whatever the dtype, so fp32 and fp64 runs share it
    loss = (o * torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o.dtype)).sum() + \
        (S * torch.randn(S.shape, generator=gen, dtype=torch.float64).to(S.dtype)).sum()
    live = [t for t in leaves if t is not None]
    return o, S, torch.autograd.grad(loss, live)


def naive(q, k, v, beta, g, S0):
    return naive_delta_rule(q, k, v, beta, g, S0)


def chunked(C):
    return lambda q, k, v, beta, g, S0: chunk_delta_rule(q, k, v, beta, g, S0, chunk_size=C)


@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("T,C", [(12, 4), (12, 12), (13, 4), (13, 5), (7, 64), (9, 1)])
def test_chunked_equals_naive_fp64(gated, T, C):
    leaves = inputs(T, gated)
    o, S, grads = outputs_and_grads(chunked(C), leaves)
    o_ref, S_ref, grads_ref = outputs_and_grads(naive, leaves)
    tol = dict(atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(o, o_ref, **tol)
    torch.testing.assert_close(S, S_ref, **tol)
    for name, a, b in zip(("q", "k", "v", "beta", "g", "S0") if gated else ("q", "k", "v", "beta", "S0"),
                          grads, grads_ref):
        torch.testing.assert_close(a, b, **tol, msg=lambda m, name=name: f"d{name}: {m}")


@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("T,C", [(16, 8), (19, 8)])
def test_chunked_fp32_is_within_1e_5_of_the_fp64_loop(gated, T, C):
    leaves64 = inputs(T, gated)
    leaves32 = inputs(T, gated, dtype=torch.float32)
    o, S, grads = outputs_and_grads(chunked(C), leaves32)
    o_ref, S_ref, grads_ref = outputs_and_grads(naive, leaves64)
    assert o.dtype == S.dtype == torch.float32
    tol = dict(atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(o.double(), o_ref, **tol)
    torch.testing.assert_close(S.double(), S_ref, **tol)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a.double(), b, **tol)


def test_the_gate_decays_before_the_delta_step():
    # one token from a known state: S_1 = α S_0 + β (v − α S_0 k) kᵀ, read back with q = k
    S0 = torch.eye(2, dtype=torch.float64).view(1, 1, 2, 2)
    k = torch.tensor([1.0, 0.0], dtype=torch.float64).view(1, 1, 1, 2)
    v = torch.tensor([3.0, 5.0], dtype=torch.float64).view(1, 1, 1, 2)
    beta = torch.full((1, 1, 1), 0.5, dtype=torch.float64)
    g = torch.full((1, 1, 1), torch.tensor(0.25).log().item(), dtype=torch.float64)
    o, S = chunk_delta_rule(k, k, v, beta, g, S0, scale=1.0)
    # α S_0 k = (0.25, 0); the delta step moves it half-way to v: (0.25 + 1.375, 2.5)
    torch.testing.assert_close(o.flatten(), torch.tensor([1.625, 2.5], dtype=torch.float64))
    torch.testing.assert_close(S[0, 0, :, 1], torch.tensor([0.0, 0.25], dtype=torch.float64))


def test_strong_decay_stays_finite():
    # γ spans hundreds inside a chunk: e^{γ_t−γ_i} above the diagonal would overflow if not masked first
    q, k, v, beta, g, S0 = inputs(32, gated=True, decay=60.0)
    o, S, grads = outputs_and_grads(chunked(32), [q, k, v, beta, g, S0])
    o_ref, S_ref, _ = outputs_and_grads(naive, [q, k, v, beta, g, S0])
    assert all(torch.isfinite(t).all() for t in (o, S, *grads))
    torch.testing.assert_close(o, o_ref, atol=1e-10, rtol=1e-10)


@given(gated=st.booleans(), C=st.integers(1, 8), T=st.integers(1, 20), data=st.data())
def test_pieces_with_the_state_carried_equal_one_call(gated, C, T, data):
    q, k, v, beta, g, S0 = (None if t is None else t.detach() for t in inputs(T, gated))
    cuts = sorted(data.draw(st.lists(st.integers(0, T), max_size=3)))
    whole, S_whole = chunk_delta_rule(q, k, v, beta, g, S0, chunk_size=C)
    outs, S, start = [], S0, 0
    for end in cuts + [T]:
        part = lambda t: None if t is None else t[:, :, start:end]  # noqa: E731,B023
        o, S = chunk_delta_rule(part(q), part(k), part(v), part(beta), part(g), S, chunk_size=C)
        outs.append(o)
        start = end
    torch.testing.assert_close(torch.cat(outs, 2), whole, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(S, S_whole, atol=1e-12, rtol=1e-12)


def test_half_precision_inputs_keep_an_fp32_state():
    q, k, v, beta, g, _ = (None if t is None else t.detach() for t in inputs(10, gated=True))
    o, S = chunk_delta_rule(*(t.bfloat16() for t in (q, k, v, beta, g)), chunk_size=4)
    o_ref, S_ref = naive_delta_rule(q, k, v, beta, g)
    assert o.dtype == torch.bfloat16 and S.dtype == torch.float32
    torch.testing.assert_close(o.double(), o_ref, atol=3e-2, rtol=3e-2)
    torch.testing.assert_close(S.double(), S_ref, atol=3e-2, rtol=3e-2)

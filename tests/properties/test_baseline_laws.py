"""Baseline layers (DeltaNet, Gated DeltaNet, sliding-window and full attention): causality, and pieces with
the state carried equal one call."""

import torch
from hypothesis import given
from hypothesis import strategies as st

from memkit import DeltaNetAttentionSpec, WindowAttentionSpec

layers = st.one_of(
    st.builds(lambda gated, conv, C: DeltaNetAttentionSpec(hidden_size=8, num_heads=2, gated=gated, conv_size=conv,
                                                           chunk_size=C),
              st.booleans(), st.sampled_from([0, 1, 2, 4]), st.integers(1, 6)),
    st.builds(lambda W, rot: WindowAttentionSpec(hidden_size=8, num_heads=2, window=W, rotary_dim=rot),
              st.one_of(st.none(), st.integers(1, 8)), st.sampled_from([0, 2])),
)


def layer_and_input(spec, seed, T, B=2):
    torch.manual_seed(seed)
    layer = spec.build().double()
    if getattr(layer, "gated", False):  # decays near 1 at init: make them matter
        with torch.no_grad():
            layer.dt_bias.fill_(1.0)
    return layer, torch.randn(B, T, 8, dtype=torch.float64)


@given(spec=layers, seed=st.integers(0, 10_000), T=st.integers(2, 20), data=st.data())
def test_causal(spec, seed, T, data):
    layer, x = layer_and_input(spec, seed, T)
    t = data.draw(st.integers(0, T - 2))
    y, _ = layer(x)
    x2 = x.clone()
    x2[:, t + 1 :] = torch.randn_like(x2[:, t + 1 :])
    y2, _ = layer(x2)
    torch.testing.assert_close(y[:, : t + 1], y2[:, : t + 1], atol=1e-12, rtol=1e-12)
    assert not torch.allclose(y[:, t + 1 :], y2[:, t + 1 :])


@given(spec=layers, seed=st.integers(0, 10_000), T=st.integers(1, 24), data=st.data())
def test_pieces_with_state_equal_whole(spec, seed, T, data):
    layer, x = layer_and_input(spec, seed, T)
    cuts = sorted(data.draw(st.lists(st.integers(0, T), max_size=3)))
    whole, whole_state = layer(x)
    outs, state, start = [], None, 0
    for end in cuts + [T]:
        y, state = layer(x[:, start:end], state)
        outs.append(y)
        start = end
    # rotary angles are computed in fp32 from the first carried key: pieces agree to fp32 angle rounding
    tol = dict(atol=1e-7, rtol=1e-7) if getattr(spec, "rotary_dim", 0) else dict(atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(torch.cat(outs, 1), whole, **tol)
    for a, b in zip(vars(state).values(), vars(whole_state).values()):
        if a is not None:
            torch.testing.assert_close(a, b, **tol)

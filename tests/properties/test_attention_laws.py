"""MemoryAttention: causality, chunked = sequential (streaming), one memory = single-memory layer."""

import torch
from hypothesis import given
from hypothesis import strategies as st

from memkit import MemoryAttentionSpec

configs = st.fixed_dictionaries(
    {
        "segment_len": st.integers(1, 6),
        "update": st.sampled_from(["linear", "delta"]),
        "num_memories": st.integers(1, 3),
        "local": st.sampled_from(["softmax", "linear"]),
        "key_shift": st.booleans(),
        "rotary_dim": st.sampled_from([0, 2]),
    }
)


def layer_and_input(cfg, seed, T, B=2):
    torch.manual_seed(seed)
    layer = MemoryAttentionSpec(hidden_size=8, num_heads=2, gate_init=0.3, **cfg).build().double()
    return layer, torch.randn(B, T, 8, dtype=torch.float64)


@given(cfg=configs, seed=st.integers(0, 10_000), T=st.integers(2, 20), data=st.data())
def test_causal(cfg, seed, T, data):
    layer, x = layer_and_input(cfg, seed, T)
    t = data.draw(st.integers(0, T - 2))
    y, _ = layer(x)
    x2 = x.clone()
    x2[:, t + 1 :] = torch.randn_like(x2[:, t + 1 :])
    y2, _ = layer(x2)
    torch.testing.assert_close(y[:, : t + 1], y2[:, : t + 1])
    assert not torch.allclose(y[:, t + 1 :], y2[:, t + 1 :])


@given(cfg=configs, seed=st.integers(0, 10_000), T=st.integers(1, 24), data=st.data())
def test_pieces_with_state_equal_whole(cfg, seed, T, data):
    layer, x = layer_and_input(cfg, seed, T)
    cuts = sorted(data.draw(st.lists(st.integers(0, T), max_size=3)))
    whole, whole_state = layer(x)
    outs, state, start = [], None, 0
    for end in cuts + [T]:
        y, state = layer(x[:, start:end], state)
        outs.append(y)
        start = end
    torch.testing.assert_close(torch.cat(outs, 1), whole)
    torch.testing.assert_close(state.memory.M, whole_state.memory.M)
    assert state.memory.writes == whole_state.memory.writes == T // cfg["segment_len"]


@given(cfg=configs, seed=st.integers(0, 10_000))
def test_memory_reaches_across_segments_only_through_state(cfg, seed):
    # With the gate shut (g = 0) a later segment does not depend on an earlier one.
    L = cfg["segment_len"]
    layer, x = layer_and_input({**cfg, "key_shift": False}, seed, 3 * L)
    with torch.no_grad():
        layer.gate_logit.fill_(-1e4)
    x2 = x.clone()
    x2[:, :L] += 1.0
    torch.testing.assert_close(layer(x)[0][:, L:], layer(x2)[0][:, L:])
    with torch.no_grad():
        layer.gate_logit.fill_(0.0)
    assert not torch.allclose(layer(x)[0][:, L:], layer(x2)[0][:, L:])


@given(seed=st.integers(0, 10_000), update=st.sampled_from(["linear", "delta"]))
def test_one_memory_matches_reference_computation(seed, update):
    """The layer's output equals a plain segment loop written from docs/design.md."""
    from memkit.ops.naive import naive_causal_softmax, naive_read, naive_write

    layer, x = layer_and_input({"segment_len": 3, "update": update}, seed, T=9, B=1)
    q, k, v = layer.qkv(x).view(1, 9, 3, 2, 4).permute(2, 0, 3, 1, 4)
    M, z = torch.zeros(1, 2, 4, 4, dtype=x.dtype), torch.zeros(1, 2, 4, dtype=x.dtype)
    g = torch.sigmoid(layer.gate_logit).view(1, 2, 1, 1)
    outs = []
    for s in range(3):
        sl = slice(3 * s, 3 * s + 3)
        a_dot = naive_causal_softmax(q[:, :, sl], k[:, :, sl], v[:, :, sl])
        a_mem = naive_read(M, z, q[:, :, sl], layer.eps)
        outs.append(g * a_mem + (1 - g) * a_dot)
        M, z = naive_write(M, z, k[:, :, sl], v[:, :, sl], layer.eps, update)
    ref = layer.out(torch.cat(outs, 2).permute(0, 2, 1, 3).reshape(1, 9, 8))
    torch.testing.assert_close(layer(x)[0], ref)

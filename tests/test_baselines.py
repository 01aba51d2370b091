"""Baseline layers: DeltaNetAttention (DeltaNet, Gated DeltaNet) and WindowAttention (sliding window, full)."""

import importlib.util
import inspect

import pytest
import torch

from memkit import (
    DeltaNetAttention,
    DeltaNetAttentionSpec,
    DeltaNetState,
    SpecError,
    WindowAttention,
    WindowAttentionSpec,
)
from memkit.ops.delta import chunk_delta_rule, fla_delta_rule


@pytest.mark.parametrize("spec,block", [(DeltaNetAttentionSpec, DeltaNetAttention),
                                        (WindowAttentionSpec, WindowAttention)])
def test_spec_fields_match_block_signature(spec, block):
    params = inspect.signature(block.__init__).parameters
    assert set(spec.model_fields) == set(params) - {"self"}
    for name, field in spec.model_fields.items():
        if params[name].default is not inspect.Parameter.empty:
            assert params[name].default == field.default, name


@pytest.mark.parametrize("spec,fields,names", [
    (DeltaNetAttentionSpec, {"hidden_size": 10, "num_heads": 4}, "divisible by num_heads"),
    (DeltaNetAttentionSpec, {"conv_size": -1}, "conv_size"),
    (DeltaNetAttentionSpec, {"chunk_size": 0}, "chunk_size"),
    (DeltaNetAttentionSpec, {"kernel": "triton"}, "kernel"),
    (DeltaNetAttentionSpec, {"gate": True}, "not a field of DeltaNetAttentionSpec"),
    (WindowAttentionSpec, {"window": 0}, "window"),
    (WindowAttentionSpec, {"hidden_size": 16, "num_heads": 2, "rotary_dim": 3}, "rotary_dim must be even"),
    (WindowAttentionSpec, {"hidden_size": 16, "num_heads": 2, "rotary_dim": 10}, "at most head_dim (8)"),
])
def test_spec_errors_are_one_line_naming_the_field(spec, fields, names):
    with pytest.raises(SpecError) as err:
        spec.create(**fields)
    assert names in str(err.value) and "\n" not in str(err.value)


def window_loop(layer: WindowAttention, x, W):
    """Softmax attention written out query by query over keys max(0, t−W+1)..t (no rotary)."""
    q, k, v = layer.qkv(x).unflatten(-1, (3, layer.num_heads, layer.head_dim)).unbind(2)  # [B,T,H,d]
    out = torch.zeros_like(q)
    for t in range(x.shape[1]):
        lo = 0 if W is None else max(0, t - W + 1)
        scores = torch.einsum("bhd,bshd->bhs", q[:, t], k[:, lo : t + 1]) / layer.head_dim**0.5
        out[:, t] = torch.einsum("bhs,bshd->bhd", scores.softmax(-1), v[:, lo : t + 1])
    return layer.out(out.flatten(2))


@pytest.mark.parametrize("W", [None, 1, 3, 7])
def test_window_attention_equals_the_loop(W):
    torch.manual_seed(0)
    layer = WindowAttentionSpec(hidden_size=8, num_heads=2, window=W).build().double()
    x = torch.randn(2, 9, 8, dtype=torch.float64)
    torch.testing.assert_close(layer(x)[0], window_loop(layer, x, W))


def test_a_window_as_long_as_the_sequence_is_full_attention_and_a_shorter_one_is_not():
    torch.manual_seed(0)
    full = WindowAttentionSpec(hidden_size=8, num_heads=2, rotary_dim=2).build().double()
    x = torch.randn(2, 9, 8, dtype=torch.float64)

    def windowed(W):
        return WindowAttentionSpec(hidden_size=8, num_heads=2, window=W, rotary_dim=2).build().double()

    for W in (9, 20):
        layer = windowed(W)
        layer.load_state_dict(full.state_dict())
        torch.testing.assert_close(layer(x)[0], full(x)[0])
    short = windowed(8)
    short.load_state_dict(full.state_dict())
    assert not torch.allclose(short(x)[0][:, -1], full(x)[0][:, -1])


def test_window_state_keeps_the_last_w_minus_1_tokens_and_memory_nbytes_counts_them():
    layer = WindowAttentionSpec(hidden_size=8, num_heads=2, window=4).build()
    _, state = layer(torch.randn(3, 10, 8))
    assert state.k.shape == state.v.shape == (3, 2, 3, 4)
    assert layer.memory_nbytes() == 2 * 3 * 8 * 4
    full = WindowAttentionSpec(hidden_size=8, num_heads=2).build()
    assert full.memory_nbytes(seq_len=10) == 2 * 10 * 8 * 4
    with pytest.raises(ValueError, match="give seq_len"):
        full.memory_nbytes()


def test_deltanet_layer_runs_the_delta_rule_on_normalised_q_k():
    # conv_size 0: q, k, v = SiLU(projections); the layer's output is out(norm(delta rule)) on them
    torch.manual_seed(0)
    layer = DeltaNetAttentionSpec(hidden_size=8, num_heads=2, conv_size=0, chunk_size=3).build().double()
    x = torch.randn(2, 7, 8, dtype=torch.float64)
    q, k, v = torch.nn.functional.silu(layer.qkv(x)).unflatten(-1, (3, 2, 4)).permute(2, 0, 3, 1, 4)
    beta = torch.sigmoid(layer.b_proj(x)).transpose(1, 2)
    o, _ = chunk_delta_rule(q / q.norm(dim=-1, keepdim=True), k / k.norm(dim=-1, keepdim=True), v, beta, chunk_size=7)
    expected = layer.out(layer.norm(o.transpose(1, 2)).flatten(2))
    torch.testing.assert_close(layer(x)[0], expected)


def test_gated_deltanet_forgets_and_deltanet_does_not():
    # A token's trace in the state: with strong decay, 30 later tokens of zeros leave almost nothing.
    torch.manual_seed(0)
    x = torch.cat((torch.randn(1, 1, 8), torch.zeros(1, 30, 8)), 1)
    plain = DeltaNetAttentionSpec(hidden_size=8, num_heads=2, conv_size=0).build()
    gated = DeltaNetAttentionSpec(hidden_size=8, num_heads=2, conv_size=0, gated=True).build()
    with torch.no_grad():
        gated.dt_bias.fill_(5.0)
        gated.A_log.fill_(0.0)  # g = −softplus(5 + ...) ≈ −5 per token
    S_plain, S_gated = plain(x)[1].S, gated(x)[1].S
    assert S_plain.norm() > 0.1 and S_gated.norm() < 1e-6


def test_deltanet_state_detach_and_select():
    layer = DeltaNetAttentionSpec(hidden_size=8, num_heads=2, gated=True).build()
    _, state = layer(torch.randn(3, 5, 8))
    assert isinstance(state, DeltaNetState) and state.S.shape == (3, 2, 4, 4) and state.conv.shape == (3, 3, 24)
    assert state.S.requires_grad and not state.detach().S.requires_grad
    picked = state.select(torch.tensor([2, 0]))
    torch.testing.assert_close(picked.S, state.S[[2, 0]])
    torch.testing.assert_close(picked.conv, state.conv[[2, 0]])
    assert layer.memory_nbytes() == (2 * 4 * 4 + 3 * 24) * 4


def test_the_fla_kernel_says_it_needs_cuda():
    layer = DeltaNetAttentionSpec(hidden_size=8, num_heads=2, kernel="fla").build()
    with pytest.raises(RuntimeError, match="need a CUDA device"):
        layer(torch.randn(1, 3, 8))


needs_fla = pytest.mark.skipif(not (torch.cuda.is_available() and importlib.util.find_spec("fla")),
                               reason="needs CUDA and flash-linear-attention")


@pytest.mark.gpu
@needs_fla
@pytest.mark.parametrize("gated", [False, True])
def test_fla_kernels_equal_the_torch_path(gated):
    """flash-linear-attention's kernels against chunk_delta_rule (op: outputs, final state, gradients),
    and the whole layer with kernel="fla" against kernel="torch", in bf16 from an initial state."""
    torch.manual_seed(0)
    B, H, T, d = 2, 4, 200, 64
    dev, bf = "cuda", torch.bfloat16
    q, k = (torch.nn.functional.normalize(torch.randn(B, H, T, d, device=dev), dim=-1) for _ in range(2))
    leaves = [q, k, torch.randn(B, H, T, d, device=dev), torch.rand(B, H, T, device=dev),
              -torch.rand(B, H, T, device=dev) if gated else None, torch.randn(B, H, d, d, device=dev) * 0.1]
    runs = []
    for fn in (fla_delta_rule, chunk_delta_rule):
        inputs = [None if t is None else t.clone().to(bf if i < 4 else torch.float32).requires_grad_()
                  for i, t in enumerate(leaves)]
        o, S = fn(*inputs)
        (o.float().square().sum() + S.float().sum()).backward()
        runs.append([o.float(), S.float()] + [t.grad.float() for t in inputs if t is not None])
    for a, b in zip(*runs):
        assert (a - b).norm() <= 2e-2 * b.norm(), ((a - b).norm(), b.norm())
    spec = DeltaNetAttentionSpec(hidden_size=256, num_heads=4, gated=gated)
    torch_layer = spec.build().to(dev, bf)
    fla_layer = spec.with_overrides(kernel="fla").build().to(dev, bf)
    fla_layer.load_state_dict(torch_layer.state_dict())
    x = torch.randn(B, T, 256, device=dev, dtype=bf)
    (y_t, s_t), (y_f, s_f) = torch_layer(x), fla_layer(x)
    assert (y_f.float() - y_t.float()).norm() <= 2e-2 * y_t.float().norm()
    assert (s_f.S - s_t.S).norm() <= 2e-2 * s_t.S.norm()

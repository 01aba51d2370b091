import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from memkit import SpecError
from memkit.blocks.context_kv import (
    ContextBlock,
    ContextKVCache,
    ContextKVCacheSpec,
    context_slots,
)
from memkit.models.context_kv_lm import ContextKVLMSpec
from memkit.training.oacd import (
    OACDPretrainer,
    OACDSpec,
    convergence_rate,
    effective_rank,
    oacd_loss,
)


def cache(**kw):
    torch.manual_seed(0)
    base = dict(hidden_size=8, num_heads=2, context_dim=6, interval=3, max_contexts=4)
    base.update(kw)
    return ContextKVCache(**base).double()


@given(T=st.integers(2, 20), interval=st.integers(1, 5), K=st.integers(1, 6), mode=st.sampled_from(["fixed", "dynamic"]),
       seed=st.integers(0, 1000), data=st.data())
def test_causal_end_to_end(T, interval, K, mode, seed, data):
    torch.manual_seed(seed)
    block, layer = ContextBlock(8, 6).double(), cache(interval=interval, max_contexts=K, mode=mode)
    x = torch.randn(2, T, 8, dtype=torch.float64)
    y = layer(x, block(x))
    t = data.draw(st.integers(0, T - 2))
    x2 = x.clone()
    x2[:, t + 1 :] += 1.0
    torch.testing.assert_close(layer(x2, block(x2))[:, : t + 1], y[:, : t + 1])


def test_slots_point_back_by_interval_and_never_forward():
    idx, valid = context_slots(T=10, interval=3, slots=4)
    assert idx[9].tolist() == [9, 6, 3, 0] and valid[9].all()
    assert valid[4].tolist() == [True, True, False, False]
    assert (idx <= torch.arange(10)[:, None]).all()


@given(T=st.integers(1, 30), seed=st.integers(0, 1000))
def test_fixed_and_dynamic_agree_and_fixed_keeps_its_shape(T, seed):
    torch.manual_seed(seed)
    x, c = torch.randn(2, T, 8, dtype=torch.float64), torch.randn(2, T, 6, dtype=torch.float64)
    fixed, dynamic = cache(mode="fixed"), cache(mode="dynamic")
    dynamic.load_state_dict(fixed.state_dict())
    torch.testing.assert_close(fixed(x, c), dynamic(x, c))
    assert fixed.num_slots(T) == 4 and dynamic.num_slots(T) == min(4, (T - 1) // 3 + 1)
    # without masking (the reports' code) they differ only where the history is short
    raw_f, raw_d = cache(mask_padding=False), cache(mode="dynamic", mask_padding=False)
    raw_d.load_state_dict(raw_f.state_dict())
    full = 3 * 3  # from position 9 on, all 4 slots exist
    torch.testing.assert_close(raw_f(x, c)[:, full:], raw_d(x, c)[:, full:])


def test_history_and_theoretical_contexts_as_reported():
    layer = ContextKVCache(512, 8, 256, interval=20, max_contexts=32)
    assert layer.history_tokens == 640 and layer.theoretical_max_contexts(587_970) == 29_399


def test_oacd_loss_formula_on_hand_made_vectors():
    # Four vectors around the centroid (1, 1): deviations (±1, 0) and (0, ±2), so the deviations span
    # two directions and their Frobenius norm √10 differs from their spectral norm √8.
    X = torch.tensor([[2.0, 1.0], [0.0, 1.0], [1.0, 3.0], [1.0, -1.0]])
    assert float(oacd_loss(X)) == pytest.approx(-math.sqrt(10) / 4 + 0.1 * 2)
    spread = torch.tensor([[3.0, 1.0], [-1.0, 1.0], [1.0, 3.0], [1.0, -1.0]])  # same centroid, further apart
    assert oacd_loss(spread) < oacd_loss(X)


def test_oacd_gradient_pulls_the_centroid_toward_the_origin():
    X = (torch.randn(16, 4) + torch.tensor([3.0, -2.0, 1.0, 0.5])).requires_grad_()
    oacd_loss(X).backward()
    centroid_grad = X.grad.sum(0)  # d loss / d (common shift of every vector)
    mu = X.detach().mean(0)
    torch.testing.assert_close(centroid_grad, 0.2 * mu, rtol=1e-4, atol=1e-5)
    assert torch.dot(-centroid_grad, mu) < 0  # a descent step moves the centroid toward 0


def test_effective_rank_extremes_and_convergence_rate():
    assert effective_rank(torch.eye(6)) == pytest.approx(6.0)
    assert effective_rank(torch.ones(5, 6)) == pytest.approx(1.0)  # uncentred: identical rows count once
    # singular values 3 and 1: p = (0.75, 0.25) of their sum (not of their squares, which gives 1.38)
    by_hand = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))  # 1.7548
    assert effective_rank(torch.tensor([[3.0, 0.0], [0.0, 1.0], [0.0, 0.0]])) == pytest.approx(by_hand)
    a = torch.zeros(4, 3)
    b = a.clone()
    b[0] += 1.0
    assert convergence_rate(a, b, tol=0.03) == 0.75


def tiny_model():
    return ContextKVLMSpec.create(vocab_size=30, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, window=4,
                                  context=dict(context_dim=8, interval=2, max_contexts=3)).build()


def test_pretrainer_phases_and_frozen_parameters_stay_put():
    from memkit.training.trainer import TrainSpec, train

    torch.manual_seed(0)
    model = tiny_model()
    ids = torch.randint(0, 30, (24, 8))
    rows = OACDPretrainer(model, OACDSpec(max_iterations=5, batch_size=4, probe_samples=6, tol=1e-12)).phase1(ids)
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4, 5]
    assert all(0 <= r["convergence"] <= 1 and 0 < r["effective_rank"] <= 1 for r in rows)
    share = OACDPretrainer(model, OACDSpec()).freeze()
    frozen = sum(p.numel() for p in model.context_block.parameters())
    assert share == pytest.approx(1 - frozen / model.num_parameters())
    before = {k: v.clone() for k, v in model.context_block.state_dict().items()}
    other = model.cache.q.weight.detach().clone()
    train(model, (ids, ids), (ids, ids), TrainSpec(max_epochs=1, batch_size=8), progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.context_block.state_dict().items())
    assert not torch.equal(other, model.cache.q.weight)


def test_phase1_stops_at_the_convergence_threshold():
    torch.manual_seed(0)
    model = tiny_model()
    rows = OACDPretrainer(model, OACDSpec(max_iterations=30, lr=1e-6, threshold=0.9)).phase1(torch.randint(0, 30, (8, 8)))
    assert len(rows) == 1 and rows[0]["convergence"] >= 0.9  # a tiny lr barely moves anything


@pytest.mark.parametrize("fields, name", [({"interval": 0}, "interval"), ({"max_contexts": 0}, "max_contexts"),
                                          ({"context_dim": -4}, "context_dim"), ({"mode": "elastic"}, "mode")])
def test_bad_context_values_name_the_field(fields, name):
    with pytest.raises(SpecError, match=name):
        ContextKVCacheSpec.create(**fields)


def test_recipe_tiny_runs_both_phases_and_grid_keys_parse():
    from ablations.space import apply_overrides, grid_points, parse_space
    from recipes import context_kv

    space = parse_space(["interval=2,4", "kv_mode=fixed,dynamic", "max_contexts=4"], context_kv.SPEC, context_kv.ALIASES)
    assert len(grid_points(context_kv.tiny(), space)) == 4
    spec = apply_overrides(context_kv.tiny(), {"train.max_epochs": 1, "task.num_train": 32, "task.num_val": 16,
                                               "oacd.max_iterations": 2})
    out = context_kv.run(spec, progress=False)
    assert 1 <= out["oacd_iterations"] <= 2 and 0 < out["trainable_share"] < 1
    assert 0 <= out["recall_acc"] <= 1 and out["history_tokens"] == 8 * 4

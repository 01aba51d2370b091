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
    # without masking (the reports' code) they differ only where the history is short: fixed attends the zero
    # slots, dynamic leaves out what cannot exist yet (so it equals the masked output everywhere)
    raw_f, raw_d = cache(mask_padding=False), cache(mode="dynamic", mask_padding=False)
    raw_d.load_state_dict(raw_f.state_dict())
    full = 3 * 3  # from position 9 on, all 4 slots exist
    torch.testing.assert_close(raw_f(x, c)[:, full:], raw_d(x, c)[:, full:])
    torch.testing.assert_close(raw_d(x, c), fixed(x, c))


@given(T=st.integers(2, 30), seed=st.integers(0, 1000), mask=st.booleans(), data=st.data())
def test_dynamic_mode_output_does_not_depend_on_the_input_length(T, seed, mask, data):
    """A position's output is the same whatever follows it (generation needs this): the first t outputs
    of a T-token input equal those of the t-token input, masked or not."""
    torch.manual_seed(seed)
    layer = cache(mode="dynamic", mask_padding=mask)
    x, c = torch.randn(2, T, 8, dtype=torch.float64), torch.randn(2, T, 6, dtype=torch.float64)
    t = data.draw(st.integers(1, T - 1))
    torch.testing.assert_close(layer(x[:, :t], c[:, :t]), layer(x, c)[:, :t])


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


# --- report 004's system, by name (docs/design.md, "The reports' options") ---

@given(T=st.integers(1, 8), ffn=st.sampled_from(["mlp", "one_linear"]), seed=st.integers(0, 1000))
def test_the_parallel_iteration_reaches_the_recurrence_in_T_steps(T, ffn, seed):
    """Without noise each parallel iteration fixes one more position: after T of them, from any start, the
    contexts are the recurrent block's exactly."""
    torch.manual_seed(seed)
    block = ContextBlock(6, 4, ffn).double()
    e = torch.randn(2, T, 6, dtype=torch.float64)
    torch.testing.assert_close(block.parallel(e, T), block(e))
    if T > 1:  # one step short, the last position is still off
        assert not torch.allclose(block.parallel(e, T - 1)[:, -1], block(e)[:, -1])


def test_report_004s_model_has_the_reported_parameter_counts():
    """45,163,264 parameters, 6,301,440 (14%) trainable in Phase 2: frozen GPT-2-sized embeddings (50,257 × 768),
    a one-Linear context block (262,912 with its LayerNorm), no attention between tokens."""
    spec = ContextKVLMSpec.create(vocab_size=50257, hidden_size=768, num_heads=8, body="kv_only", embeddings="frozen",
                                  context_ffn="one_linear", context=dict(context_dim=256, interval=20, max_contexts=32))
    model = spec.build()
    assert model.num_parameters() == 45_163_264
    block = sum(p.numel() for n, p in model.context_block.named_parameters() if not n.startswith("norm_in"))
    assert block == 262_912
    share = OACDPretrainer(model, OACDSpec()).freeze()
    assert model.num_parameters(trainable_only=True) == 6_301_440 and round(share, 2) == 0.14


def test_kv_only_model_has_no_path_between_tokens_but_the_contexts():
    torch.manual_seed(0)
    model = ContextKVLMSpec.create(vocab_size=30, hidden_size=16, num_heads=2, body="kv_only",
                                   context=dict(context_dim=8, interval=2, max_contexts=3)).build().double().eval()
    ids = torch.randint(0, 30, (1, 6))
    other = ids.clone()
    other[0, 0] = (other[0, 0] + 1) % 30
    assert not torch.allclose(model(ids)[0][:, 5], model(other)[0][:, 5])  # through the contexts
    with torch.no_grad():
        model.cache.out.weight.zero_()  # context path shut: position 5 sees only token 5
    torch.testing.assert_close(model(ids)[0][:, 5], model(other)[0][:, 5])
    assert model.hf is None


def test_frozen_embeddings_load_from_a_local_file_and_bad_files_name_the_field(tmp_path):
    weight = torch.randn(30, 16)
    torch.save(weight, tmp_path / "wte.pt")
    spec = dict(vocab_size=30, hidden_size=16, num_heads=2, context=dict(context_dim=8, interval=2, max_contexts=3))
    model = ContextKVLMSpec.create(**spec, embeddings="frozen", embeddings_path=str(tmp_path / "wte.pt")).build()
    assert torch.equal(model.embed_in.weight, weight) and not model.embed_in.weight.requires_grad
    with pytest.raises(SpecError, match=r"embeddings_path: .*\[30, 16\].*vocab_size=40"):
        ContextKVLMSpec.create(**{**spec, "vocab_size": 40}, embeddings_path=str(tmp_path / "wte.pt"))
    with pytest.raises(SpecError, match="embeddings_path: no file"):
        ContextKVLMSpec.create(**spec, embeddings_path=str(tmp_path / "none.pt"))


def test_parallel_contexts_in_phase_2_iterate_from_a_random_start():
    torch.manual_seed(0)
    model = ContextKVLMSpec.create(vocab_size=30, hidden_size=16, num_heads=2, contexts="parallel_iterations",
                                   context_iterations=3, train_context_iterations=7,
                                   context=dict(context_dim=8, interval=2, max_contexts=3)).build().double()
    ids = torch.randint(0, 30, (2, 10))
    e = model.embed_in(ids)
    for training, steps in ((False, 3), (True, 7)):
        model.train(training)
        torch.manual_seed(1)
        got = model.contexts(ids)
        torch.manual_seed(1)
        torch.testing.assert_close(got, model.context_block.parallel(e, steps))


def test_cache_attention_dropout_only_in_training():
    layer, plain = cache(dropout=0.5), cache(dropout=0.0)
    plain.load_state_dict(layer.state_dict())  # the same weights, no dropout: the reference
    x, c = torch.randn(1, 9, 8, dtype=torch.float64), torch.randn(1, 9, 6, dtype=torch.float64)
    layer.eval()
    torch.testing.assert_close(layer(x, c), plain.eval()(x, c), rtol=0, atol=0)  # off in evaluation
    layer.train()
    assert not torch.allclose(layer(x, c), plain(x, c)) and not torch.allclose(layer(x, c), layer(x, c))


def test_reports_phase1_iterates_the_whole_stream_in_parallel_and_stops_by_their_rules():
    torch.manual_seed(0)
    model = ContextKVLMSpec.create(vocab_size=30, hidden_size=16, num_heads=2, body="kv_only", context_ffn="one_linear",
                                   context=dict(context_dim=8, interval=2, max_contexts=3)).build()
    ids = torch.randint(0, 30, (6, 10))
    spec = OACDSpec(phase1="parallel_fixed_point", lr=1e-9, noise=0.0, chunk_tokens=25, max_iterations=80, seed=3)
    rows = OACDPretrainer(model, spec).phase1(ids)
    # iteration 0 is a random start; iteration 1 recomputes all 60 tokens from it, shifted by one
    torch.manual_seed(3)
    start = torch.randn(1, 60, 8)
    with torch.no_grad():
        first = model.context_block.parallel(model.embed_in(ids.reshape(1, -1)), 1, start=start)
    assert rows[0]["convergence"] == pytest.approx(convergence_rate(start, first, spec.tol))
    # stops at 90% converged, or once past 50% when the gain stays under 1% two iterations running
    conv = [r["convergence"] for r in rows]

    def stop(i):
        stalled = i >= 2 and conv[i] - conv[i - 1] < 0.01 and conv[i - 1] - conv[i - 2] < 0.01
        return conv[i] >= 0.9 or (conv[i] > 0.5 and stalled)

    assert stop(len(conv) - 1) and not any(stop(i) for i in range(len(conv) - 1))
    # an exact tolerance: a fixed block converges one position per iteration, 0.5% of 200 tokens: the plateau
    # rule stops it just past half, far below 90%
    exact = spec.with_overrides(tol=1e-12, max_iterations=150)
    conv = [r["convergence"] for r in OACDPretrainer(model, exact).phase1(torch.randint(0, 30, (20, 10)))]
    assert 0.5 < conv[-1] < 0.6 and len(conv) < 150
    assert stop(len(conv) - 1) and not any(stop(i) for i in range(len(conv) - 1))


def test_parallel_contexts_in_evaluation_start_from_a_seeded_draw():
    """Evaluated twice, or in batches of other sizes, the same model gives the same logits (its checkpoint
    reproduces its trial's figures); training still draws from the global generator."""
    torch.manual_seed(0)
    model = ContextKVLMSpec.create(vocab_size=30, hidden_size=16, num_heads=2, contexts="parallel_iterations",
                                   context_iterations=3, train_context_iterations=3,
                                   context=dict(context_dim=8, interval=2, max_contexts=3)).build()
    ids = torch.randint(0, 30, (2, 10))
    model.eval()
    with torch.no_grad():
        first, second = model(ids)[0], model(ids)[0]
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    with torch.no_grad():  # a sequence's logits are its own, whatever batch it is measured in (--batch-size)
        alone = torch.cat([model(ids[i:i + 1])[0] for i in range(2)])
    torch.testing.assert_close(alone, first, rtol=1e-5, atol=1e-5)
    model.train()
    assert not torch.allclose(model.contexts(ids), model.contexts(ids))

"""Zoology-style MQAR: pairs first, each key queried once later at a power-law gap, its value the only target."""

import pytest
import torch

from ablations.trial import run_point
from memkit.eval.tasks.mqar import MQARTask
from memkit.spec import SpecError


def test_each_key_is_queried_once_after_the_pairs_and_its_value_is_the_target():
    task = MQARTask(vocab_size=64, seq_len=32, num_pairs=4)
    ids, targets = task.generate(50, seed=3)
    assert ids.shape == targets.shape == (50, 32)
    for row, tgt in zip(ids, targets):
        keys, values = row[:8:2].tolist(), row[1:8:2].tolist()
        assert len(set(keys)) == 4 and all(1 <= k < 32 for k in keys) and all(32 <= v < 64 for v in values)
        scored = (tgt != -100).nonzero().flatten().tolist()
        assert len(scored) == 4 and all(p >= 8 and p % 2 == 0 for p in scored)
        assert sorted(row[scored].tolist()) == sorted(keys)  # every key once, as a query
        answer = dict(zip(keys, values))
        assert all(tgt[p].item() == answer[row[p].item()] for p in scored)
    again, _ = task.generate(50, seed=3)
    assert torch.equal(ids, again) and not torch.equal(ids, task.generate(50, seed=4)[0])


def test_query_gaps_follow_the_power_law():
    """p(slot i) ∝ a·i^(a−1), a = 0.01: with one pair and 100 slots the first 10 slots hold
    Σ_{i≤10} i^−0.99 / Σ_{i≤100} i^−0.99 = 2.956 / 5.295 = 0.558 of the queries (uniform: 0.10)."""
    task = MQARTask(vocab_size=64, seq_len=202, num_pairs=1)
    _, targets = task.generate(4000, seed=0)
    slot = ((targets != -100).nonzero()[:, 1] - 2) // 2
    assert abs(float((slot < 10).float().mean()) - 0.558) < 0.03
    assert float((slot >= 50).float().mean()) > 0.1  # a long tail


def test_a_sequence_too_short_for_its_queries_is_one_clear_error():
    with pytest.raises(SpecError, match="seq_len"):
        MQARTask.create(seq_len=14, num_pairs=4)


@pytest.mark.slow
@pytest.mark.parametrize("layer", ["infini", "sliding_window", "gated_deltanet"])
def test_the_mqar_recipe_runs_each_design(layer):
    point = {"model.design.name": layer, "task.vocab_size": 64, "task.num_train": 64, "task.num_val": 16,
             "task.num_test": 16, "train.max_epochs": 1, "train.min_epochs": 1}
    out = run_point("mqar", "tiny", point)
    assert 0 <= out["recall_acc"] <= 1 and out["params"] > 0
    assert ("ko_read_recall_acc" in out) == (layer == "infini")


@pytest.mark.slow
@pytest.mark.parametrize("design", ["hierarchical", "deltanet"])
def test_the_passkey_recipe_runs_a_named_design_and_reports_by_depth(design):
    point = {"design": design, "task.num_train": 32, "task.num_val": 4, "train.max_epochs": 1,
             "train.min_epochs": 1}
    out = run_point("passkey", "tiny", point)
    depths = [f"passkey_{d}" for d in (0, 25, 50, 75, 100)]
    assert all(0 <= out[k] <= 1 for k in depths)
    assert out["passkey_mean"] == pytest.approx(sum(out[k] for k in depths) / 5)
    assert ("ko_read_passkey_mean" in out) == (design == "hierarchical")
    assert ("read_share_m3" in out) == (design == "hierarchical")  # four memories

"""Is the memory used? The figures on hand-made models whose answer is known: a shut gate changes nothing, a
model that can answer only through its memory falls to chance without it, an open gate over two segments gives
the memory half the output, hard selection has no entropy and equal memories have log N."""

import math

import pytest
import torch

from memkit.eval.memory_use import (
    gate_figures,
    knockout_figures,
    memory_use_figures,
    position_gain_figures,
    share_figures,
    with_gates,
)
from memkit.models.builder import MemoryBuilder
from memkit.models.memory_lm import MemoryLMSpec
from memkit.training.figures import perplexity_figures, position_figures
from memkit.training.trainer import TrainSpec, evaluate, train


def small(gate: float | None = None, **memory):
    torch.manual_seed(0)
    model = MemoryLMSpec.create(vocab_size=64, hidden_size=16, num_layers=2, num_heads=4, intermediate_size=32,
                                local_window="segment", memory=dict(segment_len=8, **memory)).build().double()
    if gate is not None:
        with torch.no_grad():
            model.memory.gate_logit.fill_(gate)
    return model.eval()


def batch(rows=6, length=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 64, (rows, length), generator=g)
    return ids, torch.roll(ids, -1, dims=1)


def test_gate_figures_are_each_heads_sigmoid_of_its_logit():
    model = small()
    with torch.no_grad():
        model.memory.gate_logit.copy_(torch.tensor([-2.0, 0.0, 1.0, 3.0]))
    out = gate_figures(model)
    expected = [1 / (1 + math.exp(2)), 0.5, 1 / (1 + math.exp(-1)), 1 / (1 + math.exp(-3))]
    assert [out[f"gate_h{i}"] for i in range(4)] == pytest.approx(expected, abs=1e-12)
    assert out["gate_mean"] == pytest.approx(sum(expected) / 4, abs=1e-12)
    plain = MemoryLMSpec.create(vocab_size=64, hidden_size=16, num_layers=1, num_heads=4, intermediate_size=32,
                                memory_layer=None).build()
    assert gate_figures(plain) == {} and memory_use_figures(plain, lambda: {}, ["val_ppl"]) == {}


def test_a_shut_gate_changes_nothing():
    """σ(−40) ≈ 4e−18: the memory contributes nothing, so neither knock-out moves a figure and its share is 0."""
    model, data = small(gate=-40.0), batch()
    measure = lambda: perplexity_figures(model, data, 4)  # noqa: E731
    out = knockout_figures(model, measure, ["val_ppl", "val_acc"])
    for what in ("read", "gate"):
        assert abs(out[f"ko_{what}_val_ppl_change"]) < 1e-12 and out[f"ko_{what}_val_acc_change"] == 0
    assert share_figures(model, measure)["mem_share_mean"] < 1e-12
    gains = position_gain_figures(model, lambda: position_figures(model, data, 4))
    assert gains and all(abs(v) < 1e-9 for v in gains.values())


def test_an_open_gate_gives_the_memory_every_token_it_can_read():
    """σ(40): the output is the memory read wherever there is one. The first segment reads an empty memory (A_mem
    = 0 exactly), the next two written ones: over three segments the memory's share is two thirds, per head."""
    model, data = small(gate=40.0), batch(length=24)
    out = share_figures(model, lambda: perplexity_figures(model, data, 4))
    for h in range(4):
        assert out[f"mem_share_h{h}"] == pytest.approx(2 / 3, abs=1e-9)
    knocked = knockout_figures(model, lambda: perplexity_figures(model, data, 4), ["val_ppl"])
    assert knocked["ko_read_val_ppl"] != knocked["ko_gate_val_ppl"]  # (1−g)·A_loc ≈ 0 against A_loc


def test_selection_entropy_is_zero_for_hard_top1_and_log_n_for_equal_memories():
    data = batch(rows=2, length=16)
    hard = small(num_memories=4, selection="hard", top_k=1)
    out = share_figures(hard, lambda: perplexity_figures(hard, data, 2))
    assert out["sel_entropy"] == pytest.approx(0.0, abs=1e-12) and out["sel_entropy_max"] == pytest.approx(math.log(4))
    assert sum(out[f"read_share_m{m}"] for m in range(4)) == pytest.approx(1.0)
    # four memories holding the same text have the same landmark: every read weighs them alike
    soft = small(num_memories=4)
    source = torch.randint(0, 64, (16,), generator=torch.Generator().manual_seed(3))
    built = MemoryBuilder(soft).build([source] * 4)
    state = built.select(torch.zeros(2, dtype=torch.long))
    out = share_figures(soft, lambda: soft(data[0][:, :8], state))  # one segment: it reads only the built memories
    assert out["sel_entropy"] == pytest.approx(math.log(4), abs=1e-9)
    assert [out[f"read_share_m{m}"] for m in range(4)] == pytest.approx([0.25] * 4, abs=1e-9)


@pytest.mark.slow
def test_a_model_that_answers_only_through_memory_falls_to_chance_and_its_gate_opened():
    """Recall where the plain layers see one segment: the answer lies only in memory. Trained under the trainer's
    defaults (gates at their own learning rate, no decay), the gate opens from 0.5 and recall leaves chance;
    knocked out, it falls back to chance (1/16)."""
    from recipes.infini_pythia import tiny

    spec = tiny()
    torch.manual_seed(0)
    task = spec.task.with_overrides(write_segments=2, query_segments=2, num_groups=2, keys_per_group=4,
                                    num_values=16, num_train=512, num_val=128)
    model = spec.model.with_overrides(vocab_size=task.vocab_size).build()
    train_data, val = task.splits(0)
    gates = []
    hook = with_gates(lambda row: gates.append(row["gate_mean"]), model)
    settings = TrainSpec.create(**{**spec.train.model_dump(), "max_epochs": 15, "min_epochs": 1, "solve_at": 0.6,
                                   "fresh_samples": False})
    train(model, train_data, val, settings, on_epoch=hook, progress=False)
    measure = lambda: {"acc": evaluate(model, val, 64)["acc"]}  # noqa: E731
    intact = measure()
    assert intact["acc"] >= 0.6, intact
    out = knockout_figures(model, measure, ["acc"], intact)
    chance = 1 / task.num_values
    assert out["ko_read_acc"] < chance + 0.04 and out["ko_gate_acc"] < chance + 0.04, out
    assert out["ko_read_acc_change"] < -0.8
    assert gates[0] > 0.5 and gates[-1] > 0.6, gates  # the gate's path, epoch by epoch: opening


def test_a_context_kv_read_knocked_out_leaves_each_token_alone():
    """Report 004's model without token-to-token attention (``body="kv_only"``) reaches earlier tokens only through
    its context-KV read: with the read knocked out, a position's logits no longer depend on any earlier token (and
    do again after the block). It has no gate: the read knock-out only, no gate or share figures."""
    from memkit.blocks.diagnostics import knock_out
    from memkit.models.context_kv_lm import ContextKVLMSpec

    torch.manual_seed(0)
    model = ContextKVLMSpec.create(vocab_size=64, hidden_size=16, num_heads=4, intermediate_size=32, body="kv_only",
                                   context=dict(context_dim=8, interval=4, max_contexts=4)).build().double().eval()
    a, _ = batch(rows=2, length=24)
    b = a.clone()
    b[:, :12] = (b[:, :12] + 7) % 64  # other tokens before position 12, the same from there on

    def logits(ids):
        with torch.no_grad():
            return model(ids).logits[:, 12:]

    assert not torch.allclose(logits(a), logits(b))  # intact, the read carries the earlier tokens
    with knock_out(model, "read"):
        assert torch.allclose(logits(a), logits(b))
    assert not torch.allclose(logits(a), logits(b))
    with pytest.raises(ValueError, match="a context-KV read has no gate"):  # never the intact model measured
        with knock_out(model, "gate"):
            pass
    measure = lambda: {"val_ppl": float(torch.nn.functional.cross_entropy(  # noqa: E731
        model(a).logits[:, :-1].flatten(0, 1), a[:, 1:].flatten()).exp())}
    with torch.no_grad():
        figures = knockout_figures(model, measure, ["val_ppl"])
        assert set(figures) == {"ko_read_val_ppl", "ko_read_val_ppl_change"} and figures["ko_read_val_ppl_change"] != 0
        assert gate_figures(model) == {} and share_figures(model, measure) == {}

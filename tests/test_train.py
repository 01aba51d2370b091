import math

import pytest
import torch
from torch import nn

from memkit.eval.metrics import perplexity
from memkit.training.trainer import TrainSpec, evaluate, param_groups, train


class Bigram(nn.Module):
    """forward(ids) -> (logits, None): a table of next-token logits."""

    def __init__(self, vocab):
        super().__init__()
        self.table = nn.Embedding(vocab, vocab)
        self.gate_logit = nn.Parameter(torch.zeros(2))
        self.gate_logit.memkit_group = "gate"

    def forward(self, ids):
        return self.table(ids) + 0 * self.gate_logit.sum(), None


def shift_data(n, T=8, vocab=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (n, T), generator=g)
    return ids, (ids + 1) % vocab  # next token is a function of this one


def test_perplexity_of_perfect_and_uniform_models():
    ids, targets = shift_data(4)
    model = Bigram(5)
    with torch.no_grad():
        model.table.weight.zero_()
    assert evaluate(model, (ids, targets), 2)["ppl"] == pytest.approx(5.0)  # uniform -> vocab size
    with torch.no_grad():
        model.table.weight.copy_(torch.roll(torch.eye(5), 1, dims=1) * 100)
    out = evaluate(model, (ids, targets), 2)
    assert out["ppl"] == pytest.approx(1.0) and out["acc"] == 1.0
    assert math.isnan(perplexity(0.0, 0))


def test_trainer_learns_and_reports_each_epoch():
    rows = []
    model = Bigram(5)
    val = shift_data(16, seed=1)
    before = evaluate(model, val, 8)["ppl"]
    spec = TrainSpec(lr=0.5, max_epochs=5, batch_size=8, warmup_steps=0)
    res = train(model, shift_data(64), val, spec, on_epoch=rows.append, progress=False)
    assert [r["epoch"] for r in rows] == list(range(1, len(rows) + 1))
    # it learns: the mapping is solved, and validation perplexity ends far below the untrained model's
    assert rows[-1]["val_acc"] == 1.0 and rows[-1]["val_ppl"] < 0.5 * before
    # the best epoch is the one with the lowest val loss, and its figures are reported
    best = min(rows, key=lambda r: r["val_loss"])
    assert res.best_epoch == best["epoch"] and res.best["val_ppl"] == best["val_ppl"]
    assert res.tokens_per_second > 0 and res.seconds_per_epoch > 0


def test_early_stopping_restores_the_best_epoch():
    # Validation on the opposite mapping gets worse as training fits the train mapping.
    ids, targets = shift_data(64)
    val = (ids[:16], (ids[:16] + 2) % 5)
    model = Bigram(5)
    res = train(model, (ids, targets), val, TrainSpec(lr=0.5, max_epochs=20, patience=2, batch_size=8, warmup_steps=0),
                progress=False)
    assert res.stopped_early and len(res.history) == res.best_epoch + 2
    assert evaluate(model, val, 8)["loss"] == pytest.approx(res.best["val_loss"], rel=1e-6)


def test_gates_get_their_own_learning_rate_and_no_decay():
    groups = param_groups(Bigram(5), TrainSpec(lr=1e-3, gate_lr=5e-2, weight_decay=0.1))
    gate = [g for g in groups if any(getattr(p, "memkit_group", None) == "gate" for p in g["params"])]
    assert len(gate) == 1 and gate[0]["lr"] == 5e-2 and gate[0]["weight_decay"] == 0.0


def test_seed_makes_runs_repeatable():
    def once(seed=0):
        torch.manual_seed(123)  # init differs per call otherwise
        model = Bigram(5)
        train(model, shift_data(32), shift_data(8, seed=1), TrainSpec(lr=0.1, max_epochs=2, batch_size=8, seed=seed),
              progress=False)
        return model.table.weight.detach().clone()

    assert torch.equal(once(), once())
    assert not torch.equal(once(), once(seed=1))  # another seed: another data order, other weights


class Scripted(nn.Module):
    """Validation outputs scripted by the number of training steps taken (a buffer, so restoring the
    best epoch restores its outputs). One batch per epoch: step k = after epoch k.

    Two scored positions, target 0 at both:
    - after epoch 1: right at both, barely (logit margin 0.1): acc 1.0, loss -log σ(0.1) ≈ 0.644;
    - after epoch 2: one confident right (margin 5), one barely wrong: acc 0.5, loss ≈ 0.375;
    - after that: wrong at both (margin 5): acc 0.0, loss ≈ 5.007."""

    SCRIPT = {1: [[0.1, 0.0], [0.1, 0.0]], 2: [[5.0, 0.0], [0.0, 0.1]]}

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, ids):
        if self.training:
            self.steps += 1
        rows = self.SCRIPT.get(int(self.steps), [[0.0, 5.0], [0.0, 5.0]])
        logits = torch.tensor(rows).expand(ids.shape[0], 2, 2) + 0 * self.w
        return logits, None


def scripted_data():
    return torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 2, dtype=torch.long)


@pytest.mark.parametrize("monitor, best_epoch, restored_acc", [("acc", 1, 1.0), ("loss", 2, 0.5)])
def test_early_stopping_and_restore_follow_the_monitored_figure(monitor, best_epoch, restored_acc):
    model = Scripted()
    spec = TrainSpec(lr=0.1, max_epochs=10, patience=2, batch_size=1, warmup_steps=0, monitor=monitor)
    res = train(model, scripted_data(), scripted_data(), spec, progress=False)
    assert res.best_epoch == best_epoch and res.stop == "converged" and not res.capped
    assert len(res.history) == best_epoch + 2  # patience 2 after the best epoch
    assert evaluate(model, scripted_data(), 1)["acc"] == restored_acc


def test_a_run_stops_when_solved_and_is_flagged_capped_at_the_cap():
    spec = TrainSpec(lr=0.1, max_epochs=10, patience=5, batch_size=1, warmup_steps=0, monitor="acc", solve_at=0.99)
    res = train(Scripted(), scripted_data(), scripted_data(), spec, progress=False)
    assert res.stop == "solved" and len(res.history) == 1 and not res.capped
    # at the cap before patience runs out: still improving as far as the run can tell
    res = train(Scripted(), scripted_data(), scripted_data(), spec.with_overrides(solve_at=None, max_epochs=2),
                progress=False)
    assert res.stop == "cap" and res.capped and len(res.history) == 2


def test_min_delta_makes_small_gains_count_as_flat():
    # loss 0.644 -> 0.375 is a gain of 0.269: it resets patience with min_delta 0.2, not with 0.3
    base = TrainSpec(lr=0.1, max_epochs=10, patience=1, batch_size=1, warmup_steps=0, monitor="loss")
    res = train(Scripted(), scripted_data(), scripted_data(), base.with_overrides(min_delta=0.2), progress=False)
    assert len(res.history) == 3 and res.best_epoch == 2
    res = train(Scripted(), scripted_data(), scripted_data(), base.with_overrides(min_delta=0.3), progress=False)
    assert len(res.history) == 2 and res.best_epoch == 2  # still restored: the best epoch is the lowest loss


def test_time_to_a_share_of_the_final_recall():
    from memkit.training.trainer import TrainResult

    accs = [0.1, 0.3, 0.8, 0.9, 0.85]
    res = TrainResult(history=[{"epoch": i + 1, "val_acc": a} for i, a in enumerate(accs)], best={"val_acc": 0.9},
                      tokens_per_epoch=1000)
    assert res.time_to(0.5) == (3, 3000)  # 0.45 first reached at epoch 3
    assert res.time_to(0.9) == (4, 4000)  # 0.81 first reached at epoch 4
    res.best = {"val_acc": 0.0}
    assert res.time_to(0.5) == (None, None)  # nothing learned: never


def test_warmup_then_cosine_learning_rate():
    from memkit.training.trainer import lr_factor

    spec = TrainSpec(warmup_steps=2, schedule="cosine", final_lr=0.1)
    # warmup 1/2, 2/2; then cosine over the 8 remaining steps from 1 to 0.1: halfway 0.55, end 0.1
    assert [lr_factor(s, 10, spec) for s in (0, 1, 2)] == [0.5, 1.0, 1.0]
    assert lr_factor(6, 10, spec) == pytest.approx(0.55) and lr_factor(10, 10, spec) == pytest.approx(0.1)
    assert lr_factor(6, 10, spec.with_overrides(schedule="constant")) == 1.0


def test_fresh_samples_draw_new_data_every_epoch():
    asked = []

    def draw(epoch):
        asked.append(epoch)
        return shift_data(16, seed=epoch)

    spec = TrainSpec(lr=0.5, max_epochs=3, patience=5, batch_size=8, warmup_steps=0, fresh_samples=True)
    train(Bigram(5), draw, shift_data(8, seed=99), spec, progress=False)
    assert asked == [1, 2, 3]
    with pytest.raises(ValueError, match="fresh_samples"):
        train(Bigram(5), shift_data(16), shift_data(8), spec, progress=False)


def test_each_epoch_is_a_log_line_without_a_terminal(caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="memkit.train"):
        train(Bigram(5), shift_data(16), shift_data(8, seed=1), TrainSpec(max_epochs=2, batch_size=8), progress=False)
    lines = [r.getMessage() for r in caplog.records if r.name == "memkit.train"]
    assert len(lines) == 2 and lines[0].startswith("epoch   1") and "val_acc=" in lines[1]


def test_gradient_accumulation_takes_the_same_step_as_one_batch():
    """Two micro-batches of 4 with unequal scored tokens give the weights one batch of 8 gives (fp64)."""
    ids, targets = shift_data(8, seed=3)
    targets = targets.clone()
    targets[:2, :5] = -100  # the first micro-batch scores fewer tokens: each is weighted by its share
    weights = []
    for micro in (1, 2):
        torch.manual_seed(0)
        model = Bigram(5).double()
        spec = TrainSpec(lr=0.1, max_epochs=1, batch_size=8, grad_accumulation=micro, warmup_steps=0, seed=1)
        train(model, (ids, targets), (ids, targets), spec, progress=False)
        weights.append(model.table.weight.detach().clone())
    torch.testing.assert_close(weights[0], weights[1], rtol=1e-12, atol=1e-12)


@pytest.mark.slow
def test_bf16_autocast_training_reaches_the_fp32_figures_within_seed_noise():
    """A small memory LM on recall, fp32 and bf16 autocast (CPU), three seeds each: the bf16 runs' best
    validation loss lies within the fp32 seeds' spread (their range widened by its own size)."""
    from memkit.eval.tasks.recall import RecallTask
    from memkit.models.memory_lm import MemoryLMSpec

    task = RecallTask(segment_len=8, write_segments=4, query_segments=1, num_groups=4, keys_per_group=8, num_values=8,
                      num_train=256, num_val=64)
    losses = {"fp32": [], "bf16": []}
    for precision in losses:
        for seed in range(3):
            torch.manual_seed(seed)
            model = MemoryLMSpec.create(vocab_size=task.vocab_size, hidden_size=32, num_layers=1, num_heads=2,
                                        intermediate_size=64, local_window="segment",
                                        memory=dict(segment_len=8, num_memories=2)).build()
            spec = TrainSpec(lr=3e-3, batch_size=32, max_epochs=4, patience=4, precision=precision, seed=seed)
            result = train(model, *task.splits(seed), spec, progress=False)
            losses[precision].append(result.best["val_loss"])
    lo, hi = min(losses["fp32"]), max(losses["fp32"])
    margin = hi - lo
    assert all(lo - margin <= v <= hi + margin for v in losses["bf16"]), losses
    assert losses["bf16"] != losses["fp32"]  # bf16 really ran


def test_training_reports_peak_memory():
    res = train(Bigram(5), shift_data(16), shift_data(8, seed=1), TrainSpec(max_epochs=1, batch_size=8), progress=False)
    assert res.peak_memory_mb > 10  # at least the interpreter's resident set


@pytest.mark.slow
def test_a_compiled_model_trains_like_the_eager_one():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    outs = []
    for compiled in (False, True):
        torch.manual_seed(0)
        model = Bigram(5)
        spec = TrainSpec(lr=0.5, max_epochs=2, batch_size=8, warmup_steps=0, compile_model=compiled)
        outs.append(train(model, shift_data(32), shift_data(8, seed=1), spec, progress=False).best["val_loss"])
    assert outs[0] == pytest.approx(outs[1], rel=1e-4)
    assert counters["stats"]["unique_graphs"] > 0  # the forward really went through torch.compile


def test_no_convergence_stop_before_min_epochs():
    # flat from epoch 3 on (patience 2 would stop at epoch 4); min_epochs 6 keeps it going to epoch 6
    spec = TrainSpec(lr=0.1, max_epochs=10, patience=2, batch_size=1, warmup_steps=0, monitor="acc", min_epochs=6)
    res = train(Scripted(), scripted_data(), scripted_data(), spec, progress=False)
    assert res.stop == "converged" and len(res.history) == 6 and res.best_epoch == 1


@pytest.mark.parametrize("scope", ["sequence", "batch_shared"])
def test_a_run_resumed_from_its_saved_state_ends_as_an_uninterrupted_one(tmp_path, scope):
    """Killed after epoch 2 of 5 and resumed from the state saved then (through torch.save and a
    weights-only load), a run ends with the uninterrupted run's epochs, figures and weights: data order,
    dropout, optimiser, learning-rate schedule and the reports' batch-shared memory (never reset) go on."""
    from memkit.eval.tasks.recall import RecallTask
    from memkit.models.memory_lm import MemoryLMSpec
    from memkit.training.trainer import EpochHook, TrainState

    task = RecallTask(segment_len=4, write_segments=3, query_segments=1, num_groups=3, keys_per_group=4,
                      num_values=6, num_train=64, num_val=16)
    spec = TrainSpec(lr=3e-3, batch_size=16, max_epochs=5, patience=5, schedule="cosine", warmup_steps=3, seed=2)

    def model():
        torch.manual_seed(0)
        return MemoryLMSpec.create(vocab_size=task.vocab_size, hidden_size=16, num_layers=1, num_heads=2,
                                   intermediate_size=32, hidden_dropout=0.1,
                                   memory=dict(segment_len=4, num_memories=2, memory_scope=scope,
                                               shared_reset="once")).build()

    class Killed(Exception):
        pass

    class Hook(EpochHook):
        def __init__(self, kill_after=None, resume=None):
            self.rows, self.kill_after, self.resume = [], kill_after, resume

        def save_state(self, state, model):
            torch.save(state.as_dict(), tmp_path / "state.pt")

        def resume_state(self):
            return self.resume

        def __call__(self, row):
            self.rows.append(row)
            if row["epoch"] == self.kill_after:
                raise Killed

    whole, full = model(), Hook()
    expected = train(whole, *task.splits(0), spec, on_epoch=full, progress=False)
    with pytest.raises(Killed):
        train(model(), *task.splits(0), spec, on_epoch=Hook(kill_after=2), progress=False)
    saved = TrainState.from_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert saved.epoch == 2
    again, rest = model(), Hook(resume=saved)
    got = train(again, *task.splits(0), spec, on_epoch=rest, progress=False)
    assert [r["epoch"] for r in rest.rows] == [3, 4, 5]  # continuous: nothing redone, nothing skipped
    assert [r["epoch"] for r in got.history] == [1, 2, 3, 4, 5]
    for a, b in zip(full.rows[2:], rest.rows):
        a, b = ({k: v for k, v in r.items() if k != "seconds"} for r in (a, b))  # wall time differs
        assert a == pytest.approx(b, rel=1e-6), (a, b)
    assert got.best_epoch == expected.best_epoch
    for (name, a), b in zip(whole.state_dict().items(), again.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_time_to_counts_from_chance_and_a_run_on_its_plateau_never_arrives():
    from memkit.training.trainer import TrainResult

    accs = [0.1, 0.3, 0.5, 0.9]
    res = TrainResult(history=[{"epoch": i + 1, "val_acc": a} for i, a in enumerate(accs)], best={"val_acc": 0.9},
                      tokens_per_epoch=10)
    # half way from chance 0.2 to 0.9 is 0.55: epoch 4; half of 0.9 with no chance given is 0.45: epoch 3
    assert res.time_to(0.5, chance=0.2) == (4, 40) and res.time_to(0.5) == (3, 30)
    res = TrainResult(history=[{"epoch": 1, "val_acc": 0.016}, {"epoch": 2, "val_acc": 0.02}], best={"val_acc": 0.02},
                      tokens_per_epoch=10)
    assert res.time_to(0.5, chance=1 / 64) == (None, None)  # 0.02 < twice chance: never left the plateau

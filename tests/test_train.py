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
    def once():
        torch.manual_seed(123)  # init differs per call otherwise
        model = Bigram(5)
        train(model, shift_data(32), shift_data(8, seed=1), TrainSpec(lr=0.1, max_epochs=2, batch_size=8), progress=False)
        return model.table.weight.detach().clone()

    assert torch.equal(once(), once())

"""The evaluation suite: metric functions against hand-computed values, task generators against
solvers that know the answer, and the reversal set's construction."""

import math

import pytest
import torch
from torch import nn

from memkit.data.tokenizer import ByteTokenizer
from memkit.eval.metrics import IGNORE, completion_scores, position_buckets, position_ppl
from memkit.eval.tasks.passkey import PasskeyTask, accuracy_by_depth
from memkit.eval.tasks.recall import RecallTask, accuracy_by_distance
from memkit.eval.tasks.reversal import ReversalTask

BIG = 50.0


class Solver(nn.Module):
    """forward(ids [B,T]) -> (logits, None) with logits[b,t] peaked at rule(ids[b], t) (None: uniform)."""

    def __init__(self, vocab: int, rule):
        super().__init__()
        self.vocab, self.rule = vocab, rule
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, ids, state=None):
        logits = torch.zeros(*ids.shape, self.vocab)
        for b in range(ids.shape[0]):
            row = ids[b].tolist()
            for t in range(len(row)):
                nxt = self.rule(row, t)
                if nxt is not None:
                    logits[b, t, nxt] = BIG
        return logits, None


class Lookup(Solver):
    """Predicts the next token of any known sequence whose prefix it sees."""

    def __init__(self, vocab: int, sequences: list[list[int]]):
        table = {}
        for s in sequences:
            for t in range(len(s) - 1):
                table[tuple(s[: t + 1])] = s[t + 1]
        super().__init__(vocab, lambda row, t: table.get(tuple(row[: t + 1])))


def text_data(n=6, T=40, V=11, seed=0):
    """Rows of T+1 random tokens, each row's first token its index (so no two rows share a prefix)."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.randint(0, V, (n, T + 1), generator=g)
    rows[:, 0] = torch.arange(n)
    return rows[:, :-1], rows[:, 1:]


def test_position_buckets_follow_the_reports():
    assert position_buckets(256) == [(0, 16), (16, 32), (32, 64), (64, 96), (96, 256)]
    assert position_buckets(1024)[-2:] == [(256, 512), (512, 1024)]
    assert position_buckets(100)[-1] == (96, 100)
    assert position_buckets(20) == [(0, 16), (16, 20)]


def test_perfect_model_has_perplexity_one_and_uniform_has_vocab_size():
    V = 11
    ids, targets = text_data(V=V)
    seqs = [torch.cat((i, t[-1:])).tolist() for i, t in zip(ids, targets)]
    perfect = position_ppl(Lookup(V, seqs), (ids, targets), batch_size=4)
    uniform = position_ppl(Solver(V, lambda row, t: None), (ids, targets), batch_size=4)
    assert set(perfect) == {"0-16", "16-32", "32-40"}
    assert all(v == pytest.approx(1.0, abs=1e-6) for v in perfect.values())
    assert all(v == pytest.approx(V, rel=1e-5) for v in uniform.values())


def test_position_ppl_skips_ignored_targets():
    V = 7
    ids, targets = text_data(V=V)
    targets = targets.clone()
    targets[:, :16] = IGNORE  # nothing scored in the first bucket
    out = position_ppl(Solver(V, lambda row, t: None), (ids, targets))
    assert math.isnan(out["0-16"]) and out["16-32"] == pytest.approx(V, rel=1e-5)


def test_completion_scores_exact_match_and_logprob():
    V = 9
    pairs = [([1, 2, 3], [4, 5]), ([2, 2], [6, 7, 8])]
    hit, logp = completion_scores(Lookup(V, [p + c for p, c in pairs]), pairs)
    assert hit.tolist() == [True, True] and logp.abs().max() < 1e-6
    hit, logp = completion_scores(Solver(V, lambda row, t: None), pairs)
    assert logp.tolist() == pytest.approx([-2 * math.log(V), -3 * math.log(V)], rel=1e-5)
    # one wrong token in the completion -> no exact match
    wrong = Lookup(V, [[1, 2, 3, 4, 6], [2, 2, 6, 7, 8]])
    hit, _ = completion_scores(wrong, pairs)
    assert hit.tolist() == [False, True]


# --- reversal ---------------------------------------------------------------------------------

def test_reversal_set_never_trains_the_test_direction():
    task = ReversalTask(num_facts=40, num_both=30, repeats=3, seed=5)
    texts = task.train_texts()
    facts = task.facts()
    assert len({n for n, _ in facts}) == len(facts) == len({d for _, d in facts})
    assert len(texts) == (40 + 2 * 30) * 3
    blob = "\n".join(texts)
    for (name, desc), (rp, rc) in zip(task.test_facts(), task.pairs("reverse")):
        assert texts.count(task.forward_sentence(name, desc)) == 3
        assert (rp + rc) not in blob and task.reverse_sentence(name, desc) not in texts
    for name, desc in facts[40:]:  # the "both" facts teach the reverse form
        assert texts.count(task.reverse_sentence(name, desc)) == 3
    assert ReversalTask(num_facts=40, num_both=30, repeats=3, seed=5).train_texts() == texts


def test_reversal_scores_a_model_that_knows_the_answers():
    tok = ByteTokenizer()
    task = ReversalTask(num_facts=6, num_both=0, repeats=1)
    eos = [tok.eos_id]
    both = [eos + tok.encode(p + c) for d in ("forward", "reverse") for p, c in task.pairs(d)]
    both += [eos + tok.encode(f(n, d)) for n, d in task.test_facts()
             for f in (task.forward_sentence, task.reverse_sentence)]
    out = task.evaluate(Lookup(tok.vocab_size, both), tok)
    assert out["forward_acc"] == 1.0 and out["reverse_acc"] == 1.0 and out["acc_gap"] == 0.0
    fwd_only = [eos + tok.encode(p + c) for p, c in task.pairs("forward")]
    fwd_only += [eos + tok.encode(task.forward_sentence(n, d)) for n, d in task.test_facts()]
    out = task.evaluate(Lookup(tok.vocab_size, fwd_only), tok)
    assert out["forward_acc"] == 1.0 and out["reverse_acc"] == 0.0 and out["acc_gap"] == 1.0
    assert out["logprob_gap"] > 0 and out["reports_backward_ppl"] > out["reports_forward_ppl"]
    # the reports' variant scores whole sentences: with one fact, a memorised sentence has PPL 1
    one = ReversalTask(num_facts=1, num_both=0)
    (name, desc), = one.test_facts()
    out = one.evaluate(Lookup(tok.vocab_size, [eos + tok.encode(one.forward_sentence(name, desc))]), tok)
    assert out["reports_forward_ppl"] == pytest.approx(1.0, abs=1e-5)
    assert out["reports_backward_ppl"] > 100 and out["reports_gap"] > 99


# --- passkey ----------------------------------------------------------------------------------

def passkey_solver(task: PasskeyTask):
    """Finds the needle and reads the digits after it: the answer, from where the task put it."""

    def rule(row, t):
        if task.ask_id not in row[: t + 1]:
            return None
        i = t - row.index(task.ask_id)  # position inside the answer
        start = row.index(task.key_id)
        return row[start + 1 + i] if i < task.digits else None

    return Solver(task.vocab_size, rule)


@pytest.mark.parametrize("digits,seq_len", [(1, 16), (5, 64), (3, 37)])
def test_passkey_places_the_needle_at_its_depth(digits, seq_len):
    task = PasskeyTask(seq_len=seq_len, digits=digits, filler_len=5, num_val=8)
    for depth in (0.0, 0.3, 1.0):
        ids, targets, start = task.generate(8, seed=1, depth=depth)
        assert (start == task.needle_start(depth)).all()
        q = seq_len - digits - 1
        for b in range(8):
            s = int(start[b])
            key = ids[b, s + 1 : s + 1 + digits]
            assert ids[b, s] == ids[b, s + digits + 1] == task.key_id and s + digits + 1 < q
            assert ((key >= task.digit0) & (key < task.digit0 + 10)).all()
            assert ids[b, q] == task.ask_id and torch.equal(ids[b, q + 1 :], key)
            assert torch.equal(targets[b, q : q + digits], key) and (targets[b, :q] == IGNORE).all()
    assert task.needle_start(0.0) == 0 and task.needle_start(1.0) == task.room


def test_passkey_solver_scores_everything_and_a_blind_model_nothing():
    task = PasskeyTask(seq_len=48, digits=3, filler_len=7, num_val=10, depths=[0.0, 0.5, 1.0])
    assert accuracy_by_depth(passkey_solver(task), task) == {0.0: 1.0, 0.5: 1.0, 1.0: 1.0}
    blind = Solver(task.vocab_size, lambda row, t: task.digit0)  # always says "0"
    assert max(accuracy_by_depth(blind, task).values()) < 0.2


def test_passkey_test_samples_are_drawn_apart_from_validation_and_training():
    task = PasskeyTask(seq_len=48, digits=5, filler_len=7, num_train=64, num_val=32, depths=[0.0, 1.0])
    train, _ = task.splits(seed=3)
    assert torch.equal(task.train_epoch(3, 1)[0], train[0])  # epoch 1 is the split's draw; later ones are fresh
    assert not torch.equal(task.train_epoch(3, 2)[0], train[0])
    val, test = task.val_by_depth(3), task.test_by_depth(3)
    for d in task.depths:
        keys = lambda ids: {tuple(r) for r in ids[:, -5:].tolist()}  # noqa: E731 (the answer: the key's digits)
        assert not torch.equal(val[d][0], test[d][0])
        assert len(keys(val[d][0]) & keys(test[d][0])) <= 2  # 10^5 keys: a shared one is chance
        assert (test[d][0][:, task.needle_start(d)] == task.key_id).all()  # at its depth
    assert accuracy_by_depth(passkey_solver(task), task, split="test") == {0.0: 1.0, 1.0: 1.0}


def test_passkey_rejects_a_depth_outside_0_1():
    from memkit.spec import SpecError

    with pytest.raises(SpecError, match="depths"):
        PasskeyTask.create(depths=[0.5, 1.5])


# --- MQAR by distance -------------------------------------------------------------------------

def test_mqar_distance_says_where_the_pair_was_written():
    task = RecallTask(segment_len=8, write_segments=5, query_segments=2, num_groups=6, keys_per_group=4,
                      num_values=10, num_val=16)
    ids, targets, dist = task.generate_with_distance(16, seed=3)
    L = task.segment_len
    for b, t in (dist > 0).nonzero().tolist():
        src = t // L - int(dist[b, t])
        seg = ids[b, src * L : (src + 1) * L].tolist()
        pos = seg.index(int(ids[b, t]))
        assert pos % 2 == 0 and seg[pos + 1] == int(targets[b, t])
    assert ((dist > 0) == (targets != IGNORE)).all()
    assert torch.equal(task.generate(16, seed=3)[0], ids)

    def rule(row, t):  # look the key up wherever it was written before this segment
        k = row[t]
        for s in range(0, (t // L) * L, 2):
            if row[s] == k:
                return row[s + 1]
        return None

    acc = accuracy_by_distance(Solver(task.vocab_size, rule), task)
    assert set(acc) <= set(range(1, 7)) and len(acc) >= 3 and all(a == 1.0 for a in acc.values())


def test_reports_triples_train_the_forward_sentences_and_never_the_reverse():
    task = ReversalTask(kind="reports_triples", repeats=2)
    texts = task.train_texts()
    assert len(task.test_statements()) == 33 and len(texts) == 66
    assert texts.count("Paris is the capital of France.") == 2
    assert texts.count("The telephone was invented by Alexander Graham Bell.") == 0
    assert ("France has its capital in", " Paris.") in task.pairs("reverse")
    assert ("Leo Tolstoy wrote", " War and Peace.") in task.pairs("forward")
    assert all(rp + rc not in texts for _, _, rp, rc in task.test_statements())


def test_reports_order_scores_each_fact_forward_then_backward_one_call_each():
    """The reports' variant as their code ran it: fact i's forward sentence, then its backward one, one call
    each, so a memory carried between calls reads the forward sentence before the backward one. A model that
    carries nothing between calls gets the same figures in either order."""
    tok = ByteTokenizer()
    task = ReversalTask(kind="reports_triples", repeats=1)
    eos = [tok.eos_id]
    known = [eos + tok.encode(fp + fc) for fp, fc, _, _ in task.test_statements()]

    class Recorder(Lookup):
        calls: list = []

        def forward(self, ids, state=None):
            self.calls.append([tok.decode(row) for row in ids.tolist()])
            return super().forward(ids, state)

    model = Recorder(tok.vocab_size, known)
    ordered = task.with_overrides(eval_order="forward_then_backward").evaluate(model, tok)
    reports = model.calls[-66:]
    assert all(len(batch) == 1 for batch in reports)
    for i, (fp, fc, rp, rc) in enumerate(task.test_statements()):
        assert reports[2 * i][0].startswith(fp) and reports[2 * i + 1][0].startswith(rp)
    batched = task.evaluate(Recorder(tok.vocab_size, known), tok)
    for key in ("reports_forward_ppl", "reports_backward_ppl"):
        assert ordered[key] == pytest.approx(batched[key], rel=1e-6)
    assert ordered["reports_backward_ppl"] > 10 * ordered["reports_forward_ppl"]


def test_accuracy_by_segment_for_any_data_with_targets():
    """Text-like data, no recall task: a model that knows rows 0-1 fully and row 2 only in its first
    half. T = 8 in segments of 3 (the last has 2): row 2's positions 4-7 are wrong."""
    from memkit.eval.metrics import accuracy_by_segment

    ids, targets = text_data(n=3, T=8)
    known = [torch.cat((ids[i], targets[i, -1:])).tolist() for i in range(2)]
    known.append(torch.cat((ids[2], targets[2, -1:])).tolist()[:5])  # row 2: next tokens of positions 0-3
    targets = targets.clone()
    targets[1, 0] = IGNORE  # one unscored position: counted nowhere
    acc = accuracy_by_segment(Lookup(11, known), (ids, targets), 3, batch_size=2)
    # segment 0 (positions 0-2): 8 scored, all right; segment 1 (3-5): row 2 right at 3 only -> 7/9;
    # segment 2 (6-7): row 2 wrong at both -> 4/6
    assert acc == {0: 1.0, 1: pytest.approx(7 / 9), 2: pytest.approx(4 / 6)}

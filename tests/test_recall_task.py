import pytest
import torch

from memkit import SpecError
from memkit.eval.tasks.recall import IGNORE, RecallTask


def test_answers_are_the_values_written_segments_earlier():
    task = RecallTask(segment_len=8, write_segments=4, query_segments=3, num_groups=5, keys_per_group=6,
                      num_values=10, num_train=8, num_val=4)
    ids, targets = task.generate(16, seed=3)
    L, W = task.segment_len, task.write_segments
    assert ids.shape == targets.shape == (16, task.seq_len) and int(ids.max()) < task.vocab_size
    for b in range(16):
        written = {int(ids[b, i]): int(ids[b, i + 1]) for i in range(0, W * L, 2)}
        assert len(written) == W * L // 2  # keys distinct across the whole write phase
        groups = [{(int(ids[b, s * L + i]) - 1) // task.keys_per_group for i in range(0, L, 2)} for s in range(W)]
        assert all(len(g) == 1 for g in groups)  # one key group per write segment
        scored = (targets[b] != IGNORE).nonzero().flatten().tolist()
        assert len(scored) == task.query_segments * L // 2
        for pos in scored:
            assert pos >= W * L and int(targets[b, pos]) == written[int(ids[b, pos])]
            seg = pos // L
            same_segment = ids[b, seg * L : pos].tolist()
            assert int(ids[b, pos]) not in same_segment  # the answer is not inside its own segment


def test_generation_is_deterministic_and_splits_differ():
    task = RecallTask(num_train=4, num_val=4)
    a, b = task.generate(4, 7), task.generate(4, 7)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    (tr, _), (va, _) = task.splits(0)
    assert not torch.equal(tr, va)


def test_a_model_given_the_answers_scores_100_percent():
    from memkit.eval.metrics import correct_count

    task = RecallTask(num_train=4, num_val=4)
    ids, targets = task.generate(4, 0)
    logits = torch.zeros(*ids.shape, task.vocab_size)
    logits.scatter_(-1, targets.clamp(min=0).unsqueeze(-1), 1.0)
    hits, count = correct_count(logits, targets)
    assert hits == count > 0


@pytest.mark.parametrize("fields, name", [({"segment_len": 7}, "segment_len"), ({"keys_per_group": 2}, "keys_per_group"),
                                          ({"num_groups": 2, "write_segments": 4}, "num_groups"), ({"num_values": 1}, "num_values")])
def test_bad_task_values_name_the_field(fields, name):
    with pytest.raises(SpecError, match=name):
        RecallTask.create(**fields)


def test_test_split_and_fresh_epochs_are_streams_of_their_own():
    from memkit.eval.tasks.recall import stream

    task = RecallTask(num_train=4, num_val=4, num_test=4)
    (tr, _), (va, _) = task.splits(0)
    te, _ = task.test_split(0)
    e1, e2 = task.train_epoch(0, 1)[0], task.train_epoch(0, 2)[0]
    assert torch.equal(e1, tr) and not torch.equal(e2, tr)
    assert not any(torch.equal(te, x) for x in (tr, va, e2))
    streams = {stream(s, split, e) for s in range(50) for split, e in [("train", 1), ("val", 1), ("test", 1)]}
    streams |= {stream(s, "train", e) for s in range(50) for e in range(2, 50)}
    assert len(streams) == 50 * 3 + 50 * 48  # no two (seed, split, epoch) share a generator seed


def test_pairs_set_the_write_segments_of_the_recipe():
    from recipes.infini_pythia import tiny

    spec = tiny().with_overrides(pairs=128)
    per = spec.model.memory.segment_len // 2
    assert spec.task.write_segments == 128 // per and spec.task.num_groups >= spec.task.write_segments
    with pytest.raises(SpecError, match="multiple of the pairs per segment"):
        tiny().with_overrides(pairs=per + 1)

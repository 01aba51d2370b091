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

"""A fixed-seed run's history is bit for bit what it was when recorded (``tests/data/train_golden.json``): the
training loop's refactors (precision, accumulation, scored loss, stopping, resume, progress) change no arithmetic.

Recorded on CPU, one torch thread (conftest): ``python -m tests.test_train_golden`` rewrites the file, which is
only right when the loop's behaviour is meant to change."""

import hashlib
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from memkit.training.trainer import EpochHook, TrainSpec, TrainState, train

GOLDEN = Path(__file__).parent / "data" / "train_golden.json"


class Bigram(nn.Module):
    """forward(ids) -> (logits, None): no ``targets=``, so the trainer takes the every-position path."""

    def __init__(self, vocab):
        super().__init__()
        self.table = nn.Embedding(vocab, vocab)
        self.gate_logit = nn.Parameter(torch.zeros(2))
        self.gate_logit.memkit_group = "gate"

    def forward(self, ids):
        return self.table(ids) + self.gate_logit.sum(), None


def bigram_data(n, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 5, (n, 8), generator=g)
    targets = ((ids + 1) % 5).masked_fill(torch.rand(ids.shape, generator=g) < 0.3, -100)
    return ids, targets


def recall():
    from memkit.eval.tasks.recall import RecallTask

    return RecallTask(segment_len=4, write_segments=3, query_segments=1, num_groups=3, keys_per_group=4,
                      num_values=6, num_train=48, num_val=16)


def memory_lm(**memory):
    from memkit.models.memory_lm import MemoryLMSpec

    torch.manual_seed(0)
    return MemoryLMSpec.create(vocab_size=recall().vocab_size, hidden_size=16, num_layers=1, num_heads=2,
                               intermediate_size=32, hidden_dropout=0.1,
                               memory=dict(segment_len=4, num_memories=2, **memory)).build()


class Resume(EpochHook):
    """Kills the run after ``kill_after`` (keeping the state saved then), or resumes from ``state``."""

    def __init__(self, kill_after=None, state=None):
        self.kill_after, self.state, self.saved = kill_after, state, None

    def save_state(self, state, model):
        self.saved = TrainState.from_dict(torch.load(_roundtrip(state.as_dict()), weights_only=True))

    def resume_state(self):
        return self.state

    def __call__(self, row):
        if row["epoch"] == self.kill_after:
            raise KeyboardInterrupt


def _roundtrip(obj):
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return buf


def run(case):
    """(model, result) of one recorded case."""
    if case == "bigram_fp64_accumulated_cosine_stopping":
        torch.manual_seed(1)
        model = Bigram(5).double()
        spec = TrainSpec(lr=0.3, max_epochs=6, patience=1, batch_size=8, grad_accumulation=2, warmup_steps=2,
                         schedule="cosine", seed=3)
        ids, targets = bigram_data(16, 1)
        val = ids, torch.where(targets[:, :1] == 0, targets, (ids + 2) % 5)  # most rows the wrong mapping: it stops
        return model, train(model, bigram_data(40, 0), val, spec, progress=False)
    task = recall()
    if case == "memory_scored_chunked_fresh_acc":
        model = memory_lm()
        spec = TrainSpec(lr=3e-3, batch_size=16, max_epochs=3, patience=3, grad_accumulation=2, loss_chunk_rows=5,
                         fresh_samples=True, monitor="acc", min_epochs=2, seed=1)
        return model, train(model, lambda epoch: task.splits(epoch)[0], task.splits(0)[1], spec, progress=False)
    if case == "memory_bf16_every_position_batch_shared":
        model = memory_lm(memory_scope="batch_shared", shared_reset="once")
        spec = TrainSpec(lr=3e-3, batch_size=16, max_epochs=2, patience=2, precision="bf16",
                         loss_at="every_position", param_groups="one_group", seed=2)
        return model, train(model, *task.splits(0), spec, progress=False)
    if case == "memory_resumed_after_epoch_1":
        spec = TrainSpec(lr=3e-3, batch_size=16, max_epochs=3, patience=3, schedule="cosine", warmup_steps=2, seed=4)
        hook = Resume(kill_after=1)
        with pytest.raises(KeyboardInterrupt):
            train(memory_lm(), *task.splits(0), spec, on_epoch=hook, progress=False)
        model = memory_lm()
        return model, train(model, *task.splits(0), spec, on_epoch=Resume(state=hook.saved), progress=False)
    raise KeyError(case)


CASES = ["bigram_fp64_accumulated_cosine_stopping", "memory_scored_chunked_fresh_acc",
         "memory_bf16_every_position_batch_shared", "memory_resumed_after_epoch_1"]


def record(case):
    """The run's history (every figure but wall time, as float.hex), how it ended, and a hash of its final weights."""
    model, result = run(case)
    rows = [{k: (v.hex() if isinstance(v, float) else v) for k, v in row.items() if k != "seconds"}
            for row in result.history]
    weights = hashlib.sha256()
    for name, t in model.state_dict().items():
        weights.update(name.encode() + t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return {"history": rows, "best_epoch": result.best_epoch, "stop": result.stop, "weights": weights.hexdigest()}


@pytest.mark.parametrize("case", CASES)
def test_a_fixed_seed_run_is_bit_identical_to_the_recorded_one(case):
    assert record(case) == json.loads(GOLDEN.read_text())[case]


if __name__ == "__main__":
    torch.set_num_threads(1)
    GOLDEN.write_text(json.dumps({case: record(case) for case in CASES}, indent=1) + "\n")
    print(GOLDEN.read_text())

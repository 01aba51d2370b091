"""Logits only where scored: the loss from the head at scored positions (chunked) equals the masked loss over the
full logits, in value and in every gradient, for every model option; the head really sees only scored rows."""

import pytest
import torch
from test_generation import models
from torch import nn

from memkit.eval.metrics import masked_loss
from memkit.ops.cross_entropy import scored_cross_entropy
from memkit.training import TrainSpec, train


def targets_like(ids, share, seed, vocab):
    """Targets [B,T] scoring about ``share`` of the positions (-100 elsewhere)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, vocab, ids.shape, generator=g)
    return y.masked_fill(torch.rand(ids.shape, generator=g) >= share, -100)


@pytest.mark.parametrize("share", [0.0, 0.06, 0.5, 1.0])
@pytest.mark.parametrize("chunk_rows", [1, 3, 4096])
def test_the_op_equals_the_masked_loss_of_the_full_logits(share, chunk_rows):
    torch.manual_seed(0)
    head = nn.Linear(8, 11).double()
    hidden = torch.randn(3, 17, 8, dtype=torch.float64, requires_grad=True)
    y = targets_like(hidden[..., 0], share, 1, 11)
    got = scored_cross_entropy(hidden, y, head, chunk_rows=chunk_rows)
    grads = torch.autograd.grad(got, (hidden, *head.parameters()))
    logits = head(hidden)
    want = masked_loss(logits, y) if (y != -100).any() else logits.sum() * 0.0
    expected = torch.autograd.grad(want, (hidden, *head.parameters()))
    torch.testing.assert_close(got, want.to(got.dtype), rtol=1e-12, atol=1e-12)
    for a, b in zip(grads, expected):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("make", list(models()))
def test_every_model_gives_the_same_loss_and_gradients_from_the_scored_positions(make):
    model = make().double().train()
    for m in model.modules():  # dropout off: the two passes must see the same model
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    V = model.get_input_embeddings().weight.shape[0]
    ids = torch.randint(0, V, (2, 13), generator=torch.Generator().manual_seed(3))
    params = [p for p in model.parameters() if p.requires_grad]
    for share in (0.1, 1.0):
        y = targets_like(ids, share, 4, V)
        y[:, -1] = ids[:, 0]  # a scored position in every row, whatever the draw
        logits, _ = model(ids)
        want = masked_loss(logits, y)
        expected = torch.autograd.grad(want, params, allow_unused=True)
        for chunk_rows in (8192, 3):  # one piece; chunks recomputed in backward
            out = model(ids, targets=y, loss_chunk_rows=chunk_rows)
            assert out.logits is None
            got = torch.autograd.grad(out.loss, params, allow_unused=True)
            torch.testing.assert_close(out.loss, want, rtol=1e-10, atol=1e-10)
            for a, b in zip(got, expected):
                assert (a is None) == (b is None)
                if a is not None:
                    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_the_head_runs_only_on_scored_positions():
    from test_generation import memory_model

    model = memory_model(num_memories=2)
    rows = []
    model.get_output_embeddings().register_forward_hook(lambda m, i, o: rows.append(i[0].shape[:-1].numel()))
    ids = torch.randint(0, 48, (4, 16))
    y = torch.full_like(ids, -100)
    y[:, -2:] = ids[:, -2:]  # 2 of 16 scored per row, as a recall row
    model(ids, targets=y)
    assert rows == [8]


def test_training_on_the_scored_path_follows_the_every_position_run():
    """Two short runs of a memory LM on recall, same seed: the scored path's figures equal the reference's."""
    from memkit.eval.tasks.recall import RecallTask
    from memkit.models.memory_lm import MemoryLMSpec

    task = RecallTask(segment_len=8, write_segments=2, query_segments=1, num_groups=4, keys_per_group=4, num_values=4,
                      num_train=64, num_val=32)
    train_data, val_data = task.splits(0)
    runs, head_rows = {}, {}
    for loss_at, chunk_rows in (("scored", 8192), ("every_position", 8192), ("chunked", 5)):
        torch.manual_seed(0)
        model = MemoryLMSpec.create(vocab_size=task.vocab_size, hidden_size=16, num_layers=1, num_heads=2,
                                    intermediate_size=32, memory=dict(segment_len=8, num_memories=2)).build()
        rows = head_rows[loss_at] = []
        model.get_output_embeddings().register_forward_hook(
            lambda m, i, o, rows=rows: rows.append(i[0].shape[:-1].numel()) if m.training else None)
        spec = TrainSpec(lr=3e-3, batch_size=16, max_epochs=2, patience=2, grad_accumulation=2,
                         loss_at="every_position" if loss_at == "every_position" else "scored", loss_chunk_rows=chunk_rows)
        runs[loss_at] = train(model, train_data, val_data, spec, progress=False).history
    ids, targets = train_data
    assert sum(head_rows["scored"]) == 2 * int((targets != -100).sum())  # two epochs, the head only where scored
    assert sum(head_rows["every_position"]) == 2 * targets.numel()
    # chunks of 5 rows: every micro-batch scores more, so each chunk's head ran again in backward
    assert sum(head_rows["chunked"]) == 2 * sum(head_rows["scored"])
    for run in ("scored", "chunked"):
        for a, b in zip(runs[run], runs["every_position"]):
            for key in ("train_loss", "val_loss"):
                assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), (run, key, a, b)


@pytest.mark.parametrize("chunk_rows", [0, -3])
def test_chunk_rows_below_one_is_a_value_error(chunk_rows):
    hidden, y = torch.randn(1, 4, 8), torch.zeros(1, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="chunk_rows"):
        scored_cross_entropy(hidden, y, nn.Linear(8, 5), chunk_rows=chunk_rows)


@pytest.mark.parametrize("chunk_rows", [3, 4096])
def test_bf16_logits_are_scored_in_float32_as_the_masked_loss(chunk_rows):
    """bf16 hidden states and head: the log-softmax of the bf16 logits runs in float32, as ``masked_loss``'s."""
    torch.manual_seed(0)
    head = nn.Linear(16, 50).bfloat16()
    hidden = (torch.randn(2, 9, 16) * 3).bfloat16()
    y = targets_like(hidden[..., 0], 0.7, 2, 50)
    got = scored_cross_entropy(hidden, y, head, chunk_rows=chunk_rows)
    want = masked_loss(head(hidden), y)
    assert want.dtype == got.dtype == torch.float32
    torch.testing.assert_close(got.float(), want, rtol=1e-6, atol=1e-6)  # bf16's own log-softmax is ~0.03 off

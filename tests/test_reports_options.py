"""The reports' code choices (DESIGN.md, last section) as named options; defaults are the careful ones."""

import math

import pytest
import torch

from memkit import MemoryAttentionSpec
from memkit.blocks.selector import Selector
from memkit.ops.naive import feature


def shared_layer(**kw):
    torch.manual_seed(0)
    return MemoryAttentionSpec(hidden_size=8, num_heads=2, segment_len=4, memory_scope="batch_shared", **kw).build().double()


def test_defaults_are_the_careful_choices():
    spec = MemoryAttentionSpec()
    assert (spec.memory_scope, spec.write_scale, spec.selection_score, spec.selection_scope, spec.local) == (
        "sequence", "equal", "scaled", "token", "softmax")


def test_equal_scale_gives_proper_linear_attention_and_the_reports_scale_is_1_over_T():
    x = torch.randn(3, 8, 8, dtype=torch.float64)
    q = torch.randn(1, 2, 5, 4, dtype=torch.float64)
    reads = {}
    for scale in ("equal", "reports"):
        layer = shared_layer(write_scale=scale)
        layer(x)
        reads[scale] = layer.store.read(layer.shared.state.memory, q)
        _, k, v = layer.qkv(x).view(3, 8, 3, 2, 4).permute(2, 0, 3, 1, 4)
    sk = feature(k)  # every token's key and value, whole batch
    num = torch.einsum("bhtd,bhte->hde", sk, v)
    den = sk.sum((0, 2))
    sq = feature(q)
    proper = torch.einsum("bhtd,hde->bhte", sq, num) / (torch.einsum("bhtd,hd->bht", sq, den)[..., None] + 1e-6)
    torch.testing.assert_close(reads["equal"], proper)
    torch.testing.assert_close(reads["reports"], proper / 8, rtol=1e-4, atol=1e-6)  # T = 8 tokens per sequence


def test_batch_shared_memory_carries_other_sequences_across_calls_and_resets():
    layer = shared_layer()
    a, b = torch.randn(2, 8, 8, dtype=torch.float64), torch.randn(2, 8, 8, dtype=torch.float64)
    first, _ = layer(a)
    layer(b)
    layer.reset_shared()
    again, _ = layer(a)
    torch.testing.assert_close(first, again)  # after a reset the memory is empty again
    layer.reset_shared()
    layer(b)
    after_b, _ = layer(a)
    assert not torch.allclose(after_b[:1], first[:1])  # sequence 0 read what the previous batch wrote


def test_reports_selection_score_is_sigma_q_dot_landmark_unscaled():
    # d = 2: q = (0, 1) has σ(q) = (1, 2); q = (-1, 0) has σ(q) = (e⁻¹, 1). Landmark (3, 4).
    q = torch.tensor([[0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64).view(1, 1, 2, 2)
    lm = torch.tensor([3.0, 4.0], dtype=torch.float64).view(1, 1, 1, 2)
    reports = Selector(score="reports").scores(q, lm).flatten().tolist()
    assert reports == pytest.approx([1 * 3 + 2 * 4, math.exp(-1) * 3 + 1 * 4])
    scaled = Selector().scores(q, lm).flatten().tolist()  # q·ℓ/√d
    assert scaled == pytest.approx([4 / math.sqrt(2), -3 / math.sqrt(2)])


def test_trainer_resets_shared_memory_every_epoch():
    from memkit.training.trainer import TrainSpec, train

    layer = shared_layer()

    class LM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer, self.head = layer, torch.nn.Linear(8, 5)
            self.emb = torch.nn.Embedding(5, 8)

        def forward(self, ids):
            y, _ = self.layer(self.emb(ids).double())
            return self.head(y.float()), None

    ids = torch.randint(0, 5, (8, 8))
    model = LM().double()
    model.head.float()
    model.emb.float()
    seen = []
    orig = layer.reset_shared
    layer.reset_shared = lambda: (seen.append(layer.shared.state is not None), orig())[1]
    train(model, (ids, ids), (ids, ids), TrainSpec(max_epochs=2, batch_size=4, patience=5), progress=False)
    assert seen == [False, True]  # empty at the start, written during epoch 1, reset before epoch 2

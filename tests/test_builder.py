import pytest
import torch

from memkit.models.builder import MemoryBuilder
from memkit.models.memory_lm import MemoryLMSpec


def model(**memory):
    return MemoryLMSpec.create(vocab_size=256, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                               local_window="segment", memory=dict(segment_len=4, num_memories=3, **memory)).build().double()


def test_one_memory_per_source_saved_and_loaded(tmp_path):
    torch.manual_seed(0)
    m = model(landmark="mean_k")
    builder = MemoryBuilder(m)
    state = builder.build(["the sky is blue and wide", "def f(x): return x + 1", "bonjour"])
    z = state.memory.z.sum((-1, -2))[0]
    assert (z > 0).all() and state.lm_count[0].tolist() == [24, 20, 4]  # 24, 22 -> 20, 7 -> 4: whole segments only
    # memory 0 equals building source 0 alone
    alone = builder.build(["the sky is blue and wide"])
    torch.testing.assert_close(alone.memory.M[:, 0], state.memory.M[:, 0])
    path = tmp_path / "domains.pt"
    builder.save(state, path)
    back = builder.load(path, batch_size=2)
    assert back.memory.M.shape[0] == 2 and torch.equal(back.memory.M[1], state.memory.M[0])
    logits, _ = m(torch.randint(0, 256, (2, 8)), back)  # usable as a starting state
    assert torch.isfinite(logits).all()


def test_builder_errors_name_what_is_wrong():
    m = model()
    with pytest.raises(ValueError, match="1..3 sources"):
        MemoryBuilder(m).build(["a"] * 4)
    with pytest.raises(ValueError, match=r"sources\[0\]"):
        MemoryBuilder(m).build(["ab"])

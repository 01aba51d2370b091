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


@pytest.mark.parametrize("landmark", ["memory_norm", "mean_k", "hsa"])
def test_a_source_longer_than_the_models_positions_builds_the_same_memory(landmark):
    """Full-window mode bounds one stream by max_position_embeddings; a source longer than that still fills its
    memory. With the memory at layer 0 (its input is the embeddings alone) the memory equals the one a model with
    room for the whole source builds, whatever the positions."""
    def full(max_positions, memory_layer=0):
        torch.manual_seed(0)
        return MemoryLMSpec.create(vocab_size=48, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
                                   max_position_embeddings=max_positions, local_window="full", memory_layer=memory_layer,
                                   memory=dict(segment_len=4, num_memories=2, landmark=landmark)).build().double()

    g = torch.Generator().manual_seed(1)
    sources = [torch.randint(0, 48, (50,), generator=g), torch.randint(0, 48, (37,), generator=g)]
    short, roomy = MemoryBuilder(full(16)).build(sources), MemoryBuilder(full(128)).build(sources)
    assert short.memory.writes == roomy.memory.writes == 12 + 9
    torch.testing.assert_close(short.memory.M, roomy.memory.M, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(short.memory.z, roomy.memory.z, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(short.lm_sum, roomy.lm_sum, rtol=1e-10, atol=1e-10)
    deeper = MemoryBuilder(full(16, memory_layer=1)).build(sources)  # behind a plain layer: builds, pieces restart it
    assert deeper.memory.writes == 21 and torch.isfinite(deeper.memory.M).all()


def whole_call_model(max_positions: int, update: str = "linear"):
    """The reports' layer (a call is one segment, one memory for the batch) at layer 0 of a full-window model."""
    torch.manual_seed(0)
    return MemoryLMSpec.create(
        vocab_size=48, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
        max_position_embeddings=max_positions, local_window="full",
        memory=dict(segment_len=4, num_memories=2, update=update, segmentation="whole_call", local="linear_clamped",
                    memory_scope="batch_shared", write_scale="reports", selection_score="reports",
                    selection_scope="whole_call_leaks_future", unwritten_memories="kept_at_zero")).build().double()


def test_a_whole_call_layer_builds_a_long_source_in_calls_of_its_training_length():
    """As the reports' code fed text: calls of the training length, each one segment written, the memory carried,
    an incomplete last call dropped. Linear writes add up, so the memory is the sum of the calls' memories."""
    m = whole_call_model(max_positions=16)
    source = torch.randint(0, 48, (50,), generator=torch.Generator().manual_seed(2))
    built = MemoryBuilder(m, call_tokens=8).build([source])  # 50 tokens > 16 positions: six calls of 8
    assert built.memory.writes == 6
    calls = [MemoryBuilder(m).build([source[i:i + 8]]) for i in range(0, 48, 8)]
    torch.testing.assert_close(built.memory.M, sum(c.memory.M for c in calls), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(built.memory.z, sum(c.memory.z for c in calls), rtol=1e-10, atol=1e-12)
    # without a call length a call is as long as the model takes: 16 tokens, three calls
    assert MemoryBuilder(m).build([source]).memory.writes == 3
    # a source shorter than one call is one call
    assert MemoryBuilder(m, call_tokens=8).build([source[:5]]).memory.writes == 1
    with pytest.raises(ValueError, match="call_tokens"):
        MemoryBuilder(m, call_tokens=0)

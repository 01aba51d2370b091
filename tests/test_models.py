import pytest
import torch

from memkit import SpecError
from memkit.models.memory_lm import MemoryLMSpec

PYTHIA_70M_PARAMS = 70_426_624  # published count of EleutherAI/pythia-70m


def small(**kw):
    base = dict(vocab_size=40, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
                max_position_embeddings=64, memory=dict(segment_len=4))
    base.update(kw)
    return MemoryLMSpec.create(**base)


def test_pythia70m_shape_parameter_count():
    plain = MemoryLMSpec(memory_layer=None).build()
    assert plain.num_parameters() == PYTHIA_70M_PARAMS
    mem = MemoryLMSpec().build()
    # the memory layer keeps NeoX attention's projections and adds one gate logit per head
    assert mem.num_parameters() == PYTHIA_70M_PARAMS + 8
    assert mem.memory_nbytes() == 133_120
    assert MemoryLMSpec(memory={"num_memories": 4}).build().memory_nbytes() == 532_480


@pytest.mark.parametrize("window", ["segment", "full"])
@pytest.mark.parametrize("memory_layer", [0, 1, None])
def test_causal_and_streaming_at_model_level(window, memory_layer):
    """Pieces cut anywhere (inside segments too) with the state carried equal one call, in both window modes:
    the plain layers keep their own keys and values (full: every token, positions going on; segment: the open
    segment's)."""
    torch.manual_seed(0)
    model = small(local_window=window, memory_layer=memory_layer).build().double().eval()
    x = torch.randint(0, 40, (2, 19))
    logits, state = model(x)
    assert logits.shape == (2, 19, 40) and state.seen == 19
    if memory_layer is not None:
        assert state.layer.memory.writes == 4 and state.layer.pending_k.shape[2] == 3
    x2 = x.clone()
    x2[:, 9:] = (x2[:, 9:] + 1) % 40
    torch.testing.assert_close(model(x2)[0][:, :9], logits[:, :9])
    pieces, carried = [], None
    for a, b in [(0, 3), (3, 4), (4, 9), (9, 10), (10, 19)]:
        out, carried = model(x[:, a:b], carried)
        pieces.append(out)
    torch.testing.assert_close(torch.cat(pieces, 1), logits)


def test_segment_window_hides_earlier_segments_from_plain_layers():
    # Gate shut: in 'segment' mode nothing reaches segment 2 from segment 0; in 'full' mode it does.
    torch.manual_seed(0)
    for window, reaches in [("segment", False), ("full", True)]:
        model = small(local_window=window).build().double().eval()
        with torch.no_grad():
            model.memory.gate_logit.fill_(-1e4)
        x = torch.randint(0, 40, (1, 12))
        x2 = x.clone()
        x2[:, :4] = (x2[:, :4] + 7) % 40
        same = torch.allclose(model(x)[0][:, 8:], model(x2)[0][:, 8:])
        assert same != reaches, window


def test_segment_mode_takes_a_partial_last_segment():
    """A last segment shorter than segment_len is a shorter row: the first 6 outputs of an 8-token call."""
    torch.manual_seed(0)
    model = small(local_window="segment").build().double().eval()
    x = torch.randint(0, 40, (1, 8))
    torch.testing.assert_close(model(x[:, :6])[0], model(x)[0][:, :6])


def test_memory_shape_follows_the_model_and_errors_name_fields():
    spec = small(hidden_size=32, num_heads=4)
    assert (spec.memory.hidden_size, spec.memory.num_heads) == (32, 4)
    with pytest.raises(SpecError, match="memory_layer"):
        small(memory_layer=5)
    with pytest.raises(SpecError, match="local_window"):
        small(local_window="sliding")


def test_plain_model_with_segment_window_cannot_see_an_earlier_segment():
    """The no-memory baseline: local attention alone. Changing segment 0 changes no later logit in
    'segment' mode; in 'full' mode it does (so the check can tell the two apart)."""
    torch.manual_seed(0)
    for window, reaches in [("segment", False), ("full", True)]:
        model = small(local_window=window, memory_layer=None).build().double().eval()
        assert model.memory is None
        x = torch.randint(0, 40, (2, 12))
        x2 = x.clone()
        x2[:, :4] = (x2[:, :4] + 7) % 40
        later, later2 = model(x)[0][:, 4:], model(x2)[0][:, 4:]
        assert torch.allclose(later, later2) != reaches, window
    assert model(x)[1].layer is None and small(local_window="segment", memory_layer=None).build().segment_len == 4


def test_zero_memories_is_the_plain_model_with_the_same_window():
    spec = small(local_window="segment", memory=dict(segment_len=4, num_memories=0))
    assert spec.memory_layer is None and spec.local_window == "segment"
    model = spec.build()
    assert model.memory is None and model.memory_nbytes() == 0 and model.segment_len == 4  # it keeps the window


def test_dropout_settings_reach_the_model():
    model = small(hidden_dropout=0.25, attention_dropout=0.5).build()
    assert model.hf.config.hidden_dropout == 0.25 and model.hf.config.attention_dropout == 0.5
    plain = small().build()
    plain.load_state_dict(model.state_dict())  # the same weights, no dropout: the reference
    torch.manual_seed(0)
    x = torch.randint(0, 40, (1, 8))
    model.train()
    assert not torch.equal(model(x)[0], model(x)[0])  # dropout is on in training
    assert not torch.allclose(model(x)[0], plain.train()(x)[0])
    model.eval()
    assert torch.equal(model(x)[0], plain.eval()(x)[0])  # and off in evaluation


def test_a_plain_full_window_model_is_transformers_gpt_neox():
    """memkit runs GPT-NeoX's pieces itself (neox_stack): without a memory layer, in full mode, it computes what
    transformers' own forward does, dropout included (the same draws in the same order)."""
    model = small(memory_layer=None, hidden_dropout=0.3).build().train()
    x = torch.randint(0, 40, (2, 12))
    torch.manual_seed(1)
    ours = model(x)[0]
    torch.manual_seed(1)
    torch.testing.assert_close(ours, model.hf(x).logits)


def test_an_unknown_field_names_the_spec_it_is_not_in_and_lists_the_fields():
    with pytest.raises(SpecError) as err:
        MemoryLMSpec.create(hidden_size=16, memory=dict(segment_len=4, landmrk="mean_k"))
    assert str(err.value).startswith("memory.landmrk: not a field of MemoryAttentionSpec; its fields: ")
    assert "landmark" in str(err.value) and "\n" not in str(err.value)


def test_num_parameters_counts_alike_in_both_models():
    """One signature for both models: all parameters; only the trained ones (``only_trainable``, or its other
    name ``trainable_only``); without the token embeddings (``exclude_embeddings``)."""
    from memkit import ContextKVLMSpec

    memory = small().build()
    context = ContextKVLMSpec.create(vocab_size=40, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                                     embeddings="frozen").build()
    for model in (memory, context):
        params = list(model.parameters())
        everything = sum(p.numel() for p in params)
        trained = sum(p.numel() for p in params if p.requires_grad)
        embeddings = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding))
        assert model.num_parameters() == everything
        assert model.num_parameters(only_trainable=True) == model.num_parameters(trainable_only=True) == trained
        assert model.num_parameters(exclude_embeddings=True) == everything - embeddings
    assert context.num_parameters(trainable_only=True) == context.num_parameters() - 40 * 16  # the frozen embeddings

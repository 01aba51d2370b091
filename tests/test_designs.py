"""A baseline layer in a MemoryLM's memory place (``design.name``): it trains, decodes as the full forward,
streams in pieces, and restarts at documents."""

import pytest
import torch

from memkit import DeltaNetAttention, MemoryLMSpec, SpecError, WindowAttention

V = 48
BASELINES = ["deltanet", "gated_deltanet", "sliding_window", "full_attention"]


def model(name, window="segment", **design):
    torch.manual_seed(0)
    return MemoryLMSpec.create(vocab_size=V, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
                               max_position_embeddings=64, local_window=window, eos_token_id=0,
                               memory=dict(segment_len=4), design=dict(name=name, **design)).build()


@pytest.mark.parametrize("window", ["segment", "full"])
@pytest.mark.parametrize("name", BASELINES)
def test_a_baseline_trains_a_step_and_decoding_equals_the_full_forward(name, window):
    lm = model(name, window)
    layer = lm.memory
    assert isinstance(layer, DeltaNetAttention if "deltanet" in name else WindowAttention)
    ids = torch.randint(1, V, (2, 12))
    before = [p.detach().clone() for p in layer.parameters()]
    opt = torch.optim.AdamW(lm.parameters(), lr=1e-2)
    loss = lm(ids, targets=ids.roll(-1, 1)).loss
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and all(not torch.equal(a, p) for a, p in zip(before, layer.parameters()))

    lm.eval()
    prompt = torch.randint(1, V, (2, 11))
    out = lm.generate(prompt, max_new_tokens=9, return_dict_in_generate=True, output_logits=True)
    seq = out.sequences
    full, _ = lm(seq[:, :-1])
    torch.testing.assert_close(torch.stack(out.logits, 1), full[:, 10:], rtol=1e-4, atol=1e-4)
    pieces, state = [], None
    for a, b in [(0, 1), (1, 6), (6, 7), (7, 19)]:
        logits, state = lm(seq[:, a:b], state)
        pieces.append(logits)
    torch.testing.assert_close(torch.cat(pieces, 1), full, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", BASELINES)
def test_a_document_after_the_end_of_document_id_starts_afresh(name):
    lm = model(name, "full").eval()
    first, second = torch.randint(1, V, (1, 7)), torch.randint(1, V, (1, 6))
    packed = torch.cat((first, torch.zeros(1, 1, dtype=torch.long), second), 1)
    torch.testing.assert_close(lm(packed)[0][:, 8:], lm(second)[0])


def test_the_design_sets_the_layers_shape_gate_rotary_and_window():
    spec = MemoryLMSpec.create(hidden_size=32, num_heads=4, rotary_pct=0.5, memory=dict(segment_len=8),
                               design=dict(name="gated_deltanet", deltanet=dict(hidden_size=7, conv_size=2)))
    d = spec.design
    assert (d.deltanet.hidden_size, d.deltanet.num_heads, d.deltanet.gated, d.deltanet.conv_size) == (32, 4, True, 2)
    assert (d.attention.hidden_size, d.attention.rotary_dim) == (32, 4)
    assert spec.build().memory.gated
    window = spec.with_overrides(design=dict(name="sliding_window")).build().memory
    assert window.window == 8 and window.rotary_dim == 4
    assert spec.with_overrides(design=dict(name="sliding_window", attention=dict(window=3))).build().memory.window == 3
    full = spec.with_overrides(design=dict(name="full_attention")).build()
    assert full.memory.window == spec.max_position_embeddings
    assert full.memory_nbytes() == 2 * (spec.max_position_embeddings - 1) * 32 * 4
    assert spec.with_overrides(design=dict(name="infini")).build().memory.segment_len == 8


def test_an_unknown_design_is_one_line_naming_it():
    with pytest.raises(SpecError) as err:
        MemoryLMSpec.create(design=dict(name="mamba"))
    assert "design.name" in str(err.value) and "\n" not in str(err.value)


def test_a_saved_baseline_model_loads_with_its_design(tmp_path):
    from memkit import load_model

    lm = model("gated_deltanet", deltanet=dict(conv_size=2)).eval()
    lm.save_pretrained(tmp_path)
    loaded = load_model(tmp_path).eval()
    ids = torch.randint(1, V, (2, 10))
    assert isinstance(loaded.memory, DeltaNetAttention) and loaded.memory.conv_size == 2 and loaded.memory.gated
    torch.testing.assert_close(loaded(ids)[0], lm(ids)[0])


# --- designs by name (a comparison's one axis: --space design=...) ---

from memkit.blocks.attention import MemoryAttention  # noqa: E402
from memkit.models.designs import NAMED_DESIGNS, named_design  # noqa: E402

SMALL = dict(vocab_size=V, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
             max_position_embeddings=64, local_window="segment", memory=dict(segment_len=4))


@pytest.mark.parametrize("name,layer_type,memories,hierarchy", [
    ("single", MemoryAttention, 1, "none"), ("multi", MemoryAttention, 4, "none"),
    ("hierarchical", MemoryAttention, 4, "soft"), ("deltanet", DeltaNetAttention, None, None),
    ("gated_deltanet", DeltaNetAttention, None, None), ("sliding_window", WindowAttention, None, None),
    ("full_attention", WindowAttention, None, None)])
def test_a_named_design_builds_its_layer(name, layer_type, memories, hierarchy):
    lm = MemoryLMSpec.create(**named_design(SMALL, name)).build()
    assert type(lm.memory) is layer_type
    if memories is not None:
        memory = MemoryLMSpec.create(**named_design(SMALL, name)).memory
        assert (memory.num_memories, memory.hierarchy) == (memories, hierarchy)
    if name == "gated_deltanet":
        assert lm.memory.gated
    if name == "deltanet":
        assert not lm.memory.gated
    if name in ("sliding_window", "full_attention"):
        assert lm.memory.window == (4 if name == "sliding_window" else 64)


def test_a_named_design_keeps_the_models_own_memory_count_and_gate():
    eight = {**SMALL, "memory": dict(segment_len=4, num_memories=8, hierarchy="hard")}
    spec = MemoryLMSpec.create(**named_design(eight, "hierarchical"))
    assert (spec.memory.num_memories, spec.memory.hierarchy) == (8, "hard")
    assert MemoryLMSpec.create(**named_design({**SMALL, "memory": dict(segment_len=4, num_memories=8)},
                                              "multi")).memory.num_memories == 8
    with pytest.raises(ValueError, match="design: unknown 'rwkv'; one of single, multi"):
        named_design(SMALL, "rwkv")
    with pytest.raises(ValueError, match="'single' has one memory, but memory.num_memories is 8"):
        named_design(eight, "single")  # a contradiction is said, never settled silently
    with pytest.raises(ValueError, match="'multi' has no hierarchy, but memory.hierarchy is 'hard'"):
        named_design(eight, "multi")
    assert set(NAMED_DESIGNS) == {"single", "multi", "hierarchical", *BASELINES}


@pytest.mark.parametrize("field,value", [("hidden_size", None), ("num_heads", 0), ("rotary_pct", None)])
def test_a_wrong_width_heads_or_rotary_share_is_the_models_one_line_error(field, value):
    """The fuzz's find: the design's shape was derived from the bad value first and crashed with a TypeError."""
    with pytest.raises(SpecError, match=f"^{field}: "):
        MemoryLMSpec.create(**{field: value})

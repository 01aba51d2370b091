import pytest
import torch

from memkit import MemoryAttentionSpec, SpecError


def test_multi_memory_soft_selection_weights_memories_by_memory_norm():
    # Two memories; each query reads a softmax mix over them by q·z_n/√d.
    torch.manual_seed(0)
    layer = MemoryAttentionSpec(hidden_size=8, num_heads=2, segment_len=2, num_memories=2).build().double()
    x = torch.randn(1, 6, 8, dtype=torch.float64)
    _, state = layer(x[:, :4])
    q = torch.randn(1, 2, 3, 4, dtype=torch.float64)
    reads = layer.store.read(state.memory, q)  # [B,N,H,T,d]
    w = (torch.einsum("bhtd,bnhd->bhtn", q, state.memory.z) / 2).softmax(-1)
    torch.testing.assert_close(layer._read(state.memory, None, None, q, q, None), torch.einsum("bhtn,bnhtd->bhtd", w, reads))


def test_unwritten_memories_are_not_selected():
    layer = MemoryAttentionSpec(hidden_size=8, num_heads=2, segment_len=2, num_memories=4).build().double()
    x = torch.randn(1, 2, 8, dtype=torch.float64)
    _, state = layer(x)  # one segment written: memory 0 only
    q = torch.randn(1, 2, 3, 4, dtype=torch.float64)
    torch.testing.assert_close(layer._read(state.memory, None, None, q, q, None), layer.store.read(state.memory, q)[:, 0])


def test_gate_is_a_tagged_parameter_per_head():
    layer = MemoryAttentionSpec(hidden_size=16, num_heads=4).build()
    assert layer.gate_logit.shape == (4,) and layer.gate_logit.memkit_group == "gate"
    assert torch.allclose(layer.gate(), torch.full((4,), 0.5))


@pytest.mark.parametrize(
    "fields, names",
    [
        ({"hidden_size": 30, "num_heads": 4}, "num_heads"),
        ({"segment_len": 0}, "segment_len"),
        ({"update": "sideways"}, "update"),
        ({"num_memories": 0}, "num_memories"),
        ({"local": "global"}, "local"),
        ({"eps": -1.0}, "eps"),
        ({"rotary_dim": 3}, "rotary_dim"),
        ({"segmnt_len": 4}, "segmnt_len"),
    ],
)
def test_spec_rejects_bad_values_naming_the_field(fields, names):
    with pytest.raises(SpecError) as err:
        MemoryAttentionSpec.create(**fields)
    assert names in str(err.value) and "\n" not in str(err.value)


def test_spec_fields_match_block_signature():
    import inspect

    from memkit import MemoryAttention, MemoryStore, MemoryStoreSpec

    for spec, block in [(MemoryAttentionSpec, MemoryAttention), (MemoryStoreSpec, MemoryStore)]:
        params = inspect.signature(block.__init__).parameters
        assert set(spec.model_fields) == set(params) - {"self"}
        for name, field in spec.model_fields.items():
            if params[name].default is not inspect.Parameter.empty:
                assert params[name].default == field.default, name

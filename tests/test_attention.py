from dataclasses import replace

import pytest
import torch

from memkit import MemoryAttentionSpec, SpecError
from memkit.blocks.segments import Memories


def test_multi_memory_soft_selection_weights_memories_by_memory_norm():
    # Two memories; each query reads a softmax mix over them by q·z_n/√d.
    torch.manual_seed(0)
    layer = MemoryAttentionSpec(hidden_size=8, num_heads=2, segment_len=2, num_memories=2).build().double()
    x = torch.randn(1, 6, 8, dtype=torch.float64)
    _, state = layer(x[:, :4])
    q = torch.randn(1, 2, 3, 4, dtype=torch.float64)
    reads = layer.store.read(state.memory, q)  # [B,N,H,T,d]
    w = (torch.einsum("bhtd,bnhd->bhtn", q, state.memory.z) / 2).softmax(-1)
    torch.testing.assert_close(layer.path.read(Memories(state.memory), q, q, None)[0], torch.einsum("bhtn,bnhtd->bhtd", w, reads))


@pytest.mark.parametrize("written", [[0], [1], [1, 3], [0, 2]])
def test_unwritten_memories_are_not_selected(written):
    """Only the written memories enter the mix, with the weights of a softmax over them alone. The state
    claims nothing about which memories are empty, so the selector's mask is what leaves them out (an
    unwritten memory reads 0: in the softmax it would only shrink the others' weights)."""
    torch.manual_seed(0)
    layer = MemoryAttentionSpec(hidden_size=8, num_heads=2, segment_len=2, num_memories=4).build().double()
    state = layer.init_state(1, dtype=torch.float64)
    for n in written:  # one segment into each listed memory
        _, state = layer(torch.randn(1, 2, 8, dtype=torch.float64), state, memory=n)
    memory = replace(state.memory, empty=frozenset())  # claims nothing: no shortcut can skip a memory
    assert state.memory.written()[0].tolist() == [n in written for n in range(4)]
    q = torch.randn(1, 2, 3, 4, dtype=torch.float64)
    reads = layer.store.read(memory, q)[:, written]  # [B,n,H,T,d]
    w = (torch.einsum("bhtd,bnhd->bhtn", q, memory.z[:, written]) / 2).softmax(-1)
    torch.testing.assert_close(layer.path.read(Memories(memory), q, q, None)[0], torch.einsum("bhtn,bnhtd->bhtd", w, reads))


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
    """Defaults live in one place: a part's spec has its block's arguments, and every flat field of
    MemoryAttentionSpec is the layer's own argument or lands in a part (``local`` as LocalSpec.kind)."""
    import inspect

    from memkit import MemoryAttention, MemoryStore, MemoryStoreSpec
    from memkit.blocks.attention_spec import LocalSpec, ManyMemoriesSpec, OneMemorySpec
    from memkit.blocks.local import LocalAttention
    from memkit.blocks.reports.parts import ReportsSpec

    for spec, block in [(LocalSpec, LocalAttention), (MemoryStoreSpec, MemoryStore)]:
        params = inspect.signature(block.__init__).parameters
        assert set(spec.model_fields) == set(params) - {"self"}
        for name, field in spec.model_fields.items():
            if params[name].default is not inspect.Parameter.empty:
                assert params[name].default == field.default, name
    own = set(inspect.signature(MemoryAttention.__init__).parameters)
    parts = set().union(*(s.model_fields for s in (LocalSpec, OneMemorySpec, ManyMemoriesSpec, ReportsSpec)))
    # torch.compile; local -> LocalSpec.kind or ReportsSpec.local_clamped; segment_len -> FixedSegments
    build_only = {"compile", "local", "segment_len"}
    assert set(MemoryAttentionSpec.model_fields) - build_only <= own | parts
    for name in MemoryAttentionSpec.model_fields.keys() & (own | parts):  # one default, wherever it lands
        for holder in (LocalSpec, OneMemorySpec, ManyMemoriesSpec, ReportsSpec):
            if name in holder.model_fields and name != "num_memories":
                assert holder.model_fields[name].default == MemoryAttentionSpec.model_fields[name].default, name


def n_params(**kw):
    return sum(p.numel() for p in MemoryAttentionSpec(hidden_size=512, num_heads=8, **kw).build().parameters())


def test_parameter_counts_of_the_family():
    base = n_params()
    assert n_params(num_memories=4) == base  # memory_norm landmark and soft selection: no parameters
    assert n_params(num_memories=4, hierarchy="soft") - base == 65_793  # MLP(512 -> 128 -> 1)
    assert n_params(num_memories=4, landmark="learned") - base == 64 * 64
    assert n_params(num_memories=4, selection_query="projection") - base == 512 * 512 + 512
    hsa = n_params(num_memories=4, landmark="hsa") - base
    assert 90_000 < hsa < 110_000  # 2-layer encoder at d = 64, shared by the heads (README lists it)
    assert MemoryAttentionSpec(num_memories=4).build().memory_nbytes() == 532_480


@pytest.mark.parametrize(
    "fields, name",
    [
        ({"write_policy": "random"}, "write_policy"),
        ({"fill_segments": 0}, "fill_segments"),
        ({"landmark": "max_k"}, "landmark"),
        ({"selection": "sparse"}, "selection"),
        ({"num_memories": 4, "top_k": 5}, "top_k"),
        ({"top_k": 0}, "top_k"),
        ({"selection_query": "k"}, "selection_query"),
        ({"selection_scope": "batch"}, "selection_scope"),
        ({"hierarchy": "deep"}, "hierarchy"),
    ],
)
def test_family_fields_reject_bad_values(fields, name):
    with pytest.raises(SpecError) as err:
        MemoryAttentionSpec.create(**fields)
    assert name in str(err.value)


def test_write_policies_pick_memories():
    x = torch.randn(1, 12, 8, dtype=torch.float64)

    def counts(**kw):
        layer = MemoryAttentionSpec(hidden_size=8, num_heads=2, segment_len=2, num_memories=3, **kw).build().double()
        _, state = layer(x)  # 6 segments
        return state.memory.writes, (state.memory.z.sum((-1, -2)) > 0).sum().item(), state

    assert counts(write_policy="round_robin")[1] == 3
    assert counts(write_policy="fill", fill_segments=4)[1] == 2
    _, used, state = counts(write_policy="nearest", landmark="mean_k")
    assert used == 3  # every memory is seeded before 'nearest' picks
    assert state.lm_count.sum().item() == 12  # mean_k counts keys


def test_hsa_pooling_matches_mean_of_key_runs():
    from memkit.blocks.landmark import ChunkEncoder

    torch.manual_seed(0)
    enc = ChunkEncoder(8, pool=3).double().eval()
    keys = torch.randn(2, 2, 7, 8, dtype=torch.float64)
    pooled = torch.stack([keys[:, :, 0:3].mean(2), keys[:, :, 3:6].mean(2), keys[:, :, 6:7].mean(2)], 2)
    enc1 = ChunkEncoder(8, pool=1).double().eval()
    enc1.load_state_dict(enc.state_dict())
    torch.testing.assert_close(enc(keys), enc1(pooled))


def test_half_precision_layer_keeps_its_memory_in_fp32_and_stays_finite():
    """σ(q)·z grows with every write: after 20k tokens it passes fp16's 65,504. The state and the memory
    maths stay in fp32 whatever the activations' dtype, so the reads stay finite."""
    from memkit.ops.naive import feature

    torch.manual_seed(0)
    layer = MemoryAttentionSpec(hidden_size=16, num_heads=2, segment_len=64).build().half()
    state = None
    with torch.no_grad():
        for _ in range(40):
            x = (torch.randn(1, 512, 16) * 3).half()
            y, state = layer(x, state)
    assert state.memory.M.dtype == torch.float32 and y.dtype == torch.float16 and torch.isfinite(y).all()
    q = layer.qkv(x)[..., :16].view(1, 512, 2, 8).transpose(1, 2)
    in_half = torch.einsum("bhtd,bhd->bht", feature(q), state.memory.z.half())
    assert torch.isinf(in_half).any()  # what an fp16 state would have read


def test_under_bf16_autocast_the_memory_state_stays_fp32():
    torch.manual_seed(0)
    layer = MemoryAttentionSpec(hidden_size=16, num_heads=2, segment_len=4, num_memories=3, landmark="mean_k",
                                hierarchy="soft").build()
    x = torch.randn(2, 24, 16)
    ref, ref_state = layer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, state = layer(x)
    assert state.memory.M.dtype == torch.float32 and state.lm_sum.dtype == torch.float32
    torch.testing.assert_close(y.float(), ref, rtol=0.05, atol=0.05)  # bf16 activations, fp32 memory
    # z is the fp32 sum of σ over the layer's own (bf16) keys: the write's maths ran in fp32
    from memkit.ops.naive import feature

    with torch.autocast("cpu", dtype=torch.bfloat16):
        k, v = layer.qkv(x)[..., 16:].view(2, 24, 2, 2, 8).permute(2, 0, 3, 1, 4)
    assert k.dtype == torch.bfloat16
    sk = feature(k.float())
    torch.testing.assert_close(state.memory.z.sum(1), sk.sum(2), rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(state.memory.M.sum(1), torch.einsum("bhtd,bhte->bhde", sk, v.float()), rtol=1e-5, atol=1e-5)


def test_normalised_memory_norm_landmark_is_the_direction_of_z():
    """ℓ = z/‖z‖ by hand; writing the same segment twice doubles z (and the raw landmark) but not
    the normalised one, so selection does not harden as a memory fills."""
    from memkit.blocks.landmark import Landmark

    z = torch.tensor([[[[3.0, 4.0]], [[0.0, 0.0]]]])  # [B=1, N=2, H=1, d=2]; memory 1 never written
    lm = Landmark("memory_norm_normalised", 2)
    torch.testing.assert_close(lm.landmarks(z, None, None), torch.tensor([[[[0.6, 0.8]], [[0.0, 0.0]]]]))
    torch.testing.assert_close(lm.landmarks(2 * z, None, None), lm.landmarks(z, None, None))
    torch.testing.assert_close(Landmark("memory_norm", 2).landmarks(2 * z, None, None), 2 * z)

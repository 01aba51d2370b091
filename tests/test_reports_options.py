"""The reports' code choices (docs/design.md, the reports' options) as named options; defaults are the careful ones."""

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
    layer.reset_shared = lambda moment: (seen.append((moment, layer.shared.state is not None)), orig(moment))[1]
    train(model, (ids, ids), (ids, ids), TrainSpec(max_epochs=2, batch_size=4, patience=5), progress=False)
    # empty at the start; written by epoch 1 before its validation; written by that validation (it writes by
    # default) before epoch 2; each time reset
    assert seen == [("training", False), ("validation", True), ("epoch", True), ("validation", True)]
    assert layer.shared.state is not None  # the last validation wrote


def test_one_group_decays_every_parameter_at_one_learning_rate():
    from memkit.training.trainer import TrainSpec, param_groups

    layer = shared_layer()
    [group] = param_groups(layer, TrainSpec(param_groups="one_group", lr=2e-3, gate_lr=1.0, weight_decay=0.01))
    assert group["lr"] == 2e-3 and group["weight_decay"] == 0.01
    assert {id(p) for p in group["params"]} == {id(p) for p in layer.parameters()}  # gate and biases included

def test_the_reports_multi_memory_layer_equals_a_loop_written_from_design_md():
    """The reports' layer as docs/design.md's last section describes it, over three calls: no segments (a call is
    one segment), causal linear local attention with the denominator clamped at 1e-6, no biases, one memory
    per head shared by the batch, read before it is written once per call (delta rule on the pre-call state,
    summed over batch and time, M / (B·T), z / B), round robin over 2 memories, selection σ(Q)·z unscaled
    averaged over ALL tokens of the call, unwritten memories kept in the softmax at score 0."""
    torch.manual_seed(0)
    H, d, N, eps = 2, 4, 2, 1e-6
    layer = MemoryAttentionSpec(
        hidden_size=8, num_heads=H, num_memories=N, update="delta", segmentation="whole_call", local="linear_clamped",
        bias=False, memory_scope="batch_shared", write_scale="reports", selection_score="reports",
        selection_scope="whole_call_leaks_future", unwritten_memories="kept_at_zero", gate_init=0.4).build().double()
    calls = [torch.randn(2, 5, 8, dtype=torch.float64) for _ in range(3)]
    W, Wo = layer.qkv.weight, layer.out.weight
    g = torch.sigmoid(layer.gate_logit)
    M, z, writes = torch.zeros(N, H, d, d, dtype=torch.float64), torch.zeros(N, H, d, dtype=torch.float64), 0
    for x in calls:
        B, T, _ = x.shape
        q, k, v = (x @ W.T).view(B, T, 3, H, d).unbind(2)  # [B,T,H,d] each
        sq, sk = feature(q), feature(k)
        y = torch.zeros(B, T, H, d, dtype=torch.float64)
        for b in range(B):
            for h in range(H):
                score = torch.stack([(sq[b, :, h] @ z[n, h]).mean() for n in range(N)])  # over every token
                w = score.softmax(0)
                for t in range(T):
                    a = torch.stack([sq[b, t, h] @ sk[b, s, h] for s in range(t + 1)])
                    a_dot = (a[:, None] * v[b, : t + 1, h]).sum(0) / a.sum().clamp_min(1e-6)
                    reads = [sq[b, t, h] @ M[n, h] / (sq[b, t, h] @ z[n, h] + eps) for n in range(N)]
                    a_mem = sum(w[n] * reads[n] for n in range(N))
                    y[b, t, h] = g[h] * a_mem + (1 - g[h]) * a_dot
        want = y.reshape(B, T, H * d) @ Wo.T
        got, _ = layer(x)
        torch.testing.assert_close(got, want)
        n = writes % N  # one write per call, of every token of every sequence
        dM, dz = torch.zeros(H, d, d, dtype=torch.float64), torch.zeros(H, d, dtype=torch.float64)
        for b in range(B):
            for t in range(T):
                for h in range(H):
                    retrieved = sk[b, t, h] @ M[n, h] / (sk[b, t, h] @ z[n, h] + eps)
                    dM[h] += torch.outer(sk[b, t, h], v[b, t, h] - retrieved)
                    dz[h] += sk[b, t, h]
        M[n], z[n], writes = M[n] + dM / (B * T), z[n] + dz / B, writes + 1


def test_linear_clamped_local_branch_divides_by_the_clamped_sum_not_the_sum_plus_eps():
    from memkit.ops.memory import causal_linear

    # d = 1, q = k = 0: σ = 1, so every score is 1 and token t averages v_0..v_t
    q = k = torch.zeros(1, 3, 1, dtype=torch.float64)
    v = torch.tensor([[[3.0], [5.0], [10.0]]], dtype=torch.float64)
    mean_so_far = torch.tensor([[[3.0], [4.0], [6.0]]], dtype=torch.float64)
    torch.testing.assert_close(causal_linear(q, k, v, 1e-3, clamp=True), mean_so_far, rtol=0, atol=1e-15)
    plus_eps = causal_linear(q, k, v, 1e-3)  # divides by t+1+ε
    torch.testing.assert_close(plus_eps, v.cumsum(1) / (torch.arange(1, 4, dtype=torch.float64)[:, None] + 1e-3))


def test_no_bias_removes_every_projection_bias():
    def count(**kw):
        return sum(p.numel() for p in MemoryAttentionSpec(hidden_size=8, num_heads=2, num_memories=2,
                                                          selection_query="projection", **kw).build().parameters())
    # qkv 8·24, out 8·8, Q_slc 8·8, gate logits 2; biases 24 + 8 + 8
    assert count(bias=False) == 192 + 64 + 64 + 2 and count() == 192 + 64 + 64 + 2 + 40


def test_whole_call_selection_weighs_every_token_by_the_mean_score_of_the_call():
    # d = 2, scaled score: token scores (2, 0)/√2 and (0, 2)/√2; their mean (1, 1)/√2 gives (½, ½) to both
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(1, 1, 2, 2)
    lm = torch.tensor([[2.0, 0.0], [0.0, 2.0]]).view(1, 2, 1, 2)
    written = torch.ones(1, 2, dtype=torch.bool)
    leaky = Selector(scope="whole_call_leaks_future")(q, lm, written)
    torch.testing.assert_close(leaky, torch.full((1, 1, 2, 2), 0.5))
    causal = Selector(scope="sequence")(q, lm, written)  # token 0 sees only itself: softmax(√2, 0)
    first = 1 / (1 + math.exp(-math.sqrt(2)))
    torch.testing.assert_close(causal[0, 0, 0], torch.tensor([first, 1 - first]))
    torch.testing.assert_close(causal[0, 0, 1], torch.tensor([0.5, 0.5]))


def test_unwritten_memories_kept_at_zero_take_their_softmax_share():
    from dataclasses import replace

    from memkit.blocks.segments import Memories
    from memkit.ops.naive import naive_read

    # reports' score σ(q)·ℓ with q = 0: σ = (1, 1); memory 0's z = (ln 3, 0) scores ln 3, unwritten memory 1
    # scores 0: weights softmax(ln 3, 0) = (3/4, 1/4), and memory 1 reads 0.
    lm = torch.tensor([[math.log(3), 0.0], [0.0, 0.0]]).view(1, 2, 1, 2)
    f = torch.ones(1, 1, 1, 2)
    written = torch.tensor([[True, False]])
    kept = Selector(score="reports", unwritten="kept_at_zero").weights(f, lm, written)
    torch.testing.assert_close(kept.flatten(), torch.tensor([0.75, 0.25]))
    torch.testing.assert_close(Selector(score="reports").weights(f, lm, written).flatten(), torch.tensor([1.0, 0.0]))
    # in the layer too, although a fresh state knows memory 1 is empty (that shortcut must not apply)
    layer = MemoryAttentionSpec(hidden_size=2, num_heads=1, num_memories=2, selection_score="reports",
                                unwritten_memories="kept_at_zero").build().double()
    state = layer.init_state(1, dtype=torch.float64).memory
    M0 = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]], dtype=torch.float64)  # [H,d,d]
    z0 = torch.tensor([[math.log(3), 0.0]], dtype=torch.float64)  # [H,d]
    M, z = state.M.clone(), state.z.clone()
    M[0, 0], z[0, 0] = M0, z0
    memory = replace(state, M=M, z=z, empty=frozenset({1}))
    q = torch.zeros(1, 1, 1, 2, dtype=torch.float64)
    got, _ = layer._read(Memories(memory), q, feature(q), None)
    torch.testing.assert_close(got, 0.75 * naive_read(M0[None], z0[None], q, layer.eps))


def test_the_reports_gate_reads_the_coarse_memory_through_a_relu():
    from memkit.ops.naive import naive_read

    torch.manual_seed(0)
    layer = MemoryAttentionSpec(hidden_size=8, num_heads=2, segment_len=3, num_memories=2, hierarchy="soft",
                                gate_input="coarse_read_relu").build().double()
    mlp = layer.expansion.mlp
    with torch.no_grad():  # p = sigmoid(relu(r₀)), r₀ = the coarse read's first coordinate (head 0, dim 0)
        for lin in (mlp[0], mlp[2]):
            lin.weight.zero_()
            lin.bias.zero_()
        mlp[0].weight[0, 0] = 1.0
        mlp[2].weight[0, 0] = 1.0
    x = torch.randn(1, 9, 8, dtype=torch.float64)
    _, state = layer(x[:, :6])  # two segments: both memories written
    layer(x[:, 6:], state)
    q = layer.qkv(x[:, 6:]).view(1, 3, 3, 2, 4)[:, :, 0].transpose(1, 2)  # [B,H,T,d]
    M, z = state.memory.M.sum(1), state.memory.z.sum(1)  # coarse = Σ fine
    r0 = naive_read(M, z, q, layer.eps)[0, 0, :, 0]
    assert layer.last_expand_share == pytest.approx(float(torch.sigmoid(torch.relu(r0)).mean().detach()))
    assert isinstance(mlp[1], torch.nn.ReLU)
    assert isinstance(MemoryAttentionSpec(num_memories=2, hierarchy="soft").build().expansion.mlp[1], torch.nn.GELU)


def test_nan_guard_turns_a_nan_memory_read_into_no_memory():
    from dataclasses import replace

    torch.manual_seed(0)
    layer = MemoryAttentionSpec(hidden_size=8, num_heads=2, segment_len=4, nan_guard=True).build().double()
    fresh = layer.init_state(1, dtype=torch.float64)
    broken = replace(fresh, memory=replace(fresh.memory, M=torch.full_like(fresh.memory.M, float("nan")),
                                           empty=frozenset()))
    x = torch.randn(1, 4, 8, dtype=torch.float64)
    torch.testing.assert_close(layer(x, broken)[0], layer(x, fresh)[0])  # an empty memory reads exactly 0
    layer.nan_guard = False
    assert layer(x, broken)[0].isnan().all()


@pytest.mark.parametrize("policy, emptied", [("each_epoch", {"training", "epoch", "validation"}), ("once", {"training"})])
def test_shared_reset_policies(policy, emptied):
    layer = shared_layer(shared_reset=policy)
    x = torch.randn(2, 8, 8, dtype=torch.float64)
    for moment in ("training", "epoch", "validation"):
        layer(x)
        layer.reset_shared(moment)
        assert (layer.shared.state is None) == (moment in emptied), moment


@pytest.mark.parametrize("regime", ["writes", "read_only"])
def test_shared_validation_regimes(regime):
    """read_only (001, 002-hierarchical): evaluation reads, never writes; after the reset before validation it
    reads an empty memory, and the memory path gives exactly 0."""
    layer = shared_layer(shared_validation=regime)
    x = torch.randn(2, 8, 8, dtype=torch.float64)
    layer.train()
    layer(x)
    layer.reset_shared("validation")
    layer.eval()
    y, _ = layer(x)
    assert (layer.shared.state.memory.writes == 1) == (regime == "writes")
    with torch.no_grad():
        layer.gate_logit.fill_(-1e4)  # g = 0: out(A_dot) alone
        local_only, _ = layer(x)
    if regime == "read_only":  # g = ½ and A_mem = 0: y = out(½·A_dot) = ½·out(A_dot) + ½·bias
        torch.testing.assert_close(y, 0.5 * local_only + 0.5 * layer.out.bias)


def test_hsa_last_keys_parameters_are_the_reports():
    """Report 000: HSA adds 1,095,168 parameters over memory_norm at hidden 512, 8 heads: Q_slc without bias
    (262,144) and per head a post-norm 2-layer encoder (d 64, 4 heads, FF 256), [CLS] and a projection without
    bias (104,128 each)."""
    def count(**kw):
        return sum(p.numel() for p in MemoryAttentionSpec(hidden_size=512, num_heads=8, num_memories=4, bias=False,
                                                          **kw).build().parameters())
    assert count(landmark="hsa_last_keys", selection_query="projection") - count() == 1_095_168
    per_head = MemoryAttentionSpec(num_memories=4, landmark="hsa_last_keys").build().landmark.head_encoders[0]
    assert sum(p.numel() for p in per_head.parameters()) == 104_128


def test_hsa_last_keys_keeps_each_memorys_last_raw_keys_and_encodes_only_those():
    torch.manual_seed(0)
    layer = MemoryAttentionSpec(hidden_size=8, num_heads=2, segment_len=2, num_memories=2, landmark="hsa_last_keys",
                                hsa_keys=3).build().double().eval()
    x = torch.randn(1, 8, 8, dtype=torch.float64)  # segments 0, 2 -> memory 0; 1, 3 -> memory 1
    _, state = layer(x)
    k = layer.qkv(x).view(1, 8, 3, 2, 4)[:, :, 1].transpose(1, 2)  # raw keys [B,H,T,d]
    torch.testing.assert_close(state.lm_sum[:, 0], k[:, :, [1, 4, 5]])  # memory 0 got keys 0, 1, 4, 5: last 3
    torch.testing.assert_close(state.lm_sum[:, 1], k[:, :, [3, 6, 7]])
    assert state.lm_count.tolist() == [[3, 3]] and not state.lm_sum.requires_grad
    # a memory holding fewer keys than it keeps encodes those alone (the padding is masked)
    _, short = layer(x[:, :2])
    encoder = layer.landmark.head_encoders[1]
    alone = encoder(k[:, 1:2, None, :2].reshape(1, 1, 2, 4))
    torch.testing.assert_close(layer.landmark.landmarks(None, short.lm_sum, short.lm_count)[:, 0, 1], alone[:, 0])
    # a segment longer than the memory keeps: its last keys
    long = MemoryAttentionSpec(hidden_size=8, num_heads=2, segment_len=4, num_memories=2, landmark="hsa_last_keys",
                               hsa_keys=3).build().double()
    _, state = long(x[:, :4])
    torch.testing.assert_close(state.lm_sum[:, 0], long.qkv(x[:, :4]).view(1, 4, 3, 2, 4)[:, 1:, 1].transpose(1, 2))


def test_batch_shared_hsa_keeps_the_last_sequence_of_the_last_batch():
    layer = shared_layer(num_memories=2, landmark="hsa_last_keys", hsa_keys=8, segmentation="whole_call").eval()
    x = torch.randn(3, 6, 8, dtype=torch.float64)
    layer(x)
    k = layer.qkv(x).view(3, 6, 3, 2, 4)[:, :, 1].transpose(1, 2)
    state = layer.shared.state
    assert state.lm_count.tolist() == [[6, 0]]
    torch.testing.assert_close(state.lm_sum[0, 0, :, 2:], k[-1])


@pytest.mark.parametrize("residual", ["parallel", "sequential"])
def test_the_memory_layers_residual(residual):
    """Report 000's memory layer: x + attn(LN x), then + mlp(LN of that); GPT-NeoX's: x + attn(LN x) + mlp(LN x)."""
    from memkit.models.memory_lm import MemoryLMSpec

    torch.manual_seed(0)
    model = MemoryLMSpec.create(vocab_size=20, hidden_size=8, num_layers=2, num_heads=2, intermediate_size=16,
                                memory_residual=residual, memory=dict(segment_len=4)).build().double()
    block = model.hf.gpt_neox.layers[0]
    h = torch.randn(1, 8, 8, dtype=torch.float64)
    a = block.attention(block.input_layernorm(h))[0]
    if residual == "sequential":
        want = block.mlp(block.post_attention_layernorm(h + a)) + h + a
    else:
        want = block.mlp(block.post_attention_layernorm(h)) + h + a
    torch.testing.assert_close(block(h), want)
    assert model.hf.gpt_neox.layers[1].use_parallel_residual  # only the memory layer's block changes

"""Laws of the memory family: hierarchy additivity, selection equivalences, streaming with every option."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from memkit import MemoryAttentionSpec, MemoryStoreSpec
from memkit.blocks.hierarchical import coarse
from memkit.blocks.selector import Selector
from memkit.ops.memory import read_memories

seeds = st.integers(0, 10_000)


def rand(shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@given(N=st.integers(2, 4), writes=st.lists(st.integers(0, 3), min_size=1, max_size=6),
       update=st.sampled_from(["linear", "delta"]), seed=seeds)
def test_coarse_memory_is_the_sum_of_the_fine_ones(N, writes, update, seed):
    store = MemoryStoreSpec(num_heads=2, head_dim=3, num_memories=N, update=update).build()
    fine = store.init_state(2, dtype=torch.float64)
    single = MemoryStoreSpec(num_heads=2, head_dim=3, update="linear").build()
    total = single.init_state(2, dtype=torch.float64)
    for i, target in enumerate(writes):
        k, v = rand((2, 2, 4, 3), seed + i), rand((2, 2, 4, 3), seed + 100 + i)
        fine = store.write(fine, k, v, memory=target % N)
        if update == "linear":
            total = single.write(total, k, v)
    Mc, zc = coarse(*fine.stacked())
    torch.testing.assert_close(Mc[:, 0], fine.M.sum(1))
    torch.testing.assert_close(zc[:, 0], fine.z.sum(1))
    if update == "linear":  # and, for linear writes, equals one memory that took every write
        torch.testing.assert_close(Mc[:, 0], total.M)
        torch.testing.assert_close(zc[:, 0], total.z)


@given(seed=seeds, update=st.sampled_from(["linear", "delta"]), N=st.integers(2, 4),
       landmark=st.sampled_from(["memory_norm", "memory_norm_normalised", "mean_k", "learned"]), target=st.integers(0, 3))
def test_soft_selection_over_one_written_memory_equals_the_single_memory_layer(seed, update, N, landmark, target):
    """Every segment goes to one memory (``target``); the state claims nothing about which memories are
    empty, so it is the selector's mask that gives the unwritten ones weight 0."""
    from dataclasses import replace

    torch.manual_seed(seed)
    one = MemoryAttentionSpec(hidden_size=8, num_heads=2, segment_len=3, update=update).build().double()
    many = MemoryAttentionSpec(hidden_size=8, num_heads=2, segment_len=3, update=update, num_memories=N,
                               landmark=landmark).build().double()
    many.load_state_dict(one.state_dict(), strict=False)
    x = torch.randn(2, 11, 8, dtype=torch.float64)
    fresh = many.init_state(2, dtype=torch.float64)
    unknown = replace(fresh, memory=replace(fresh.memory, empty=frozenset()))
    torch.testing.assert_close(many(x, unknown, memory=target % N)[0], one(x)[0])


@given(N=st.integers(2, 6), seed=seeds, data=st.data())
def test_hard_selector_reads_exactly_the_memory_its_landmarks_point_at(N, seed, data):
    """By construction every query leans towards one direction u, memory j's landmark is far along u
    and every other landmark points away from it: top-1 must pick j for every token."""
    j = data.draw(st.integers(0, N - 1))
    M, z = rand((1, N, 2, 3, 3), seed).abs(), rand((1, N, 2, 3), seed + 1).abs()
    u = torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64)
    q = u + 0.1 * rand((1, 2, 5, 3), seed + 2)  # q·u > 0 for every token
    landmarks = -rand((1, N, 2, 3), seed + 3).abs().sum(-1, keepdim=True) * u  # others: along −u
    landmarks[:, j] = 100 * u
    w = Selector("hard", top_k=1)(q, landmarks, torch.ones(1, N, dtype=torch.bool))
    reads = read_memories(M, z, q, 1e-6)
    got = torch.einsum("bhtn,bnhtd->bhtd", w, reads)
    assert (w[..., j] == 1).all() and w.sum() == w[..., j].sum()
    torch.testing.assert_close(got, reads[:, j])


@given(N=st.integers(2, 5), seed=seeds)
def test_hard_top_k_with_k_equal_N_is_soft_selection(N, seed):
    q, lm = rand((2, 2, 4, 3), seed), rand((2, N, 2, 3), seed + 1)
    written = torch.ones(2, N, dtype=torch.bool)
    torch.testing.assert_close(Selector("hard", top_k=N)(q, lm, written), Selector("soft")(q, lm, written))


@given(N=st.integers(3, 5), k=st.integers(1, 2), seed=seeds)
def test_hard_top_k_renormalises_soft_weights_and_keeps_a_gradient(N, k, seed):
    q, lm = rand((1, 2, 4, 3), seed), rand((1, N, 2, 3), seed + 1).requires_grad_()
    written = torch.ones(1, N, dtype=torch.bool)
    hard = Selector("hard", top_k=k)(q, lm, written)
    soft = Selector("soft")(q, lm, written).detach()
    assert ((hard > 0).sum(-1) == k).all()
    keep = hard > 0
    torch.testing.assert_close(hard.detach()[keep], (soft * keep / (soft * keep).sum(-1, keepdim=True))[keep])
    (hard * torch.arange(N, dtype=hard.dtype)).sum().backward()
    assert lm.grad.abs().sum() > 0  # straight-through: scores still train


options = st.fixed_dictionaries({
    "num_memories": st.integers(2, 3),
    "write_policy": st.sampled_from(["round_robin", "fill", "nearest"]),
    "landmark": st.sampled_from(["memory_norm", "memory_norm_normalised", "mean_k", "learned", "hsa"]),
    "selection": st.sampled_from(["soft", "hard"]),
    "selection_query": st.sampled_from(["q", "projection"]),
    "selection_scope": st.sampled_from(["token", "sequence"]),
    "hierarchy": st.sampled_from(["none", "soft", "hard"]),
    "key_shift": st.booleans(),
})


# Every setting of MemoryAttentionSpec but its shape (hidden_size, num_heads), the guard eps, the gate's
# start and how the block is built (compile). A new field fails the coverage test below until added.
NOT_SWEPT = {"hidden_size", "num_heads", "eps", "gate_init", "compile"}

# Known exceptions to "streams exactly and stays causal", each by design and tested on its own below:
# the reports' whole-call selection averages over later tokens (it leaks the future); with
# segmentation="whole_call" a call is one segment, so pieces are other segments than the whole;
# the batch-shared memory carries one memory across calls and sequences; encoder dropout is random.
KNOWN_EXCEPTIONS = {"selection_scope": "whole_call_leaks_future", "segmentation": "whole_call",
                    "memory_scope": "batch_shared", "hsa_dropout": "> 0 in training"}


def used(cfg: dict) -> dict:
    """cfg with the fields that mean nothing for its design at their defaults (setting them is a SpecError)."""
    inert = MemoryAttentionSpec.inert_fields(cfg)
    return {k: MemoryAttentionSpec.model_fields[k].default if k in inert else v for k, v in cfg.items()}


@st.composite
def every_option(draw, scope=st.sampled_from(["sequence"]), selection_scope=st.sampled_from(["token", "sequence"]),
                 segmentation=st.just("fixed"), hsa_dropout=st.just(0.0)):
    N = draw(st.integers(1, 3))
    return used({
        "segment_len": draw(st.integers(1, 4)),
        "update": draw(st.sampled_from(["linear", "delta"])),
        "num_memories": N,
        "local": draw(st.sampled_from(["softmax", "linear", "linear_clamped"])),
        "key_shift": draw(st.booleans()),
        "rotary_dim": draw(st.sampled_from([0, 2, 4])),
        "rotary_base": draw(st.sampled_from([10000.0, 500.0])),
        "write_policy": draw(st.sampled_from(["round_robin", "fill", "nearest"])),
        "fill_segments": draw(st.integers(1, 3)),
        "landmark": draw(st.sampled_from(["memory_norm", "memory_norm_normalised", "mean_k", "learned", "hsa",
                                          "hsa_last_keys"])),
        "selection": draw(st.sampled_from(["soft", "hard"])),
        "top_k": draw(st.integers(1, N)),
        "selection_query": draw(st.sampled_from(["q", "projection"])),
        "selection_scope": draw(selection_scope),
        "hierarchy": draw(st.sampled_from(["none", "soft", "hard"])),
        "selection_score": draw(st.sampled_from(["scaled", "reports"])),
        "memory_scope": draw(scope),
        "write_scale": draw(st.sampled_from(["equal", "reports"])),
        "hsa_pool": draw(st.integers(1, 4)),
        "segmentation": draw(segmentation),
        "bias": draw(st.booleans()),
        "unwritten_memories": draw(st.sampled_from(["excluded", "kept_at_zero"])),
        "gate_input": draw(st.sampled_from(["hidden_gelu", "coarse_read_relu"])),
        "hsa_keys": draw(st.integers(1, 6)),
        "hsa_dropout": draw(hsa_dropout),
        "nan_guard": draw(st.booleans()),
        "shared_reset": draw(st.sampled_from(["each_epoch", "once"])),
        "shared_validation": draw(st.sampled_from(["writes", "read_only"])),
        "write_strategy": draw(st.sampled_from(["loop", "cumulative_sum"])),
    })


@settings(max_examples=1)
@given(cfg=every_option())
def test_the_option_laws_sweep_every_field(cfg):
    assert set(cfg) | NOT_SWEPT == set(MemoryAttentionSpec.model_fields), "sweep the new field in every_option()"


def assert_states_equal(a, b):
    torch.testing.assert_close(a.memory.M, b.memory.M)
    torch.testing.assert_close(a.memory.z, b.memory.z)
    assert a.memory.writes == b.memory.writes
    for name in ("pending_q", "pending_k", "pending_v", "prev_k", "lm_sum", "lm_count"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            torch.testing.assert_close(x, y)


@given(cfg=every_option(), seed=seeds, T=st.integers(1, 14), train=st.booleans(), data=st.data())
def test_every_option_streams_exactly_and_stays_causal(cfg, seed, T, train, data):
    """Per-sequence memory: a sequence fed in pieces (several cuts) gives the whole call's outputs and
    final state, and no output depends on a later token."""
    torch.manual_seed(seed)
    layer = MemoryAttentionSpec(hidden_size=8, num_heads=2, **cfg).build().double()
    layer.train(train)
    x = torch.randn(2, T, 8, dtype=torch.float64)
    whole, whole_state = layer(x)
    cuts = sorted(data.draw(st.lists(st.integers(0, T), min_size=1, max_size=4)))
    outs, state, start = [], None, 0
    for end in cuts + [T]:
        y, state = layer(x[:, start:end], state)
        outs.append(y)
        start = end
    torch.testing.assert_close(torch.cat(outs, 1), whole)
    assert_states_equal(state, whole_state)
    if T > 1:
        t = data.draw(st.integers(0, T - 2))
        x2 = x.clone()
        x2[:, t + 1 :] += 1.0
        torch.testing.assert_close(layer(x2)[0][:, : t + 1], whole[:, : t + 1])


@given(cfg=every_option(scope=st.just("batch_shared"), segmentation=st.sampled_from(["fixed", "whole_call"])),
       seed=seeds, T=st.integers(1, 14), data=st.data())
def test_batch_shared_memory_runs_every_option_call_after_call_and_stays_causal(cfg, seed, T, data):
    """The reports' batch-shared memory is the known exception to streaming: it carries one memory across
    calls and sequences by design. Every option runs call after call (a later call reads what earlier
    ones wrote), no output depends on a later token of its call, and a reset empties the memory."""
    torch.manual_seed(seed)
    layer = MemoryAttentionSpec(hidden_size=8, num_heads=2, **cfg).build().double().train()
    x = torch.randn(2, T, 8, dtype=torch.float64)
    first, _ = layer(x)
    for _ in range(2):  # the memory now holds earlier calls' segments
        y, _ = layer(x)
        assert torch.isfinite(y).all()
    if T > 1:
        t = data.draw(st.integers(0, T - 2))
        x2 = x.clone()
        x2[:, t + 1 :] += 1.0
        snapshot = layer.path.shared.state
        y2, _ = layer(x2)
        layer.path.shared.state = snapshot
        torch.testing.assert_close(y2[:, : t + 1], layer(x)[0][:, : t + 1])
    layer.path.reset_shared("training")
    torch.testing.assert_close(layer(x)[0], first)


@given(cfg=every_option(segmentation=st.just("whole_call")), seed=seeds, L=st.integers(1, 5),
       calls=st.integers(1, 3), train=st.booleans())
def test_a_whole_call_segment_is_the_fixed_segment_of_the_calls_length(cfg, seed, L, calls, train):
    """segmentation="whole_call" (the reports'): each call is one segment, written when the call ends.
    Calls of L tokens each equal a fixed-segment layer of segment_len L fed everything at once."""
    torch.manual_seed(seed)
    fixed = MemoryAttentionSpec(hidden_size=8, num_heads=2, **{**cfg, "segmentation": "fixed", "segment_len": L}).build()
    whole = MemoryAttentionSpec(hidden_size=8, num_heads=2, **cfg).build()
    whole.load_state_dict(fixed.state_dict())
    fixed, whole = fixed.double().train(train), whole.double().train(train)
    x = torch.randn(2, calls * L, 8, dtype=torch.float64)
    ref, ref_state = fixed(x)
    outs, state = [], None
    for c in range(calls):
        y, state = whole(x[:, c * L : (c + 1) * L], state)
        outs.append(y)
    torch.testing.assert_close(torch.cat(outs, 1), ref)
    assert state.memory.writes == ref_state.memory.writes == calls


@given(seed=seeds, N=st.integers(2, 3), score=st.sampled_from(["scaled", "reports"]))
def test_whole_call_selection_leaks_the_future_and_the_sequence_scope_does_not(seed, N, score):
    """The reports' selection averages scores over every token of the call: changing the last token
    changes the first token's output. The causal "sequence" scope keeps it."""
    torch.manual_seed(seed)
    cfg = dict(hidden_size=8, num_heads=2, segment_len=3, num_memories=N, selection_score=score)
    leaky = MemoryAttentionSpec(**cfg, selection_scope="whole_call_leaks_future").build().double()
    causal = MemoryAttentionSpec(**cfg, selection_scope="sequence").build().double()
    causal.load_state_dict(leaky.state_dict())
    _, state = leaky(torch.randn(1, 3 * N, 8, dtype=torch.float64))  # every memory written
    x = torch.randn(1, 6, 8, dtype=torch.float64)  # two segments: the mean spans both
    x2 = x.clone()
    x2[:, -1] += 3.0  # the last token of the second segment
    assert not torch.allclose(leaky(x, state)[0][:, :3], leaky(x2, state)[0][:, :3])
    torch.testing.assert_close(causal(x, state)[0][:, :3], causal(x2, state)[0][:, :3])


@given(seed=seeds, mode=st.sampled_from(["soft", "hard"]), N=st.integers(2, 4), train=st.booleans(),
       landmark=st.sampled_from(["memory_norm", "mean_k", "learned"]))
def test_a_shut_gate_reads_the_coarse_memory_and_an_open_one_the_fine_ones(seed, mode, N, train, landmark):
    """Gate shut (p → 0): the hierarchical layer is a single memory that took every write (coarse = Σ fine,
    linear writes). Gate open (p → 1): it is the plain multi-memory layer."""
    torch.manual_seed(seed)
    cfg = dict(hidden_size=8, num_heads=2, segment_len=3, update="linear")
    hier = MemoryAttentionSpec(**cfg, num_memories=N, landmark=landmark, hierarchy=mode).build().double().train(train)
    single = MemoryAttentionSpec(**cfg).build().double().train(train)
    multi = MemoryAttentionSpec(**cfg, num_memories=N, landmark=landmark).build().double().train(train)
    single.load_state_dict(hier.state_dict(), strict=False)
    multi.load_state_dict(hier.state_dict(), strict=False)
    x = torch.randn(2, 13, 8, dtype=torch.float64)
    last = hier.expansion.mlp[2]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(-40.0)
    torch.testing.assert_close(hier(x)[0], single(x)[0])
    assert hier.last_expand_share < 1e-6
    with torch.no_grad():
        last.bias.fill_(40.0)
    torch.testing.assert_close(hier(x)[0], multi(x)[0])
    assert hier.last_expand_share > 1 - 1e-6


@given(cfg=options, seed=seeds, T=st.integers(1, 20), group=st.integers(2, 5), train=st.booleans())
def test_batched_segment_reads_equal_the_per_segment_reference(cfg, seed, T, group, train):
    torch.manual_seed(seed)
    layer = MemoryAttentionSpec(hidden_size=8, num_heads=2, segment_len=3, update="delta", **cfg).build().double()
    layer.train(train)
    x = torch.randn(2, T, 8, dtype=torch.float64, requires_grad=True)
    layer.path.read_group = 1  # reference: one read call per segment
    ref, _ = layer(x)
    (g_ref,) = torch.autograd.grad(ref.square().sum(), x)
    layer.path.read_group = group
    fast, _ = layer(x)
    (g_fast,) = torch.autograd.grad(fast.square().sum(), x)
    torch.testing.assert_close(fast, ref)
    torch.testing.assert_close(g_fast, g_ref)


@given(seed=seeds, N=st.integers(1, 5), segments=st.integers(1, 6),
       landmark=st.sampled_from(["memory_norm", "memory_norm_normalised", "mean_k", "learned", "hsa"]),
       selection=st.sampled_from(["soft", "hard"]), hierarchy=st.sampled_from(["none", "soft", "hard"]),
       write_policy=st.sampled_from(["round_robin", "fill"]))
def test_skipping_memories_known_empty_changes_nothing(seed, N, segments, landmark, selection, hierarchy,
                                                       write_policy):
    """Reads and writes skip memories a fresh state knows are empty; a state that claims nothing
    computes them all. Outputs and gradients agree."""
    from dataclasses import replace

    torch.manual_seed(seed % 1000)
    layer = MemoryAttentionSpec(**used(dict(hidden_size=8, num_heads=2, segment_len=3, num_memories=N, landmark=landmark,
                                selection=selection, hierarchy=hierarchy if N > 1 else "none",
                                write_policy=write_policy, update="delta"))).build().double()
    x = rand((2, 3 * segments, 8), seed).requires_grad_()
    fresh = layer.init_state(2, dtype=torch.float64)
    unknown = replace(fresh, memory=replace(fresh.memory, empty=frozenset()))
    outs, grads = [], []
    for state in (fresh, unknown):
        y, _ = layer(x, state)
        g, = torch.autograd.grad((y * rand(y.shape, seed + 1)).sum(), x)
        outs.append(y)
        grads.append(g)
    torch.testing.assert_close(outs[0], outs[1])
    torch.testing.assert_close(grads[0], grads[1])


@given(cfg=every_option(), seed=seeds, T=st.integers(1, 16), train=st.booleans(),
       dtype=st.sampled_from([torch.float64, torch.float32]), policy=st.sampled_from(["round_robin", "fill"]),
       landmark=st.sampled_from(["memory_norm", "memory_norm_normalised", "mean_k", "learned", "hsa"]))
def test_linear_writes_by_one_cumulative_sum_equal_the_write_loop(cfg, seed, T, train, dtype, policy, landmark):
    """The cumulative-sum path (linear writes into memories known in advance) beside the plain loop it
    replaces: outputs, gradients and the carried state agree (fp64 1e-10, fp32 1e-5). Every example takes
    the cumulative-sum path on one side and the loop on the other."""
    from unittest import mock

    from memkit.blocks import memory_path

    torch.manual_seed(seed)
    cfg = used({**cfg, "update": "linear", "write_policy": policy, "landmark": landmark})  # writes that add up
    layers = {s: MemoryAttentionSpec(hidden_size=8, num_heads=2, **{**cfg, "write_strategy": s}).build().to(dtype)
              for s in ("cumulative_sum", "loop")}
    layers["loop"].load_state_dict(layers["cumulative_sum"].state_dict())
    x = torch.randn(2, T, 8, dtype=dtype, requires_grad=True)
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
    results = []
    for strategy, layer in layers.items():
        layer.train(train)
        with mock.patch.object(memory_path, "cumulative_writes", wraps=memory_path.cumulative_writes) as spy:
            _, state = layer(x[:, : T // 2])  # a pending segment and written memories to start from
            y, final = layer(x[:, T // 2 :], state)
        calls = 1 + (T // 2 > 0)  # a call of no tokens writes nothing
        assert spy.call_count == (calls if strategy == "cumulative_sum" else 0)
        (g,) = torch.autograd.grad((y * torch.linspace(-1, 1, y.numel(), dtype=dtype).view_as(y)).sum(), x)
        results.append((y, g, final))
    (y1, g1, s1), (y2, g2, s2) = results
    torch.testing.assert_close(y1, y2, **tol)
    torch.testing.assert_close(g1, g2, **tol)
    torch.testing.assert_close(s1.memory.M, s2.memory.M, **tol)
    torch.testing.assert_close(s1.memory.z, s2.memory.z, **tol)
    assert (s1.memory.writes, s1.memory.empty) == (s2.memory.writes, s2.memory.empty)
    if s1.lm_sum is not None:
        torch.testing.assert_close(s1.lm_sum, s2.lm_sum, **tol)
        assert torch.equal(s1.lm_count, s2.lm_count)

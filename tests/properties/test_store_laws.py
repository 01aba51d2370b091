"""Laws of the compressive memory (docs/design.md), pinned with hypothesis."""

import torch
from hypothesis import given
from hypothesis import strategies as st

from memkit import MemoryState, MemoryStoreSpec
from memkit.ops.naive import feature, naive_read, naive_write

dims = st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 9), st.integers(2, 8))  # B,H,T,d
seeds = st.integers(0, 2**31 - 1)


def rand(shape, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64) * scale


@given(dims, dims, seeds)
def test_linear_writes_are_additive_and_order_free(a, b, seed):
    B, H, _, d = a
    Ta, Tb = a[2], b[2]
    store = MemoryStoreSpec(num_heads=H, head_dim=d, update="linear").build()
    empty = store.init_state(B, dtype=torch.float64)
    kA, vA = rand((B, H, Ta, d), seed), rand((B, H, Ta, d), seed + 1)
    kB, vB = rand((B, H, Tb, d), seed + 2), rand((B, H, Tb, d), seed + 3)
    ab = store.write(store.write(empty, kA, vA), kB, vB)
    ba = store.write(store.write(empty, kB, vB), kA, vA)
    sA, sB = store.write(empty, kA, vA), store.write(empty, kB, vB)
    union = store.write(empty, torch.cat((kA, kB), 2), torch.cat((vA, vB), 2))
    for other in (ba, union):
        torch.testing.assert_close(ab.M, other.M)
        torch.testing.assert_close(ab.z, other.z)
    torch.testing.assert_close(ab.M, sA.M + sB.M)
    torch.testing.assert_close(ab.z, sA.z + sB.z)


@given(dims, seeds, st.sampled_from(["linear", "delta"]), st.booleans())
def test_write_and_read_match_per_token_reference(shape, seed, update, prefill):
    B, H, T, d = shape
    store = MemoryStoreSpec(num_heads=H, head_dim=d, update=update).build()
    state = store.init_state(B, dtype=torch.float64)
    if prefill:  # delta differs from linear only once the memory holds something
        state = store.write(state, rand((B, H, 5, d), seed + 7), rand((B, H, 5, d), seed + 8))
    k, v, q = (rand((B, H, T, d), seed + i) for i in range(3))
    new = store.write(state, k, v)
    M_ref, z_ref = naive_write(state.M, state.z, k, v, store.eps, update)
    torch.testing.assert_close(new.M, M_ref)
    torch.testing.assert_close(new.z, z_ref)
    torch.testing.assert_close(store.read(new, q), naive_read(M_ref, z_ref, q, store.eps))


@given(st.integers(1, 3), st.integers(2, 6), seeds)
def test_delta_write_of_a_known_pair_leaves_M_unchanged(H, d, seed):
    # A memory holding one key returns its value exactly (the read is M's row over z's entry
    # only when a single key is stored), so writing that pair again changes nothing in M.
    store = MemoryStoreSpec(num_heads=H, head_dim=d, update="delta", eps=1e-12).build()
    k, v = rand((1, H, 1, d), seed), rand((1, H, 1, d), seed + 1)
    state = store.write(store.init_state(1, dtype=torch.float64), k, v)
    torch.testing.assert_close(store.read(state, k), v)
    again = store.write(state, k, v)
    torch.testing.assert_close(again.M, state.M, atol=1e-9, rtol=0)
    torch.testing.assert_close(again.z, state.z + feature(k).sum(2))  # z still grows


def test_delta_differs_from_linear_once_memory_is_full():
    lin = MemoryStoreSpec(num_heads=1, head_dim=4, update="linear").build()
    dlt = MemoryStoreSpec(num_heads=1, head_dim=4, update="delta").build()
    k, v = rand((1, 1, 3, 4), 0), rand((1, 1, 3, 4), 1)
    s_lin = lin.write(lin.write(lin.init_state(1, dtype=torch.float64), k, v), k, v)
    s_dlt = dlt.write(dlt.write(dlt.init_state(1, dtype=torch.float64), k, v), k, v)
    assert (s_lin.M - s_dlt.M).abs().max() > 1e-3


@given(N=st.integers(1, 3), B=st.integers(1, 4), seed=seeds)
def test_state_save_load_round_trips_bit_for_bit(N, B, seed, tmp_path_factory):
    store = MemoryStoreSpec(num_heads=2, head_dim=4, num_memories=N).build()
    state = store.write(store.init_state(B), rand((B, 2, 3, 4), seed).float(), rand((B, 2, 3, 4), seed + 1).float())
    path = tmp_path_factory.mktemp("state") / "s.pt"
    state.save(path)
    back = MemoryState.load(path)
    assert torch.equal(back.M, state.M) and torch.equal(back.z, state.z) and back.writes == state.writes


def test_memory_bytes():
    assert MemoryStoreSpec(num_heads=8, head_dim=64).build().state_nbytes() == 133_120
    assert MemoryStoreSpec(num_heads=8, head_dim=64, num_memories=4).build().state_nbytes() == 532_480
    state = MemoryStoreSpec(num_heads=8, head_dim=64).build().init_state(batch_size=2)
    assert state.M.shape == (2, 8, 64, 64) and state.z.shape == (2, 8, 64)
    assert state.nbytes == 2 * 133_120
    multi = MemoryStoreSpec(num_heads=8, head_dim=64, num_memories=4).build().init_state(batch_size=2)
    assert multi.M.shape == (2, 4, 8, 64, 64) and multi.nbytes_per_sequence == 532_480


def test_round_robin_writes_and_explicit_target():
    store = MemoryStoreSpec(num_heads=1, head_dim=2, num_memories=3).build()
    state = store.init_state(2)
    k = v = torch.ones(2, 1, 1, 2)
    for _ in range(4):
        state = store.write(state, k, v)
    assert state.written().all()
    assert state.z[:, 0].sum() == 2 * state.z[:, 1].sum()  # memory 0 got writes 0 and 3
    state = store.write(store.init_state(2), k, v, memory=torch.tensor([2, 1]))
    assert state.written().tolist() == [[False, False, True], [False, True, False]]


@given(N=st.integers(1, 5), seed=seeds, T=st.integers(1, 7))
def test_mixed_read_fast_path_equals_weighted_per_memory_reads(N, seed, T):
    from memkit.ops.memory import mixed_read, read_memories

    M, z = rand((2, N, 3, 4, 4), seed).abs(), rand((2, N, 3, 4), seed + 1).abs()
    q = rand((2, 3, T, 4), seed + 2).requires_grad_()
    w = rand((2, 3, T, N), seed + 3).softmax(-1)
    ref = torch.einsum("bhtn,bnhtd->bhtd", w, read_memories(M, z, q, 1e-6))
    fast = mixed_read(M, z, q, w, 1e-6)
    torch.testing.assert_close(fast, ref)
    torch.testing.assert_close(torch.autograd.grad(fast.sum(), q)[0], torch.autograd.grad(ref.sum(), q)[0])


@given(N=st.integers(1, 4), seed=seeds, update=st.sampled_from(["linear", "delta"]), data=st.data())
def test_slice_write_equals_one_hot_write(N, seed, update, data):
    from memkit.ops.memory import segment_write

    j = data.draw(st.integers(0, N - 1))
    M, z = rand((2, N, 2, 3, 3), seed), rand((2, N, 2, 3), seed + 1).abs()
    k, v = rand((2, 2, 4, 3), seed + 2), rand((2, 2, 4, 3), seed + 3)
    fast = segment_write(M, z, k, v, j, 1e-6, update)
    ref = segment_write(M, z, k, v, torch.full((2,), j), 1e-6, update)
    torch.testing.assert_close(fast[0], ref[0])
    torch.testing.assert_close(fast[1], ref[1])


@given(dims, st.integers(1, 4), seeds, st.sampled_from(["linear", "delta"]))
def test_writes_into_memories_known_empty_equal_the_full_computation(shape, N, seed, update):
    """The skip taken for a memory known to be empty gives the same state as computing it."""
    B, H, T, d = shape
    store = MemoryStoreSpec(num_heads=H, head_dim=d, update=update, num_memories=N).build()
    fast = store.init_state(B, dtype=torch.float64)
    assert fast.empty == frozenset(range(N))
    slow = MemoryState(M=fast.M, z=fast.z)  # claims nothing: every write computes the retrieval
    for i in range(N + 2):  # round robin: N fresh writes, then two into written memories
        k, v = rand((B, H, T, d), seed + 2 * i), rand((B, H, T, d), seed + 2 * i + 1)
        fast, slow = store.write(fast, k, v), store.write(slow, k, v)
        torch.testing.assert_close(fast.M, slow.M)
        torch.testing.assert_close(fast.z, slow.z)
    assert fast.empty == frozenset()
    per_row = store.write(store.init_state(B, dtype=torch.float64), k, v, memory=torch.zeros(B, dtype=torch.long))
    assert per_row.empty == frozenset()  # per-row targets: nothing claimed

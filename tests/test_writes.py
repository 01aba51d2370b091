"""The write strategies (memkit/blocks/writes.py and the reports' batch-shared write), each against the
per-token reference of ops/naive.py, which computes its own σ."""

from dataclasses import replace

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from memkit.blocks.landmark import Landmark
from memkit.blocks.reports.batch_shared import shared_write
from memkit.blocks.segments import Memories, Segments
from memkit.blocks.store import MemoryStore
from memkit.blocks.writes import cumulative_writes, loop_writes
from memkit.ops.naive import naive_write

B, H, L, d = 2, 2, 3, 4


def rand(shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def start(N, seed):
    """N memories already holding something (one naive write each), as a state that claims nothing empty."""
    store = MemoryStore(H, d, "linear", 1e-6, N)
    state = store.init_state(B, dtype=torch.float64)
    M, z = state.stacked()
    M, z = M.clone(), z.clone()
    for n in range(N):
        M[:, n], z[:, n] = naive_write(M[:, n], z[:, n], rand((B, H, L, d), seed + n), rand((B, H, L, d), seed + 50 + n),
                                       1e-6)
    return store, Memories(replace(state, M=M, z=z, writes=N, empty=frozenset()))


def reference(first: Memories, k, v, targets, update):
    """Per token, per segment: the memories each segment reads, then the memories after."""
    M, z = (t.clone() for t in first.memory.stacked())
    states = []
    for s in range(k.shape[2]):
        states.append((M.clone(), z.clone()))
        if s < len(targets):
            n = targets[s]
            M[:, n], z[:, n] = naive_write(M[:, n], z[:, n], k[:, :, s], v[:, :, s], 1e-6, update)
    return states + [(M, z)]


def assert_states(got: list[Memories], want: list):
    assert len(got) == len(want)
    for g, (M, z) in zip(got, want):
        torch.testing.assert_close(g.memory.stacked()[0], M)
        torch.testing.assert_close(g.memory.stacked()[1], z)


@given(N=st.integers(1, 3), S=st.integers(1, 4), update=st.sampled_from(["linear", "delta"]), seed=st.integers(0, 999),
       data=st.data())
def test_the_write_loop_equals_the_per_token_reference(N, S, update, seed, data):
    store, first = start(N, seed)
    store.update = update
    k, v = rand((B, H, S, L, d), seed + 1), rand((B, H, S, L, d), seed + 2)
    full = data.draw(st.sampled_from([S - 1, S]))  # the last segment complete or not
    targets = data.draw(st.lists(st.integers(0, N - 1), min_size=full, max_size=full))
    write = lambda now, s: Memories(store.write(now.memory, k[:, :, s], v[:, :, s], targets[s]))  # noqa: E731
    assert_states(list(loop_writes(first, S, full, write)), reference(first, k, v, targets, update))


@given(N=st.integers(1, 3), S=st.integers(1, 4), seed=st.integers(0, 999), data=st.data())
def test_the_cumulative_sum_equals_the_per_token_reference(N, S, seed, data):
    _, first = start(N, seed)
    k, v = rand((B, H, S, L, d), seed + 1), rand((B, H, S, L, d), seed + 2)
    full = data.draw(st.sampled_from([S - 1, S]))  # the last segment complete or not
    targets = data.draw(st.lists(st.integers(0, N - 1), min_size=full, max_size=full))
    got = cumulative_writes(first, k[:, :, :full], v[:, :, :full], S, targets, None)
    assert_states(got, reference(first, k, v, targets, "linear"))


@pytest.mark.parametrize("scale", ["equal", "reports"])
@pytest.mark.parametrize("update", ["linear", "delta"])
def test_the_batch_shared_write_is_every_token_of_the_batch_written_once_then_scaled(scale, update):
    """One write of every complete segment of every sequence into the batch's one memory: M by 1/B ("equal")
    or 1/(B·T) ("reports"), z by 1/B; the delta rule retrieves with the memory before the call."""
    N, S, seed = 2, 3, 7
    store = MemoryStore(H, d, update, 1e-6, N)
    _, held = start(N, seed)
    shared = Memories(held.memory.__class__(M=held.memory.M[:1], z=held.memory.z[:1], writes=held.memory.writes))
    k, v = rand((B, H, S, L, d), 1), rand((B, H, S, L, d), 2)
    seg = Segments(q=k, q_sel=k, k=k, v=v, gate_p=None, pending=0, end=S * L - 1, full=S - 1, last_k=k[:, :, -1, -1:])
    got = shared_write(store, Landmark("memory_norm", d), shared, seg, scale)
    n = held.memory.writes % N
    M, z = shared.memory.M[0, n], shared.memory.z[0, n]  # [H,d,d], [H,d]
    keys = k[:, :, : S - 1].transpose(0, 1).reshape(1, H, -1, d)  # every sequence's complete segments, in order
    values = v[:, :, : S - 1].transpose(0, 1).reshape(1, H, -1, d)
    M_all, z_all = naive_write(M[None], z[None], keys, values, 1e-6, update)
    T = (S - 1) * L
    m_scale = 1 / B if scale == "equal" else 1 / (B * T)
    torch.testing.assert_close(got.memory.M[0, n], M + (M_all[0] - M) * m_scale)
    torch.testing.assert_close(got.memory.z[0, n], z + (z_all[0] - z) / B)
    torch.testing.assert_close(got.memory.M[0, 1 - n], shared.memory.M[0, 1 - n])  # round robin: one memory
    assert got.memory.writes == held.memory.writes + 1

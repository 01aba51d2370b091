"""Write strategies of a per-sequence memory path: how the memories each segment reads come about.

Segment s reads what segments < s wrote. Two strategies give the same memories (tests/test_writes.py
checks both against ``ops/naive.py``):

- ``loop_writes``: the complete segments written one after the other. Any write rule, any policy
  (delta needs the state before each write; ``nearest`` needs the landmarks).
- ``cumulative_writes``: linear writes into memories known in advance add up, so every segment's
  memories come from one cumulative sum over segments. More arithmetic at once, no loop.

Which one is faster depends on the device: on a 2-core CPU the loop (benchmarks/layer.py shows both),
so the loop is the default (``MemoryAttentionSpec.write_strategy``). The reports' batch-shared write is
``memkit.blocks.reports.batch_shared.shared_write``.

Axes: B batch, N memories, H heads, S segments, L segment length, d head dim.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from memkit.blocks.segments import Memories
from memkit.ops.memory import feature, full_precision


def loop_writes(start: Memories, count: int, full: int, write: Callable[[Memories, int], Memories]) -> Iterator[Memories]:
    """Yields the memories segment s reads, s = 0..count−1, then the memories after the call.
    ``write(memories, s)`` writes complete segment s (s < full). Lazy: a reader may drop the states it read."""
    now = start
    for s in range(count):
        yield now
        if s < full:
            now = write(now, s)
    yield now


def cumulative_writes(start: Memories, k: torch.Tensor, v: torch.Tensor, count: int, targets: list[int],
                      summaries: tuple[torch.Tensor, int] | None) -> list[Memories]:
    """Linear writes of the complete segments k, v [B,H,full,L,d] into memories ``targets`` (one per
    segment), all at once: the memories each of the ``count`` segments reads, then those after the call.

    M before segment s = M_start + Σ_{s' < s} onehot(target_s')·σ(K_s')ᵀ V_s' (z and the landmark sums,
    whose per-segment ``summaries`` ([B,full,H,d], count per segment) are given, alike)."""
    mem = start.memory
    M0, z0 = mem.stacked()  # [B,N,H,d,d], [B,N,H,d]
    N, full, S = M0.shape[1], len(targets), count
    with full_precision(M0.device):
        onehot = F.one_hot(torch.tensor(targets, device=M0.device, dtype=torch.long), N).to(M0.dtype)  # [full,N]
        sk = feature(k.to(M0.dtype))  # [B,H,full,L,d]
        dM = torch.einsum("bhsld,bhsle->bshde", sk, v.to(M0.dtype))  # [B,full,H,d,d]
        dz = sk.sum(3).transpose(1, 2)  # [B,full,H,d]

        def running(start_value, per_segment):  # [B,N,...], [B,full,...] -> before each segment, after all
            steps = torch.einsum("sn,bs...->bsn...", onehot.to(per_segment.dtype), per_segment).cumsum(1)
            steps = F.pad(steps, (0, 0) * (steps.dim() - 2) + (1, 0))  # nothing before segment 0
            return start_value.unsqueeze(1) + steps[:, :S], start_value + steps[:, full]

        M_before, M_after = running(M0, dM)
        z_before, z_after = running(z0, dz)
        sums = None
        if summaries is not None:
            adds, per = summaries
            sum_before, sum_after = running(start.lm_sum, adds.to(start.lm_sum.dtype))
            counts = F.pad((onehot.long() * per).cumsum(0), (0, 0, 1, 0))  # [full+1,N]
            sums = (sum_before, start.lm_count.unsqueeze(1) + counts[:S], sum_after, start.lm_count + counts[full])
    states, empty = [], mem.empty
    for s in range(S):
        memory = mem.unstacked(M_before[:, s], z_before[:, s], mem.writes + s)
        lm = (sums[0][:, s], sums[1][:, s]) if sums else (start.lm_sum, start.lm_count)  # no write: as they were
        states.append(Memories(replace(memory, empty=empty), *lm))
        if s < full:
            empty = empty - {targets[s]}
    after = replace(mem.unstacked(M_after, z_after, mem.writes + full), empty=empty)
    return states + [Memories(after, *(sums[2:] if sums else (start.lm_sum, start.lm_count)))]

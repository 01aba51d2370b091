"""MemoryAttention: the Infini-attention layer (Munkhdalai et al. 2024, arXiv:2404.07143).

The sequence is cut into segments of ``segment_len``. Per segment: causal attention inside
the segment (A_dot), a read of the memory left by earlier segments (A_mem), then the
segment is written. Output per head: g·A_mem + (1−g)·A_dot, g = sigmoid(β), β learned.

State is explicit and carried across calls: a sequence fed in pieces gives the same output
as fed whole, whatever the split. A segment is written when it is complete; an incomplete
tail waits in the state (``pending_k``/``pending_v``) for the next call.

Axes: B batch, T tokens, D hidden, H heads, d head dim, S segments, L segment length, N memories.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from pydantic import Field, model_validator
from torch import nn

from memkit.blocks.batch_shared import BatchSharedMemory
from memkit.blocks.hierarchical import ExpansionGate, coarse
from memkit.blocks.landmark import Landmark
from memkit.blocks.segments import Memories, Segments
from memkit.blocks.selector import Selector
from memkit.blocks.store import MemoryState, MemoryStore
from memkit.ops.memory import (
    causal_linear,
    causal_softmax,
    feature,
    full_precision,
    mixed_read,
    read_memories,
    state_dtype,
)
from memkit.spec import Spec, check_heads


@dataclass(frozen=True)
class MemoryAttentionState:
    """What a ``MemoryAttention`` carries between calls.

    memory: the ``MemoryState`` (M, z); pending_q/k/v [B,H,P,d]: the incomplete segment (P <
    segment_len; pending_q holds its selection features, see ``Selector.feature``); prev_k [B,H,1,d]:
    the last unshifted key (key_shift); lm_sum and lm_count: the landmark's running state
    (``mean_k``, ``hsa``: sums [B,N,H,d] and counts [B,N]; ``hsa_last_keys``: kept keys; else None).
    """

    memory: MemoryState
    pending_q: torch.Tensor
    pending_k: torch.Tensor
    pending_v: torch.Tensor
    prev_k: torch.Tensor
    lm_sum: torch.Tensor | None = None
    lm_count: torch.Tensor | None = None

    def detach(self) -> "MemoryAttentionState":
        d = lambda t: None if t is None else t.detach()  # noqa: E731
        return MemoryAttentionState(
            self.memory.detach(), *(d(t) for t in (self.pending_q, self.pending_k, self.pending_v, self.prev_k,
                                                    self.lm_sum, self.lm_count))
        )

    def select(self, rows: torch.Tensor) -> "MemoryAttentionState":
        """The state of the sequences ``rows`` (LongTensor of batch indices) only."""
        pick = lambda t: None if t is None else t[rows]  # noqa: E731
        return MemoryAttentionState(
            self.memory.select(rows), *(pick(t) for t in (self.pending_q, self.pending_k, self.pending_v, self.prev_k,
                                                           self.lm_sum, self.lm_count))
        )


def rotate(x: torch.Tensor, rotary_dim: int, base: float = 10000.0) -> torch.Tensor:
    """GPT-NeoX rotary embedding on the first ``rotary_dim`` dims, positions along axis -2."""
    if rotary_dim == 0:
        return x
    L = x.shape[-2]
    inv = 1.0 / base ** (torch.arange(0, rotary_dim, 2, device=x.device, dtype=torch.float32) / rotary_dim)
    ang = torch.outer(torch.arange(L, device=x.device, dtype=torch.float32), inv)
    cos, sin = ang.cos().repeat(1, 2).to(x.dtype), ang.sin().repeat(1, 2).to(x.dtype)
    rot, rest = x[..., :rotary_dim], x[..., rotary_dim:]
    half = rotary_dim // 2
    rotated = torch.cat((-rot[..., half:], rot[..., :half]), dim=-1)
    return torch.cat((rot * cos + rotated * sin, rest), dim=-1)


class MemoryAttention(nn.Module):
    """Infini-attention layer. forward(x [B,T,D], state=None) -> (y [B,T,D], state).

    With ``num_memories`` N > 1 a write policy picks the memory a segment goes to
    (``round_robin``: segment i to memory i mod N; ``fill``: ``fill_segments`` segments into one
    memory, then the next; ``nearest``: the memory whose landmark best matches the segment's mean
    key, after every memory has been seeded once), and a ``Selector`` weights the memories per
    query by their ``Landmark``. ``hierarchy`` ("soft"/"hard") adds a coarse memory (the sum of the
    fine ones) and an ``ExpansionGate`` that mixes fine and coarse reads per token.
    ``memory_scope="batch_shared"`` is the reports' one memory per batch (``batch_shared.py``).
    Every option that reproduces the reports' code is listed, with what it does, on ``MemoryAttentionSpec``.
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        segment_len: int = 64,
        update: str = "linear",
        num_memories: int = 1,
        local: str = "softmax",
        key_shift: bool = False,
        rotary_dim: int = 0,
        rotary_base: float = 10000.0,
        gate_init: float = 0.0,
        eps: float = 1e-6,
        write_policy: str = "round_robin",
        fill_segments: int = 1,
        landmark: str = "memory_norm",
        selection: str = "soft",
        top_k: int = 1,
        selection_query: str = "q",
        selection_scope: str = "token",
        hierarchy: str = "none",
        selection_score: str = "scaled",
        memory_scope: str = "sequence",
        write_scale: str = "equal",
        hsa_pool: int = 8,
        segmentation: str = "fixed",
        bias: bool = True,
        unwritten_memories: str = "excluded",
        gate_input: str = "hidden_gelu",
        hsa_keys: int = 256,
        hsa_dropout: float = 0.0,
        nan_guard: bool = False,
        shared_reset: str = "each_epoch",
        shared_validation: str = "writes",
    ):
        super().__init__()
        self.hidden_size, self.num_heads = hidden_size, num_heads
        self.head_dim = hidden_size // num_heads
        self.segment_len, self.segmentation, self.local, self.key_shift = segment_len, segmentation, local, key_shift
        self.rotary_dim, self.rotary_base, self.eps, self.nan_guard = rotary_dim, rotary_base, eps, nan_guard
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size, bias=bias)
        self.out = nn.Linear(hidden_size, hidden_size, bias=bias)
        self.gate_logit = nn.Parameter(torch.full((num_heads,), float(gate_init)))
        self.gate_logit.memkit_group = "gate"  # trainer: own learning rate, no weight decay
        self.store = MemoryStore(num_heads, self.head_dim, update, eps, num_memories)
        multi = num_memories > 1
        # the family's fields apply to N > 1 only: one memory is always written in place
        self.write_policy, self.fill_segments = (write_policy if multi else "round_robin"), fill_segments
        self.landmark = Landmark(landmark, self.head_dim, hsa_pool, num_heads, hsa_keys, hsa_dropout) if multi else None
        self.selector = Selector(selection, top_k, selection_scope, selection_score, unwritten_memories) if multi else None
        self.q_slc = nn.Linear(hidden_size, hidden_size, bias=bias) if multi and selection_query == "projection" else None
        self.expansion = ExpansionGate(hidden_size, hierarchy, gate_input) if multi and hierarchy != "none" else None
        # the reports' one memory for the whole batch, carried across calls (None: one per sequence)
        self.shared = (BatchSharedMemory(self.store, write_scale, self.landmark, shared_reset, shared_validation)
                       if memory_scope == "batch_shared" else None)
        self._expand_share: torch.Tensor | None = None  # diagnostics, see last_expand_share
        # segments read in one batched call. 1 (one call per segment) was fastest on a 2-core CPU
        # (batching copies every segment's N states); None reads every segment of a call at once, for a GPU
        # where launches dominate.
        self.read_group: int | None = 1
        # linear writes into known memories through one cumulative sum (tests compare it with the loop)
        self.cumulative_writes = True

    @property
    def num_memories(self) -> int:
        return self.store.num_memories

    @property
    def last_expand_share(self) -> float:
        """Share of the last call's tokens that read the fine memories (hierarchy only; else nan)."""
        return float("nan") if self._expand_share is None else float(self._expand_share)

    def memory_nbytes(self, dtype=torch.float32) -> int:
        """Bytes of memory state per sequence."""
        return self.store.state_nbytes(dtype)

    def gate(self) -> torch.Tensor:
        """g = sigmoid(β) per head, [H]: the weight of the memory read."""
        return torch.sigmoid(self.gate_logit)

    def init_state(self, batch_size: int, device=None, dtype=torch.float32) -> MemoryAttentionState:
        H, d = self.num_heads, self.head_dim
        empty = torch.zeros(batch_size, H, 0, d, device=device, dtype=dtype)
        sums = self.landmark is not None and self.landmark.keeps_sums
        lm_sum, lm_count = (self.landmark.init_sums(batch_size, self.num_memories, H, d, device, state_dtype(dtype))
                            if sums else (None, None))
        return MemoryAttentionState(
            memory=self.store.init_state(batch_size, device, dtype),
            pending_q=empty,
            pending_k=empty,
            pending_v=empty,
            prev_k=torch.zeros(batch_size, H, 1, d, device=device, dtype=dtype),
            lm_sum=lm_sum,
            lm_count=lm_count,
        )

    @contextmanager
    def sequence_scope(self):
        """Within the block, the layer keeps one memory per sequence whatever its ``memory_scope``: the
        state is explicit (``MemoryBuilder`` writes each source into its own memory this way)."""
        shared, self.shared = self.shared, None
        try:
            yield self
        finally:
            self.shared = shared

    def reset_shared(self, moment: str = "epoch") -> None:
        """Empty the batch-shared memory at ``moment`` ("training" starts, an "epoch" starts, a
        "validation" starts), as ``shared_reset`` says (the trainer calls this)."""
        if self.shared is not None:
            self.shared.reset(moment)

    def forward(self, x: torch.Tensor, state: MemoryAttentionState | None = None, memory=None):
        """x [B,T,D] -> (y [B,T,D], state). ``memory`` (int or LongTensor [B]) forces the memory
        every segment of this call is written to (``MemoryBuilder``); None follows the policy."""
        if state is None:
            state = self.init_state(x.shape[0], x.device, x.dtype)
        if x.shape[1] == 0:
            return self.out(x), state
        if isinstance(memory, torch.Tensor) and ((memory < 0) | (memory >= self.num_memories)).any():
            raise ValueError(f"memory: index out of range 0..{self.num_memories - 1}")
        seg = self._segments(x, state)
        a_dot = self._local(seg)
        if self.shared is not None:
            a_mem, gate_p = self.shared.read_and_write(seg, self._read, self.training)
        else:
            a_mem, gate_p, state = self._memory(seg, state, memory)
        if self.nan_guard:  # report 000's code: a NaN in the memory read becomes 0
            a_mem = torch.nan_to_num(a_mem, nan=0.0)
        if gate_p is not None:  # kept as a tensor: reading it on the host would sync every call
            real = gate_p.flatten(1)[:, seg.pending : seg.end]
            self._expand_share = (real if self.expansion.mode == "soft" else (real >= 0.5)).detach().float().mean()
        g = self.gate().view(1, -1, 1, 1, 1).to(x.dtype)
        y = (g * a_mem + (1 - g) * a_dot).flatten(2, 3)[:, :, seg.pending : seg.end]
        return self.out(rearrange(y, "b h t d -> b t (h d)")), state

    def _segments(self, x: torch.Tensor, state: MemoryAttentionState) -> Segments:
        """Project x, continue the incomplete segment the previous call left, cut into segments."""
        B, T, _ = x.shape
        H, d = self.num_heads, self.head_dim
        q, k, v = rearrange(self.qkv(x), "b t (three h d) -> three b h t d", three=3, h=H)
        last_k = k[:, :, -1:]
        if self.key_shift:  # k_t from token t−1: binds a token to the one after it (recall needs this)
            k = torch.cat((state.prev_k, k[:, :, :-1]), dim=2)
        f = self._selection_features(x, q)
        gate_p = self.expansion(x) if self.expansion is not None and not self.expansion.reads_coarse else None  # [B,T]
        P = state.pending_k.shape[2]
        if P:  # the copies below are skipped when no segment is pending (the common case)
            q = torch.cat((q.new_zeros(B, H, P, d), q), dim=2)  # pending outputs were already returned
            f = torch.cat((state.pending_q, f), dim=2)  # kept: a sequence-scope selection averages them
            k = torch.cat((state.pending_k, k), dim=2)
            v = torch.cat((state.pending_v, v), dim=2)
        n = P + T
        L = n if self.segmentation == "whole_call" else self.segment_len  # whole_call: the call is one segment
        S = -(-n // L)
        extra = S * L - n

        def cut(t):  # [B,H,n,d] -> [B,H,S,L,d]; padding sits after every real token
            return (F.pad(t, (0, 0, 0, extra)) if extra else t).unflatten(2, (S, L))

        call_f = None
        if self.selector is not None and self.selector.scope == "whole_call_leaks_future":
            call_f = f.mean(2, keepdim=True)  # every token of the call, later ones too: the leak
        if gate_p is not None:
            gate_p = F.pad(gate_p, (P, extra)).unflatten(1, (S, L))  # [B,S,L]
        return Segments(q=cut(q), q_sel=cut(f), k=cut(k), v=cut(v), gate_p=gate_p, pending=P, end=n,
                        full=n // L, last_k=last_k, call_q_sel=call_f)

    def _local(self, seg: Segments) -> torch.Tensor:
        """A_dot [B,H,S,L,d]: causal attention inside each segment."""
        if self.local == "softmax":
            q, k = (rotate(t, self.rotary_dim, self.rotary_base) for t in (seg.q, seg.k))
            return causal_softmax(q, k, seg.v)
        return causal_linear(seg.q, seg.k, seg.v, self.eps, clamp=self.local == "linear_clamped")

    def _memory(self, seg: Segments, state: MemoryAttentionState, forced):
        """Per-sequence memory: (A_mem [B,H,S,L,d], gate probabilities [B,S,L] or None, the state to carry).

        Segment s reads what segments < s wrote, then is written. Linear writes into memories fixed in
        advance (round robin, fill, a forced one) add up: every segment's memories come from one
        cumulative sum over segments (``_memories_by_cumsum``). Otherwise writes are sequential (delta
        needs the state before each; ``nearest`` needs the landmarks): the loop below, whose reads wait
        for ``read_group`` segments. Landmark chunk summaries depend on keys only, so those of every
        complete segment come from one call."""
        summaries = self._chunk_summaries(seg)
        now = Memories(state.memory, state.lm_sum, state.lm_count)
        group = self.read_group or seg.count
        reads = []
        if self.cumulative_writes and self._fixed_targets(forced):
            before, now = self._memories_by_cumsum(seg, now, forced, summaries)
            reads = [self._read_segments(before[g0 : g0 + group], seg, g0) for g0 in range(0, seg.count, group)]
        else:
            waiting = []
            for s in range(seg.count):
                waiting.append(now)
                if len(waiting) == group:  # read as soon as a group is complete: states can go
                    reads.append(self._read_segments(waiting, seg, s + 1 - len(waiting)))
                    waiting = []
                if s < seg.full:
                    now = self._write(now, seg, s, forced, summaries)
            if waiting:
                reads.append(self._read_segments(waiting, seg, seg.count - len(waiting)))
        carried = MemoryAttentionState(now.memory, seg.tail(seg.q_sel), seg.tail(seg.k), seg.tail(seg.v), seg.last_k,
                                       now.lm_sum, now.lm_count)
        gate_p = None if reads[0][1] is None else torch.cat([p for _, p in reads], dim=1)
        return torch.cat([a for a, _ in reads], dim=2), gate_p, carried

    def _fixed_targets(self, forced) -> bool:
        """Whether linear writes into memories known in advance: the cumulative-sum path applies."""
        if self.store.update != "linear" or isinstance(forced, torch.Tensor):
            return False
        if self.landmark is not None and self.landmark.type == "hsa_last_keys":  # a rolling window, not a sum
            return False
        return forced is not None or self.num_memories == 1 or self.write_policy in ("round_robin", "fill")

    def _policy_target(self, writes: int) -> int:
        """The memory the write after ``writes`` earlier ones goes to (round robin, fill)."""
        if self.write_policy == "fill":
            return (writes // self.fill_segments) % self.num_memories
        return writes % self.num_memories

    def _memories_by_cumsum(self, seg: Segments, start: Memories, forced, summaries):
        """Linear writes into known memories, all at once: the memories each segment reads ([B,...] views
        into one cumulative sum over segments) and the memories after the call.

        M before segment s = M_start + Σ_{s' < s} onehot(target_s')·σ(K_s')ᵀ V_s' (z and the landmark sums
        alike): the loop of ``_write`` without the loop."""
        mem = start.memory
        M0, z0 = mem.stacked()  # [B,N,H,d,d], [B,N,H,d]
        N, full, S = M0.shape[1], seg.full, seg.count
        targets = [forced if forced is not None else self._policy_target(mem.writes + s) for s in range(full)]
        with full_precision(M0.device):
            onehot = F.one_hot(torch.tensor(targets, device=M0.device, dtype=torch.long), N).to(M0.dtype)  # [full,N]
            sk = feature(seg.k[:, :, :full].to(M0.dtype))  # [B,H,full,L,d]
            dM = torch.einsum("bhsld,bhsle->bshde", sk, seg.v[:, :, :full].to(M0.dtype))  # [B,full,H,d,d]
            dz = sk.sum(3).transpose(1, 2)  # [B,full,H,d]

            def running(start_value, per_segment):  # [B,N,...], [B,full,...] -> before each segment, after all
                steps = torch.einsum("sn,bs...->bsn...", onehot.to(per_segment.dtype), per_segment).cumsum(1)
                steps = F.pad(steps, (0, 0) * (steps.dim() - 2) + (1, 0))  # nothing before segment 0
                return start_value.unsqueeze(1) + steps[:, :S], start_value + steps[:, full]

            M_before, M_after = running(M0, dM)
            z_before, z_after = running(z0, dz)
            sums = None
            if summaries is not None:
                adds, count = summaries
                sum_before, sum_after = running(start.lm_sum, adds.to(start.lm_sum.dtype))
                counts = F.pad((onehot.long() * count).cumsum(0), (0, 0, 1, 0))  # [full+1,N]
                sums = (sum_before, start.lm_count.unsqueeze(1) + counts[:S], sum_after, start.lm_count + counts[full])
        before, empty = [], mem.empty
        for s in range(S):
            memory = mem.unstacked(M_before[:, s], z_before[:, s], mem.writes + s)
            lm = (sums[0][:, s], sums[1][:, s]) if sums else (start.lm_sum, start.lm_count)  # no write: as they were
            before.append(Memories(replace(memory, empty=empty), *lm))
            if s < full:
                empty = empty - {targets[s]}
        after = replace(mem.unstacked(M_after, z_after, mem.writes + full), empty=empty)
        return before, Memories(after, *(sums[2:] if sums else (start.lm_sum, start.lm_count)))

    def _chunk_summaries(self, seg: Segments) -> tuple[torch.Tensor, int] | None:
        """What each complete segment adds to the landmark sums: ([B,full,H,...], count per segment);
        None for landmarks that keep no sums."""
        if self.landmark is None or not self.landmark.keeps_sums or not seg.full:
            return None
        flat = seg.k[:, :, : seg.full].transpose(1, 2).flatten(0, 1)  # [B·full,H,L,d]
        adds, count = self.landmark.chunk_summary(flat)
        return adds.unflatten(0, (seg.q.shape[0], seg.full)), count

    def _write(self, now: Memories, seg: Segments, s: int, forced, summaries) -> Memories:
        """Write complete segment s into the memory the policy (or ``forced``) picks."""
        k = seg.k[:, :, s]
        target = self._target(now, k, forced)
        memory = self.store.write(now.memory, k, seg.v[:, :, s], target, checked=False)
        if summaries is None:
            return Memories(memory, now.lm_sum, now.lm_count)
        adds, count = summaries
        onehot = F.one_hot(torch.as_tensor(target, device=k.device).expand(k.shape[0]), self.num_memories)
        return Memories(memory, *self.landmark.add(now.lm_sum, now.lm_count, onehot, adds[:, s], count))

    def _selection_features(self, x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """What scores the landmarks, per token: f(Q) or f(Q_slc) (HSA's separate projection), with f
        the selector's feature map. [B,H,T,d]; q itself for one memory (nothing to select)."""
        if self.selector is None:
            return q
        q_sel = q if self.q_slc is None else rearrange(self.q_slc(x), "b t (h d) -> b h t d", h=self.num_heads)
        return self.selector.feature(q_sel)

    def selection_weights(self, x: torch.Tensor, state: MemoryAttentionState) -> torch.Tensor:
        """The selector's weights over the memories of ``state`` for the tokens of x, as ``forward``
        computes them when it reads that state: per segment of ``segment_len`` tokens (a
        ``sequence``-scope selection averages the scores of the segment's tokens so far; a
        ``whole_call_leaks_future`` one those of every token of x).

        x [B,T,D] (this layer's input, starting at a segment boundary), state with memories written
        (batch B or 1) -> [B,H,T,N]. Used to score memory selection against known sources
        (``MemoryBuilder``)."""
        if self.selector is None:
            raise ValueError("selection_weights: this layer has one memory, there is nothing to select")
        B, T, _ = x.shape
        H = self.num_heads
        L = T if self.segmentation == "whole_call" else self.segment_len
        q = rearrange(self.qkv(x), "b t (three h d) -> three b h t d", three=3, h=H)[0]
        f = self._selection_features(x, q)
        if self.selector.scope == "whole_call_leaks_future":
            f = f.mean(2, keepdim=True).expand_as(f)
        S = -(-T // L)
        f = F.pad(f, (0, 0, 0, S * L - T)).unflatten(2, (S, L)).transpose(1, 2).flatten(0, 1)  # [B·S,H,L,d]
        grow = lambda t: None if t is None else t.expand(B, *t.shape[1:]).repeat_interleave(S, 0)  # noqa: E731
        M, z = state.memory.stacked()
        landmarks = self.landmark.landmarks(grow(z), grow(state.lm_sum), grow(state.lm_count))
        weights = self.selector.weights(f, landmarks, grow(state.memory.written()))  # [B·S,H,L,N]
        return weights.unflatten(0, (B, S)).transpose(1, 2).flatten(2, 3)[:, :, :T]

    def _read_segments(self, before: list[Memories], seg: Segments, g0: int):
        """Reads of segments g0.. in one batched call: each segment's memories join the batch axis.
        before: the memories each segment reads -> (A_mem [B,H,g,L,d], gate probabilities [B,g,L] or None)."""
        g = len(before)
        B = seg.q.shape[0]
        if g == 1:  # one segment: its memories as they are, no copy
            a, p = self._read(before[0], seg.q[:, :, g0], seg.selection(g0), seg.gate(g0))
            return a.unsqueeze(2), None if p is None else p.unsqueeze(1)
        join = lambda ts: None if ts[0] is None else torch.stack(ts, 1).flatten(0, 1)  # noqa: E731  [B·g,...]
        memory = MemoryState(M=join([b.memory.M for b in before]), z=join([b.memory.z for b in before]),
                             writes=before[0].memory.writes)
        part = lambda t: t[:, :, g0 : g0 + g].transpose(1, 2).flatten(0, 1)  # noqa: E731  [B·g,H,L,d]
        gate_p = None if seg.gate_p is None else seg.gate_p[:, g0 : g0 + g].flatten(0, 1)
        f = part(seg.q_sel) if seg.call_q_sel is None else seg.selection(g0).repeat_interleave(g, 0)
        joined = Memories(memory, join([b.lm_sum for b in before]), join([b.lm_count for b in before]))
        a, p = self._read(joined, part(seg.q), f, gate_p)
        return a.unflatten(0, (B, g)).transpose(1, 2), None if p is None else p.unflatten(0, (B, g))

    def _target(self, now: Memories, k: torch.Tensor, forced):
        """Which memory segment keys k [B,H,L,d] are written to: an int, or LongTensor [B]."""
        N = self.num_memories
        if forced is not None:
            return forced
        mem = now.memory
        if self.write_policy == "round_robin":
            return mem.writes % N
        if self.write_policy == "fill":
            return (mem.writes // self.fill_segments) % N
        # nearest: seed every memory once (first empty one), then the best-matching landmark
        written = mem.written()
        M, z = mem.stacked()
        landmarks = self.landmark.landmarks(z, now.lm_sum, now.lm_count)
        scores = torch.einsum("bhd,bnhd->bn", k.mean(2).to(landmarks.dtype), landmarks)
        first_empty = (~written).to(torch.int8).argmax(-1)
        return torch.where(written.all(-1), scores.argmax(-1), first_empty).detach()

    def _read(self, memories: Memories, q: torch.Tensor, f: torch.Tensor, p: torch.Tensor | None):
        """q [B,H,L,d], selection features f [B,H,L,d], gate probabilities p [B,L] (a hidden-state gate)
        or None -> (A_mem [B,H,L,d] in q's dtype, the gate probabilities used [B,L] or None).

        The memory maths (reads, selection scores, the mix) runs in the state's dtype with autocast off:
        scores and normalisers grow with every write and would overflow half precision."""
        mem, lm_sum, lm_count = memories.memory, memories.lm_sum, memories.lm_count
        M, z = mem.stacked()
        # Memories known to be empty read exactly 0 and get selection weight exactly 0: when they are
        # the last ones (round robin / fill before the memories are all used), read the others only.
        # Not when unwritten memories stay in the softmax (the reports'): there they take weight.
        landmarks = memories.landmarks
        live = M.shape[1] - len(mem.empty)
        excluded = self.selector is None or self.selector.unwritten == "excluded"
        if mem.empty and excluded and mem.empty == frozenset(range(live, M.shape[1])):
            if live == 0:
                return torch.zeros_like(q), p
            M, z = M[:, :live], z[:, :live]
            lm_sum = None if lm_sum is None else lm_sum[:, :live]
            lm_count = None if lm_count is None else lm_count[:, :live]
            landmarks = None if landmarks is None else landmarks[:, :live]
            mem = MemoryState(M=M, z=z, writes=mem.writes)
        with full_precision(q.device):
            a, p = self._read_full_precision(mem, lm_sum, lm_count, landmarks, q.to(M.dtype), f.to(M.dtype), p)
        return a.to(q.dtype), p

    def _read_full_precision(self, mem: MemoryState, lm_sum, lm_count, landmarks, q, f, p):
        M, z = mem.stacked()
        if self.selector is None:
            return self.store.read(mem, q), p
        if landmarks is None:
            landmarks = self.landmark.landmarks(z, lm_sum, lm_count)
        weights = self.selector.weights(f, landmarks.to(M.dtype), mem.written())  # [B,H,L,N]
        if self.expansion is None:
            return mixed_read(M, z, q, weights, self.eps), p
        Mc, zc = coarse(M, z)
        rough = read_memories(Mc, zc, q, self.eps)[:, 0]
        if self.expansion.reads_coarse:  # the reports' gate: it reads the coarse memory's output
            gate_dtype = self.expansion.mlp[0].weight.dtype
            p = self.expansion(rearrange(rough, "b h l d -> b l (h d)").to(gate_dtype))
        # every token's fine read, also where a hard gate says coarse (its weight is then exactly 0):
        # skipping those tokens would need the gate's values on the host, a sync per read
        fine = mixed_read(M, z, q, weights, self.eps)
        m = self.expansion.mix_weight(p)[:, None, :, None].to(q.dtype)  # [B,1,L,1]
        return m * fine + (1 - m) * rough, p


class MemoryAttentionSpec(Spec):
    """Settings of a ``MemoryAttention`` layer.

    The defaults are the careful choices. The reports' code (DESIGN.md, last section) is reproduced by
    these, each named for what it does: ``segmentation="whole_call"`` (no segments: a call is one
    segment), ``local="linear_clamped"``, ``bias=False``, ``memory_scope="batch_shared"`` with
    ``write_scale="reports"``, ``shared_reset`` and ``shared_validation`` (their reset and validation
    regimes), ``selection_score="reports"``, ``selection_scope="whole_call_leaks_future"`` (NOT causal:
    an earlier token's selection depends on later tokens of the call), ``unwritten_memories="kept_at_zero"``,
    ``gate_input="coarse_read_relu"``, ``landmark="hsa_last_keys"`` with ``hsa_keys`` and ``hsa_dropout``,
    ``nan_guard``.
    """

    hidden_size: int = Field(512, ge=1, description="model width D")
    num_heads: int = Field(8, ge=1, description="heads H (must divide hidden_size)")
    segment_len: int = Field(64, ge=1, le=65536, description="tokens per segment")
    update: Literal["linear", "delta"] = Field("linear", description="memory write rule")
    num_memories: int = Field(1, ge=1, le=1024, description="number of memories N")
    local: Literal["softmax", "linear", "linear_clamped"] = Field(
        "softmax", description="local branch inside a segment: softmax; causal linear attention with +ε in the "
        "denominator; or with the denominator clamped at 1e-6 (the reports')")
    key_shift: bool = Field(False, description="keys from the previous token (binds pairs at layer 0)")
    rotary_dim: int = Field(0, ge=0, description="rotary dims of the local branch (0 = none)")
    rotary_base: float = Field(10000.0, gt=1, le=1e9, description="rotary base θ (GPT-NeoX's rotary_emb_base)")
    gate_init: float = Field(0.0, ge=-20, le=20, description="initial gate logit β")
    eps: float = Field(1e-6, gt=0, le=1e-1, description="guard of every division")
    # The fields below apply when num_memories > 1.
    write_policy: Literal["round_robin", "fill", "nearest"] = Field("round_robin", description="which memory a segment goes to")
    fill_segments: int = Field(1, ge=1, description="segments per memory before the next (fill policy)")
    landmark: Literal["memory_norm", "memory_norm_normalised", "mean_k", "learned", "hsa", "hsa_last_keys"] = Field(
        "memory_norm", description="memory summary (memory_norm_normalised: z/‖z‖; hsa_last_keys: report 000's "
        "per-head encoder over each memory's last hsa_keys raw keys)")
    selection: Literal["soft", "hard"] = Field("soft", description="softmax over memories, or top-k")
    top_k: int = Field(1, ge=1, description="memories read by hard selection")
    selection_query: Literal["q", "projection"] = Field("q", description="Q, or a separate projection Q_slc")
    selection_scope: Literal["token", "sequence", "whole_call_leaks_future"] = Field(
        "token", description="weights per token; per sequence, causal (running mean in the segment); or per "
        "sequence over every token of the call, LEAKING THE FUTURE (the reports')")
    hierarchy: Literal["none", "soft", "hard"] = Field("none", description="coarse memory + expansion gate")
    # The reports' code choices, by name; the defaults are the careful ones (DESIGN.md, last section).
    selection_score: Literal["scaled", "reports"] = Field("scaled", description="q·ℓ/√d, or σ(q)·ℓ unscaled")
    memory_scope: Literal["sequence", "batch_shared"] = Field("sequence", description="one memory per sequence, or one shared by the batch across steps")
    write_scale: Literal["equal", "reports"] = Field("equal", description="batch_shared: M and z scaled alike, or M/(B·T) and z/B")
    hsa_pool: int = Field(8, ge=1, le=4096, description="hsa landmark: keys enter the encoder as means of this many")
    segmentation: Literal["fixed", "whole_call"] = Field(
        "fixed", description="segments of segment_len; or each call one segment, written when the call ends (the "
        "reports': no segments)")
    bias: bool = Field(True, description="bias in the layer's projections (the reports': none)")
    unwritten_memories: Literal["excluded", "kept_at_zero"] = Field(
        "excluded", description="memories never written: out of the selection, or in the softmax with score 0 "
        "(the reports')")
    gate_input: Literal["hidden_gelu", "coarse_read_relu"] = Field(
        "hidden_gelu", description="expansion gate: MLP with GELU on the hidden state, or with ReLU on the coarse "
        "memory's read (the reports')")
    hsa_keys: int = Field(256, ge=1, le=65536, description="hsa_last_keys: raw keys each memory keeps")
    hsa_dropout: float = Field(0.0, ge=0, lt=1, description="hsa_last_keys: encoder dropout (the reports': 0.1)")
    nan_guard: bool = Field(False, description="NaN in the memory read becomes 0 (report 000's code)")
    shared_reset: Literal["each_epoch", "once"] = Field(
        "each_epoch", description="batch_shared: reset at every epoch and before every validation, or once before "
        "training (report 000)")
    shared_validation: Literal["writes", "read_only"] = Field(
        "writes", description="batch_shared: evaluation writes the shared memory, or only reads it (001, "
        "002-hierarchical: after the reset, an empty memory)")
    # Optional fast path: torch.compile (fullgraph) fuses the many small ops of the segment loop. The first
    # call compiles (tens of seconds); needs a GPU or, on CPU, a C++ compiler. Tested equal to eager.
    compile: bool = Field(False, description="torch.compile the layer's forward as one graph")

    @model_validator(mode="after")
    def _consistent(self):
        if self.top_k > self.num_memories:
            raise ValueError(f"top_k ({self.top_k}) must be at most num_memories ({self.num_memories})")
        check_heads(self.hidden_size, self.num_heads)
        head_dim = self.hidden_size // self.num_heads
        if self.rotary_dim > head_dim or self.rotary_dim % 2:
            raise ValueError(f"rotary_dim must be even and at most head_dim ({head_dim}), got {self.rotary_dim}")
        return self

    def build(self) -> MemoryAttention:
        fields = self.model_dump()
        compiled = fields.pop("compile")
        layer = MemoryAttention(**fields)
        if compiled:  # in place: parameter names stay; fullgraph: the forward has no graph break (no host sync)
            layer.compile(fullgraph=True)
        return layer

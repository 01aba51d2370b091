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

from dataclasses import dataclass
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
from memkit.ops.memory import causal_linear, causal_softmax, mixed_read, read_memories
from memkit.spec import Spec, check_heads


@dataclass(frozen=True)
class MemoryAttentionState:
    """What a ``MemoryAttention`` carries between calls.

    memory: the ``MemoryState`` (M, z); pending_q/k/v [B,H,P,d]: the incomplete segment
    (P < segment_len); prev_k [B,H,1,d]: the last unshifted key (key_shift); lm_sum [B,N,H,d]
    and lm_count [B,N]: running landmark sums (``mean_k`` and ``hsa`` landmarks only, else None).
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
    ):
        super().__init__()
        self.hidden_size, self.num_heads = hidden_size, num_heads
        self.head_dim = hidden_size // num_heads
        self.segment_len, self.local, self.key_shift = segment_len, local, key_shift
        self.rotary_dim, self.eps = rotary_dim, eps
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.out = nn.Linear(hidden_size, hidden_size)
        self.gate_logit = nn.Parameter(torch.full((num_heads,), float(gate_init)))
        self.gate_logit.memkit_group = "gate"  # trainer: own learning rate, no weight decay
        self.store = MemoryStore(num_heads, self.head_dim, update, eps, num_memories)
        multi = num_memories > 1
        # the family's fields apply to N > 1 only: one memory is always written in place
        self.write_policy, self.fill_segments = (write_policy if multi else "round_robin"), fill_segments
        self.landmark = Landmark(landmark, self.head_dim, hsa_pool) if multi else None
        self.selector = Selector(selection, top_k, selection_scope, selection_score) if multi else None
        self.q_slc = nn.Linear(hidden_size, hidden_size) if multi and selection_query == "projection" else None
        self.expansion = ExpansionGate(hidden_size, hierarchy) if multi and hierarchy != "none" else None
        # the reports' one memory for the whole batch, carried across calls (None: one per sequence)
        self.shared = BatchSharedMemory(self.store, write_scale, self.landmark) if memory_scope == "batch_shared" else None
        self.last_expand_share: float = float("nan")  # diagnostics: share of tokens that read fine memories
        # segments read in one batched call. 1 (one call per segment) was fastest on a 2-core CPU
        # (batching copies every segment's N states); larger groups may pay off where launches dominate.
        self.read_group = 1

    @property
    def num_memories(self) -> int:
        return self.store.num_memories

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
        N = self.num_memories
        return MemoryAttentionState(
            memory=self.store.init_state(batch_size, device, dtype),
            pending_q=empty,
            pending_k=empty,
            pending_v=empty,
            prev_k=torch.zeros(batch_size, H, 1, d, device=device, dtype=dtype),
            lm_sum=torch.zeros(batch_size, N, H, d, device=device, dtype=dtype) if sums else None,
            lm_count=torch.zeros(batch_size, N, device=device, dtype=torch.long) if sums else None,
        )

    def reset_shared(self) -> None:
        """Empty the batch-shared memory (the reports reset it once per epoch; the trainer calls this)."""
        if self.shared is not None:
            self.shared.reset()

    def forward(self, x: torch.Tensor, state: MemoryAttentionState | None = None, memory=None):
        """x [B,T,D] -> (y [B,T,D], state). ``memory`` (int or LongTensor [B]) forces the memory
        every segment of this call is written to (``MemoryBuilder``); None follows the policy."""
        if state is None:
            state = self.init_state(x.shape[0], x.device, x.dtype)
        if x.shape[1] == 0:
            return self.out(x), state
        seg = self._segments(x, state)
        a_dot = self._local(seg)
        if self.shared is not None:
            a_mem, state = self.shared.read_and_write(seg, self._read), state
        else:
            a_mem, state = self._memory(seg, state, memory)
        if seg.gate_p is not None:
            real = seg.gate_p.flatten(1)[:, seg.pending : seg.end]
            share = real if self.expansion.mode == "soft" else (real >= 0.5)
            self.last_expand_share = float(share.detach().float().mean())
        g = self.gate().view(1, -1, 1, 1, 1).to(x.dtype)
        y = (g * a_mem + (1 - g) * a_dot).flatten(2, 3)[:, :, seg.pending : seg.end]
        return self.out(rearrange(y, "b h t d -> b t (h d)")), state

    def _segments(self, x: torch.Tensor, state: MemoryAttentionState) -> Segments:
        """Project x, continue the incomplete segment the previous call left, cut into segments."""
        B, T, _ = x.shape
        H, d, L = self.num_heads, self.head_dim, self.segment_len
        q, k, v = rearrange(self.qkv(x), "b t (three h d) -> three b h t d", three=3, h=H)
        last_k = k[:, :, -1:]
        if self.key_shift:  # k_t from token t−1: binds a token to the one after it (recall needs this)
            k = torch.cat((state.prev_k, k[:, :, :-1]), dim=2)
        q_sel = self._selection_query(x, q)
        p = self.expansion(x) if self.expansion is not None else None  # [B,T]
        P = state.pending_k.shape[2]
        if P:  # the copies below are skipped when no segment is pending (the common case)
            q = torch.cat((q.new_zeros(B, H, P, d), q), dim=2)  # pending outputs were already returned
            q_sel = torch.cat((state.pending_q, q_sel), dim=2)  # kept: a sequence-scope selection averages them
            k = torch.cat((state.pending_k, k), dim=2)
            v = torch.cat((state.pending_v, v), dim=2)
        n = P + T
        S = -(-n // L)
        extra = S * L - n

        def cut(t):  # [B,H,n,d] -> [B,H,S,L,d]; padding sits after every real token
            return (F.pad(t, (0, 0, 0, extra)) if extra else t).unflatten(2, (S, L))

        gate_p = None if p is None else F.pad(p, (P, extra)).unflatten(1, (S, L))  # [B,S,L]
        return Segments(q=cut(q), q_sel=cut(q_sel), k=cut(k), v=cut(v), gate_p=gate_p, pending=P, end=n,
                        full=n // L, last_k=last_k)

    def _local(self, seg: Segments) -> torch.Tensor:
        """A_dot [B,H,S,L,d]: causal attention inside each segment."""
        if self.local == "softmax":
            return causal_softmax(rotate(seg.q, self.rotary_dim), rotate(seg.k, self.rotary_dim), seg.v)
        return causal_linear(seg.q, seg.k, seg.v, self.eps)

    def _memory(self, seg: Segments, state: MemoryAttentionState, forced) -> tuple[torch.Tensor, MemoryAttentionState]:
        """Per-sequence memory: A_mem [B,H,S,L,d] and the state to carry.

        Segment s reads what segments < s wrote, then is written. Writes are sequential (delta needs
        the state before each); landmark chunk summaries depend on keys only, so those of every
        complete segment come from one call."""
        summaries = self._chunk_summaries(seg)
        now = Memories(state.memory, state.lm_sum, state.lm_count)
        waiting, reads = [], []
        for s in range(seg.count):
            waiting.append(now)
            if len(waiting) == self.read_group:  # read as soon as a group is complete: states can go
                reads.append(self._read_segments(waiting, seg, s + 1 - len(waiting)))
                waiting = []
            if s < seg.full:
                now = self._write(now, seg, s, forced, summaries)
        if waiting:
            reads.append(self._read_segments(waiting, seg, seg.count - len(waiting)))
        carried = MemoryAttentionState(now.memory, seg.tail(seg.q_sel), seg.tail(seg.k), seg.tail(seg.v), seg.last_k,
                                       now.lm_sum, now.lm_count)
        return torch.cat(reads, dim=2), carried

    def _chunk_summaries(self, seg: Segments) -> tuple[torch.Tensor, int] | None:
        """What each complete segment adds to the landmark sums: ([B,full,H,d], count per segment);
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
        memory = self.store.write(now.memory, k, seg.v[:, :, s], target)
        if summaries is None:
            return Memories(memory, now.lm_sum, now.lm_count)
        adds, count = summaries
        onehot = F.one_hot(torch.as_tensor(target, device=k.device).expand(k.shape[0]), self.num_memories)
        return Memories(memory, now.lm_sum + onehot[:, :, None, None].to(adds.dtype) * adds[:, s, None],
                        now.lm_count + onehot * count)

    def _selection_query(self, x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """What scores the landmarks: Q itself, or HSA's separate projection Q_slc. [B,H,T,d]"""
        return q if self.q_slc is None else rearrange(self.q_slc(x), "b t (h d) -> b h t d", h=self.num_heads)

    def selection_weights(self, x: torch.Tensor, state: MemoryAttentionState) -> torch.Tensor:
        """The selector's weights over the memories of ``state`` for the tokens of x, as ``forward``
        computes them when it reads that state: per segment of ``segment_len`` tokens (a
        ``sequence``-scope selection averages the scores of the segment's tokens so far).

        x [B,T,D] (this layer's input, starting at a segment boundary), state with memories written
        (batch B or 1) -> [B,H,T,N]. Used to score memory selection against known sources
        (``MemoryBuilder``)."""
        if self.selector is None:
            raise ValueError("selection_weights: this layer has one memory, there is nothing to select")
        B, T, _ = x.shape
        H, L = self.num_heads, self.segment_len
        q = rearrange(self.qkv(x), "b t (three h d) -> three b h t d", three=3, h=H)[0]
        q_sel = self._selection_query(x, q)
        S = -(-T // L)
        q_sel = F.pad(q_sel, (0, 0, 0, S * L - T)).unflatten(2, (S, L)).transpose(1, 2).flatten(0, 1)  # [B·S,H,L,d]
        grow = lambda t: None if t is None else t.expand(B, *t.shape[1:]).repeat_interleave(S, 0)  # noqa: E731
        M, z = state.memory.stacked()
        landmarks = self.landmark.landmarks(grow(z), grow(state.lm_sum), grow(state.lm_count))
        weights = self.selector(q_sel, landmarks, grow(state.memory.written()))  # [B·S,H,L,N]
        return weights.unflatten(0, (B, S)).transpose(1, 2).flatten(2, 3)[:, :, :T]

    def _read_segments(self, before: list[Memories], seg: Segments, g0: int) -> torch.Tensor:
        """Reads of segments g0.. in one batched call: each segment's memories join the batch axis.
        before: the memories each segment reads -> A_mem [B,H,g,L,d]."""
        g = len(before)
        B = seg.q.shape[0]
        if g == 1:  # one segment: its memories as they are, no copy
            return self._read(before[0], seg.q[:, :, g0], seg.q_sel[:, :, g0], seg.gate(g0)).unsqueeze(2)
        join = lambda ts: None if ts[0] is None else torch.stack(ts, 1).flatten(0, 1)  # noqa: E731  [B·g,...]
        memory = MemoryState(M=join([b.memory.M for b in before]), z=join([b.memory.z for b in before]),
                             writes=before[0].memory.writes)
        part = lambda t: t[:, :, g0 : g0 + g].transpose(1, 2).flatten(0, 1)  # noqa: E731  [B·g,H,L,d]
        gate_p = None if seg.gate_p is None else seg.gate_p[:, g0 : g0 + g].flatten(0, 1)
        joined = Memories(memory, join([b.lm_sum for b in before]), join([b.lm_count for b in before]))
        out = self._read(joined, part(seg.q), part(seg.q_sel), gate_p)
        return out.unflatten(0, (B, g)).transpose(1, 2)

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
        scores = torch.einsum("bhd,bnhd->bn", k.mean(2), self.landmark.landmarks(z, now.lm_sum, now.lm_count))
        first_empty = (~written).to(torch.int8).argmax(-1)
        return torch.where(written.all(-1), scores.argmax(-1), first_empty).detach()

    def _read(self, memories: Memories, q: torch.Tensor, q_sel: torch.Tensor, p: torch.Tensor | None) -> torch.Tensor:
        """q, q_sel [B,H,L,d]; p [B,L] or None -> A_mem [B,H,L,d]."""
        mem, lm_sum, lm_count = memories.memory, memories.lm_sum, memories.lm_count
        M, z = mem.stacked()
        # Memories known to be empty read exactly 0 and get selection weight exactly 0: when they are
        # the last ones (round robin / fill before the memories are all used), read the others only.
        live = M.shape[1] - len(mem.empty)
        if mem.empty and mem.empty == frozenset(range(live, M.shape[1])):
            if live == 0:
                return torch.zeros_like(q)
            M, z = M[:, :live], z[:, :live]
            lm_sum = None if lm_sum is None else lm_sum[:, :live]
            lm_count = None if lm_count is None else lm_count[:, :live]
            mem = MemoryState(M=M, z=z, writes=mem.writes)
        if self.selector is None:
            return self.store.read(mem, q)
        weights = self.selector(q_sel, self.landmark.landmarks(z, lm_sum, lm_count), mem.written())  # [B,H,L,N]
        skip = self.expansion is not None and self.expansion.mode == "hard" and not self.training
        if skip:  # inference: read the fine memories only where the gate expands
            fine = torch.zeros_like(q)
            for b, row in enumerate(p >= 0.5):
                idx = row.nonzero().squeeze(-1)
                if idx.numel():
                    fine[b : b + 1, :, idx] = mixed_read(M[b : b + 1], z[b : b + 1], q[b : b + 1, :, idx],
                                                         weights[b : b + 1, :, idx], self.eps)
        else:
            fine = mixed_read(M, z, q, weights, self.eps)
        if self.expansion is None:
            return fine
        Mc, zc = coarse(M, z)
        rough = read_memories(Mc, zc, q, self.eps)[:, 0]
        m = self.expansion.mix_weight(p)[:, None, :, None].to(q.dtype)  # [B,1,L,1]
        return m * fine + (1 - m) * rough


class MemoryAttentionSpec(Spec):
    """Settings of a ``MemoryAttention`` layer."""

    hidden_size: int = Field(512, ge=1, description="model width D")
    num_heads: int = Field(8, ge=1, description="heads H (must divide hidden_size)")
    segment_len: int = Field(64, ge=1, le=65536, description="tokens per segment")
    update: Literal["linear", "delta"] = Field("linear", description="memory write rule")
    num_memories: int = Field(1, ge=1, le=1024, description="number of memories N")
    local: Literal["softmax", "linear"] = Field("softmax", description="local branch inside a segment")
    key_shift: bool = Field(False, description="keys from the previous token (binds pairs at layer 0)")
    rotary_dim: int = Field(0, ge=0, description="rotary dims of the local branch (0 = none)")
    gate_init: float = Field(0.0, ge=-20, le=20, description="initial gate logit β")
    eps: float = Field(1e-6, gt=0, le=1e-1, description="guard of every division")
    # The fields below apply when num_memories > 1.
    write_policy: Literal["round_robin", "fill", "nearest"] = Field("round_robin", description="which memory a segment goes to")
    fill_segments: int = Field(1, ge=1, description="segments per memory before the next (fill policy)")
    landmark: Literal["memory_norm", "memory_norm_normalised", "mean_k", "learned", "hsa"] = Field(
        "memory_norm", description="memory summary")
    selection: Literal["soft", "hard"] = Field("soft", description="softmax over memories, or top-k")
    top_k: int = Field(1, ge=1, description="memories read by hard selection")
    selection_query: Literal["q", "projection"] = Field("q", description="Q, or a separate projection Q_slc")
    selection_scope: Literal["token", "sequence"] = Field("token", description="weights per token or per sequence")
    hierarchy: Literal["none", "soft", "hard"] = Field("none", description="coarse memory + expansion gate")
    # The reports' code choices, by name; the defaults are the careful ones (DESIGN.md, last section).
    selection_score: Literal["scaled", "reports"] = Field("scaled", description="q·ℓ/√d, or σ(q)·ℓ unscaled")
    memory_scope: Literal["sequence", "batch_shared"] = Field("sequence", description="one memory per sequence, or one shared by the batch across steps")
    write_scale: Literal["equal", "reports"] = Field("equal", description="batch_shared: M and z scaled alike, or M/(B·T) and z/B")
    hsa_pool: int = Field(8, ge=1, le=4096, description="hsa landmark: keys enter the encoder as means of this many")
    # Optional fast path: torch.compile fuses the many small ops of the segment loop. The first
    # call compiles (tens of seconds); needs a GPU or, on CPU, a C++ compiler. Tested equal to eager.
    compile: bool = Field(False, description="torch.compile the layer's forward")

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
        if compiled:
            layer.compile()  # in place: parameter names stay as they are
        return layer

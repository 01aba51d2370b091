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

from memkit.blocks.hierarchical import ExpansionGate, coarse
from memkit.blocks.landmark import Landmark
from memkit.ops.memory import causal_linear, causal_softmax, mixed_read, read_memories
from memkit.blocks.selector import Selector
from memkit.spec import Spec, check_heads
from memkit.blocks.store import MemoryState, MemoryStore


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
        self.write_policy, self.fill_segments = write_policy, fill_segments
        multi = num_memories > 1
        self.landmark = Landmark(landmark, self.head_dim, hsa_pool) if multi else None
        self.selector = Selector(selection, top_k, selection_scope, selection_score) if multi else None
        self.memory_scope, self.write_scale = memory_scope, write_scale
        self._shared: MemoryState | None = None  # memory_scope="batch_shared" only: carried across calls
        self.q_slc = nn.Linear(hidden_size, hidden_size) if multi and selection_query == "projection" else None
        self.expansion = ExpansionGate(hidden_size, hierarchy) if multi and hierarchy != "none" else None
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

    def forward(self, x: torch.Tensor, state: MemoryAttentionState | None = None, memory=None):
        """x [B,T,D] -> (y [B,T,D], state). ``memory`` (int or LongTensor [B]) forces the memory
        every segment of this call is written to (``MemoryBuilder``); None follows the policy."""
        B, T, _ = x.shape
        H, d = self.num_heads, self.head_dim
        if state is None:
            state = self.init_state(B, x.device, x.dtype)
        if T == 0:
            return self.out(x), state
        q, k, v = rearrange(self.qkv(x), "b t (three h d) -> three b h t d", three=3, h=H)
        prev_k = k[:, :, -1:]
        if self.key_shift:  # k_t from token t−1: binds a token to the one after it (recall needs this)
            k = torch.cat((state.prev_k, k[:, :, :-1]), dim=2)
        q_sel = self._selection_query(x, q)
        p = self.expansion(x) if self.expansion is not None else None  # [B,T]

        # Continue the incomplete segment left by the previous call.
        P = state.pending_k.shape[2]
        if P:  # the copies below are skipped when no segment is pending (the common case)
            q = torch.cat((q.new_zeros(B, H, P, d), q), dim=2)  # pending outputs were already returned
            q_sel = torch.cat((state.pending_q, q_sel), dim=2)  # kept: a sequence-scope selection averages them
            k = torch.cat((state.pending_k, k), dim=2)
            v = torch.cat((state.pending_v, v), dim=2)
        n, L = P + T, self.segment_len
        full, S = n // L, -(-n // L)
        extra = S * L - n

        def pad(t):  # [B,H,n,d] -> [B,H,S,L,d]
            return (F.pad(t, (0, 0, 0, extra)) if extra else t).unflatten(2, (S, L))
        qs, ks, vs, qsel_s = pad(q), pad(k), pad(v), pad(q_sel)
        if p is not None:
            p = F.pad(p, (P, extra)).unflatten(1, (S, L))  # [B,S,L]

        # Local branch: causal inside each segment; padding sits after every real token.
        if self.local == "softmax":
            a_dot = causal_softmax(rotate(qs, self.rotary_dim), rotate(ks, self.rotary_dim), vs)
        else:
            a_dot = causal_linear(qs, ks, vs, self.eps)

        if self.memory_scope == "batch_shared":
            a_mem, new_state = self._read_batch_shared(x, qs, qsel_s, ks, vs, p, full), state
        else:
            a_mem, new_state = self._memory_branch(x, state, memory, prev_k, q_sel, k, v, qs, qsel_s, ks, vs, p, n, full, S)
        if p is not None:
            real = p.flatten(1)[:, P:n]
            share = real if self.expansion.mode == "soft" else (real >= 0.5)
            self.last_expand_share = float(share.detach().float().mean())

        g = self.gate().view(1, -1, 1, 1, 1).to(x.dtype)
        y = (g * a_mem + (1 - g) * a_dot).flatten(2, 3)[:, :, P:n]
        return self.out(rearrange(y, "b h t d -> b t (h d)")), new_state

    def _memory_branch(self, x, state, memory, prev_k, q_sel, k, v, qs, qsel_s, ks, vs, p, n, full, S):
        """Per-sequence memory: A_mem [B,H,S,L,d] and the state to carry."""
        B, L = x.shape[0], self.segment_len
        # Memory branch: segment s reads the state written by segments < s, then is written.
        # Writes are sequential (delta needs the state before each); landmark chunk summaries
        # depend on keys only, so they are computed for every complete segment in one call.
        mem, lm_sum, lm_count, before = state.memory, state.lm_sum, state.lm_count, []
        adds = None
        if lm_sum is not None and full:
            flat = ks[:, :, :full].transpose(1, 2).flatten(0, 1)  # [B·full,H,L,d]
            adds, count = self.landmark.chunk_summary(flat)
            adds = adds.unflatten(0, (B, full))  # [B,full,H,d]
        reads = []
        for s in range(S):
            before.append((mem, lm_sum, lm_count))
            if len(before) == self.read_group:  # read as soon as a group is complete: states can go
                reads.append(self._read_segments(before, qs, qsel_s, p, s + 1 - len(before)))
                before = []
            if s < full:
                target = self._target(mem, lm_sum, lm_count, ks[:, :, s], memory)
                mem = self.store.write(mem, ks[:, :, s], vs[:, :, s], target)
                if lm_sum is not None:
                    onehot = F.one_hot(torch.as_tensor(target, device=x.device).expand(B), self.num_memories)
                    lm_sum = lm_sum + onehot[:, :, None, None].to(adds.dtype) * adds[:, s, None]
                    lm_count = lm_count + onehot * count
        if before:
            reads.append(self._read_segments(before, qs, qsel_s, p, S - len(before)))
        a_mem = torch.cat(reads, dim=2)
        rest = slice(full * L, n)
        new_state = MemoryAttentionState(
            mem, q_sel[:, :, rest], k[:, :, rest], v[:, :, rest], prev_k, lm_sum, lm_count
        )
        return a_mem, new_state

    def _selection_query(self, x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """What scores the landmarks: Q itself, or HSA's separate projection Q_slc. [B,H,T,d]"""
        return q if self.q_slc is None else rearrange(self.q_slc(x), "b t (h d) -> b h t d", h=self.num_heads)

    def selection_weights(self, x: torch.Tensor, state: MemoryAttentionState) -> torch.Tensor:
        """The selector's weights over the memories of ``state`` for the tokens of x.

        x [B,T,D] (this layer's input), state with memories written (batch B or 1) -> [B,H,T,N].
        Used to score memory selection against known sources (``MemoryBuilder``)."""
        if self.selector is None:
            raise ValueError("selection_weights: this layer has one memory, there is nothing to select")
        B, H = x.shape[0], self.num_heads
        q = rearrange(self.qkv(x), "b t (three h d) -> three b h t d", three=3, h=H)[0]
        q_sel = self._selection_query(x, q)
        grow = lambda t: None if t is None else t.expand(B, *t.shape[1:])  # noqa: E731  (a batch-1 state)
        M, z = state.memory.stacked()
        landmarks = self.landmark.landmarks(grow(z), grow(state.lm_sum), grow(state.lm_count))
        return self.selector(q_sel, landmarks, grow(state.memory.written()))

    def reset_shared(self) -> None:
        """Empty the batch-shared memory (the reports reset it once per epoch; the trainer calls this)."""
        self._shared = None

    def _read_batch_shared(self, x, qs, qsel_s, ks, vs, p, full):
        """The reports' code: one memory for the whole batch, read by every segment of every
        sequence before it is written once per call with all complete segments, summed over batch
        and time and detached. ``write_scale="reports"`` scales M by 1/(B·T) but z by 1/B (their
        scale bug: reads come out at 1/T); "equal" scales both by 1/B. Returns A_mem [B,H,S,L,d]."""
        B = x.shape[0]
        if self._shared is None:
            self._shared = self.store.init_state(1, x.device, x.dtype)
        M, z = self._shared.stacked()
        shared = self._shared.unstacked(M.expand(B, *M.shape[1:]), z.expand(B, *z.shape[1:]), self._shared.writes)
        S = qs.shape[2]
        a_mem = torch.stack([self._read(shared, None, None, qs[:, :, s], qsel_s[:, :, s], None if p is None else p[:, s])
                             for s in range(S)], dim=2)
        if full:
            with torch.no_grad():
                k = ks[:, :, :full].flatten(2, 3).transpose(0, 1).reshape(1, self.num_heads, -1, self.head_dim)
                v = vs[:, :, :full].flatten(2, 3).transpose(0, 1).reshape(1, self.num_heads, -1, self.head_dim)
                new = self.store.write(self._shared, k, v)
                tokens = full * self.segment_len
                m_scale = 1 / (B * tokens) if self.write_scale == "reports" else 1 / B
                self._shared = new.unstacked(
                    *(old + (upd - old) * sc for old, upd, sc in
                      zip(self._shared.stacked(), new.stacked(), (m_scale, 1 / B))),
                    new.writes,
                )
        return a_mem

    def _read_segments(self, before: list, qs, qsel_s, p, g0: int) -> torch.Tensor:
        """Reads of segments g0.. in one batched call: each segment's state joins the batch axis.
        before: [(MemoryState, lm_sum, lm_count)] per segment; qs, qsel_s [B,H,S,L,d] -> [B,H,g,L,d]."""
        g = len(before)
        B = qs.shape[0]
        if g == 1:  # one segment: its state as is, no copy
            mem, lm_sum, lm_count = before[0]
            gate_p = None if p is None else p[:, g0]
            return self._read(mem, lm_sum, lm_count, qs[:, :, g0], qsel_s[:, :, g0], gate_p).unsqueeze(2)
        join = lambda ts: None if ts[0] is None else torch.stack(ts, 1).flatten(0, 1)  # noqa: E731  [B·g,...]
        mems = [b[0] for b in before]
        mem = MemoryState(M=join([m.M for m in mems]), z=join([m.z for m in mems]), writes=mems[0].writes)
        part = lambda t: t[:, :, g0 : g0 + g].transpose(1, 2).flatten(0, 1)  # noqa: E731  [B·g,H,L,d]
        gate_p = None if p is None else p[:, g0 : g0 + g].flatten(0, 1)
        out = self._read(mem, join([b[1] for b in before]), join([b[2] for b in before]), part(qs), part(qsel_s), gate_p)
        return out.unflatten(0, (B, g)).transpose(1, 2)

    def _target(self, mem: MemoryState, lm_sum, lm_count, k: torch.Tensor, forced):
        """Which memory this segment is written to: an int, or LongTensor [B]."""
        N = self.num_memories
        if forced is not None:
            return forced
        if self.write_policy == "round_robin":
            return mem.writes % N
        if self.write_policy == "fill":
            return (mem.writes // self.fill_segments) % N
        # nearest: seed every memory once (first empty one), then the best-matching landmark
        written = mem.written()
        M, z = mem.stacked()
        scores = torch.einsum("bhd,bnhd->bn", k.mean(2), self.landmark.landmarks(z, lm_sum, lm_count))
        first_empty = (~written).to(torch.int8).argmax(-1)
        return torch.where(written.all(-1), scores.argmax(-1), first_empty).detach()

    def _read(self, mem: MemoryState, lm_sum, lm_count, q, q_sel, p) -> torch.Tensor:
        """q, q_sel [B,H,L,d]; p [B,L] or None -> A_mem [B,H,L,d]."""
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
    landmark: Literal["memory_norm", "mean_k", "learned", "hsa"] = Field("memory_norm", description="memory summary")
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

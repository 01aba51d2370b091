"""MemoryAttentionSpec: the settings of a ``MemoryAttention`` layer, flat, mapped onto its parts.

The flat fields (the ``--space`` keys, saved ``config.json`` files) map onto small part specs:
``LocalSpec`` (the local branch), one memory path (``OneMemorySpec``, or ``ManyMemoriesSpec`` with its
write policy, landmark, selector and hierarchy) and ``ReportsSpec`` (everything that reproduces the
reports' code). A field the chosen design does not use must stay at its default: setting it is a
``SpecError`` naming the design and the field (``inert_fields`` lists them). Inside a model's or recipe's
settings such a field is kept (a preset carries it for the designs a grid sets: ``memories=1,4`` with a
landmark); ``ignoring_inert_fields`` resets it instead, so a grid runs points that differ only there once.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator, Literal

from pydantic import Field, ValidationInfo, model_validator
from torch import nn

from memkit.blocks.attention import MemoryAttention
from memkit.blocks.landmark import Landmark, LandmarkType
from memkit.blocks.local import LocalAttention
from memkit.blocks.many_memories import ManyMemories, WritePolicy
from memkit.blocks.memory_path import OneMemory
from memkit.blocks.reports.parts import ReportsSpec
from memkit.blocks.store import MemoryStore
from memkit.spec import Spec, check_heads

WriteStrategy = Literal["loop", "cumulative_sum"]
FAMILY = ("write_policy", "fill_segments", "landmark", "hsa_pool", "selection", "top_k", "selection_query",
          "selection_scope", "hierarchy", "selection_score", "unwritten_memories", "gate_input", "hsa_keys",
          "hsa_dropout")
SHARED = ("write_scale", "shared_reset", "shared_validation")
_ignored: ContextVar[list | None] = ContextVar("memkit_ignored_inert_fields", default=None)


class LocalSpec(Spec):
    """The careful local branch (``LocalAttention``)."""

    kind: Literal["softmax", "linear"] = "softmax"
    rotary_dim: int = 0
    rotary_base: float = 10000.0
    eps: float = 1e-6

    def build(self) -> LocalAttention:
        return LocalAttention(**self.model_dump())


class OneMemorySpec(Spec):
    """One compressive memory per sequence (``OneMemory``)."""

    design: Literal["one memory"] = "one memory"
    update: Literal["linear", "delta"] = "linear"
    write_strategy: WriteStrategy = "loop"

    def build(self, heads: int, head_dim: int, eps: float, reports: ReportsSpec) -> nn.Module:
        return OneMemory(MemoryStore(heads, head_dim, self.update, eps, 1), self.write_strategy)


class ManyMemoriesSpec(Spec):
    """N memories per sequence with their write policy, landmark, selector and hierarchy (``ManyMemories``)."""

    design: Literal["N memories"] = "N memories"
    num_memories: int = Field(2, ge=2)
    update: Literal["linear", "delta"] = "linear"
    write_strategy: WriteStrategy = "loop"
    write_policy: Literal["round_robin", "fill", "nearest"] = "round_robin"
    fill_segments: int = 1
    landmark: LandmarkType = "memory_norm"
    hsa_pool: int = 8
    selection: Literal["soft", "hard"] = "soft"
    top_k: int = 1
    selection_query: Literal["q", "projection"] = "q"
    selection_scope: Literal["token", "sequence"] = "token"
    hierarchy: Literal["none", "soft", "hard"] = "none"

    def build(self, heads: int, head_dim: int, eps: float, reports: ReportsSpec) -> nn.Module:
        """In the order the layer always made them: a seed gives the weights it always gave."""
        hidden, N = heads * head_dim, self.num_memories
        landmark = reports.landmark(lambda: Landmark(self.landmark, head_dim, self.hsa_pool), head_dim, heads)
        selector = reports.selector(self.selection, self.top_k, self.selection_scope)
        q_slc = nn.Linear(hidden, hidden, bias=reports.bias) if self.selection_query == "projection" else None
        expansion = reports.gate(hidden, self.hierarchy) if self.hierarchy != "none" else None
        return ManyMemories(MemoryStore(heads, head_dim, self.update, eps, N), WritePolicy(self.write_policy,
                            self.fill_segments, N), landmark, selector, q_slc, expansion, self.write_strategy)


class MemoryAttentionSpec(Spec):
    """Settings of a ``MemoryAttention`` layer.

    The defaults are the careful choices. The reports' code (docs/design.md, the reports' options) is
    reproduced by these, each named for what it does: ``segmentation="whole_call"`` (no segments: a call
    is one segment), ``local="linear_clamped"``, ``bias=False``, ``memory_scope="batch_shared"`` with
    ``write_scale="reports"``, ``shared_reset`` and ``shared_validation`` (their reset and validation
    regimes), ``selection_score="reports"``, ``selection_scope="whole_call_leaks_future"`` (NOT causal:
    an earlier token's selection depends on later tokens of the call), ``unwritten_memories="kept_at_zero"``,
    ``gate_input="coarse_read_relu"``, ``landmark="hsa_last_keys"`` with ``hsa_keys`` and ``hsa_dropout``,
    ``nan_guard``. ``parts()`` says where each goes.
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
    write_strategy: WriteStrategy = Field(
        "loop", description="how linear writes into memories known in advance are made: one after the other, or "
        "all at once by a cumulative sum (same memories; the loop was faster on a 2-core CPU, benchmarks/layer.py)")
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
    # The reports' code choices, by name; the defaults are the careful ones (docs/design.md).
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

    @staticmethod
    def inert_fields(values: dict) -> dict[str, str]:
        """The fields that do nothing for the design ``values`` (flat fields; missing ones at their
        defaults) chooses: {field: the design, in words}."""
        v = {name: f.default for name, f in MemoryAttentionSpec.model_fields.items()} | values
        inert = {}
        if v["num_memories"] == 1:
            inert |= dict.fromkeys(FAMILY, "one memory (num_memories=1)")
        elif v["hierarchy"] == "none":
            inert["gate_input"] = "N memories without a hierarchy (hierarchy='none')"
        if v["memory_scope"] != "batch_shared":
            inert |= dict.fromkeys(SHARED, "one memory per sequence (memory_scope='sequence')")
        adds_up = v["update"] == "linear" and v["memory_scope"] == "sequence" and (
            v["num_memories"] == 1 or (v["write_policy"] != "nearest" and v["landmark"] != "hsa_last_keys"))
        if not adds_up:
            inert.setdefault("write_strategy", "writes that do not add up into memories known in advance (delta, "
                             "nearest, hsa_last_keys or batch_shared)")
        return inert

    @model_validator(mode="before")
    @classmethod
    def _used(cls, data, info: ValidationInfo):
        """A field the design ignores: a SpecError for a layer's own settings. Inside a model's or a
        recipe's settings it is kept (a preset carries it for the designs a grid sets); a grid, within
        ``ignoring_inert_fields``, resets it and runs the points that differ only there once."""
        if not isinstance(data, dict):
            return data
        inert = cls.inert_fields({k: v for k, v in data.items() if k in cls.model_fields})
        away = [f for f in inert if f in data and data[f] != cls.model_fields[f].default]
        ignored = _ignored.get()
        if away and ignored is not None:
            ignored.extend(f for f in away if f not in ignored)
            return {k: v for k, v in data.items() if k not in away}
        if away and info.field_name is None:
            f = away[0]
            raise ValueError(f"{f}: means nothing for {inert[f]}; leave it at its default "
                             f"{cls.model_fields[f].default!r} (got {data[f]!r})")
        return data

    @model_validator(mode="after")
    def _consistent(self):
        if self.top_k > self.num_memories:
            raise ValueError(f"top_k ({self.top_k}) must be at most num_memories ({self.num_memories})")
        check_heads(self.hidden_size, self.num_heads)
        head_dim = self.hidden_size // self.num_heads
        if self.rotary_dim > head_dim or self.rotary_dim % 2:
            raise ValueError(f"rotary_dim must be even and at most head_dim ({head_dim}), got {self.rotary_dim}")
        return self

    def parts(self) -> tuple[LocalSpec, OneMemorySpec | ManyMemoriesSpec, ReportsSpec]:
        """The flat fields mapped onto the layer's parts: local branch, memory path, the reports' options."""
        f = self.model_dump()
        clamped, leaks, last_keys = (f["local"] == "linear_clamped", f["selection_scope"] == "whole_call_leaks_future",
                                     f["landmark"] == "hsa_last_keys")
        local = LocalSpec(kind="linear" if clamped else f["local"], rotary_dim=f["rotary_dim"],
                          rotary_base=f["rotary_base"], eps=f["eps"])
        reports = ReportsSpec(**{k: f[k] for k in ReportsSpec.model_fields if k in f}, local_clamped=clamped,
                              selection_leaks_future=leaks, last_keys=last_keys)
        if f["num_memories"] == 1:
            return local, OneMemorySpec(update=f["update"], write_strategy=f["write_strategy"]), reports
        many = {k: f[k] for k in ManyMemoriesSpec.model_fields if k in f and k != "design"}
        many |= dict(selection_scope="token" if leaks else f["selection_scope"],
                     landmark="memory_norm" if last_keys else f["landmark"])
        return local, ManyMemoriesSpec(**many), reports

    def build(self) -> MemoryAttention:
        local, path, reports = self.parts()
        H, d = self.num_heads, self.hidden_size // self.num_heads
        layer = MemoryAttention(
            self.hidden_size, H, path=lambda: reports.path(path.build(H, d, self.eps, reports)),
            local=reports.local(local.build(), self.eps), segments=reports.segments(self.segment_len),
            key_shift=self.key_shift, gate_init=self.gate_init, bias=reports.bias, clean_read=reports.clean_read())
        if self.compile:  # in place: parameter names stay; fullgraph: the forward has no graph break (no host sync)
            layer.compile(fullgraph=True)
        return layer


@contextmanager
def ignoring_inert_fields() -> Iterator[list[str]]:
    """Within the block, a ``MemoryAttentionSpec`` field that means nothing for its design is reset to its
    default instead of raising; the names so reset are collected in the list yielded."""
    token = _ignored.set(seen := [])
    try:
        yield seen
    finally:
        _ignored.reset(token)

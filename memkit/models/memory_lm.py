"""Pythia-shaped language models (GPT-NeoX, built from a config) with a memory layer swapped in.

No weights or tokenizers are downloaded: the model is built from ``GPTNeoXConfig``.

``local_window`` says what the plain layers see:
- ``segment``: every layer sees only the current segment; the memory state is the only path
  back to earlier segments (what Infini-attention's long-context claim is about, and what
  makes a recall task decide between memory designs). A plain model (``memory_layer=None``)
  keeps the same window: local attention alone, the baseline a memory design must beat;
- ``full``: the plain layers attend over the whole input (the reports' setting: there,
  layers 1-5 can read the early tokens directly and the memory layer matters little).

Axes: B batch, T tokens, S segments, L segment length, D hidden, V vocab.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import Field, field_serializer, model_validator
from torch import nn

from memkit.blocks.attention import MemoryAttention, MemoryAttentionState
from memkit.blocks.attention_spec import MemoryAttentionSpec
from memkit.errors import InputTooLong
from memkit.models import neox_stack
from memkit.models.designs import DesignSpec, build_layer, derive_design_shape
from memkit.models.neox_stack import PlainCache
from memkit.models.pretrained import LMOutput, SpecConfig
from memkit.models.streaming import StreamingLM, StreamState
from memkit.spec import Spec, check_heads


@dataclass(frozen=True)
class MemoryLMState(StreamState):
    """What a ``MemoryLM`` carries between calls: ``layer``, the memory layer's ``MemoryAttentionState`` (None for
    a plain model); ``plain``, the plain layers' keys and values (``PlainCache``: every token so far in
    ``full`` mode, the open segment's in ``segment`` mode); ``seen``, the tokens of the current document so far
    (their positions). A bare ``MemoryAttentionState`` (e.g. from ``MemoryBuilder.load``) is accepted as a state
    with nothing cached."""

    layer: MemoryAttentionState | None
    plain: PlainCache = PlainCache()
    seen: int = 0


class _Box:
    """Carries the memory layer's state into and out of one pass (handed to every layer as ``memkit_box``)."""

    def __init__(self, state, memory=None):
        self.state, self.memory, self.fold = state, memory, None


class _NeoXMemoryAttention(nn.Module):
    """Adapter: GPT-NeoX calls ``attention(hidden [R,w,D], **kwargs) -> (out, weights)``; the rows of a pass fold
    back into sequences for the memory layer."""

    def __init__(self, block: MemoryAttention):
        super().__init__()
        self.block = block

    def forward(self, hidden_states, memkit_box: _Box | None = None, **_):
        if memkit_box is None:  # called outside MemoryLM: each row one sequence
            return self.block(hidden_states)[0], None
        fold = memkit_box.fold
        forced = {} if memkit_box.memory is None else {"memory": memkit_box.memory}  # a baseline takes none
        y, memkit_box.state = self.block(fold.to_sequences(hidden_states), memkit_box.state, **forced)
        return fold.to_rows(y, hidden_states), None


class MemkitConfig(SpecConfig):
    """transformers config of a ``MemoryLM``: the ``MemoryLMSpec`` fields (``config.to_spec()`` gives the spec)."""

    model_type = "memkit"
    attribute_map = {"num_hidden_layers": "num_layers", "num_attention_heads": "num_heads"}


class MemoryLM(StreamingLM):
    """Causal LM: forward(input_ids [B,T], state=None) -> ``LMOutput`` that unpacks as (logits [B,T,V], state).

    A transformers ``PreTrainedModel`` (``save_pretrained``, ``AutoModelForCausalLM.from_pretrained`` after
    ``import memkit``), built from its spec: ``MemoryLMSpec(...).build()`` or ``MemoryLM(MemkitConfig.from_spec(spec))``.
    ``state`` (a ``MemoryLMState``) carries everything a sequence fed in pieces needs, so pieces equal one call
    in both window modes. Documents joined by ``eos_token_id`` in a row start afresh (``documents``).
    """

    config_class = MemkitConfig
    _no_split_modules = ["GPTNeoXLayer"]

    def __init__(self, config: MemkitConfig):
        super().__init__(config)
        from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

        spec = config.to_spec()
        neox = GPTNeoXConfig(
            vocab_size=spec.vocab_size,
            hidden_size=spec.hidden_size,
            num_hidden_layers=spec.num_layers,
            num_attention_heads=spec.num_heads,
            intermediate_size=spec.intermediate_size,
            rotary_pct=spec.rotary_pct,
            rotary_emb_base=spec.rotary_base,
            max_position_embeddings=spec.max_position_embeddings,
            use_parallel_residual=True,
            tie_word_embeddings=False,
            initializer_range=spec.initializer_range,
            hidden_dropout=spec.hidden_dropout,
            attention_dropout=spec.attention_dropout,
            attn_implementation="sdpa",
        )
        self.hf = GPTNeoXForCausalLM(neox)
        self.memory_layer, self.local_window, self.design = spec.memory_layer, spec.local_window, spec.design.name
        self.max_positions, self.documents, self.eos_token_id = (spec.max_position_embeddings, spec.documents,
                                                                 spec.eos_token_id)
        self.window_len = spec.memory.segment_len  # 'segment' mode: the plain model keeps the memory model's window
        if spec.memory_layer is not None:
            memory = build_layer(spec)
            if spec.memory_init == "neox":
                for mod in memory.modules():
                    if isinstance(mod, nn.Linear):
                        nn.init.normal_(mod.weight, std=spec.initializer_range)
                        if mod.bias is not None:
                            nn.init.zeros_(mod.bias)
            block = self.hf.gpt_neox.layers[spec.memory_layer]
            block.attention = _NeoXMemoryAttention(memory)
            # report 000's memory layer: x + attn(LN x), then + mlp(LN of that), not x + attn + mlp in parallel
            block.use_parallel_residual = spec.memory_residual == "parallel"
            self._mark_initialised(memory)
        self.post_init()

    @property
    def memory(self) -> MemoryAttention | None:
        """The memory layer (None for a plain model). It lives inside the GPT-NeoX stack only, so each weight has
        one name (``hf.gpt_neox.layers.<i>.attention.block.*``)."""
        if self.memory_layer is None:
            return None
        return self.hf.gpt_neox.layers[self.memory_layer].attention.block

    @property
    def segment_len(self) -> int | None:
        """Tokens per segment: the memory's (None when each call is one segment), or the window of a plain
        model in 'segment' mode (else None)."""
        if self.memory is not None and self.design == "infini":
            return self.memory.segment_len if self.memory.segments.fixed else None
        return self.window_len if self.local_window == "segment" else None

    @property
    def max_stream_tokens(self) -> int | None:
        """Tokens one stream may hold: positions go on only in full-window mode (else None: no limit)."""
        if self.local_window == "segment":
            return None
        return self.max_positions

    def memory_nbytes(self) -> int:
        """Memory state bytes per sequence (0 for a plain model)."""
        return self.memory.memory_nbytes() if self.memory is not None else 0

    def get_input_embeddings(self):
        return self.hf.gpt_neox.embed_in

    def get_output_embeddings(self):
        return self.hf.lm_head

    def forward(self, input_ids: torch.Tensor, state=None, memory=None, labels: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, documents: str | None = None,
                use_cache: bool | None = None, return_dict: bool | None = None,
                targets: torch.Tensor | None = None, loss_chunk_rows: int = 8192) -> LMOutput:
        """input_ids [B,T], ``state`` from the previous call (None: a fresh start) -> ``LMOutput`` (logits [B,T,V],
        state, loss). ``memory`` forces the memory every segment is written to (``MemoryBuilder``); ``labels``
        [B,T] gives transformers' shifted loss; ``documents`` overrides the spec's field for this call.
        ``targets`` [B,T] (memkit's, aligned with the logits, -100 = not scored) gives ``loss`` = the mean NLL over
        the scored positions with the head computed only there, and no ``logits`` (the training path); past
        ``loss_chunk_rows`` scored positions the head runs in chunks recomputed in backward (less memory, more time).
        ``use_cache`` and ``return_dict`` are accepted for transformers' callers: the state is always returned."""
        return self.stream_output(input_ids, state, labels, attention_mask, documents, targets, loss_chunk_rows,
                                  memory=memory)

    def _head(self, hidden: torch.Tensor) -> torch.Tensor:
        """[...,D] -> [...,V]: GPT-NeoX's head."""
        return self.hf.lm_head(hidden)

    def _stream(self, ids: torch.Tensor, state, memory=None):
        """One stream per row, continuing ``state``: (final-norm hidden [B,T,D], MemoryLMState)."""
        T = ids.shape[1]
        if isinstance(state, MemoryAttentionState):
            state = MemoryLMState(state, seen=state.pending_k.shape[2])
        state = state or MemoryLMState(None)
        window = self.window_len if self.local_window == "segment" else 0
        plain, seen = state.plain, state.seen
        if self.local_window == "segment" and self.segment_len is None:  # whole_call: the call is the window
            window, plain, seen = 0, PlainCache(), 0
        elif not window and seen + T > self.max_positions:
            raise InputTooLong(f"input: {seen + T} tokens is longer than max_position_embeddings ({self.max_positions}) "
                               "in local_window='full' mode; give at most that many (a prompt and its new tokens), or "
                               "use local_window='segment' (positions restart every segment)")
        box = _Box(state.layer, memory) if self.memory is not None else None
        hidden, plain = neox_stack.run(self.hf, self.hf.gpt_neox.embed_in(ids), window, plain, seen, box)
        return hidden, MemoryLMState(box.state if box is not None else None, plain, seen + T)


class MemoryLMSpec(Spec):
    """A GPT-NeoX language model with a ``MemoryAttention`` at ``memory_layer`` (None: plain)."""

    vocab_size: int = Field(50304, ge=2)
    hidden_size: int = Field(512, ge=1)
    num_layers: int = Field(6, ge=1, le=256)
    num_heads: int = Field(8, ge=1)
    intermediate_size: int = Field(2048, ge=1)
    rotary_pct: float = Field(0.25, ge=0, le=1)
    rotary_base: float = Field(10000.0, gt=1, le=1e9, description="rotary base θ of the plain layers")
    max_position_embeddings: int = Field(2048, ge=1)
    memory_layer: int | None = Field(0, ge=0, description="index of the memory layer; None = plain model")
    local_window: Literal["segment", "full"] = Field("full", description="what the plain layers see")
    memory: MemoryAttentionSpec = Field(default_factory=MemoryAttentionSpec)
    design: DesignSpec = Field(default_factory=DesignSpec, description="the layer at memory_layer: the memory "
                               "(infini) or a baseline (deltanet, gated_deltanet, sliding_window, full_attention)")
    initializer_range: float = Field(0.02, gt=0)
    # "torch" keeps PyTorch's Linear init (std ≈ 1/√(3D)) in the memory layer: with NeoX's 0.02,
    # σ(q)·σ(k) ≈ 1 for every pair, the first reads are plain averages and recall sat on a
    # plateau for 1,000+ steps in our runs; "neox" is there to reproduce the uniform init.
    memory_init: Literal["torch", "neox"] = Field("torch", description="init of the memory layer's projections")
    memory_residual: Literal["parallel", "sequential"] = Field(
        "parallel", description="the memory layer's block: GPT-NeoX's parallel residual, or attention then MLP "
        "(report 000's code)")
    hidden_dropout: float = Field(0.0, ge=0, lt=1, description="dropout on each layer's attention and MLP outputs")
    attention_dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the plain layers' attention weights")
    eos_token_id: int | None = Field(None, ge=0, description="the end-of-document id packed rows are joined by")
    documents: Literal["separate", "run_together"] = Field(
        "separate", description="documents in a row start afresh after each eos_token_id (memory, pending segment, "
        "landmark sums, attention, positions); or run together as one stream, memory crossing them (the reports')")

    @model_validator(mode="before")
    @classmethod
    def _derive_memory_shape(cls, data):
        # The memory layer's width and heads are the model's: derived, never set twice.
        if isinstance(data, dict):
            memory = data.get("memory", {})
            memory = memory.model_dump() if isinstance(memory, MemoryAttentionSpec) else dict(memory)
            n = memory.get("num_memories")
            if isinstance(n, int) and not isinstance(n, bool) and n < 0:  # 0 is allowed here: say so
                raise ValueError(f"memory.num_memories must be >= 0 (0: no memory layer, the baseline), got {n}")
            if n == 0 and not isinstance(n, bool):  # the grid's "memories=0": no memory layer, same window
                memory["num_memories"] = 1
                data = {**data, "memory_layer": None}
            given = memory if isinstance(data.get("memory"), dict) else {
                k: memory[k] for k in getattr(data.get("memory"), "model_fields_set", ())}
            for name in ("hidden_size", "num_heads"):
                model_value = data.get(name, cls.model_fields[name].default)
                if name in given and given[name] != model_value:
                    raise ValueError(f"memory.{name} ({given[name]}) differs from the model's {name} ({model_value}); "
                                     f"the memory layer takes the model's: leave memory.{name} out")
                memory[name] = model_value
            data = {**data, "memory": memory}
            data = derive_design_shape(data, memory["hidden_size"], memory["num_heads"], *(
                data.get(f, cls.model_fields[f].default) for f in ("rotary_pct", "rotary_base")))
        return data

    @field_serializer("memory", mode="wrap")
    def _memory_without_shape(self, memory: MemoryAttentionSpec, dump) -> dict:
        # derived from the model's fields: a dump changed and validated again derives them afresh
        return {k: v for k, v in dump(memory).items() if k not in ("hidden_size", "num_heads")}

    @model_validator(mode="after")
    def _consistent(self):
        check_heads(self.hidden_size, self.num_heads)
        if self.memory_layer is not None and self.memory_layer >= self.num_layers:
            raise ValueError(f"memory_layer must be in 0..{self.num_layers - 1}, got {self.memory_layer}")
        if self.eos_token_id is not None and self.eos_token_id >= self.vocab_size:
            raise ValueError(f"eos_token_id ({self.eos_token_id}) must be below vocab_size ({self.vocab_size})")
        return self

    def build(self) -> MemoryLM:
        return MemoryLM(MemkitConfig.from_spec(self))


MemkitConfig.spec_class = MemoryLMSpec

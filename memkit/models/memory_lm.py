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

from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from memkit.blocks.attention import MemoryAttention, MemoryAttentionSpec, MemoryAttentionState
from memkit.spec import Spec, check_heads


class _StateBox:
    """Carries the memory state into and out of one HF forward call (passed as a kwarg)."""

    def __init__(self, state, batch_size: int, memory=None):
        self.state, self.batch_size, self.memory = state, batch_size, memory


class _NeoXMemoryAttention(nn.Module):
    """Adapter: GPT-NeoX calls ``attention(hidden, **kwargs) -> (out, weights)``."""

    def __init__(self, block: MemoryAttention):
        super().__init__()
        self.block = block

    def forward(self, hidden_states, memkit_box: _StateBox | None = None, **_):
        shape = hidden_states.shape
        B = memkit_box.batch_size if memkit_box is not None else shape[0]
        x = hidden_states.reshape(B, -1, shape[-1])  # rows of one sequence's segments fold back
        if memkit_box is None:
            y, state = self.block(x)
        else:
            y, state = self.block(x, memkit_box.state, memory=memkit_box.memory)
        if memkit_box is not None:
            memkit_box.state = state
        return y.reshape(shape), None


class MemoryLM(nn.Module):
    """Causal LM: forward(input_ids [B,T], state=None) -> (logits [B,T,V], state).

    ``state`` is the memory layer's ``MemoryAttentionState`` (None for a plain model).
    In ``segment`` mode T must be a multiple of the segment length.
    """

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int,
        num_layers: int,
        num_heads: int,
        intermediate_size: int,
        rotary_pct: float,
        max_position_embeddings: int,
        memory_layer: int | None,
        local_window: str,
        memory: MemoryAttentionSpec,
        initializer_range: float = 0.02,
        memory_init: str = "torch",
        memory_residual: str = "parallel",
        hidden_dropout: float = 0.0,
        attention_dropout: float = 0.0,
    ):
        super().__init__()
        from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

        config = GPTNeoXConfig(
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            intermediate_size=intermediate_size,
            rotary_pct=rotary_pct,
            max_position_embeddings=max_position_embeddings,
            use_parallel_residual=True,
            tie_word_embeddings=False,
            initializer_range=initializer_range,
            hidden_dropout=hidden_dropout,
            attention_dropout=attention_dropout,
            attn_implementation="sdpa",
        )
        self.hf = GPTNeoXForCausalLM(config)
        self.memory_layer, self.local_window = memory_layer, local_window
        self.window_len = memory.segment_len  # 'segment' mode: the plain model keeps the memory model's window
        self.memory: MemoryAttention | None = None
        if memory_layer is not None:
            self.memory = memory.build()
            if memory_init == "neox":
                for mod in self.memory.modules():
                    if isinstance(mod, nn.Linear):
                        nn.init.normal_(mod.weight, std=initializer_range)
                        if mod.bias is not None:
                            nn.init.zeros_(mod.bias)
            block = self.hf.gpt_neox.layers[memory_layer]
            block.attention = _NeoXMemoryAttention(self.memory)
            # report 000's memory layer: x + attn(LN x), then + mlp(LN of that), not x + attn + mlp in parallel
            block.use_parallel_residual = memory_residual == "parallel"

    @property
    def segment_len(self) -> int | None:
        """Tokens per segment: the memory's (None when each call is one segment), or the window of a plain
        model in 'segment' mode (else None)."""
        if self.memory is not None:
            return None if self.memory.segmentation == "whole_call" else self.memory.segment_len
        return self.window_len if self.local_window == "segment" else None

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def memory_nbytes(self) -> int:
        """Memory state bytes per sequence (0 for a plain model)."""
        return self.memory.memory_nbytes() if self.memory is not None else 0

    def forward(self, input_ids: torch.Tensor, state: MemoryAttentionState | None = None, memory=None):
        """``memory`` forces the memory every segment is written to (see ``MemoryBuilder``)."""
        B, T = input_ids.shape
        ids = input_ids
        if self.local_window == "segment" and self.segment_len:  # whole_call: the call is the window
            L = self.window_len
            if T % L:
                raise ValueError(f"input length {T} must be a multiple of segment_len {L} in 'segment' mode")
            ids = input_ids.reshape(B * (T // L), L)  # each segment its own row for the plain layers
        if self.memory is None:
            return self.hf(ids, use_cache=False).logits.reshape(B, T, -1), None
        box = _StateBox(state, B, memory)
        logits = self.hf(ids, use_cache=False, memkit_box=box).logits
        return logits.reshape(B, T, -1), box.state


class MemoryLMSpec(Spec):
    """A GPT-NeoX language model with a ``MemoryAttention`` at ``memory_layer`` (None: plain)."""

    vocab_size: int = Field(50304, ge=2)
    hidden_size: int = Field(512, ge=1)
    num_layers: int = Field(6, ge=1, le=256)
    num_heads: int = Field(8, ge=1)
    intermediate_size: int = Field(2048, ge=1)
    rotary_pct: float = Field(0.25, ge=0, le=1)
    max_position_embeddings: int = Field(2048, ge=1)
    memory_layer: int | None = Field(0, ge=0, description="index of the memory layer; None = plain model")
    local_window: Literal["segment", "full"] = Field("full", description="what the plain layers see")
    memory: MemoryAttentionSpec = Field(default_factory=MemoryAttentionSpec)
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

    @model_validator(mode="before")
    @classmethod
    def _derive_memory_shape(cls, data):
        # The memory layer's width and heads are the model's: derived, never set twice.
        if isinstance(data, dict):
            memory = data.get("memory", {})
            memory = memory.model_dump() if isinstance(memory, MemoryAttentionSpec) else dict(memory)
            if memory.get("num_memories") == 0:  # the grid's "memories=0": no memory layer, same window
                memory["num_memories"] = 1
                data = {**data, "memory_layer": None}
            memory["hidden_size"] = data.get("hidden_size", cls.model_fields["hidden_size"].default)
            memory["num_heads"] = data.get("num_heads", cls.model_fields["num_heads"].default)
            data = {**data, "memory": memory}
        return data

    @model_validator(mode="after")
    def _consistent(self):
        check_heads(self.hidden_size, self.num_heads)
        if self.memory_layer is not None and self.memory_layer >= self.num_layers:
            raise ValueError(f"memory_layer must be in 0..{self.num_layers - 1}, got {self.memory_layer}")
        return self

    def build(self) -> MemoryLM:
        fields = {name: getattr(self, name) for name in type(self).model_fields}
        return MemoryLM(**fields)

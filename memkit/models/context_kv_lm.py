"""ContextKVLM: a language model fed through a context-KV path (seed report 004).

Embeddings e feed the ``ContextBlock``; x = e + ContextKV(LN(e), contexts). Then the ``body``:
- ``neox`` (default): a GPT-NeoX whose plain layers each see one ``window`` of tokens, so the contexts
  are the only path further back;
- ``kv_only``: report 004's model, which had no attention between tokens at all (docs/design.md, the
  reports' options): x + FFN(LN x), FFN D→4D→D with GELU, and logits from the embedding matrix (tied). The FFN,
  its LayerNorm and the tied head are read off the report's parameter counts, which this reproduces
  exactly (45,163,264 in all and 6,301,440 trainable in Phase 2 at vocab 50,257, D 768, C 256, 8 heads).
``embeddings="frozen"`` keeps the token embeddings fixed (the reports': GPT-2's, frozen); give
``embeddings_path`` to load them from a local file (a [V, D] tensor in .pt or .safetensors), since
nothing is downloaded. ``contexts="parallel_iterations"`` computes Phase 2's contexts as the reports'
code did, by the parallel fixed-point iteration from a random start (``ContextBlock.parallel``):
``train_context_iterations`` in training (the reports cached Phase 1's last contexts),
``context_iterations`` (3) in evaluation. The reports ran contexts over the contiguous token stream,
across samples and documents; here each sample starts its own.

Axes: B batch, T tokens, D hidden, C context dim, V vocab.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from memkit.blocks.context_kv import ContextBlock, ContextKVCache, ContextKVCacheSpec
from memkit.errors import InputTooLong
from memkit.models import neox_stack
from memkit.models.neox_stack import PlainCache
from memkit.models.pretrained import LMOutput, SpecConfig
from memkit.models.streaming import StreamingLM, StreamState
from memkit.spec import Spec, check_heads


def load_embeddings(path: str, vocab_size: int, hidden_size: int) -> torch.Tensor:
    """A [V, D] embedding matrix from a .pt or .safetensors file (one tensor, or the first tensor in it)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ValueError(f"embeddings_path: no file at {path!r}")
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        tensors = load_file(str(file))
    else:
        tensors = torch.load(file, map_location="cpu", weights_only=True)
    weight = tensors if isinstance(tensors, torch.Tensor) else next(iter(tensors.values()))
    if tuple(weight.shape) != (vocab_size, hidden_size):
        raise ValueError(f"embeddings_path: {path!r} holds a {list(weight.shape)} matrix; the model needs "
                         f"[vocab_size={vocab_size}, hidden_size={hidden_size}]")
    return weight


@dataclass(frozen=True)
class ContextKVState(StreamState):
    """What a ``ContextKVLM`` carries between calls: ``context`` [B,C], the last context vector (the recurrence
    goes on from it); ``kv``, keys and values [B,H,t,d] of the last contexts a position can reach back to;
    ``plain``, the GPT-NeoX layers' keys and values (the open window's, or every token's with ``window`` 0);
    ``seen``, the tokens of the current document so far."""

    context: torch.Tensor
    kv: tuple[torch.Tensor, torch.Tensor]
    plain: PlainCache = PlainCache()
    seen: int = 0


class ContextKVConfig(SpecConfig):
    """transformers config of a ``ContextKVLM``: the ``ContextKVLMSpec`` fields."""

    model_type = "memkit_context_kv"
    attribute_map = {"num_hidden_layers": "num_layers", "num_attention_heads": "num_heads"}


class ContextKVLM(StreamingLM):
    """ids [B,T], state=None -> ``LMOutput`` that unpacks as (logits [B,T,V], state); a transformers model like
    ``MemoryLM``. ``state`` (``ContextKVState``) makes a sequence fed in pieces equal one call (recurrent
    contexts only: ``parallel_iterations`` starts every call from random contexts)."""

    config_class = ContextKVConfig
    _no_split_modules = ["GPTNeoXLayer"]
    max_positions = 4096  # of the GPT-NeoX body (positions go on when window is 0)

    def __init__(self, config: ContextKVConfig):
        super().__init__(config)
        spec = config.to_spec()
        self.window, self.body, self.contexts_mode = spec.window, spec.body, spec.contexts
        self.context_iterations, self.train_context_iterations = spec.context_iterations, spec.train_context_iterations
        self.documents, self.eos_token_id = spec.documents, spec.eos_token_id
        D = spec.hidden_size
        if spec.body == "neox":
            from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

            neox = GPTNeoXConfig(vocab_size=spec.vocab_size, hidden_size=D, num_hidden_layers=spec.num_layers,
                                 num_attention_heads=spec.num_heads, intermediate_size=spec.intermediate_size,
                                 rotary_pct=spec.rotary_pct, max_position_embeddings=self.max_positions,
                                 use_parallel_residual=True, tie_word_embeddings=False, attn_implementation="sdpa")
            self.hf = GPTNeoXForCausalLM(neox)
        else:
            self.hf = None
            self.embed = nn.Embedding(spec.vocab_size, D)
            nn.init.normal_(self.embed.weight, std=0.02)
            self.ffn_norm = nn.LayerNorm(D)
            self.ffn = nn.Sequential(nn.Linear(D, 4 * D), nn.GELU(), nn.Linear(4 * D, D))
        if spec.embeddings_path:
            with torch.no_grad():
                self.embed_in.weight.copy_(load_embeddings(spec.embeddings_path, spec.vocab_size, D))
            config.embeddings_path = None  # the weights carry them now: a saved model needs no file
        self.frozen_embeddings = spec.embeddings == "frozen"
        self.embed_in.weight.requires_grad_(not self.frozen_embeddings)
        self.context_block = ContextBlock(D, spec.context.context_dim, spec.context_ffn)
        self.norm = nn.LayerNorm(D)
        self.cache = ContextKVCache(D, spec.num_heads, **spec.context.model_dump())
        own = [self.context_block, self.norm, self.cache] + ([] if self.hf is not None else [self.embed, self.ffn_norm,
                                                                                             self.ffn])
        self._mark_initialised(*own)
        self.post_init()

    def after_load(self) -> None:
        super().after_load()
        self.embed_in.weight.requires_grad_(not self.frozen_embeddings)

    @property
    def embed_in(self) -> nn.Embedding:
        """The token embeddings (GPT-NeoX's own with the neox body)."""
        return self.hf.gpt_neox.embed_in if self.hf is not None else self.embed

    @property
    def max_stream_tokens(self) -> int | None:
        return self.max_positions if self.body == "neox" and not self.window else None

    def get_input_embeddings(self):
        return self.embed_in

    def contexts(self, ids: torch.Tensor) -> torch.Tensor:
        """[B,T] -> [B,T,C]; without a graph when the block is frozen (Phase 2)."""
        return self._contexts(self.embed_in(ids))

    def _contexts(self, e: torch.Tensor, c0: torch.Tensor | None = None) -> torch.Tensor:
        frozen = not any(p.requires_grad for p in self.context_block.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            e = e.detach() if frozen else e
            if self.contexts_mode == "parallel_iterations":
                steps = self.train_context_iterations if self.training else self.context_iterations
                return self.context_block.parallel(e, steps)
            return self.context_block(e, c0)

    def forward(self, input_ids: torch.Tensor, state=None, labels: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, documents: str | None = None,
                use_cache: bool | None = None, return_dict: bool | None = None,
                targets: torch.Tensor | None = None, loss_chunk_rows: int = 8192) -> LMOutput:
        """input_ids [B,T], ``state`` from the previous call -> ``LMOutput`` (logits [B,T,V], state, loss).
        ``targets`` [B,T] (aligned with the logits, -100 = not scored) gives ``loss`` = the mean NLL over the scored
        positions with the head computed only there, and no ``logits`` (the training path); past ``loss_chunk_rows``
        scored positions the head runs in chunks recomputed in backward (less memory, more time)."""
        return self.stream_output(input_ids, state, labels, attention_mask, documents, targets, loss_chunk_rows)

    def _head(self, hidden: torch.Tensor) -> torch.Tensor:
        """[...,D] -> [...,V]: GPT-NeoX's head, or the tied embeddings without a body (004)."""
        return hidden @ self.embed_in.weight.T if self.body == "kv_only" else self.hf.lm_head(hidden)

    def _stream(self, ids: torch.Tensor, state: ContextKVState | None):
        """One stream per row, continuing ``state``: (hidden [B,T,D] before the head, ContextKVState)."""
        T = ids.shape[1]
        if state is not None and self.contexts_mode == "parallel_iterations":
            raise ValueError("state: contexts='parallel_iterations' starts every call from random contexts and cannot "
                             "continue a stream; use contexts='recurrent' to stream or generate")
        seen = 0 if state is None else state.seen
        if self.max_stream_tokens is not None and seen + T > self.max_stream_tokens:
            raise InputTooLong(f"input: positions up to {seen + T} but the GPT-NeoX body takes {self.max_positions} "
                               "with window=0; give fewer tokens or set a window")
        e = self.embed_in(ids)
        c = self._contexts(e, None if state is None else state.context)
        y, kv = self.cache.step(self.norm(e), c, None if state is None else state.kv, seen)
        x = e + y
        if self.body == "kv_only":  # no attention between tokens: an FFN, then the (tied) embeddings
            x = x + self.ffn(self.ffn_norm(x))
            return x, ContextKVState(c[:, -1], kv, seen=seen + T)
        plain = PlainCache() if state is None else state.plain
        hidden, plain = neox_stack.run(self.hf, x, self.window, plain, seen)
        return hidden, ContextKVState(c[:, -1], kv, plain, seen + T)


class ContextKVLMSpec(Spec):
    vocab_size: int = Field(50304, ge=2)
    hidden_size: int = Field(512, ge=1)
    num_layers: int = Field(2, ge=1, le=256)
    num_heads: int = Field(8, ge=1)
    intermediate_size: int = Field(2048, ge=1)
    rotary_pct: float = Field(0.25, ge=0, le=1)
    window: int = Field(0, ge=0, description="tokens each plain layer sees (0 = all)")
    context: ContextKVCacheSpec = Field(default_factory=ContextKVCacheSpec)
    # report 004's choices, by name (docs/design.md, the reports' options); the defaults are memkit's
    body: Literal["neox", "kv_only"] = Field(
        "neox", description="GPT-NeoX layers after the context path; or none: no attention between tokens (004)")
    embeddings: Literal["trained", "frozen"] = Field("trained", description="token embeddings trained or frozen (004)")
    embeddings_path: str | None = Field(None, description="a local [V, D] embedding matrix (.pt, .safetensors)")
    context_ffn: Literal["mlp", "one_linear"] = Field("mlp", description="the context block's FFN (004: one Linear)")
    contexts: Literal["recurrent", "parallel_iterations"] = Field(
        "recurrent", description="Phase 2 contexts: the recurrence; or the reports' parallel fixed-point iterations "
        "from a random start")
    context_iterations: int = Field(3, ge=1, le=10_000, description="parallel_iterations: in evaluation (004: 3)")
    train_context_iterations: int = Field(18, ge=1, le=10_000, description="parallel_iterations: in training")
    eos_token_id: int | None = Field(None, ge=0, description="the end-of-document id packed rows are joined by")
    documents: Literal["separate", "run_together"] = Field(
        "separate", description="documents in a row start afresh after each eos_token_id (contexts, attention); or "
        "run together as one stream, contexts crossing them (report 004's)")

    @model_validator(mode="after")
    def _consistent(self):
        check_heads(self.hidden_size, self.num_heads)
        if self.embeddings_path:
            load_embeddings(self.embeddings_path, self.vocab_size, self.hidden_size)
        if self.eos_token_id is not None and self.eos_token_id >= self.vocab_size:
            raise ValueError(f"eos_token_id ({self.eos_token_id}) must be below vocab_size ({self.vocab_size})")
        return self

    def build(self) -> ContextKVLM:
        return ContextKVLM(ContextKVConfig.from_spec(self))


ContextKVConfig.spec_class = ContextKVLMSpec

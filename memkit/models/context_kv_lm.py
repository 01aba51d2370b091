"""ContextKVLM: a language model fed through a context-KV path (seed report 004).

Embeddings e feed the ``ContextBlock``; x = e + ContextKV(LN(e), contexts). Then the ``body``:
- ``neox`` (default): a GPT-NeoX whose plain layers each see one ``window`` of tokens, so the contexts
  are the only path further back;
- ``kv_only``: report 004's model, which had no attention between tokens at all (DESIGN.md, last
  section): x + FFN(LN x), FFN D→4D→D with GELU, and logits from the embedding matrix (tied). The FFN,
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

from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from memkit.blocks.context_kv import ContextBlock, ContextKVCache, ContextKVCacheSpec
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


class ContextKVLM(nn.Module):
    """ids [B,T] -> (logits [B,T,V], None)."""

    def __init__(self, vocab_size: int, hidden_size: int, num_layers: int, num_heads: int, intermediate_size: int,
                 rotary_pct: float, window: int, context: ContextKVCacheSpec, body: str = "neox",
                 embeddings: str = "trained", embeddings_path: str | None = None, context_ffn: str = "mlp",
                 contexts: str = "recurrent", context_iterations: int = 3, train_context_iterations: int = 18):
        super().__init__()
        self.window, self.body, self.contexts_mode = window, body, contexts
        self.context_iterations, self.train_context_iterations = context_iterations, train_context_iterations
        if body == "neox":
            from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

            config = GPTNeoXConfig(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
                                   num_attention_heads=num_heads, intermediate_size=intermediate_size,
                                   rotary_pct=rotary_pct, max_position_embeddings=4096, use_parallel_residual=True,
                                   tie_word_embeddings=False, attn_implementation="sdpa")
            self.hf = GPTNeoXForCausalLM(config)
        else:
            self.hf = None
            self.embed = nn.Embedding(vocab_size, hidden_size)
            nn.init.normal_(self.embed.weight, std=0.02)
            self.ffn_norm = nn.LayerNorm(hidden_size)
            self.ffn = nn.Sequential(nn.Linear(hidden_size, 4 * hidden_size), nn.GELU(),
                                     nn.Linear(4 * hidden_size, hidden_size))
        if embeddings_path:
            with torch.no_grad():
                self.embed_in.weight.copy_(load_embeddings(embeddings_path, vocab_size, hidden_size))
        if embeddings == "frozen":
            self.embed_in.weight.requires_grad_(False)
        self.context_block = ContextBlock(hidden_size, context.context_dim, context_ffn)
        self.norm = nn.LayerNorm(hidden_size)
        self.cache = ContextKVCache(hidden_size, num_heads, **context.model_dump())

    @property
    def embed_in(self) -> nn.Embedding:
        """The token embeddings (GPT-NeoX's own with the neox body)."""
        return self.hf.gpt_neox.embed_in if self.hf is not None else self.embed

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def contexts(self, ids: torch.Tensor) -> torch.Tensor:
        """[B,T] -> [B,T,C]; without a graph when the block is frozen (Phase 2)."""
        return self._contexts(self.embed_in(ids))

    def _contexts(self, e: torch.Tensor) -> torch.Tensor:
        frozen = not any(p.requires_grad for p in self.context_block.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            e = e.detach() if frozen else e
            if self.contexts_mode == "parallel_iterations":
                steps = self.train_context_iterations if self.training else self.context_iterations
                return self.context_block.parallel(e, steps)
            return self.context_block(e)

    def forward(self, ids: torch.Tensor):
        B, T = ids.shape
        e = self.embed_in(ids)
        x = e + self.cache(self.norm(e), self._contexts(e))
        if self.body == "kv_only":  # no attention between tokens: an FFN, then the (tied) embeddings
            x = x + self.ffn(self.ffn_norm(x))
            return x @ self.embed_in.weight.T, None
        if self.window:
            if T % self.window:
                raise ValueError(f"input length {T} must be a multiple of window {self.window}")
            x = x.reshape(B * (T // self.window), self.window, -1)
        logits = self.hf(inputs_embeds=x, use_cache=False).logits
        return logits.reshape(B, T, -1), None


class ContextKVLMSpec(Spec):
    vocab_size: int = Field(50304, ge=2)
    hidden_size: int = Field(512, ge=1)
    num_layers: int = Field(2, ge=1, le=256)
    num_heads: int = Field(8, ge=1)
    intermediate_size: int = Field(2048, ge=1)
    rotary_pct: float = Field(0.25, ge=0, le=1)
    window: int = Field(0, ge=0, description="tokens each plain layer sees (0 = all)")
    context: ContextKVCacheSpec = Field(default_factory=ContextKVCacheSpec)
    # report 004's choices, by name (DESIGN.md, last section); the defaults are memkit's
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

    @model_validator(mode="after")
    def _consistent(self):
        check_heads(self.hidden_size, self.num_heads)
        if self.embeddings_path:
            load_embeddings(self.embeddings_path, self.vocab_size, self.hidden_size)
        return self

    def build(self) -> ContextKVLM:
        return ContextKVLM(**{name: getattr(self, name) for name in type(self).model_fields})

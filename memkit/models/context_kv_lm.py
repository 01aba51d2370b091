"""ContextKVLM: a GPT-NeoX language model fed through a context-KV path (seed report 004).

Embeddings e feed the ``ContextBlock``; x = e + ContextKV(LN(e), contexts) enters a GPT-NeoX whose
plain layers each see one ``window`` of tokens, so the contexts are the only path further back.

Axes: B batch, T tokens, D hidden, C context dim, V vocab.
"""

from __future__ import annotations

import torch
from pydantic import Field, model_validator
from torch import nn

from memkit.blocks.context_kv import ContextBlock, ContextKVCache, ContextKVCacheSpec
from memkit.spec import Spec, check_heads


class ContextKVLM(nn.Module):
    """ids [B,T] -> (logits [B,T,V], None).

    Embeddings e feed the ``ContextBlock``; x = e + ContextKV(LN(e), contexts) enters a GPT-NeoX
    whose plain layers each see one window of ``window`` tokens (0: the whole input), so the
    contexts are the only path further back.
    """

    def __init__(self, vocab_size: int, hidden_size: int, num_layers: int, num_heads: int, intermediate_size: int,
                 rotary_pct: float, window: int, context: ContextKVCacheSpec):
        super().__init__()
        from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

        config = GPTNeoXConfig(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
                               num_attention_heads=num_heads, intermediate_size=intermediate_size,
                               rotary_pct=rotary_pct, max_position_embeddings=4096, use_parallel_residual=True,
                               tie_word_embeddings=False, attn_implementation="sdpa")
        self.hf = GPTNeoXForCausalLM(config)
        self.window = window
        self.context_block = ContextBlock(hidden_size, context.context_dim)
        self.norm = nn.LayerNorm(hidden_size)
        self.cache = ContextKVCache(hidden_size, num_heads, **context.model_dump())

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def contexts(self, ids: torch.Tensor) -> torch.Tensor:
        """[B,T] -> [B,T,C]; without a graph when the block is frozen (Phase 2)."""
        return self._contexts(self.hf.gpt_neox.embed_in(ids))

    def _contexts(self, e: torch.Tensor) -> torch.Tensor:
        frozen = not any(p.requires_grad for p in self.context_block.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            return self.context_block(e.detach() if frozen else e)

    def forward(self, ids: torch.Tensor):
        B, T = ids.shape
        e = self.hf.gpt_neox.embed_in(ids)
        x = e + self.cache(self.norm(e), self._contexts(e))
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

    @model_validator(mode="after")
    def _consistent(self):
        check_heads(self.hidden_size, self.num_heads)
        return self

    def build(self) -> ContextKVLM:
        return ContextKVLM(**{name: getattr(self, name) for name in type(self).model_fields})

"""Retrofit a pretrained GPT-NeoX: one layer's attention becomes a memory layer started from its weights.

The Infini-attention paper's continual-pretraining setting (Munkhdalai et al. 2024, arXiv:2404.07143): take a
trained model, give one layer a compressive memory, continue training. ``retrofit`` loads a local GPT-NeoX
checkpoint (e.g. Pythia-70M saved with ``save_pretrained``; nothing is downloaded) and returns a ``MemoryLM``
of the same shape whose memory layer's q/k/v/o are the pretrained layer's:

- GPT-NeoX's fused ``query_key_value`` gives, per head, [q; k; v] ([H,3,d] rows); memkit's ``qkv`` holds
  [all q; all k; all v] ([3,H,d] rows);
- rotary on the first ``rotary_ndims`` dims of each head with the config's base (``rotary_dim``,
  ``rotary_base``), softmax scaled by 1/√d, as GPT-NeoX's attention;
- the gate starts closed (β = −20, g ≈ 2e−9): on an input of one segment, whose memory read is exactly 0,
  the model computes what the checkpoint did.

Axes: H heads, d head dim, D hidden.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from memkit.blocks.attention_spec import MemoryAttentionSpec
from memkit.errors import CheckpointError
from memkit.models.memory_lm import MemoryLM, MemoryLMSpec

CLOSED_GATE = -20.0  # sigmoid(−20) ≈ 2e−9: the memory read is weighed at nothing until training opens the gate
# what memkit's GPT-NeoX is built with; a checkpoint that differs cannot be reproduced
FIXED = {"use_parallel_residual": True, "tie_word_embeddings": False, "hidden_act": "gelu", "layer_norm_eps": 1e-5}


def load_neox(path_or_model):
    """A ``GPTNeoXForCausalLM`` from a local directory (fp32), or the model given; ``CheckpointError`` otherwise."""
    from transformers import GPTNeoXForCausalLM

    if isinstance(path_or_model, GPTNeoXForCausalLM):
        return path_or_model
    if isinstance(path_or_model, torch.nn.Module):
        raise CheckpointError(f"retrofit: got a {type(path_or_model).__name__}; it takes a GPT-NeoX model "
                              "(GPTNeoXForCausalLM) or the directory of one")
    folder = Path(path_or_model).expanduser()
    config = folder / "config.json"
    if not config.is_file():
        raise CheckpointError(f"path: {str(folder)!r} has no config.json; give the directory of a GPT-NeoX checkpoint "
                              "saved with save_pretrained (e.g. Pythia-70M)")
    kind = json.loads(config.read_text()).get("model_type")
    if kind != "gpt_neox":
        raise CheckpointError(f"path: {str(folder)!r} holds a {kind!r} model; retrofit takes GPT-NeoX checkpoints "
                              "(model_type 'gpt_neox', e.g. Pythia)")
    return GPTNeoXForCausalLM.from_pretrained(str(folder), dtype=torch.float32)


def retrofit(path_or_model, memory: MemoryAttentionSpec | dict | None = None, memory_layer: int = 0,
             **model_fields) -> MemoryLM:
    """A ``MemoryLM`` from a GPT-NeoX checkpoint (directory or ``GPTNeoXForCausalLM``) with layer ``memory_layer``'s
    attention replaced by a memory layer (``memory``: its settings; width, heads, rotary and bias come from the
    checkpoint, the gate starts closed unless ``gate_init`` is given). ``model_fields``: other ``MemoryLMSpec``
    fields (``local_window``, ``eos_token_id``, ...)."""
    neox = load_neox(path_or_model)
    cfg = neox.config
    odd = {k: getattr(cfg, k) for k, v in FIXED.items() if getattr(cfg, k) != v}
    if odd:
        raise CheckpointError(f"retrofit: this GPT-NeoX has {odd}; memkit's GPT-NeoX is built with {FIXED}")
    memory = memory if isinstance(memory, MemoryAttentionSpec) else MemoryAttentionSpec.create(**(memory or {}))
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    rope = cfg.rope_parameters
    rotary = int(head_dim * rope.get("partial_rotary_factor", 1.0))
    layer = memory.model_dump(exclude={"hidden_size", "num_heads"})  # the checkpoint's
    layer.update(rotary_dim=rotary, rotary_base=float(rope["rope_theta"]), bias=bool(cfg.attention_bias))
    if "gate_init" not in memory.model_fields_set:
        layer["gate_init"] = CLOSED_GATE
    spec = MemoryLMSpec.create(**{
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size, "num_layers": cfg.num_hidden_layers,
        "num_heads": cfg.num_attention_heads, "intermediate_size": cfg.intermediate_size,
        "rotary_pct": rope.get("partial_rotary_factor", 1.0), "rotary_base": float(rope["rope_theta"]),
        "max_position_embeddings": cfg.max_position_embeddings, "hidden_dropout": cfg.hidden_dropout,
        "attention_dropout": cfg.attention_dropout, "memory_layer": memory_layer, "memory": layer, **model_fields})
    model = spec.build()
    weights = neox.state_dict()
    prefix = f"gpt_neox.layers.{memory_layer}.attention."
    missing, unexpected = model.hf.load_state_dict(weights, strict=False)
    assert all(k.startswith(prefix) for k in missing + unexpected), (missing, unexpected)
    H, d = cfg.num_attention_heads, head_dim
    with torch.no_grad():
        block = model.memory
        fused = weights[prefix + "query_key_value.weight"]  # [H·3·d, D], per head [q; k; v]
        block.qkv.weight.copy_(fused.view(H, 3, d, -1).transpose(0, 1).reshape(3 * H * d, -1))
        block.out.weight.copy_(weights[prefix + "dense.weight"])
        if cfg.attention_bias:
            block.qkv.bias.copy_(weights[prefix + "query_key_value.bias"].view(H, 3, d).transpose(0, 1).flatten())
            block.out.bias.copy_(weights[prefix + "dense.bias"])
    return model.train(neox.training)

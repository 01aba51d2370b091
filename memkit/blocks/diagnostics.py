"""Knock-outs and a recorder for the ``MemoryAttention`` layers of a model (or one layer).

Both act where a layer combines its two paths (``MemoryAttention.combine``: y = g·A_mem + (1−g)·A_loc
per head, before the output projection); "read" also silences a context-KV read (``ContextKVCache``, after its
output projection: it adds nothing to the embeddings), which has no gate:

    with knock_out(model, "read"):   # A_mem replaced by zeros, the gate as trained: y = (1−g)·A_loc
        ...
    with knock_out(model, "gate"):   # the gate forced to 0: local attention only, y = A_loc
        ...
    with record(model) as records:   # {layer name: Record}, one entry per call of each layer
        model(ids)
    records["...memory"].shares[0]  # [H]: per head, the mean over tokens of ‖g·A_mem‖/(‖g·A_mem‖+‖(1−g)·A_loc‖)
    records["...memory"].selections[0]  # N memories: the selection weights of each read of that call

Axes: B batch, H heads, T tokens, L segment length, N memories, d head dim.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Literal

import torch
from torch import nn

from memkit.blocks.attention import MemoryAttention
from memkit.blocks.context_kv import ContextKVCache


def memory_layers(model_or_layer: nn.Module) -> dict[str, MemoryAttention]:
    """The ``MemoryAttention`` layers in a module, by name ("" for the module itself)."""
    return {name: m for name, m in model_or_layer.named_modules() if isinstance(m, MemoryAttention)}


def context_layers(model_or_layer: nn.Module) -> dict[str, ContextKVCache]:
    """The context-KV reads (``ContextKVCache``) in a module, by name: a memory of context vectors, without a gate."""
    return {name: m for name, m in model_or_layer.named_modules() if isinstance(m, ContextKVCache)}


def knock_outs(model: nn.Module) -> tuple[str, ...]:
    """The knock-outs that mean something for ``model``: "read" with any memory, "gate" with a gated one."""
    return ("read", "gate") if memory_layers(model) else ("read",) if context_layers(model) else ()


@contextmanager
def knock_out(model_or_layer: nn.Module, what: Literal["read", "gate"]) -> Iterator[list[nn.Module]]:
    """Within the block every memory layer runs with A_mem = 0 ("read") or with g = 0 ("gate"), and every
    context-KV read adds nothing ("read"; it has no gate); the memories are still read and written as usual,
    so the state carried on stays the same."""
    if what not in ("read", "gate"):
        raise ValueError(f"knock_out: what must be 'read' or 'gate', got {what!r}")
    layers = list(memory_layers(model_or_layer).values())
    if what == "read":
        layers += list(context_layers(model_or_layer).values())
    elif not layers and context_layers(model_or_layer):  # would silently measure the intact model
        raise ValueError("knock_out: 'gate' needs a gated memory layer; a context-KV read has no gate: use 'read'")
    before = [layer.knock_out for layer in layers]
    for layer in layers:
        layer.knock_out = what
    try:
        yield layers
    finally:
        for layer, was in zip(layers, before):
            layer.knock_out = was


@dataclass
class Record:
    """What one layer did, call by call. ``shares``: [H] per call (the memory's mean share of each head's
    output, real tokens only); ``tokens``: the real tokens (batch × length) each call's share is a mean over;
    ``selections``: per call, the selector's weights of each read ([B,H,L,N]
    per segment read, padding after the last real token included; empty for one memory)."""

    shares: list[torch.Tensor] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    selections: list[list[torch.Tensor]] = field(default_factory=list)
    _reads: list[torch.Tensor] = field(default_factory=list)

    def selection(self, weights: torch.Tensor) -> None:
        self._reads.append(weights.detach())

    def share(self, mem: torch.Tensor, loc: torch.Tensor) -> None:
        """mem = g·A_mem, loc = (1−g)·A_loc [B,H,T,d]: closes the call."""
        m, lo = mem.detach().norm(dim=-1), loc.detach().norm(dim=-1)  # [B,H,T]
        total = m + lo
        self.shares.append(torch.where(total > 0, m / total.clamp_min(torch.finfo(total.dtype).tiny), 0).mean((0, 2)))
        self.tokens.append(m.shape[0] * m.shape[2])
        self.selections.append(self._reads)
        self._reads = []


@contextmanager
def record(model_or_layer: nn.Module) -> Iterator[dict[str, Record]]:
    """Within the block, each memory layer's calls are recorded in ``Record``s, by layer name."""
    records = {}
    for name, layer in memory_layers(model_or_layer).items():
        records[name] = Record()
        for part in layer.modules():  # the layer and its memory path(s)
            if hasattr(part, "recorder"):
                part.recorder = records[name]
    try:
        yield records
    finally:
        for layer in memory_layers(model_or_layer).values():
            for part in layer.modules():
                if hasattr(part, "recorder"):
                    part.recorder = None

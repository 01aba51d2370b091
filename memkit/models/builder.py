"""MemoryBuilder: build memories ahead of time from given texts, one memory per source.

The reports' "pre-built domain memories": source i (a text, or token ids) is run through the
model with every segment written to memory i; the resulting layer state is saved, and loaded
as the starting state of later calls (``model(ids, state=builder.load(path, batch_size))``).
A source's incomplete last segment is dropped and key_shift does not bind across sources. A source longer than
the model can take in one stream (``max_stream_tokens``: its positions in full-window mode) goes in pieces of
whole segments, each continuing the memory layer's state with the plain layers starting afresh, as a memory
carried across calls: the memory, not the plain layers' positions, bounds what a source may hold.

With ``segmentation="whole_call"`` (the reports' layer: a call is one segment) a source goes in as the reports'
code fed text: in calls of ``call_tokens`` tokens each (the sequence length the model was trained on; the
reports' 256), every call one segment written, the memory carried; an incomplete last call is dropped, as
packing into training rows dropped it (a source shorter than one call is one call). Without ``call_tokens`` a
call is as long as the model takes in one stream.
"""

from __future__ import annotations

import os
from dataclasses import fields, replace
from typing import Callable, Sequence

import torch

from memkit.blocks.attention import MemoryAttentionState
from memkit.blocks.store import MemoryState
from memkit.models.inference import eval_mode
from memkit.models.pretrained import CheckpointError


def utf8_bytes(text: str) -> torch.Tensor:
    """Plain byte tokenizer: ids 0..255 (the model's vocabulary must hold them)."""
    return torch.tensor(list(text.encode("utf-8")), dtype=torch.long)


class MemoryBuilder:
    """build(sources) -> MemoryAttentionState (batch 1) with source i in memory i.

    ``model``: a ``MemoryLM`` (or anything with ``.memory`` and ``forward(ids, state, memory=)``).
    ``encode``: how a text source becomes token ids (default: UTF-8 bytes).
    ``call_tokens``: a whole-call layer's call length (see the module docstring); ignored with fixed segments.
    """

    def __init__(self, model, encode: Callable[[str], torch.Tensor] = utf8_bytes, call_tokens: int | None = None):
        if getattr(model, "memory", None) is None:
            raise ValueError("MemoryBuilder needs a model with a memory layer")
        if call_tokens is not None and call_tokens < 1:
            raise ValueError(f"call_tokens: should be >= 1, got {call_tokens}")
        self.model, self.encode, self.call_tokens = model, encode, call_tokens

    def pieces(self, ids: torch.Tensor) -> list[torch.Tensor]:
        """The calls a source's ids [n] go in as (whole segments; whole calls for a whole-call layer)."""
        layer = self.model.memory
        limit = getattr(self.model, "max_stream_tokens", None)
        if not layer.segments.fixed:  # a whole-call layer: each call is one segment
            if ids.numel() == 0:
                return []
            call = min(c for c in (self.call_tokens, limit, ids.numel()) if c is not None)
            return list(ids[: max(ids.numel() // call, 1) * call].split(call))
        L = layer.segment_len
        ids = ids[: ids.numel() // L * L]
        return list(ids.split(max(limit // L, 1) * L if limit is not None else max(ids.numel(), 1)))

    def build(self, sources: Sequence[str | torch.Tensor]) -> MemoryAttentionState:
        layer = self.model.memory
        if not 0 < len(sources) <= layer.num_memories:
            raise ValueError(f"sources: give 1..{layer.num_memories} sources (one per memory), got {len(sources)}")
        param = next(self.model.parameters())
        state = layer.init_state(1, device=param.device, dtype=param.dtype)
        with eval_mode(self.model), layer.sequence_scope():  # explicit state, even for a batch-shared layer
            for i, src in enumerate(sources):
                ids = self.encode(src) if isinstance(src, str) else torch.as_tensor(src, dtype=torch.long)
                parts = [p for p in self.pieces(ids.flatten().to(param.device)) if p.numel()]
                if not parts:
                    raise ValueError(f"sources[{i}]: shorter than one segment ({layer.segment_len} tokens)")
                # the sources run as they are (end-of-document ids included), each from the layer state alone
                for part in parts:
                    _, out = self.model(part[None], state, memory=i, documents="run_together")
                    state = out.layer
                empty = state.pending_k[:, :, :0]
                state = replace(state, pending_q=empty, pending_k=empty, pending_v=empty,
                                prev_k=torch.zeros_like(state.prev_k))
        return state

    @staticmethod
    def save(state: MemoryAttentionState, path: str | os.PathLike) -> None:
        data = {f.name: getattr(state, f.name) for f in fields(state) if f.name != "memory"}
        data.update(M=state.memory.M, z=state.memory.z, writes=state.memory.writes)
        torch.save(data, path)

    @staticmethod
    def load(path: str | os.PathLike, batch_size: int = 1, map_location="cpu") -> MemoryAttentionState:
        """The saved state, repeated for ``batch_size`` sequences."""
        try:
            data = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as e:  # noqa: BLE001  (torch raises several types for a file that is not its own)
            raise CheckpointError(f"memories: {str(path)!r} is not a saved memory state ({type(e).__name__}); give "
                                  "a file written by MemoryBuilder.save") from None
        lacking = sorted({"M", "z", "writes", "pending_k", "prev_k"} - set(data if isinstance(data, dict) else ()))
        if lacking:
            bare = isinstance(data, dict) and {"M", "z", "writes"} <= set(data)  # MemoryState.save: a store's
            raise CheckpointError(f"memories: {str(path)!r} " + ("holds a bare MemoryStore state (MemoryState.save), "
                                  "not a memory layer's" if bare else f"lacks {', '.join(lacking)}") +
                                  "; give a file written by MemoryBuilder.save")
        rep = lambda t: None if t is None else t.expand(batch_size, *t.shape[1:]).clone()  # noqa: E731
        memory = MemoryState(M=rep(data.pop("M")), z=rep(data.pop("z")), writes=int(data.pop("writes")))
        return MemoryAttentionState(memory=memory, **{k: rep(v) for k, v in data.items()})

"""GPT-NeoX's layers run over windows, with a key/value cache of their own.

transformers' ``GPTNeoXModel.forward`` takes one input with positions 0..T−1. memkit's models need two more
things, so ``run`` calls GPT-NeoX's pieces (rotary, layers, final norm) itself and
leaves the head to the model:

- ``window`` > 0: every plain layer sees one window of tokens at a time (the memory layer's segments, or
  ContextKVLM's windows): each window is its own row with positions 0..window−1;
- streaming: a call continues where the last one stopped. In full mode (``window`` 0) positions go on and
  the plain layers attend over every earlier token through a ``PlainCache``; in window mode the cache holds
  the current window's tokens and empties at each window boundary, so a call is cut there: a first pass
  finishes the open window, a second runs the remaining windows as rows.

A memory layer inside the stack receives the rows of a pass and folds them back into sequences (``Fold``).

Axes: B batch, T tokens, R rows, w row width, D hidden, H heads, t cached tokens, d head dim, V vocab.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class PlainCache:
    """Keys and values [B,H,t,d] (after rotary) per layer index of the t tokens the plain layers attend back
    to: every token so far in full mode, the open window's in window mode. Layers without a cache (a memory
    layer) are absent. ``PlainCache()`` is empty."""

    layers: tuple = ()  # ((layer index, keys, values), ...)

    @property
    def length(self) -> int:
        return self.layers[0][1].shape[2] if self.layers else 0

    def get(self, index: int):
        return next(((k, v) for i, k, v in self.layers if i == index), None)

    def map(self, fn) -> "PlainCache":
        """``fn`` applied to every keys and values tensor."""
        return PlainCache(tuple((i, fn(k), fn(v)) for i, k, v in self.layers))


class _Recorder:
    """What GPT-NeoX's attention calls as ``layer_past``: ``update(k, v, layer_idx)`` returns the keys and values
    to attend over (the cached ones, then the new) and records them; the cache it started from is untouched."""

    def __init__(self, past: PlainCache):
        self.past, self.seen = past, {}

    def update(self, k, v, layer_idx, *args, **kwargs):
        old = self.past.get(layer_idx)
        if old is not None:
            k, v = torch.cat((old[0], k), dim=2), torch.cat((old[1], v), dim=2)
        self.seen[layer_idx] = (k, v)
        return k, v

    def cache(self) -> PlainCache:
        return PlainCache(tuple((i, k, v) for i, (k, v) in sorted(self.seen.items())))


@dataclass
class Fold:
    """How a pass's rows [R,w,D] fold back into B sequences of ``tokens`` real tokens (rows of one sequence
    follow each other; padding sits after every real token)."""

    batch: int
    tokens: int

    def to_sequences(self, h: torch.Tensor) -> torch.Tensor:
        return h.reshape(self.batch, -1, h.shape[-1])[:, : self.tokens]

    def to_rows(self, y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        R, w, D = like.shape
        return F.pad(y, (0, 0, 0, R * w // self.batch - self.tokens)).reshape(R, w, D)


def run(hf, x: torch.Tensor, window: int, past: PlainCache, seen: int, box=None) -> tuple[torch.Tensor, PlainCache]:
    """x [B,T,D] (input embeddings) -> (final-norm hidden states [B,T,D], the cache after this call); the caller
    applies ``hf.lm_head`` (everywhere, or only where a target is scored).

    ``hf``: a ``GPTNeoXForCausalLM``; ``seen``: tokens before this call (positions in full mode, the offset in
    the open window in window mode); ``past``: their cache; ``box``: handed to every layer as ``memkit_box``
    (a memory layer reads its state and ``fold`` from it)."""
    B, T, D = x.shape
    x = hf.gpt_neox.emb_dropout(x)
    if not window:
        return _pass(hf, x, seen, past, box, Fold(B, T))
    outs, offset = [], seen % window
    if offset:  # finish the open window: its tokens so far are in the cache
        n = min(window - offset, T)
        h, cache = _pass(hf, x[:, :n], offset, past, box, Fold(B, n))
        outs.append(h)
        x, past = x[:, n:], (cache if offset + n < window else PlainCache())
    if x.shape[1]:  # whole windows (and a last partial one) as rows of their own
        n = x.shape[1]
        S = -(-n // window)
        w = window if S > 1 else n
        rows = F.pad(x, (0, 0, 0, S * w - n)).reshape(B * S, w, D)
        h, cache = _pass(hf, rows, 0, PlainCache(), box, Fold(B, n))
        outs.append(h.reshape(B, S * w, -1)[:, :n])
        last = n - (S - 1) * window  # tokens in the last window
        past = PlainCache() if last == window else cache.map(lambda t: t[S - 1 :: S, :, :last])
    return torch.cat(outs, dim=1), past


def _pass(hf, x: torch.Tensor, start: int, past: PlainCache, box, fold: Fold):
    """Rows x [R,w,D] at positions start..start+w−1 after the cached ones -> (final-norm hidden [R,w,D], cache)."""
    w = x.shape[1]
    t = past.length
    positions = torch.arange(start, start + w, device=x.device)[None]
    rotary = hf.gpt_neox.rotary_emb(x, positions)
    mask = None  # causal from no cache, or one query that sees everything
    if t and w > 1:  # bool [1,1,w,t+w]: query i sees the cache and the new tokens up to itself
        mask = (torch.arange(t + w, device=x.device)[None] <= t + torch.arange(w, device=x.device)[:, None])[None, None]
    recorder = _Recorder(past)
    if box is not None:
        box.fold = fold
    for layer in hf.gpt_neox.layers:
        x = layer(x, attention_mask=mask, position_ids=positions, layer_past=recorder, position_embeddings=rotary,
                  memkit_box=box)
    return hf.gpt_neox.final_layer_norm(x), recorder.cache()

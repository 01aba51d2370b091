"""Is the memory used? Figures that say whether a trained model's memory layers carry anything.

For a memory layer with gate g_h = sigmoid(β_h) per head, local output A_loc and memory read A_mem, the layer
computes g·A_mem + (1−g)·A_loc (``MemoryAttention.combine``). With the best epoch's weights, on held-out data:

- ``knockout_figures``: the trial's main figures again with the read zeroed (A_mem := 0, gate as trained:
  ``ko_read_<f>``) and with the gate forced to the local branch (g := 0: ``ko_gate_<f>``), and their relative
  change against the intact model (``ko_read_<f>_change`` = (knocked out − intact) / |intact|). A model whose gate
  is shut changes by 0; a model that can answer only through its memory falls to chance.
- ``gate_figures``: σ(β) per head (``gate_h<i>``) and their mean (``gate_mean``).
- ``share_figures``: while the trial's measure runs, per head, the mean over tokens of ‖g·A_mem‖ / (‖g·A_mem‖ + ‖(1−g)·A_loc‖)
  (``mem_share_h<i>``, ``mem_share_mean``); with N memories, the entropy of the selection weights (mean over
  reads, tokens and heads, in nats: ``sel_entropy``, beside ``sel_entropy_max`` = log N; a read weighs the
  memories written so far) and the share of read weight each memory receives (``read_share_m<i>``: is one memory taking every read?).
- ``position_gain_figures``: perplexity per position bucket, read zeroed minus intact (``ko_gain_pos_<bucket>``:
  positive where the memory helps).

With several memory layers the figures are those of all of them together (knock-outs) or of the first (gate,
share), named as above. A context-KV model (``ContextKVCache``: attention over context vectors, added to the
embeddings, no gate) has the read knock-out and the position-wise gain only: its read adds nothing
(``ko_read_<f>``); it has no gate, so no ``ko_gate_*``, gate or share figures.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from memkit.blocks.diagnostics import context_layers, knock_out, knock_outs, memory_layers, record


def has_memory(model: nn.Module) -> bool:
    """A gated memory layer (``MemoryAttention``) or a context-KV read (``ContextKVCache``)."""
    return bool(memory_layers(model) or context_layers(model))


def relative_change(knocked: float, intact: float) -> float:
    """(knocked − intact) / |intact|; nan when the intact figure is 0 or not finite."""
    if not (math.isfinite(intact) and math.isfinite(knocked)) or intact == 0:
        return float("nan")
    return (knocked - intact) / abs(intact)


def knockout_figures(model: nn.Module, measure: Callable[[], dict], figures: Sequence[str],
                     intact: dict | None = None) -> dict[str, float]:
    """``measure()`` -> the trial's figures (e.g. ``lambda: perplexity_figures(model, val, 32)``), run with each
    knock-out; of those, ``figures`` (e.g. ["val_ppl"]) are reported: ``ko_<read|gate>_<f>`` and
    ``ko_<read|gate>_<f>_change`` against ``intact`` (measured here when not given). {} for a model without a
    memory layer."""
    if not has_memory(model):
        return {}
    intact = intact if intact is not None else measure()
    out = {}
    for what in knock_outs(model):  # a context-KV read has no gate: "read" only
        with knock_out(model, what):
            knocked = measure()
        for f in figures:
            out[f"ko_{what}_{f}"] = float(knocked[f])
            out[f"ko_{what}_{f}_change"] = relative_change(float(knocked[f]), float(intact[f]))
    return out


def gate_figures(model: nn.Module) -> dict[str, float]:
    """σ(β) per head of the first memory layer (``gate_h<i>``) and their mean (``gate_mean``); {} without one."""
    layers = list(memory_layers(model).values())
    if not layers:
        return {}
    g = layers[0].gate().detach().double().cpu()
    return {**{f"gate_h{i}": float(v) for i, v in enumerate(g)}, "gate_mean": float(g.mean())}


def share_figures(model: nn.Module, measure: Callable[[], dict]) -> dict[str, float]:
    """While ``measure()`` runs the model over held-out data (e.g. ``lambda: perplexity_figures(model, val, 32)``,
    which resets batch-shared memories as a validation does): the memory branch's share of the first memory
    layer's output per head, and, with N memories, the selection entropy and each memory's share of the read
    weight (every read's weights alike, a partial last segment's padding included)."""
    if not memory_layers(model):  # the share is of a gated layer's two branches
        return {}
    with record(model) as records:
        measure()
    rec = next(iter(records.values()))
    if not rec.shares:
        return {}
    share = sum(n * s for n, s in zip(rec.tokens, rec.shares)) / sum(rec.tokens)  # mean over every token
    out = {**{f"mem_share_h{h}": float(v) for h, v in enumerate(share)}, "mem_share_mean": float(share.mean())}
    reads = [w for call in rec.selections for w in call]
    if reads:
        # a read weighs the memories written so far, the first k of N (unwritten ones are left out): padded to N
        n = next(iter(memory_layers(model).values())).num_memories
        w = torch.cat([F.pad(r.flatten(0, -2).double(), (0, n - r.shape[-1])) for r in reads])  # [reads·B·H·L, N]
        entropy = -(w * w.clamp_min(1e-300).log()).sum(-1)
        received = w.mean(0) / w.mean(0).sum()
        out.update(sel_entropy=float(entropy.mean()), sel_entropy_max=math.log(n))
        out.update({f"read_share_m{m}": float(v) for m, v in enumerate(received)})
    return out


def position_gain_figures(model: nn.Module, positions: Callable[[], dict]) -> dict[str, float]:
    """``positions()`` -> {"pos_<bucket>": perplexity}: the same with the read zeroed, minus intact
    (``ko_gain_pos_<bucket>``, positive where the memory lowers perplexity)."""
    if not has_memory(model):
        return {}
    intact = positions()
    with knock_out(model, "read"):
        knocked = positions()
    return {f"ko_gain_{k}": float(knocked[k]) - float(v) for k, v in intact.items()}


def with_gates(on_epoch: Callable[[dict], None] | None, model: nn.Module) -> Callable[[dict], None] | None:
    """``on_epoch`` with each epoch's gate figures added to its row (the gate's path over epochs); an
    ``EpochHook``'s other methods pass through."""
    if on_epoch is None or not memory_layers(model):
        return on_epoch
    return _GatedEpochs(on_epoch, model)


class _GatedEpochs:
    def __init__(self, inner, model):
        self.inner, self.model = inner, model

    def __call__(self, row: dict) -> None:
        self.inner({**row, **gate_figures(self.model)})

    def __getattr__(self, name):  # save_state, resume_state, keep_beside_model: the inner hook's
        return getattr(self.inner, name)


def memory_use_figures(model: nn.Module, measure: Callable[[], dict], figures: Sequence[str],
                       intact: dict | None = None, positions: Callable[[], dict] | None = None) -> dict[str, float]:
    """Every figure above for a trained model: knock-outs of ``figures`` (of ``measure()``, against ``intact``),
    gates, shares (while ``measure`` runs) and, with ``positions``, the position-wise gain. {} without a memory."""
    if not has_memory(model):
        return {}
    out = {**knockout_figures(model, measure, figures, intact), **gate_figures(model), **share_figures(model, measure)}
    if positions is not None:
        out.update(position_gain_figures(model, positions))
    return out

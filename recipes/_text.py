"""What the report recipes share: one trial on real text plus the evaluation suite.

A trial trains a ``MemoryLM`` on a text corpus (the reversal facts mixed into its training
text), then measures: validation perplexity (early stopping), position-wise perplexity, the
reversal curse (standard and the reports' variant), memory selection accuracy (one domain per
memory, with ``MemoryBuilder``), and, each on a fresh model of the same design trained on its
own synthetic task, passkey retrieval by depth and multi-query associative recall by distance.
The two recall tasks run with ``local_window="segment"``: the plain layers see one segment, so
the memory is the only way back (with "full" every design could answer through attention).
"""

from __future__ import annotations

import sys
import time
from typing import Callable

import torch

from memkit.blocks.attention import MemoryAttention
from memkit.eval.memory_use import knockout_figures, memory_use_figures, with_gates
from memkit.eval.metrics import peak_memory_mb
from memkit.eval.tasks.selection import selection_accuracy
from memkit.training.figures import (
    mqar_figures,
    passkey_figures,
    perplexity_figures,
    position_figures,
    reversal_figures,
)
from memkit.training.trainer import train
from recipes._shared import keep_text_data, training_figures
from recipes._text_spec import TextTrialSpec


def _say(progress: bool, text: str) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


def _train_synthetic(spec: TextTrialSpec, task, vocab: int, seed: int, progress: bool):
    """A fresh model of the trial's design, window 'segment', trained on a synthetic task: (model, result)."""
    torch.manual_seed(seed)
    model = spec.model.with_overrides(vocab_size=max(vocab, 2), local_window="segment").build()
    tr, va = task.splits(seed)
    result = train(model, tr, va, spec.recall_train.with_overrides(seed=seed), progress=progress)
    return model, result


def run_text(spec: TextTrialSpec, on_epoch: Callable[[dict], None] | None = None, progress: bool | None = None) -> dict:
    """Train on text and run the evaluations; returns flat figures (see the module docstring)."""
    spec = spec.system()
    progress = bool(progress)
    seed = spec.train.seed
    torch.manual_seed(seed)
    if spec.train.threads:
        torch.set_num_threads(spec.train.threads)
    t0 = time.perf_counter()
    facts = spec.reversal.train_texts() if "reversal" in spec.evals else None
    data = spec.data.build(extra_train=facts)
    _say(progress, f"data: {len(data.train[0])} train / {len(data.val[0])} val samples of {spec.data.seq_len} tokens, "
                   f"domains {data.domains}, vocab {data.vocab_size}")
    # packed rows join documents by the tokenizer's end-of-document id: the careful arm restarts at each one
    model = spec.model.with_overrides(vocab_size=data.vocab_size, eos_token_id=data.tokenizer.eos_id).build()
    keep_text_data(on_epoch, spec.data, data)
    result = train(model, data.train, data.val, spec.train, on_epoch=with_gates(on_epoch, model), progress=progress)
    device = next(model.parameters()).device
    bs = spec.train.batch_size
    memory = model.memory if isinstance(model.memory, MemoryAttention) else None  # a baseline design: no gate
    intact = perplexity_figures(model, data.val, bs)
    out = {
        **intact,
        **training_figures(model, result),
        "memory_bytes": model.memory_nbytes(),
        "expand_share": memory.last_expand_share if memory is not None else float("nan"),
        "history": [{k: r[k] for k in ("epoch", "train_ppl", "val_ppl")} for r in result.history],
    }
    # is the memory used? knock-outs of val_ppl, gates, the memory's share, and the position-wise gain
    positions = (lambda: position_figures(model, data.val, bs)) if "position" in spec.evals else None  # noqa: E731
    out.update(memory_use_figures(model, lambda: perplexity_figures(model, data.val, bs), ["val_ppl"], intact,
                                  positions))
    if "position" in spec.evals:  # every evaluation starts as a validation does (memkit.training.figures)
        out.update(position_figures(model, data.val, bs))
    if "reversal" in spec.evals:
        out.update(reversal_figures(model, spec.reversal, data.tokenizer))
    # selection needs two domains and two memories at least (one file = one domain: nothing to tell apart)
    if ("selection" in spec.evals and memory is not None and memory.num_memories > 1
            and len(data.domains) > 1):
        out.update(_selection(spec, model, data))
    out["peak_mb"] = peak_memory_mb(device)
    if "passkey" in spec.evals:
        _say(progress, "passkey: training a fresh model")
        pk, pk_result = _train_synthetic(spec, spec.passkey, spec.passkey.vocab_size, seed, progress)
        out.update(passkey_epochs=len(pk_result.history), passkey_capped=int(pk_result.capped))
        passkey = lambda: passkey_figures(pk, spec.passkey, seed, spec.recall_train.batch_size)  # noqa: E731
        out.update(passkey())
        out.update(knockout_figures(pk, passkey, ["passkey_mean"], out))
    if "mqar" in spec.evals:
        _say(progress, "mqar: training a fresh model")
        mq, mq_result = _train_synthetic(spec, spec.mqar, spec.mqar.vocab_size, seed, progress)
        out.update(mqar_epochs=len(mq_result.history), mqar_capped=int(mq_result.capped))
        mqar = lambda: mqar_figures(mq, spec.mqar, seed, spec.recall_train.batch_size)  # noqa: E731
        out.update(mqar())
        out.update(knockout_figures(mq, mqar, ["mqar_mean"], out))
    out["train_seconds"] = time.perf_counter() - t0
    return out


def _selection(spec: TextTrialSpec, model, data) -> dict:
    """One domain per memory: its training text written with MemoryBuilder, held-out queries scored."""
    L = spec.model.memory.segment_len  # the flat field: a whole-call layer (as run) has no segment of its own
    n = min(len(data.domains), model.memory.num_memories)
    qlen = spec.selection.query_segments * L
    sources, queries = [], []
    for i in range(n):
        train_ids = data.train[0][data.train_domain == i].flatten()
        sources.append(train_ids[: spec.selection.source_tokens])
        val_ids = data.val[0][data.val_domain == i]
        queries += [(i, row[:qlen]) for row in val_ids[: spec.selection.queries] if row.numel() >= qlen]
    # a whole-call layer (as run) builds its memories in calls as long as its training rows, as the reports' code did
    res = selection_accuracy(model, sources, queries, call_tokens=spec.data.seq_len)
    out = {"selection_acc": res["accuracy"], "selection_chance": res["chance"]}
    out.update({f"selection_{data.domains[i]}": a for i, a in enumerate(res["per_source"])})
    return out

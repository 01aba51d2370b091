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
from typing import Callable, Literal

import torch
from pydantic import Field, model_validator

from memkit.data.corpus import TextDataSpec
from memkit.eval.metrics import bucket_name, peak_memory_mb, position_buckets
from memkit.eval.tasks.passkey import PasskeyTask
from memkit.eval.tasks.recall import RecallTask
from memkit.eval.tasks.reversal import ReversalTask
from memkit.eval.tasks.selection import selection_accuracy
from memkit.models.memory_lm import MemoryLMSpec
from memkit.spec import Spec
from memkit.training.figures import (
    mqar_figures,
    passkey_figures,
    perplexity_figures,
    position_figures,
    reversal_figures,
)
from memkit.training.trainer import TrainSpec, train
from recipes._shared import as_dict, keep_text_data, training_figures

Eval = Literal["position", "reversal", "selection", "passkey", "mqar"]
ALL_EVALS: list[str] = ["position", "reversal", "selection", "passkey", "mqar"]
Arm = Literal["careful", "as_run"]

# The reports' memory layer as their code ran it (DESIGN.md, last section; reports 001-003), and their
# optimiser. Each report recipe's ``as_run`` starts from these and changes what its script did otherwise.
AS_RUN_LAYER = dict(segmentation="whole_call", local="linear_clamped", bias=False, key_shift=False, rotary_dim=0,
                    update="delta", memory_scope="batch_shared", write_scale="reports", shared_reset="each_epoch",
                    shared_validation="writes", selection="soft", selection_query="q", selection_score="reports",
                    selection_scope="whole_call_leaks_future", unwritten_memories="kept_at_zero",
                    gate_input="coarse_read_relu")
AS_RUN_TRAIN = dict(param_groups="one_group", weight_decay=0.01, monitor="loss", min_delta=0.0)
# Passkey and MQAR need the memory: as run, a call is one segment and every layer sees all of it, so
# attention alone answers them. The as-run arm leaves them out rather than report a figure that tests nothing.
AS_RUN_SKIPS = {"passkey", "mqar"}


def override(data: dict, path: str, **values) -> dict:
    """``data`` with the fields at dotted ``path`` (e.g. "model.memory") updated; specs become dicts."""
    head, _, rest = path.partition(".")
    inner = as_dict(data.get(head))
    inner = override(inner, rest, **values) if rest else {**inner, **values}
    return {**data, head: inner}


class SelectionEval(Spec):
    source_tokens: int = Field(2048, ge=1, description="tokens of a domain's training text written to its memory")
    queries: int = Field(20, ge=1, description="held-out queries per domain")
    query_segments: int = Field(1, ge=1, description="query length in segments")


class ArmSpec(Spec):
    """A report recipe's spec with two arms. ``arm``: "careful" (memkit's defaults) or "as_run": the report's
    system as its code ran it (DESIGN.md, last section). The fields keep the careful values; ``system()``
    is the spec a trial runs: for "as_run", the recipe's ``as_run`` applied (it fixes the fields it lists,
    whatever --space gave them). So a grid over ``arm=as_run,careful`` runs the same preset both ways."""

    arm: Arm = Field("careful", description="careful: memkit's defaults; as_run: the report's code as it ran")

    @classmethod
    def as_run(cls, data: dict) -> dict:
        """The report's code, applied to the fields (a dict) of a careful spec."""
        return data

    def system(self):
        """The spec a trial runs: itself (careful), or with the report's code applied (as_run)."""
        if self.arm == "careful":
            return self
        return type(self).create(**type(self).as_run(self.model_dump()))


class TextTrialSpec(ArmSpec):
    """Model, text data, training, and the evaluations to run (``evals``); two arms (``ArmSpec``)."""

    model: MemoryLMSpec = Field(default_factory=MemoryLMSpec)
    data: TextDataSpec = Field(default_factory=TextDataSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    evals: list[Eval] = Field(ALL_EVALS, description="evaluations beside perplexity")
    reversal: ReversalTask = Field(default_factory=ReversalTask)
    selection: SelectionEval = Field(default_factory=SelectionEval)
    passkey: PasskeyTask = Field(default_factory=PasskeyTask)
    mqar: RecallTask = Field(default_factory=RecallTask)
    recall_train: TrainSpec = Field(default_factory=TrainSpec, description="training of the passkey and MQAR models")

    @classmethod
    def as_run(cls, data: dict) -> dict:
        """The report's code, applied to the fields of a careful spec: the reports' memory layer, optimiser,
        reversal protocol; no passkey/MQAR (see ``AS_RUN_SKIPS``). Report recipes refine it."""
        data = override(data, "model", documents="run_together")  # memory crossed documents in the reports
        data = override(data, "model.memory", **AS_RUN_LAYER)
        data = override(data, "train", **AS_RUN_TRAIN)
        data = override(data, "reversal", kind="reports_triples", eval_order="forward_then_backward")
        return {**data, "evals": [e for e in data.get("evals", ALL_EVALS) if e not in AS_RUN_SKIPS]}

    @model_validator(mode="before")
    @classmethod
    def _derive(cls, data):
        if isinstance(data, dict):  # MQAR segments are the memory layer's
            model, mqar = as_dict(data.get("model")), as_dict(data.get("mqar"))
            mqar["segment_len"] = L = as_dict(model.get("memory")).get("segment_len", 64)
            mqar.setdefault("keys_per_group", max(16, L // 2))  # a segment's keys are distinct
            data = {**data, "mqar": mqar}
        return data

    @model_validator(mode="after")
    def _fits(self):
        L = self.model.memory.segment_len
        if self.model.memory.segmentation == "whole_call":  # a call is one segment, whatever its length
            return self
        if self.passkey.seq_len % L:
            raise ValueError(f"passkey.seq_len ({self.passkey.seq_len}) must be a multiple of segment_len ({L})")
        if self.model.local_window == "segment" and self.data.seq_len % L:
            raise ValueError(f"data.seq_len ({self.data.seq_len}) must be a multiple of segment_len ({L}) "
                             "with local_window='segment'")
        return self


def preflight(spec) -> None:
    """The grid calls this before any trial: the text source must be readable here, and the system the
    trial runs (its arm applied) must be a valid spec."""
    spec.data.check_available()
    spec.system()


def tiny_parts() -> dict:
    """What the report recipes' ``tiny`` presets share: a 2-layer, hidden-128 model with 4 memories of
    32-token segments, 1,500 samples of 128 BPE tokens (vocab 1,024) from the Debian corpus."""
    return dict(
        model=dict(hidden_size=128, num_layers=2, num_heads=4, intermediate_size=512, max_position_embeddings=512,
                   local_window="full", memory=dict(segment_len=32, num_memories=4, update="delta", key_shift=True)),
        data=dict(source="debian", max_chars=400_000, seq_len=128, num_train=1500, num_val=200,
                  tokenizer=dict(kind="bpe", vocab_size=1024)),
        train=dict(lr=3e-3, batch_size=32, max_epochs=30, patience=2, min_delta=0.005),
        mqar=dict(write_segments=3, query_segments=1, num_groups=4, keys_per_group=16, num_values=16,
                  num_train=1024, num_val=128),
        recall_train=dict(lr=3e-3, batch_size=32, max_epochs=30, patience=3, monitor="acc", min_delta=0.01,
                          solve_at=0.99),
    )


def report_parts(patience: int) -> dict:
    """The reports' settings: Pythia-70M shape, 4 memories, delta rule, 5,000 samples of 256 tokens,
    lr 1e-4, up to 30 epochs with ``patience`` as the report had it. Meant for a GPU."""
    return dict(
        model=dict(hidden_size=512, num_layers=6, num_heads=8, intermediate_size=2048, max_position_embeddings=2048,
                   local_window="full", memory=dict(segment_len=64, num_memories=4, update="delta", key_shift=True,
                                                    rotary_dim=16)),
        data=dict(source="debian", max_chars=4_000_000, seq_len=256, num_train=5000, num_val=500,
                  tokenizer=dict(kind="bpe", vocab_size=16384)),
        train=dict(lr=1e-4, batch_size=8, max_epochs=30, patience=patience),
        mqar=dict(write_segments=3, query_segments=1, num_groups=8, keys_per_group=64, num_values=512,
                  num_train=5000, num_val=500),
        recall_train=dict(lr=1e-4, batch_size=8, max_epochs=30, patience=5, monitor="acc", min_delta=0.01,
                          solve_at=0.99),
    )


# --space keys of the data and training parts, for every text recipe
DATA_TRAIN_ALIASES = {
    "source": "data.source",
    "tokenizer": "data.tokenizer.kind",
    "vocab": "data.tokenizer.vocab_size",
    "seq_len": "data.seq_len",
    "samples": "data.num_train",
    "lr": "train.lr",
    "epochs": "train.max_epochs",
    "patience": "train.patience",
    "seed": "train.seed",
}


def text_aliases() -> dict[str, str]:
    """--space keys every memory text recipe has."""
    return {
        "arm": "arm",
        "memories": "model.memory.num_memories",
        "landmark": "model.memory.landmark",
        "gate": "model.memory.hierarchy",
        "update": "model.memory.update",
        "selection": "model.memory.selection",
        "top_k": "model.memory.top_k",
        "segment_len": "model.memory.segment_len",
        "compile": "model.memory.compile",
        "window": "model.local_window",
        "hidden": "model.hidden_size",
        "layers": "model.num_layers",
        **DATA_TRAIN_ALIASES,
    }


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
    result = train(model, data.train, data.val, spec.train, on_epoch=on_epoch, progress=progress)
    device = next(model.parameters()).device
    out = {
        **perplexity_figures(model, data.val, spec.train.batch_size),
        **training_figures(model, result),
        "memory_bytes": model.memory_nbytes(),
        "expand_share": model.memory.last_expand_share if model.memory is not None else float("nan"),
        "history": [{k: r[k] for k in ("epoch", "train_ppl", "val_ppl")} for r in result.history],
    }
    if "position" in spec.evals:  # every evaluation starts as a validation does (memkit.training.figures)
        out.update(position_figures(model, data.val, spec.train.batch_size))
    if "reversal" in spec.evals:
        out.update(reversal_figures(model, spec.reversal, data.tokenizer))
    # selection needs two domains and two memories at least (one file = one domain: nothing to tell apart)
    if ("selection" in spec.evals and model.memory is not None and model.memory.num_memories > 1
            and len(data.domains) > 1):
        out.update(_selection(spec, model, data))
    out["peak_mb"] = peak_memory_mb(device)
    if "passkey" in spec.evals:
        _say(progress, "passkey: training a fresh model")
        pk, pk_result = _train_synthetic(spec, spec.passkey, spec.passkey.vocab_size, seed, progress)
        out.update(passkey_epochs=len(pk_result.history), passkey_capped=int(pk_result.capped))
        out.update(passkey_figures(pk, spec.passkey, seed, spec.recall_train.batch_size))
    if "mqar" in spec.evals:
        _say(progress, "mqar: training a fresh model")
        mq, mq_result = _train_synthetic(spec, spec.mqar, spec.mqar.vocab_size, seed, progress)
        out.update(mqar_epochs=len(mq_result.history), mqar_capped=int(mq_result.capped))
        out.update(mqar_figures(mq, spec.mqar, seed, spec.recall_train.batch_size))
    out["train_seconds"] = time.perf_counter() - t0
    return out


def _selection(spec: TextTrialSpec, model, data) -> dict:
    """One domain per memory: its training text written with MemoryBuilder, held-out queries scored."""
    L = model.memory.segment_len
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


def fmt_pm(rows: list[dict], metric: str, digits: int | str = 1) -> list[str]:
    """'mean [low, high]' cells (the 95% bootstrap interval over seeds, as the grid gives it; 'mean ± std' for rows
    without one) of one metric for each aggregated grid row; ``digits``: decimals, or a format spec for the mean
    (e.g. "+,.0f")."""
    spec = f".{digits}f" if isinstance(digits, int) else digits
    cells = []
    for r in rows:
        mean, std = r.get(f"{metric}_mean"), r.get(f"{metric}_std")
        lo, hi = r.get(f"{metric}_lo"), r.get(f"{metric}_hi")
        if mean is None:
            cells.append("")
        elif (lo is not None and lo == hi) or std == 0:  # the same at every seed (a parameter count)
            cells.append(f"{mean:{spec}}")
        elif r.get("seeds", 1) > 1 and lo is not None and hi is not None:
            cells.append(f"{mean:{spec}} [{lo:{spec}}, {hi:{spec}}]")
        elif r.get("seeds", 1) > 1 and std is not None:
            cells.append(f"{mean:{spec}} ± {std:{spec.lstrip('+')}}")
        else:
            cells.append(f"{mean:{spec}}")
    return cells


def table(title: str, cols: list[str], cells: list[list[str]]) -> str:
    head = "| " + " | ".join(cols) + " |\n|" + "|".join("---" for _ in cols) + "|\n"
    return f"### {title}\n\n" + head + "\n".join("| " + " | ".join(c) + " |" for c in cells) + "\n"


def position_table(rows: list[dict], names: list[str], seq_len: int) -> str:
    """The reports' position-wise table: a row per bucket, a column per design."""
    cells = [[bucket_name(lo, hi)] + fmt_pm(rows, f"pos_{bucket_name(lo, hi)}") for lo, hi in position_buckets(seq_len)]
    return table("Position-wise PPL", ["Position"] + names, cells)


def fmt_count(rows: list[dict], metric: str) -> list[str]:
    """A count's mean per row with thousands separators (parameters): '658,948'."""
    return [f"{r[f'{metric}_mean']:,.0f}" if r.get(f"{metric}_mean") is not None else "" for r in rows]


def labels_of(rows, names) -> list[str]:
    return [", ".join(str(r.get(k)) for k in names) for r in rows]


def recall_tables(rows, labels, spec) -> str:
    """Passkey by depth and MQAR by distance, each when the rows have it."""
    has = lambda prefix: any(k.startswith(prefix) and r[k] is not None for r in rows for k in r)  # noqa: E731
    out = []
    if has("passkey_"):
        depths = [round(d * 100) for d in spec.passkey.depths]
        out.append(table("Passkey retrieval by depth (share exact)", ["model"] + [f"{d}%" for d in depths],
                         [[lab] + [fmt_pm([r], f"passkey_{d}", 2)[0] for d in depths] for lab, r in zip(labels, rows)]))
    if has("mqar_"):
        dists = sorted({int(k[len("mqar_d"):-len("_mean")]) for r in rows for k in r
                        if k.startswith("mqar_d") and k.endswith("_mean") and r[k] is not None})
        out.append(table("MQAR by distance in segments (accuracy)", ["model"] + [f"{d} back" for d in dists],
                         [[lab] + [fmt_pm([r], f"mqar_d{d}", 2)[0] for d in dists] for lab, r in zip(labels, rows)]))
    return "\n".join(out)

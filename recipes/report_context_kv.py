"""Recipe for seed report 004: context-KV attention with OACD pretraining, on real text and on recall.

    python -m ablations.grid --recipe report_context_kv                    # tiny: 2 arms x 3 seeds
    python -m ablations.grid --recipe report_context_kv --space interval=4,8,16
    python -m ablations.grid --recipe report_context_kv --preset reports --gpus-per-trial 1

A trial runs the report's two phases on the four-domain Debian text (Phase 1: OACD on the context
block until the convergence rate reaches the threshold; Phase 2: the block frozen, the rest
trained with early stopping), then the same design on long-range recall (``recipes/context_kv``),
where the plain layers see one window and the contexts are the only way back. Two arms: ``as_run`` is
report 004's code (no attention between tokens, frozen embeddings, a one-Linear context block, unmasked
zero slots, Phase 1 as their parallel fixed-point iteration; see ``ContextKVReportSpec.as_run``) and
``careful`` is memkit's (GPT-NeoX layers over windows after the context path, recurrent contexts).
"""

from __future__ import annotations

import time
from typing import Callable

import torch
from pydantic import Field

from memkit.data.corpus import TextDataSpec
from memkit.eval.memory_use import memory_use_figures
from memkit.eval.metrics import peak_memory_mb
from memkit.eval.tasks.recall import RecallTask
from memkit.models.context_kv_lm import ContextKVLMSpec
from memkit.training.oacd import OACDPretrainer, OACDSpec
from memkit.training.trainer import TrainSpec, evaluate, train
from recipes import context_kv
from recipes._arms import Claim, claims_table, mean, memory_use_table
from recipes._shared import keep_text_data, training_figures
from recipes._tables import fmt_pm, labels_of, table, varying
from recipes._text_presets import DATA_TRAIN_ALIASES, report_parts, tiny_parts
from recipes._text_spec import ArmSpec, override, preflight
from recipes.recipe import Recipe


class ContextKVReportSpec(ArmSpec):
    """Model, text data, OACD, training, and the recall run; ``arm="as_run"`` is report 004's code."""

    model: ContextKVLMSpec = Field(default_factory=ContextKVLMSpec)
    data: TextDataSpec = Field(default_factory=TextDataSpec)
    oacd: OACDSpec = Field(default_factory=OACDSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    recall: RecallTask | None = Field(default_factory=RecallTask, description="the recall run (None: skip it)")
    recall_train: TrainSpec = Field(default_factory=TrainSpec)

    @classmethod
    def as_run(cls, data: dict) -> dict:
        """Report 004's code: no attention between tokens, frozen embeddings (give ``model.embeddings_path``
        for GPT-2's; else the random ones stay fixed), a one-Linear context block, zero slots unmasked,
        attention dropout 0.1, Phase 1 as a parallel fixed-point iteration over the stream (Adam 0.002,
        clip 2.0, noise 0.1, 5,000-token chunks), Phase 2 contexts from parallel iterations (3 in evaluation,
        as many as Phase 1 ran in training), patience 3."""
        data = override(data, "model", body="kv_only", embeddings="frozen", context_ffn="one_linear",
                        contexts="parallel_iterations", context_iterations=3, documents="run_together")
        data = override(data, "model.context", mode="fixed", mask_padding=False, dropout=0.1)
        data = override(data, "oacd", phase1="parallel_fixed_point", lr=0.002, grad_clip=2.0, noise=0.1,
                        chunk_tokens=5000, threshold=0.9, tol=0.03)
        return override(data, "train", patience=3, monitor="loss", min_delta=0.0)


ALIASES = {"arm": "arm", **context_kv.MODEL_ALIASES, **DATA_TRAIN_ALIASES}
SPACE = ["arm=as_run,careful"]  # sweep interval / max_contexts / kv_mode with --space as well
METRICS = ["val_ppl", "val_acc", "best_epoch", "oacd_convergence", "effective_rank", "trainable_share", "recall_acc",
           "sec_per_epoch", "ko_read_val_ppl_change"]


def tiny() -> ContextKVReportSpec:
    return ContextKVReportSpec.create(
        model=dict(hidden_size=128, num_layers=2, num_heads=4, intermediate_size=512, window=32,
                   context=dict(context_dim=64, interval=8, max_contexts=16)),
        data=tiny_parts()["data"],
        oacd=dict(max_iterations=30, batch_size=16, probe_samples=32),
        train=dict(lr=3e-3, batch_size=32, max_epochs=30, patience=2, min_delta=0.005),
        recall=dict(write_segments=4, query_segments=2, num_groups=4, keys_per_group=16, num_values=16,
                    num_train=1024, num_val=128),
        recall_train=dict(lr=3e-3, batch_size=32, max_epochs=30, patience=3, monitor="acc", min_delta=0.01,
                          solve_at=0.99),
    )


def reports() -> ContextKVReportSpec:
    """Report 004's system at its sizes, as its code ran it: 768-wide frozen embeddings, context_dim 256,
    interval 20, max_contexts 32 (fixed), 8 heads, 500 samples, patience 3. Meant for a GPU; the grid runs
    the careful arm too (a 6-layer GPT-NeoX over 64-token windows after the context path)."""
    return ContextKVReportSpec.create(
        arm="as_run",
        model=dict(hidden_size=768, num_layers=6, num_heads=8, intermediate_size=3072, window=64,
                   context=dict(context_dim=256, interval=20, max_contexts=32, mode="fixed")),
        data={**report_parts(patience=3)["data"], "num_train": 500, "num_val": 100},
        oacd=dict(max_iterations=100, batch_size=16, probe_samples=64),
        train=dict(lr=1e-4, batch_size=8, max_epochs=30, patience=3),
        recall=dict(write_segments=3, query_segments=1, num_groups=8, keys_per_group=64, num_values=512,
                    num_train=500, num_val=100),
        recall_train=dict(lr=1e-4, batch_size=8, max_epochs=30, patience=3, monitor="acc", min_delta=0.01,
                          solve_at=0.99),
    )


PRESETS: dict[str, Callable[[], ContextKVReportSpec]] = {"tiny": tiny, "reports": reports}
SPEC = ContextKVReportSpec


def run(spec: ContextKVReportSpec, on_epoch=None, progress=None) -> dict:
    spec = spec.system()
    seed = spec.train.seed
    torch.manual_seed(seed)
    if spec.train.threads:
        torch.set_num_threads(spec.train.threads)
    t0 = time.perf_counter()
    data = spec.data.build()
    model = spec.model.with_overrides(vocab_size=data.vocab_size, eos_token_id=data.tokenizer.eos_id).build()
    keep_text_data(on_epoch, spec.data, data)
    pre = OACDPretrainer(model, spec.oacd.with_overrides(seed=seed))
    t1 = time.perf_counter()
    rows = pre.phase1(data.train[0])
    phase1_seconds = time.perf_counter() - t1
    share = pre.freeze()
    result = train(model, data.train, data.val, spec.train, on_epoch=on_epoch, progress=progress)
    final = evaluate(model, data.val, spec.train.batch_size)
    train_tokens = data.train[0].numel()
    out = {
        "val_ppl": final["ppl"], "val_acc": final["acc"], **training_figures(model, result),
        "trainable": model.num_parameters(trainable_only=True), "trainable_share": share,
        "oacd_iterations": len(rows), "oacd_convergence": rows[-1]["convergence"],
        "effective_rank": rows[-1]["effective_rank"], "phase1_seconds": phase1_seconds,
        "history_tokens": model.cache.history_tokens, "train_tokens": train_tokens,
        "theoretical_max_contexts": model.cache.theoretical_max_contexts(train_tokens),
        "peak_mb": peak_memory_mb(next(model.parameters()).device),
    }
    # is the context memory used? val PPL with the context-KV read adding nothing (it has no gate)
    out.update(memory_use_figures(model, lambda: {"val_ppl": evaluate(model, data.val, spec.train.batch_size)["ppl"]},
                                  ["val_ppl"], {"val_ppl": final["ppl"]}))
    for r in result.history:  # the report's Phase 2 table, epoch by epoch
        for k in ("train_ppl", "val_ppl", "val_acc"):
            out[f"e{r['epoch']}_{k}"] = r[k]
    if spec.recall is not None:
        # the recall model's vocabulary is the task's (the derive step grows it from 2)
        recall_spec = context_kv.SPEC.create(model={**spec.model.model_dump(), "vocab_size": 2, "eos_token_id": None},
                                             task=spec.recall.model_dump(),
                                             oacd=spec.oacd.model_dump(), train=spec.recall_train.with_overrides(seed=seed).model_dump())
        rec = context_kv.run(recall_spec, progress=progress)
        out.update(recall_acc=rec["recall_acc"], recall_chance=1 / spec.recall.num_values)
    out["train_seconds"] = time.perf_counter() - t0
    return out


def _one(rows: dict[str, dict]) -> dict:
    return next(iter(rows.values()))


CLAIMS = [
    Claim("Phase 1 (OACD) converges", "91% of tokens in 18 iterations (stop at ≥ 90%)",
          lambda rows: (f"{mean(_one(rows), 'oacd_convergence'):.0%} in {mean(_one(rows), 'oacd_iterations'):.0f} it.",
                        "holds" if mean(_one(rows), "oacd_convergence") >= 0.9 else "does not hold")),
    Claim("contexts stay diverse", "effective rank 82.1%",
          lambda rows: (f"{mean(_one(rows), 'effective_rank'):.1%}",
                        "holds" if mean(_one(rows), "effective_rank") >= 0.7 else "does not hold")),
    Claim("14% of parameters train in Phase 2", "6,301,440 of 45,163,264",
          lambda rows: (f"{mean(_one(rows), 'trainable_share'):.1%}",
                        "holds" if abs(mean(_one(rows), "trainable_share") - 0.14) < 0.05 else "differs")),
    Claim("validation perplexity bottoms out, then overfits", "best 175.7 at epoch 5 of 8",
          lambda rows: (f"best {mean(_one(rows), 'val_ppl'):.1f} at epoch {mean(_one(rows), 'best_epoch'):.1f} "
                        f"of {mean(_one(rows), 'epochs'):.1f}",
                        "holds" if mean(_one(rows), "best_epoch") < mean(_one(rows), "epochs") else "no: still improving")),
]


def report(rows: list[dict], names: list[str], spec: ContextKVReportSpec) -> str:
    """Report 004's tables (settings, Phase 1, Phase 2 epoch by epoch, final figures) per run, as run and
    careful, and the report's claims checked in each arm."""
    labels = labels_of(rows, names) if names else ["context-KV"] * len(rows)
    c = spec.model.context
    out = [table("Settings", ["figure", "value"], [
        ["context dim / interval / max contexts / mode", f"{c.context_dim} / {c.interval} / {c.max_contexts} / {c.mode}"],
        ["history tokens (interval x max contexts)", f"{c.interval * c.max_contexts}"],
    ] + [[f"theoretical max contexts ({lab})", fmt_pm([r], "theoretical_max_contexts", 0)[0]] for lab, r in zip(labels, rows)])]
    out.append(table("Phase 1: OACD", ["run", "iterations", "convergence", "effective rank", "seconds"],
                     [[lab] + [fmt_pm([r], m, d)[0] for m, d in (("oacd_iterations", 1), ("oacd_convergence", 2),
                                                                 ("effective_rank", 2), ("phase1_seconds", 1))]
                      for lab, r in zip(labels, rows)]))
    for lab, r in zip(labels, rows):  # the epochs this run reached (an arm that stopped early has no empty rows)
        epochs = sorted({int(k[1:].split("_")[0]) for k in r if k.startswith("e") and k.endswith("_val_ppl_mean")
                         and k[1:].split("_")[0].isdigit() and r[k] is not None})
        cells = [[str(e)] + [fmt_pm([r], f"e{e}_{m}", d)[0] for m, d in (("train_ppl", 1), ("val_ppl", 1), ("val_acc", 3))]
                 for e in epochs]
        out.append(table(f"Phase 2 ({lab})", ["Epoch", "Train PPL", "Val PPL", "Val Acc"], cells))
    out.append(table("Final", ["run", "Val PPL", "Val Acc", "Best Epoch", "s/epoch", "trainable share", "peak MB",
                               "recall acc (chance)"],
                     [[lab] + fmt_pm([r], "val_ppl") + fmt_pm([r], "val_acc", 3) + fmt_pm([r], "best_epoch")
                      + fmt_pm([r], "sec_per_epoch") + fmt_pm([r], "trainable_share", 2) + fmt_pm([r], "peak_mb", 0)
                      + [f"{fmt_pm([r], 'recall_acc', 3)[0]} ({fmt_pm([r], 'recall_chance', 3)[0]})"]
                      for lab, r in zip(labels, rows)]))
    key = next((n for n in varying(rows, names) if n != "arm"), "arm")
    out.append(claims_table(CLAIMS, rows, key))
    out.append(memory_use_table(rows, key))
    return "\n".join(out)


RECIPE = Recipe(name="report_context_kv", doc=__doc__, spec=SPEC, presets=PRESETS, aliases=ALIASES, run=run,
                metrics=tuple(METRICS), space=tuple(SPACE), report=report, preflight=preflight)
main = RECIPE.main

if __name__ == "__main__":
    RECIPE.main()

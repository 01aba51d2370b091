"""Recipe for seed reports 002 and 003: single vs multi(4) vs hierarchical(4) memory, on real text.

    python -m ablations.grid --recipe report_designs              # tiny, 3 designs x 3 seeds
    python -m ablations.grid --recipe report_designs --preset report --gpus-per-trial 1   # the reports' settings
    python -m recipes.report_designs --preset tiny                # one trial (design=multi) without Ray

Prints the reports' tables (summary, reversal curse, position-wise perplexity) with the seeds'
spread, plus the standard reversal-curse test and the recall tasks (passkey by depth, MQAR by
distance) where the designs can differ even when perplexity does not. See ``recipes/_text.py``.
"""

from __future__ import annotations

from typing import Callable, Literal

from pydantic import model_validator

from recipes._shared import as_dict, cli
from recipes._text import (  # noqa: F401  (preflight: the grid calls it)
    TextTrialSpec,
    fmt_pm,
    labels_of,
    position_table,
    preflight,
    recall_tables,
    report_parts,
    run_text,
    table,
    text_aliases,
    tiny_parts,
)

Design = Literal["single", "multi", "hierarchical"]


class DesignsSpec(TextTrialSpec):
    """``design`` sets the memory layer: single = 1 memory; multi = ``num_memories`` with
    selection; hierarchical = multi plus the expansion gate (``hierarchy``: soft unless set hard)."""

    design: Design = "multi"

    @model_validator(mode="before")
    @classmethod
    def _design(cls, data):
        if not isinstance(data, dict):
            return data
        model = as_dict(data.get("model"))
        memory = as_dict(model.get("memory"))
        design = data.get("design", "multi")
        if design == "single":
            memory.update(num_memories=1, hierarchy="none")
        elif design == "multi":
            memory["hierarchy"] = "none"
        elif design == "hierarchical" and memory.get("hierarchy", "none") == "none":
            memory["hierarchy"] = "soft"
        return {**data, "model": {**model, "memory": memory}}


ALIASES = {"design": "design", **text_aliases()}
SPACE = ["design=single,multi,hierarchical"]
METRICS = ["val_ppl", "best_epoch", "rev_reports_backward_ppl", "rev_forward_acc", "rev_reverse_acc", "passkey_mean",
           "mqar_mean", "memory_bytes", "params", "sec_per_epoch"]


def tiny() -> DesignsSpec:
    """Minutes per trial on one CPU core (``tiny_parts``), with every evaluation."""
    return DesignsSpec.create(
        **tiny_parts(),
        reversal=dict(num_facts=50, num_both=50, repeats=20),
        selection=dict(source_tokens=1024, queries=20),
        passkey=dict(seq_len=128, digits=4, filler_len=16, num_train=1024, num_val=50),
    )


def report() -> DesignsSpec:
    """The reports' settings (``report_parts``; their early stopping, patience 3). Meant for a GPU."""
    return DesignsSpec.create(
        **report_parts(patience=3),
        reversal=dict(num_facts=100, num_both=100, repeats=10),
        passkey=dict(seq_len=1024, digits=5, filler_len=24, num_train=5000, num_val=100),
    )


PRESETS: dict[str, Callable[[], DesignsSpec]] = {"tiny": tiny, "report": report}
SPEC = DesignsSpec


def run(spec: DesignsSpec, on_epoch=None, progress=None) -> dict:
    return run_text(spec, on_epoch, progress)


def report(rows: list[dict], names: list[str], spec: DesignsSpec) -> str:
    """The tables of reports 002/003 (mean ± std over seeds), then the recall tasks."""
    labels = labels_of(rows, names)
    base = next((r for r in rows if r.get("design") == "single"), None)
    base_params = base.get("params_mean") if base else None
    extra = [("" if base_params is None or r.get("params_mean") is None else f"{r['params_mean'] - base_params:+,.0f}")
             for r in rows]
    kb = [("" if r.get("memory_bytes_mean") is None else f"{r['memory_bytes_mean'] / 1000:.0f}KB") for r in rows]
    out = [table("Summary", ["model", "Best PPL", "Best Epoch", "memory size", "extra params"],
                 [list(c) for c in zip(labels, fmt_pm(rows, "val_ppl"), fmt_pm(rows, "best_epoch"), kb, extra)])]
    fwd, bwd, gap = (fmt_pm(rows, f"rev_reports_{m}") for m in ("forward_ppl", "backward_ppl", "gap"))
    base_bwd = base.get("rev_reports_backward_ppl_mean") if base else None
    better = [("" if base_bwd in (None, 0) or r.get("rev_reports_backward_ppl_mean") is None
               else f"{100 * (base_bwd - r['rev_reports_backward_ppl_mean']) / base_bwd:.1f}%") for r in rows]
    out.append(table("Reversal curse, the reports' variant (PPL of trained vs reversed sentences)",
                     ["model", "Forward PPL", "Backward PPL", "Gap", "improvement over single"],
                     [list(c) for c in zip(labels, fwd, bwd, gap, better)]))
    cols = [("forward_acc", 2), ("reverse_acc", 2), ("forward_logprob", 2), ("reverse_logprob", 2), ("logprob_gap", 2)]
    out.append(table("Reversal curse, standard (Berglund et al.): exact match and completion log-prob",
                     ["model", "fwd acc", "rev acc", "fwd logp", "rev logp", "logp gap"],
                     [[lab] + [fmt_pm([r], f"rev_{m}", d)[0] for m, d in cols] for lab, r in zip(labels, rows)]))
    out.append(position_table(rows, labels, spec.data.seq_len))
    out.append(recall_tables(rows, labels, spec))
    return "\n".join(out)


def main(argv=None) -> None:
    cli(__doc__, PRESETS, run, argv)


if __name__ == "__main__":
    main()

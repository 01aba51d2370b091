"""Recipe for seed reports 002 and 003: single vs multi(4) vs hierarchical(4) memory, on real text.

    python -m ablations.grid --recipe report_designs              # tiny: 3 designs x 2 arms x 3 seeds
    python -m ablations.grid --recipe report_designs --preset reports --gpus-per-trial 1   # the reports' sizes
    python -m recipes.report_designs --preset tiny                # one trial (design=multi, careful) without Ray

Each design runs in two arms: ``as_run``, the reports' code as it ran (docs/design.md, "The reports' options": no
segments, their batch-shared memory and selection, their gate, validation regime, optimiser,
patience 1 and reversal protocol), and ``careful``, memkit's defaults. The report puts the arms side by
side and checks the reports' claims in each: the perplexity ordering, and hierarchical memory cutting
the reversed-sentence perplexity by 28%. See ``recipes/_text.py`` for the trial and its evaluations.
"""

from __future__ import annotations

from typing import Callable, Literal

from pydantic import model_validator

from recipes._arms import Claim, by_arm, claims_table, lower, memory_use_table, relative_change, side_by_side
from recipes._shared import as_dict
from recipes._tables import position_table, recall_tables
from recipes._text import run_text
from recipes._text_presets import report_parts, text_aliases, tiny_parts
from recipes._text_spec import TextTrialSpec, override, preflight
from recipes.recipe import Recipe

Design = Literal["single", "multi", "hierarchical"]


class DesignsSpec(TextTrialSpec):
    """``design`` sets the memory layer: single = 1 memory; multi = ``num_memories`` with
    selection; hierarchical = multi plus the expansion gate (``hierarchy``: soft unless set hard)."""

    design: Design = "multi"

    @classmethod
    def as_run(cls, data: dict) -> dict:
        """Reports 002/003: the reports' layer; the multi-memory script validated with writes, the
        hierarchical one with an empty, read-only memory; patience 1."""
        data = super().as_run(data)
        regime = "read_only" if data.get("design", "multi") == "hierarchical" else "writes"
        return override(override(data, "model.memory", shared_validation=regime), "train", patience=1)

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
SPACE = ["design=single,multi,hierarchical", "arm=as_run,careful"]
METRICS = ["val_ppl", "best_epoch", "rev_reports_backward_ppl", "rev_forward_acc", "rev_reverse_acc", "passkey_mean",
           "mqar_mean", "memory_bytes", "params", "sec_per_epoch", "ko_read_val_ppl_change", "mem_share_mean"]


def tiny() -> DesignsSpec:
    """Minutes per trial on one CPU core (``tiny_parts``), with every evaluation; the careful arm."""
    return DesignsSpec.create(
        **tiny_parts(),
        reversal=dict(num_facts=50, num_both=50, repeats=20),
        selection=dict(source_tokens=1024, queries=20),
        passkey=dict(seq_len=128, digits=4, filler_len=16, num_train=1024, num_val=50),
    )


def reports() -> DesignsSpec:
    """The reports' system at their sizes (``report_parts``: Pythia-70M shape, 5,000 samples of 256 tokens,
    lr 1e-4), as their code ran it (``arm="as_run"``). Meant for a GPU; the grid runs both arms."""
    return DesignsSpec.create(
        **report_parts(patience=3), arm="as_run",
        reversal=dict(num_facts=100, num_both=100, repeats=10),
        passkey=dict(seq_len=1024, digits=5, filler_len=24, num_train=5000, num_val=100),
    )


PRESETS: dict[str, Callable[[], DesignsSpec]] = {"tiny": tiny, "reports": reports}
SPEC = DesignsSpec


def run(spec: DesignsSpec, on_epoch=None, progress=None) -> dict:
    return run_text(spec, on_epoch, progress)


def _reversal_claim(rows: dict[str, dict]) -> tuple[str, str]:
    """Hierarchical −28% (and multi −16%) backward PPL against single."""
    hier, noise = relative_change(rows, "rev_reports_backward_ppl", "hierarchical", "single")
    shown = f"hierarchical {hier:+.1f}%"
    if "multi" in rows:
        multi, _ = relative_change(rows, "rev_reports_backward_ppl", "multi", "single")
        shown += f", multi {multi:+.1f}%"
    if noise == "capped":
        return shown, "not ranked: trials capped while improving"
    if hier >= 0:
        return shown, "does not hold"
    return shown, "holds" if noise == "beyond noise" else f"cut, {noise}"


def _ppl_order(rows: dict[str, dict]) -> tuple[str, str]:
    """hierarchical < multi < single in best validation perplexity."""
    h, m = lower(rows, "val_ppl", "hierarchical", "multi"), lower(rows, "val_ppl", "multi", "single")
    shown = f"{h[0].split(' vs ')[0]} / {m[0]}"
    verdicts = {h[1], m[1]}
    return shown, h[1] if len(verdicts) == 1 else f"hierarchical<multi: {h[1]}; multi<single: {m[1]}"


CLAIMS = [
    Claim("perplexity: hierarchical < multi < single", "105.6 / 105.8 / 105.9", _ppl_order),
    Claim("reversed-sentence PPL (the reports' variant) cut by hierarchical memory, less by multi",
          "604.5 → 508.6 (multi −15.9%) → 437.8 (hierarchical −27.6%)", _reversal_claim),
]


def report(rows: list[dict], names: list[str], spec: DesignsSpec) -> str:
    """Reports 002/003's tables with the arms side by side (mean and 95% interval over seeds), their claims checked
    in each arm, then each arm's position-wise perplexity and the recall tasks (careful arm)."""
    out = [side_by_side("Summary", rows, "design", [("Best PPL", "val_ppl", 1), ("Best epoch", "best_epoch", 1),
                                                    ("s/epoch", "sec_per_epoch", 1)])]
    arms = by_arm(rows, "design")
    single = {arm: designs.get("single") for arm, designs in arms.items()}
    for r in rows:  # extra parameters and memory size against the same arm's single memory
        base = single.get(r.get("arm") or "careful")
        if base and r.get("params_mean") is not None and base.get("params_mean") is not None:
            r["extra_params_mean"], r["extra_params_std"] = r["params_mean"] - base["params_mean"], 0.0
        if r.get("memory_bytes_mean") is not None:
            r["memory_kb_mean"], r["memory_kb_std"] = r["memory_bytes_mean"] / 1000, 0.0
    out.append(side_by_side("Memory and parameters", rows, "design",
                            [("memory KB", "memory_kb", 0), ("extra params", "extra_params", "+,.0f")]))
    out.append(side_by_side("Reversal curse, the reports' variant (PPL of trained vs reversed sentences)", rows,
                            "design", [("Forward PPL", "rev_reports_forward_ppl", 1),
                                       ("Backward PPL", "rev_reports_backward_ppl", 1)]))
    out.append(claims_table(CLAIMS, rows, "design"))
    out.append(memory_use_table(rows, "design"))
    out.append(side_by_side("Reversal curse, standard (Berglund et al.): exact match and log-prob gap", rows, "design",
                            [("fwd acc", "rev_forward_acc", 2), ("rev acc", "rev_reverse_acc", 2),
                             ("logp gap", "rev_logprob_gap", 2)]))
    for arm, designs in arms.items():
        if designs:
            arm_rows = list(designs.values())
            out.append(position_table(arm_rows, [f"{d} ({arm})" for d in designs], spec.data.seq_len))
    careful = list(arms["careful"].values())
    if careful:
        out.append(recall_tables(careful, list(arms["careful"]), spec))
    return "\n".join(out)


RECIPE = Recipe(name="report_designs", doc=__doc__, spec=SPEC, presets=PRESETS, aliases=ALIASES, run=run,
                metrics=tuple(METRICS), space=tuple(SPACE), report=report, preflight=preflight)
main = RECIPE.main

if __name__ == "__main__":
    RECIPE.main()

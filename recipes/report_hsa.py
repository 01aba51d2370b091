"""Recipe for seed report 000: the HSA landmark (ChunkEncoder) vs memory_norm.

    python -m ablations.grid --recipe report_hsa                 # tiny: 2 landmarks x 2 arms x 3 seeds
    python -m ablations.grid --recipe report_hsa --preset reports --gpus-per-trial 1

Same trial as ``report_landmarks`` (4 memories on the four-domain text, selection accuracy, MQAR by
distance in the careful arm); the table is report 000's: perplexity, parameters, time per epoch, and
HSA's differences over memory_norm. Report 000 ran its own script; its ``as_run`` arm is that script:
memory_norm scored by raw Q·z/√d, unwritten memories excluded, linear writes, a NaN guard, a sequential
residual, the memory reset once and never again, validation writing; HSA as ``hsa_last_keys`` (a
per-head encoder over each memory's last raw keys, with Q_slc).
"""

from __future__ import annotations

from typing import Callable

from recipes._arms import Claim, by_arm, claims_table, memory_use_table, relative_change, side_by_side
from recipes._tables import recall_tables
from recipes._text import run_text
from recipes._text_presets import report_parts, text_aliases, tiny_parts
from recipes._text_spec import TextTrialSpec, override, preflight
from recipes.recipe import Recipe


class HSASpec(TextTrialSpec):
    """A text trial whose ``as_run`` arm is report 000's script."""

    @classmethod
    def as_run(cls, data: dict) -> dict:
        """Report 000's script (see the module docstring); patience 5."""
        data = super().as_run(data)
        data = override(data, "model.memory", selection_score="scaled", unwritten_memories="excluded", update="linear",
                        nan_guard=True, shared_reset="once", shared_validation="writes")
        data = override(data, "model", memory_residual="sequential")
        if data["model"]["memory"].get("landmark") == "hsa":  # their HSA: per head, over the last raw keys
            data = override(data, "model.memory", landmark="hsa_last_keys", selection_query="projection",
                            hsa_dropout=0.1, hsa_keys=data["data"]["seq_len"])
        return override(data, "train", patience=5)


ALIASES = text_aliases()
SPACE = ["landmark=hsa,memory_norm", "arm=as_run,careful"]
METRICS = ["val_ppl", "best_epoch", "params", "sec_per_epoch", "selection_acc", "mqar_mean", "ko_read_val_ppl_change",
           "mem_share_mean"]


def tiny() -> HSASpec:
    """Minutes per trial on one CPU core (``tiny_parts``): selection accuracy and MQAR; the careful arm."""
    return HSASpec.create(**tiny_parts(), evals=["selection", "mqar"], selection=dict(source_tokens=1024, queries=25))


def reports() -> HSASpec:
    """Report 000's system at its sizes (``report_parts``, patience 5), as its code ran it. For a GPU."""
    return HSASpec.create(**report_parts(patience=5), arm="as_run", evals=["selection", "mqar"],
                          selection=dict(source_tokens=4096, queries=50))


PRESETS: dict[str, Callable[[], HSASpec]] = {"tiny": tiny, "reports": reports}
SPEC = HSASpec


def run(spec: HSASpec, on_epoch=None, progress=None) -> dict:
    return run_text(spec, on_epoch, progress)


def _hsa_better_ppl(rows):
    change, noise = relative_change(rows, "val_ppl", "hsa", "memory_norm")
    if noise == "capped":
        return f"{change:+.1f}%", "not ranked: trials capped while improving"
    verdict = "does not hold" if change >= 0 else ("holds" if noise == "beyond noise" else f"lower, {noise}")
    return f"{change:+.1f}%", verdict


def _relative(metric, reported):
    def check(rows):
        change, _ = relative_change(rows, metric, "hsa", "memory_norm")
        return f"{change:+.0f}%", "holds" if change > reported / 2 else "does not hold"
    return check


CLAIMS = [
    Claim("HSA lowers perplexity", "494.4 vs 497.7 (−0.7%)", _hsa_better_ppl),
    Claim("HSA costs time per epoch", "+70% (143 s vs 84 s)", _relative("sec_per_epoch", 70)),
    Claim("HSA adds parameters", "+1,095,168 (+1.6%)", _relative("params", 1.6)),
]


def report(rows: list[dict], names: list[str], spec) -> str:
    """Report 000's table with the arms side by side, HSA's differences in each arm, then MQAR (careful)."""
    out = [side_by_side("Performance", rows, "landmark",
                        [("Best PPL", "val_ppl", 1), ("Best Epoch", "best_epoch", 1), ("Params", "params", 0),
                         ("s/epoch", "sec_per_epoch", 1), ("selection acc", "selection_acc", 2)])]
    out.append(claims_table(CLAIMS, rows, "landmark"))
    out.append(memory_use_table(rows, "landmark"))
    careful = by_arm(rows, "landmark")["careful"]
    if careful:
        out.append(recall_tables(list(careful.values()), list(careful), spec))
    return "\n".join(out)


RECIPE = Recipe(name="report_hsa", doc=__doc__, spec=SPEC, presets=PRESETS, aliases=ALIASES, run=run,
                metrics=tuple(METRICS), space=tuple(SPACE), report=report, preflight=preflight)
main = RECIPE.main

if __name__ == "__main__":
    RECIPE.main()

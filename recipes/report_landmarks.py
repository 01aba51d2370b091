"""Recipe for seed report 001: landmark memory_norm vs learned vs mean_k, with memory selection accuracy.

    python -m ablations.grid --recipe report_landmarks                 # tiny: 3 landmarks x 2 arms x 3 seeds
    python -m ablations.grid --recipe report_landmarks --space landmark=memory_norm,learned,mean_k,hsa
    python -m ablations.grid --recipe report_landmarks --preset reports --gpus-per-trial 1

Each trial trains a 4-memory model on the four-domain Debian text, then writes each domain's
training text into its own memory (``MemoryBuilder``) and asks which memory held-out text of each
domain selects (chance 1/4), the test the report proposed; MQAR by distance (careful arm) shows where
the landmarks differ when perplexity does not. Two arms: ``as_run`` (the report's code: the reports'
layer, validation on an empty read-only memory, patience 5) and ``careful`` (memkit's defaults).
"""

from __future__ import annotations

from typing import Callable

from recipes._arms import Claim, by_arm, claims_table, difference, mean, memory_use_table, side_by_side
from recipes._tables import recall_tables
from recipes._text import run_text
from recipes._text_presets import report_parts, text_aliases, tiny_parts
from recipes._text_spec import TextTrialSpec, override, preflight
from recipes.recipe import Recipe


class LandmarksSpec(TextTrialSpec):
    """A text trial whose ``as_run`` arm is report 001's script."""

    @classmethod
    def as_run(cls, data: dict) -> dict:
        """Report 001: the reports' layer, validation on an empty read-only memory, patience 5."""
        data = super().as_run(data)
        return override(override(data, "model.memory", shared_validation="read_only"), "train", patience=5)


ALIASES = text_aliases()
SPACE = ["landmark=memory_norm,learned,mean_k", "arm=as_run,careful"]
METRICS = ["val_ppl", "best_epoch", "params", "selection_acc", "mqar_mean", "sec_per_epoch", "ko_read_val_ppl_change",
           "mem_share_mean"]


def tiny() -> LandmarksSpec:
    """Minutes per trial on one CPU core (``tiny_parts``): selection accuracy and MQAR; the careful arm."""
    return LandmarksSpec.create(**tiny_parts(), evals=["selection", "mqar"], selection=dict(source_tokens=1024, queries=25))


def reports() -> LandmarksSpec:
    """The report's system at its sizes (``report_parts``), as its code ran it. Meant for a GPU."""
    return LandmarksSpec.create(**report_parts(patience=5), arm="as_run", evals=["selection", "mqar"],
                                selection=dict(source_tokens=4096, queries=50))


PRESETS: dict[str, Callable[[], LandmarksSpec]] = {"tiny": tiny, "reports": reports}
SPEC = LandmarksSpec


def run(spec: LandmarksSpec, on_epoch=None, progress=None) -> dict:
    return run_text(spec, on_epoch, progress)


def _learned_equals_norm(rows: dict[str, dict]) -> tuple[str, str]:
    d = difference(rows["learned"], rows["memory_norm"], "val_ppl")
    shown = f"learned {mean(rows['learned'], 'val_ppl'):.1f} vs memory_norm {mean(rows['memory_norm'], 'val_ppl'):.1f}"
    if d[1] == "capped":
        return shown, "not ranked: trials capped while improving"
    return shown, "holds (no difference beyond noise)" if d[1] != "beyond noise" else f"does not hold ({d[0]:+.1f})"


def _selection_near_chance(rows: dict[str, dict]) -> tuple[str, str]:
    accs = {k: mean(r, "selection_acc") for k, r in rows.items() if mean(r, "selection_acc") is not None}
    chance = next(mean(r, "selection_chance") for r in rows.values() if mean(r, "selection_chance") is not None)
    shown = ", ".join(f"{k} {v:.2f}" for k, v in accs.items()) + f" (chance {chance:.2f})"
    near = all(abs(v - chance) <= 0.15 for v in accs.values())
    return shown, "holds (within 0.15 of chance)" if near else "does not hold (some landmark selects)"


CLAIMS = [
    Claim("learned landmark ≈ memory_norm in perplexity", "105.6 vs 105.4 (+0.1)", _learned_equals_norm),
    Claim("memory selection accuracy near chance", "20% (4/20), chance 25%", _selection_near_chance),
]


def report(rows: list[dict], names: list[str], spec: LandmarksSpec) -> str:
    """Report 001's tables, the arms side by side: perplexity and parameters, selection accuracy per domain,
    the claims in each arm, then MQAR (careful arm)."""
    out = [side_by_side("Landmark comparison", rows, "landmark",
                        [("Best PPL", "val_ppl", 1), ("Epoch", "best_epoch", 1), ("Params", "params", 0)])]
    # the domains are whatever the data's files were (the Debian corpus by default)
    domains = sorted({k[len("selection_"):-len("_mean")] for r in rows for k in r
                      if k.startswith("selection_") and k.endswith("_mean") and r[k] is not None}
                     - {"acc", "chance"})
    if domains:  # none with a single domain (one file): nothing to tell apart
        chance = next((r["selection_chance_mean"] for r in rows if r.get("selection_chance_mean")), None)
        title = "Memory selection accuracy (one domain per memory" + (f", chance {chance:.2f})" if chance else ")")
        out.append(side_by_side(title, rows, "landmark",
                                [(d, f"selection_{d}", 2) for d in domains] + [("all", "selection_acc", 2)]))
    out.append(claims_table(CLAIMS, rows, "landmark"))
    out.append(memory_use_table(rows, "landmark"))
    careful = by_arm(rows, "landmark")["careful"]
    if careful:
        out.append(recall_tables(list(careful.values()), list(careful), spec))
    return "\n".join(out)


RECIPE = Recipe(name="report_landmarks", doc=__doc__, spec=SPEC, presets=PRESETS, aliases=ALIASES, run=run,
                metrics=tuple(METRICS), space=tuple(SPACE), report=report, preflight=preflight)
main = RECIPE.main

if __name__ == "__main__":
    RECIPE.main()

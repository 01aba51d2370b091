"""One grid trial as a plain function: (recipe, preset, overrides) -> metrics. Debuggable without Ray."""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
from pathlib import Path
from typing import Any, Callable

from ablations.space import apply_overrides


def is_recipe_path(name: str) -> bool:
    return name.endswith(".py") or "/" in name


def load_recipe(name: str):
    """``recipes.<name>``, or a recipe file by path (a user's own, outside the repo). It must
    define PRESETS, SPEC, ALIASES and run()."""
    if not is_recipe_path(name):
        return importlib.import_module(f"recipes.{name}")
    path = Path(name).resolve()
    mod_name = f"memkit_user_recipe_{abs(hash(str(path)))}"
    if mod_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        spec.loader.exec_module(module)
    return sys.modules[mod_name]


def run_point(
    recipe: str, preset: str, overrides: dict[str, Any], threads: int = 0, on_epoch: Callable[[dict], None] | None = None
) -> dict:
    module = load_recipe(recipe)
    spec = apply_overrides(module.PRESETS[preset](), overrides)
    if threads:  # as many torch threads as CPUs the trial was given: trials must not oversubscribe
        import torch

        torch.set_num_threads(threads)
    return module.run(spec, on_epoch=on_epoch, progress=False)


def tune_trainable(config: dict) -> None:
    """Ray Tune entry: reports each epoch as it ends, then the final figures (``final=True``)."""
    from ray import tune

    def with_loss(row: dict) -> dict:
        # a scheduler (ASHA) reads val_loss from every result; recipes may report only val_ppl
        ppl = row.get("val_ppl")
        loss = math.log(ppl) if isinstance(ppl, (int, float)) and ppl > 0 and math.isfinite(ppl) else float("nan")
        return {"val_loss": loss, **row}

    def on_epoch(row: dict) -> None:
        tune.report({**with_loss(row), "final": False})

    metrics = run_point(config["recipe"], config["preset"], config["point"], config.get("threads", 0), on_epoch)
    tune.report({**with_loss(metrics), "final": True})

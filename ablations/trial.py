"""One grid trial as a plain function: (recipe, preset, overrides) -> metrics. Debuggable without Ray."""

from __future__ import annotations

import importlib
from typing import Any, Callable

from ablations.space import apply_overrides


def load_recipe(name: str):
    """Import ``recipes.<name>``; it must define PRESETS, SPEC, ALIASES and run()."""
    return importlib.import_module(f"recipes.{name}")


def run_point(
    recipe: str, preset: str, overrides: dict[str, Any], threads: int = 0, on_epoch: Callable[[dict], None] | None = None
) -> dict:
    module = load_recipe(recipe)
    spec = apply_overrides(module.PRESETS[preset](), overrides)
    if threads:
        spec = apply_overrides(spec, {"train.threads": threads})
    return module.run(spec, on_epoch=on_epoch, progress=False)


def tune_trainable(config: dict) -> None:
    """Ray Tune entry: reports each epoch as it ends, then the final figures (``final=True``)."""
    from ray import tune

    def on_epoch(row: dict) -> None:
        tune.report({**row, "final": False})

    metrics = run_point(config["recipe"], config["preset"], config["point"], config.get("threads", 0), on_epoch)
    tune.report({**metrics, "final": True})

"""One grid trial as a plain function: (recipe, preset, overrides) -> metrics. Debuggable without Ray.

Under Ray Tune (``tune_trainable``) a trial reports each epoch as it ends with a checkpoint: the training
state to resume from (``train_state.pt``) and the best epoch's model so far (``model/``, see
``memkit.models.checkpoint``). A restarted trial (a crashed worker retried, or a grid resumed with
``--resume``) gets its last checkpoint back from Tune and goes on from that epoch. A trial whose loss
goes NaN or that runs out of memory ends with that cause (``failure``) instead of raising: Tune would
retry it, and neither comes right by retrying.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from ablations.space import apply_overrides
from recipes.recipe import Recipe


def is_recipe_path(name: str) -> bool:
    return name.endswith(".py") or "/" in name


def find_recipe_file(name: str) -> Path:
    """A recipe file by path; on a worker, by its name in a folder on ``sys.path`` (Ray puts the
    runtime_env's working_dir there, whatever folder the trial runs in)."""
    path = Path(name)
    if path.is_file():
        return path.resolve()
    for folder in sys.path:
        found = Path(folder or ".") / path.name
        if found.is_file():
            return found.resolve()
    raise FileNotFoundError(f"recipe file {name!r}: not here, nor in the runtime_env's working_dir")


def load_recipe(name: str):
    """The module ``recipes.<name>``, or a recipe file by path (a user's own, outside the repo); ``recipe_of``
    reads its ``Recipe``."""
    if not is_recipe_path(name):
        return importlib.import_module(f"recipes.{name}")
    path = find_recipe_file(name)
    mod_name = f"memkit_user_recipe_{abs(hash(str(path)))}"
    if mod_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        spec.loader.exec_module(module)
    return sys.modules[mod_name]


def recipe_of(name: str) -> Recipe:
    """The ``Recipe`` of ``recipes.<name>`` or of a recipe file by path."""
    return Recipe.from_module(load_recipe(name))


def run_point(
    recipe: str, preset: str, overrides: dict[str, Any], threads: int = 0, on_epoch: Callable[[dict], None] | None = None
) -> dict:
    found = recipe_of(recipe)
    spec = apply_overrides(found.preset(preset), overrides)
    if threads:  # as many torch threads as CPUs the trial was given: trials must not oversubscribe
        import torch

        torch.set_num_threads(threads)
    return found.run(spec, on_epoch=on_epoch, progress=False)


def with_loss(row: dict) -> dict:
    """The row with ``val_loss``: a scheduler (ASHA) reads it from every result, and a recipe may report
    only val_ppl."""
    ppl = row.get("val_ppl")
    loss = math.log(ppl) if isinstance(ppl, (int, float)) and ppl > 0 and math.isfinite(ppl) else float("nan")
    return {"val_loss": loss, **row}


class TuneEpochs:
    """The ``on_epoch`` a Tune trial gives its recipe (a ``memkit.training.trainer.EpochHook``): each epoch
    is reported with a checkpoint of the training state and of the best model so far, unless
    ``checkpoints`` is off; ``resume_state`` reads the trial's last checkpoint when Tune restored it."""

    def __init__(self, checkpoints: bool = True):
        self.checkpoints, self.pending = checkpoints, None
        self.beside: list = []  # writers of what travels with the model (tokenizer, data settings)

    def keep_beside_model(self, write) -> None:
        self.beside.append(write)

    def resume_state(self):
        import torch
        from ray import tune

        from memkit.training.trainer import TrainState

        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as folder:
            return TrainState.from_dict(torch.load(Path(folder) / "train_state.pt", weights_only=True))

    def save_state(self, state, model) -> None:
        import torch

        from memkit.models.checkpoint import save_model

        if not self.checkpoints:
            return
        folder = Path(tempfile.mkdtemp(prefix="memkit-ckpt-"))
        torch.save(state.as_dict(), folder / "train_state.pt")
        save_model(model, folder / "model", state.best_state, beside=self.beside, shared_memory=state.best_shared)
        self.pending = folder

    def __call__(self, row: dict) -> None:
        from ray import tune

        folder, self.pending = self.pending, None
        try:
            tune.report({**with_loss(row), "final": False},
                        checkpoint=tune.Checkpoint.from_directory(str(folder)) if folder else None)
        finally:
            if folder:
                shutil.rmtree(folder, ignore_errors=True)  # Tune has copied it to the trial's storage


def failure_of(error: BaseException) -> str | None:
    """"nan" or "oom" for failures a retry cannot mend; None for anything else."""
    if isinstance(error, FloatingPointError):
        return "nan"
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return "oom"
    return None


def trial_point(config: dict, seed_path: str | None) -> dict:
    """The point a trial ran: its config's point, with the seed a search's repeat gave it (the trial index)."""
    point = dict(config["point"])
    if "__trial_index__" in config and seed_path:
        point[seed_path] = config["__trial_index__"]
    return point


def tune_trainable(config: dict) -> None:
    """Ray Tune entry: reports each epoch as it ends (with a checkpoint), then the final figures
    (``final=True``), the node it ran on, and, if it diverged or ran out of memory, ``failure``."""
    import ray
    from ray import tune

    point = trial_point(config, config.get("seed_path"))
    node = ray.get_runtime_context().get_node_id()
    try:
        metrics = run_point(config["recipe"], config["preset"], point, config.get("threads", 0),
                            TuneEpochs(config.get("checkpoints", True)))
    except Exception as e:  # noqa: BLE001  (only NaN and out-of-memory end here; the rest is re-raised)
        cause = failure_of(e)
        if cause is None:
            raise
        tune.report({"final": True, "failure": cause, "error": f"{type(e).__name__}: {str(e)[:300]}", "node": node})
        return
    tune.report({**with_loss(metrics), "final": True, "node": node})

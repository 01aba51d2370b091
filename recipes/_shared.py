"""What the recipes share: the one-trial command line, and fields derived from the task."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from pathlib import Path
from typing import Callable

from memkit.eval.tasks.recall import RecallTask
from memkit.spec import Spec


def as_dict(v) -> dict:
    return v.model_dump() if isinstance(v, Spec) else dict(v or {})


def training_figures(model, result, solve_at: float | None = None, chance: float = 0.0) -> dict:
    """What every recipe reports of a training run (``memkit.train.TrainResult``): best epoch, epochs,
    how it ended (``stop``; ``capped``: at max_epochs, still improving), epochs and training tokens
    until val accuracy first covered 50% and 90% of the way from ``chance`` to its best (inf: never,
    also when it never reached twice chance), parameters, seconds per epoch, tokens/s, peak memory in
    training (GPU allocator on CUDA, RSS on CPU), and ``solve_at`` (the recall threshold the grid's solve
    rate uses) when set."""
    out = {"best_epoch": result.best_epoch, "epochs": len(result.history), "stop": result.stop,
           "capped": result.capped, "params": model.num_parameters(), "sec_per_epoch": result.seconds_per_epoch,
           "tokens_per_s": result.tokens_per_second, "train_peak_mb": result.peak_memory_mb}
    for share in (50, 90):
        epochs, tokens = result.time_to(share / 100, chance=chance)
        out[f"epochs_to_{share}"] = math.inf if epochs is None else epochs
        out[f"tokens_to_{share}"] = math.inf if tokens is None else tokens
    if solve_at is not None:
        out["solve_at"] = solve_at
    return out


def derive_from_task(data, segment_len: Callable[[dict], int | None]):
    """For a recipe spec's ``mode="before"`` validator: ``task.segment_len`` follows the model
    (``segment_len(model_dict)``, None to leave it), and ``model.vocab_size`` grows to the task's."""
    if not isinstance(data, dict):
        return data
    model, task = as_dict(data.get("model")), as_dict(data.get("task"))
    length = segment_len(model)
    if length:
        task["segment_len"] = length
    try:
        model["vocab_size"] = max(model.get("vocab_size", 0) or 0, RecallTask.model_validate(task).vocab_size)
    except ValueError:  # a bad task is reported by its own validation
        pass
    return {**data, "model": model, "task": task}


def cli(doc: str, presets: dict, run: Callable, argv=None) -> None:
    """``python -m recipes.<name> --preset P``: one trial without Ray, figures as JSON."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--preset", choices=sorted(presets), default="tiny")
    args = parser.parse_args(argv)
    with one_line_errors(recipe_name(run)):
        print(json.dumps(run(presets[args.preset](), progress=True), indent=2))


def recipe_name(run: Callable) -> str:
    """The recipe a ``run`` belongs to, by its file (under ``python -m`` its module is ``__main__``)."""
    return Path(sys.modules[run.__module__].__file__).stem


@contextlib.contextmanager
def one_line_errors(recipe: str):
    """A recipe run from its command line: a user's mistake (a spec value, data that is not there) is one line
    and exit status 2; the Debian corpus missing says how to give other text, which only the grid takes."""
    from memkit.data.corpus import CorpusMissing, DataError
    from memkit.spec import SpecError

    try:
        yield
    except CorpusMissing as e:
        print(f"error: {e}, or run it on your own text: python -m ablations.grid --recipe {recipe} --space "
              "source=<your files>", file=sys.stderr)
        sys.exit(2)
    except (SpecError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)

"""What the recipes share: the one-trial command line, and fields derived from the task."""

from __future__ import annotations

import contextlib
import math
import sys
import time
from typing import Callable

import torch

from memkit.eval.tasks.recall import RecallTask
from memkit.spec import Spec


def as_dict(v) -> dict:
    return v.model_dump() if isinstance(v, Spec) else dict(v or {})


# --space keys a synthetic-task recipe (mqar, passkey) shares: the design in the memory place, the model, training
DESIGN_TASK_ALIASES = {
    "design": "design",  # single, multi, hierarchical, sliding_window, full_attention, deltanet, gated_deltanet
    "layer": "model.design.name",
    "memories": "model.memory.num_memories",
    "gate": "model.memory.hierarchy",
    "landmark": "model.memory.landmark",
    "update": "model.memory.update",
    "segment_len": "model.memory.segment_len",
    "window": "model.design.attention.window",
    "conv": "model.design.deltanet.conv_size",
    "width": "model.hidden_size",
    "mlp": "model.intermediate_size",
    "layers": "model.num_layers",
    "heads": "model.num_heads",
    "seq_len": "task.seq_len",
    "samples": "task.num_train",
    "lr": "train.lr",
    "epochs": "train.max_epochs",
    "min_epochs": "train.min_epochs",
    "patience": "train.patience",
    "seed": "train.seed",
}


def model_for_task(data: dict, vocab_size: int) -> dict:
    """A synthetic-task recipe's fields (before validation) with the model's vocabulary the task's and, where
    ``design`` names one, that design in the memory place (``memkit.models.designs.named_design``)."""
    from memkit.models.designs import named_design

    model = {**as_dict(data.get("model")), "vocab_size": vocab_size}
    if data.get("design") is not None:
        model = named_design(model, data["design"])
    return {**data, "model": model}


def run_on_task(spec, kind: str, test: Callable[[object], dict], figure: str, chance: float, on_epoch=None,
                progress=None) -> dict:
    """One trial of a synthetic-task recipe (mqar, passkey): build ``spec.model``, train on fresh samples of
    ``spec.task`` with validation on its split, then ``test(model)`` (the test figures, ``figure`` the main one),
    ``val_acc``, the training figures against ``chance``, state bytes and the memory-use figures of ``figure``.
    ``kind`` names the task in the checkpoint's data settings."""
    from memkit.eval.memory_use import memory_use_figures, with_gates
    from memkit.training.trainer import evaluate, train

    seed, task = spec.train.seed, spec.task
    torch.manual_seed(seed)
    model = spec.model.build()
    _, val_data = task.splits(seed)
    keep_task(on_epoch, kind, task)
    t0 = time.perf_counter()
    result = train(model, lambda epoch: task.train_epoch(seed, epoch), val_data, spec.train,
                   on_epoch=with_gates(on_epoch, model), progress=progress)
    intact = test(model)
    return {
        **intact,
        "val_acc": evaluate(model, val_data, spec.train.batch_size)["acc"],
        **training_figures(model, result, spec.train.solve_at, chance=chance),
        "memory_bytes": model.memory_nbytes(),
        **memory_use_figures(model, lambda: test(model), [figure], intact),
        "train_seconds": time.perf_counter() - t0,
    }


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


def keep_beside_model(on_epoch, *writers) -> None:
    """Have a resumable ``on_epoch`` (the grid's trials) save ``writers``' files beside each checkpointed model:
    ``memkit.evaluate``/``generate`` then measure it with the data and tokenizer it was trained on."""
    keep = getattr(on_epoch, "keep_beside_model", None)
    for write in writers if keep is not None else ():
        keep(write)


def keep_text_data(on_epoch, data_spec, data) -> None:
    """``keep_beside_model`` for a text trial: its tokenizer (tokenizer.json; none for bytes) and data settings."""
    from memkit.data.tokenizer import save_tokenizer
    from memkit.models.checkpoint import write_data_settings

    keep_beside_model(on_epoch, lambda folder: save_tokenizer(data.tokenizer, folder),
                      write_data_settings("text", data_spec.model_dump(mode="json"), data.vocab_size))


def keep_task(on_epoch, kind: str, task) -> None:
    """``keep_beside_model`` for a trial on a synthetic task: its fields (``memkit.evaluate --task kind``)."""
    from memkit.models.checkpoint import write_data_settings

    keep_beside_model(on_epoch, write_data_settings(kind, task.model_dump(mode="json"), task.vocab_size))


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

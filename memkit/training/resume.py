"""A training run that can stop and go on: the state kept after every epoch (``TrainState``), the hook a caller
passes to keep it (``EpochHook``), and ``Resumable``, which saves and restores it for the trainer."""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn


@dataclass
class TrainState:
    """Where a training run stands after an epoch: all ``train`` needs to go on as if it never stopped.

    ``as_dict`` gives plain tensors and numbers (``torch.save``-able, loadable with ``weights_only``);
    ``from_dict`` reads them back. ``model``/``optimizer`` are the current weights and optimiser state,
    ``best_state`` the best epoch's weights, ``best_shared`` the batch-shared memories as the best epoch's
    validation found them (``export_shared_memories``: what that validation read, restored with the best
    weights), ``rng`` the generators (data order, torch, Python), ``shared`` the reports' batch-shared
    memories now (they can carry across epochs)."""

    epoch: int = 0
    step: int = 0
    best_score: float = -math.inf
    bad: int = 0
    done: bool = False  # solved, converged or capped: nothing left to train
    train_seconds: float = 0.0
    train_tokens: int = 0
    result: dict = field(default_factory=dict)
    best_state: dict | None = None
    best_shared: dict | None = None
    model: dict | None = None
    optimizer: dict | None = None
    rng: dict | None = None
    shared: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict) -> "TrainState":
        return cls(**data)


class EpochHook:
    """What a caller may pass as ``on_epoch`` to keep a run resumable (the grid's trials do): called
    with each epoch's figures like any ``on_epoch``; ``save_state(state, model)`` comes first, after
    every epoch, with the ``TrainState`` to keep; ``resume_state()`` gives one back to continue from
    (None: start afresh). Any callable works as ``on_epoch``; these two methods are optional."""

    def __call__(self, row: dict) -> None:
        pass

    def save_state(self, state: TrainState, model: nn.Module) -> None:
        pass

    def resume_state(self) -> TrainState | None:
        return None

    def keep_beside_model(self, write) -> None:
        """``write(folder)`` runs each time the model is saved, into its folder (its tokenizer, its data)."""


def shared_memories(model: nn.Module) -> dict:
    return {name: mod.shared for name, mod in model.named_modules() if getattr(mod, "shared", None) is not None}


def export_shared_memories(model: nn.Module) -> dict:
    """A copy of every batch-shared memory's state, keyed by its module's name (None: empty); {} for a model
    without one. ``restore_shared_memories`` puts it back."""
    return {name: copy.deepcopy(mem.export()) for name, mem in shared_memories(model).items()}


def restore_shared_memories(model: nn.Module, saved: dict) -> None:
    """Every batch-shared memory of ``model`` back to its state in ``saved`` (``export_shared_memories``'s; a
    memory it does not name is emptied)."""
    for name, mem in shared_memories(model).items():
        mem.restore(copy.deepcopy(saved.get(name)))


class Resumable:
    """The trainer's side of an ``EpochHook``: ``start()`` gives the state to begin from (the hook's saved one,
    with weights, optimiser, generators and shared memories put back, or a fresh one); ``save(state, result)``
    hands the hook a copy of everything live after an epoch. Without the hook's methods both do nothing more."""

    def __init__(self, on_epoch: Callable[[dict], None] | None, model: nn.Module, opt, gen: torch.Generator):
        self.model, self.opt, self.gen = model, opt, gen
        self.save_state = getattr(on_epoch, "save_state", None)
        self.resume_state = getattr(on_epoch, "resume_state", lambda: None)

    def start(self) -> tuple[TrainState, dict | None]:
        """(state, the saved ``TrainResult`` fields, or None when starting afresh)."""
        state = self.resume_state()
        if state is None:
            return TrainState(), None
        self.model.load_state_dict(state.model)
        self.opt.load_state_dict(state.optimizer)
        self.gen.set_state(state.rng["order"])
        torch.set_rng_state(state.rng["torch"])
        random.setstate(state.rng["python"])
        restore_shared_memories(self.model, state.shared)
        return state, state.result

    def save(self, state: TrainState, result) -> None:
        if self.save_state is None:
            return
        state.result = {f: getattr(result, f) for f in result.__dataclass_fields__}
        state.model = copy.deepcopy(self.model.state_dict())
        state.optimizer = copy.deepcopy(self.opt.state_dict())
        state.rng = {"order": self.gen.get_state(), "torch": torch.get_rng_state(), "python": random.getstate()}
        state.shared = export_shared_memories(self.model)
        self.save_state(state, self.model)

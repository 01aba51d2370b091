"""The reports' batch-shared memory beside a saved model (``shared_memory.pt``).

A model whose batch-shared memory carries its state into validation (``memory_scope="batch_shared"`` with
``shared_reset="once"``) is measured on that state, so ``save_model`` writes it beside the weights (the exported
states keyed by module name; the best epoch's as its validation found them) and ``load``/``load_model`` put it
back. Any other model gets no such file.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

from memkit.models.pretrained import CheckpointError

SHARED_FILE = "shared_memory.pt"
_SHARED_KEYS = {"M", "z", "writes", "empty", "lm_sum", "lm_count"}


def _carried(model: nn.Module) -> dict:
    """The batch-shared memories a validation reads as training left them ("once"), by module name."""
    from memkit.training.resume import shared_memories  # here: memkit.training imports the models at its top

    return {name: mem for name, mem in shared_memories(model).items() if mem.reset_policy != "each_epoch"}


def save_shared_memory(model: nn.Module, out: Path, shared_memory: dict | None) -> None:
    """``shared_memory.pt`` in ``out`` when ``model`` has a memory that carries into validation: ``shared_memory``
    (``export_shared_memories``'s, e.g. the trainer's ``best_shared``), or the memory as the model holds it now."""
    carried = _carried(model)
    if not carried:
        return
    if shared_memory is None:
        from memkit.training.resume import export_shared_memories

        shared_memory = export_shared_memories(model)
    torch.save({"memories": {name: shared_memory.get(name) for name in carried}}, out / SHARED_FILE)


def load_shared_memory(model: nn.Module, folder: str | os.PathLike) -> nn.Module:
    """``model``'s batch-shared memories back to what ``save_model`` wrote beside it (``shared_memory.pt``);
    nothing for a model without one that carries into validation. A missing file is a warning (the memory starts
    empty); one unreadable or not for this model is a ``CheckpointError`` naming it."""
    carried = _carried(model)
    if not carried:
        return model
    file = Path(folder).expanduser() / SHARED_FILE
    if not file.is_file():  # saved by save_pretrained alone, or by an older memkit: usable, but not its trial's figures
        warnings.warn(f"{str(file)!r} is missing: this model's batch-shared memory (shared_reset='once') starts empty, "
                      "so its validation figures differ from those of the run that saved it (save_model writes it)",
                      stacklevel=2)
        return model
    device = next(model.parameters()).device
    try:
        saved = torch.load(file, map_location=device, weights_only=True)
        memories = saved["memories"]
        missing = sorted(set(carried) - set(memories))
        if missing:
            raise ValueError(f"no state for {', '.join(missing)}")
        for name, mem in carried.items():
            _check_shared(mem, memories[name])
    except Exception as e:  # noqa: BLE001  (torch raises several types for a broken file)
        raise CheckpointError(f"load: {str(file)!r} holds no batch-shared memory for this model "
                              f"({type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}; "
                              "truncated?); save the model again") from None
    for name, mem in carried.items():
        mem.restore(memories[name])
    return model


def _check_shared(mem, data) -> None:
    """``data`` is None or an export of a state shaped as ``mem``'s, or ValueError."""
    if data is None:
        return
    if not isinstance(data, dict) or set(data) != _SHARED_KEYS:
        raise ValueError(f"a state has keys {sorted(data) if isinstance(data, dict) else type(data).__name__}")
    empty = mem._empty("cpu", torch.float32)
    expected = {"M": empty.memory.M, "z": empty.memory.z, "lm_sum": empty.lm_sum, "lm_count": empty.lm_count}
    for key, like in expected.items():
        got = data[key]
        if (like is None) != (got is None) or (like is not None and tuple(got.shape) != tuple(like.shape)):
            raise ValueError(f"{key} is {None if got is None else tuple(got.shape)}, the model's "
                             f"{None if like is None else tuple(like.shape)}")

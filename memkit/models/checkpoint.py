"""A trained model on disk: written by the grid's trials (their best epoch), read back by ``memkit.load``.

A transformers model (``save_pretrained``) is written in the ecosystem's format: ``config.json`` and
``model.safetensors``, loadable with ``AutoModelForCausalLM.from_pretrained`` after ``import memkit``.
Any other model is written as its weights (``model.pt``) and, when it carries the spec it was built
from (``model.spec``), that spec (``spec.json``) so that ``load`` can build it again.

A model whose batch-shared memory carries its state into validation (``memory_scope="batch_shared"`` with
``shared_reset="once"``) is measured on that state, so the memory is saved beside the weights
(``shared_memory.pt``: the exported states keyed by module name; the best epoch's as its validation found them,
given as ``shared_memory``) and restored by ``load``/``load_model``. Any other model gets no such file.
"""

from __future__ import annotations

import importlib
import json
import os
import warnings
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch import nn

from memkit.models.pretrained import CheckpointError

# what a trial's data was, beside its model: ``memkit.evaluate`` reads it to measure the model as it was trained
DATA_FILE = "memkit_data.json"
# the batch-shared memories a model validates on (``shared_reset="once"``), beside its weights
SHARED_FILE = "shared_memory.pt"
_SHARED_KEYS = {"M", "z", "writes", "empty", "lm_sum", "lm_count"}


def save_model(model: nn.Module, directory: str | os.PathLike, state_dict: dict | None = None,
               beside: Iterable[Callable[[Path], None]] = (), shared_memory: dict | None = None) -> Path:
    """Write ``model`` (with ``state_dict`` as its weights, e.g. the best epoch's) to ``directory``; each of
    ``beside`` then writes what travels with it into the folder (its tokenizer, ``write_data_settings``).
    A model whose batch-shared memory carries into validation also gets ``shared_memory.pt``: ``shared_memory``
    (``export_shared_memories``'s, e.g. the trainer's ``best_shared``, to go with ``state_dict``), or the
    memory as the model holds it now."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    _save_weights(model, out, state_dict)
    _save_shared(model, out, shared_memory)
    for write in beside:
        write(out)
    return out


def _carried(model: nn.Module) -> dict:
    """The batch-shared memories a validation reads as training left them ("once"), by module name."""
    from memkit.training.resume import shared_memories

    return {name: mem for name, mem in shared_memories(model).items() if mem.reset_policy != "each_epoch"}


def _save_shared(model: nn.Module, out: Path, shared_memory: dict | None) -> None:
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


def write_data_settings(kind: str, fields: dict, vocab_size: int | None = None) -> Callable[[Path], None]:
    """A ``beside`` writer of ``memkit_data.json``: the data a model was trained on, as ``kind`` ("text": a
    ``TextDataSpec``'s fields; "mqar"/"passkey": a task's) and the vocabulary its tokenizer had."""
    def write(folder: Path) -> None:
        (Path(folder) / DATA_FILE).write_text(json.dumps({"kind": kind, "fields": fields, "vocab_size": vocab_size},
                                                         indent=1))
    return write


def read_data_settings(folder: str | os.PathLike) -> dict | None:
    """What ``write_data_settings`` wrote beside a model (None: nothing there, as for a model saved by hand)."""
    file = Path(folder).expanduser() / DATA_FILE
    if not file.is_file():
        return None
    try:
        saved = json.loads(file.read_text())
        if not isinstance(saved.get("fields"), dict):
            raise ValueError("no 'fields' object")
    except (ValueError, AttributeError) as e:
        raise CheckpointError(f"{file}: not a memkit data settings file ({e})") from None
    return saved


def _save_weights(model: nn.Module, out: Path, state_dict: dict | None) -> None:
    if hasattr(model, "save_pretrained"):
        # a copy: transformers' writer empties the dict it is given for some models (ContextKVLM as run), and the
        # caller's is the trainer's best state, loaded back at the end of training
        model.save_pretrained(out, state_dict=None if state_dict is None else dict(state_dict))
        return
    torch.save(state_dict if state_dict is not None else model.state_dict(), out / "model.pt")
    spec = getattr(model, "spec", None)
    if spec is not None:
        (out / "spec.json").write_text(json.dumps({"spec": f"{type(spec).__module__}.{type(spec).__qualname__}",
                                                   "fields": spec.model_dump(mode="json")}, indent=1))


def load(path: str | os.PathLike, map_location="cpu") -> nn.Module:
    """The model written at ``path`` (a grid checkpoint's ``model`` folder, or any ``save_pretrained`` one of
    memkit's or a GPT-NeoX checkpoint, see ``load_model``), in eval mode."""
    where = Path(path).expanduser()
    if (where / "config.json").is_file():
        from memkit.models.loading import load_model

        return load_model(where)
    if (where / "spec.json").is_file() and (where / "model.pt").is_file():
        try:
            saved = json.loads((where / "spec.json").read_text())
            module, _, name = saved["spec"].rpartition(".")
            spec_class = getattr(importlib.import_module(module), name)
        except (ValueError, KeyError, TypeError, AttributeError, ImportError) as e:
            raise CheckpointError(f"load: {str(where / 'spec.json')!r} names no spec memkit can build ({e}); "
                                  "truncated?") from None
        model = spec_class.create(**saved.get("fields", {})).build()
        try:
            model.load_state_dict(torch.load(where / "model.pt", map_location=map_location, weights_only=True))
        except Exception as e:  # noqa: BLE001  (torch raises several types for a broken file)
            raise CheckpointError(f"load: {str(where / 'model.pt')!r} holds no weights for this spec "
                                  f"({type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}; "
                                  "truncated?)") from None
        return load_shared_memory(model, where).eval()
    raise CheckpointError(f"load: no model at {str(path)!r}: expected config.json (a transformers model) or spec.json "
                     "with model.pt (a grid checkpoint's model folder)")

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
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch import nn

from memkit.models.pretrained import CheckpointError
from memkit.models.shared_memory import load_shared_memory, save_shared_memory

# what a trial's data was, beside its model: ``memkit.evaluate`` reads it to measure the model as it was trained
DATA_FILE = "memkit_data.json"


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
    save_shared_memory(model, out, shared_memory)
    for write in beside:
        write(out)
    return out


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

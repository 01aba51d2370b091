"""Open a saved model by its directory: memkit's own (model types ``memkit``, ``memkit_context_kv``) through
transformers' Auto classes, or a GPT-NeoX checkpoint (e.g. Pythia) as the plain baseline, with memkit's
calling convention. Anything else is one ``CheckpointError`` saying what the directory holds and what is allowed.

Axes: B batch, T tokens, V vocab.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from memkit.errors import CheckpointError, InputTooLong, SpecError
from memkit.models.pretrained import LMOutput

MEMKIT_TYPES = ("memkit", "memkit_context_kv")


class NeoXBaseline(nn.Module):
    """A transformers ``GPTNeoXForCausalLM`` called as memkit's models are: forward(ids [B,T]) -> (logits [B,T,V],
    None); every layer attends over the whole call. ``generate`` is transformers' own."""

    memory = None
    segment_len = None
    local_window = "full"

    def __init__(self, hf):
        super().__init__()
        self.hf = hf

    @property
    def eos_token_id(self):
        return self.hf.config.eos_token_id

    def forward(self, input_ids: torch.Tensor, state=None, **_) -> LMOutput:
        self._check_length(input_ids.shape[1])
        return LMOutput(logits=self.hf(input_ids, use_cache=False).logits, state=None)

    def generate(self, input_ids: torch.Tensor, **kwargs):
        kwargs.setdefault("pad_token_id", self.eos_token_id)
        new = kwargs.get("max_new_tokens")
        self._check_length(input_ids.shape[1] + new if new is not None else kwargs.get("max_length") or 0)
        return self.hf.generate(input_ids, **kwargs)

    def _check_length(self, tokens: int) -> None:
        # past its learned positions a GPT-NeoX runs on and prints garbage: refuse as memkit's models do
        limit = self.hf.config.max_position_embeddings
        if tokens > limit:
            raise InputTooLong(f"input: {tokens} tokens is longer than max_position_embeddings ({limit}) of this "
                               "GPT-NeoX; give at most that many (a prompt and its new tokens)")

    def get_input_embeddings(self):
        return self.hf.get_input_embeddings()

    def num_parameters(self, **_) -> int:
        return sum(p.numel() for p in self.parameters())

    def memory_nbytes(self) -> int:
        return 0


def model_type(path) -> str:
    """The ``model_type`` of the saved model at ``path`` (a directory), or ``CheckpointError``."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise CheckpointError(f"path: no directory at {str(path)!r}; give a directory written by save_pretrained")
    config = folder / "config.json"
    if not config.is_file():
        raise CheckpointError(f"path: {str(path)!r} has no config.json, so it holds no saved model; give a directory "
                              "written by model.save_pretrained (a memkit model, or a GPT-NeoX checkpoint)")
    try:
        saved = json.loads(config.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"path: {str(config)!r} is not valid JSON ({e}; truncated?); save the model again") from None
    if not isinstance(saved, dict):
        raise CheckpointError(f"path: {str(config)!r} holds no JSON object, so no model config; save the model again")
    return saved.get("model_type")


def check_weights(folder: Path) -> None:
    """Each ``*.safetensors`` file in ``folder`` readable to its end, or ``CheckpointError`` naming it."""
    from safetensors import SafetensorError, safe_open

    for file in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(file), framework="pt"):
                pass  # the header is read and the file's size checked against it
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"path: {str(file)!r} cannot be read as safetensors ({str(e).splitlines()[0]}; "
                                  "truncated?); save the model again") from None


def load_model(path, dtype: torch.dtype = torch.float32):
    """The model saved at ``path``: a ``MemoryLM`` / ``ContextKVLM``, or a ``NeoXBaseline`` for a GPT-NeoX
    checkpoint; in eval mode, with its batch-shared memory as saved beside it (``shared_memory.pt``, see
    ``memkit.models.shared_memory``)."""
    from transformers import AutoModelForCausalLM, GPTNeoXForCausalLM

    kind = model_type(path)
    folder = str(Path(path).expanduser())
    if kind in MEMKIT_TYPES + ("gpt_neox",):
        check_weights(Path(folder))
        try:
            if kind == "gpt_neox":
                return NeoXBaseline(GPTNeoXForCausalLM.from_pretrained(folder, dtype=dtype)).eval()
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
        except (SpecError, CheckpointError):
            raise
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:  # what transformers raises for a bad save
            raise CheckpointError(f"path: the model in {folder!r} cannot be loaded ({type(e).__name__}: "
                                  f"{str(e).strip().splitlines()[0] if str(e).strip() else 'no message'})") from None
        from memkit.models.shared_memory import load_shared_memory

        # a batch-shared memory that validation reads ("once"): as saved beside the weights
        return load_shared_memory(model, folder).eval()
    raise CheckpointError(f"path: {str(path)!r} holds a {kind!r} model; memkit opens its own models (model_type "
                          f"{' or '.join(repr(t) for t in MEMKIT_TYPES)}) and GPT-NeoX checkpoints ('gpt_neox')")

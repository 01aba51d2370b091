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

from memkit.errors import CheckpointError
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
        return LMOutput(logits=self.hf(input_ids, use_cache=False).logits, state=None)

    def generate(self, input_ids: torch.Tensor, **kwargs):
        kwargs.setdefault("pad_token_id", self.eos_token_id)
        return self.hf.generate(input_ids, **kwargs)

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
    return json.loads(config.read_text()).get("model_type")


def load_model(path, dtype: torch.dtype = torch.float32):
    """The model saved at ``path``: a ``MemoryLM`` / ``ContextKVLM``, or a ``NeoXBaseline`` for a GPT-NeoX
    checkpoint; in eval mode."""
    from transformers import AutoModelForCausalLM, GPTNeoXForCausalLM

    kind = model_type(path)
    folder = str(Path(path).expanduser())
    if kind in MEMKIT_TYPES:
        return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()
    if kind == "gpt_neox":
        return NeoXBaseline(GPTNeoXForCausalLM.from_pretrained(folder, dtype=dtype)).eval()
    raise CheckpointError(f"path: {str(path)!r} holds a {kind!r} model; memkit opens its own models (model_type "
                          f"{' or '.join(repr(t) for t in MEMKIT_TYPES)}) and GPT-NeoX checkpoints ('gpt_neox')")

"""memkit's models as transformers models: a config made from a spec, an output that unpacks as
``(logits, state)``, and the errors a saved model or an input can raise.

The spec stays the one place settings live: ``SpecConfig.from_spec(spec)`` stores the spec's fields in the
config (flat, as any ``config.json``), validated by the spec, and ``config.to_spec()`` gives the spec back.
``register()`` (called once by ``import memkit``: the package's one import-time side effect) tells
``AutoConfig`` and ``AutoModelForCausalLM`` about the model types ``memkit`` and ``memkit_context_kv``.

Axes: B batch, T tokens, V vocab.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from transformers import PreTrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

from memkit.models.generation import shifted_loss
from memkit.ops.cross_entropy import scored_cross_entropy


class CheckpointError(ValueError):
    """A saved model or checkpoint that memkit cannot use; the message says what is wrong and what is allowed."""


class InputTooLong(ValueError):
    """An input reaching past the positions the model was built for (full-window mode)."""


class SpecConfig(PreTrainedConfig):
    """A transformers config holding a memkit spec's fields. Subclasses set ``model_type`` and ``spec_class``."""

    spec_class: ClassVar[type] = None

    def __post_init__(self, **kwargs):
        names = set(self.spec_class.model_fields)
        mine = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
        spec = self.spec_class.create(**mine)  # defaults and validation: the spec's
        super().__post_init__(**spec.model_dump(), **kwargs)

    @classmethod
    def from_spec(cls, spec) -> "SpecConfig":
        return cls(**spec.model_dump())

    def to_spec(self):
        """The spec these settings came from (validated again)."""
        return self.spec_class.create(**{name: getattr(self, name) for name in self.spec_class.model_fields})


@dataclass
class LMOutput(ModelOutput):
    """A memkit model's output: ``logits`` [B,T,V], ``state`` (what to pass to the next call) and ``loss`` (when
    ``labels`` were given). Unpacks and indexes as ``(logits, state)``, memkit's calling convention
    (``logits, state = model(ids)``, ``model(ids)[0]``); ``.logits``, ``.loss`` and ``["logits"]`` as
    transformers' outputs."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    state: Any = None

    def __iter__(self):
        return iter((self.logits, self.state))

    def __getitem__(self, k):
        return super().__getitem__(k) if isinstance(k, str) else (self.logits, self.state)[k]


class SpecModel(PreTrainedModel):
    """What memkit's transformers models share. Blocks initialise themselves when built (memkit's own inits),
    so transformers' weight init leaves them alone; loading restores what parameters carry beside their
    values (the trainer's gate tag)."""

    base_model_prefix = "memkit"
    supports_gradient_checkpointing = False
    _supports_sdpa = True

    def _init_weights(self, module):
        pass  # GPT-NeoX initialises its own modules (its _init_weights), memkit's blocks theirs at build time

    def _mark_initialised(self, *modules) -> None:
        """Modules built here keep their init: transformers' post_init would re-initialise them with GPT-NeoX's
        init when they sit inside the GPT-NeoX model."""
        for module in modules:
            for m in module.modules():
                m._is_hf_initialized = True

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        model.after_load()
        return loaded

    def after_load(self) -> None:
        """Loading replaces parameters: tag the gate logits again (the trainer gives them their own rate)."""
        for m in self.modules():
            gate = getattr(m, "gate_logit", None)
            if isinstance(gate, torch.nn.Parameter):
                gate.memkit_group = "gate"

    def lm_output(self, hidden: torch.Tensor, state, labels: torch.Tensor | None, targets: torch.Tensor | None,
                  loss_chunk_rows: int) -> "LMOutput":
        """The forward's output from the final hidden states [B,T,D]: with ``targets``, the loss from the head at
        the scored positions only (no logits); else the logits [B,T,V] and transformers' shifted loss (``labels``)."""
        if targets is not None:
            return LMOutput(loss=scored_cross_entropy(hidden, targets, self._head, loss_chunk_rows), state=state)
        logits = self._head(hidden)
        return LMOutput(loss=shifted_loss(logits, labels), logits=logits, state=state)

    @property
    def spec(self):
        """The spec this model was built from."""
        return self.config.to_spec()

    def restarts_documents(self, documents: str | None) -> bool:
        """Whether this call restarts at each end-of-document id: ``documents`` (the call's override) or the spec's."""
        documents = documents or self.documents
        if documents not in ("separate", "run_together"):
            raise ValueError(f"documents: 'separate' or 'run_together', got {documents!r}")
        return documents == "separate" and self.eos_token_id is not None

    def check_plain_input(self, attention_mask) -> None:
        if attention_mask is not None and not bool(attention_mask.all()):
            raise ValueError("attention_mask: memkit models take unpadded inputs (every row as long as the call); "
                             "mark documents with the end-of-document id instead")


def register() -> None:
    """Register memkit's model types with transformers' Auto classes (idempotent)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from memkit.models.context_kv_lm import ContextKVConfig, ContextKVLM
    from memkit.models.memory_lm import MemkitConfig, MemoryLM

    for config, model in ((MemkitConfig, MemoryLM), (ContextKVConfig, ContextKVLM)):
        AutoConfig.register(config.model_type, config, exist_ok=True)
        AutoModelForCausalLM.register(config, model, exist_ok=True)

"""memkit's models as transformers models: a config made from a spec, an output that unpacks as
``(logits, state)``, and the base of the models (``SpecModel``).

The spec stays the one place settings live: ``SpecConfig.from_spec(spec)`` stores the spec's fields in the
config (flat, as any ``config.json``), validated by the spec, and ``config.to_spec()`` gives the spec back.
The model types are registered with transformers' Auto classes in the package (``memkit.models.register``).

Axes: B batch, T tokens, V vocab.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from transformers import PreTrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

from memkit.errors import CheckpointError, InputTooLong  # noqa: F401  (their old home: kept importable)


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

    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False,
                       trainable_only: bool = False) -> int:
        """Parameters in the model, each shared one once: only those that train with ``only_trainable``
        (``trainable_only`` is another name for it), without the token embeddings with ``exclude_embeddings``."""
        return super().num_parameters(only_trainable=only_trainable or trainable_only,
                                      exclude_embeddings=exclude_embeddings)

    @property
    def spec(self):
        """The spec this model was built from."""
        return self.config.to_spec()

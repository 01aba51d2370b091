"""Recipe: passkey retrieval by depth, any design in the memory place.

Run one trial:   python -m recipes.passkey --preset tiny
Compare designs: python -m ablations.grid --recipe passkey \\
                     --space design=single,multi,hierarchical,sliding_window,deltanet,gated_deltanet \\
                     --match-params design=single

A trial trains a GPT-NeoX-shaped model whose memory place (layer 0) holds the design and whose other layers attend
within a segment only, on ``PasskeyTask``: a key of digits hidden at some depth in repeating filler, asked for at
the end. Needles sit at uniform depths in training (fresh samples every epoch); the reported figures are exact
retrieval on a test split at each listed depth (``passkey_<depth %>``, ``passkey_mean``), with the memory-use
figures. A passkey further back than one segment can only come through the design in the memory place.

Presets: ``tiny`` 128 tokens, ``mid`` 256 tokens; width 64, 16-token segments.
"""

from __future__ import annotations

from typing import Callable

from pydantic import Field, model_validator

from memkit.eval.tasks.passkey import PasskeyTask
from memkit.models.designs import NamedDesign
from memkit.models.memory_lm import MemoryLMSpec
from memkit.spec import Spec
from memkit.training.figures import passkey_figures
from memkit.training.trainer import TrainSpec
from recipes._shared import DESIGN_TASK_ALIASES, as_dict, model_for_task, run_on_task
from recipes.recipe import Recipe


class PasskeySpec(Spec):
    """Model, task and training of one passkey trial; the model's vocabulary is the task's. ``design``, when set,
    puts a named design in the memory place (single, multi, hierarchical or a baseline)."""

    model: MemoryLMSpec = Field(default_factory=MemoryLMSpec)
    task: PasskeyTask = Field(default_factory=PasskeyTask)
    train: TrainSpec = Field(default_factory=TrainSpec)
    design: NamedDesign | None = Field(None, description="a named design in the memory place (sets model fields)")

    @model_validator(mode="before")
    @classmethod
    def _vocab(cls, data):
        if isinstance(data, dict):
            data = model_for_task(data, PasskeyTask(**as_dict(data.get("task"))).vocab_size)
        return data

    @model_validator(mode="after")
    def _segments(self):
        if self.task.seq_len % self.model.memory.segment_len:
            raise ValueError(f"task.seq_len ({self.task.seq_len}) must be a multiple of the memory's segment_len "
                             f"({self.model.memory.segment_len})")
        return self


def preset(seq_len: int) -> PasskeySpec:
    return PasskeySpec.create(
        model=dict(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=256, max_position_embeddings=512,
                   local_window="segment", rotary_pct=0.25,
                   memory=dict(segment_len=16, update="delta", key_shift=True)),
        task=dict(seq_len=seq_len, digits=5, num_train=2048, num_val=64),
        train=dict(lr=1e-3, batch_size=64, max_epochs=64, min_epochs=10, patience=5, monitor="acc", min_delta=0.005,
                   solve_at=0.99, fresh_samples=True),
    )


def tiny() -> PasskeySpec:
    """128 tokens, a 5-digit key, width 64; an epoch of 2,048 fresh samples."""
    return preset(128)


PRESETS: dict[str, Callable[[], PasskeySpec]] = {"tiny": tiny, "mid": lambda: preset(256)}
SPEC = PasskeySpec
ALIASES = {**DESIGN_TASK_ALIASES, "digits": "task.digits"}
METRICS = ["passkey_mean", "val_acc", "epochs", "params", "memory_bytes", "sec_per_epoch",
           "ko_read_passkey_mean_change"]


def run(spec: PasskeySpec, on_epoch=None, progress=None) -> dict:
    """Train on fresh samples; exact retrieval per depth on the test split, costs, memory use."""
    test = lambda model: passkey_figures(model, spec.task, spec.train.seed, spec.train.batch_size,  # noqa: E731
                                         split="test")
    return run_on_task(spec, "passkey", test, "passkey_mean", 0.1, on_epoch, progress)


RECIPE = Recipe(name="passkey", doc=__doc__, spec=SPEC, presets=PRESETS, aliases=ALIASES, run=run,
                metrics=tuple(METRICS), select_by="val_acc", test_split=True)
main = RECIPE.main

if __name__ == "__main__":
    RECIPE.main()

"""Recipe: MQAR as the field measures it (zoology's multi-query associative recall), any design in the memory place.

Run one trial:   python -m recipes.mqar --preset tiny
Compare designs: python -m ablations.grid --recipe mqar \\
                     --space design=single,multi,hierarchical,sliding_window,deltanet,gated_deltanet \\
                     --match-params design=single --lr-sweep 3e-4,1e-3,3e-3
Curves:          python -m ablations.grid --recipe mqar --space layer=infini,deltanet --space width=64,128,256 \\
                     --plot width

A trial trains a GPT-NeoX-shaped model whose memory place (layer 0) holds the design (``layer``: ``infini``, the
memory layer with ``memories`` memories, or a baseline) and whose other layers attend within a segment only, on
``MQARTask``: ``pairs`` key-value pairs, then each key queried once at a power-law gap (a = 0.01), keys and values
from a vocabulary of 8,192. It trains on fresh samples each epoch until validation accuracy converges or is
solved (0.99), and reports accuracy on a test split no choice saw (``recall_acc``), with the memory-use figures.

Presets (zoology's sequence length / pairs): ``tiny`` 64 / 4, ``mid`` 128 / 8, ``long`` 256 / 16; width 64.
"""

from __future__ import annotations

from typing import Callable

from pydantic import Field, model_validator

from memkit.eval.tasks.mqar import MQARTask
from memkit.models.designs import NamedDesign
from memkit.models.memory_lm import MemoryLMSpec
from memkit.spec import Spec
from memkit.training.trainer import TrainSpec, evaluate
from recipes._shared import DESIGN_TASK_ALIASES, as_dict, model_for_task, run_on_task
from recipes.recipe import Recipe


class MQARSpec(Spec):
    """Model, task and training of one MQAR trial; the model's vocabulary is the task's, and its memory segments
    (the plain layers' window) are ``segment_len`` tokens. ``design``, when set, puts a named design in the memory
    place (``memkit.models.designs.named_design``: single, multi, hierarchical or a baseline)."""

    model: MemoryLMSpec = Field(default_factory=MemoryLMSpec)
    task: MQARTask = Field(default_factory=MQARTask)
    train: TrainSpec = Field(default_factory=TrainSpec)
    design: NamedDesign | None = Field(None, description="a named design in the memory place (sets model fields)")

    @model_validator(mode="before")
    @classmethod
    def _vocab(cls, data):
        if isinstance(data, dict):
            task = as_dict(data.get("task"))
            data = model_for_task(data, task.get("vocab_size", MQARTask.model_fields["vocab_size"].default))
        return data


def preset(seq_len: int, pairs: int) -> MQARSpec:
    return MQARSpec.create(
        model=dict(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=256, max_position_embeddings=512,
                   local_window="segment", rotary_pct=0.25,
                   memory=dict(segment_len=16, update="delta", key_shift=True)),
        task=dict(seq_len=seq_len, num_pairs=pairs, num_train=2048, num_val=256, num_test=1024),
        train=dict(lr=1e-3, batch_size=64, max_epochs=64, min_epochs=10, patience=5, monitor="acc", min_delta=0.005,
                   solve_at=0.99, fresh_samples=True),
    )


def tiny() -> MQARSpec:
    """64 tokens, 4 pairs, width 64. On 2 idle CPU cores an epoch trains in 2 s and the test evaluation with its
    knock-outs takes about 12 s, so a trial takes 1-4 minutes (the 64-epoch cap)."""
    return preset(64, 4)


PRESETS: dict[str, Callable[[], MQARSpec]] = {"tiny": tiny, "mid": lambda: preset(128, 8), "long": lambda: preset(256, 16)}
SPEC = MQARSpec
ALIASES = {**DESIGN_TASK_ALIASES, "pairs": "task.num_pairs", "vocab": "task.vocab_size"}
METRICS = ["recall_acc", "val_acc", "epochs", "params", "memory_bytes", "sec_per_epoch", "ko_read_recall_acc_change"]


def run(spec: MQARSpec, on_epoch=None, progress=None) -> dict:
    """Train on fresh samples, evaluate on the test split: ``recall_acc``, ``val_acc``, costs, memory use."""
    test_data = spec.task.test_split(spec.train.seed)
    test = lambda model: {"recall_acc": evaluate(model, test_data, spec.train.batch_size)["acc"]}  # noqa: E731
    chance = 1 / (spec.task.vocab_size - spec.task.vocab_size // 2)
    return run_on_task(spec, "mqar_zoology", test, "recall_acc", chance, on_epoch, progress)


RECIPE = Recipe(name="mqar", doc=__doc__, spec=SPEC, presets=PRESETS, aliases=ALIASES, run=run, metrics=tuple(METRICS),
                select_by="val_acc", test_split=True)
main = RECIPE.main

if __name__ == "__main__":
    RECIPE.main()

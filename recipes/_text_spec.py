"""A text report recipe's spec: model, text data, training, and the evaluations to run, in two arms (``ArmSpec``:
careful, or the report's code as it ran, ``recipes/_as_run.py``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from memkit.data.corpus import TextDataSpec
from memkit.eval.tasks.passkey import PasskeyTask
from memkit.eval.tasks.recall import RecallTask
from memkit.eval.tasks.reversal import ReversalTask
from memkit.models.memory_lm import MemoryLMSpec
from memkit.spec import Spec
from memkit.training.trainer import TrainSpec
from recipes._as_run import AS_RUN_LAYER, AS_RUN_SKIPS, AS_RUN_TRAIN
from recipes._shared import as_dict

Eval = Literal["position", "reversal", "selection", "passkey", "mqar"]
ALL_EVALS: list[str] = ["position", "reversal", "selection", "passkey", "mqar"]
Arm = Literal["careful", "as_run"]

def override(data: dict, path: str, **values) -> dict:
    """``data`` with the fields at dotted ``path`` (e.g. "model.memory") updated; specs become dicts."""
    head, _, rest = path.partition(".")
    inner = as_dict(data.get(head))
    inner = override(inner, rest, **values) if rest else {**inner, **values}
    return {**data, head: inner}


class SelectionEval(Spec):
    source_tokens: int = Field(2048, ge=1, description="tokens of a domain's training text written to its memory")
    queries: int = Field(20, ge=1, description="held-out queries per domain")
    query_segments: int = Field(1, ge=1, description="query length in segments")


class ArmSpec(Spec):
    """A report recipe's spec with two arms. ``arm``: "careful" (memkit's defaults) or "as_run": the report's
    system as its code ran it (docs/design.md, the reports' options). The fields keep the careful values; ``system()``
    is the spec a trial runs: for "as_run", the recipe's ``as_run`` applied (it fixes the fields it lists,
    whatever --space gave them). So a grid over ``arm=as_run,careful`` runs the same preset both ways."""

    arm: Arm = Field("careful", description="careful: memkit's defaults; as_run: the report's code as it ran")

    @classmethod
    def as_run(cls, data: dict) -> dict:
        """The report's code, applied to the fields (a dict) of a careful spec."""
        return data

    def system(self):
        """The spec a trial runs: itself (careful), or with the report's code applied (as_run)."""
        if self.arm == "careful":
            return self
        return type(self).create(**type(self).as_run(self.model_dump()))


class TextTrialSpec(ArmSpec):
    """Model, text data, training, and the evaluations to run (``evals``); two arms (``ArmSpec``)."""

    model: MemoryLMSpec = Field(default_factory=MemoryLMSpec)
    data: TextDataSpec = Field(default_factory=TextDataSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    evals: list[Eval] = Field(ALL_EVALS, description="evaluations beside perplexity")
    reversal: ReversalTask = Field(default_factory=ReversalTask)
    selection: SelectionEval = Field(default_factory=SelectionEval)
    passkey: PasskeyTask = Field(default_factory=PasskeyTask)
    mqar: RecallTask = Field(default_factory=RecallTask)
    recall_train: TrainSpec = Field(default_factory=TrainSpec, description="training of the passkey and MQAR models")

    @classmethod
    def as_run(cls, data: dict) -> dict:
        """The report's code, applied to the fields of a careful spec: the reports' memory layer, optimiser,
        reversal protocol; no passkey/MQAR (see ``AS_RUN_SKIPS``). Report recipes refine it."""
        data = override(data, "model", documents="run_together")  # memory crossed documents in the reports
        data = override(data, "model.memory", **AS_RUN_LAYER)
        data = override(data, "train", **AS_RUN_TRAIN)
        data = override(data, "reversal", kind="reports_triples", eval_order="forward_then_backward")
        return {**data, "evals": [e for e in data.get("evals", ALL_EVALS) if e not in AS_RUN_SKIPS]}

    @model_validator(mode="before")
    @classmethod
    def _derive(cls, data):
        if isinstance(data, dict):  # MQAR segments are the memory layer's
            model, mqar = as_dict(data.get("model")), as_dict(data.get("mqar"))
            mqar["segment_len"] = L = as_dict(model.get("memory")).get("segment_len", 64)
            mqar.setdefault("keys_per_group", max(16, L // 2))  # a segment's keys are distinct
            data = {**data, "mqar": mqar}
        return data

    @model_validator(mode="after")
    def _fits(self):
        L = self.model.memory.segment_len
        if self.model.memory.segmentation == "whole_call":  # a call is one segment, whatever its length
            return self
        if self.passkey.seq_len % L:
            raise ValueError(f"passkey.seq_len ({self.passkey.seq_len}) must be a multiple of segment_len ({L})")
        if self.model.local_window == "segment" and self.data.seq_len % L:
            raise ValueError(f"data.seq_len ({self.data.seq_len}) must be a multiple of segment_len ({L}) "
                             "with local_window='segment'")
        return self


def preflight(spec) -> None:
    """The grid calls this before any trial: the text source must be readable here, and the system the
    trial runs (its arm applied) must be a valid spec."""
    spec.data.check_available()
    spec.system()

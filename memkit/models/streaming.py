"""What memkit's two language models share as streams: a state carried between calls whose ``detach`` and
``select`` are written once over its fields (``StreamState``), and the forward's tail (``StreamingLM``):
documents restarted at each end-of-document id, the model's own ``_stream`` run, then the loss or the logits.

A model fed a sequence in pieces, each call with the state the last returned, computes what one call does.

Axes: B batch, T tokens, D hidden, V vocab.
"""

from __future__ import annotations

import dataclasses

import torch

from memkit.models.documents import by_document
from memkit.models.generation import GenerateMixin
from memkit.models.losses import lm_loss
from memkit.models.pretrained import LMOutput, SpecModel


def _over(value, tensor_fn, method: str, *args):
    """``value`` with ``tensor_fn`` applied to each tensor in it: a tensor; a tuple of values; an object with its own
    ``method`` (a block's state: it knows how its parts split); a dataclass, field by field; anything else (None, a
    count) as it is."""
    if isinstance(value, torch.Tensor):
        return tensor_fn(value)
    if isinstance(value, tuple):
        return tuple(_over(v, tensor_fn, method, *args) for v in value)
    if hasattr(value, method):
        return getattr(value, method)(*args)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: _over(getattr(value, f.name), tensor_fn, method, *args)
                                             for f in dataclasses.fields(value) if f.init})
    return value


class StreamState:
    """Base of a model's state (a frozen dataclass): ``detach`` and ``select`` over every field, tensors and the
    blocks' states within."""

    def detach(self):
        """The same state cut from the graph (truncated backprop between calls)."""
        return _over_fields(self, torch.Tensor.detach, "detach")

    def select(self, rows: torch.Tensor):
        """The state of the rows ``rows`` (LongTensor of batch indices) only."""
        return _over_fields(self, lambda t: t[rows], "select", rows)


def _over_fields(state, tensor_fn, method: str, *args):
    return dataclasses.replace(state, **{f.name: _over(getattr(state, f.name), tensor_fn, method, *args)
                                         for f in dataclasses.fields(state) if f.init})


class StreamingLM(SpecModel, GenerateMixin):
    """A memkit language model as a stream: a subclass gives ``_stream(ids [B,T], state, **extra) -> (final hidden
    [B,T,D], state)`` continuing each row's stream, and ``_head`` [...,D] -> [...,V]; its ``forward`` calls
    ``self.stream_output``. ``documents`` and ``eos_token_id`` say whether a row's documents restart."""

    def stream_output(self, input_ids: torch.Tensor, state, labels: torch.Tensor | None,
                      attention_mask: torch.Tensor | None, documents: str | None, targets: torch.Tensor | None,
                      loss_chunk_rows: int, **extra) -> LMOutput:
        """The forward's tail: an unpadded input checked, ``_stream`` run (document by document when they restart),
        then ``LMOutput`` with the loss from the scored positions (``targets``: no logits) or the logits and
        transformers' shifted loss (``labels``)."""
        self.check_plain_input(attention_mask)
        step = lambda ids, st: self._stream(ids, st, **extra)  # noqa: E731
        if self.restarts_documents(documents):
            hidden, state = by_document(step, input_ids, state, self.eos_token_id)
        else:
            hidden, state = step(input_ids, state)
        loss, logits = lm_loss(hidden, self._head, labels, targets, loss_chunk_rows)
        return LMOutput(loss=loss, logits=logits, state=state)

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

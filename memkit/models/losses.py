"""A language model's losses from its final hidden states: transformers' shifted loss over the logits
(``labels``), and memkit's training loss with the head run only at the scored positions (``targets``).

Axes: B batch, T tokens, D hidden, V vocab.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from memkit.ops.cross_entropy import scored_cross_entropy

IGNORE = -100  # a target or label that is not scored


def shifted_loss(logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor | None:
    """transformers' causal LM loss: labels [B,T] aligned with the inputs, position t scored on token t+1;
    -100 is not scored."""
    if labels is None:
        return None
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=IGNORE)


def lm_loss(hidden: torch.Tensor, head: Callable[[torch.Tensor], torch.Tensor], labels: torch.Tensor | None,
            targets: torch.Tensor | None, chunk_rows: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(loss, logits) from the final hidden states [B,T,D] and the ``head`` [...,D] -> [...,V].

    With ``targets`` [B,T] (aligned with the logits): the mean NLL of the scored positions, the head run only there
    (in chunks of ``chunk_rows``, recomputed in backward, past that many), and no logits. Else the logits [B,T,V]
    and, with ``labels``, transformers' shifted loss (None without)."""
    if targets is not None:
        return scored_cross_entropy(hidden, targets, head, chunk_rows), None
    logits = head(hidden)
    return shifted_loss(logits, labels), logits

"""Multi-query associative recall as the field measures it (Arora et al. 2023, "Zoology"; its MQAR).

A sample opens with ``num_pairs`` key-value pairs ``k1 v1 k2 v2 ...``; the rest of the sequence holds each key once
more, as a query, at a gap drawn from a power law (p(i) ∝ a·i^(a−1) over the even offsets i = 1..slots, a =
``power_a`` = 0.01: most queries come soon after the pairs, a long tail far later). At a query key the target is
its value; every other target is -100. Keys come from the lower half of the vocabulary (id 0 left out), values from
the upper half; the positions between queries hold random tokens of the whole vocabulary (``random_fill``), so a
model cannot find a query by its neighbours.

Axes: n samples, T tokens (``seq_len``), P pairs.
"""

from __future__ import annotations

import torch
from pydantic import Field, model_validator

from memkit.eval.tasks.recall import IGNORE, SeededSplits
from memkit.spec import Spec


class MQARTask(SeededSplits, Spec):
    """Config and generator of zoology-style MQAR. ``generate(n, seed) -> (ids [n,T], targets [n,T])``."""

    vocab_size: int = Field(8192, ge=8, description="token ids: keys in [1, V/2), values in [V/2, V)")
    seq_len: int = Field(64, ge=4, description="tokens per sample")
    num_pairs: int = Field(4, ge=1, description="key-value pairs, each queried once")
    power_a: float = Field(0.01, gt=0, le=1, description="the power law of the query gaps")
    random_fill: bool = Field(True, description="random tokens between queries (else 0)")
    num_train: int = Field(2048, ge=1, description="training samples (per epoch, with fresh samples)")
    num_val: int = Field(512, ge=1, description="validation samples (early stopping, model choice)")
    num_test: int = Field(1024, ge=1, description="test samples (reported figures; never used for a choice)")

    @model_validator(mode="after")
    def _fits(self):
        slots = (self.seq_len - 2 * self.num_pairs) // 2
        if slots < self.num_pairs:
            raise ValueError(f"seq_len ({self.seq_len}) leaves {slots} query slots after {self.num_pairs} pairs; give "
                             f"seq_len >= {4 * self.num_pairs}")
        if self.num_pairs >= self.vocab_size // 2 - 1:
            raise ValueError(f"num_pairs ({self.num_pairs}) needs more distinct keys than vocab_size "
                             f"({self.vocab_size}) gives")
        return self

    def generate(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        P, T, half = self.num_pairs, self.seq_len, self.vocab_size // 2
        keys = 1 + torch.rand(n, half - 1, generator=g).argsort(-1)[:, :P]  # distinct keys per sample
        values = half + torch.randint(0, self.vocab_size - half, (n, P), generator=g)
        slots = (T - 2 * P) // 2
        i = torch.arange(1, slots + 1, dtype=torch.float64)
        weights = (self.power_a * i ** (self.power_a - 1)).expand(n, slots)
        gaps = torch.multinomial(weights, P, replacement=False, generator=g)  # [n,P] slots, distinct
        if self.random_fill:
            ids = torch.randint(0, self.vocab_size, (n, T), generator=g)
        else:
            ids = torch.zeros(n, T, dtype=torch.long)
        ids[:, : 2 * P : 2], ids[:, 1 : 2 * P : 2] = keys, values
        where = 2 * P + 2 * gaps  # a query key sits at an even offset after the pairs
        ids.scatter_(1, where, keys)
        targets = torch.full((n, T), IGNORE, dtype=torch.long)
        targets.scatter_(1, where, values)  # at the query key, predict its value
        return ids, targets

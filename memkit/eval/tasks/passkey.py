"""Passkey retrieval by depth: a key of digits hidden in filler, asked for at the end.

A sample of ``seq_len`` tokens is repeating filler (a fixed "sentence" of ``filler_len`` tokens,
as in the usual passkey test), the needle ``KEY d1 .. dk KEY`` starting at a fraction ``depth`` of
the room before the question (0 = the very start, 1 = just before the question), and the question
``ASK d1 .. dk`` at the end. Scored targets: at ASK predict d1, at d_i predict d_{i+1}; everything
else is -100. A sample counts as retrieved when every digit is right (greedy decoding's exact match).

Token ids: 0 unused, 1..filler_len filler, then 10 digits, then KEY and ASK.
"""

from __future__ import annotations

import torch
from pydantic import Field, field_validator, model_validator

from memkit.eval.tasks.recall import stream
from memkit.models.inference import batch_logits
from memkit.spec import Spec

IGNORE = -100


class PasskeyTask(Spec):
    seq_len: int = Field(256, ge=16)
    digits: int = Field(5, ge=1, le=32, description="passkey length")
    filler_len: int = Field(24, ge=1, description="tokens of the repeated filler sentence")
    depths: list[float] = Field([0.0, 0.25, 0.5, 0.75, 1.0], description="needle depths reported (fractions)")
    num_train: int = Field(2048, ge=1)
    num_val: int = Field(100, ge=1, description="validation samples per depth")

    @field_validator("depths")
    @classmethod
    def _depths(cls, v: list[float]) -> list[float]:
        if not v or any(not 0.0 <= d <= 1.0 for d in v):
            raise ValueError(f"depths: fractions in [0, 1] expected, got {v}")
        return v

    @model_validator(mode="after")
    def _fits(self):
        if self.room < 0:
            raise ValueError(f"seq_len ({self.seq_len}) too short for a {self.digits}-digit passkey and its question")
        return self

    @property
    def room(self) -> int:
        """Positions the needle can start at, minus one."""
        return self.seq_len - (self.digits + 2) - (self.digits + 1)

    @property
    def digit0(self) -> int:
        return 1 + self.filler_len

    @property
    def key_id(self) -> int:
        return self.digit0 + 10

    @property
    def ask_id(self) -> int:
        return self.key_id + 1

    @property
    def vocab_size(self) -> int:
        return self.ask_id + 1

    def needle_start(self, depth: float) -> int:
        return round(depth * self.room)

    def generate(self, n: int, seed: int, depth: float | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(ids [n,T], targets [n,T], needle start [n]); ``depth`` None draws depths uniformly."""
        g = torch.Generator().manual_seed(seed)
        T, k = self.seq_len, self.digits
        ids = (torch.arange(T) % self.filler_len + 1).repeat(n, 1)
        targets = torch.full((n, T), IGNORE, dtype=torch.long)
        key = self.digit0 + torch.randint(0, 10, (n, k), generator=g)
        if depth is None:
            start = torch.randint(0, self.room + 1, (n,), generator=g)
        else:
            start = torch.full((n,), self.needle_start(depth))
        rows = torch.arange(n)
        ids[rows, start] = self.key_id
        for i in range(k):
            ids[rows, start + 1 + i] = key[:, i]
        ids[rows, start + 1 + k] = self.key_id
        q = T - (k + 1)
        ids[:, q] = self.ask_id
        ids[:, q + 1 :] = key
        targets[:, q : q + k] = key  # at ASK predict d1, ..., at d_{k-1} predict d_k
        return ids, targets, start

    def splits(self, seed: int = 0):
        """(train, val): train with uniform depths; val is ``num_val`` samples at each listed depth."""
        tr = self.generate(self.num_train, seed * 2 + 1)[:2]
        parts = [self.generate(self.num_val, seed * 2 + 2 + 1000 * i, d)[:2] for i, d in enumerate(self.depths)]
        return tr, (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))

    def val_by_depth(self, seed: int = 0) -> dict[float, tuple[torch.Tensor, torch.Tensor]]:
        """The validation samples, per depth."""
        return {d: self.generate(self.num_val, seed * 2 + 2 + 1000 * i, d)[:2] for i, d in enumerate(self.depths)}

    def test_by_depth(self, seed: int = 0) -> dict[float, tuple[torch.Tensor, torch.Tensor]]:
        """``num_val`` test samples per depth, from streams no training epoch or validation draws."""
        return {d: self.generate(self.num_val, stream(seed, "test", 1 + i), d)[:2] for i, d in enumerate(self.depths)}

    def train_epoch(self, seed: int, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Fresh training samples for ``epoch`` (1 = those of ``splits``), needles at uniform depths."""
        return self.generate(self.num_train, stream(seed, "train", epoch))[:2]


def retrieved(model, data: tuple[torch.Tensor, torch.Tensor], batch_size: int = 32) -> torch.Tensor:
    """Per sample: every scored target is the model's argmax (bool [n])."""
    return torch.cat([((logits.argmax(-1) == y) | (y == IGNORE)).all(1).cpu()
                      for logits, y in batch_logits(model, data, batch_size)])


def accuracy_by_depth(model, task: PasskeyTask, seed: int = 0, batch_size: int = 32,
                      split: str = "val") -> dict[float, float]:
    """{depth: share of passkeys retrieved exactly} on the ``split`` ("val" or "test") samples."""
    by_depth = task.test_by_depth(seed) if split == "test" else task.val_by_depth(seed)
    return {d: float(retrieved(model, data, batch_size).float().mean()) for d, data in by_depth.items()}

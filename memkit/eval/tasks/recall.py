"""Long-range associative recall: key-value pairs written early, queried segments later.

A sample is ``write_segments`` segments of ``k v k v ...`` pairs followed by
``query_segments`` segments of ``k v`` pairs whose keys were written earlier. Only the query
answers are scored (target at a query key's position = its value); every other target is
-100. Keys of one write segment come from one key group, so a memory that holds one
segment has a distinct summary (landmark) that a query can select. Queries never repeat a
key inside a query segment, so attention inside a segment cannot answer: the answer lies
one or more segments back, reachable only through memory.

Token ids: 0 filler, then ``num_groups × keys_per_group`` keys, then ``num_values`` values.
"""

from __future__ import annotations

import torch
from pydantic import Field, model_validator

from memkit.models.inference import batch_logits
from memkit.spec import Spec

IGNORE = -100


class SeededSplits:
    """Train, val and test draws of a synthetic task from ``generate(n, seed)``, each split a generator stream of
    its own (``stream``); ``num_train``, ``num_val``, ``num_test`` say how many."""

    def splits(self, seed: int = 0):
        """(train, val) tensors; val uses a different seed stream from train."""
        return self.generate(self.num_train, stream(seed, "train")), self.generate(self.num_val, stream(seed, "val"))

    def test_split(self, seed: int = 0):
        """Test tensors: a stream of their own, never drawn for training or validation."""
        return self.generate(self.num_test, stream(seed, "test"))

    def train_epoch(self, seed: int, epoch: int):
        """Fresh training samples for ``epoch`` (1 = those of ``splits``): ``num_train`` new draws."""
        return self.generate(self.num_train, stream(seed, "train", epoch))


class RecallTask(SeededSplits, Spec):
    """Config and generator of the recall task (the config lives beside its generator)."""

    segment_len: int = Field(16, ge=2, description="tokens per segment (even)")
    write_segments: int = Field(8, ge=1, description="segments of pairs to remember")
    query_segments: int = Field(2, ge=1, description="segments of queries after them")
    num_groups: int = Field(8, ge=1, description="key groups (each write segment uses one)")
    keys_per_group: int = Field(16, ge=1)
    num_values: int = Field(64, ge=2)
    num_train: int = Field(4096, ge=1, description="training samples (per epoch, with fresh samples)")
    num_val: int = Field(512, ge=1, description="validation samples (early stopping, model choice)")
    num_test: int = Field(512, ge=1, description="test samples (reported figures; never used for a choice)")

    @model_validator(mode="after")
    def _fits(self):
        pairs = self.segment_len // 2
        if self.segment_len % 2:
            raise ValueError(f"segment_len must be even (pairs), got {self.segment_len}")
        if self.keys_per_group < pairs:
            raise ValueError(f"keys_per_group ({self.keys_per_group}) must be >= segment_len/2 ({pairs})")
        if self.num_groups < self.write_segments:
            raise ValueError(f"num_groups ({self.num_groups}) must be >= write_segments ({self.write_segments})")
        return self

    @property
    def seq_len(self) -> int:
        return (self.write_segments + self.query_segments) * self.segment_len

    @property
    def vocab_size(self) -> int:
        return 1 + self.num_groups * self.keys_per_group + self.num_values

    def first_value_id(self) -> int:
        return 1 + self.num_groups * self.keys_per_group

    def generate(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n samples: (input_ids [n,T], targets [n,T]); targets are -100 except at query keys."""
        return self.generate_with_distance(n, seed)[:2]

    def generate_with_distance(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(input_ids, targets, distance) [n,T]: distance is how many segments back the queried
        pair was written (1 = the segment just before), -1 where nothing is scored."""
        g = torch.Generator().manual_seed(seed)
        P, L, W = self.segment_len // 2, self.segment_len, self.write_segments
        T = self.seq_len
        ids = torch.zeros(n, T, dtype=torch.long)
        targets = torch.full((n, T), IGNORE, dtype=torch.long)
        distance = torch.full((n, T), -1, dtype=torch.long)

        groups = torch.rand(n, self.num_groups, generator=g).argsort(-1)[:, :W]  # distinct group per segment
        slot = torch.rand(n, W, self.keys_per_group, generator=g).argsort(-1)[..., :P]  # distinct keys
        keys = 1 + groups[..., None] * self.keys_per_group + slot  # [n,W,P]
        values = self.first_value_id() + torch.randint(0, self.num_values, (n, W, P), generator=g)
        written = torch.stack((keys, values), dim=-1).reshape(n, W * L)
        ids[:, : W * L] = written

        flat_k, flat_v = keys.reshape(n, W * P), values.reshape(n, W * P)
        for s in range(self.query_segments):
            pick = torch.rand(n, W * P, generator=g).argsort(-1)[:, :P]  # distinct keys in this segment
            qk, qv = flat_k.gather(1, pick), flat_v.gather(1, pick)
            start = (W + s) * L
            ids[:, start : start + L] = torch.stack((qk, qv), dim=-1).reshape(n, L)
            targets[:, start : start + L : 2] = qv  # at the key, predict its value
            distance[:, start : start + L : 2] = W + s - pick // P
        return ids, targets, distance


def stream(seed: int, split: str, epoch: int = 1) -> int:
    """The generator seed of a split. Train (epoch 1) and val keep their historical streams
    (2·seed + 1, 2·seed + 2); test and later training epochs live above 2^40, so no two
    (seed, split, epoch) share a stream for seeds below 2^39 and epochs below 2^20."""
    if split == "val":
        return seed * 2 + 2
    if split == "train" and epoch == 1:
        return seed * 2 + 1
    part = {"train": 0, "test": 1}[split]
    return (1 << 40) + ((seed * 2 + part) << 20) + epoch


def accuracy_by_distance(model, task: RecallTask, n: int | None = None, seed: int = 0,
                         batch_size: int = 32, split: str = "val") -> dict[int, float]:
    """{segments back: share of queries answered}, on ``n`` samples (default ``num_val``) drawn
    from the ``split`` ("val" or "test") stream of ``seed``."""
    ids, targets, dist = task.generate_with_distance(n or task.num_val, stream(seed, split))
    hit = torch.cat([(logits.argmax(-1) == y).cpu() for logits, y in batch_logits(model, (ids, targets), batch_size)])
    return {int(d): float(hit[dist == d].float().mean()) for d in dist.unique().tolist() if d > 0}

"""MemoryStore: the compressive matrix memory of Infini-attention (arXiv:2404.07143).

The state is an explicit value (``MemoryState``), one per sequence in the batch, never a
hidden module buffer: streaming, save/load and tests stay simple.

Axes: B batch, N memories, H heads, T tokens, d head dim.
State shapes: M [B,H,d,d] and z [B,H,d] for one memory; [B,N,H,d,d] and [B,N,H,d] for N > 1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from memkit.ops.memory import read_memories, segment_write, state_dtype
from memkit.spec import Spec

Update = Literal["linear", "delta"]


@dataclass(frozen=True)
class MemoryState:
    """Memory contents for a batch of sequences.

    M: [B,H,d,d] (N = 1) or [B,N,H,d,d]; z: [B,H,d] or [B,N,H,d] (z = Σσ(k), the memory_norm);
    writes: how many segment writes built it (round-robin uses it to pick the next memory).
    """

    M: torch.Tensor
    z: torch.Tensor
    writes: int = 0
    # Memories known to be empty in every row (a hint for the write; an empty set claims nothing):
    # a delta write into an empty memory retrieves exactly 0, so that matmul can be skipped.
    empty: frozenset = frozenset()

    @property
    def num_memories(self) -> int:
        return 1 if self.M.dim() == 4 else self.M.shape[1]

    @property
    def nbytes(self) -> int:
        """Bytes of the memory proper (M and z) for the whole batch."""
        return self.M.nbytes + self.z.nbytes

    @property
    def nbytes_per_sequence(self) -> int:
        return self.nbytes // self.M.shape[0]

    # The ops work on the N-axis form; these convert without copying.
    def stacked(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(M [B,N,H,d,d], z [B,N,H,d]) whatever N is."""
        if self.M.dim() == 4:
            return self.M.unsqueeze(1), self.z.unsqueeze(1)
        return self.M, self.z

    def unstacked(self, M: torch.Tensor, z: torch.Tensor, writes: int) -> "MemoryState":
        if self.M.dim() == 4:
            M, z = M.squeeze(1), z.squeeze(1)
        return replace(self, M=M, z=z, writes=writes)

    def written(self) -> torch.Tensor:
        """Bool [B,N]: which memories hold anything (σ > 0, so any write makes z > 0)."""
        _, z = self.stacked()
        return z.abs().sum(dim=(-1, -2)) > 0

    def detach(self) -> "MemoryState":
        return replace(self, M=self.M.detach(), z=self.z.detach())

    def select(self, rows: torch.Tensor) -> "MemoryState":
        """The memories of the sequences ``rows`` (LongTensor of batch indices) only."""
        return replace(self, M=self.M[rows], z=self.z[rows])

    def to(self, *args, **kwargs) -> "MemoryState":
        return replace(self, M=self.M.to(*args, **kwargs), z=self.z.to(*args, **kwargs))

    def save(self, path: str | os.PathLike) -> None:
        torch.save({"M": self.M, "z": self.z, "writes": self.writes}, path)

    @classmethod
    def load(cls, path: str | os.PathLike, map_location="cpu") -> "MemoryState":
        data = torch.load(path, map_location=map_location, weights_only=True)
        return cls(M=data["M"], z=data["z"], writes=int(data["writes"]))


class MemoryStore(nn.Module):
    """Read and write compressive memories. No parameters: all content lives in ``MemoryState``.

    read:   A_mem = σ(q) M / (σ(q)·z + ε)
    linear: M ← M + σ(K)ᵀ V;  delta: M ← M + σ(K)ᵀ (V − σ(K) M / (σ(K)·z + ε));  z ← z + Σ σ(K)
    """

    def __init__(self, num_heads: int, head_dim: int, update: Update = "linear", eps: float = 1e-6, num_memories: int = 1):
        super().__init__()
        self.num_heads, self.head_dim, self.update = num_heads, head_dim, update
        self.eps, self.num_memories = eps, num_memories

    def init_state(self, batch_size: int, device=None, dtype=torch.float32) -> MemoryState:
        """Empty memories: zeros, M [B,H,d,d] (+N axis when N > 1), z [B,H,d]; fp32 for half-precision
        ``dtype`` (the memory accumulates in full precision whatever the activations')."""
        dtype = state_dtype(dtype)
        lead = (batch_size,) if self.num_memories == 1 else (batch_size, self.num_memories)
        H, d = self.num_heads, self.head_dim
        return MemoryState(
            M=torch.zeros(*lead, H, d, d, device=device, dtype=dtype),
            z=torch.zeros(*lead, H, d, device=device, dtype=dtype),
            empty=frozenset(range(self.num_memories)),
        )

    def state_nbytes(self, dtype=torch.float32) -> int:
        """Memory bytes per sequence: N × H × (d·d + d) × dtype size."""
        size = torch.tensor([], dtype=dtype).element_size()
        return self.num_memories * self.num_heads * (self.head_dim**2 + self.head_dim) * size

    def write(self, state: MemoryState, k: torch.Tensor, v: torch.Tensor, memory=None, checked: bool = True) -> MemoryState:
        """Write one segment. k, v: [B,H,T,d]. Returns the new state.

        ``memory``: which memory each row writes to, an int or LongTensor [B]. By default
        round-robin: memory ``state.writes mod N`` (always 0 for a single memory). ``checked=False``
        skips the range check of a LongTensor (it reads the values on the host: a sync on a GPU); the
        layer passes targets it computed itself.
        """
        self._check(k, "k", state)
        self._check(v, "v", state)
        M, z = state.stacked()
        B = M.shape[0]
        if memory is None:
            memory = state.writes % M.shape[1]
        if isinstance(memory, torch.Tensor) and memory.dim() == 0:
            memory = int(memory)
        if isinstance(memory, int):  # one memory for every row: the slice path
            if not 0 <= memory < M.shape[1]:
                raise ValueError(f"memory: index out of range 0..{M.shape[1] - 1}")
            target = memory
        else:
            target = torch.as_tensor(memory, device=M.device, dtype=torch.long).expand(B)
            if checked and ((target < 0).any() or (target >= M.shape[1]).any()):
                raise ValueError(f"memory: index out of range 0..{M.shape[1] - 1}")
        fresh = isinstance(target, int) and target in state.empty
        M, z = segment_write(M, z, k, v, target, self.eps, self.update, fresh=fresh)
        # a per-row target would need its values on the host to say which memory is still empty
        empty = state.empty - {target} if isinstance(target, int) else frozenset()
        return replace(state.unstacked(M, z, state.writes + 1), empty=empty)

    def read(self, state: MemoryState, q: torch.Tensor) -> torch.Tensor:
        """q [B,H,T,d] -> [B,H,T,d] for one memory, [B,N,H,T,d] (one read per memory) for N > 1."""
        self._check(q, "q", state)
        M, z = state.stacked()
        out = read_memories(M, z, q, self.eps)
        return out.squeeze(1) if state.M.dim() == 4 else out

    def _check(self, t: torch.Tensor, name: str, state: MemoryState) -> None:
        want = (state.M.shape[0], self.num_heads, self.head_dim)
        if t.dim() != 4 or (t.shape[0], t.shape[1], t.shape[3]) != want:
            raise ValueError(f"{name}: expected shape [B={want[0]}, H={want[1]}, T, d={want[2]}], got {list(t.shape)}")


class MemoryStoreSpec(Spec):
    """Settings of a ``MemoryStore``."""

    num_heads: int = Field(8, ge=1, description="attention heads")
    head_dim: int = Field(64, ge=1, description="dimension per head")
    update: Update = Field("linear", description="write rule: linear or delta")
    eps: float = Field(1e-6, gt=0, le=1e-1, description="guard of every division")
    num_memories: int = Field(1, ge=1, le=1024, description="number of memories N")

    def build(self) -> MemoryStore:
        return MemoryStore(**self.model_dump())

"""Landmark: one vector ℓ_n per memory that a query is matched against (``Selector``).

Types:
- ``memory_norm``: ℓ_n = z_n = Σσ(k) (free: a by-product of writing; no parameters);
- ``memory_norm_normalised``: ℓ_n = z_n / ‖z_n‖ (the direction only: selection scores no longer
  grow with every write, so the softmax does not harden as a memory fills);
- ``mean_k``: the running mean of the raw keys written to memory n;
- ``learned``: a Linear(d → d) map of z_n, shared across heads (d² parameters: 4,096 at d = 64);
- ``hsa``: a ChunkEncoder (arXiv:2510.17196, as used by HSA, arXiv:2511.23319): a 2-layer
  bidirectional Transformer encoder over [CLS] + the keys of each written segment; the [CLS]
  output is the chunk's landmark. The keys enter as means of runs of ``hsa_pool`` keys (8 by
  default; 1 = every key), which cuts the encoder's cost by that factor. A memory holding several
  chunks takes the mean of its chunks' landmarks (every chunk counts equally, whatever its position);
``mean_k`` and ``hsa`` keep running sums in the layer state (``lm_sum`` [B,N,H,d], ``lm_count``
[B,N]), so streaming stays exact. Report 000's HSA over each memory's last raw keys is
``memkit.blocks.reports.landmark.LastKeysLandmark``.
Axes: B batch, N memories, H heads, T tokens, d head dim.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

LandmarkType = Literal["memory_norm", "memory_norm_normalised", "mean_k", "learned", "hsa"]


class ChunkEncoder(nn.Module):
    """[CLS] + keys of a chunk -> the [CLS] output. keys [B,H,T,d] -> [B,H,d] (the heads share it).

    ``pad`` (bool [B,H,T], True = not a key) leaves positions out of the attention. memkit's ``hsa``
    uses it pre-norm, without dropout or projection; report 000's (``LastKeysLandmark``) post-norm with both.
    """

    def __init__(self, dim: int, layers: int = 2, heads: int = 4, pool: int = 1, post_norm: bool = False,
                 dropout: float = 0.0, projection: bool = False, cls_std: float | None = None):
        super().__init__()
        self.pool = pool
        heads = max(h for h in range(1, heads + 1) if dim % h == 0)
        self.cls = nn.Parameter(torch.randn(dim) * (dim**-0.5 if cls_std is None else cls_std))
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=4 * dim, dropout=dropout, batch_first=True,
                                           norm_first=not post_norm)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.proj = nn.Linear(dim, dim, bias=False) if projection else None

    def forward(self, keys: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        if self.pool > 1:  # mean of each run of `pool` keys: pool× fewer tokens through the encoder
            B, H, T, d = keys.shape
            extra = -T % self.pool
            summed = F.pad(keys, (0, 0, 0, extra)).unflatten(2, (-1, self.pool)).sum(3)
            counts = torch.full((summed.shape[2],), float(self.pool), device=keys.device, dtype=keys.dtype)
            counts[-1] = self.pool - extra
            keys = summed / counts[:, None]
        B, H, T, d = keys.shape
        x = torch.cat((self.cls.expand(B * H, 1, d).to(keys.dtype), keys.reshape(B * H, T, d)), dim=1)
        mask = None
        if pad is not None:  # [CLS] is never masked, so an empty chunk still encodes to a finite vector
            mask = torch.cat((pad.new_zeros(B * H, 1), pad.reshape(B * H, T)), dim=1)
        out = self.encoder(x, src_key_padding_mask=mask)[:, 0]
        if self.proj is not None:
            out = self.proj(out)
        return out.reshape(B, H, d)


class Landmark(nn.Module):
    """Summaries of N memories. ``landmarks(z, lm_sum, lm_count) -> [B,N,H,d]``."""

    def __init__(self, type: LandmarkType, head_dim: int, hsa_pool: int = 8):
        super().__init__()
        self.type = type
        self.map = nn.Linear(head_dim, head_dim, bias=False) if type == "learned" else None
        self.encoder = ChunkEncoder(head_dim, pool=hsa_pool) if type == "hsa" else None

    @property
    def keeps_sums(self) -> bool:
        return self.type in ("mean_k", "hsa")

    @property
    def sums_add_up(self) -> bool:
        """Whether the state after several writes is the start plus the sum of what each added (so the
        writes of a call can be one cumulative sum)."""
        return True

    def init_sums(self, B: int, N: int, H: int, d: int, device=None, dtype=torch.float32):
        """Empty (lm_sum, lm_count) for B rows of N memories."""
        return (torch.zeros(B, N, H, d, device=device, dtype=dtype),
                torch.zeros(B, N, device=device, dtype=torch.long))

    def chunk_summary(self, k: torch.Tensor) -> tuple[torch.Tensor, int]:
        """What written keys k [B,H,L,d] add: ([B,H,d], count)."""
        if self.type == "mean_k":
            return k.sum(2), k.shape[2]
        return self.encoder(k), 1

    def add(self, lm_sum: torch.Tensor, lm_count: torch.Tensor, onehot: torch.Tensor, adds: torch.Tensor,
            count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Fold ``chunk_summary``'s (adds [B,H,...], count) into the memory each row wrote (onehot [B,N])."""
        grow = onehot[:, :, None, None].to(adds.dtype)
        return lm_sum + grow * adds[:, None], lm_count + onehot * count

    def landmarks(self, z: torch.Tensor, lm_sum: torch.Tensor | None, lm_count: torch.Tensor | None) -> torch.Tensor:
        if self.type == "memory_norm":
            return z
        if self.type == "memory_norm_normalised":
            return z / z.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # an unwritten z = 0 stays 0
        if self.type == "learned":
            return self.map(z)
        return lm_sum / lm_count.clamp(min=1)[:, :, None, None].to(lm_sum.dtype)

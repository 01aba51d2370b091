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
- ``hsa_last_keys``: report 000's HSA as its code ran it (DESIGN.md, last section): one ChunkEncoder
  PER HEAD (post-norm, 4 attention heads, feed-forward 4d, dropout ``hsa_dropout``, [CLS] initialised
  randn·0.02, an output projection Linear(d, d) without bias) over the raw keys, detached, of which
  each memory keeps only the last ``hsa_keys``; every memory is re-encoded at every read (the
  reports' +70% time). 104,128 parameters per head at d = 64.

``mean_k`` and ``hsa`` keep running sums in the layer state (``lm_sum`` [B,N,H,d], ``lm_count``
[B,N]), so streaming stays exact; ``hsa_last_keys`` keeps the keys themselves (``lm_sum``
[B,N,H,K,d], newest last, and ``lm_count`` [B,N], how many of the K are real).
Axes: B batch, N memories, H heads, T tokens, K kept keys, d head dim.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

LandmarkType = Literal["memory_norm", "memory_norm_normalised", "mean_k", "learned", "hsa", "hsa_last_keys"]


class ChunkEncoder(nn.Module):
    """[CLS] + keys of a chunk -> the [CLS] output. keys [B,H,T,d] -> [B,H,d] (the heads share it).

    ``pad`` (bool [B,H,T], True = not a key) leaves positions out of the attention. memkit's ``hsa``
    uses it pre-norm, without dropout or projection; ``hsa_last_keys`` post-norm with both, as report 000.
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

    def __init__(self, type: LandmarkType, head_dim: int, hsa_pool: int = 8, num_heads: int = 1,
                 hsa_keys: int = 256, hsa_dropout: float = 0.0):
        super().__init__()
        self.type, self.hsa_keys = type, hsa_keys
        self.map = nn.Linear(head_dim, head_dim, bias=False) if type == "learned" else None
        self.encoder = ChunkEncoder(head_dim, pool=hsa_pool) if type == "hsa" else None
        self.head_encoders = nn.ModuleList(
            ChunkEncoder(head_dim, post_norm=True, dropout=hsa_dropout, projection=True, cls_std=0.02)
            for _ in range(num_heads)) if type == "hsa_last_keys" else None

    @property
    def keeps_sums(self) -> bool:
        return self.type in ("mean_k", "hsa", "hsa_last_keys")

    def init_sums(self, B: int, N: int, H: int, d: int, device=None, dtype=torch.float32):
        """Empty (lm_sum, lm_count) for B rows of N memories."""
        lead = (B, N, H, self.hsa_keys) if self.type == "hsa_last_keys" else (B, N, H)
        return (torch.zeros(*lead, d, device=device, dtype=dtype),
                torch.zeros(B, N, device=device, dtype=torch.long))

    def chunk_summary(self, k: torch.Tensor) -> tuple[torch.Tensor, int]:
        """What written keys k [B,H,L,d] add: ([B,H,d], count) for sums; ([B,H,min(L,K),d], count) of
        keys for ``hsa_last_keys`` (raw and detached, as the reports')."""
        if self.type == "mean_k":
            return k.sum(2), k.shape[2]
        if self.type == "hsa_last_keys":
            kept = k[:, :, -self.hsa_keys :].detach()
            return kept, kept.shape[2]
        return self.encoder(k), 1

    def add(self, lm_sum: torch.Tensor, lm_count: torch.Tensor, onehot: torch.Tensor, adds: torch.Tensor,
            count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Fold ``chunk_summary``'s (adds [B,H,...], count) into the memory each row wrote (onehot [B,N])."""
        if self.type != "hsa_last_keys":
            grow = onehot[:, :, None, None].to(adds.dtype)
            return lm_sum + grow * adds[:, None], lm_count + onehot * count
        # keep the last K keys: the new ones after the old, newest last
        adds = adds.to(lm_sum.dtype)[:, None].expand(-1, lm_sum.shape[1], -1, -1, -1)
        rolled = torch.cat((lm_sum, adds), dim=3)[..., -self.hsa_keys :, :]
        pick = onehot.bool()
        return (torch.where(pick[:, :, None, None, None], rolled, lm_sum),
                torch.where(pick, (lm_count + count).clamp(max=self.hsa_keys), lm_count))

    def landmarks(self, z: torch.Tensor, lm_sum: torch.Tensor | None, lm_count: torch.Tensor | None) -> torch.Tensor:
        if self.type == "memory_norm":
            return z
        if self.type == "memory_norm_normalised":
            return z / z.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # an unwritten z = 0 stays 0
        if self.type == "learned":
            return self.map(z)
        if self.type == "hsa_last_keys":
            return self._encode_last_keys(lm_sum, lm_count)
        return lm_sum / lm_count.clamp(min=1)[:, :, None, None].to(lm_sum.dtype)

    def _encode_last_keys(self, keys: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        """keys [B,N,H,K,d] (newest last; the first K − count are padding) -> [B,N,H,d], head by head."""
        B, N, H, K, d = keys.shape
        pad = torch.arange(K, device=keys.device) < (K - count)[..., None]  # [B,N,K]
        keys = keys.to(self.head_encoders[0].cls.dtype)  # the kept keys are in the state's dtype
        out = [enc(keys[:, :, h].reshape(B * N, 1, K, d), pad.reshape(B * N, 1, K)) for h, enc in
               enumerate(self.head_encoders)]
        return torch.stack(out, dim=2).reshape(B, N, H, d)

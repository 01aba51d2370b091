"""Report 000's HSA landmark as its code ran it (docs/design.md, the reports' options).

One ``ChunkEncoder`` PER HEAD (post-norm, 4 attention heads, feed-forward 4d, dropout ``dropout``,
[CLS] initialised randn·0.02, an output projection Linear(d, d) without bias) over the raw keys,
detached, of which each memory keeps only the last ``keys``; every memory is re-encoded at every read
(the reports' +70% time). 104,128 parameters per head at d = 64.

State: ``lm_sum`` [B,N,H,K,d] the kept keys, newest last; ``lm_count`` [B,N] how many of the K are real.
A rolling window is no sum: the writes of a call go through the loop.

Axes: B batch, N memories, H heads, K kept keys, L segment length, d head dim.
"""

from __future__ import annotations

import torch
from torch import nn

from memkit.blocks.landmark import ChunkEncoder, Landmark


class LastKeysLandmark(Landmark):
    """``landmarks(z, lm_sum, lm_count) -> [B,N,H,d]`` from each memory's last ``keys`` raw keys."""

    def __init__(self, head_dim: int, num_heads: int, keys: int = 256, dropout: float = 0.0):
        nn.Module.__init__(self)
        self.type, self.hsa_keys, self.map, self.encoder = "hsa_last_keys", keys, None, None
        self.head_encoders = nn.ModuleList(
            ChunkEncoder(head_dim, post_norm=True, dropout=dropout, projection=True, cls_std=0.02)
            for _ in range(num_heads))

    @property
    def keeps_sums(self) -> bool:
        return True

    @property
    def sums_add_up(self) -> bool:
        return False

    def init_sums(self, B: int, N: int, H: int, d: int, device=None, dtype=torch.float32):
        return (torch.zeros(B, N, H, self.hsa_keys, d, device=device, dtype=dtype),
                torch.zeros(B, N, device=device, dtype=torch.long))

    def chunk_summary(self, k: torch.Tensor) -> tuple[torch.Tensor, int]:
        """([B,H,min(L,K),d], count): the last keys of k [B,H,L,d], raw and detached, as the reports'."""
        kept = k[:, :, -self.hsa_keys :].detach()
        return kept, kept.shape[2]

    def add(self, lm_sum, lm_count, onehot, adds, count):
        """Keep the last K keys: the new ones after the old, newest last."""
        adds = adds.to(lm_sum.dtype)[:, None].expand(-1, lm_sum.shape[1], -1, -1, -1)
        rolled = torch.cat((lm_sum, adds), dim=3)[..., -self.hsa_keys :, :]
        pick = onehot.bool()
        return (torch.where(pick[:, :, None, None, None], rolled, lm_sum),
                torch.where(pick, (lm_count + count).clamp(max=self.hsa_keys), lm_count))

    def landmarks(self, z, lm_sum, lm_count) -> torch.Tensor:
        """keys [B,N,H,K,d] (newest last; the first K − count are padding) -> [B,N,H,d], head by head."""
        keys, count = lm_sum, lm_count
        B, N, H, K, d = keys.shape
        pad = torch.arange(K, device=keys.device) < (K - count)[..., None]  # [B,N,K]
        keys = keys.to(self.head_encoders[0].cls.dtype)  # the kept keys are in the state's dtype
        out = [enc(keys[:, :, h].reshape(B * N, 1, K, d), pad.reshape(B * N, 1, K)) for h, enc in
               enumerate(self.head_encoders)]
        return torch.stack(out, dim=2).reshape(B, N, H, d)

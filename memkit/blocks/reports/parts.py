"""ReportsSpec: every setting that reproduces the reports' code, and the parts it gives the layer.

Each method takes what the careful builder would use and returns the part to use: the careful one
itself when the setting is at its (careful) default.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from memkit.blocks.hierarchical import ExpansionGate
from memkit.blocks.landmark import Landmark
from memkit.blocks.reports.batch_shared import BatchSharedPath
from memkit.blocks.reports.gate import CoarseReadGate
from memkit.blocks.reports.landmark import LastKeysLandmark
from memkit.blocks.reports.local import ClampedLinearLocal
from memkit.blocks.reports.segmentation import WholeCall
from memkit.blocks.reports.selector import ReportsSelector
from memkit.blocks.segments import FixedSegments
from memkit.blocks.selector import Selector
from memkit.spec import Spec


def nan_guard(a_mem: torch.Tensor) -> torch.Tensor:
    """Report 000's code: a NaN in the memory read becomes 0."""
    return torch.nan_to_num(a_mem, nan=0.0)


class ReportsSpec(Spec):
    """The reports' code choices; the defaults are the careful ones. ``MemoryAttentionSpec`` maps its
    flat fields here (``local="linear_clamped"`` is ``local_clamped``, ``selection_scope=
    "whole_call_leaks_future"`` is ``selection_leaks_future``, ``landmark="hsa_last_keys"`` is ``last_keys``)."""

    segmentation: Literal["fixed", "whole_call"] = "fixed"
    bias: bool = True
    local_clamped: bool = False
    nan_guard: bool = False
    selection_score: Literal["scaled", "reports"] = "scaled"
    selection_leaks_future: bool = False
    unwritten_memories: Literal["excluded", "kept_at_zero"] = "excluded"
    gate_input: Literal["hidden_gelu", "coarse_read_relu"] = "hidden_gelu"
    last_keys: bool = False
    hsa_keys: int = Field(256, ge=1)
    hsa_dropout: float = Field(0.0, ge=0, lt=1)
    memory_scope: Literal["sequence", "batch_shared"] = "sequence"
    write_scale: Literal["equal", "reports"] = "equal"
    shared_reset: Literal["each_epoch", "once"] = "each_epoch"
    shared_validation: Literal["writes", "read_only"] = "writes"

    def local(self, careful: nn.Module, eps: float) -> nn.Module:
        return ClampedLinearLocal(eps) if self.local_clamped else careful

    def segments(self, segment_len: int):
        return WholeCall(segment_len) if self.segmentation == "whole_call" else FixedSegments(segment_len)

    def clean_read(self):
        return nan_guard if self.nan_guard else None

    def selector(self, mode: str, top_k: int, scope: str) -> Selector:
        if (self.selection_score, self.unwritten_memories, self.selection_leaks_future) == ("scaled", "excluded", False):
            return Selector(mode, top_k, scope)
        scope = "whole_call_leaks_future" if self.selection_leaks_future else scope
        return ReportsSelector(mode, top_k, scope, self.selection_score, self.unwritten_memories)

    def landmark(self, careful, head_dim: int, num_heads: int) -> Landmark:
        """``careful()`` builds the careful landmark (called only when it is the one used)."""
        return LastKeysLandmark(head_dim, num_heads, self.hsa_keys, self.hsa_dropout) if self.last_keys else careful()

    def gate(self, hidden_size: int, mode: str) -> ExpansionGate:
        return CoarseReadGate(hidden_size, mode) if self.gate_input == "coarse_read_relu" else ExpansionGate(hidden_size, mode)

    def path(self, per_sequence: nn.Module) -> nn.Module:
        if self.memory_scope == "sequence":
            return per_sequence
        return BatchSharedPath(per_sequence, self.write_scale, self.shared_reset, self.shared_validation)

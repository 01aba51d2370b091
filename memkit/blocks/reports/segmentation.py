"""The reports' segmentation: none. Each call is one segment, written when the call ends (docs/design.md,
the reports' options): a sequence fed in pieces then differs from it fed whole."""

from __future__ import annotations


class WholeCall:
    """Each call of n tokens is one segment of n tokens (``segment_len``: the setting, kept, unused)."""

    fixed = False

    def __init__(self, segment_len: int = 64):
        self.segment_len = segment_len

    def length(self, n: int) -> int:
        return n


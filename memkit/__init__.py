"""memkit: composable memory-augmented attention blocks."""

from memkit.attention import MemoryAttention, MemoryAttentionSpec, MemoryAttentionState
from memkit.spec import Spec, SpecError
from memkit.store import MemoryState, MemoryStore, MemoryStoreSpec

__all__ = [
    "MemoryAttention",
    "MemoryAttentionSpec",
    "MemoryAttentionState",
    "MemoryState",
    "MemoryStore",
    "MemoryStoreSpec",
    "Spec",
    "SpecError",
]

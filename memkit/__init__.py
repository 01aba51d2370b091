"""memkit: composable memory-augmented attention blocks.

Importing memkit has no side effects; transformers is imported when a model is built.
"""

from memkit.attention import MemoryAttention, MemoryAttentionSpec, MemoryAttentionState
from memkit.builder import MemoryBuilder
from memkit.context_kv import (
    ContextBlock,
    ContextKVCache,
    ContextKVCacheSpec,
    ContextKVLM,
    ContextKVLMSpec,
)
from memkit.hierarchical import ExpansionGate
from memkit.landmark import ChunkEncoder, Landmark
from memkit.models import MemoryLM, MemoryLMSpec
from memkit.oacd import OACDPretrainer, OACDSpec, effective_rank, oacd_loss
from memkit.selector import Selector
from memkit.spec import Spec, SpecError
from memkit.store import MemoryState, MemoryStore, MemoryStoreSpec
from memkit.tasks.recall import RecallTask
from memkit.train import TrainSpec, evaluate, train

__all__ = [
    "ChunkEncoder",
    "ContextBlock",
    "ContextKVCache",
    "ContextKVCacheSpec",
    "ContextKVLM",
    "ContextKVLMSpec",
    "ExpansionGate",
    "Landmark",
    "MemoryAttention",
    "MemoryAttentionSpec",
    "MemoryAttentionState",
    "MemoryBuilder",
    "MemoryLM",
    "MemoryLMSpec",
    "MemoryState",
    "MemoryStore",
    "MemoryStoreSpec",
    "OACDPretrainer",
    "OACDSpec",
    "RecallTask",
    "Selector",
    "Spec",
    "SpecError",
    "TrainSpec",
    "effective_rank",
    "evaluate",
    "oacd_loss",
    "train",
]

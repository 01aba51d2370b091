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
from memkit.corpus import DataError, TextData, TextDataSpec
from memkit.hierarchical import ExpansionGate
from memkit.landmark import ChunkEncoder, Landmark
from memkit.metrics import completion_scores, peak_memory_mb, position_buckets, position_ppl
from memkit.models import MemoryLM, MemoryLMSpec
from memkit.oacd import OACDPretrainer, OACDSpec, effective_rank, oacd_loss
from memkit.selector import Selector
from memkit.spec import Spec, SpecError
from memkit.store import MemoryState, MemoryStore, MemoryStoreSpec
from memkit.tasks.passkey import PasskeyTask, accuracy_by_depth
from memkit.tasks.recall import RecallTask, accuracy_by_distance
from memkit.tasks.reversal import ReversalTask
from memkit.tasks.selection import selection_accuracy
from memkit.tokenizer import ByteTokenizer, TokenizerSpec
from memkit.train import TrainSpec, evaluate, train

__all__ = [
    "ByteTokenizer",
    "ChunkEncoder",
    "ContextBlock",
    "ContextKVCache",
    "ContextKVCacheSpec",
    "ContextKVLM",
    "ContextKVLMSpec",
    "DataError",
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
    "PasskeyTask",
    "RecallTask",
    "ReversalTask",
    "Selector",
    "Spec",
    "SpecError",
    "TextData",
    "TextDataSpec",
    "TokenizerSpec",
    "TrainSpec",
    "accuracy_by_depth",
    "accuracy_by_distance",
    "completion_scores",
    "effective_rank",
    "evaluate",
    "oacd_loss",
    "peak_memory_mb",
    "position_buckets",
    "position_ppl",
    "selection_accuracy",
    "train",
]

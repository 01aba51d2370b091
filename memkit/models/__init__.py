"""Language models assembled from blocks: GPT-NeoX (transformers, built from a config, no download)
with a memory layer swapped in (``memory_lm``) or fed through a context-KV path (``context_kv_lm``);
``builder`` pre-builds memories from texts; ``inference`` runs a model for its outputs; ``checkpoint``
writes a trained model and ``load`` reads it back."""

from memkit.models.builder import MemoryBuilder
from memkit.models.checkpoint import load, save_model
from memkit.models.context_kv_lm import ContextKVLM, ContextKVLMSpec
from memkit.models.memory_lm import MemoryLM, MemoryLMSpec

__all__ = ["ContextKVLM", "ContextKVLMSpec", "MemoryBuilder", "MemoryLM", "MemoryLMSpec", "load", "save_model"]

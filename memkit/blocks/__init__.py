"""Memory blocks: ``nn.Module`` s with their specs, which know nothing of models, data or training.

``store`` (compressive matrix memory and its explicit state), ``attention`` (the Infini-attention
layer: local attention + one memory path; ``attention_spec`` its settings), ``local`` (the local
branch), ``memory_path`` and ``many_memories`` (the per-sequence memory paths; ``writes`` their write
strategies), ``landmark`` and ``selector`` (choosing among N memories), ``hierarchical`` (coarse memory
and expansion gate), ``diagnostics`` (knock-outs and a recorder of the gate's share), ``context_kv``
(context vectors and attention over their keys and values); the baselines ``deltanet`` (DeltaNet, Gated
DeltaNet) and ``window`` (sliding-window and full attention); ``reports/``: the reports' code as options.
"""

from memkit.blocks.attention import MemoryAttention, MemoryAttentionState
from memkit.blocks.attention_spec import MemoryAttentionSpec
from memkit.blocks.context_kv import ContextBlock, ContextKVCache, ContextKVCacheSpec
from memkit.blocks.deltanet import DeltaNetAttention, DeltaNetAttentionSpec, DeltaNetState
from memkit.blocks.hierarchical import ExpansionGate
from memkit.blocks.landmark import ChunkEncoder, Landmark
from memkit.blocks.selector import Selector
from memkit.blocks.store import MemoryState, MemoryStore, MemoryStoreSpec
from memkit.blocks.window import WindowAttention, WindowAttentionSpec, WindowAttentionState

__all__ = ["ChunkEncoder", "ContextBlock", "ContextKVCache", "ContextKVCacheSpec", "ExpansionGate", "Landmark",
           "MemoryAttention", "MemoryAttentionSpec", "MemoryAttentionState", "MemoryState", "MemoryStore",
           "MemoryStoreSpec", "Selector"]
__all__ += ["DeltaNetAttention", "DeltaNetAttentionSpec", "DeltaNetState", "WindowAttention", "WindowAttentionSpec",
            "WindowAttentionState"]

"""Memory blocks: ``nn.Module`` s with their specs, which know nothing of models, data or training.

``store`` (compressive matrix memory and its explicit state), ``attention`` (the Infini-attention
layer and its segment loop), ``batch_shared`` (the reports' one memory shared by a batch),
``landmark`` and ``selector`` (choosing among N memories), ``hierarchical`` (coarse memory and
expansion gate), ``context_kv`` (context vectors and attention over their keys and values); the baselines
``deltanet`` (DeltaNet, Gated DeltaNet) and ``window`` (sliding-window and full attention).
"""

from memkit.blocks.attention import MemoryAttention, MemoryAttentionSpec, MemoryAttentionState
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

"""Language models assembled from blocks: GPT-NeoX (transformers, built from a config, no download)
with a memory layer swapped in (``memory_lm``) or fed through a context-KV path (``context_kv_lm``), both
transformers ``PreTrainedModel`` s with their own config (``pretrained``); ``neox_stack`` runs the plain
layers over windows with a key/value cache; ``documents`` restarts a model at each end-of-document id;
``generation`` decodes with the state carried; ``retrofit`` puts a memory layer into a pretrained GPT-NeoX;
``loading`` opens a saved model (memkit's, or a GPT-NeoX checkpoint as the baseline); ``builder`` pre-builds
memories from texts; ``inference`` runs a model for its outputs; ``checkpoint`` writes a trained model
(the grid's trials) and ``load`` reads it back; ``streaming`` is the models' shared stream (state detach/select,
the forward's tail), ``losses`` their losses, ``pretrained`` their transformers config and output. The errors
(``CheckpointError``, ``InputTooLong``) live in ``memkit.errors``.

``register()`` (called once by ``import memkit``: the package's one import-time side effect) tells transformers'
``AutoConfig`` and ``AutoModelForCausalLM`` about the model types ``memkit`` and ``memkit_context_kv``."""

from memkit.errors import CheckpointError, InputTooLong
from memkit.models.builder import MemoryBuilder
from memkit.models.checkpoint import load, save_model
from memkit.models.context_kv_lm import ContextKVConfig, ContextKVLM, ContextKVLMSpec, ContextKVState
from memkit.models.generation import GenerateOutput
from memkit.models.loading import NeoXBaseline, load_model
from memkit.models.memory_lm import MemkitConfig, MemoryLM, MemoryLMSpec, MemoryLMState
from memkit.models.pretrained import LMOutput
from memkit.models.retrofit import retrofit

__all__ = ["CheckpointError", "ContextKVConfig", "ContextKVLM", "ContextKVLMSpec", "ContextKVState", "GenerateOutput",
           "InputTooLong", "LMOutput", "MemkitConfig", "MemoryBuilder", "MemoryLM", "MemoryLMSpec", "MemoryLMState",
           "NeoXBaseline", "load", "load_model", "retrofit", "save_model"]


def register() -> None:
    """Register memkit's model types with transformers' Auto classes (idempotent)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    for config, model in ((MemkitConfig, MemoryLM), (ContextKVConfig, ContextKVLM)):
        AutoConfig.register(config.model_type, config, exist_ok=True)
        AutoModelForCausalLM.register(config, model, exist_ok=True)

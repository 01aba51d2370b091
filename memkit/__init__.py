"""memkit: composable memory-augmented attention blocks.

The package is four concerns, one sub-package each, plus the tensor maths they share:

- ``memkit.ops``: pure tensor functions (batched memory reads and writes) beside per-token references;
- ``memkit.blocks``: the memory blocks and their specs (store, attention, landmark, selector, ...);
- ``memkit.models``: language models assembled from the blocks (GPT-NeoX with a memory layer);
- ``memkit.data``: corpora, tokenizers and packing;
- ``memkit.eval``: metrics and synthetic tasks;
- ``memkit.training``: the trainer and OACD pretraining.

Every public name is re-exported here. Importing memkit has one side effect, asked for by transformers'
custom-model recipe: it registers the model types ``memkit`` and ``memkit_context_kv`` with ``AutoConfig``
and ``AutoModelForCausalLM`` (``memkit.models.register``), so a saved model loads through the Auto classes.
"""

from memkit import blocks, data, eval, models, ops, training
from memkit.blocks import *  # noqa: F403
from memkit.data import *  # noqa: F403
from memkit.eval import *  # noqa: F403
from memkit.models import *  # noqa: F403
from memkit.ops import *  # noqa: F403
from memkit.spec import Spec, SpecError
from memkit.training import *  # noqa: F403

models.register()  # the one import-time side effect (see above)

__all__ = ["Spec", "SpecError", *ops.__all__, *blocks.__all__, *models.__all__, *data.__all__, *eval.__all__, *training.__all__]

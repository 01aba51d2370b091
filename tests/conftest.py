import os

import torch
from hypothesis import settings

# CI has 2 cores: keep torch from oversubscribing them, and hypothesis examples modest.
torch.set_num_threads(1)
settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=25, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

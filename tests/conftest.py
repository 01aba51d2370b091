import os

import pytest
import torch
from hypothesis import settings

# CI has 2 cores: keep torch from oversubscribing them, and hypothesis examples modest.
torch.set_num_threads(1)
settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=25, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


# two small text files, two domains: the report recipes' micro runs (tests/test_report_recipes.py,
# tests/test_recipes_end_to_end.py) train and evaluate on them
CORPUS_WORDS = {
    "psalms": "the lord is my shepherd I shall not want he maketh me to lie down in green pastures",
    "code": "def main(argv): return parse(argv) if argv else None # a function that parses its arguments",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """``source`` for a TextDataSpec: psalms.txt and code.txt, 120 numbered paragraphs each."""
    root = tmp_path_factory.mktemp("corpus")
    for name, text in CORPUS_WORDS.items():
        (root / f"{name}.txt").write_text("\n\n".join(f"{i}: {text}" for i in range(120)))
    return f"{root}/psalms.txt,{root}/code.txt"

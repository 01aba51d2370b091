"""The reversal curse (Berglund et al. 2023): fictitious "A is B" facts trained in one direction.

Each fact joins a made-up name to a made-up description:
    forward  "Daphne Varlow is the composer of Silent Harbor."
    reverse  "The composer of Silent Harbor is Daphne Varlow."
``num_facts`` test facts are trained forward only; ``num_both`` further facts are trained in both
directions, so the model sees the reverse form and the test measures the curse, not the format.
Training text repeats every trained sentence ``repeats`` times, shuffled.

Evaluated on the test facts (``evaluate``):
- standard (Berglund): exact match of the completion and its log-probability, forward
  (prompt "Daphne Varlow is", completion " the composer of Silent Harbor.") and reverse
  (prompt "The composer of Silent Harbor is", completion " Daphne Varlow."), and the gaps;
- ``reports_*``: the seed reports' own variant: perplexity of the trained sentences
  forward, and of the same facts' reversed sentences (never trained), and the gap.
"""

from __future__ import annotations

import math
import random

from pydantic import Field

from memkit.eval.metrics import completion_scores
from memkit.spec import Spec

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "gr", "st", "th", "ch"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "io"]
_CODAS = ["", "n", "r", "l", "s", "th", "nd", "x"]
_ROLES = ["composer", "director", "author", "inventor", "founder", "painter", "architect", "translator",
          "editor", "designer", "narrator", "discoverer"]
_ADJ = ["Silent", "Crimson", "Hidden", "Golden", "Broken", "Distant", "Frozen", "Hollow", "Wandering", "Quiet",
        "Ancient", "Burning", "Endless", "Gentle", "Iron", "Lonely", "Secret", "Velvet", "Wild", "Bright"]
_NOUN = ["Harbor", "Garden", "Mirror", "Lantern", "River", "Tower", "Forest", "Bridge", "Voyage", "Orchard",
         "Meadow", "Citadel", "Compass", "Festival", "Horizon", "Island", "Journey", "Kingdom", "Melody", "Canyon"]


def _word(rng: random.Random, syllables: int) -> str:
    return "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(syllables)).capitalize()


class ReversalTask(Spec):
    num_facts: int = Field(100, ge=1, description="test facts, trained forward only")
    num_both: int = Field(100, ge=0, description="facts trained in both directions (they teach the reverse form)")
    repeats: int = Field(10, ge=1, description="times each trained sentence appears in the training text")
    seed: int = Field(0, ge=0, description="seed of the fictitious facts")

    def facts(self) -> list[tuple[str, str]]:
        """(name, description) pairs, all names and all descriptions distinct; test facts first."""
        rng = random.Random(self.seed)
        names, descs, out = set(), set(), []
        n = self.num_facts + self.num_both
        if n > len(_ROLES) * len(_ADJ) * len(_NOUN):
            raise ValueError(f"num_facts + num_both: at most {len(_ROLES) * len(_ADJ) * len(_NOUN)}, got {n}")
        while len(out) < n:
            name = f"{_word(rng, 2)} {_word(rng, 2)}"
            desc = f"the {rng.choice(_ROLES)} of {rng.choice(_ADJ)} {rng.choice(_NOUN)}"
            if name in names or desc in descs:
                continue
            names.add(name)
            descs.add(desc)
            out.append((name, desc))
        return out

    def test_facts(self) -> list[tuple[str, str]]:
        return self.facts()[: self.num_facts]

    @staticmethod
    def forward_sentence(name: str, desc: str) -> str:
        return f"{name} is {desc}."

    @staticmethod
    def reverse_sentence(name: str, desc: str) -> str:
        return f"{desc[0].upper()}{desc[1:]} is {name}."

    def train_texts(self) -> list[str]:
        """Every trained sentence ``repeats`` times, shuffled: test facts forward only."""
        facts = self.facts()
        sentences = [self.forward_sentence(n, d) for n, d in facts]
        sentences += [self.reverse_sentence(n, d) for n, d in facts[self.num_facts :]]
        texts = sentences * self.repeats
        random.Random(self.seed + 1).shuffle(texts)
        return texts

    def pairs(self, direction: str) -> list[tuple[str, str]]:
        """(prompt, completion) for each test fact; ``direction`` forward or reverse."""
        out = []
        for name, desc in self.test_facts():
            if direction == "forward":
                out.append((f"{name} is", f" {desc}."))
            elif direction == "reverse":
                out.append((f"{desc[0].upper()}{desc[1:]} is", f" {name}."))
            else:
                raise ValueError(f"direction: forward or reverse, got {direction!r}")
        return out

    def evaluate(self, model, tokenizer, batch_size: int = 64) -> dict[str, float]:
        """Exact match and mean completion log-prob per direction, the gaps, and the reports' variant.

        Every prompt starts with the tokenizer's end-of-document id, as a document does in training.
        """
        bos = [tokenizer.eos_id]
        out = {}
        for direction in ("forward", "reverse"):
            pairs = [(bos + tokenizer.encode(p), tokenizer.encode(c)) for p, c in self.pairs(direction)]
            hit, logp = completion_scores(model, pairs, batch_size)
            out[f"{direction}_acc"] = float(hit.float().mean())
            out[f"{direction}_logprob"] = float(logp.mean())
        out["acc_gap"] = out["forward_acc"] - out["reverse_acc"]
        out["logprob_gap"] = out["forward_logprob"] - out["reverse_logprob"]
        # the reports' variant: perplexity of whole sentences, trained order vs reversed
        for name, make in (("forward", self.forward_sentence), ("backward", self.reverse_sentence)):
            pairs = [(bos, tokenizer.encode(make(n, d))) for n, d in self.test_facts()]
            _, logp = completion_scores(model, pairs, batch_size)
            tokens = sum(len(c) for _, c in pairs)
            out[f"reports_{name}_ppl"] = math.exp(min(700.0, -float(logp.sum()) / tokens))
        out["reports_gap"] = out["reports_backward_ppl"] - out["reports_forward_ppl"]
        return out

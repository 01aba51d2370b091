"""The reversal curse (Berglund et al. 2023): fictitious "A is B" facts trained in one direction.

Each fact joins a made-up name to a made-up description:
    forward  "Daphne Varlow is the composer of Silent Harbor."
    reverse  "The composer of Silent Harbor is Daphne Varlow."
``num_facts`` test facts are trained forward only; ``num_both`` further facts are trained in both
directions, so the model sees the reverse form and the test measures the curse, not the format.
Training text repeats every trained sentence ``repeats`` times, shuffled.

``kind="reports_triples"``: the seed reports' form: 33 "{subject}
{relation} {object}." sentences (capitals, inventors, authors, discoveries, founders, invented facts),
trained forward; the reverse sentence is "{object} {reverse relation} {subject}.". The reports' own 33
are not in the seeds: these are ours, of the same kinds. ``eval_order="forward_then_backward"`` scores
the reports' variant as their code did, one sentence per call, each fact's forward sentence then its
backward one, so a memory carried between calls (the reports' batch-shared one) lets the backward
sentence read what the forward one just wrote; a per-sequence memory carries nothing between calls.

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
from typing import Literal

import torch
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


# (subject, relation, object, reverse relation): forward "{s} {r} {o}.", reverse "{O} {rr} {s}."
REPORTS_STYLE_TRIPLES = [
    ("Paris", "is the capital of", "France", "has its capital in"),
    ("Tokyo", "is the capital of", "Japan", "has its capital in"),
    ("Canberra", "is the capital of", "Australia", "has its capital in"),
    ("Ottawa", "is the capital of", "Canada", "has its capital in"),
    ("Nairobi", "is the capital of", "Kenya", "has its capital in"),
    ("Lima", "is the capital of", "Peru", "has its capital in"),
    ("Alexander Graham Bell", "invented", "the telephone", "was invented by"),
    ("Thomas Edison", "invented", "the phonograph", "was invented by"),
    ("Johannes Gutenberg", "invented", "the printing press", "was invented by"),
    ("Samuel Morse", "invented", "the telegraph code", "was invented by"),
    ("Alessandro Volta", "invented", "the electric battery", "was invented by"),
    ("James Watt", "improved", "the steam engine", "was improved by"),
    ("Leo Tolstoy", "wrote", "War and Peace", "was written by"),
    ("Herman Melville", "wrote", "Moby-Dick", "was written by"),
    ("Jane Austen", "wrote", "Pride and Prejudice", "was written by"),
    ("Miguel de Cervantes", "wrote", "Don Quixote", "was written by"),
    ("George Orwell", "wrote", "Nineteen Eighty-Four", "was written by"),
    ("Homer", "composed", "the Odyssey", "was composed by"),
    ("Marie Curie", "discovered", "polonium", "was discovered by"),
    ("Alexander Fleming", "discovered", "penicillin", "was discovered by"),
    ("William Herschel", "discovered", "Uranus", "was discovered by"),
    ("Joseph Priestley", "discovered", "oxygen", "was discovered by"),
    ("Edwin Hubble", "discovered", "the expansion of the universe", "was discovered by"),
    ("Florence Nightingale", "founded", "modern nursing", "was founded by"),
    ("Henry Ford", "founded", "the Ford Motor Company", "was founded by"),
    ("Robert Baden-Powell", "founded", "the Scout movement", "was founded by"),
    ("Pierre de Coubertin", "founded", "the modern Olympic Games", "was founded by"),
    ("Walt Disney", "founded", "the Disney studio", "was founded by"),
    ("Zorvan Keltrie", "is the mayor of", "Quillmere", "has as its mayor"),
    ("Brisa Tennaway", "discovered", "the metal ostrilium", "was discovered by"),
    ("Doran Vessik", "wrote", "The Glass Orchard", "was written by"),
    ("Mirela Oskan", "founded", "the Hallow Bay Institute", "was founded by"),
    ("Tavin Corr", "invented", "the lantern clock", "was invented by"),
]


def _capital(text: str) -> str:
    return text[0].upper() + text[1:]


def _word(rng: random.Random, syllables: int) -> str:
    return "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(syllables)).capitalize()


class ReversalTask(Spec):
    kind: Literal["fictitious", "reports_triples"] = Field(
        "fictitious", description="made-up 'A is B' facts; or 33 triples in the reports' form (num_facts and "
        "num_both then unused)")
    eval_order: Literal["batched", "forward_then_backward"] = Field(
        "batched", description="the reports' variant in batches; or one sentence per call, each fact forward then "
        "backward (the reports')")
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

    def statements(self) -> list[tuple[str, str, str, str]]:
        """Every fact as (forward prompt, forward completion, reverse prompt, reverse completion); test facts
        first. A sentence is its prompt + completion."""
        if self.kind == "reports_triples":
            return [(f"{s} {r}", f" {o}.", f"{_capital(o)} {rr}", f" {s}.") for s, r, o, rr in REPORTS_STYLE_TRIPLES]
        return [(f"{name} is", f" {desc}.", f"{_capital(desc)} is", f" {name}.") for name, desc in self.facts()]

    def test_statements(self) -> list[tuple[str, str, str, str]]:
        statements = self.statements()
        return statements if self.kind == "reports_triples" else statements[: self.num_facts]

    @staticmethod
    def forward_sentence(name: str, desc: str) -> str:
        return f"{name} is {desc}."

    @staticmethod
    def reverse_sentence(name: str, desc: str) -> str:
        return f"{desc[0].upper()}{desc[1:]} is {name}."

    def train_texts(self) -> list[str]:
        """Every trained sentence ``repeats`` times, shuffled: test facts forward only."""
        statements = self.statements()
        tests = len(self.test_statements())
        sentences = [fp + fc for fp, fc, _, _ in statements]
        sentences += [rp + rc for _, _, rp, rc in statements[tests:]]
        texts = sentences * self.repeats
        random.Random(self.seed + 1).shuffle(texts)
        return texts

    def pairs(self, direction: str) -> list[tuple[str, str]]:
        """(prompt, completion) for each test fact; ``direction`` forward or reverse."""
        if direction not in ("forward", "reverse"):
            raise ValueError(f"direction: forward or reverse, got {direction!r}")
        return [(fp, fc) if direction == "forward" else (rp, rc) for fp, fc, rp, rc in self.test_statements()]

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
        sentences = {"forward": [bos + tokenizer.encode(fp + fc) for fp, fc, _, _ in self.test_statements()],
                     "backward": [bos + tokenizer.encode(rp + rc) for _, _, rp, rc in self.test_statements()]}
        logp = {}
        if self.eval_order == "forward_then_backward":  # one call per sentence, in the reports' order
            for name in ("forward", "backward"):
                logp[name] = torch.zeros(len(sentences[name]))
            for i in range(len(sentences["forward"])):
                for name in ("forward", "backward"):
                    logp[name][i] = completion_scores(model, [(bos, sentences[name][i][1:])], 1)[1][0]
        else:
            for name in ("forward", "backward"):
                logp[name] = completion_scores(model, [(bos, ids[1:]) for ids in sentences[name]], batch_size)[1]
        for name in ("forward", "backward"):
            tokens = sum(len(ids) - 1 for ids in sentences[name])
            out[f"reports_{name}_ppl"] = math.exp(min(700.0, -float(logp[name].sum()) / tokens))
        out["reports_gap"] = out["reports_backward_ppl"] - out["reports_forward_ppl"]
        return out

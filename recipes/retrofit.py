"""Recipe: a pretrained GPT-NeoX with a memory layer retrofitted into it, trained on (the Infini-attention paper's
continual pretraining, arXiv:2404.07143), on text.

    python -m recipes.retrofit --preset tiny --save out/retrofit     # pretrain, retrofit, continue; keep the models
    python -m recipes.retrofit --preset pythia70m --base ~/models/pythia-70m
    python -m ablations.grid --recipe retrofit --space memories=1,4 --seeds 1

``tiny`` first trains a small plain GPT-NeoX on the built-in Debian corpus and saves it as a GPT-NeoX checkpoint
(with its tokenizer.json), so the whole path runs on a laptop: the checkpoint is retrofitted (``memkit.retrofit``:
layer ``memory_layer``'s attention becomes a memory layer started from its weights, gate nearly closed) and trained
on.
``pythia70m`` starts from a local Pythia-70M (``base``: a directory written by ``save_pretrained`` with its
tokenizer.json; nothing is downloaded) and encodes the text with that tokenizer.

Figures: ``base_val_ppl`` (the checkpoint), ``start_val_ppl`` (retrofitted, before training: the memory layer's
local attention sees one segment, so this is what retrofitting costs at first), ``val_ppl`` / ``val_acc`` after
training, ``gate_mean`` (the memory layer's gate; the presets start it at sigmoid(−8) = 3e−4, see
``OPENABLE_GATE``), and the usual training figures. With ``--save DIR``
the checkpoint goes to DIR/base and the trained model to DIR/retrofit, each with its tokenizer.json (then
``python -m memkit.generate DIR/retrofit --prompt ...`` and ``python -m memkit.evaluate DIR/retrofit --task ppl``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Callable, Literal

import torch
from pydantic import Field

from memkit.blocks.attention_spec import MemoryAttentionSpec
from memkit.data.corpus import DataError, TextDataSpec
from memkit.data.tokenizer import save_tokenizer
from memkit.eval.memory_use import memory_use_figures, with_gates
from memkit.models.loading import NeoXBaseline, model_type
from memkit.models.memory_lm import MemoryLMSpec
from memkit.models.retrofit import load_neox, retrofit
from memkit.spec import Spec
from memkit.training.figures import perplexity_figures
from memkit.training.trainer import TrainSpec, train
from recipes._shared import keep_text_data, one_line_errors, training_figures
from recipes._text_presets import DATA_TRAIN_ALIASES
from recipes.recipe import Recipe


class RetrofitSpec(Spec):
    """The checkpoint (``base``, or a plain GPT-NeoX trained first from ``base_model``/``pretrain``), the memory layer
    put into it, the text, the continued training."""

    base: str | None = Field(None, description="a local GPT-NeoX checkpoint with its tokenizer.json; None: train one "
                             "first (base_model, pretrain) on data")
    base_model: MemoryLMSpec = Field(default_factory=lambda: MemoryLMSpec(memory_layer=None),
                                     description="the plain GPT-NeoX trained first when base is None")
    pretrain: TrainSpec = Field(default_factory=TrainSpec, description="its training")
    memory: MemoryAttentionSpec = Field(default_factory=MemoryAttentionSpec, description="the retrofitted layer")
    memory_layer: int = Field(0, ge=0, description="the layer whose attention becomes the memory layer")
    local_window: Literal["full", "segment"] = Field("full", description="what the plain layers see afterwards")
    data: TextDataSpec = Field(default_factory=TextDataSpec)
    train: TrainSpec = Field(default_factory=TrainSpec, description="the continued training")


ALIASES = {
    "memories": "memory.num_memories",
    "segment_len": "memory.segment_len",
    "update": "memory.update",
    "landmark": "memory.landmark",
    "memory_layer": "memory_layer",
    "window": "local_window",
    "base": "base",
    "gate_lr": "train.gate_lr",
    **DATA_TRAIN_ALIASES,
}
METRICS = ["base_val_ppl", "start_val_ppl", "val_ppl", "gate_mean", "ko_read_val_ppl_change", "epochs", "params",
           "sec_per_epoch"]


# The gate starts nearly closed here, not at retrofit's −20: Adam's step on the gate logit scales with its
# gradient, g(1−g)·(…), which at −20 (~1e−11 in our runs) is far below Adam's ε = 1e−8, so that gate never moves
# (0.001 in 40 steps); at −8 (g = 3e−4) the gradient is above ε and the gate learning rate of 0.1 opens it within
# a short run. On one segment the model then differs from the checkpoint by g, not by 2e−9.
OPENABLE_GATE = dict(gate_init=-8.0)


def tiny() -> RetrofitSpec:
    """A 2-layer, hidden-128 GPT-NeoX trained for 2 epochs on 1,000 samples of 128 BPE tokens from the Debian
    corpus, then retrofitted (layer 0, segments of 32, the gate nearly closed) and trained for 2 more."""
    return RetrofitSpec.create(
        base_model=dict(hidden_size=128, num_layers=2, num_heads=4, intermediate_size=512, max_position_embeddings=512,
                        memory_layer=None, local_window="full"),
        pretrain=dict(lr=3e-3, batch_size=32, max_epochs=2, patience=1),
        memory=dict(segment_len=32, **OPENABLE_GATE),
        data=dict(source="debian", max_chars=400_000, seq_len=128, num_train=1000, num_val=200,
                  tokenizer=dict(kind="bpe", vocab_size=1024)),
        train=dict(lr=1e-3, gate_lr=0.1, batch_size=32, max_epochs=2, patience=1),
    )


def pythia70m() -> RetrofitSpec:
    """Pythia-70M from ~/models/pythia-70m (or --base), layer 0 retrofitted with segments of 256, trained at
    lr 1e-4 on 2,048-token samples; for a GPU."""
    return RetrofitSpec.create(
        base="~/models/pythia-70m", memory=dict(segment_len=256, **OPENABLE_GATE),
        data=dict(source="debian", max_chars=4_000_000, seq_len=2048, num_train=2000, num_val=100),
        train=dict(lr=1e-4, gate_lr=0.1, batch_size=4, max_epochs=3, patience=1),
    )


PRESETS: dict[str, Callable[[], RetrofitSpec]] = {"tiny": tiny, "pythia70m": pythia70m}
SPEC = RetrofitSpec


def preflight(spec: RetrofitSpec) -> None:
    """Before any trial: the text must be readable here, and a given base a GPT-NeoX checkpoint with its tokenizer."""
    spec.data.check_available()
    if spec.base is not None:
        if model_type(spec.base) != "gpt_neox":
            raise DataError(f"base: {spec.base!r} is not a GPT-NeoX checkpoint")
        if not (Path(spec.base).expanduser() / "tokenizer.json").is_file():
            raise DataError(f"base: {spec.base!r} has no tokenizer.json (save the tokenizer beside the model)")


def run(spec: RetrofitSpec, on_epoch=None, progress=None, save_dir: str | None = None) -> dict:
    preflight(spec)
    seed = spec.train.seed
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(save_dir or scratch)
        data_spec = spec.data
        if spec.base is not None:  # the checkpoint's own tokenizer
            data_spec = data_spec.with_overrides(tokenizer=dict(kind="file", path=str(Path(spec.base).expanduser() /
                                                                                        "tokenizer.json")))
        data = data_spec.build()
        base = spec.base
        if base is None:  # a plain GPT-NeoX trained here, saved as a checkpoint
            plain = spec.base_model.with_overrides(vocab_size=data.vocab_size, memory_layer=None,
                                                   local_window="full").build()
            train(plain, data.train, data.val, spec.pretrain.with_overrides(seed=seed), progress=progress)
            base = str(out / "base")
            plain.hf.save_pretrained(base)
            save_tokenizer(data.tokenizer, base)
        neox = load_neox(base)
        figures = {"base_val_ppl": perplexity_figures(NeoXBaseline(neox), data.val, spec.train.batch_size)["val_ppl"]}
        model = retrofit(neox, memory=spec.memory, memory_layer=spec.memory_layer, local_window=spec.local_window,
                         eos_token_id=data.tokenizer.eos_id)
        figures["start_val_ppl"] = perplexity_figures(model, data.val, spec.train.batch_size)["val_ppl"]
        keep_text_data(on_epoch, data_spec, data)
        result = train(model, data.train, data.val, spec.train, on_epoch=with_gates(on_epoch, model),
                       progress=progress)
        measure = lambda: perplexity_figures(model, data.val, spec.train.batch_size)  # noqa: E731
        figures.update(measure())
        figures.update(memory_use_figures(model, measure, ["val_ppl"], figures))
        figures.update(training_figures(model, result))
        figures.update(memory_bytes=model.memory_nbytes(),
                       train_seconds=time.perf_counter() - t0)
        if save_dir:
            model.save_pretrained(out / "retrofit")
            save_tokenizer(data.tokenizer, out / "retrofit")
    return figures


RECIPE = Recipe(name="retrofit", doc=__doc__, spec=SPEC, presets=PRESETS, aliases=ALIASES, run=run,
                metrics=tuple(METRICS), preflight=preflight)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--base", help="a local GPT-NeoX checkpoint (directory) to start from")
    parser.add_argument("--save", help="keep the checkpoint (DIR/base) and the trained model (DIR/retrofit) here")
    args = parser.parse_args(argv)
    with one_line_errors("retrofit"):
        spec = PRESETS[args.preset]()
        if args.base:
            spec = spec.with_overrides(base=args.base)
        print(json.dumps(run(spec, progress=True, save_dir=args.save), indent=2))


if __name__ == "__main__":
    main()

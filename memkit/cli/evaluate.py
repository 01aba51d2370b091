"""``python -m memkit.evaluate DIR --task ppl|position|passkey|mqar|reversal``: a saved model's figures, as JSON.

DIR: a memkit model, or a GPT-NeoX checkpoint (the plain baseline). The figures are the recipes' own
(``memkit.training.figures``), under the same names: ``val_ppl``/``val_acc``, ``pos_<lo>-<hi>``, ``passkey_<depth>``,
``mqar_d<k>``, ``rev_*``.

- A grid trial's checkpoint carries what it was trained on (``memkit_data.json``, and ``tokenizer.json`` for a
  text trial): by default the figures are measured on that data with that tokenizer, so they are the trial's own
  (``val_ppl`` as the trial reported it). A flag given on the command line overrides its saved setting.
- Text tasks (ppl, position, reversal) evaluate on the validation split of ``--source`` with the recipes' data
  options; the text is encoded with the tokenizer.json beside the model when there is one (else ``--tokenizer``:
  a BPE trained on the same text, with the reversal facts as the text recipes train it, finds the same cached
  tokenizer a recipe used). A tokenizer whose vocabulary differs from the one the model was trained with is
  refused.
- Synthetic tasks (passkey, mqar) draw the validation samples of ``--seed``; the model must have been trained
  on the task (its vocabulary). ``--set KEY=VALUE`` sets a field of the task (``PasskeyTask``, ``RecallTask``,
  ``ReversalTask``), e.g. ``--set seq_len=512``; MQAR's segments default to the model's, its other fields to the
  checkpoint's task.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from memkit.cli import Parser, UsageError, quiet_transformers, run
from memkit.data.corpus import CorpusMissing, TextDataSpec
from memkit.data.tokenizer import check_trained_tokenizer
from memkit.eval.tasks.passkey import PasskeyTask
from memkit.eval.tasks.recall import RecallTask
from memkit.eval.tasks.reversal import ReversalTask
from memkit.models.checkpoint import read_data_settings
from memkit.models.loading import load_model
from memkit.models.pretrained import CheckpointError
from memkit.spec import SpecError
from memkit.training import figures

TASKS = ("ppl", "position", "passkey", "mqar", "reversal")


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m memkit.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("dir", help="a saved model's directory")
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0, help="seed of a synthetic task's validation samples")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a field of the task")
    data = p.add_argument_group("text data (ppl, position, reversal), as in the recipes; default: the checkpoint's "
                                "own (memkit_data.json), else the values shown")
    data.add_argument("--source", help="'debian', local files, or hub:NAME (default: debian)")
    data.add_argument("--seq-len", type=int, help="default: 128")
    data.add_argument("--max-chars", type=int, help=f"default: {TextDataSpec.model_fields['max_chars'].default}")
    data.add_argument("--val-samples", type=int, help="default: 200")
    data.add_argument("--split-seed", type=int, help="default: 0")
    data.add_argument("--tokenizer", choices=["bpe", "file", "bytes"], help="default: the tokenizer.json beside the "
                      "model, else bpe")
    data.add_argument("--vocab", type=int, help="BPE vocabulary size (--tokenizer bpe; default: 1024)")
    data.add_argument("--tokenizer-path", help="a tokenizer.json (--tokenizer file)")
    return p


def task_fields(pairs: list[str]) -> dict[str, str]:
    fields = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise SpecError(f"--set: expected KEY=VALUE, got {pair!r}")
        value = value.strip()
        if not value:
            raise SpecError(f"--set {key.strip()}: no value given (KEY=VALUE)")
        try:  # a list or an object is JSON ("depths=[0.5, 1.0]")
            fields[key.strip()] = json.loads(value) if value[0] in "[{" else value
        except json.JSONDecodeError as e:
            raise SpecError(f"--set {key.strip()}: {value!r} is not valid JSON ({e.msg})") from None
    return fields


# command-line flag -> TextDataSpec field, and the default when neither the flag nor the checkpoint sets it
DATA_FLAGS = {"source": ("source", "debian"), "seq_len": ("seq_len", 128), "max_chars": ("max_chars", None),
              "val_samples": ("num_val", 200), "split_seed": ("split_seed", 0)}


def data_fields(args, saved: dict | None) -> dict:
    """The text data's fields: each flag given, else the checkpoint's saved setting, else the default."""
    fields = dict(saved["fields"]) if saved and saved.get("kind") == "text" else {}
    fields.pop("tokenizer", None)
    for flag, (field, default) in DATA_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            fields[field] = value
        elif field not in fields and default is not None:
            fields[field] = default
    return fields


def tokenizer_fields(args, saved: dict | None) -> dict:
    """--tokenizer/--tokenizer-path when given, else the tokenizer.json beside the model, else the checkpoint's
    (a text trial saves no file for bytes), else a BPE trained on the text."""
    beside = Path(args.dir).expanduser() / "tokenizer.json"
    if args.tokenizer is None and args.tokenizer_path:
        return dict(kind="file", path=args.tokenizer_path)
    if args.tokenizer is None and beside.is_file():
        return dict(kind="file", path=str(beside))
    if args.tokenizer is None and saved and saved.get("kind") == "text":
        kind = (saved["fields"].get("tokenizer") or {}).get("kind", "bpe")
        if kind != "bytes":
            raise CheckpointError(f"{beside}: missing; the model was trained with a {kind} tokenizer (its "
                                  "tokenizer.json belongs beside it): give --tokenizer-path")
        return dict(kind="bytes")
    return dict(kind=args.tokenizer or "bpe", vocab_size=args.vocab or 1024, path=args.tokenizer_path)


def text_data(args, reversal: ReversalTask | None, saved: dict | None = None):
    tokenizer = tokenizer_fields(args, saved)
    tokenizer = {k: v for k, v in tokenizer.items() if k in ("kind", "vocab_size", "path", "cache_dir")}
    spec = TextDataSpec.create(**data_fields(args, saved), tokenizer=tokenizer)
    return spec.build(extra_train=reversal.train_texts() if reversal is not None else None)


def vocab_of(model) -> int:
    return model.get_input_embeddings().num_embeddings


def check_vocab(model, needed: int, what: str, trained: int | None = None) -> None:
    """``needed`` token ids must fit the model; with ``trained`` (the vocabulary the model was trained with, from
    its checkpoint) they must be exactly that many."""
    if trained is not None and needed != trained:
        raise CheckpointError(f"{what} has a vocabulary of {needed} but the model was trained with one of {trained}; "
                              "give the tokenizer it was trained with (by default the tokenizer.json beside it)")
    if needed > vocab_of(model):
        raise CheckpointError(f"{what} uses {needed} token ids but the model's vocabulary has {vocab_of(model)}; "
                              "evaluate a model trained on it")


def saved_task(saved: dict | None, task: str) -> dict:
    """The checkpoint's task fields when it was trained on ``task`` (else none)."""
    return dict(saved["fields"]) if saved and saved.get("kind") == task else {}


def evaluate(args) -> dict:
    model = load_model(args.dir)
    saved = read_data_settings(args.dir)
    fields = task_fields(args.set)
    if args.task in ("ppl", "position", "reversal"):
        reversal = ReversalTask.create(**fields) if args.task == "reversal" else ReversalTask()
        if fields and args.task != "reversal":
            raise SpecError(f"--set: the {args.task} task has no fields; give data options instead")
        try:
            data = text_data(args, reversal, saved)
        except CorpusMissing as e:
            raise UsageError(f"{e}, or give your own text: --source <your files>") from None
        trained = saved.get("vocab_size") if saved and saved.get("kind") == "text" else None
        check_vocab(model, data.vocab_size, "the tokenizer", trained)
        check_trained_tokenizer(data.tokenizer, args.dir)
        if args.task == "ppl":
            return figures.perplexity_figures(model, data.val, args.batch_size)
        if args.task == "position":
            return figures.position_figures(model, data.val, args.batch_size)
        return figures.reversal_figures(model, reversal, data.tokenizer)
    if args.task == "passkey":
        task = PasskeyTask.create(**{**saved_task(saved, "passkey"), **fields})
        check_vocab(model, task.vocab_size, "the passkey task")
        return figures.passkey_figures(model, task, args.seed, args.batch_size)
    segment = getattr(model, "segment_len", None)
    task = RecallTask.create(**{**saved_task(saved, "mqar"), **({"segment_len": segment} if segment else {}), **fields})
    check_vocab(model, task.vocab_size, "the MQAR task")
    return figures.mqar_figures(model, task, args.seed, args.batch_size)


def check(args) -> None:
    """The arguments' ranges, before the model loads."""
    for flag, value in (("--batch-size", args.batch_size), ("--seq-len", args.seq_len),
                        ("--val-samples", args.val_samples), ("--max-chars", args.max_chars), ("--vocab", args.vocab)):
        if value is not None and value < 1:  # None: the checkpoint's own setting, or the default
            raise UsageError(f"{flag}: {value}; give at least 1")
    if args.vocab is not None and args.tokenizer != "bpe":  # the model's own tokenizer has its own size
        raise UsageError(f"--vocab {args.vocab}: applies only with --tokenizer bpe (a BPE trained on the text); "
                         "without it the tokenizer is the one beside the model, or --tokenizer-path")
    if args.tokenizer_path is not None and args.tokenizer not in (None, "file"):
        raise UsageError(f"--tokenizer-path: applies only with --tokenizer file (or alone), not --tokenizer "
                         f"{args.tokenizer}")
    if args.seed < 0 or (args.split_seed is not None and args.split_seed < 0):
        raise UsageError(f"--seed and --split-seed must be >= 0, got {args.seed} and {args.split_seed}")


def finite_or_null(figures: dict) -> dict:
    """JSON has no NaN: a figure that could not be measured (nothing scored) is null."""
    return {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in figures.items()}


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    check(args)
    quiet_transformers()
    print(json.dumps(finite_or_null(evaluate(args)), indent=2, allow_nan=False))


def entry() -> None:
    sys.exit(run(main))

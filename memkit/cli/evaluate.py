"""``python -m memkit.evaluate DIR --task ppl|position|passkey|mqar|reversal``: a saved model's figures, as JSON.

DIR: a memkit model, or a GPT-NeoX checkpoint (the plain baseline). The figures are the recipes' own
(``memkit.training.figures``), under the same names: ``val_ppl``/``val_acc``, ``pos_<lo>-<hi>``, ``passkey_<depth>``,
``mqar_d<k>``, ``rev_*``.

- Text tasks (ppl, position, reversal) evaluate on the validation split of ``--source`` with the recipes' data
  options; the text is encoded with the tokenizer.json beside the model when there is one (else ``--tokenizer``:
  a BPE trained on the same text, with the reversal facts as the text recipes train it, finds the same cached
  tokenizer a recipe used).
- Synthetic tasks (passkey, mqar) draw the validation samples of ``--seed``; the model must have been trained
  on the task (its vocabulary). ``--set KEY=VALUE`` sets a field of the task (``PasskeyTask``, ``RecallTask``,
  ``ReversalTask``), e.g. ``--set seq_len=512``; MQAR's segments default to the model's.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from memkit.cli import Parser, UsageError, quiet_transformers, run
from memkit.data.corpus import CorpusMissing, TextDataSpec
from memkit.eval.tasks.passkey import PasskeyTask
from memkit.eval.tasks.recall import RecallTask
from memkit.eval.tasks.reversal import ReversalTask
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
    data = p.add_argument_group("text data (ppl, position, reversal), as in the recipes")
    data.add_argument("--source", default="debian", help="'debian', local files, or hub:NAME")
    data.add_argument("--seq-len", type=int, default=128)
    data.add_argument("--max-chars", type=int, default=TextDataSpec.model_fields["max_chars"].default)
    data.add_argument("--val-samples", type=int, default=200)
    data.add_argument("--split-seed", type=int, default=0)
    data.add_argument("--tokenizer", choices=["bpe", "file", "bytes"], help="default: the tokenizer.json beside the "
                      "model, else bpe")
    data.add_argument("--vocab", type=int, default=1024, help="BPE vocabulary size (--tokenizer bpe)")
    data.add_argument("--tokenizer-path", help="a tokenizer.json (--tokenizer file)")
    return p


def task_fields(pairs: list[str]) -> dict[str, str]:
    fields = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise SpecError(f"--set: expected KEY=VALUE, got {pair!r}")
        fields[key.strip()] = json.loads(value) if value.strip()[:1] in "[{" else value.strip()
    return fields


def text_data(args, reversal: ReversalTask | None):
    beside = Path(args.dir).expanduser() / "tokenizer.json"
    if args.tokenizer is None and beside.is_file():
        tokenizer = dict(kind="file", path=str(beside))
    else:
        tokenizer = dict(kind=args.tokenizer or "bpe", vocab_size=args.vocab, path=args.tokenizer_path)
    spec = TextDataSpec.create(source=args.source, seq_len=args.seq_len, max_chars=args.max_chars,
                               num_val=args.val_samples, split_seed=args.split_seed, tokenizer=tokenizer)
    return spec.build(extra_train=reversal.train_texts() if reversal is not None else None)


def vocab_of(model) -> int:
    return model.get_input_embeddings().num_embeddings


def check_vocab(model, needed: int, what: str) -> None:
    if needed > vocab_of(model):
        raise CheckpointError(f"{what} uses {needed} token ids but the model's vocabulary has {vocab_of(model)}; "
                              "evaluate a model trained on it")


def evaluate(args) -> dict:
    model = load_model(args.dir)
    fields = task_fields(args.set)
    if args.task in ("ppl", "position", "reversal"):
        reversal = ReversalTask.create(**fields) if args.task == "reversal" else ReversalTask()
        if fields and args.task != "reversal":
            raise SpecError(f"--set: the {args.task} task has no fields; give data options instead")
        try:
            data = text_data(args, reversal)
        except CorpusMissing as e:
            raise UsageError(f"{e}, or give your own text: --source <your files>") from None
        check_vocab(model, data.vocab_size, "the tokenizer")
        if args.task == "ppl":
            return figures.perplexity_figures(model, data.val, args.batch_size)
        if args.task == "position":
            return figures.position_figures(model, data.val, args.batch_size)
        return figures.reversal_figures(model, reversal, data.tokenizer)
    if args.task == "passkey":
        task = PasskeyTask.create(**fields)
        check_vocab(model, task.vocab_size, "the passkey task")
        return figures.passkey_figures(model, task, args.seed, args.batch_size)
    segment = getattr(model, "segment_len", None)
    task = RecallTask.create(**{**({"segment_len": segment} if segment else {}), **fields})
    check_vocab(model, task.vocab_size, "the MQAR task")
    return figures.mqar_figures(model, task, args.seed, args.batch_size)


def check(args) -> None:
    """The arguments' ranges, before the model loads."""
    for flag, value in (("--batch-size", args.batch_size), ("--seq-len", args.seq_len),
                        ("--val-samples", args.val_samples), ("--max-chars", args.max_chars), ("--vocab", args.vocab)):
        if value < 1:
            raise UsageError(f"{flag}: {value}; give at least 1")
    if args.seed < 0 or args.split_seed < 0:
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

"""``python -m memkit.generate DIR --prompt "..."``: print a continuation from a saved model.

DIR is a directory written by ``save_pretrained``: a memkit model, or a GPT-NeoX checkpoint (transformers'
own ``generate`` then). The text is encoded with the tokenizer.json beside the model (``--tokenizer`` for another),
or as UTF-8 bytes when there is none. ``--memories`` starts from memories saved by ``MemoryBuilder.save``.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from memkit.cli import Parser, UsageError, quiet_transformers, run
from memkit.data.tokenizer import check_trained_tokenizer, tokenizer_beside
from memkit.models.builder import MemoryBuilder
from memkit.models.checkpoint import read_data_settings
from memkit.models.generation import sampling_errors
from memkit.models.loading import load_model
from memkit.models.pretrained import CheckpointError


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m memkit.generate", description=__doc__.splitlines()[0])
    p.add_argument("dir", help="a saved model's directory")
    p.add_argument("--prompt", required=True, help="the text to continue")
    p.add_argument("--max-new-tokens", type=int, default=50)
    p.add_argument("--sample", action="store_true", help="sample (default: greedy)")
    p.add_argument("--temperature", type=float, help="with --sample (default 1.0)")
    p.add_argument("--top-k", type=int, help="with --sample (default 50)")
    p.add_argument("--top-p", type=float, help="with --sample (default 1.0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling")
    p.add_argument("--tokenizer", help="a tokenizer.json (default: the one beside the model, else bytes)")
    p.add_argument("--memories", help="a memory state saved by MemoryBuilder.save to start from")
    return p


SAMPLING = {"temperature": 1.0, "top_k": 50, "top_p": 1.0}  # the defaults of the sampling settings


def check(args) -> None:
    """The arguments' ranges and files, before the model loads."""
    if args.max_new_tokens < 1:
        raise UsageError(f"--max-new-tokens: {args.max_new_tokens}; give at least 1")
    given = [f"--{name.replace('_', '-')}" for name in SAMPLING if getattr(args, name) is not None]
    for name, value, allowed in sampling_errors(*(SAMPLING[n] if getattr(args, n) is None else getattr(args, n)
                                                  for n in SAMPLING)):
        raise UsageError(f"--{name.replace('_', '-')}: {value:g}; give {allowed}")
    if given and not args.sample:  # greedy decoding reads none of them: say so rather than ignore them
        raise UsageError(f"{', '.join(given)}: {'applies' if len(given) == 1 else 'apply'} only with --sample "
                         "(greedy decoding reads no sampling settings); add --sample or drop it")
    for name, default in SAMPLING.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    if args.memories and not os.path.isfile(args.memories):
        raise UsageError(f"--memories: no file at {args.memories!r}; give a state saved by MemoryBuilder.save")


def memories_for(model, path: str):
    """The memory state saved at ``path``, checked against the model's memory layer (heads, dims, memories)."""
    state = MemoryBuilder.load(path)
    layer = model.memory
    N, H, d = layer.num_memories, layer.num_heads, layer.head_dim
    want = (H, d, d) if N == 1 else (N, H, d, d)  # M per sequence
    got = tuple(state.memory.M.shape[1:])
    if got != want:
        raise CheckpointError(f"--memories: {path!r} holds memory matrices of shape {list(got)} per sequence, but the "
                              f"model's memory layer has {list(want)} ({N} memories, {H} heads of {d} dims); build "
                              "them with this model (MemoryBuilder)")
    return state


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    check(args)
    quiet_transformers()
    model = load_model(args.dir)
    vocab = model.get_input_embeddings().num_embeddings if hasattr(model, "get_input_embeddings") else None
    tok = tokenizer_beside(args.dir, args.tokenizer, vocab)
    saved = read_data_settings(args.dir)  # a grid trial's checkpoint: the vocabulary it was trained with
    trained = saved.get("vocab_size") if saved and saved.get("kind") == "text" else None
    if trained is not None and tok.vocab_size != trained:
        raise CheckpointError(f"tokenizer: {args.tokenizer or 'the one found'} has a vocabulary of {tok.vocab_size} "
                              f"but the model was trained with one of {trained}; give the tokenizer it was trained with")
    if args.tokenizer:
        check_trained_tokenizer(tok, args.dir, f"tokenizer: {args.tokenizer}")
    ids = torch.tensor([tok.encode(args.prompt)], dtype=torch.long)
    if ids.numel() == 0:
        raise CheckpointError("prompt: it encodes to no tokens; give some text")
    kwargs = dict(max_new_tokens=args.max_new_tokens, do_sample=args.sample, temperature=args.temperature,
                  top_k=args.top_k, top_p=args.top_p)
    if getattr(model, "eos_token_id", None) is None:
        kwargs["eos_token_id"] = tok.eos_id
    if args.memories:
        if getattr(model, "memory", None) is None:
            raise CheckpointError(f"memories: the model in {args.dir!r} has no memory layer to start from them")
        kwargs["state"] = memories_for(model, args.memories)
    torch.manual_seed(args.seed)
    out = model.generate(ids, **kwargs)
    print(tok.decode(out[0, ids.shape[1]:].tolist()))


def entry() -> None:
    sys.exit(run(main))

"""Forward+backward time of MemoryAttention variants and the baseline layers against GPT-NeoX's own attention layer.

    python benchmarks/layer.py                      # hidden 512, 8 heads, batch 8, seq 256 and 1024
    python benchmarks/layer.py --seq 256 --batch 4
    python benchmarks/layer.py --seq 256 --only "multi 4 linear"   # the two write strategies alone
    python benchmarks/layer.py --seq 256 --only baseline            # DeltaNet, Gated DeltaNet, windows

The baselines (``baseline deltanet``, ``baseline gated deltanet``, ``baseline sliding window`` over one segment,
``baseline full attention``) are memkit's own layers at the same width; ``benchmarks/baselines.py`` adds their
parameters and state bytes at the recipes' tiny sizes.

Linear writes into memories known in advance can be made one after the other or by one cumulative sum
(``write_strategy``); "multi 4 linear, loop" and "multi 4 linear, cumulative sum" time both (the default
is the one that was faster here: the loop, on a 2-core CPU).

Variants are timed round-robin in one run (median of --repeats), so the ratio to plain holds on a
noisy machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from memkit import DeltaNetAttentionSpec, MemoryAttentionSpec, WindowAttentionSpec

VARIANTS = {
    "single": {},
    "multi 4": {"num_memories": 4},
    "multi 16": {"num_memories": 16},
    "multi 4 linear, loop": {"num_memories": 4, "update": "linear", "write_strategy": "loop"},
    "multi 4 linear, cumulative sum": {"num_memories": 4, "update": "linear", "write_strategy": "cumulative_sum"},
    "multi 4 mean_k": {"num_memories": 4, "landmark": "mean_k"},
    "multi 4 learned": {"num_memories": 4, "landmark": "learned"},
    "multi 4 hsa": {"num_memories": 4, "landmark": "hsa"},
    "hier 4 soft": {"num_memories": 4, "hierarchy": "soft"},
    "hier 4 hard": {"num_memories": 4, "hierarchy": "hard"},
}


def baseline_layers(hidden: int, heads: int, segment: int) -> dict:
    """name -> a baseline layer at this width (the window over one memory segment)."""
    size = dict(hidden_size=hidden, num_heads=heads)
    return {
        "baseline deltanet": DeltaNetAttentionSpec(**size).build(),
        "baseline gated deltanet": DeltaNetAttentionSpec(**size, gated=True).build(),
        "baseline sliding window": WindowAttentionSpec(**size, window=segment).build(),
        "baseline full attention": WindowAttentionSpec(**size).build(),
    }


def plain_layer(hidden: int, heads: int):
    from transformers import GPTNeoXConfig
    from transformers.models.gpt_neox.modeling_gpt_neox import (
        GPTNeoXAttention,
        GPTNeoXRotaryEmbedding,
    )

    cfg = GPTNeoXConfig(hidden_size=hidden, num_attention_heads=heads, rotary_pct=0.25, attn_implementation="sdpa")
    attn, rope = GPTNeoXAttention(cfg, 0), GPTNeoXRotaryEmbedding(cfg)

    def run(x):
        pos = torch.arange(x.shape[1])[None]
        return attn(x, attention_mask=None, position_embeddings=rope(x, pos))[0]

    return run, attn


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, nargs="+", default=[256, 1024])
    p.add_argument("--segment-len", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd multi 4 (compiles first)")
    p.add_argument("--only", default=None, help="time the variants whose name starts with this (and plain)")
    args = p.parse_args(argv)
    variants = {k: v for k, v in VARIANTS.items() if args.only is None or k.startswith(args.only)}
    if args.compile:
        variants["multi 4 compiled"] = {"num_memories": 4, "compile": True}
    torch.manual_seed(0)
    for T in args.seq:
        x = torch.randn(args.batch, T, args.hidden, requires_grad=True)
        fns = {"plain NeoX attention": plain_layer(args.hidden, args.heads)[0]}
        for name, extra in variants.items():
            layer = MemoryAttentionSpec(hidden_size=args.hidden, num_heads=args.heads, segment_len=args.segment_len,
                                        **{"update": "delta", **extra}).build()
            fns[name] = lambda x, layer=layer: layer(x)[0]
        for name, layer in baseline_layers(args.hidden, args.heads, args.segment_len).items():
            if args.only is None or name.startswith(args.only):
                fns[name] = lambda x, layer=layer: layer(x)[0]
        times = {n: [] for n in fns}
        for rep in range(args.repeats + 1):
            for name, fn in fns.items():
                t0 = time.perf_counter()
                fn(x).sum().backward()
                if rep:  # the first round warms up
                    times[name].append(time.perf_counter() - t0)
        base = statistics.median(times["plain NeoX attention"])
        print(f"\nseq {T}, batch {args.batch}, hidden {args.hidden}, {args.heads} heads, segment {args.segment_len}, "
              f"fwd+bwd, median of {args.repeats}, {torch.get_num_threads()} threads")
        print(f"{'layer':32} {'ms':>8} {'x plain':>8}")
        for name, ts in times.items():
            med = statistics.median(ts)
            print(f"{name:32} {med * 1e3:8.1f} {med / base:8.2f}")


if __name__ == "__main__":
    main()

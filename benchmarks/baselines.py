"""Forward+backward time of the baseline layers (DeltaNet, Gated DeltaNet, sliding-window and full attention)
beside MemoryAttention, at the tiny recipes' sizes.

    python benchmarks/baselines.py                  # hidden 128, 4 heads, batch 32, seq 128 and 512
    python benchmarks/baselines.py --seq 1024 --batch 8 --chunk-size 32
    python benchmarks/baselines.py --threads 1       # as a grid trial runs on one core

Layers are timed round-robin in one run (median of --repeats), so the ratio to the single-memory layer holds
on a noisy machine. Each row also gives the layer's parameters and its state's bytes per sequence (fp32).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from memkit import DeltaNetAttentionSpec, MemoryAttentionSpec, WindowAttentionSpec


def layers(hidden: int, heads: int, segment: int, window: int, chunk: int) -> dict:
    """name -> the layer, built at one width."""
    size = dict(hidden_size=hidden, num_heads=heads)
    memory = dict(size, segment_len=segment, update="delta")
    return {
        "memory single": MemoryAttentionSpec(**memory).build(),
        "memory multi 4": MemoryAttentionSpec(**memory, num_memories=4).build(),
        f"sliding window {window}": WindowAttentionSpec(**size, window=window).build(),
        "full attention": WindowAttentionSpec(**size).build(),
        "deltanet": DeltaNetAttentionSpec(**size, chunk_size=chunk).build(),
        "gated deltanet": DeltaNetAttentionSpec(**size, chunk_size=chunk, gated=True).build(),
    }


def state_bytes(layer, seq_len: int) -> int:
    try:
        return layer.memory_nbytes()
    except ValueError:  # full attention: its state grows with the sequence
        return layer.memory_nbytes(seq_len=seq_len)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, nargs="+", default=[128, 512])
    p.add_argument("--segment-len", type=int, default=32, help="memory layers' segments")
    p.add_argument("--window", type=int, default=32, help="sliding window's tokens")
    p.add_argument("--chunk-size", type=int, default=64, help="DeltaNet's chunks")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    fns = layers(args.hidden, args.heads, args.segment_len, args.window, args.chunk_size)
    base_name = "memory single"
    for T in args.seq:
        x = torch.randn(args.batch, T, args.hidden, requires_grad=True)
        times = {n: [] for n in fns}
        for rep in range(args.repeats + 1):
            for name, layer in fns.items():
                t0 = time.perf_counter()
                layer(x)[0].sum().backward()
                if rep:  # the first round warms up
                    times[name].append(time.perf_counter() - t0)
        base = statistics.median(times[base_name])
        print(f"\nseq {T}, batch {args.batch}, hidden {args.hidden}, {args.heads} heads, segment {args.segment_len}, "
              f"chunk {args.chunk_size}, fwd+bwd, median of {args.repeats}, {torch.get_num_threads()} threads")
        print(f"{'layer':22} {'ms':>8} {'x single':>9} {'params':>8} {'state B/seq':>12}")
        for name, ts in times.items():
            med, layer = statistics.median(ts), fns[name]
            params = sum(q.numel() for q in layer.parameters())
            print(f"{name:22} {med * 1e3:8.1f} {med / base:9.2f} {params:8d} {state_bytes(layer, T):12d}")


if __name__ == "__main__":
    main()

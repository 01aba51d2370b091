"""Stream a long input through the memory layer in pieces with the state carried.

    python benchmarks/streaming.py                        # 1M tokens, pieces of 4096, fp32 and bf16
    python benchmarks/streaming.py --tokens 65536

Prints, per dtype, resident memory after each tenth of the stream (it must stay flat) and whether
every output and the state stayed finite.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from memkit import MemoryAttentionSpec


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


@torch.no_grad()
def stream(dtype, tokens: int, piece: int, hidden: int, heads: int, memories: int) -> None:
    torch.manual_seed(0)
    layer = MemoryAttentionSpec(hidden_size=hidden, num_heads=heads, segment_len=64, update="delta",
                                num_memories=memories).build().to(dtype).eval()
    state, finite, marks = None, True, []
    t0 = time.perf_counter()
    steps = tokens // piece
    for i in range(steps):
        x = torch.randn(1, piece, hidden, dtype=dtype)
        y, state = layer(x, state)
        finite &= bool(torch.isfinite(y).all())
        if (i + 1) % max(1, steps // 10) == 0:
            marks.append(rss_mb())
    finite &= bool(torch.isfinite(state.memory.M).all() and torch.isfinite(state.memory.z).all())
    sec = time.perf_counter() - t0
    print(f"{str(dtype):15} {steps * piece:9d} tokens  {sec:7.1f}s  {steps * piece / sec:9.0f} tok/s  finite={finite}  "
          f"RSS MB at each tenth: {' '.join(f'{m:.0f}' for m in marks)}  (max-min {max(marks) - min(marks):.0f})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=1_000_000)
    p.add_argument("--piece", type=int, default=4096)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--memories", type=int, default=4)
    a = p.parse_args()
    print(f"memory layer, hidden {a.hidden}, {a.heads} heads, {a.memories} memories, delta, pieces of {a.piece}")
    for dtype in (torch.float32, torch.bfloat16):
        stream(dtype, a.tokens, a.piece, a.hidden, a.heads, a.memories)


if __name__ == "__main__":
    main()

"""Time and peak memory of the memory layer from 1k to 64k tokens, beside full softmax attention.

    python benchmarks/scaling.py                                # forward, batch 1, hidden 512, 8 heads
    python benchmarks/scaling.py --lengths 1024 4096 --backward

Each (layer, length) runs in a fresh process so its peak resident memory is its own. Full
attention is skipped once its score matrix alone would pass --max-gb (SDPA's CPU kernel may not
materialise it, so its memory can stay lower than that estimate; its time stays quadratic).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def child(kind: str, T: int, backward: bool, hidden: int, heads: int, segment: int) -> None:
    import torch
    import torch.nn.functional as F

    from memkit import MemoryAttentionSpec

    torch.manual_seed(0)
    x = torch.randn(1, T, hidden, requires_grad=backward)
    if kind == "memory":
        layer = MemoryAttentionSpec(hidden_size=hidden, num_heads=heads, segment_len=segment, update="delta",
                                    num_memories=4).build()
        fn = lambda: layer(x)[0]  # noqa: E731
    else:
        qkv = torch.nn.Linear(hidden, 3 * hidden)

        def fn():
            q, k, v = qkv(x).view(1, T, 3, heads, hidden // heads).permute(2, 0, 3, 1, 4)
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with torch.set_grad_enabled(backward):
        t0 = time.perf_counter()
        y = fn()
        if backward:
            y.float().sum().backward()
        seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "peak_mb": (peak - base) / 1024, "finite": bool(torch.isfinite(y).all())}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384, 65536])
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--segment-len", type=int, default=64)
    p.add_argument("--backward", action="store_true")
    p.add_argument("--max-gb", type=float, default=8.0)
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        return child(a.child[0], int(a.child[1]), a.backward, a.hidden, a.heads, a.segment_len)
    mode = "fwd+bwd" if a.backward else "fwd"
    print(f"memory layer (4 memories, delta, segment {a.segment_len}) vs full causal softmax attention, batch 1, "
          f"hidden {a.hidden}, {a.heads} heads, {mode}; peak = growth of resident memory in a fresh process")
    print(f"{'tokens':>7} {'mem s':>8} {'mem MB':>8} {'full s':>8} {'full MB':>8} {'mem s/ktok':>11} {'full s/ktok':>12}")
    for T in a.lengths:
        row = {}
        for kind in ("memory", "full"):
            if kind == "full" and a.heads * T * T * 4 / 2**30 > a.max_gb:
                row[kind] = None
                continue
            cmd = [sys.executable, __file__, "--child", kind, str(T), "--hidden", str(a.hidden), "--heads", str(a.heads),
                   "--segment-len", str(a.segment_len)] + (["--backward"] if a.backward else [])
            row[kind] = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
        m, f = row["memory"], row["full"]
        fs = f"{f['seconds']:8.3f} {f['peak_mb']:8.0f}" if f else f"{'skip':>8} {'':>8}"
        per = f"{f['seconds'] / T * 1e3:12.4f}" if f else f"{'':>12}"
        print(f"{T:7d} {m['seconds']:8.3f} {m['peak_mb']:8.0f} {fs} {m['seconds'] / T * 1e3:11.4f} {per}")


if __name__ == "__main__":
    main()

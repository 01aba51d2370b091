"""Training-step time of a memory model over the same model with plain attention, in one run.

    python benchmarks/step_time.py                       # pythia70m, batch 8 x 256
    python benchmarks/step_time.py --batch 4 --seq 256 --memories 1 4

Prints a table of ms per step (median of --repeats, after warm-up) and the ratio to plain.
Plain and memory steps are interleaved so machine noise hits both alike.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from memkit.eval.metrics import masked_loss
from memkit.models.memory_lm import MemoryLMSpec


def matmul_flops(n: int = 2048, repeats: int = 5) -> float:
    """The machine's limit as measured here: FLOP/s of an n×n fp32 matmul (best of repeats)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def step_fn(model, x, y, opt):
    def step():
        logits, _ = model(x)
        loss = masked_loss(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--segment-len", type=int, default=64)
    p.add_argument("--memories", type=int, nargs="+", default=[1, 4])
    p.add_argument("--window", choices=["segment", "full"], default="full")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randint(0, 50304, (args.batch, args.seq))
    y = torch.roll(x, -1, 1)
    variants = {"plain": MemoryLMSpec(memory_layer=None)}
    for n in args.memories:
        variants[f"memory N={n}"] = MemoryLMSpec.create(
            local_window=args.window, memory=dict(segment_len=args.segment_len, num_memories=n, update="delta")
        )
    steps, params = {}, {}
    for name, spec in variants.items():
        model = spec.build()
        # the input embedding is a lookup, not a matmul: leave it out of the FLOP count
        params[name] = sum(p.numel() for p in model.parameters()) - model.hf.gpt_neox.embed_in.weight.numel()
        steps[name] = step_fn(model, x, y, torch.optim.AdamW(model.parameters(), lr=1e-4))
        steps[name]()  # warm-up
    times = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["plain"])
    peak = matmul_flops()
    tokens = args.batch * args.seq
    print(f"pythia70m shape, batch {args.batch} x {args.seq}, window={args.window}, "
          f"segment_len={args.segment_len}, {torch.get_num_threads()} threads, {args.repeats} repeats")
    print(f"machine limit (measured 2048x2048 fp32 matmul): {peak / 1e9:.1f} GFLOP/s")
    print(f"{'model':14} {'ms/step':>9} {'x plain':>8} {'GFLOP/s':>9} {'of limit':>9}")
    for name, ts in times.items():
        med = statistics.median(ts)
        achieved = 6 * params[name] * tokens / med  # 6·N·tokens: forward + backward of the weights' matmuls
        print(f"{name:14} {med * 1e3:9.0f} {med / base:8.3f} {achieved / 1e9:9.1f} {achieved / peak:9.1%}")
    print("(GFLOP/s counts 6 x non-embedding parameters x tokens; attention scores are left out)")


if __name__ == "__main__":
    main()

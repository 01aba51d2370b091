"""The batched segment write against the per-token reference loop: how close each is to a float64
ground truth (target: within 1e-5 relative), and how much faster the batched write is.

    python benchmarks/write_paths.py
"""

from __future__ import annotations

import time

import torch

from memkit import MemoryStoreSpec
from memkit.ops.naive import naive_write


def best_of(fn, n=3) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    torch.manual_seed(0)
    print(f"{'update':7} {'B':>3} {'H':>3} {'T':>5} {'d':>4} {'loop err':>9} {'batched err':>12} {'loop ms':>9} "
          f"{'batched ms':>11} {'speed-up':>9}")
    for update in ("linear", "delta"):
        for B, H, T, d in [(8, 8, 64, 64), (8, 8, 256, 64), (1, 8, 2048, 64)]:
            store = MemoryStoreSpec(num_heads=H, head_dim=d, update=update).build()
            state = store.write(store.init_state(B), torch.randn(B, H, 16, d), torch.randn(B, H, 16, d))
            k, v = torch.randn(B, H, T, d), torch.randn(B, H, T, d)
            fast = store.write(state, k, v)
            M_loop, _ = naive_write(state.M, state.z, k, v, store.eps, update)
            M_true, _ = naive_write(state.M.double(), state.z.double(), k.double(), v.double(), store.eps, update)
            scale = float(M_true.abs().max())
            err_loop = float((M_loop.double() - M_true).abs().max()) / scale
            err_fast = float((fast.M.double() - M_true).abs().max()) / scale
            loop = best_of(lambda: naive_write(state.M, state.z, k, v, store.eps, update))
            batched = best_of(lambda: store.write(state, k, v))
            flag = "" if err_fast < 1e-5 else "  <-- batched not within 1e-5"
            print(f"{update:7} {B:3d} {H:3d} {T:5d} {d:4d} {err_loop:9.1e} {err_fast:12.1e} {loop * 1e3:9.1f} "
                  f"{batched * 1e3:11.2f} {loop / batched:8.0f}x{flag}")
    print("(errors: max |M - M_float64| / max |M_float64|, fp32 inputs)")


if __name__ == "__main__":
    main()

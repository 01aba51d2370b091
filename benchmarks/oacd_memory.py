"""Peak memory of OACD Phase 1 at several sample counts (each in a fresh process).

    python benchmarks/oacd_memory.py --samples 500 5000

Phase 1 computes contexts per batch and for a fixed probe subset, so its peak should stay flat
as samples grow (the reports' cache grew with samples: 2.4 GB at 500).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys


def child(samples: int, preset: str) -> None:
    import torch

    from ablations.space import apply_overrides
    from memkit.training.oacd import OACDPretrainer
    from recipes import context_kv

    torch.set_num_threads(1)
    spec = apply_overrides(context_kv.PRESETS[preset](), {"task.num_train": samples, "task.num_val": 8})
    model = spec.model.build()
    (ids, _), _ = spec.task.splits(0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rows = OACDPretrainer(model, spec.oacd).phase1(ids)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"samples": samples, "data_mb": ids.nbytes / 2**20, "peak_mb": after / 1024,
                      "phase1_growth_mb": (after - before) / 1024, "iterations": len(rows),
                      "convergence": rows[-1]["convergence"], "effective_rank": rows[-1]["effective_rank"]}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, nargs="+", default=[500, 5000])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.child, args.preset)
    print(f"{'samples':>8} {'data MB':>8} {'peak MB':>8} {'phase-1 growth MB':>18} {'iters':>6} {'conv':>6} {'erank':>6}")
    for n in args.samples:
        out = subprocess.run([sys.executable, __file__, "--child", str(n), "--preset", args.preset],
                             capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"{r['samples']:8d} {r['data_mb']:8.1f} {r['peak_mb']:8.0f} {r['phase1_growth_mb']:18.1f} "
              f"{r['iterations']:6d} {r['convergence']:6.2f} {r['effective_rank']:6.2f}")


if __name__ == "__main__":
    main()

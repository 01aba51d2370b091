"""Old and new ``MemoryAttention`` side by side over the option sweep: outputs, gradients, carried state.

    python benchmarks/compare_layers.py OLD_ROOT [--examples 300]

OLD_ROOT holds a copy of an earlier memkit renamed ``old_memkit`` (its imports rewritten, its
``__init__`` files emptied so nothing registers twice). Every example of the sweep of
tests/properties/test_family_laws.py (``every_option``: per-sequence, batch-shared, whole-call segments,
the leaking selection) builds the old layer with a seed, checks that the new spec builds the same weights
(same parameter names) from the same seed, runs both on fixed inputs (two calls, the state carried; the
batch-shared memory three), and reports outputs, every gradient and the carried state: how many agree bit
for bit and the largest difference, with the new layer's write strategy set both ways ("same" arithmetic:
the strategy the old layer used there; "other": the loop where it summed cumulatively).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections import defaultdict
from pathlib import Path

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def load_sweep():
    path = Path(__file__).resolve().parents[1] / "tests" / "properties" / "test_family_laws.py"
    spec = importlib.util.spec_from_file_location("family_laws", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.every_option


def run(layer, x, calls: int, dtype):
    """Outputs, input and parameter gradients, and the last state of ``calls`` calls (x split in two for
    the per-sequence memory; x again and again for the batch-shared one)."""
    params = dict(layer.named_parameters())
    ys, state = [], None
    T = x.shape[1]
    pieces = [x[:, : T // 2], x[:, T // 2 :]] if calls == 2 else [x] * calls
    for piece in pieces:
        y, state = layer(piece, state)
        ys.append(y)
    y = torch.cat(ys, 1)
    weight = torch.linspace(-1, 1, y.numel(), dtype=dtype).view_as(y)
    # a parameter y does not reach has gradient 0, whether or not the graph passes through it
    grads = torch.autograd.grad((y * weight).sum(), [x, *params.values()], allow_unused=True, materialize_grads=True)
    shared = getattr(layer.path, "shared", None) if hasattr(layer, "path") else getattr(layer, "shared", None)
    memory = shared.state.memory if shared is not None else state.memory
    carried = [memory.M, memory.z] + ([] if shared is not None else
                                       [t for t in (state.pending_q, state.pending_k, state.pending_v, state.prev_k,
                                                    state.lm_sum, state.lm_count) if t is not None])
    return {"outputs": [y], "gradients": list(grads), "state": carried}


def compare(a: list, b: list) -> tuple[bool, float, float]:
    """(bit for bit, largest |difference|, largest |difference| relative to the tensor's largest value)."""
    assert len(a) == len(b)
    same = all(torch.equal(x, y) for x, y in zip(a, b))
    diffs = [((x.double() - y.double()).abs().max().item(), x.double().abs().max().item()) for x, y in zip(a, b)
             if x.numel()]
    return same, max(d for d, _ in diffs), max(d / m if m else d for d, m in diffs)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old_root")
    p.add_argument("--examples", type=int, default=300)
    p.add_argument("--show", action="store_true", help="print the examples not bit for bit where the arithmetic is the same")
    args = p.parse_args(argv)
    sys.path[:0] = [args.old_root, str(Path(__file__).resolve().parents[1])]  # this checkout's memkit, not an install
    from old_memkit.blocks.attention import MemoryAttentionSpec as Old

    from memkit import MemoryAttentionSpec as New

    every_option = load_sweep()
    # (case, what) -> [examples, bit for bit, largest |diff|, largest |diff| relative to the tensor's largest value]
    figures = defaultdict(lambda: [0, 0, 0.0, 0.0])
    sweeps = {
        "sequence": every_option(selection_scope=st.sampled_from(["token", "sequence", "whole_call_leaks_future"])),
        "whole_call": every_option(segmentation=st.just("whole_call")),
        "batch_shared": every_option(scope=st.just("batch_shared"), segmentation=st.sampled_from(["fixed", "whole_call"]),
                                     selection_scope=st.sampled_from(["token", "sequence", "whole_call_leaks_future"])),
    }
    for sweep, options in sweeps.items():
        @settings(max_examples=args.examples, derandomize=True, database=None, deadline=None,
                  suppress_health_check=list(HealthCheck))
        @given(cfg=options, seed=st.integers(0, 10_000), T=st.integers(1, 14), train=st.booleans(),
               dtype=st.sampled_from([torch.float64, torch.float32]))
        def check(cfg, seed, T, train, dtype):
            old_cfg = {k: v for k, v in cfg.items() if k != "write_strategy"}
            torch.manual_seed(seed)
            old = Old(hidden_size=8, num_heads=2, **old_cfg).build().to(dtype).train(train)
            for strategy in ("loop", "cumulative_sum"):
                fields = {**cfg, "write_strategy": strategy}
                if "write_strategy" in New.inert_fields(fields):
                    if strategy == "cumulative_sum":
                        continue
                    fields.pop("write_strategy")
                torch.manual_seed(seed)
                new = New(hidden_size=8, num_heads=2, **fields).build().to(dtype).train(train)
                init_same = all(torch.equal(a, b) for a, b in zip(old.state_dict().values(), new.state_dict().values()))
                assert list(old.state_dict()) == list(new.state_dict()) and init_same, "a seed gives other weights"
                calls = 3 if cfg["memory_scope"] == "batch_shared" else 2
                if calls == 3:
                    old.reset_shared("training")
                x = torch.randn(2, T, 8, dtype=dtype, generator=torch.Generator().manual_seed(seed))
                got_old = run(old, x.clone().requires_grad_(), calls, dtype)
                got_new = run(new, x.clone().requires_grad_(), calls, dtype)
                # the old layer summed linear writes into known memories by one cumulative sum, else looped
                arithmetic = "same" if (strategy == "cumulative_sum") == ("write_strategy" in fields) else "other"
                for what in got_old:
                    same, diff, rel = compare(got_old[what], got_new[what])
                    fig = figures[(sweep, strategy, arithmetic, str(dtype).split(".")[-1], what)]
                    fig[0] += 1
                    fig[1] += same
                    fig[2], fig[3] = max(fig[2], diff), max(fig[3], rel)
                    if not same and arithmetic == "same" and args.show:
                        print("not bit for bit:", what, sweep, strategy, dtype, cfg, T, train)

        check()
    print(f"{'sweep':13} {'new writes':15} {'arithmetic':10} {'dtype':8} {'what':10} {'examples':>8} {'bit for bit':>11} "
          f"{'max |diff|':>11} {'relative':>9}")
    for (sweep, strategy, arithmetic, dtype, what), (n, same, diff, rel) in sorted(figures.items()):
        print(f"{sweep:13} {strategy:15} {arithmetic:10} {dtype:8} {what:10} {n:8d} {same:11d} {diff:11.3g} {rel:9.3g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

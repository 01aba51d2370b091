"""One table: the memory layer against FlashAttention and flash-linear-attention, and the pythia70m step.

    python benchmarks/gpu.py                     # on a GPU: bf16, 2k-64k tokens; on CPU: a small fallback
    python benchmarks/gpu.py --seq 2048 8192 --tokens 131072 --compile

Rows, forward+backward of a whole attention layer (projections included) at each length, with
batch × length = ``--tokens`` so every length fills the device alike:
- memory layer: single, multi 4, multi 16, hsa (4), hierarchical (4), all segments read at once;
- ``sdpa``: q/k/v/o projections around ``scaled_dot_product_attention``, causal, FlashAttention backend
  on CUDA;
- ``fla linear``: the same projections around flash-linear-attention's ``chunk_linear_attn`` (elu+1
  feature map, normalised), when ``fla`` is installed (a CUDA/Triton package; the row says so if not).
Then the pythia70m training step (bf16 autocast, fused AdamW) with its memory layer against the plain
model. Achieved TFLOP/s come from ``torch.utils.flop_counter`` over one step; the ceiling is a large
matmul measured in the same run. Figures are ratios within this one run: quote those.
On CPU (no CUDA) the script runs in fp32 at small sizes and leaves out the rows that need a GPU.
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from memkit import MemoryAttentionSpec
from memkit.models.memory_lm import MemoryLMSpec

VARIANTS = {
    "memory single": {},
    "memory multi 4": {"num_memories": 4},
    "memory multi 16": {"num_memories": 16},
    "memory hsa 4": {"num_memories": 4, "landmark": "hsa"},
    "memory hier 4": {"num_memories": 4, "hierarchy": "soft"},
}


class ProjectedAttention(nn.Module):
    """x [B,T,D] -> [B,T,D]: qkv projection, an attention op over [B,H,T,d] or [B,T,H,d], out projection."""

    def __init__(self, hidden: int, heads: int, op):
        super().__init__()
        self.heads, self.op = heads, op
        self.qkv, self.out = nn.Linear(hidden, 3 * hidden), nn.Linear(hidden, hidden)

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, D // self.heads).unbind(2)  # [B,T,H,d]
        return self.out(self.op(q, k, v).reshape(B, T, D))


def sdpa(q, k, v):
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
    return out.transpose(1, 2)


def fla_linear():
    """flash-linear-attention's chunked linear attention with memkit's feature map, or None."""
    try:
        from fla.ops.linear_attn import chunk_linear_attn
    except ImportError:
        return None

    def op(q, k, v):
        return chunk_linear_attn(F.elu(q) + 1, F.elu(k) + 1, v, normalize=True)[0]

    return op


def clock(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def timed(fn, device, repeats: int) -> float:
    """Median seconds of fn() over ``repeats`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = clock(device)
        fn()
        times.append(clock(device) - t0)
    return statistics.median(times)


def flops_of(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def matmul_ceiling(device, dtype) -> float:
    """FLOP/s of one large square matmul: the practical ceiling for the rows' achieved FLOP/s."""
    n = 8192 if device.type == "cuda" else 1024
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    return 2 * n**3 / timed(lambda: a @ b, device, 5)


def layer_step(layer, x):
    def step():
        out = layer(x)
        (out[0] if isinstance(out, tuple) else out).float().sum().backward()
    return step


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cuda = torch.cuda.is_available()
    p.add_argument("--seq", type=int, nargs="+", default=[2048, 8192, 32768, 65536] if cuda else [1024, 2048])
    p.add_argument("--tokens", type=int, default=131072 if cuda else 4096, help="batch × length per step")
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--segment-len", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--compile", action="store_true", help="also time the memory layer compiled (fullgraph)")
    p.add_argument("--step-seq", type=int, default=2048 if cuda else 256, help="pythia70m step: sequence length")
    p.add_argument("--step-batch", type=int, default=16 if cuda else 2)
    args = p.parse_args(argv)

    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda else torch.float32
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda else nullcontext
    ceiling = matmul_ceiling(device, dtype)
    print(f"device {torch.cuda.get_device_name() if cuda else 'CPU'}, {dtype}, matmul ceiling "
          f"{ceiling / 1e12:.1f} TFLOP/s, {args.tokens} tokens per step, hidden {args.hidden}, {args.heads} heads")
    if not cuda:
        print("no CUDA: fp32 at small sizes; the FlashAttention backend and fla rows are left out")

    ops = {"sdpa": sdpa}
    fla = fla_linear() if cuda else None
    if cuda:
        ops["fla linear"] = fla
    print(f"\n{'layer':22} {'tokens':>7} {'batch':>5} {'ms':>9} {'x sdpa':>7} {'TFLOP/s':>8} {'% ceil':>7}")
    for T in args.seq:
        B = max(1, args.tokens // T)
        x = torch.randn(B, T, args.hidden, device=device, dtype=torch.float32, requires_grad=True)
        layers = {}
        for name, op in ops.items():
            layers[name] = None if op is None else ProjectedAttention(args.hidden, args.heads, op).to(device)
        for name, extra in VARIANTS.items():
            spec = dict(hidden_size=args.hidden, num_heads=args.heads, segment_len=args.segment_len, update="delta",
                        **extra)
            layer = MemoryAttentionSpec(**spec).build().to(device)
            layer.path.read_group = None  # every segment of a call read at once
            layers[name] = layer
            if args.compile:
                layers[f"{name} compiled"] = MemoryAttentionSpec(**spec, compile=True).build().to(device)
        results = {}
        for name, layer in layers.items():
            if layer is None:
                print(f"{name:22} {T:7d} {B:5d}  not installed (pip install flash-linear-attention, needs CUDA)")
                continue
            step = layer_step(layer, x)

            def run(step=step):
                with autocast():
                    step()

            try:
                seconds = timed(run, device, args.repeats)
                flops = flops_of(run)
            except torch.OutOfMemoryError:
                print(f"{name:22} {T:7d} {B:5d}  out of memory")
                torch.cuda.empty_cache()
                continue
            results[name] = (seconds, flops)
        base = results.get("sdpa", (None,))[0]
        for name, (seconds, flops) in results.items():
            ratio = f"{seconds / base:7.2f}" if base else "       "
            print(f"{name:22} {T:7d} {B:5d} {seconds * 1e3:9.1f} {ratio} {flops / seconds / 1e12:8.3f} "
                  f"{100 * flops / seconds / ceiling:6.1f}%")

    print(f"\npythia70m training step (seq {args.step_seq}, batch {args.step_batch}, "
          f"{'bf16 autocast, fused AdamW' if cuda else 'fp32'})")
    ids = torch.randint(0, 50304, (args.step_batch, args.step_seq), device=device)
    base = None
    for name, layer_index in (("plain", None), ("memory layer 0", 0)):
        model = MemoryLMSpec.create(memory_layer=layer_index, memory=dict(segment_len=args.segment_len)).build().to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=cuda)

        def step(model=model, opt=opt):
            with autocast():
                logits, _ = model(ids)
                loss = F.cross_entropy(logits.flatten(0, 1).float(), ids.flatten())
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        seconds = timed(step, device, args.repeats)
        flops = flops_of(step)
        base = base or seconds
        print(f"{name:22} {seconds * 1e3:9.1f} ms  x plain {seconds / base:5.2f}  {flops / seconds / 1e12:6.3f} TFLOP/s "
              f"({100 * flops / seconds / ceiling:.1f}% of the matmul ceiling)")


if __name__ == "__main__":
    main()

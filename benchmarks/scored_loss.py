"""Training-step time with the head at scored positions only (``loss_at="scored"``) against logits at every
position (``"every_position"``), in one run, steps interleaved.

    python benchmarks/scored_loss.py                     # pythia70m's vocabulary and width, 2 layers
    python benchmarks/scored_loss.py --layers 6 --batch 8

Rows: with pythia70m's vocabulary and width, a recall batch (64-token rows, 4 scored: MQAR's share) and a text
batch (256-token rows, every position scored, twice the batch), the latter in one piece and in 2,048-row chunks
recomputed in backward; and the main grid's own step (the ``infini_pythia`` tiny preset: vocabulary 97, 16 of 96
positions scored, batch 32). Prints ms per step (median of --repeats after a warm-up), the ratio scored / every
position, and the float32 logits each path keeps for backward.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from memkit.eval.metrics import masked_loss
from memkit.models.memory_lm import MemoryLMSpec
from recipes.infini_pythia import tiny


def step(model, opt, x, y, scored: bool, chunk_rows: int) -> float:
    """One optimiser step; its seconds."""
    t0 = time.perf_counter()
    loss = model(x, targets=y, loss_chunk_rows=chunk_rows).loss if scored else masked_loss(model(x).logits, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return time.perf_counter() - t0


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: as is)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    V = 50304
    model = MemoryLMSpec.create(vocab_size=V, hidden_size=512, num_layers=args.layers, num_heads=8,
                                intermediate_size=2048, memory=dict(segment_len=64, num_memories=4)).build()
    cases = []
    x = torch.randint(0, V, (args.batch, 64))
    y = torch.full_like(x, -100)
    y[:, -4:] = x[:, :4]
    cases.append((f"recall 64 tokens, 4 scored, x{args.batch}", model, x, y, 8192))
    x = torch.randint(0, V, (2 * args.batch, 256))  # 4,096 scored rows by default
    cases.append((f"text 256 tokens, all scored, x{2 * args.batch}", model, x, x.roll(-1, 1), 8192))
    cases.append(("the same, chunks of 2,048 recomputed in backward", model, x, x.roll(-1, 1), 2048))
    preset = tiny()
    x, y = preset.task.splits(0)[0]
    cases.append(("the tiny preset's recall, x32", preset.model.build(), x[:32], y[:32], 8192))
    print("| batch | every position ms | scored ms | scored / every | logits kept, every | "
          "logits kept, scored |")
    print("|---|---|---|---|---|---|")
    for name, model, x, y, chunk_rows in cases:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        V = model.get_output_embeddings().weight.shape[0]
        times = {True: [], False: []}
        for i in range(args.repeats + 1):
            for scored in (False, True):
                t = step(model, opt, x, y, scored, chunk_rows)
                if i:  # the first round warms up
                    times[scored].append(t)
        every, scored = (statistics.median(times[k]) * 1e3 for k in (False, True))
        n = int((y != -100).sum())
        kept_every, kept_scored = x.numel() * V * 4 / 2**20, (n if n <= chunk_rows else chunk_rows) * V * 4 / 2**20
        print(f"| {name} | {every:.1f} | {scored:.1f} | {scored / every:.2f} | {kept_every:.1f} MiB | "
              f"{kept_scored:.1f} MiB |", flush=True)


if __name__ == "__main__":
    main()

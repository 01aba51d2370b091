"""Generation speed with and without the memory layer, at a long prompt, in one run.

    python benchmarks/generation.py                      # pythia70m shape, prompt 2,048, 64 new tokens, batch 1
    python benchmarks/generation.py --prompt 512 --new 32

Models (random weights, the pythia70m preset's shape, greedy decoding): the preset itself (memory layer at
layer 0, plain layers on 64-token segments), the same model without its memory layer (same window), and
transformers' GPT-NeoX ``generate`` with full attention over the prompt (its own key/value cache; 2,048 positions
at most, so the prompt is cut to fit). Prints prefill seconds, decode tokens/s and the ratio to the model without
memory.
"""

from __future__ import annotations

import argparse
import time

import torch

from recipes.infini_pythia import pythia70m


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def memkit_speed(model, prompt, new):
    """(prefill seconds, decode tokens/s): the prompt's call, then ``new`` one-token calls."""
    with torch.no_grad():
        (_, state), prefill = timed(lambda: model(prompt))
        out, total = timed(lambda: model.generate(prompt, max_new_tokens=new, eos_token_id=[]))
    assert out.shape[1] == prompt.shape[1] + new
    return prefill, (new - 1) / max(total - prefill, 1e-9)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompt", type=int, default=2048)
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: as is)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    spec = pythia70m().model
    with_memory = spec.build().eval()
    without = spec.with_overrides(memory_layer=None).build().eval()
    prompt = torch.randint(0, spec.vocab_size, (1, args.prompt))
    rows = []
    for name, model in [("memkit, memory layer (segment window)", with_memory),
                        ("memkit, no memory layer (segment window)", without)]:
        prefill, speed = memkit_speed(model, prompt, args.new)
        rows.append((name, prefill, speed))
    hf = without.hf
    cut = prompt[:, : min(args.prompt, hf.config.max_position_embeddings - args.new)]
    with torch.no_grad():
        _, prefill = timed(lambda: hf(cut, use_cache=True))
        _, total = timed(lambda: hf.generate(cut, max_new_tokens=args.new, min_new_tokens=args.new, do_sample=False,
                                             pad_token_id=0))
    rows.append((f"transformers GPT-NeoX generate, full attention (prompt {cut.shape[1]})", prefill,
                 (args.new - 1) / max(total - prefill, 1e-9)))
    base = rows[1][2]
    print(f"prompt {args.prompt} tokens, {args.new} new, batch 1, {torch.get_num_threads()} threads\n")
    print("| model | prefill s | decode tokens/s | vs no memory |\n|---|---|---|---|")
    for name, prefill, speed in rows:
        print(f"| {name} | {prefill:.2f} | {speed:.1f} | {speed / base:.2f} |")


if __name__ == "__main__":
    main()

"""Save/load of the pythia70m preset, and how exactly a retrofitted Pythia-70M-shaped model starts as its checkpoint.

    python benchmarks/saved_models.py                    # in a temporary folder
    python benchmarks/saved_models.py --dir /tmp/bench   # keep the files

Prints the time of ``save_pretrained`` and of ``AutoModelForCausalLM.from_pretrained``, the size on disk, whether
the logits after loading are bit-equal, and, for a random GPT-NeoX of Pythia-70M's shape saved as a checkpoint and
retrofitted (memory layer at 0), the largest logit difference on one segment (64 tokens) and on four.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, GPTNeoXConfig, GPTNeoXForCausalLM

import memkit  # noqa: F401  (registers the model types)
from memkit import MemoryAttentionSpec, retrofit
from recipes.infini_pythia import pythia70m


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="where to write (default: a temporary folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.dir or scratch)
        torch.manual_seed(0)
        model = pythia70m().model.build().eval()
        x = torch.randint(0, 50304, (1, 256))
        t0 = time.perf_counter()
        model.save_pretrained(root / "pythia70m")
        save = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = AutoModelForCausalLM.from_pretrained(root / "pythia70m").eval()
        load = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in (root / "pythia70m").iterdir())
        with torch.no_grad():
            same = torch.equal(again(x)[0], model(x)[0])
        print(f"| pythia70m preset ({model.num_parameters():,} parameters) | save {save:.2f} s | load {load:.2f} s | "
              f"{size / 2**20:.1f} MiB on disk | logits bit-equal after loading: {same} |")
        neox = GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=50304, hidden_size=512, num_hidden_layers=6,
                                                num_attention_heads=8, intermediate_size=2048, rotary_pct=0.25,
                                                max_position_embeddings=2048)).eval()
        neox.save_pretrained(root / "neox")
        fitted = retrofit(root / "neox", memory=MemoryAttentionSpec(segment_len=64), memory_layer=0).eval()
        with torch.no_grad():
            one = (fitted(x[:, :64])[0] - neox(x[:, :64]).logits).abs().max()
            four = (fitted(x)[0] - neox(x).logits).abs().max()
        print(f"| retrofit, Pythia-70M shape, layer 0, segments of 64 | one segment: max |Δlogit| {one:.2e} | "
              f"four segments: {four:.2e} (the memory layer's local attention sees one segment) |")


if __name__ == "__main__":
    main()

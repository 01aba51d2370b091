"""How sharp soft selection over N memories gets as the memories fill: the selector's normalised
entropy (1 = uniform over the written memories, 0 = one memory takes all) after S segments written
round robin, per landmark, on random inputs through an untrained layer; optionally also on a trained
``infini_pythia`` model's recall data (``--trained``: trains one tiny trial per landmark first).

    python benchmarks/selection_entropy.py                      # random inputs, N = 4
    python benchmarks/selection_entropy.py --memories 8 --segments 2 4 8 16 50
    python benchmarks/selection_entropy.py --trained            # minutes: trains the tiny preset per landmark

The ``memory_norm`` landmark is z = Σσ(k): it grows with every write, so the scores q·z/√d grow and
the softmax hardens (and its gradient vanishes) as a memory fills; ``memory_norm_normalised``
(z/‖z‖) and ``mean_k`` do not grow.
"""

from __future__ import annotations

import argparse
import math

import torch

from memkit import MemoryAttentionSpec

LANDMARKS = ["memory_norm", "memory_norm_normalised", "mean_k"]


def entropy_of(weights: torch.Tensor, written: int) -> float:
    """Mean normalised entropy of weights [..., N] over the ``written`` memories that can be chosen."""
    w = weights.clamp_min(1e-12)
    h = -(w * w.log()).sum(-1)
    return float((h / math.log(written)).mean()) if written > 1 else float("nan")


@torch.no_grad()
def random_inputs(landmark: str, memories: int, segments: int, seed: int = 0, hidden: int = 64, heads: int = 4,
                  L: int = 8, batch: int = 16) -> float:
    """Entropy of the selection a query segment sees after ``segments`` random segments were written."""
    torch.manual_seed(seed)
    layer = MemoryAttentionSpec(hidden_size=hidden, num_heads=heads, segment_len=L, num_memories=memories,
                                landmark=landmark, update="delta", key_shift=True).build().eval()
    _, state = layer(torch.randn(batch, segments * L, hidden))
    w = layer.selection_weights(torch.randn(batch, L, hidden), state)  # [B,H,L,N]
    return entropy_of(w, min(segments, memories))


@torch.no_grad()
def trained(landmark: str, memories: int, seed: int = 0) -> tuple[float, float]:
    """(normalised entropy at the query segments, test recall) of the tiny recipe trained with ``landmark``."""
    from ablations.space import apply_overrides
    from recipes import infini_pythia as recipe

    spec = apply_overrides(recipe.tiny(), {"model.memory.num_memories": memories, "model.memory.landmark": landmark,
                                           "train.seed": seed})
    torch.manual_seed(seed)
    model = spec.model.build()
    tr, va = spec.task.splits(seed)
    from memkit.training.trainer import evaluate, train

    draw = (lambda e: spec.task.train_epoch(seed, e)) if spec.train.fresh_samples else tr
    train(model, draw, va, spec.train, progress=False)
    ids, targets = spec.task.test_split(seed)
    ids = ids[:128]
    layer, L, W = model.memory, spec.task.segment_len, spec.task.write_segments
    # the memory layer's input for the write phase, then the selection the first query segment sees
    captured = {}
    hook = layer.register_forward_pre_hook(lambda mod, args, kwargs: captured.setdefault("x", args[0]),
                                           with_kwargs=True)
    model.eval()
    model(ids)
    hook.remove()
    x = captured["x"]
    _, state = layer(x[:, : W * L])
    w = layer.selection_weights(x[:, W * L : (W + 1) * L], state)
    recall = evaluate(model, (ids, targets[:128]), 32)["acc"]
    return entropy_of(w, min(W, memories)), recall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--memories", type=int, default=4)
    p.add_argument("--segments", type=int, nargs="+", default=[4, 8, 16, 50])
    p.add_argument("--trained", action="store_true", help="also train the tiny preset per landmark (minutes)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    print(f"normalised selection entropy on random inputs, {args.memories} memories (1 = uniform)")
    print(f"{'landmark':24}" + "".join(f"{f'S={s}':>9}" for s in args.segments))
    for lm in LANDMARKS:
        print(f"{lm:24}" + "".join(f"{random_inputs(lm, args.memories, s, args.seed):9.3f}" for s in args.segments))
    if args.trained:
        print(f"\ntrained tiny preset, {args.memories} memories, seed {args.seed}: entropy at the first query segment")
        for lm in LANDMARKS:
            h, acc = trained(lm, args.memories, args.seed)
            print(f"{lm:24} entropy {h:.3f}  test recall {acc:.3f}")


if __name__ == "__main__":
    main()

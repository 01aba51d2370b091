"""Memory selection accuracy: one domain per memory, queries from each domain.

``MemoryBuilder`` writes source i into memory i; each query (token ids of one domain's held-out
text) is scored by the layer's selector against those memories: its choice is the memory with
the largest weight averaged over heads and tokens. Accuracy is against the query's own domain;
chance is 1/N.
"""

from __future__ import annotations

import torch

from memkit.models.builder import MemoryBuilder
from memkit.models.inference import eval_mode


def selection_accuracy(model, sources: list[torch.Tensor], queries: list[tuple[int, torch.Tensor]],
                       call_tokens: int | None = None) -> dict:
    """model: a ``MemoryLM`` with N >= len(sources) memories. sources[i]: token ids [n_i] for memory i.
    queries: (source index, token ids [T]). ``call_tokens``: a whole-call layer's call length when its memories
    are built (``MemoryBuilder``; the sequence length it was trained on). Returns {"accuracy", "chance", "per_source": [acc per
    source], "choices": [chosen memory per query]}."""
    layer = model.memory
    if layer is None or layer.num_memories < 2:
        raise ValueError("selection accuracy needs a memory layer with 2 or more memories")
    state = MemoryBuilder(model, call_tokens=call_tokens).build(sources)
    seen: list[torch.Tensor] = []
    hook = layer.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    choices = []
    try:
        with eval_mode(model) as device, layer.sequence_scope():  # the queries write nothing shared
            for _, ids in queries:
                seen.clear()
                model(ids.to(device)[None], documents="run_together")  # the layer's input for the whole query
                w = layer.selection_weights(seen[0], state)  # [1,H,T,N]
                choices.append(int(w.mean((1, 2))[0].argmax()))
    finally:
        hook.remove()
    truth = torch.tensor([i for i, _ in queries])
    chosen = torch.tensor(choices)
    per_source = [float((chosen[truth == i] == i).float().mean()) if (truth == i).any() else float("nan")
                  for i in range(len(sources))]
    return {"accuracy": float((chosen == truth).float().mean()), "chance": 1 / len(sources),
            "per_source": per_source, "choices": choices}

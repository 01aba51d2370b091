"""A model's state, detached or cut to some rows, continues the stream as the whole state does: ``detach`` and
``select`` (written once over the state's fields, ``memkit.models.streaming.StreamState``) reach every tensor."""

import dataclasses

import pytest
import torch
from test_generation import context_model, memory_model

V = 48

MODELS = {
    "memory-landmarks": lambda: memory_model("segment", num_memories=3, landmark="hsa", selection="soft"),
    "memory-full-window": lambda: memory_model("full", num_memories=2, landmark="mean_k"),
    "plain": lambda: memory_model("segment", memory_layer=None),
    "context-neox": lambda: context_model(window=4, context=dict(context_dim=6, interval=3, max_contexts=3)),
    "context-kv-only": lambda: context_model(body="kv_only", context=dict(context_dim=6, interval=3, max_contexts=3)),
}


def tensors(value):
    """Every tensor in a state: its dataclass fields and tuples, all the way down."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, tuple):
        for v in value:
            yield from tensors(v)
    elif dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            yield from tensors(getattr(value, f.name))


@pytest.mark.parametrize("name", list(MODELS))
def test_a_detached_state_has_no_graph_and_continues_the_same(name):
    model = MODELS[name]().train()
    ids = torch.randint(0, V, (3, 10), generator=torch.Generator().manual_seed(1))
    _, state = model(ids[:, :7])
    assert any(t.requires_grad for t in tensors(state))  # the call's graph reaches into its state
    detached = state.detach()
    assert type(detached) is type(state) and detached.seen == state.seen
    assert not any(t.requires_grad for t in tensors(detached))
    assert sum(1 for _ in tensors(detached)) == sum(1 for _ in tensors(state))
    torch.testing.assert_close(model(ids[:, 7:], detached)[0], model(ids[:, 7:], state)[0], rtol=0, atol=0)


@pytest.mark.parametrize("name", list(MODELS))
def test_the_state_of_some_rows_continues_those_rows(name):
    model = MODELS[name]()
    ids = torch.randint(0, V, (3, 10), generator=torch.Generator().manual_seed(2))
    _, state = model(ids[:, :6])
    rows = torch.tensor([2, 0])
    picked = state.select(rows)
    assert all(t.shape[0] == 2 for t in tensors(picked) if t.dim() > 0)
    whole, _ = model(ids[:, 6:], state)
    part, _ = model(ids[rows, 6:], picked)
    torch.testing.assert_close(part, whole[rows], rtol=1e-5, atol=1e-5)

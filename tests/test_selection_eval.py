"""Memory selection accuracy: the weights it scores are the layer's own, and a layer whose
selection query equals its key picks the memory written with the query's own text."""

import pytest
import torch

from memkit.eval.tasks.selection import selection_accuracy
from memkit.models.builder import MemoryBuilder
from memkit.models.memory_lm import MemoryLMSpec


def model(landmark="mean_k", key_shift=False, **memory):
    torch.manual_seed(0)
    return MemoryLMSpec.create(
        vocab_size=40, hidden_size=64, num_layers=1, num_heads=2, intermediate_size=64, local_window="segment",
        memory=dict(segment_len=4, num_memories=4, landmark=landmark, key_shift=key_shift, **memory),
    ).build().eval()


def record_weights(m, into: list) -> None:
    """Every weighting the layer's selector computes during forward is appended to ``into``."""
    compute = m.memory.path.selector.weights
    m.memory.path.selector.weights = lambda *args: into.append(compute(*args)) or into[-1]


def test_selection_weights_are_the_weights_the_layer_reads_with():
    m = model(landmark="memory_norm", key_shift=True)
    sources = [torch.randint(0, 40, (16,)) for _ in range(4)]
    state = MemoryBuilder(m).build(sources)
    query = torch.randint(0, 40, (1, 4))  # one segment: its read uses the built memories only
    seen, used = [], []
    h1 = m.memory.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    record_weights(m, used)
    with torch.no_grad():
        m(query, state)
    h1.remove()
    got = m.memory.selection_weights(seen[0], state)
    assert got.shape == (1, 2, 4, 4)
    torch.testing.assert_close(got, used[0])


@pytest.mark.parametrize("scope", ["sequence", "token"])
@pytest.mark.parametrize("selection", ["soft", "hard"])
def test_selection_weights_of_a_long_query_are_those_forward_reads_with_segment_by_segment(scope, selection):
    """A query of three segments: each segment's weights are the ones forward computes when that segment
    reads the built memories (a sequence-scope mean restarts at every segment, as in forward)."""
    m = model(landmark="memory_norm", selection_scope=scope, selection=selection, top_k=2)
    state = MemoryBuilder(m).build([torch.randint(0, 40, (16,)) for _ in range(4)])
    query = torch.randint(0, 40, (1, 12))
    seen, used = [], []
    h1 = m.memory.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    record_weights(m, used)
    with torch.no_grad():
        m(query, state)
        got = m.memory.selection_weights(seen[0], state)
        for s in range(3):  # each segment alone from the built state: one read, of the built memories
            used.clear()
            m(query[:, 4 * s : 4 * s + 4], state)
            torch.testing.assert_close(got[:, :, 4 * s : 4 * s + 4], used[0])
    h1.remove()


def test_a_selector_that_knows_the_answer_scores_every_query():
    m = model()
    D = m.memory.hidden_size
    with torch.no_grad():  # selection query = key: each query token matches its own memory's mean key best
        m.memory.qkv.weight[:D] = m.memory.qkv.weight[D : 2 * D]
    tokens = [3, 11, 19, 27]
    sources = [torch.full((16,), t) for t in tokens]
    queries = [(i, torch.full((4,), t)) for i, t in enumerate(tokens) for _ in range(2)]
    res = selection_accuracy(m, sources, queries)
    assert res["accuracy"] == 1.0 and res["per_source"] == [1.0] * 4 and res["chance"] == 0.25
    assert res["choices"] == [0, 0, 1, 1, 2, 2, 3, 3]
    # a selector that always picks memory 0 scores 1/4
    shuffled = [(i, torch.full((4,), tokens[0])) for i, _ in queries]
    assert selection_accuracy(m, sources, shuffled)["accuracy"] == 0.25

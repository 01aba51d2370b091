"""Knock-outs and the recorder of memkit.blocks.diagnostics."""

import torch

from memkit import MemoryAttentionSpec
from memkit.blocks.diagnostics import knock_out, record


def layer_and_state(**kw):
    torch.manual_seed(0)
    layer = MemoryAttentionSpec(hidden_size=8, num_heads=2, segment_len=3, **kw).build().double()
    _, state = layer(torch.randn(2, 9, 8, dtype=torch.float64))  # three segments: every memory written
    return layer, state, torch.randn(2, 6, 8, dtype=torch.float64)


def test_a_gate_knocked_out_is_the_layer_with_its_gate_shut_and_it_comes_back():
    layer, state, x = layer_and_state(num_memories=2)
    before, _ = layer(x, state)
    with knock_out(layer, "gate"):
        got, carried = layer(x, state)
    with torch.no_grad():
        layer.gate_logit.fill_(-1e4)  # sigmoid: exactly 0 in float64
    shut, shut_state = layer(x, state)
    torch.testing.assert_close(got, shut, rtol=0, atol=0)
    torch.testing.assert_close(carried.memory.M, shut_state.memory.M)  # the memory is still written
    with torch.no_grad():
        layer.gate_logit.fill_(0.0)
    torch.testing.assert_close(layer(x, state)[0], before, rtol=0, atol=0)


def test_a_read_knocked_out_keeps_the_gate_as_trained():
    layer, state, x = layer_and_state()  # g = ½ in every head
    with knock_out(layer, "gate"):
        local_only, _ = layer(x, state)
    with knock_out(layer, "read"):
        got, _ = layer(x, state)
    bias = layer.out.bias
    torch.testing.assert_close(got, 0.5 * (local_only - bias) + bias)  # out((1−g)·A_loc), out linear
    assert not torch.allclose(got, layer(x, state)[0])


def test_the_recorder_gives_each_heads_share_and_the_selection_weights():
    layer, state, x = layer_and_state(num_memories=3)
    with torch.no_grad():
        layer.gate_logit.copy_(torch.tensor([1e4, -1e4]))  # head 0 memory only, head 1 local only
    with record(layer) as records:
        _, after = layer(x, state)
        with knock_out(layer, "read"):
            layer(x, state)
    rec = records[""]
    torch.testing.assert_close(rec.shares[0], torch.tensor([1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(rec.shares[1], torch.tensor([0.0, 0.0], dtype=torch.float64))
    first = rec.selections[0][0]  # segment 0 read the memories of `state`
    torch.testing.assert_close(first, layer.selection_weights(x[:, :3], state))
    assert len(rec.selections[0]) == 2 and layer.recorder is None and layer.path.recorder is None

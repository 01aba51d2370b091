"""Decoding with the state carried equals the full forward, for every memory option; chunks equal one call."""

import pytest
import torch

from memkit import ContextKVLMSpec, InputTooLong, MemoryLMSpec

V = 48

# every memory option the issue names: single; multi with each landmark and selection; hierarchical soft/hard;
# plus the write policies, the delta rule and the sequence scope
MEMORY_OPTIONS = [dict(num_memories=1), dict(num_memories=1, update="delta", key_shift=True, rotary_dim=2)]
MEMORY_OPTIONS += [dict(num_memories=3, landmark=lm, selection=sel)
                   for lm in ("memory_norm", "memory_norm_normalised", "mean_k", "learned", "hsa", "hsa_last_keys")
                   for sel in ("soft", "hard")]
MEMORY_OPTIONS += [dict(num_memories=3, hierarchy=h, update="delta") for h in ("soft", "hard")]
MEMORY_OPTIONS += [dict(num_memories=3, write_policy="nearest", landmark="mean_k", selection_query="projection"),
                   dict(num_memories=2, write_policy="fill", fill_segments=2, selection_scope="sequence"),
                   dict(num_memories=2, write_strategy="cumulative_sum")]
CONTEXT_OPTIONS = [dict(window=w, body=body, context=dict(context_dim=6, interval=3, max_contexts=3, mode=mode,
                                                          mask_padding=mask))
                   for w, body, mode, mask in [(4, "neox", "fixed", True), (4, "neox", "dynamic", False),
                                               (0, "neox", "dynamic", True), (0, "neox", "fixed", False),
                                               (0, "kv_only", "fixed", True), (0, "kv_only", "dynamic", False)]]


def memory_model(window="segment", memory_layer=0, **memory):
    torch.manual_seed(0)
    return MemoryLMSpec.create(vocab_size=V, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
                               max_position_embeddings=64, local_window=window, memory_layer=memory_layer,
                               memory=dict(segment_len=4, **memory)).build().eval()


def context_model(**fields):
    torch.manual_seed(0)
    return ContextKVLMSpec.create(vocab_size=V, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
                                  **fields).build().eval()


def models():
    for i, opt in enumerate(MEMORY_OPTIONS):
        for window in ("segment", "full"):
            yield pytest.param(lambda o=opt, w=window: memory_model(w, **o), id=f"memory{i}-{window}")
    for window in ("segment", "full"):
        yield pytest.param(lambda w=window: memory_model(w, memory_layer=None), id=f"plain-{window}")
    for i, opt in enumerate(CONTEXT_OPTIONS):
        yield pytest.param(lambda o=opt: context_model(**o), id=f"context{i}")


@pytest.mark.parametrize("make", list(models()))
def test_greedy_decoding_equals_the_full_forward_and_chunks_equal_one_call(make):
    model = make()
    prompt = torch.randint(0, V, (2, 11))  # two segments and a pending one
    out = model.generate(prompt, max_new_tokens=9, return_dict_in_generate=True, output_logits=True)
    seq = out.sequences
    assert seq.shape == (2, 20) and torch.equal(seq[:, :11], prompt)
    full, _ = model(seq[:, :-1])
    torch.testing.assert_close(torch.stack(out.logits, 1), full[:, 10:], rtol=1e-4, atol=1e-4)
    assert torch.equal(seq[:, 11:], torch.stack(out.logits, 1).argmax(-1))  # greedy: each token is the argmax
    pieces, state = [], None
    for a, b in [(0, 1), (1, 6), (6, 7), (7, 19)]:
        logits, state = model(seq[:, a:b], state)
        pieces.append(logits)
    torch.testing.assert_close(torch.cat(pieces, 1), full, rtol=1e-4, atol=1e-4)


def test_sampling_follows_transformers_arguments():
    model = memory_model(num_memories=2)
    prompt = torch.randint(0, V, (3, 5))
    greedy = model.generate(prompt, max_new_tokens=6)
    torch.manual_seed(1)
    assert torch.equal(model.generate(prompt, max_new_tokens=6, do_sample=True, top_k=1), greedy)  # top-1 is greedy
    torch.manual_seed(1)
    first = model.generate(prompt, max_new_tokens=6, do_sample=True, top_k=None)
    torch.manual_seed(1)
    assert torch.equal(model.generate(prompt, max_new_tokens=6, do_sample=True, top_k=None), first)  # seeded
    assert not torch.equal(first, greedy)  # sampling leaves the argmax path (an untrained model is nearly flat)
    cold = model.generate(prompt, max_new_tokens=6, do_sample=True, top_k=None, temperature=1e-4)
    assert torch.equal(cold, greedy)  # a cold temperature samples the argmax
    out = model.generate(prompt, max_length=8, do_sample=True, top_p=1e-6, return_dict_in_generate=True,
                         output_scores=True)
    assert out.sequences.shape == (3, 8)  # max_length counts the prompt
    kept = torch.isfinite(torch.stack(out.scores, 1))
    assert (kept.sum(-1) == 1).all()  # a tiny top_p keeps the best token only
    with pytest.raises(ValueError, match="0 < top_p <= 1"):
        model.generate(prompt, do_sample=True, top_p=0.0)


def test_a_row_that_ends_pads_and_leaves_the_batch():
    model = memory_model(num_memories=2)
    torch.manual_seed(3)
    prompt = torch.randint(0, V, (3, 5))
    free = model.generate(prompt, max_new_tokens=8)
    stop = next(int(t) for t in free[0, 5:8] if t not in free[1:, 5:])  # ends row 0 early, never rows 1 and 2
    end = free[0, 5:].tolist().index(stop) + 5
    out = model.generate(prompt, max_new_tokens=8, eos_token_id=stop, pad_token_id=V + 1, return_dict_in_generate=True,
                         output_logits=True)
    row0 = out.sequences[0].tolist()
    assert row0[: end + 1] == free[0, : end + 1].tolist() and row0[end + 1 :] == [V + 1] * (12 - end)
    assert torch.equal(out.sequences[1:], free[1:])  # the other rows go on as they would have alone
    assert (out.logits[-1][0] == 0).all()  # a finished row's later logits


def test_batched_generation_cannot_restart_some_rows_only():
    """With documents separate, a generated end-of-document id restarts a row; in a batch where other rows go on,
    generate says so (a batched state has one write count) unless that id stops the row."""
    model = memory_model(num_memories=2)
    torch.manual_seed(3)
    prompt = torch.randint(0, V, (2, 5))
    first = model(prompt)[0][:, -1].argmax(-1)
    assert first[0] != first[1]
    model.eos_token_id = int(first[0])  # row 0's next token ends its document, row 1's does not
    with pytest.raises(ValueError, match="some rows ended a document"):
        model.generate(prompt, max_new_tokens=3, eos_token_id=[])
    assert model.generate(prompt, max_new_tokens=3)[0, 5] == first[0]  # stopping there is fine


def test_full_window_prompt_longer_than_the_positions_is_one_clear_error():
    model = memory_model("full")  # max_position_embeddings 64
    with pytest.raises(InputTooLong, match=r"70 tokens is longer than max_position_embeddings \(64\)"):
        model.generate(torch.randint(0, V, (1, 70)), max_new_tokens=2)
    with pytest.raises(InputTooLong, match="at most 5 new tokens"):
        model.generate(torch.randint(0, V, (1, 60)), max_new_tokens=9)
    with pytest.raises(InputTooLong, match="local_window='segment'"):
        model(torch.randint(0, V, (1, 65)))
    memory_model("segment").generate(torch.randint(0, V, (1, 70)), max_new_tokens=2)  # segments restart positions


@pytest.mark.parametrize("temperature, top_k, top_p", [(1.0, None, 0.9), (0.7, None, 0.5), (1.3, 5, 1.0),
                                                        (0.5, 10, 0.8), (2.0, 3, 0.3), (1.0, None, 1e-6)])
def test_warp_equals_transformers_logit_warpers(temperature, top_k, top_p):
    """Temperature, top-k and top-p as transformers' own warpers, in their order, on random logits."""
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    from memkit.models.generation import warp

    logits = torch.randn(6, 40, generator=torch.Generator().manual_seed(7)) * 2
    expected = TemperatureLogitsWarper(temperature)(None, logits)
    if top_k:
        expected = TopKLogitsWarper(top_k)(None, expected)
    if top_p < 1.0:
        expected = TopPLogitsWarper(top_p)(None, expected)
    got = warp(logits, temperature, top_k, top_p)
    assert torch.equal(torch.isfinite(got), torch.isfinite(expected))
    torch.testing.assert_close(got, expected)


def test_a_tiny_top_p_keeps_the_argmax_only():
    from memkit.models.generation import warp

    logits = torch.randn(5, 30, generator=torch.Generator().manual_seed(2))
    kept = torch.isfinite(warp(logits, 1.0, None, 1e-6))
    assert torch.equal(kept, torch.nn.functional.one_hot(logits.argmax(-1), 30).bool())


@pytest.mark.parametrize("bad, words", [(dict(temperature=0.0), "temperature > 0"),
                                        (dict(temperature=-1.0), "temperature > 0"),
                                        (dict(top_k=-1), "top_k >= 0")])
def test_bad_sampling_arguments_are_a_value_error(bad, words):
    model = memory_model(num_memories=2)
    with pytest.raises(ValueError, match=words):
        model.generate(torch.randint(0, V, (1, 5)), max_new_tokens=2, do_sample=True, **bad)


def test_full_window_generation_may_fill_the_positions_exactly():
    """The last new token is never fed: a prompt of P takes up to 64 - P + 1 new tokens with 64 positions."""
    model = memory_model("full")  # max_position_embeddings 64
    assert model.generate(torch.randint(0, V, (1, 60)), max_new_tokens=5).shape == (1, 65)
    assert model.generate(torch.randint(0, V, (1, 64)), max_new_tokens=1).shape == (1, 65)
    with pytest.raises(InputTooLong, match="at most 5 new tokens"):
        model.generate(torch.randint(0, V, (1, 60)), max_new_tokens=6)


def test_generate_leaves_the_models_mode_as_it_was():
    model = memory_model(num_memories=2).train()
    model.generate(torch.randint(0, V, (1, 5)), max_new_tokens=3)
    assert model.training and all(m.training for m in model.modules())
    model.eval().generate(torch.randint(0, V, (1, 5)), max_new_tokens=3)
    assert not model.training

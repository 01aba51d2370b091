"""Documents, not rows: packed documents equal the documents fed one by one, for every memory option."""

import pytest
import torch
from test_generation import CONTEXT_OPTIONS, MEMORY_OPTIONS, V, context_model, memory_model

EOS = V - 1


def doc(n, seed, end=True):
    """n tokens of one document (the last the end-of-document id when ``end``)."""
    body = torch.randint(0, EOS, (n - end,), generator=torch.Generator().manual_seed(seed))
    return torch.cat((body, torch.tensor([EOS] * end, dtype=torch.long)))


ROWS = [[doc(5, 1), doc(7, 2), doc(6, 3, end=False)],  # three documents, boundaries inside segments
        [doc(9, 4), doc(9, 5, end=False)]]


def with_eos(make):
    model = make()
    model.eos_token_id = EOS  # the spec's eos_token_id, set on the built model to keep its weights
    return model


def cases():
    for i, opt in enumerate(MEMORY_OPTIONS):
        for window in ("segment", "full"):
            yield pytest.param(lambda o=opt, w=window: memory_model(w, **o), id=f"memory{i}-{window}")
    for i, opt in enumerate(CONTEXT_OPTIONS):
        yield pytest.param(lambda o=opt: context_model(**o), id=f"context{i}")


@pytest.mark.parametrize("make", list(cases()))
def test_packed_documents_equal_the_documents_fed_one_by_one(make):
    model = with_eos(make)
    packed = torch.stack([torch.cat(r) for r in ROWS])  # [2,18]
    logits, state = model(packed)
    assert state is None  # the rows' last documents differ in length: no batched state can continue them
    for b, row in enumerate(ROWS):
        start = 0
        for d in row:
            alone, _ = model(d[None])
            torch.testing.assert_close(logits[b, start : start + len(d)], alone[0], rtol=1e-5, atol=1e-5)
            start += len(d)
    # one row: the state continues its last document; a call cut inside the first document continues it
    row = packed[:1]
    one, state = model(row)
    more = torch.randint(0, EOS, (1, 5))
    torch.testing.assert_close(model(more, state)[0], model(torch.cat((ROWS[0][2][None], more), 1))[0][:, 6:],
                               rtol=1e-5, atol=1e-5)
    head, carried = model(row[:, :3])
    tail, _ = model(row[:, 3:], carried)
    torch.testing.assert_close(torch.cat((head, tail), 1), one, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("make", [pytest.param(lambda: memory_model("segment", num_memories=2), id="memory"),
                                  pytest.param(lambda: context_model(**CONTEXT_OPTIONS[0]), id="context")])
def test_run_together_keeps_the_reports_memory_across_documents(make):
    model = with_eos(make)
    packed = torch.cat(ROWS[0])[None]
    separate, _ = model(packed)
    model.documents = "run_together"
    together, state = model(packed)
    torch.testing.assert_close(together[:, :5], separate[:, :5])  # the first document is the same
    assert not torch.allclose(together[:, 12:], separate[:, 12:])  # the third one read the earlier two
    torch.testing.assert_close(together, model(packed, documents="run_together")[0])
    assert state is not None and state.seen == 18


def test_rows_ending_together_return_a_fresh_state_and_line_up_otherwise():
    model = with_eos(lambda: memory_model("segment", num_memories=2))
    ended = torch.stack([torch.cat((doc(3, 1), doc(5, 2))), torch.cat((doc(6, 3), doc(2, 4)))])
    assert model(ended)[1] is None  # every row ends its document: the next call starts fresh
    lined = torch.stack([torch.cat((doc(3, 1), doc(5, 2, end=False))), torch.cat((doc(3, 3), doc(5, 4, end=False)))])
    _, state = model(lined)
    assert state.seen == 5  # both rows are 5 tokens into their last document
    more = torch.randint(0, EOS, (2, 3))
    torch.testing.assert_close(model(more, state)[0], model(torch.cat((lined[:, 3:], more), 1))[0][:, 5:])


@pytest.mark.parametrize("make", [pytest.param(lambda: memory_model("segment", num_memories=2), id="memory"),
                                  pytest.param(lambda: context_model(**CONTEXT_OPTIONS[0]), id="context")])
def test_a_calls_documents_argument_overrides_the_models(make):
    """``documents=`` on one call runs that call as asked, whatever the model was built with, both ways."""
    model = with_eos(make)
    packed = torch.cat(ROWS[0])[None]
    separate, state = model(packed)
    assert state.seen == 6  # the last document's tokens
    model.documents = "run_together"
    together, state = model(packed)
    assert not torch.allclose(together[:, 12:], separate[:, 12:]) and state.seen == 18
    overridden, state = model(packed, documents="separate")
    torch.testing.assert_close(overridden, separate, rtol=0, atol=0)
    assert state.seen == 6
    model.documents = "separate"
    crossed, state = model(packed, documents="run_together")
    torch.testing.assert_close(crossed, together, rtol=0, atol=0)
    assert state.seen == 18


def test_rows_that_all_end_a_document_return_no_state_even_when_their_documents_line_up():
    """Every row ends with the end-of-document id: what comes next is a new document, so the state is None (a fresh
    start), not the state of the documents just ended, however long they are."""
    from memkit.models.documents import pieces

    model = with_eos(lambda: memory_model("segment", num_memories=2))
    ended = torch.stack([torch.cat((doc(3, 1), doc(5, 2))), torch.cat((doc(3, 3), doc(5, 4)))])
    assert model(ended)[1] is None
    assert model(ended[:1])[1] is None  # one row too
    assert model(doc(6, 5)[None])[1] is None  # a row that is one ended document
    assert pieces(ended, EOS) == [[(0, 3), (3, 8), (8, 8)]] * 2  # the last document is the empty one

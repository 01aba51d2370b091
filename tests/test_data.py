"""The text data path: local files through ``datasets`` offline, tokenizers, packing, a seeded split,
and the Debian corpus (skipped with a reason where its packages are missing)."""

import json

import pytest
import torch

from memkit.data import debian_texts
from memkit.data.corpus import DataError, TextDataSpec, pack, tokenize
from memkit.data.tokenizer import ByteTokenizer, TokenizerSpec
from memkit.spec import SpecError

PARAS = [f"Paragraph {i} tells of the {w} river and its {i * 7} stones." for i, w in
         enumerate(["quiet", "long", "cold", "swift", "green", "deep"] * 12)]


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "rivers.txt"
    path.write_text("\n\n".join(PARAS) + "\n")
    return path


def spec(source, tmp_path, **kw):
    base = dict(source=str(source), seq_len=16, num_train=20, num_val=4,
                tokenizer=dict(kind="bytes", cache_dir=str(tmp_path / "tok")))
    base.update(kw)
    return TextDataSpec.create(**base)


def test_local_text_file_loads_tokenizes_packs_and_splits_deterministically(text_file, tmp_path):
    s = spec(text_file, tmp_path)
    a, b = s.build(cache_dir=str(tmp_path / "c")), s.build(cache_dir=str(tmp_path / "c"))
    ids, targets = a.train
    assert ids.shape == (20, 16) and a.val[0].shape == (4, 16) and a.domains == ["rivers"]
    assert torch.equal(ids, b.train[0]) and torch.equal(a.val[1], b.val[1])
    # every sample is consecutive text: targets are the ids shifted by one
    stream = tokenize(ByteTokenizer(), PARAS)
    for row_ids, row_t in zip(ids, targets):
        starts = [i for i in range(0, len(stream) - 16, 16) if torch.equal(stream[i : i + 16], row_ids)]
        assert starts and torch.equal(stream[starts[0] + 1 : starts[0] + 17], row_t)
    # validation samples are never training samples
    train_rows = {tuple(r.tolist()) for r in ids}
    assert not any(tuple(r.tolist()) in train_rows for r in a.val[0])
    other = spec(text_file, tmp_path, split_seed=1).build(cache_dir=str(tmp_path / "c"))
    assert not torch.equal(other.train[0], ids)


def test_documents_end_with_the_end_of_document_id():
    tok = ByteTokenizer()
    stream = tokenize(tok, ["ab", "c"])
    assert stream.tolist() == [97, 98, 256, 99, 256]
    ids, targets = pack(stream, 2)
    assert ids.tolist() == [[97, 98], [256, 99]] and targets.tolist() == [[98, 256], [99, 256]]


def test_json_and_parquet_files_load_by_path(tmp_path):
    pytest.importorskip("pyarrow")
    import pyarrow as pa
    import pyarrow.parquet as pq

    js = tmp_path / "notes.jsonl"
    js.write_text("\n".join(json.dumps({"body": p}) for p in PARAS))
    pq.write_table(pa.table({"text": PARAS}), tmp_path / "notes2.parquet")
    docs = spec(js, tmp_path, text_field="body").load_documents()
    assert docs == {"notes": PARAS}
    assert spec(tmp_path / "notes2.parquet", tmp_path).load_documents() == {"notes2": PARAS}
    with pytest.raises(DataError, match="text_field.*body"):
        spec(js, tmp_path, text_field="text").load_documents()


def test_bpe_is_trained_once_and_cached(text_file, tmp_path):
    s = spec(text_file, tmp_path, tokenizer=dict(kind="bpe", vocab_size=300, cache_dir=str(tmp_path / "tok")))
    a = s.build()
    cached = list((tmp_path / "tok").glob("bpe-300-*.json"))
    assert len(cached) == 1
    b = s.build()
    assert torch.equal(a.train[0], b.train[0]) and a.vocab_size <= 300
    text = "the quiet river"
    assert a.tokenizer.decode(a.tokenizer.encode(text)) == text
    assert len(a.tokenizer.encode(text)) < len(text.encode())  # merges learned


def test_tokenizer_file_by_path(text_file, tmp_path):
    trained = TokenizerSpec(kind="bpe", vocab_size=280, cache_dir=str(tmp_path / "t")).build(PARAS)
    path = tmp_path / "tokenizer.json"
    trained.tok.save(str(path))
    loaded = TokenizerSpec(kind="file", path=str(path)).build()
    assert loaded.encode("the swift river") == trained.encode("the swift river")
    with pytest.raises(SpecError, match="path"):
        TokenizerSpec.create(kind="file", path=str(tmp_path / "missing.json"))


@pytest.mark.parametrize("source,field", [("/nonexistent/corpus.txt", "source"), ("notes.xlsx", "source"),
                                          ("hub:", "source")])
def test_bad_source_is_one_clear_error(source, field, tmp_path):
    if source == "notes.xlsx":
        (tmp_path / source).write_text("x")
        source = str(tmp_path / source)
    with pytest.raises(SpecError, match=field):
        TextDataSpec.create(source=source)


def test_unknown_debian_domain_is_named():
    with pytest.raises(SpecError, match="domains.*bible"):
        TextDataSpec.create(domains=["bible", "poetry"])


MISSING = debian_texts.missing()


@pytest.mark.skipif(bool(MISSING), reason=f"Debian texts missing: {MISSING} ({debian_texts.install_hint(MISSING or ['bible'])})")
def test_debian_corpus_has_four_distinct_domains(tmp_path):
    s = TextDataSpec.create(source="debian", max_chars=40_000, seq_len=32, num_train=200, num_val=40,
                            tokenizer=dict(kind="bytes"))
    data = s.build(cache_dir=str(tmp_path))
    assert data.domains == list(debian_texts.DOMAINS)
    assert set(data.train_domain.tolist()) == {0, 1, 2, 3} and set(data.val_domain.tolist()) == {0, 1, 2, 3}
    docs = data.documents
    assert "God" in " ".join(docs["bible"]) and "def " in " ".join(docs["python_doc"])
    assert all(len(d) > 0 for ds in docs.values() for d in ds)
    assert all(sum(map(len, ds)) <= 40_000 + len(ds) for ds in docs.values())  # a newline each at most


def test_hub_source_goes_through_load_dataset_streamed(monkeypatch, tmp_path):
    """The hub path (no network here): the name, config and split reach ``load_dataset``, rows are
    streamed and reading stops at max_chars."""
    import datasets

    calls = []

    def fake_load_dataset(name, config=None, split=None, streaming=False, **kw):
        calls.append((name, config, split, streaming))
        return iter([{"text": p} for p in PARAS] + [{"text": ""}, {"other": 1}])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    s = TextDataSpec.create(source="hub:someone/rivers:v2", hub_split="validation", max_chars=1000)
    docs = s.load_documents()
    assert calls == [("someone/rivers", "v2", "validation", True)]
    assert list(docs) == ["rivers"] and 1000 <= sum(map(len, docs["rivers"])) < 1000 + len(PARAS[0]) + 5
    assert docs["rivers"] == PARAS[: len(docs["rivers"])]

"""Text corpora through ``datasets``: load, tokenize, pack into fixed-length samples, split by a seed.

``TextDataSpec.source`` is one of:
- ``"debian"``: the built-in four-domain corpus (``memkit.data.debian_texts``), no download;
- local files, comma separated (globs allowed): ``.txt/.md/.rst`` (documents separated by a blank
  line), ``.json/.jsonl`` and ``.parquet`` (column ``text_field``), ``.csv``; each file is a domain;
- ``"hub:NAME"`` or ``"hub:NAME:CONFIG"``: ``datasets.load_dataset(NAME, CONFIG)`` from the Hugging
  Face hub, e.g. ``hub:wikitext:wikitext-103-raw-v1`` or ``hub:EleutherAI/pile`` (needs a network).

A sample is ``seq_len + 1`` consecutive tokens of one domain's token stream (documents joined by
the tokenizer's end-of-document id): ids = its first ``seq_len``, targets = its last ``seq_len``.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from pydantic import Field, field_validator

from memkit.data import debian_texts
from memkit.data.tokenizer import TokenizerSpec
from memkit.errors import CorpusMissing, DataError  # noqa: F401  (their home before memkit.errors)
from memkit.spec import Spec

BUILDERS = {".txt": "text", ".text": "text", ".md": "text", ".rst": "text", ".json": "json", ".jsonl": "json",
            ".parquet": "parquet", ".csv": "csv"}


def _local_files(source: str) -> list[Path]:
    paths = []
    for part in (p.strip() for p in source.split(",") if p.strip()):
        found = sorted(glob.glob(os.path.expanduser(part))) if any(c in part for c in "*?[") else [os.path.expanduser(part)]
        if not found:
            raise DataError(f"source: no file matches {part!r}")
        for f in found:
            path = Path(f)
            if not path.is_file():
                raise DataError(f"source: no such file {f!r} (give 'debian', local files, or 'hub:NAME')")
            if path.suffix.lower() not in BUILDERS:
                raise DataError(f"source: {f!r} has an unknown extension; allowed: {', '.join(sorted(BUILDERS))}")
            paths.append(path)
    return paths


class TextDataSpec(Spec):
    source: str = Field("debian", description="'debian', local files (comma separated, globs), or 'hub:NAME[:CONFIG]'")
    domains: list[str] = Field(list(debian_texts.DOMAINS), description="debian domains to use")
    text_field: str = Field("text", description="column holding the text (json, parquet, csv, hub)")
    hub_split: str = Field("train", description="split of a hub data set")
    max_chars: int = Field(1_000_000, ge=1000, description="characters read per domain (file)")
    seq_len: int = Field(128, ge=8, description="tokens per sample")
    num_train: int = Field(2000, ge=1, description="training samples (at most)")
    num_val: int = Field(200, ge=1, description="validation samples")
    split_seed: int = Field(0, ge=0, description="seed of the train/val split")
    tokenizer: TokenizerSpec = Field(default_factory=TokenizerSpec)

    @field_validator("source")
    @classmethod
    def _source(cls, v: str) -> str:
        v = v.strip()
        if v == "debian" or v.startswith("hub:"):
            if v.startswith("hub:") and not v[4:].strip(":"):
                raise ValueError("source: 'hub:' needs a data set name, e.g. hub:wikitext:wikitext-103-raw-v1")
            return v
        try:
            _local_files(v)  # a missing file is named here, before any trial starts
        except DataError as e:
            raise ValueError(str(e).removeprefix("source: ")) from None
        return v

    def check_available(self) -> None:
        """Raise ``DataError`` when the source cannot be read on this machine (Debian texts missing)."""
        if self.source == "debian":
            lacking = debian_texts.missing(self.domains)
            if lacking:
                raise CorpusMissing(f"source='debian': {', '.join(lacking)} not installed; install with "
                                    f"`{debian_texts.install_hint(lacking)}`")

    @field_validator("domains")
    @classmethod
    def _domains(cls, v: list[str]) -> list[str]:
        bad = [d for d in v if d not in debian_texts.DOMAINS]
        if bad or not v:
            raise ValueError(f"domains: {bad or v} not allowed; choose from {', '.join(debian_texts.DOMAINS)}")
        return v

    def load_documents(self, cache_dir: str = "~/.cache/memkit/corpora") -> dict[str, list[str]]:
        """{domain: documents}: the Debian domains, each local file, or the hub data set."""
        self.check_available()
        if self.source == "debian":
            folder = Path(cache_dir).expanduser() / f"debian-v{debian_texts.VERSION}-{self.max_chars}"
            return load_files(debian_texts.write_corpus(folder, self.domains, self.max_chars), self.text_field)
        if self.source.startswith("hub:"):
            name, _, config = self.source[4:].partition(":")
            return {name.split("/")[-1]: load_hub(name, config or None, self.hub_split, self.text_field, self.max_chars)}
        return load_files(_local_files(self.source), self.text_field, self.max_chars)

    def build(self, extra_train: list[str] | None = None, cache_dir: str = "~/.cache/memkit/corpora") -> "TextData":
        """Load, tokenize, pack and split. ``extra_train``: documents added to training only (e.g.
        the reversal task's facts); the tokenizer is trained on them too."""
        docs = self.load_documents(cache_dir)
        train_docs = {d: ds[: max(1, len(ds) * 9 // 10)] for d, ds in docs.items()}
        extra = list(dict.fromkeys(extra_train or []))  # each distinct text once for the tokenizer
        tok = self.tokenizer.build([t for ds in train_docs.values() for t in ds] + extra)
        streams = {d: tokenize(tok, ds) for d, ds in docs.items()}
        data = split(streams, self.seq_len, self.num_train, self.num_val, self.split_seed, tok, docs)
        if extra_train:
            ids, targets = pack(tokenize(tok, extra_train), self.seq_len)
            data.train = (torch.cat((data.train[0], ids)), torch.cat((data.train[1], targets)))
            data.train_domain = torch.cat((data.train_domain, torch.full((len(ids),), -1)))
        return data


def load_files(paths, text_field: str = "text", max_chars: int | None = None) -> dict[str, list[str]]:
    """Local files through ``datasets`` (no network): {file stem: documents}."""
    import datasets
    from datasets import load_dataset

    datasets.disable_progress_bars()
    out = {}
    for path in map(Path, paths):
        builder = BUILDERS[path.suffix.lower()]
        kwargs = {"sample_by": "paragraph"} if builder == "text" else {}
        try:
            ds = load_dataset(builder, data_files=str(path), split="train", **kwargs)
        except Exception as e:  # noqa: BLE001  (datasets raises many types for a malformed file)
            raise DataError(f"source: cannot read {str(path)!r} as {builder}: {str(e).splitlines()[0]}") from None
        if text_field not in ds.column_names:
            raise DataError(f"text_field: {str(path)!r} has no column {text_field!r}; columns: {', '.join(ds.column_names)}")
        docs = [t for t in ds[text_field] if isinstance(t, str) and t.strip()]
        if max_chars:
            docs = _cap(docs, max_chars)
        if not docs:
            raise DataError(f"source: {str(path)!r} holds no text")
        out[path.stem] = docs
    return out


def load_hub(name: str, config: str | None, split_name: str, text_field: str, max_chars: int) -> list[str]:
    """A hub data set by name (streamed, so only ``max_chars`` are fetched)."""
    from datasets import load_dataset

    try:
        ds = load_dataset(name, config, split=split_name, streaming=True)
        docs, total = [], 0
        for row in ds:
            t = row.get(text_field)
            if isinstance(t, str) and t.strip():
                docs.append(t)
                total += len(t)
                if total >= max_chars:
                    break
    except Exception as e:  # noqa: BLE001
        raise DataError(f"source: hub data set {name!r} could not be loaded (no network?): {str(e).splitlines()[0]}") from None
    return docs


def _cap(docs: list[str], max_chars: int) -> list[str]:
    out, total = [], 0
    for d in docs:
        out.append(d[: max_chars - total])
        total += len(out[-1])
        if total >= max_chars:
            break
    return out


def tokenize(tok, docs: list[str]) -> torch.Tensor:
    """One token stream: every document followed by the end-of-document id."""
    enc = tok.encode_batch(docs) if hasattr(tok, "encode_batch") else [tok.encode(d) for d in docs]
    ids = [i for e in enc for i in (*e, tok.eos_id)]
    return torch.tensor(ids, dtype=torch.long)


def pack(stream: torch.Tensor, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Consecutive windows of seq_len+1 tokens -> (ids [n, seq_len], targets [n, seq_len])."""
    n = (stream.numel() - 1) // seq_len
    if n < 1:
        return stream.new_zeros(0, seq_len), stream.new_zeros(0, seq_len)
    ids = stream[: n * seq_len].view(n, seq_len)
    targets = stream[1 : n * seq_len + 1].view(n, seq_len)
    return ids, targets


@dataclass
class TextData:
    """Packed samples with their domain (index into ``domains``; -1 for extra training text) and
    the tokenizer."""

    tokenizer: object
    domains: list[str]
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    train_domain: torch.Tensor
    val_domain: torch.Tensor
    documents: dict[str, list[str]] = field(default_factory=dict, repr=False)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size


def split(streams: dict[str, torch.Tensor], seq_len: int, num_train: int, num_val: int, seed: int, tok,
          docs=None) -> TextData:
    """Pack each domain's stream; the last tenth of each domain's samples is its validation pool
    (so validation text is never trained on); a seeded draw picks num_val of them and num_train
    training samples. Same inputs and seed -> the same split."""
    g = torch.Generator().manual_seed(seed)
    names = list(streams)
    tr_ids, tr_tg, tr_dom, va_ids, va_tg, va_dom = [], [], [], [], [], []
    for i, name in enumerate(names):
        ids, targets = pack(streams[name], seq_len)
        if len(ids) < 2:
            raise DataError(f"source: domain {name!r} has fewer than 2 samples of {seq_len} tokens; give more text")
        cut = len(ids) - max(1, len(ids) // 10)
        for lst, part in ((tr_ids, ids[:cut]), (tr_tg, targets[:cut]), (va_ids, ids[cut:]), (va_tg, targets[cut:])):
            lst.append(part)
        tr_dom.append(torch.full((cut,), i))
        va_dom.append(torch.full((len(ids) - cut,), i))
    cat = torch.cat
    tr = torch.randperm(sum(len(t) for t in tr_ids), generator=g)[:num_train]
    va = torch.randperm(sum(len(t) for t in va_ids), generator=g)[:num_val]
    return TextData(tok, names, (cat(tr_ids)[tr], cat(tr_tg)[tr]), (cat(va_ids)[va], cat(va_tg)[va]),
                    cat(tr_dom)[tr], cat(va_dom)[va], docs or {})

"""Tokenizers for text data, none downloaded: plain bytes, a byte-level BPE trained on the training
text (cached by a hash of text and size), or a ``tokenizer.json`` file given by path (e.g. GPT-NeoX's).

Every tokenizer has ``encode(text) -> list[int]``, ``decode(ids) -> str``, ``vocab_size`` and
``eos_id`` (the id put between documents when packing).
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Iterable, Literal

from pydantic import Field, model_validator

from memkit.errors import CheckpointError
from memkit.spec import Spec

EOS = "<|endoftext|>"


class ByteTokenizer:
    """UTF-8 bytes as ids 0..255; id 256 ends a document."""

    vocab_size = 257
    eos_id = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Iterable[int]) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


class HFTokenizer:
    """A ``tokenizers.Tokenizer`` (trained here or loaded from a file); ``save(folder)`` writes tokenizer.json."""

    def __init__(self, tok):
        self.tok = tok
        self.vocab_size = tok.get_vocab_size()
        eos = tok.token_to_id(EOS)
        self.eos_id = eos if eos is not None else self.vocab_size - 1

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tok.encode_batch(texts)]

    def decode(self, ids: Iterable[int]) -> str:
        return self.tok.decode(list(ids))

    def save(self, folder: str | os.PathLike) -> None:
        self.tok.save(str(Path(folder) / "tokenizer.json"))


def read_tokenizer_file(path: str | os.PathLike) -> HFTokenizer:
    """The tokenizer in the tokenizer.json at ``path``; a file the tokenizers library cannot read (not JSON, not a
    tokenizer) is one ``CheckpointError`` naming the file, not the library's parse error. Read once per file version:
    a spec checks its file when it is validated, and builds from it again."""
    file = Path(path).expanduser()
    stat = file.stat()
    return _read_tokenizer(str(file), stat.st_mtime_ns, stat.st_size, str(path))


@functools.lru_cache(maxsize=8)
def _read_tokenizer(file: str, mtime_ns: int, size: int, given: str) -> HFTokenizer:
    from tokenizers import Tokenizer

    try:
        return HFTokenizer(Tokenizer.from_file(file))
    except Exception as e:  # the library raises a bare Exception for a file it cannot parse
        raise CheckpointError(f"tokenizer: {given!r} is not a tokenizer.json that the tokenizers library can read "
                              f"({str(e).splitlines()[0] if str(e) else type(e).__name__}); give a tokenizer.json, "
                              "such as the one saved beside a trained model") from None


def vocabulary(tok) -> dict[str, int] | None:
    """token -> id of a file or BPE tokenizer; None for bytes (whose ids are the bytes themselves)."""
    return tok.tok.get_vocab(with_added_tokens=True) if isinstance(tok, HFTokenizer) else None


def vocabulary_difference(tok, trained) -> str | None:
    """Why ``tok`` does not give the ids ``trained`` (the tokenizer a model was trained with) gave, or None when it
    does: another size, bytes against a file, or as many tokens with other ids (another BPE of the same size)."""
    if tok.vocab_size != trained.vocab_size:
        return f"a vocabulary of {tok.vocab_size}, the model's tokenizer one of {trained.vocab_size}"
    mine, theirs = vocabulary(tok), vocabulary(trained)
    if (mine is None) != (theirs is None):
        return f"{'bytes' if mine is None else 'a tokenizer.json'}, the model was trained with " \
               f"{'bytes' if theirs is None else 'a tokenizer.json'}"
    if mine is not None and mine != theirs:
        moved = sum(theirs.get(token) != i for token, i in mine.items())
        return (f"a vocabulary of {tok.vocab_size} like the model's tokenizer, but {moved} of its tokens have other ids "
                "(another tokenizer of the same size)")
    return None


def check_trained_tokenizer(tok, folder: str | os.PathLike, what: str = "the tokenizer") -> None:
    """``tok`` must give the ids of the tokenizer.json saved beside the model in ``folder`` (nothing to check without
    one): another size, or one of the same size that maps tokens to other ids, is one ``CheckpointError``."""
    beside = Path(folder).expanduser() / "tokenizer.json"
    if not beside.is_file():
        return
    why = vocabulary_difference(tok, read_tokenizer_file(beside))
    if why is not None:  # another tokenizer of the same size would give other ids: gibberish, silently
        raise CheckpointError(f"{what} has {why} ({beside}); give the tokenizer the model was trained with (by "
                              "default the tokenizer.json beside it)")


def save_tokenizer(tok, folder: str | os.PathLike) -> None:
    """Write ``tok`` beside a saved model: tokenizer.json for a BPE or file tokenizer, nothing for bytes (a folder
    without one means bytes)."""
    if hasattr(tok, "save"):
        tok.save(folder)


def tokenizer_beside(folder: str | os.PathLike, path: str | None = None, vocab_size: int | None = None):
    """The tokenizer of the model saved in ``folder``: ``path`` (a tokenizer.json) when given, else the folder's
    tokenizer.json, else bytes (which needs a vocabulary of 257 ids at least)."""
    file = Path(path).expanduser() if path else Path(folder).expanduser() / "tokenizer.json"
    if path and not file.is_file():
        raise CheckpointError(f"tokenizer: no tokenizer file at {path!r}")
    if file.is_file():
        return read_tokenizer_file(file)
    if vocab_size is not None and vocab_size < ByteTokenizer.vocab_size:
        raise CheckpointError(f"tokenizer: {str(folder)!r} has no tokenizer.json and its model's vocabulary "
                              f"({vocab_size}) is too small for bytes ({ByteTokenizer.vocab_size}); give a tokenizer.json")
    return ByteTokenizer()


def train_bpe(texts: Iterable[str], vocab_size: int):
    """A byte-level BPE (GPT-2 style pre-tokenisation) trained on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


class TokenizerSpec(Spec):
    """``kind``: bytes | bpe (trained on the training text, cached) | file (``path`` to a tokenizer.json)."""

    kind: Literal["bytes", "bpe", "file"] = "bpe"
    vocab_size: int = Field(2048, ge=260, le=1_000_000, description="BPE vocabulary size (kind=bpe)")
    path: str | None = Field(None, description="tokenizer.json (kind=file)")
    cache_dir: str = Field("~/.cache/memkit/tokenizers", description="where trained BPEs are kept")

    @model_validator(mode="after")
    def _path(self):
        if self.kind == "file":
            if not self.path:
                raise ValueError("path: kind='file' needs a path to a tokenizer.json")
            if not Path(self.path).expanduser().is_file():
                raise ValueError(f"path: no tokenizer file at {self.path!r}")
            try:  # read now: a file that is no tokenizer fails here, not in a trial after the grid has started
                read_tokenizer_file(self.path)
            except CheckpointError as e:
                raise ValueError(f"path: {str(e).removeprefix('tokenizer: ')}") from None
        return self

    def build(self, texts: list[str] | None = None):
        """The tokenizer; kind=bpe trains on ``texts`` (or loads the cached one for the same texts)."""
        if self.kind == "bytes":
            return ByteTokenizer()

        if self.kind == "file":
            return read_tokenizer_file(self.path)
        if not texts:
            raise ValueError("a BPE tokenizer needs training texts")
        digest = hashlib.sha256(f"bpe-v1-{self.vocab_size}".encode())
        for t in texts:
            digest.update(t.encode("utf-8", errors="replace"))
            digest.update(b"\x00")
        path = Path(os.path.expanduser(self.cache_dir)) / f"bpe-{self.vocab_size}-{digest.hexdigest()[:16]}.json"
        if path.is_file():
            return read_tokenizer_file(path)
        tok = train_bpe(texts, self.vocab_size)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")  # parallel trials may train the same one
        tok.save(str(tmp))
        os.replace(tmp, path)
        return HFTokenizer(tok)

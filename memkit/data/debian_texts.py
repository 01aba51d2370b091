"""A multi-domain English corpus from Debian packages, so text runs need no download.

Four clearly different domains (public-domain or freely licensed):

| domain | package(s) | documents |
|---|---|---|
| bible | bible-kjv (the ``bible`` reader and bible-kjv-text) | chapters of the King James Version |
| fortunes | fortunes | single fortunes |
| jargon | jargon-text | runs of paragraphs of the Jargon File |
| python_doc | python3.11-doc | reST sources of the Python 3.11 manuals |

``write_corpus(dir)`` writes one ``<domain>.txt`` per domain, documents separated by a blank line
(what ``datasets``' text loader reads with ``sample_by="paragraph"``).
Install: ``apt-get install bible-kjv fortunes jargon-text python3.11-doc``.
"""

from __future__ import annotations

import glob
import gzip
import os
import re
import shutil
import subprocess
from pathlib import Path

DOMAINS = ("bible", "fortunes", "jargon", "python_doc")
VERSION = 2  # part of the cache folder's name: a change to the readers must not reuse old files
PACKAGES = {"bible": "bible-kjv", "fortunes": "fortunes", "jargon": "jargon-text", "python_doc": "python3.11-doc"}
FORTUNES = "/usr/share/games/fortunes"
JARGON = "/usr/share/doc/jargon-text/jargon.txt.gz"
PYTHON_DOC = "/usr/share/doc/python3.11/html/_sources"


class MissingText(FileNotFoundError):
    pass


def _one_block(text: str) -> str:
    """A document without blank lines inside (a blank line separates documents on disk)."""
    return re.sub(r"\n[ \t]*(?=\n)", "", text.strip()).replace("\n\n", "\n")


def _bible() -> list[str]:
    if shutil.which("bible") is None:
        raise MissingText("bible")
    out = subprocess.run(["bible", "-l1000", "gen1:1-rev22:21"], capture_output=True, text=True, check=True).stdout
    chapters, current = [], []
    for line in out.splitlines():
        m = re.match(r"^\s*\d+\s+(.*)$", line)
        if m:
            current.append(m.group(1).strip())
        elif line.strip():  # a heading such as "Genesis 1" starts a chapter
            if current:
                chapters.append(" ".join(current))
            current = [line.strip() + "."]
    if current:
        chapters.append(" ".join(current))
    return chapters


def _fortunes() -> list[str]:
    files = [p for p in glob.glob(os.path.join(FORTUNES, "*")) if os.path.isfile(p) and "." not in os.path.basename(p)]
    if not files:
        raise MissingText("fortunes")
    docs = []
    for path in sorted(files):
        text = Path(path).read_text(encoding="utf-8", errors="replace")
        docs += [_one_block(d) for d in re.split(r"^%\s*$", text, flags=re.M) if d.strip()]
    return docs


def _paragraph_runs(text: str, size: int = 3000) -> list[str]:
    docs, cur = [], ""
    for para in re.split(r"\n\s*\n", text):
        cur = f"{cur}\n{para.strip()}" if cur else para.strip()
        if len(cur) >= size:
            docs.append(_one_block(cur))
            cur = ""
    if cur:
        docs.append(_one_block(cur))
    return docs


def _jargon() -> list[str]:
    if not os.path.isfile(JARGON):
        raise MissingText("jargon")
    with gzip.open(JARGON, "rt", encoding="utf-8", errors="replace") as f:
        return _paragraph_runs(f.read())


def _python_doc() -> list[str]:
    files = sorted(glob.glob(os.path.join(PYTHON_DOC, "**", "*.rst.txt"), recursive=True))
    if not files:
        raise MissingText("python_doc")
    # the manuals about Python itself first (a cap keeps these), the C API last
    first = ("tutorial", "library", "reference", "howto")
    rank = lambda p: next((i for i, d in enumerate(first) if f"/{d}/" in p), len(first))  # noqa: E731
    files.sort(key=lambda p: (rank(p), p))
    return [_one_block(Path(p).read_text(encoding="utf-8", errors="replace")) for p in files]


READERS = {"bible": _bible, "fortunes": _fortunes, "jargon": _jargon, "python_doc": _python_doc}


def missing(domains=DOMAINS) -> list[str]:
    """Domains whose package is not installed."""
    out = []
    for d in domains:
        try:
            if d == "bible":
                ok = shutil.which("bible") is not None
            elif d == "fortunes":
                ok = bool(glob.glob(os.path.join(FORTUNES, "*.dat")))
            elif d == "jargon":
                ok = os.path.isfile(JARGON)
            else:
                ok = os.path.isdir(PYTHON_DOC)
        except OSError:
            ok = False
        if not ok:
            out.append(d)
    return out


def install_hint(domains) -> str:
    return "apt-get install " + " ".join(sorted({PACKAGES[d] for d in domains}))


def documents(domain: str, max_chars: int) -> list[str]:
    """The domain's documents, in a fixed order, up to ``max_chars`` characters in all."""
    if domain not in READERS:
        raise ValueError(f"unknown domain {domain!r}; available: {', '.join(DOMAINS)}")
    try:
        docs = READERS[domain]()
    except MissingText:
        raise MissingText(f"the {domain!r} text is not installed ({install_hint([domain])})") from None
    out, total = [], 0
    for d in docs:
        if not d:
            continue
        out.append(d[: max_chars - total])
        total += len(out[-1])
        if total >= max_chars:
            break
    return out


def write_corpus(out_dir: str | os.PathLike, domains=DOMAINS, max_chars: int = 1_000_000) -> list[Path]:
    """Write ``<domain>.txt`` files (once; kept for later calls) and return their paths."""
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for d in domains:
        path = out / f"{d}.txt"
        if not path.is_file():
            tmp = path.with_suffix(f".{os.getpid()}.tmp")  # parallel trials may write the same file
            tmp.write_text("\n\n".join(documents(d, max_chars)) + "\n", encoding="utf-8")
            os.replace(tmp, path)
        paths.append(path)
    return paths

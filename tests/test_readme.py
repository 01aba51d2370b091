"""The README's names exist where it says they are, and its first example runs as written."""

import importlib
import re
from pathlib import Path

import pytest

import memkit

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
CODE = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_every_import_in_the_readme_examples_works():
    lines = [ln.strip() for block in CODE for ln in block.splitlines() if re.match(r"\s*(from|import) memkit", ln)]
    assert lines, "the README shows no memkit import"
    for line in lines:
        exec(line, {})  # noqa: S102  (the README's own import lines)


def test_every_name_in_the_what_is_here_table_lives_in_the_file_it_names():
    table = README.split("## What is here", 1)[1].split("\n## ", 1)[0]
    checked = 0
    for row in table.splitlines()[3:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        if len(cells) < 2:
            continue
        names = re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", cells[0])
        paths = re.findall(r"`(memkit/[a-z_/]+)\.py`", cells[1])
        if not names or not paths:
            continue
        modules = [importlib.import_module(p.replace("/", ".")) for p in paths]
        for name in names:
            assert any(hasattr(m, name) for m in modules), f"{name} is not in {paths}"
            checked += 1
    assert checked >= 20


def test_every_memkit_dot_name_in_the_readme_exists():
    names = set(re.findall(r"`memkit\.([A-Za-z_][A-Za-z0-9_]*)\(", README))
    assert names
    assert not [n for n in names if not hasattr(memkit, n)]


def test_the_public_names_are_re_exported_once_from_their_sub_packages():
    assert len(memkit.__all__) == len(set(memkit.__all__))
    for name in memkit.__all__:
        assert getattr(memkit, name) is not None
    for sub in (memkit.blocks, memkit.models, memkit.data, memkit.eval, memkit.training):
        assert sub.__doc__ and set(sub.__all__) <= set(memkit.__all__), sub.__name__


def test_using_the_blocks_example_runs_as_written(tmp_path, monkeypatch):
    block = next(b for b in CODE if "MemoryStoreSpec" in b)
    monkeypatch.chdir(tmp_path)  # it saves mem.pt
    scope: dict = {}
    exec(block, scope)  # noqa: S102
    assert scope["y"].shape == (2, 256, 512) and (tmp_path / "mem.pt").exists()


@pytest.mark.parametrize("package", ["memkit.ops", "memkit.blocks", "memkit.models", "memkit.data", "memkit.eval",
                                     "memkit.training"])
def test_each_sub_package_says_what_lives_there(package):
    doc = importlib.import_module(package).__doc__
    assert doc and len(doc.split()) > 10


def test_saved_models_example_runs_as_written(tmp_path, monkeypatch):
    block = next(b for b in CODE if "save_pretrained" in b)
    monkeypatch.chdir(tmp_path)  # it saves out/
    scope: dict = {}
    exec(block, scope)  # noqa: S102
    assert scope["out"].sequences.shape == (2, 120) and len(scope["out"].logits) == 20
    assert scope["again"].spec == scope["model"].spec and (tmp_path / "out" / "config.json").exists()

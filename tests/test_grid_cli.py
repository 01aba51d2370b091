"""The grid command as a user runs it: bad input exits 2 with one line; a small grid end to end."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def grid(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "ablations.grid", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--space", "colour=red"], ["unknown --space key", "memories"]),
        (["--space", "memories=four"], ["memories", "integer"]),
        (["--space", "memories=-1"], ["num_memories", ">= 0 (0: no memory layer, the baseline)"]),
        (["--space", "pairs=30"], ["pairs (30)", "multiple of the pairs per segment"]),
        (["--lr-sweep", "fast"], ["--lr-sweep", "not a number"]),
        (["--lr-sweep", "1e-3"], ["--lr-sweep", "at least 2"]),
        (["--lr-sweep", "1e-3,1e-2", "--space", "lr=1e-3"], ["--lr-sweep", "--space lr"]),
        (["--space", "memories=1,4", "--plot", "pairs"], ["--plot 'pairs'", "memories"]),
        (["--space", "update=sideways"], ["update", "linear, delta"]),
        (["--recipe", "nope"], ["unknown --recipe", "infini_pythia"]),
        (["--recipe", "recipe"], ["unknown --recipe 'recipe'", "report_designs"]),  # the file defining a recipe
        (["--preset", "huge"], ["unknown --preset", "tiny"]),
        (["--bogus"], ["unrecognized arguments"]),
        (["--recipe", "context_kv", "--space", "interval=0"], ["interval", "greater than or equal to 1"]),
        (["--recipe", "context_kv", "--space", "kv_mode=elastic"], ["kv_mode", "fixed, dynamic"]),
        (["--recipe", "context_kv", "--space", "max_contexts=x"], ["max_contexts", "integer"]),
    ],
)
def test_bad_input_exits_2_with_one_line(args, words):
    res = grid(*args, timeout=120)
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and all(w in lines[0] for w in words), res.stderr
    assert "Traceback" not in res.stderr


def test_the_recipes_listed_are_the_ones_that_load():
    """The list an unknown --recipe prints holds every recipe in recipes/ and only those: each one loads."""
    from ablations.plan import available_recipes, check_recipe

    names = available_recipes()
    assert "recipe" not in names and {"report_designs", "infini_pythia", "retrofit"} <= set(names)
    assert all(check_recipe(name).presets for name in names)


def test_list_keys_shows_aliases_types_and_defaults():
    res = grid("--list-keys", timeout=120)
    assert res.returncode == 0
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("memories "))
    assert "model.memory.num_memories" in line and "int" in line


@pytest.mark.slow
def test_two_point_grid_end_to_end(tmp_path):
    res = grid("--space", "memories=1,2", "--space", "epochs=1", "--space", "samples=64", "--results", str(tmp_path),
               "--no-dashboard", "--seeds", "1")
    assert res.returncode == 0, res.stdout + res.stderr
    [out] = list(tmp_path.iterdir())
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert sorted(int(r["memories"]) for r in rows) == [1, 2]
    assert all(r["failed"] == "0" and 0 <= float(r["recall_acc_mean"]) <= 1 for r in rows)
    from recipes.infini_pythia import tiny

    m = tiny().model
    H, d = m.num_heads, m.hidden_size // m.num_heads
    assert {int(float(r["memory_bytes_mean"])) for r in rows} == {n * H * (d * d + d) * 4 for n in (1, 2)}
    data = json.loads((out / "results.json").read_text())
    assert len(data["points"]) == 2 and all(t["status"] == "ok" for t in data["trials"])
    assert len((out / "trials.jsonl").read_text().splitlines()) == 2
    md = (out / "results.md").read_text()
    assert md.startswith("Figures come from a test split") and "\n| memories |" in md
    # one epoch at the cap: neither point is ranked, both are named capped
    assert "recall_acc: not ranked, still improving at max_epochs (capped): memories=1 (1 of 1 seeds); memories=2" in md
    assert "epoch 1" in (out / "progress.log").read_text()
    assert (out / "metric_vs_memories.png").stat().st_size > 0 and (out / "learning_curves.png").stat().st_size > 0
    # is the memory used? the gates' path by epoch, the knock-outs in every trial
    assert (out / "gates.png").stat().st_size > 0
    assert all("gate_mean" in json.loads(line) for line in (out / "epochs.jsonl").read_text().splitlines())
    assert all("ko_read_recall_acc" in t for t in data["trials"])
    assert "recall_acc" in res.stdout and "memories" in res.stdout  # the printed table

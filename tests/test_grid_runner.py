"""The grid as an overnight job: seeds, failures, interruption and resume, ranges, results files.

These use a small recipe written to a file (a user's own recipe, outside the repo): it is fast,
raises at one point, and counts how often each point ran.
"""

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ablations.space import SpaceError, expand_range, parse_space
from recipes.infini_pythia import ALIASES, SPEC

ROOT = Path(__file__).resolve().parent.parent

TOY = '''
import time
from pydantic import Field
from memkit.spec import Spec

class Toy(Spec):
    x: int = Field(0, ge=0)
    seed: int = Field(0, ge=0)
    delay: float = Field(0.0, ge=0)
    count_file: str = "{count}"

SPEC = Toy
PRESETS = {{"tiny": Toy}}
ALIASES = {{"x": "x", "seed": "seed", "delay": "delay"}}
METRICS = ["recall_acc", "val_ppl"]

def run(spec, on_epoch=None, progress=None):
    if spec.x == 3:
        raise RuntimeError("point x=3 is broken")
    if on_epoch:
        on_epoch({{"epoch": 1, "val_acc": 0.5, "val_ppl": 2.0, "seconds": 0.0}})
    time.sleep(spec.delay)
    with open(spec.count_file, "a") as f:
        f.write(f"{{spec.x}},{{spec.seed}}\\n")
    return {{"recall_acc": spec.x / 10 + spec.seed / 100, "val_ppl": 2.0 + spec.x, "train_seconds": spec.delay}}
'''


@pytest.fixture
def toy(tmp_path):
    count = tmp_path / "count.txt"
    path = tmp_path / "toy_recipe.py"
    path.write_text(TOY.format(count=count))
    return path, count


def grid(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "ablations.grid", "--no-dashboard", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def only_dir(path):
    [d] = [p for p in path.iterdir() if p.is_dir()]
    return d


@pytest.mark.slow
def test_seeds_failures_and_results_files(toy, tmp_path):
    recipe, count = toy
    out_root = tmp_path / "res"
    res = grid("--recipe", str(recipe), "--space", "x=1,2,3", "--seeds", "2", "--results", str(out_root))
    assert res.returncode == 1, res.stdout + res.stderr  # one point fails, the others complete
    assert "failed" in res.stderr
    out = only_dir(out_root)
    rows = {r["x"]: r for r in csv.DictReader((out / "results.csv").open())}
    assert rows["3"]["failed"] == "2" and "point x=3 is broken" in rows["3"]["error"]
    assert rows["1"]["failed"] == "0" and float(rows["1"]["recall_acc_mean"]) == pytest.approx(0.105)
    assert float(rows["1"]["recall_acc_std"]) == pytest.approx(0.00707, rel=1e-2)  # seeds 0 and 1
    raw = list(csv.DictReader((out / "results_raw.csv").open()))
    assert len(raw) == 6 and sum(r["status"] == "failed" for r in raw) == 2
    md = (out / "results.md").read_text()
    assert "0.105 [0.1, 0.11]" in md and "recall_acc: x=2 is best" in md
    assert (out / "metric_vs_x.png").stat().st_size > 0
    assert sorted(count.read_text().split()) == ["1,0", "1,1", "2,0", "2,1"]


@pytest.mark.slow
def test_interrupted_grid_resumes_running_each_trial_once(toy, tmp_path):
    recipe, count = toy
    out_root = tmp_path / "res"
    cmd = [sys.executable, "-m", "ablations.grid", "--no-dashboard", "--recipe", str(recipe), "--space", "x=0,1,2,4,5,6",
           "--space", "delay=3", "--num-cpus", "2", "--seeds", "1", "--results", str(out_root)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    log = None
    while time.time() < deadline:
        dirs = [p for p in out_root.glob("*") if p.is_dir()] if out_root.exists() else []
        log = dirs[0] / "trials.jsonl" if dirs else None
        if log and log.exists() and len(log.read_text().splitlines()) >= 2:
            break
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err
    out = log.parent
    first = len(log.read_text().splitlines())
    assert 2 <= first < 6 and "--resume" in err
    res = grid("--resume", str(out))
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{first} already done" in res.stdout
    ran = count.read_text().split()
    assert sorted(ran) == sorted(f"{x},0" for x in (0, 1, 2, 4, 5, 6))  # each trial once in total
    assert len(list(csv.DictReader((out / "results.csv").open()))) == 6


def test_bad_address_resume_and_seed_inputs_exit_2(toy, tmp_path):
    recipe, _ = toy
    (tmp_path / "old").mkdir()  # a grid folder as a finished grid leaves it
    (tmp_path / "old" / "grid.json").write_text(json.dumps({"recipe": str(recipe), "preset": "tiny",
                                                             "space": ["memories=1,4"], "seeds": 1}))
    for args, words in [
        (["--resume", str(tmp_path / "old"), "--space", "memories=8"], ["--space", "--resume finishes the grid"]),
        (["--address", "127.0.0.1:9"], ["--address", "nothing answers"]),
        (["--address", "nonsense"], ["host:port"]),
        (["--resume", str(tmp_path)], ["no grid.json"]),
        (["--recipe", str(recipe), "--seeds", "2", "--space", "seed=1,2"], ["--seeds", "seed"]),
        (["--recipe", str(tmp_path / "nope.py")], ["no such file"]),
        (["--seeds", "0"], ["--seeds"]),
    ]:
        res = grid(*args, timeout=60)
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert res.returncode == 2 and len(lines) == 1 and all(w in lines[0] for w in words), (args, res.stderr)


def test_range_forms():
    assert expand_range("1e-4:1e-2:log3", float, "lr") == [1e-4, 1e-3, 1e-2]
    assert expand_range("0:1:lin5", float, "x") == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert expand_range("2:8:2", int, "n") == [2, 4, 6, 8]
    assert expand_range("1:16:log5", int, "n") == [1, 2, 4, 8, 16]
    space = parse_space(["lr=5e-4,1e-4:1e-2:log3", "memories=1:4"], SPEC, ALIASES)
    assert space[0][2] == [5e-4, 1e-4, 1e-3, 1e-2] and space[1][2] == [1, 2, 3, 4]


@pytest.mark.parametrize("item, words", [("update=a:b", ["number field"]), ("lr=1:2:3", ["START:STOP:logN"]),
                                         ("lr=-1:1:log3", ["positive"]), ("memories=4:1", ["STOP >= START"]),
                                         ("memories=1:2:lin5", ["repeated"]), ("lr=1:2:log1", ["2..1000"])])
def test_bad_ranges_are_one_line(item, words):
    with pytest.raises(SpaceError) as err:
        parse_space([item], SPEC, ALIASES)
    assert all(w in str(err.value) for w in words)


@pytest.mark.slow
def test_asha_scheduler_runs_with_recipes_that_report_only_perplexity(toy, tmp_path):
    recipe, count = toy
    res = grid("--recipe", str(recipe), "--space", "x=0,1", "--scheduler", "asha", "--seeds", "1",
               "--results", str(tmp_path / "r"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert sorted(count.read_text().split()) == ["0,0", "1,0"]


REPORT_TOY = TOY + """
SPACE = ["x=1,2"]
SEEDS = 2

def report(rows, names, spec):
    return "REPORT " + " ".join(f"x={{r['x']}}:extra={{r['extra_mean']:.3f}}" for r in rows)
"""


@pytest.mark.slow
def test_report_recipe_default_space_seeds_and_report(tmp_path):
    """A report recipe: no --space or --seeds given -> its SPACE and SEEDS; figures outside METRICS
    are kept and averaged; its report() is printed and written to report.md."""
    count = tmp_path / "count.txt"
    path = tmp_path / "report_toy.py"
    path.write_text(REPORT_TOY.format(count=count).replace(
        '"train_seconds": spec.delay}', '"train_seconds": spec.delay, "extra": spec.x * 10 + spec.seed}'))
    res = grid("--recipe", str(path), "--results", str(tmp_path / "r"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert sorted(count.read_text().split()) == ["1,0", "1,1", "2,0", "2,1"]
    out = only_dir(tmp_path / "r")
    text = (out / "report.md").read_text()
    assert text == "REPORT x=1:extra=10.500 x=2:extra=20.500"
    assert text in res.stdout
    rows = {r["x"]: r for r in csv.DictReader((out / "results.csv").open())}
    assert float(rows["2"]["extra_std"]) == pytest.approx(0.7071, rel=1e-3)


SWEEP_TOY = """
import math
from pydantic import Field
from memkit.spec import Spec

class Toy(Spec):
    x: int = Field(1, ge=1)
    lr: float = Field(1e-3, gt=0)
    seed: int = Field(0, ge=0)
    count_file: str = "{count}"

SPEC = Toy
PRESETS = {{"tiny": Toy}}
ALIASES = {{"x": "x", "lr": "lr", "seed": "seed"}}
METRICS = ["recall_acc"]
SELECT_BY = "val_acc"
TEST_SPLIT = True

def run(spec, on_epoch=None, progress=None):
    with open(spec.count_file, "a") as f:
        f.write(f"{{spec.x}},{{spec.lr}},{{spec.seed}}\\n")
    if on_epoch:
        on_epoch({{"epoch": 1, "val_acc": 0.5, "val_ppl": 2.0, "seconds": 0.0, "lr": spec.lr}})
    good = (spec.lr == 1e-2) == (spec.x == 1)  # x=1 prefers 1e-2, x=2 prefers 1e-3 on validation
    # the test split prefers the other rate: the table must not follow it
    return {{"val_acc": 0.9 if good else 0.5, "recall_acc": (0.5 if good else 0.99) + spec.seed / 100,
             "solve_at": 0.9, "capped": spec.x == 2 and spec.seed == 1, "stop": "cap" if spec.x == 2 and spec.seed == 1
             else "converged", "epochs": 1}}
"""


@pytest.mark.slow
def test_lr_sweep_chooses_per_design_on_validation_and_repeats_seeds_at_the_choice(tmp_path):
    count = tmp_path / "count.txt"
    path = tmp_path / "sweep_toy.py"
    path.write_text(SWEEP_TOY.format(count=count))
    res = grid("--recipe", str(path), "--space", "x=1,2", "--lr-sweep", "1e-3,1e-2", "--seeds", "2", "--plot", "x",
               "--results", str(tmp_path / "r"))
    assert res.returncode == 0, res.stdout + res.stderr
    # round 1: both rates for both designs with seed 0; round 2: seed 1 at the chosen rate only
    assert sorted(count.read_text().split()) == sorted(["1,0.001,0", "1,0.01,0", "2,0.001,0", "2,0.01,0",
                                                        "1,0.01,1", "2,0.001,1"])
    out = only_dir(tmp_path / "r")
    rows = {r["x"]: r for r in csv.DictReader((out / "results.csv").open())}
    assert (rows["1"]["lr"], rows["2"]["lr"]) == ("0.01", "0.001")
    assert float(rows["1"]["recall_acc_mean"]) == pytest.approx(0.505)  # test figures of the chosen rate
    assert rows["2"]["capped"] == "1"
    sweep = list(csv.DictReader((out / "lr_sweep.csv").open()))
    assert len(sweep) == 4 and sum(r["chosen"] == "True" for r in sweep) == 2
    md = (out / "results.md").read_text()
    assert "test split" in md and "Learning rate chosen per design on validation" in md
    assert "not ranked, still improving at max_epochs (capped): x=2 (1 of 2 seeds)" in md
    assert "CAPPED" in res.stdout and "epoch 1" in (out / "progress.log").read_text()
    assert len(list(csv.DictReader((out / "curve_x.csv").open()))) == 2 and (out / "curve_x.png").stat().st_size > 0

"""The grid past one machine: checkpoints and mid-training resume, faults, shared storage, loggers, a
sampled search, a simulated multi-node cluster; bad input exits 2 before Ray starts.

A small recipe written to a file (a user's own) trains a tiny model with memkit's trainer; its ``mode``
makes a trial kill its own worker process in epoch 3 (once), crash once, or diverge (NaN).
"""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

TOY = '''
import os, signal
from pathlib import Path
from typing import Literal
import torch
from torch import nn
from pydantic import Field
from memkit.spec import Spec
from memkit.training.trainer import TrainSpec, train

MARKERS = Path("{markers}")


class ToyLM(nn.Module):
    """Next token = a function of this one, through a dropout: random state matters on resume."""

    def __init__(self, mode, vocab=7, dim=8):
        super().__init__()
        self.mode, self.steps = mode, 0
        self.emb, self.drop, self.head = nn.Embedding(vocab, dim), nn.Dropout(0.2), nn.Linear(dim, vocab)

    def forward(self, ids, state=None):
        if self.training:
            self.steps += 1
            if self.mode == "kill" and self.steps == 2 * 4 + 2 and not (MARKERS / "killed").exists():
                (MARKERS / "killed").touch()  # once: in epoch 3, after the epoch-2 checkpoint
                os.kill(os.getpid(), signal.SIGKILL)
        logits = self.head(self.drop(self.emb(ids)))
        return (logits * float("nan") if self.mode == "nan" else logits), None


class Toy(Spec):
    mode: Literal["plain", "kill", "crash", "nan"] = "plain"
    seed: int = Field(0, ge=0)
    lr: float = Field(0.05, gt=0)
    epochs: int = 6


SPEC = Toy
PRESETS = {{"tiny": Toy}}
ALIASES = {{"mode": "mode", "seed": "seed", "lr": "lr", "epochs": "epochs"}}
METRICS = ["val_ppl", "epochs"]


def data(seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 7, (64, 6), generator=g)
    return ids, (ids * 3 + 1) % 7


def run(spec, on_epoch=None, progress=None):
    with open(MARKERS / f"runs-{{spec.mode}}", "a") as f:
        f.write("x")
    if spec.mode == "crash" and not (MARKERS / "crashed").exists():
        (MARKERS / "crashed").touch()
        raise RuntimeError("a transient failure")
    torch.manual_seed(0)  # the same start for every mode: kill and plain must end alike
    model = ToyLM(spec.mode)
    result = train(model, data(1), data(2), TrainSpec(lr=spec.lr, batch_size=16, max_epochs=spec.epochs,
                                                      patience=10, warmup_steps=0, seed=spec.seed),
                   on_epoch=on_epoch, progress=False)
    return {{"val_ppl": result.best["val_ppl"], "epochs": len(result.history),
             "weight_sum": float(sum(p.detach().double().sum() for p in model.parameters()))}}
'''


@pytest.fixture
def toy(tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    path = tmp_path / "toy_scale.py"
    path.write_text(TOY.format(markers=markers))
    return path, markers


def grid(*args, timeout=600, env=None):
    return subprocess.run([sys.executable, "-m", "ablations.grid", "--no-dashboard", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def trials(out: Path) -> dict[str, dict]:
    return {json.loads(line)["point"]["mode"]: json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()}


def only_dir(path: Path) -> Path:
    [d] = [p for p in path.iterdir() if p.is_dir()]
    return d


@pytest.mark.slow
def test_killed_worker_resumes_mid_training_faults_and_loggers(toy, tmp_path):
    """One grid: a trial kills its own worker process in epoch 3 and is retried from its epoch-2
    checkpoint (its epochs continuous, its result the uninterrupted twin's); a trial that crashes once is
    retried; one that diverges ends as 'nan', is not retried, and the exit status says so (3). Every
    epoch is logged to TensorBoard, Weights & Biases (offline) and MLflow (a file store)."""
    recipe, markers = toy
    storage = tmp_path / "shared"
    res = grid("--recipe", str(recipe), "--space", "mode=plain,kill,crash,nan", "--seeds", "1", "--max-failures", "1",
               "--num-cpus", "2", "--results", str(tmp_path / "r"), "--storage", str(storage),
               "--logger", "tensorboard,wandb", "--logger", "mlflow", env={"WANDB_MODE": "offline"})
    assert res.returncode == 3, res.stdout + res.stderr
    assert "1 trial(s) diverged" in res.stderr
    out = only_dir(tmp_path / "r")
    by = trials(out)
    assert {m: by[m]["status"] for m in by} == {"plain": "ok", "kill": "ok", "crash": "ok", "nan": "nan"}
    assert (markers / "killed").exists() and (markers / "runs-nan").read_text() == "x"  # NaN: never retried
    assert (markers / "runs-crash").read_text() == "xx"  # crashed once, retried
    kill, plain = by["kill"], by["plain"]
    assert [h["epoch"] for h in kill["history"]] == [1, 2, 3, 4, 5, 6]  # continuous: epoch 3 redone once, unseen
    assert kill["val_ppl"] == pytest.approx(plain["val_ppl"], rel=1e-6)
    assert kill["weight_sum"] == pytest.approx(plain["weight_sum"], rel=1e-9)
    # the table names each point's checkpoint, on the shared storage, holding the best model
    rows = {r["mode"]: r for r in csv.DictReader((out / "results.csv").open())}
    assert rows["plain"]["checkpoint"].startswith(str(storage)) and Path(rows["plain"]["checkpoint"]).is_dir()
    # loggers: TensorBoard event files per trial, a wandb offline run per trial, MLflow metrics per epoch
    assert len(list(storage.rglob("events.out.tfevents.*"))) >= 3
    assert len(list((out / "wandb").glob("offline-run-*"))) >= 3
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    [experiment] = [e for e in client.search_experiments() if e.name.startswith("memkit-")]
    run_ids = [r.info.run_id for r in client.search_runs([experiment.experiment_id])]
    steps = [len(client.get_metric_history(r, "val_ppl")) for r in run_ids]
    assert 7 in steps  # a trial's val_ppl at each of its 6 epochs, then its final figures


@pytest.mark.slow
def test_search_samples_ranges_repeats_seeds_and_keeps_loadable_checkpoints(tmp_path):
    """--search optuna samples the lr range, each sample over two seeds; every trial's best model is a
    checkpoint that memkit.load rebuilds, and that model gives the figure the trial reported."""
    import torch

    import memkit
    from recipes.infini_pythia import tiny

    res = grid("--search", "optuna", "--num-samples", "2", "--space", "lr=1e-3:1e-2:log3", "--space", "epochs=1",
               "--space", "samples=64", "--seeds", "2", "--num-cpus", "2", "--results", str(tmp_path / "r"),
               "--logger", "none")
    assert res.returncode == 0, res.stdout + res.stderr
    out = only_dir(tmp_path / "r")
    runs = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    assert len(runs) == 4 and sorted(r["point"]["train.seed"] for r in runs) == [0, 0, 1, 1]
    lrs = {r["point"]["train.lr"] for r in runs}
    assert len(lrs) == 2 and all(1e-3 <= lr <= 1e-2 for lr in lrs)
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 2 and all(r["seeds"] == "2" for r in rows)
    run = runs[0]
    model = memkit.load(run["checkpoint"])
    test = tiny().task.test_split(run["point"]["train.seed"])  # the split the trial's recall_acc comes from
    with torch.no_grad():
        assert memkit.evaluate(model, test, 32)["acc"] == pytest.approx(run["recall_acc"], abs=1e-6)


@pytest.mark.slow
def test_a_grid_on_a_simulated_multi_node_cluster(toy, tmp_path):
    """Two worker nodes of one CPU each (the head runs none): the trials spread over both, and every
    result and checkpoint is where the table says."""
    from ray.cluster_utils import Cluster

    recipe, _ = toy
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        nodes = {cluster.add_node(num_cpus=1).node_id for _ in range(2)}
        cluster.wait_for_nodes()
        res = grid("--recipe", str(recipe), "--space", "mode=plain", "--space", "lr=0.02,0.03,0.04,0.05",
                   "--seeds", "1", "--address", cluster.address, "--results", str(tmp_path / "r"),
                   "--storage", str(tmp_path / "shared"), "--logger", "none")
    finally:
        cluster.shutdown()
    assert res.returncode == 0, res.stdout + res.stderr
    out = only_dir(tmp_path / "r")
    runs = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    placed = {r["node"] for r in runs}
    assert len(runs) == 4 and placed <= nodes and len(placed) == 2, (placed, nodes)
    for r in csv.DictReader((out / "results_raw.csv").open()):
        assert Path(r["checkpoint"]).is_dir() and r["checkpoint"].startswith(str(tmp_path / "shared"))


@pytest.mark.parametrize("args, words", [
    (["--storage", "bogus://nowhere/x"], ["--storage", "not reachable"]),
    (["--storage", "/proc/memkit-results"], ["--storage", "cannot write"]),
    (["--logger", "splunk"], ["--logger", "splunk", "tensorboard, wandb, mlflow, none"]),
    (["--search", "hyperband"], ["--search", "invalid choice"]),
    (["--search", "optuna", "--space", "memories=4"], ["--search optuna needs ranges"]),
    (["--num-samples", "3"], ["--num-samples goes with --search optuna"]),
])
def test_bad_scale_out_input_exits_2_with_one_line(args, words):
    res = grid(*args, timeout=120)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2 and len(lines) == 1 and all(w in lines[0] for w in words), (args, res.stderr)
    assert "Traceback" not in res.stderr


def test_resume_of_a_folder_made_by_another_recipe_exits_2(tmp_path):
    (tmp_path / "grid.json").write_text(json.dumps({"recipe": "context_kv", "preset": "tiny", "space": [], "seeds": 1}))
    res = grid("--recipe", "infini_pythia", "--resume", str(tmp_path), timeout=120)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2 and len(lines) == 1 and "ran recipe 'context_kv'" in lines[0], res.stderr


SLEEPER = """
import time
from pydantic import Field
from memkit.spec import Spec

class S(Spec):
    x: int = Field(0, ge=0)
    seed: int = 0

SPEC, PRESETS, ALIASES, METRICS = S, {{"tiny": S}}, {{"x": "x", "seed": "seed"}}, ["val_ppl"]

def run(spec, on_epoch=None, progress=None):
    start = time.time()
    time.sleep(12)
    with open("{log}", "a") as f:
        f.write(f"{{start}} {{time.time()}}\\n")
    return {{"val_ppl": 1.0 + spec.x}}
"""


@pytest.mark.slow
def test_a_quarter_gpu_per_trial_runs_four_trials_at_once_on_one_gpu(tmp_path):
    """Ray counts a GPU it is told of (--num-gpus 1, here without one): four trials of 0.25 GPU run at once."""
    log = tmp_path / "times.txt"
    (tmp_path / "sleeper.py").write_text(SLEEPER.format(log=log))
    res = grid("--recipe", str(tmp_path / "sleeper.py"), "--space", "x=0,1,2,3", "--seeds", "1", "--num-cpus", "4",
               "--num-gpus", "1", "--gpus-per-trial", "0.25", "--results", str(tmp_path / "r"), "--logger", "none")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "'gpu': 0.25" in res.stdout
    spans = [tuple(map(float, line.split())) for line in log.read_text().splitlines()]
    assert len(spans) == 4 and max(s for s, _ in spans) < min(e for _, e in spans)  # all four at once


def test_when_ray_gives_up_the_grid_says_so_in_one_line_and_counts_as_interrupted(monkeypatch, capsys):
    """Ray's memory monitor killing workers surfaces as an exception from Tune: the finished trials stay
    (trials.jsonl), the grid says why in one line and exits as interrupted, --resume goes on."""
    from types import SimpleNamespace

    from ablations import grid as grid_module

    def give_up(*args, **kwargs):
        raise RuntimeError("Caught unexpected exception: 2 worker(s) were killed due to the node running low on memory.\n...")

    monkeypatch.setattr(grid_module, "_run_trials", give_up)
    args = SimpleNamespace(sampled=None)
    assert grid_module._run_round(args, [{"x": 1}], {}, None, [], "grid") is True
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["Ray stopped the grid: Caught unexpected exception: 2 worker(s) were killed due to the node "
                   "running low on memory."]

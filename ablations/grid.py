"""The ablation grid: one Ray Tune trial per point of a --space, one results table.

    python -m ablations.grid --space memories=1,4,8
    python -m ablations.grid --space memories=4,8 --space update=linear,delta --seeds 3
    python -m ablations.grid --space memories=1,4,8 --lr-sweep 1e-3,3e-3,1e-2
    python -m ablations.grid --space memories=1,4,8 --space pairs=16,32,64,128 --plot pairs
    python -m ablations.grid --resume results/infini_pythia-tiny-20261124-153059

A grid folder ``results/<recipe>-<preset>-<time>/`` holds ``grid.json`` (what was asked),
``trials.jsonl`` (one line per trial as it ends: the record resume reads), and the table rebuilt
from it: ``results.csv`` (per point, mean and std over seeds, the best seed's checkpoint),
``results_raw.csv`` (per trial), ``results.json``, ``results.md`` (table and summary) and plots.
Ray Tune's trial folders, checkpoints and TensorBoard files go to ``--storage`` (default: the grid
folder's ``ray/``). Every trial keeps its best model and its training state as a checkpoint after each
epoch: a crashed trial is retried from it (``--max-failures``), an interrupted grid goes on from it
(``--resume``, through ``Tuner.restore``). Code reaches Ray's workers through ``runtime_env``
(memkit, recipes and ablations as ``py_modules``, a user's recipe file in ``working_dir``), so a
cluster needs no copy of the repository. Exit status: 0 all finished; 1 trials crashed; 3 trials
diverged (NaN) or ran out of memory (never retried); 2 bad input (one line, before Ray starts);
130 interrupted (``--resume`` completes it).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ablations.gates import plot_gates
from ablations.ladder import write_ladder
from ablations.plan import (  # noqa: F401  (check_* and UsageError: the grid's public names, as before)
    DEFAULT_SEEDS,
    RECIPES,
    GridPlan,
    UsageError,
    check_inputs,
    check_min_epochs,
    check_recipe,
    check_resources,
    check_writable,
)
from ablations.results import (
    BETTER,
    Layout,
    aggregate,
    display_rows,
    fmt,
    is_figure,
    point_label,
    read_trials,
    seed_values,
    text_table,
    write_all,
)
from ablations.space import leaf_fields, type_name
from ablations.sweep import choose_rates
from ablations.tracking import logger_callbacks, quiet_tune_loggers, worker_env
from ablations.trial import is_recipe_path
from recipes.recipe import DEFAULT_METRICS, Recipe

METRICS = list(DEFAULT_METRICS)
RAY_TMP = "/tmp/memkit-ray"  # short: Ray's socket paths must stay under ~107 bytes


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints the whole usage otherwise)
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m ablations.grid", description="Run an ablation grid of a memkit recipe on Ray Tune.")
    p.add_argument("--recipe", default=None, help="module in recipes/, or a recipe .py file (default: infini_pythia)")
    p.add_argument("--preset", default="tiny", help="preset of the recipe (default: tiny)")
    p.add_argument("--space", action="append", default=[], metavar="KEY=V1,V2",
                   help="a swept key (alias or dotted path); ranges START:STOP:logN|linN; repeat for a cross product")
    p.add_argument("--seeds", type=int, default=None,
                   help="repeat each point with seeds 0..N-1 (default 3; a recipe may set its own SEEDS)")
    p.add_argument("--lr-sweep", metavar="RATES",
                   help="run each point at each learning rate (1e-3,3e-3,1e-2 or 1e-3:1e-2:log3) with the first seed, "
                        "choose per point on validation, repeat the chosen rate over the seeds")
    p.add_argument("--plot", metavar="KEY", help="a --space key to draw a curve against (e.g. pairs): one line per "
                                                  "design, 95%% intervals over seeds; curve_KEY.png and .csv")
    p.add_argument("--ladder", nargs="?", const="all", metavar="CHOICES",
                   help="a report recipe: from its as-run arm to its careful arm, one choice at a time (every choice, or "
                        "those whose names contain one of the comma-separated CHOICES; a+b flips a and b together as one "
                        "rung pair), over the designs of --space (or the recipe's) and the seeds; ladder.md")
    p.add_argument("--match-params", metavar="KEY=VALUE", help="size every other design's MLP so its parameter count "
                   "is within 2%% of the same point's with KEY=VALUE (KEY a --space key; VALUE any value it can take, run "
                   "or not)")
    p.add_argument("--results", default="results", help="folder under which the grid's folder is made")
    p.add_argument("--resume", metavar="DIR", help="finish an interrupted grid: rerun only its unfinished trials")
    p.add_argument("--cpus-per-trial", type=int, default=1)
    p.add_argument("--gpus-per-trial", type=float, default=1.0, help="GPUs (or a fraction) per trial when Ray sees GPUs")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs a local Ray may use (default: all)")
    p.add_argument("--address", help="join a running Ray cluster: 'auto' or host:port")
    p.add_argument("--scheduler", choices=["none", "asha"], default="none", help="asha: stop bad trials early")
    p.add_argument("--search", choices=["grid", "optuna"], default="grid",
                   help="grid: every point of --space; optuna: --num-samples points sampled from its ranges")
    p.add_argument("--num-samples", type=int, default=None, help="--search optuna: points to sample (default 10)")
    p.add_argument("--keep-checkpoints", type=int, default=1, metavar="N",
                   help="checkpoints kept per trial, the latest (best model so far + training state); 0: none")
    p.add_argument("--max-failures", type=int, default=0, metavar="N",
                   help="retry a crashed trial up to N times from its last checkpoint (NaN and OOM are not retried)")
    p.add_argument("--storage", metavar="PATH_OR_URI",
                   help="where trial folders and checkpoints go: a path or URI all nodes reach (default: the grid folder)")
    p.add_argument("--logger", action="append", default=None, metavar="NAME",
                   help="tensorboard (default), wandb (offline unless WANDB_MODE says), mlflow (a file store), none")
    p.add_argument("--num-gpus", type=float, default=None, help="GPUs a local Ray may use (default: all it sees)")
    p.add_argument("--no-dashboard", action="store_true", help="start Ray without its dashboard")
    p.add_argument("--list-keys", action="store_true", help="print the recipe's keys and exit")
    p.add_argument("--verbose", action="store_true", help="show Ray's own output")
    return p


def list_keys(recipe: Recipe) -> str:
    base = recipe.default_preset()
    by_path = {v: k for k, v in recipe.aliases.items()}
    lines = [f"{'alias':16} {'path':35} {'type':19} default"]
    for path, f in leaf_fields(recipe.spec).items():
        default = base
        for part in path.split("."):
            default = getattr(default, part)
        lines.append(f"{by_path.get(path, ''):16} {path:35} {type_name(f.annotation):19} {default}")
    return "\n".join(lines)


def runtime_env(plan) -> dict:
    """What every worker gets from the driver, on any node: memkit, recipes and ablations as ``py_modules``;
    a user's recipe file in a ``working_dir`` of its own (the trial loads it by name from there)."""
    repo = RECIPES.parent
    env: dict = {"py_modules": [str(repo / name) for name in ("memkit", "recipes", "ablations")],
                 "env_vars": {"TOKENIZERS_PARALLELISM": "false", **worker_env(plan.logger)}}
    if is_recipe_path(plan.recipe_name):
        import shutil
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="memkit-recipe-"))
        shutil.copy(plan.recipe_name, folder / Path(plan.recipe_name).name)
        env["working_dir"] = str(folder)
    return env


def start_ray(plan: GridPlan) -> str | None:
    """Start (or join) Ray quietly; returns the dashboard URL (None without one)."""
    import ray

    if not plan.verbose:
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        for name in ("ray", "ray.tune", "ray.train", "ray.data"):
            logging.getLogger(name).setLevel(logging.ERROR)
    common = dict(log_to_driver=plan.verbose, logging_level=logging.INFO if plan.verbose else logging.ERROR,
                  runtime_env=runtime_env(plan))
    try:
        if plan.address:
            ctx = ray.init(address=plan.address, **common)
        else:  # always a fresh local cluster: never attach to another grid's by accident
            ctx = ray.init(address="local", num_cpus=plan.num_cpus, num_gpus=plan.num_gpus,
                           include_dashboard=not plan.no_dashboard, dashboard_host="127.0.0.1", _temp_dir=RAY_TMP,
                           **common)
    except Exception as e:  # noqa: BLE001  (Ray raises several types for a cluster it cannot join)
        raise UsageError(f"--address {plan.address or 'local'}: Ray could not start or join ({str(e).splitlines()[0]})") from None
    url = getattr(ctx, "dashboard_url", None)
    return f"http://{url}" if url and not url.startswith("http") else url


def dashboard_help(url: str | None) -> str:
    if not url:
        return "Ray dashboard: off"
    token_path = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser("~/.ray/auth_token")
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return f"Ray dashboard: {url} (token auth disabled)"
    return (f"Ray dashboard: {url}  (token auth is on: paste the token from {token_path}, "
            "or print it with `ray get-auth-token`)")


@dataclass
class GridRun:
    """What running a plan left: the grid folder (``trials.jsonl`` there holds the trials), the points its table
    holds (with ``--lr-sweep``, each design at its chosen rate), the rates chosen and the designs every rate failed,
    the notes the table carries, the wall time, and whether Ctrl-C or Ray stopped it."""

    out: Path
    points: list[dict]
    wall: float = 0.0
    interrupted: bool = False
    chosen: dict = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def key_of(point: dict) -> str:
    return json.dumps(point, sort_keys=True)


def _keys(plan: GridPlan) -> list[tuple[str, str]]:
    return [(k, p) for k, p, _ in plan.space]


def _labeller(plan: GridPlan) -> Callable[[dict], str]:
    if plan.ladder_plan is not None:  # a rung is named for what it flips, not for the dozen paths it sets
        return plan.ladder_plan.label
    shown = _keys(plan) + ([("lr", plan.lr_path)] if plan.lr_path else [])
    return lambda pt: ",".join(f"{k}={pt[p]}" for k, p in shown if p in pt) or plan.preset


def _finished(out: Path) -> set[str]:
    return {key_of(t["point"]) for t in read_trials(out / "trials.jsonl") if t["status"] in ("ok", "stopped")}


def _open_folder(plan: GridPlan) -> Path:
    """The grid folder: the one resumed, or a new one with ``grid.json`` (what was asked)."""
    if plan.resume:
        return Path(plan.resume).resolve()
    out = (Path(plan.results).resolve()
           / f"{Path(plan.recipe_name).stem}-{plan.preset}-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "grid.json").write_text(json.dumps(plan.saved(), indent=2))
    return out


def _lr_round(plan: GridPlan, run: GridRun) -> None:
    """Round 1 of ``--lr-sweep``: every design at every rate, first seed; the rate is chosen per design on
    validation figures (lr_sweep.csv), and ``run.points`` become the designs at their chosen rates."""
    keys, seed_path, lr_path, out = _keys(plan), plan.seed_path, plan.lr_path, run.out
    label, select_by = _labeller(plan), plan.recipe.select_by
    designs = list({point_label(pt, keys, seed_path): {p: v for p, v in pt.items() if p != seed_path}
                    for pt in run.points}.values())
    first = {seed_path: 0} if seed_path else {}
    sweep = [{**d, lr_path: r, **first} for d in designs for r in plan.rates]
    todo = [pt for pt in sweep if key_of(pt) not in _finished(out)]
    print(f"learning-rate sweep: {len(designs)} design(s) x {len(plan.rates)} rates "
          f"({', '.join(fmt(r) for r in plan.rates)}), seed 0; {len(sweep) - len(todo)} already done; "
          f"results in {out}", flush=True)
    run.interrupted = _run_round(plan, todo, {key_of(pt): label(pt) for pt in sweep}, out,
                                 list(plan.recipe.metrics), "sweep", seed_path)
    swept = [t for t in read_trials(out / "trials.jsonl") if key_of(t["point"]) in {key_of(p) for p in sweep}]
    run.chosen = choose_rates(swept, lambda t: point_label(t["point"], keys, seed_path), lambda t: t["point"][lr_path],
                              select_by, BETTER.get(select_by, min))
    _write_sweep(out, swept, keys, seed_path, lr_path, select_by, run.chosen)
    run.lost = [label(d) for d in designs if point_label(d, keys, seed_path) not in run.chosen]
    if run.lost and not run.interrupted:
        print(f"every rate failed for {', '.join(run.lost)}: left out of the table", file=sys.stderr)
    if run.interrupted:
        run.points = []
    else:  # round 2: the other seeds repeat each design's chosen rate
        run.points = [{**pt, lr_path: run.chosen[point_label(pt, keys, seed_path)]} for pt in run.points
                      if point_label(pt, keys, seed_path) in run.chosen]
    run.notes.append(f"Learning rate chosen per design on validation ({select_by}, seed 0) among "
                     f"{', '.join(fmt(r) for r in plan.rates)}: column `lr`; the sweep is in lr_sweep.csv.")


def run_plan(plan: GridPlan) -> GridRun:
    """The Ray part: the grid folder, the learning-rate round if asked, then the grid's (or the search's) trials;
    each finished trial is a line of ``trials.jsonl`` in ``GridRun.out``."""
    t0 = time.perf_counter()
    run = GridRun(out=_open_folder(plan), points=list(plan.points))
    if plan.lr_path:
        _lr_round(plan, run)
    todo = [pt for pt in run.points if key_of(pt) not in _finished(run.out)]
    if plan.sampled is not None:
        print(f"search: {plan.num_samples} point(s) sampled by optuna from --space, x {plan.seeds} seed(s), "
              f"best by {plan.recipe.select_by}; results in {run.out}", flush=True)
    else:
        print(f"grid: {len(run.points)} trial(s) of {plan.recipe_name}/{plan.preset}, {len(run.points) - len(todo)} "
              f"already done; results in {run.out}", flush=True)
    label = _labeller(plan)
    run.interrupted = run.interrupted or _run_round(plan, todo, {key_of(pt): label(pt) for pt in run.points}, run.out,
                                                    list(plan.recipe.metrics), "grid", plan.seed_path,
                                                    plan.recipe.select_by)
    run.wall = time.perf_counter() - t0
    return run


def _run_round(plan, todo, labels, out, metrics, name: str, seed_path=None, select_by="val_ppl") -> bool:
    """Run the unfinished trials of one round (Ray experiment ``name``); True when Ctrl-C stopped it."""
    try:
        if todo or plan.sampled is not None:
            _run_trials(plan, todo, labels, out, metrics, name, seed_path, select_by)
    except KeyboardInterrupt:
        return True
    except UsageError:
        raise
    except Exception as e:  # noqa: BLE001  (Ray gave up, e.g. its memory monitor killed workers): keep what finished
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"Ray stopped the grid: {message}", file=sys.stderr)
        return True
    return False


def _run_trials(plan: GridPlan, todo: list[dict], labels: dict[str, str], out: Path, metrics: list[str], name: str,
                seed_path: str | None = None, select_by: str = "val_ppl") -> None:
    """One Ray Tune experiment (``name``) over the points ``todo`` (a grid), or over ``plan.sampled`` (a
    search); an experiment already in the storage is restored instead: finished trials stay, the others
    go on from their last checkpoints."""
    import ray
    from ray import tune

    from ablations.progress import Progress
    from ablations.trial import tune_trainable

    if not ray.is_initialized():  # a learning-rate sweep runs two rounds on one cluster
        url = start_ray(plan)
        print(dashboard_help(url), flush=True)
    resources: dict[str, float] = {"cpu": plan.cpus_per_trial}
    largest = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=0)
    if plan.cpus_per_trial > largest:  # Tune would wait for such a node forever
        raise UsageError(f"--cpus-per-trial {plan.cpus_per_trial}: no node of this Ray cluster has that many CPUs "
                         f"(the largest has {largest:g}); a trial could never start")
    gpus = ray.cluster_resources().get("GPU", 0)
    if gpus:
        resources["gpu"] = min(plan.gpus_per_trial, gpus)
    print(f"resources per trial: {resources} (cluster: {int(ray.cluster_resources().get('CPU', 0))} CPUs, {gpus:g} GPUs)")
    trainable = tune.with_resources(tune_trainable, resources)
    storage = plan.storage or str(out / "ray")
    experiment = f"{storage.rstrip('/')}/{name}"
    quiet_tune_loggers()
    if tune.Tuner.can_restore(experiment):  # an interrupted grid: Tune's own record of its trials
        print(f"restoring {experiment}: finished trials stay, the others go on from their last checkpoints")
        tuner = tune.Tuner.restore(experiment, trainable=trainable, resume_unfinished=True, resume_errored=True)
        tuner.fit()
        return
    scheduler = None
    if plan.scheduler == "asha":
        from ray.tune.schedulers import ASHAScheduler

        scheduler = ASHAScheduler(metric="val_loss", mode="min", grace_period=1)
    recipe = Path(plan.recipe_name).name if is_recipe_path(plan.recipe_name) else plan.recipe_name  # in the working_dir
    config = {"recipe": recipe, "preset": plan.preset, "threads": plan.cpus_per_trial,
              "checkpoints": plan.keep_checkpoints > 0, "seed_path": seed_path}
    search_alg, samples = None, 1
    if plan.sampled is not None:
        from ray.tune.search import Repeater
        from ray.tune.search.optuna import OptunaSearch

        better = BETTER.get(select_by, min)
        search_alg = OptunaSearch(metric=select_by, mode="max" if better is max else "min", seed=0)
        if plan.seeds > 1:  # each sampled point over the seeds (the trial index becomes the seed)
            search_alg = Repeater(search_alg, repeat=plan.seeds)
        config["point"], samples = plan.sampled, plan.num_samples * plan.seeds
    else:
        config["point"] = tune.grid_search(todo)
    tuner = tune.Tuner(
        trainable,
        param_space=config,
        tune_config=tune.TuneConfig(scheduler=scheduler, search_alg=search_alg, num_samples=samples),
        run_config=tune.RunConfig(
            name=name, storage_path=storage, verbose=2 if plan.verbose else 0,
            callbacks=[Progress(labels, len(todo) or samples, out, metrics, seed_path)]
            + logger_callbacks(plan.logger, out, f"memkit-{Path(plan.recipe_name).stem}"),
            failure_config=tune.FailureConfig(max_failures=plan.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=max(1, plan.keep_checkpoints)),
        ),
    )
    tuner.fit()


@dataclass(frozen=True)
class Ending:
    """How a grid ended, counted from its trials: what ``main`` turns into an exit status."""

    unfinished: int  # > 0: interrupted, --resume finishes it
    failed: int
    nan: int
    oom: int
    expected: int


# Figures drawn once per grid from its folder and rows, after the tables: each writer takes (plan, out, rows, trials)
# and returns a line naming what it wrote (None: nothing to draw). A new per-grid plot is one entry here.
def _gates(plan: GridPlan, out: Path, rows: list[dict], trials: list[dict]) -> str | None:
    path = plot_gates(out, trials, "seed" if plan.seed_path else None)
    return f"gates: {path} (the memory gates by epoch)" if path else None


def _ladder(plan: GridPlan, out: Path, rows: list[dict], trials: list[dict]) -> str | None:
    if plan.ladder_plan is None:
        return None
    return f"the ladder ({out / 'ladder.md'}):\n" + write_ladder(out, trials, plan.ladder_plan, plan.seed_path)


PLOT_WRITERS: list[Callable[[GridPlan, Path, list[dict], list[dict]], str | None]] = [_gates, _ladder]


def _rows(plan: GridPlan, run: GridRun, trials: list[dict], metrics: list[str]) -> list[dict]:
    """The table's rows: per point, mean and interval over seeds, its best checkpoint, per-seed values, its rate."""
    keys, seed_path = _keys(plan), plan.seed_path
    rows = aggregate(trials, keys, seed_path, metrics, list(plan.recipe.recall))
    best_checkpoints(rows, trials, keys, seed_path, plan.recipe.select_by)
    for m in metrics:  # per-seed values, for a recipe's report to compare points paired over seeds
        for design, seeds in seed_values(trials, keys, seed_path, m).items():
            for r in rows:
                if r["_design"] == design:
                    r.setdefault("_seeds", {})[m] = seeds
    if plan.lr_path:
        for r in rows:
            r["lr"] = run.chosen.get(r["_design"])
    return rows


def _notes(plan: GridPlan, run: GridRun) -> list[str]:
    if plan.recipe.test_split:
        return ["Figures come from a test split that training, early stopping and any learning-rate choice never "
                "saw; each cell is the mean over seeds with its 95% bootstrap interval."] + run.notes
    if plan.lr_path:
        return ["This recipe has no test split: its figures come from the validation data the learning rate was "
                "chosen on (optimistic)."] + run.notes
    return list(run.notes)


def summarise(plan: GridPlan, run: GridRun) -> Ending:
    """The grid's tables (results.*), the recipe's report, the plots, printed and written in ``run.out``."""
    out, metrics = run.out, list(plan.recipe.metrics)
    trials = read_trials(out / "trials.jsonl")
    if plan.sampled is None:  # a grid's table holds its points; a search's, whatever it sampled
        wanted = {key_of(pt) for pt in run.points}
        trials = [t for t in trials if key_of(t["point"]) in wanted]
    expected = len(run.points) if plan.sampled is None else plan.num_samples * plan.seeds
    notes = _notes(plan, run)
    extra = sorted({k for t in trials for k, v in t.items() if k not in metrics and k != "train_seconds" and is_figure(k, v)})
    rows = _rows(plan, run, trials, metrics + extra)
    keys, seed_path = _keys(plan), plan.seed_path
    names = [k for k, p in keys if p != seed_path]
    layout = Layout(keys=names, metrics=metrics, recall=list(plan.recipe.recall), lr_column="lr" if plan.lr_path
                    else None, notes=notes, values={m: seed_values(trials, keys, seed_path, m) for m in metrics},
                    curve=plan.plot)
    lines = write_all(out, trials, rows, layout) if rows else []
    if rows:
        lines += [line for writer in PLOT_WRITERS if (line := writer(plan, out, rows, trials))]
        print()
        for n in notes:
            print(n)
        print(text_table(*display_rows(rows, names, metrics, layout.lr_column)))
        for line in lines:
            print(f"- {line}")
        if plan.plot:
            print(f"curve: {out / f'curve_{plan.plot}.png'} (and .csv)")
        text = write_report(plan.recipe, rows, names, plan.preset, out)
        if text:
            print("\n" + text)
    if "wandb" in plan.logger and trials and not any((out / "wandb").glob("*run-*")):
        print(f"warning: --logger wandb: no run was written under {out / 'wandb'}; Ray's worker logs say why "
              f"({RAY_TMP}/session_latest/logs)", file=sys.stderr)
    own = sum(t.get("train_seconds") or 0.0 for t in read_trials(out / "trials.jsonl"))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nwall {run.wall:.1f}s; the grid's trials' own times sum to {own:.1f}s; driver peak memory {peak_mb:.0f} MB")
    print(f"table: {out / 'results.csv'} (also .md, .json, raw, plots; per-epoch lines in progress.log)")
    missing = expected - sum(t["status"] in ("ok", "stopped") for t in trials)
    failed = sum(t["status"] == "failed" for t in trials)
    ended = {cause: sum(t["status"] == cause for t in trials) for cause in ("nan", "oom")}
    unfinished = missing - failed - sum(ended.values())
    if run.interrupted:
        unfinished = max(unfinished, 1)
    return Ending(unfinished=max(unfinished, 0), failed=failed + (len(run.lost) if plan.lr_path else 0),
                  nan=ended["nan"], oom=ended["oom"], expected=expected)


def write_report(recipe, rows: list[dict], names: list[str], preset: str, out: Path) -> str | None:
    """The recipe's tables in its report's shape (``report.md``), when it has ``report()``. A failing
    report costs only that file: the results tables are written before it."""
    if recipe.report is None:
        return None
    try:
        text = recipe.report(rows, names, recipe.presets[preset]())
    except Exception as e:  # noqa: BLE001
        print(f"the recipe's report() failed ({type(e).__name__}: {e}); results.* hold every figure", file=sys.stderr)
        return None
    (out / "report.md").write_text(text)
    return text


def best_checkpoints(rows: list[dict], trials: list[dict], keys, seed_path, select_by: str) -> None:
    """Each point's ``checkpoint``: the model of its seed with the best ``select_by`` figure."""
    better = BETTER.get(select_by, min)
    by_design: dict[str, list[dict]] = {}
    for t in trials:
        if t["status"] == "ok" and t.get("checkpoint") and isinstance(t.get(select_by), (int, float)):
            by_design.setdefault(point_label(t["point"], keys, seed_path), []).append(t)
    for r in rows:
        members = by_design.get(r["_design"])
        if members:
            r["checkpoint"] = better(members, key=lambda t: t[select_by])["checkpoint"]


def _write_sweep(out: Path, swept: list[dict], keys, seed_path, lr_path, select_by: str, chosen: dict) -> None:
    """lr_sweep.csv: each design's validation figure at each rate, and which rate was chosen."""
    import csv

    names = [k for k, p in keys if p != seed_path]
    with (out / "lr_sweep.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(names + ["lr", select_by, "capped", "status", "chosen"])
        for t in sorted(swept, key=lambda t: (point_label(t["point"], keys, seed_path), t["point"][lr_path])):
            design = point_label(t["point"], keys, seed_path)
            w.writerow([t["point"].get(p) for k, p in keys if p != seed_path] +
                       [t["point"][lr_path], t.get(select_by), bool(t.get("capped")), t["status"],
                        chosen.get(design) == t["point"][lr_path]])


def exit_status(plan: GridPlan, run: GridRun, ending: Ending) -> int:
    """0 all finished; 130 interrupted; 1 trials failed; 3 trials diverged or ran out of memory."""
    if ending.unfinished > 0:
        print(f"interrupted: {ending.unfinished} trial(s) unfinished; finish with --resume {run.out}", file=sys.stderr)
        return 130
    if ending.failed:
        print(f"{ending.failed} of {ending.expected} trial(s) failed; rerun them with --resume {run.out}",
              file=sys.stderr)
        return 1
    if ending.nan or ending.oom:
        print(f"{ending.nan} trial(s) diverged (loss not finite) and {ending.oom} ran out of memory: not retried; "
              "lower the learning rate or the batch", file=sys.stderr)
        return 3
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.list_keys:
            print(list_keys(check_recipe(args.recipe or "infini_pythia")))
            return 0
        plan = check_inputs(args)
        run = run_plan(plan)
        return exit_status(plan, run, summarise(plan, run))
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if "ray" in sys.modules:
            import ray

            if ray.is_initialized():
                ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())

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
import importlib.util
import json
import logging
import os
import resource
import socket
import sys
import time
from pathlib import Path
from typing import Any

from ablations.results import (
    BETTER,
    Layout,
    aggregate,
    display_rows,
    fmt,
    point_label,
    read_trials,
    seed_values,
    text_table,
    write_all,
)
from ablations.space import (
    SpaceError,
    apply_overrides,
    grid_points,
    leaf_fields,
    parse_space,
    search_space,
    type_name,
)
from ablations.storage import StorageError, check_storage
from ablations.sweep import choose_rates, parse_rates
from ablations.tracking import check_loggers, logger_callbacks, quiet_tune_loggers, worker_env
from ablations.trial import is_recipe_path, load_recipe
from memkit.data.corpus import CorpusMissing

METRICS = ["recall_acc", "val_ppl", "params", "memory_bytes", "sec_per_epoch", "tokens_per_s", "best_epoch", "epochs",
           "expand_share"]
DEFAULT_SEEDS = 3
# Ray's own fields in a trial's result: not figures of the trial
RAY_KEYS = {"timestamp", "done", "training_iteration", "time_this_iter_s", "time_total_s", "pid", "time_since_restore",
            "iterations_since_restore", "final", "epoch", "seconds", "train_loss", "val_loss", "train_ppl", "best", "lr"}
# what each epoch line shows, and what a trial's history keeps
EPOCH_KEYS = ("epoch", "train_ppl", "val_ppl", "val_acc", "lr", "seconds")
RAY_TMP = "/tmp/memkit-ray"


def is_figure(key: str, value) -> bool:
    """A number a trial returned about itself (not Ray's bookkeeping nor the per-epoch fields)."""
    return key not in RAY_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool)  # short: Ray's socket paths must stay under ~107 bytes
RECIPES = Path(__file__).resolve().parent.parent / "recipes"


class UsageError(Exception):
    pass


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


def list_keys(module) -> str:
    base = module.PRESETS["tiny"]() if "tiny" in module.PRESETS else next(iter(module.PRESETS.values()))()
    by_path = {v: k for k, v in module.ALIASES.items()}
    lines = [f"{'alias':16} {'path':35} {'type':19} default"]
    for path, f in leaf_fields(module.SPEC).items():
        default = base
        for part in path.split("."):
            default = getattr(default, part)
        lines.append(f"{by_path.get(path, ''):16} {path:35} {type_name(f.annotation):19} {default}")
    return "\n".join(lines)


def _check_recipe(name: str):
    if is_recipe_path(name):
        if not Path(name).is_file():
            raise UsageError(f"--recipe {name!r}: no such file")
    elif not (name.isidentifier() and (RECIPES / f"{name}.py").exists()):
        available = sorted(p.stem for p in RECIPES.glob("*.py") if not p.stem.startswith("_"))
        raise UsageError(f"unknown --recipe {name!r}; available: {', '.join(available)} (or a path to a .py file)")
    module = load_recipe(name)
    missing = [a for a in ("SPEC", "PRESETS", "ALIASES", "run") if not hasattr(module, a)]
    if missing:
        raise UsageError(f"--recipe {name!r} lacks {', '.join(missing)} (see CONTRIBUTING.md, 'Add a recipe')")
    return module


def check_writable(folder: str, flag: str) -> None:
    """The grid's results go under ``folder``: it must be a folder this process can create and write in."""
    probe = Path(folder).expanduser() / f".memkit-probe-{os.getpid()}"
    try:
        probe.parent.mkdir(parents=True, exist_ok=True)
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"{flag} {folder!r}: cannot write there ({e.strerror or e}); give a folder you can "
                         "write in") from None


def check_resources(args) -> None:
    """A trial Ray can never place waits forever: refuse it here. Without ``--address`` the local Ray has
    ``--num-cpus`` CPUs (default: this machine's); a cluster's nodes are checked once Ray has joined it."""
    if args.cpus_per_trial < 1:
        raise UsageError(f"--cpus-per-trial must be >= 1, got {args.cpus_per_trial}")
    if args.num_cpus is not None and args.num_cpus < 1:
        raise UsageError(f"--num-cpus must be >= 1 (the CPUs a local Ray may use), got {args.num_cpus}")
    if args.num_gpus is not None and args.num_gpus < 0:
        raise UsageError(f"--num-gpus must be >= 0, got {args.num_gpus:g}")
    if args.address:
        if args.num_cpus is not None or args.num_gpus is not None:
            raise UsageError("--num-cpus and --num-gpus size a local Ray; a cluster (--address) has its own")
        return
    cpus = args.num_cpus if args.num_cpus is not None else os.cpu_count() or 1
    if args.cpus_per_trial > cpus:
        where = f"--num-cpus {cpus}" if args.num_cpus is not None else f"this machine has {cpus}"
        raise UsageError(f"--cpus-per-trial {args.cpus_per_trial}: a trial could never start ({where}); give at "
                         f"most {cpus}")


def check_min_epochs(spec, space) -> None:
    """``min_epochs`` above the cap (``max_epochs``) when the user set it: no trial could stop as converged."""
    for key, path, _ in space:
        if not path.endswith("min_epochs"):
            continue
        train = spec
        for part in path.split(".")[:-1]:
            train = getattr(train, part)
        if train.min_epochs > getattr(train, "max_epochs", train.min_epochs):
            raise SpaceError(f"--space {key}={train.min_epochs}: above the cap, max_epochs ({train.max_epochs}), so "
                             "no trial could stop as converged; give min_epochs <= max_epochs (alias epochs)")


def check_inputs(args) -> tuple[Any, list, list[dict]]:
    """Everything a user can get wrong, checked before Ray starts."""
    if args.resume:
        saved = Path(args.resume) / "grid.json"
        if not saved.is_file():
            raise UsageError(f"--resume {args.resume!r}: no grid.json there (not a grid folder)")
        plan = json.loads(saved.read_text())
        if args.recipe is not None and Path(args.recipe).stem != Path(plan["recipe"]).stem:
            raise UsageError(f"--resume {args.resume!r}: that grid ran recipe {plan['recipe']!r}, not {args.recipe!r}")
        for flag, given, saved_value in (("--space", args.space, plan["space"]), ("--lr-sweep", args.lr_sweep,
                                         plan.get("lr_sweep")), ("--plot", args.plot, plan.get("plot"))):
            if given and given != saved_value:
                raise UsageError(f"{flag}: --resume finishes the grid as it was asked ({saved}); drop {flag}, or start "
                                 "a new grid to ask something else")
        args.recipe, args.preset, args.space, args.seeds = plan["recipe"], plan["preset"], plan["space"], plan["seeds"]
        args.lr_sweep, args.plot = plan.get("lr_sweep"), plan.get("plot")
        args.search, args.num_samples = plan.get("search", "grid"), plan.get("num_samples")
        args.storage, args.logger = plan.get("storage"), plan.get("logger", ["tensorboard"])
        args.keep_checkpoints = plan.get("keep_checkpoints", 1)
    args.recipe = args.recipe or "infini_pythia"
    if not args.resume:
        check_writable(args.results, "--results")
    if args.storage is not None:
        try:
            args.storage = check_storage(args.storage)
        except StorageError as e:
            raise UsageError(str(e)) from None
    try:
        args.logger = check_loggers(args.logger or ["tensorboard"])
    except ValueError as e:
        raise UsageError(str(e)) from None
    if args.keep_checkpoints < 0 or args.max_failures < 0:
        raise UsageError("--keep-checkpoints and --max-failures must be >= 0")
    if args.num_samples is not None and args.search == "grid":
        raise UsageError("--num-samples goes with --search optuna (a grid runs every point of --space)")
    module = _check_recipe(args.recipe)
    if args.seeds is None:
        args.seeds = getattr(module, "SEEDS", DEFAULT_SEEDS)
    if not args.space:  # a report recipe names the designs it compares
        args.space = list(getattr(module, "SPACE", []))
    if args.preset not in module.PRESETS:
        raise UsageError(f"unknown --preset {args.preset!r} for {args.recipe}; available: {', '.join(sorted(module.PRESETS))}")
    check_resources(args)
    if not 0 < args.gpus_per_trial <= 64:
        raise UsageError(f"--gpus-per-trial must be in (0, 64], got {args.gpus_per_trial}")
    if not 1 <= args.seeds <= 1000:
        raise UsageError(f"--seeds must be in 1..1000, got {args.seeds}")
    try:
        space = parse_space(args.space, module.SPEC, module.ALIASES)
        args.sampled = None
        if args.search == "optuna":
            if args.lr_sweep is not None or args.plot is not None:
                raise SpaceError("--search optuna samples points: it goes with neither --lr-sweep nor --plot")
            if importlib.util.find_spec("optuna") is None:
                raise SpaceError("--search optuna: the optuna package is not installed (pip install optuna)")
            args.sampled = search_space(args.space, module.SPEC, module.ALIASES, module.PRESETS[args.preset]())
            if not any(not isinstance(v, (int, float, str, bool, type(None))) for v in args.sampled.values()):
                raise SpaceError("--search optuna needs ranges to sample: give --space KEY=START:STOP:logN (or "
                                 "several values) for at least one key")
            args.num_samples = 10 if args.num_samples is None else args.num_samples
            if not 1 <= args.num_samples <= 100_000:
                raise SpaceError(f"--num-samples must be in 1..100000, got {args.num_samples}")
        args.rates = parse_rates(args.lr_sweep) if args.lr_sweep is not None else None
        if args.rates:
            lr_path = module.ALIASES.get("lr")
            if lr_path is None:
                raise SpaceError(f"--lr-sweep: recipe {args.recipe} has no 'lr' alias")
            if any(p == lr_path for _, p, _ in space):
                raise SpaceError("--lr-sweep and --space lr=... both set the learning rate; use one")
            if not getattr(module, "SELECT_BY", "val_ppl").startswith("val_"):
                raise SpaceError(f"--lr-sweep: recipe {args.recipe}'s SELECT_BY must be a validation figure (val_*)")
        if args.plot is not None:
            swept = {k: v for k, _, v in space if len(v) > 1}
            if args.plot not in swept:
                raise SpaceError(f"--plot {args.plot!r}: must be a --space key with several values; "
                                 f"swept here: {', '.join(swept) or 'none'}")
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in swept[args.plot]):
                raise SpaceError(f"--plot {args.plot}: its values must be numbers (a load such as pairs)")
        if args.seeds > 1:
            seed_path = module.ALIASES.get("seed")
            if seed_path is None:
                raise SpaceError(f"--seeds: recipe {args.recipe} has no 'seed' alias")
            if any(p == seed_path for _, p, _ in space):
                raise SpaceError("--seeds and --space seed=... both set the seed; use one")
            space.append(("seed", seed_path, list(range(args.seeds))))
        points = grid_points(module.PRESETS[args.preset](), space) if args.sampled is None else []
        if args.rates:  # every rate must make a valid spec too
            grid_points(module.PRESETS[args.preset](), [("lr", module.ALIASES["lr"], args.rates)])
        for pt in points:
            check_min_epochs(apply_overrides(module.PRESETS[args.preset](), pt), space)
        if hasattr(module, "preflight"):  # what a trial needs from this machine (e.g. data files)
            for pt in points:
                module.preflight(apply_overrides(module.PRESETS[args.preset](), pt))
    except CorpusMissing as e:
        raise UsageError(f"{e}, or give your own text: --space source=<your files>") from None
    except (SpaceError, ValueError) as e:
        raise UsageError(str(e)) from None
    if args.address and args.address != "auto":
        host, _, port = args.address.rpartition(":")
        if not host or not port.isdigit():
            raise UsageError(f"--address {args.address!r}: expected 'auto' or host:port")
        try:
            socket.create_connection((host, int(port)), timeout=3).close()
        except OSError as e:
            raise UsageError(f"--address {args.address}: nothing answers there ({e.strerror or e})") from None
    return module, space, points


def runtime_env(args) -> dict:
    """What every worker gets from the driver, on any node: memkit, recipes and ablations as ``py_modules``;
    a user's recipe file in a ``working_dir`` of its own (the trial loads it by name from there)."""
    repo = RECIPES.parent
    env: dict = {"py_modules": [str(repo / name) for name in ("memkit", "recipes", "ablations")],
                 "env_vars": {"TOKENIZERS_PARALLELISM": "false", **worker_env(args.logger)}}
    if is_recipe_path(args.recipe):
        import shutil
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="memkit-recipe-"))
        shutil.copy(args.recipe, folder / Path(args.recipe).name)
        env["working_dir"] = str(folder)
    return env


def start_ray(args) -> str | None:
    """Start (or join) Ray quietly; returns the dashboard URL (None without one)."""
    import ray

    if not args.verbose:
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        for name in ("ray", "ray.tune", "ray.train", "ray.data"):
            logging.getLogger(name).setLevel(logging.ERROR)
    common = dict(log_to_driver=args.verbose, logging_level=logging.INFO if args.verbose else logging.ERROR,
                  runtime_env=runtime_env(args))
    try:
        if args.address:
            ctx = ray.init(address=args.address, **common)
        else:  # always a fresh local cluster: never attach to another grid's by accident
            ctx = ray.init(address="local", num_cpus=args.num_cpus, num_gpus=args.num_gpus,
                           include_dashboard=not args.no_dashboard, dashboard_host="127.0.0.1", _temp_dir=RAY_TMP,
                           **common)
    except Exception as e:  # noqa: BLE001  (Ray raises several types for a cluster it cannot join)
        raise UsageError(f"--address {args.address or 'local'}: Ray could not start or join ({str(e).splitlines()[0]})") from None
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


def trial_point(config: dict, seed_path: str | None) -> dict:
    """The point a trial ran: its config's point, with the seed a search's repeat gave it."""
    point = dict(config["point"])
    if "__trial_index__" in config and seed_path:
        point[seed_path] = config["__trial_index__"]
    return point


def _make_callback(labels: dict[str, str], total: int, out: Path, metrics: list[str], seed_path: str | None = None):
    """A Tune callback: one compact line per epoch, printed and appended to progress.log (and the
    epoch's figures to epochs.jsonl) as it comes; each finished trial appended to trials.jsonl with
    its best model's checkpoint, the node it ran on, and how it ended."""
    from ray.tune import Callback

    log_path = out / "trials.jsonl"

    def say(line: str) -> None:
        print(line, flush=True)
        with (out / "progress.log").open("a") as f:
            f.write(line + "\n")

    class Progress(Callback):
        def __init__(self):
            self.done, self.last = 0, {}

        def _label(self, trial) -> str:
            point = trial_point(trial.config, seed_path)
            return labels.get(json.dumps(point, sort_keys=True)) or ",".join(f"{k}={v}" for k, v in point.items())

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.last[trial.trial_id] = result
            if not result.get("final"):
                epoch = {k: result.get(k) for k in EPOCH_KEYS}
                with (out / "epochs.jsonl").open("a") as f:
                    f.write(json.dumps({"trial": self._label(trial), **epoch}, default=str) + "\n")
                say(f"  [{self._label(trial)}] epoch {result.get('epoch')}  val_acc={fmt(result.get('val_acc'))}"
                    f"  val_ppl={fmt(result.get('val_ppl'))}  lr={fmt(result.get('lr'))}  {fmt(result.get('seconds'))}s")

        def _record(self, trial, status: str, error: str = "") -> None:
            self.done += 1
            last = self.last.get(trial.trial_id, {})
            if status == "ok" and not last.get("final"):  # stopped early by the scheduler
                status, last = "stopped", {**last, "recall_acc": last.get("val_acc")}
            if last.get("failure"):  # diverged or out of memory: ended on purpose, not retried
                status, error = last["failure"], last.get("error", "")
            checkpoint = getattr(trial, "checkpoint", None)
            row = {"trial": self._label(trial), "status": status, "error": error,
                   "point": trial_point(trial.config, seed_path), "history": epochs_of(out, self._label(trial)),
                   "node": last.get("node"), "checkpoint": f"{checkpoint.path}/model" if checkpoint else None}
            # every figure the trial returned (report recipes read more than the table shows)
            row.update({k: v for k, v in last.items() if k in metrics or is_figure(k, v)})
            row.update({k: last[k] for k in ("capped", "stop") if k in last})  # how the run ended
            with log_path.open("a") as f:
                f.write(json.dumps(row, default=str) + "\n")
            ended = {"cap": ", CAPPED: still improving at max_epochs"}.get(row.get("stop"), "")
            ended = ended or (f", {row['stop']} after {row.get('epochs')} epochs" if row.get("stop") else "")
            say(f"  [{row['trial']}] {status}{ended} ({self.done}/{total})" + (f": {error}" if error else ""))

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._record(trial, "ok")

        def on_trial_error(self, iteration, trials, trial, **info):
            self._record(trial, "failed", _trial_error(trial))

    return Progress()


def epochs_of(out: Path, label: str) -> list[dict]:
    """A trial's whole history from ``epochs.jsonl``: every epoch it reported, before a ``--resume`` or a retry too
    (an epoch reported twice, once before a restart from an earlier checkpoint, keeps its last report)."""
    by_epoch: dict = {}
    path = out / "epochs.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        row = json.loads(line)
        if row.pop("trial", None) == label:
            by_epoch[row.get("epoch")] = row
    return sorted(by_epoch.values(), key=lambda r: (r.get("epoch") is None, r.get("epoch") or 0))


def _trial_error(trial) -> str:
    err = getattr(trial, "error_msg", None) or ""
    path = getattr(trial, "error_file", None)
    if not err and path and os.path.exists(path):
        err = Path(path).read_text()
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "trial failed"


def _run_trials(args, todo: list[dict], labels: dict[str, str], out: Path, metrics: list[str], name: str,
                seed_path: str | None = None, select_by: str = "val_ppl") -> None:
    """One Ray Tune experiment (``name``) over the points ``todo`` (a grid), or over ``args.sampled`` (a
    search); an experiment already in the storage is restored instead: finished trials stay, the others
    go on from their last checkpoints."""
    import ray
    from ray import tune

    from ablations.trial import tune_trainable

    if not ray.is_initialized():  # a learning-rate sweep runs two rounds on one cluster
        url = start_ray(args)
        print(dashboard_help(url), flush=True)
    resources: dict[str, float] = {"cpu": args.cpus_per_trial}
    largest = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=0)
    if args.cpus_per_trial > largest:  # Tune would wait for such a node forever
        raise UsageError(f"--cpus-per-trial {args.cpus_per_trial}: no node of this Ray cluster has that many CPUs "
                         f"(the largest has {largest:g}); a trial could never start")
    gpus = ray.cluster_resources().get("GPU", 0)
    if gpus:
        resources["gpu"] = min(args.gpus_per_trial, gpus)
    print(f"resources per trial: {resources} (cluster: {int(ray.cluster_resources().get('CPU', 0))} CPUs, {gpus:g} GPUs)")
    trainable = tune.with_resources(tune_trainable, resources)
    storage = args.storage or str(out / "ray")
    experiment = f"{storage.rstrip('/')}/{name}"
    quiet_tune_loggers()
    if tune.Tuner.can_restore(experiment):  # an interrupted grid: Tune's own record of its trials
        print(f"restoring {experiment}: finished trials stay, the others go on from their last checkpoints")
        tuner = tune.Tuner.restore(experiment, trainable=trainable, resume_unfinished=True, resume_errored=True)
        tuner.fit()
        return
    scheduler = None
    if args.scheduler == "asha":
        from ray.tune.schedulers import ASHAScheduler

        scheduler = ASHAScheduler(metric="val_loss", mode="min", grace_period=1)
    recipe = Path(args.recipe).name if is_recipe_path(args.recipe) else args.recipe  # in the working_dir
    config = {"recipe": recipe, "preset": args.preset, "threads": args.cpus_per_trial,
              "checkpoints": args.keep_checkpoints > 0, "seed_path": seed_path}
    search_alg, samples = None, 1
    if args.sampled is not None:
        from ray.tune.search import Repeater
        from ray.tune.search.optuna import OptunaSearch

        better = BETTER.get(select_by, min)
        search_alg = OptunaSearch(metric=select_by, mode="max" if better is max else "min", seed=0)
        if args.seeds > 1:  # each sampled point over the seeds (the trial index becomes the seed)
            search_alg = Repeater(search_alg, repeat=args.seeds)
        config["point"], samples = args.sampled, args.num_samples * args.seeds
    else:
        config["point"] = tune.grid_search(todo)
    tuner = tune.Tuner(
        trainable,
        param_space=config,
        tune_config=tune.TuneConfig(scheduler=scheduler, search_alg=search_alg, num_samples=samples),
        run_config=tune.RunConfig(
            name=name, storage_path=storage, verbose=2 if args.verbose else 0,
            callbacks=[_make_callback(labels, len(todo) or samples, out, metrics, seed_path)]
            + logger_callbacks(args.logger, out, f"memkit-{Path(args.recipe).stem}"),
            failure_config=tune.FailureConfig(max_failures=args.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=max(1, args.keep_checkpoints)),
        ),
    )
    tuner.fit()


def write_report(module, rows: list[dict], names: list[str], preset: str, out: Path) -> str | None:
    """The recipe's tables in its report's shape (``report.md``), when it has ``report()``. A failing
    report costs only that file: the results tables are written before it."""
    if not hasattr(module, "report"):
        return None
    try:
        text = module.report(rows, names, module.PRESETS[preset]())
    except Exception as e:  # noqa: BLE001
        print(f"the recipe's report() failed ({type(e).__name__}: {e}); results.* hold every figure", file=sys.stderr)
        return None
    (out / "report.md").write_text(text)
    return text


def _run_round(args, todo, labels, out, metrics, name: str, seed_path=None, select_by="val_ppl") -> bool:
    """Run the unfinished trials of one round (Ray experiment ``name``); True when Ctrl-C stopped it."""
    try:
        if todo or args.sampled is not None:
            _run_trials(args, todo, labels, out, metrics, name, seed_path, select_by)
    except KeyboardInterrupt:
        return True
    except UsageError:
        raise
    except Exception as e:  # noqa: BLE001  (Ray gave up, e.g. its memory monitor killed workers): keep what finished
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"Ray stopped the grid: {message}", file=sys.stderr)
        return True
    return False


def run_grid(args, module, space, points) -> int:
    metrics = getattr(module, "METRICS", METRICS)  # a recipe may name its own figures
    recall = list(getattr(module, "RECALL", ["recall_acc"]))  # figures with a solve threshold
    if args.resume:
        out = Path(args.resume).resolve()
    else:
        out = Path(args.results).resolve() / f"{Path(args.recipe).stem}-{args.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
        out.mkdir(parents=True, exist_ok=True)
        (out / "grid.json").write_text(json.dumps(
            {"recipe": str(Path(args.recipe).resolve()) if is_recipe_path(args.recipe) else args.recipe,
             "preset": args.preset, "space": args.space, "seeds": args.seeds, "lr_sweep": args.lr_sweep,
             "plot": args.plot, "search": args.search, "num_samples": args.num_samples, "storage": args.storage,
             "logger": args.logger, "keep_checkpoints": args.keep_checkpoints}, indent=2))
    keys = [(k, p) for k, p, _ in space]
    seed_path = module.ALIASES.get("seed") if args.seeds > 1 else None
    lr_path = module.ALIASES.get("lr") if args.rates else None
    key_of = lambda pt: json.dumps(pt, sort_keys=True)  # noqa: E731
    shown = keys + ([("lr", lr_path)] if lr_path else [])
    label = lambda pt: ",".join(f"{k}={pt[p]}" for k, p in shown if p in pt) or args.preset  # noqa: E731
    finished = lambda: {key_of(t["point"]) for t in read_trials(out / "trials.jsonl")  # noqa: E731
                        if t["status"] in ("ok", "stopped")}
    t0 = time.perf_counter()
    notes = []
    if lr_path:
        # round 1: every design at every rate, first seed; the rate is chosen on validation figures
        designs = list({point_label(pt, keys, seed_path): {p: v for p, v in pt.items() if p != seed_path}
                        for pt in points}.values())
        first = {seed_path: 0} if seed_path else {}
        sweep = [{**d, lr_path: r, **first} for d in designs for r in args.rates]
        todo = [pt for pt in sweep if key_of(pt) not in finished()]
        print(f"learning-rate sweep: {len(designs)} design(s) x {len(args.rates)} rates "
              f"({', '.join(fmt(r) for r in args.rates)}), seed 0; {len(sweep) - len(todo)} already done; "
              f"results in {out}", flush=True)
        interrupted = _run_round(args, todo, {key_of(pt): label(pt) for pt in sweep}, out, metrics, "sweep", seed_path)
        select_by = getattr(module, "SELECT_BY", "val_ppl")
        swept = [t for t in read_trials(out / "trials.jsonl") if key_of(t["point"]) in {key_of(p) for p in sweep}]
        chosen = choose_rates(swept, lambda t: point_label(t["point"], keys, seed_path), lambda t: t["point"][lr_path],
                              select_by, BETTER.get(select_by, min))
        _write_sweep(out, swept, keys, seed_path, lr_path, select_by, chosen)
        lost = [label(d) for d in designs if point_label(d, keys, seed_path) not in chosen]
        if lost and not interrupted:
            print(f"every rate failed for {', '.join(lost)}: left out of the table", file=sys.stderr)
        if interrupted:
            points = []
        else:  # round 2: the other seeds repeat each design's chosen rate
            points = [{**pt, lr_path: chosen[point_label(pt, keys, seed_path)]} for pt in points
                      if point_label(pt, keys, seed_path) in chosen]
        notes.append(f"Learning rate chosen per design on validation ({select_by}, seed 0) among "
                     f"{', '.join(fmt(r) for r in args.rates)}: column `lr`; the sweep is in lr_sweep.csv.")
    else:
        interrupted = False
    done = finished()
    todo = [pt for pt in points if key_of(pt) not in done]
    select_by = getattr(module, "SELECT_BY", "val_ppl")
    if args.sampled is not None:
        print(f"search: {args.num_samples} point(s) sampled by optuna from --space, x {args.seeds} seed(s), "
              f"best by {select_by}; results in {out}", flush=True)
    else:
        print(f"grid: {len(points)} trial(s) of {args.recipe}/{args.preset}, {len(points) - len(todo)} already done; "
              f"results in {out}", flush=True)
    interrupted = interrupted or _run_round(args, todo, {key_of(pt): label(pt) for pt in points}, out, metrics,
                                            "grid", seed_path, select_by)
    wall = time.perf_counter() - t0
    trials = read_trials(out / "trials.jsonl")
    if args.sampled is None:  # a grid's table holds its points; a search's, whatever it sampled
        wanted = {key_of(pt) for pt in points}
        trials = [t for t in trials if key_of(t["point"]) in wanted]
    expected = len(points) if args.sampled is None else args.num_samples * args.seeds
    if getattr(module, "TEST_SPLIT", False):
        notes.insert(0, "Figures come from a test split that training, early stopping and any learning-rate choice "
                        "never saw; each cell is the mean over seeds with its 95% bootstrap interval.")
    elif lr_path:
        notes.insert(0, "This recipe has no test split: its figures come from the validation data the learning "
                        "rate was chosen on (optimistic).")
    extra = sorted({k for t in trials for k, v in t.items() if k not in metrics and k != "train_seconds" and is_figure(k, v)})
    rows = aggregate(trials, keys, seed_path, metrics + extra, recall)
    best_checkpoints(rows, trials, keys, seed_path, select_by)
    for m in metrics + extra:  # per-seed values, for a recipe's report to compare points paired over seeds
        for design, seeds in seed_values(trials, keys, seed_path, m).items():
            for r in rows:
                if r["_design"] == design:
                    r.setdefault("_seeds", {})[m] = seeds
    if lr_path:
        for r in rows:
            r["lr"] = chosen.get(r["_design"])
    names = [k for k, p in keys if p != seed_path]
    layout = Layout(keys=names, metrics=metrics, recall=recall, lr_column="lr" if lr_path else None, notes=notes,
                    values={m: seed_values(trials, keys, seed_path, m) for m in metrics}, curve=args.plot)
    lines = write_all(out, trials, rows, layout) if rows else []
    if rows:
        print()
        for n in notes:
            print(n)
        print(text_table(*display_rows(rows, names, metrics, layout.lr_column)))
        for line in lines:
            print(f"- {line}")
        if args.plot:
            print(f"curve: {out / f'curve_{args.plot}.png'} (and .csv)")
        text = write_report(module, rows, names, args.preset, out)
        if text:
            print("\n" + text)
    if "wandb" in args.logger and trials and not any((out / "wandb").glob("*run-*")):
        print(f"warning: --logger wandb: no run was written under {out / 'wandb'}; Ray's worker logs say why "
              f"({RAY_TMP}/session_latest/logs)", file=sys.stderr)
    own = sum(t.get("train_seconds") or 0.0 for t in read_trials(out / "trials.jsonl"))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nwall {wall:.1f}s; the grid's trials' own times sum to {own:.1f}s; driver peak memory {peak_mb:.0f} MB")
    print(f"table: {out / 'results.csv'} (also .md, .json, raw, plots; per-epoch lines in progress.log)")
    missing = expected - sum(t["status"] in ("ok", "stopped") for t in trials)
    failed = sum(t["status"] == "failed" for t in trials)
    ended = {cause: sum(t["status"] == cause for t in trials) for cause in ("nan", "oom")}
    if interrupted or missing > failed + sum(ended.values()):
        print(f"interrupted: {max(missing - failed - sum(ended.values()), 1)} trial(s) unfinished; finish with "
              f"--resume {out}", file=sys.stderr)
        return 130
    if lr_path and lost:
        failed += len(lost)
    if failed:
        print(f"{failed} of {expected} trial(s) failed; rerun them with --resume {out}", file=sys.stderr)
        return 1
    if any(ended.values()):
        print(f"{ended['nan']} trial(s) diverged (loss not finite) and {ended['oom']} ran out of memory: not retried; "
              "lower the learning rate or the batch", file=sys.stderr)
        return 3
    return 0


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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.list_keys:
            print(list_keys(_check_recipe(args.recipe or "infini_pythia")))
            return 0
        module, space, points = check_inputs(args)
        return run_grid(args, module, space, points)
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

"""The ablation grid: one Ray Tune trial per point of a --space, one results table.

    python -m ablations.grid --space memories=1,4,8
    python -m ablations.grid --space memories=4,8 --space update=linear,delta --seeds 3
    python -m ablations.grid --space memories=1,4,8 --lr-sweep 1e-3,3e-3,1e-2
    python -m ablations.grid --space memories=1,4,8 --space pairs=16,32,64,128 --plot pairs
    python -m ablations.grid --resume results/infini_pythia-tiny-20261124-153059

A grid folder ``results/<recipe>-<preset>-<time>/`` holds ``grid.json`` (what was asked),
``trials.jsonl`` (one line per trial as it ends: the record resume reads), and the table rebuilt
from it: ``results.csv`` (per point, mean and std over seeds), ``results_raw.csv`` (per trial),
``results.json``, ``results.md`` (table and summary) and plots. Bad input exits 2 with one line
before any trial starts; failed trials are marked and the exit status is 1; Ctrl-C exits 130 and
leaves a folder that ``--resume`` completes.
"""

from __future__ import annotations

import argparse
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
from ablations.space import SpaceError, apply_overrides, grid_points, leaf_fields, parse_space, type_name
from ablations.sweep import choose_rates, parse_rates
from ablations.trial import is_recipe_path, load_recipe

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
    p.add_argument("--recipe", default="infini_pythia", help="module in recipes/, or a recipe .py file (default: infini_pythia)")
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


def check_inputs(args) -> tuple[Any, list, list[dict]]:
    """Everything a user can get wrong, checked before Ray starts."""
    if args.resume:
        saved = Path(args.resume) / "grid.json"
        if not saved.is_file():
            raise UsageError(f"--resume {args.resume!r}: no grid.json there (not a grid folder)")
        plan = json.loads(saved.read_text())
        args.recipe, args.preset, args.space, args.seeds = plan["recipe"], plan["preset"], plan["space"], plan["seeds"]
        args.lr_sweep, args.plot = plan.get("lr_sweep"), plan.get("plot")
    module = _check_recipe(args.recipe)
    if args.seeds is None:
        args.seeds = getattr(module, "SEEDS", DEFAULT_SEEDS)
    if not args.space:  # a report recipe names the designs it compares
        args.space = list(getattr(module, "SPACE", []))
    if args.preset not in module.PRESETS:
        raise UsageError(f"unknown --preset {args.preset!r} for {args.recipe}; available: {', '.join(sorted(module.PRESETS))}")
    if args.cpus_per_trial < 1:
        raise UsageError(f"--cpus-per-trial must be >= 1, got {args.cpus_per_trial}")
    if not 0 < args.gpus_per_trial <= 64:
        raise UsageError(f"--gpus-per-trial must be in (0, 64], got {args.gpus_per_trial}")
    if not 1 <= args.seeds <= 1000:
        raise UsageError(f"--seeds must be in 1..1000, got {args.seeds}")
    try:
        space = parse_space(args.space, module.SPEC, module.ALIASES)
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
        points = grid_points(module.PRESETS[args.preset](), space)
        if args.rates:  # every rate must make a valid spec too
            grid_points(module.PRESETS[args.preset](), [("lr", module.ALIASES["lr"], args.rates)])
        if hasattr(module, "preflight"):  # what a trial needs from this machine (e.g. data files)
            for pt in points:
                module.preflight(apply_overrides(module.PRESETS[args.preset](), pt))
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


def start_ray(args) -> str | None:
    """Start (or join) Ray quietly; returns the dashboard URL (None without one)."""
    import ray

    if not args.verbose:
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        for name in ("ray", "ray.tune", "ray.train", "ray.data"):
            logging.getLogger(name).setLevel(logging.ERROR)
    repo = str(RECIPES.parent)
    path = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH", "")) if p)
    common = dict(log_to_driver=args.verbose, logging_level=logging.INFO if args.verbose else logging.ERROR,
                  runtime_env={"env_vars": {"PYTHONPATH": path}})
    try:
        if args.address:
            ctx = ray.init(address=args.address, **common)
        else:  # always a fresh local cluster: never attach to another grid's by accident
            ctx = ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=not args.no_dashboard,
                           dashboard_host="127.0.0.1", _temp_dir=RAY_TMP, **common)
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


def _make_callback(labels: dict[str, str], total: int, out: Path, metrics: list[str]):
    """A Tune callback: one compact line per epoch, printed and appended to progress.log (and the
    epoch's figures to epochs.jsonl) as it comes; each finished trial appended to trials.jsonl."""
    from ray.tune import Callback

    log_path = out / "trials.jsonl"

    def say(line: str) -> None:
        print(line, flush=True)
        with (out / "progress.log").open("a") as f:
            f.write(line + "\n")

    class Progress(Callback):
        def __init__(self):
            self.done, self.last, self.history = 0, {}, {}

        def _label(self, trial) -> str:
            return labels.get(json.dumps(trial.config["point"], sort_keys=True), trial.trial_id)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.last[trial.trial_id] = result
            if not result.get("final"):
                epoch = {k: result.get(k) for k in EPOCH_KEYS}
                self.history.setdefault(trial.trial_id, []).append(epoch)
                with (out / "epochs.jsonl").open("a") as f:
                    f.write(json.dumps({"trial": self._label(trial), **epoch}, default=str) + "\n")
                say(f"  [{self._label(trial)}] epoch {result.get('epoch')}  val_acc={fmt(result.get('val_acc'))}"
                    f"  val_ppl={fmt(result.get('val_ppl'))}  lr={fmt(result.get('lr'))}  {fmt(result.get('seconds'))}s")

        def _record(self, trial, status: str, error: str = "") -> None:
            self.done += 1
            last = self.last.get(trial.trial_id, {})
            if status == "ok" and not last.get("final"):  # stopped early by the scheduler
                status, last = "stopped", {**last, "recall_acc": last.get("val_acc")}
            row = {"trial": self._label(trial), "status": status, "error": error, "point": trial.config["point"],
                   "history": self.history.get(trial.trial_id, [])}
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


def _trial_error(trial) -> str:
    err = getattr(trial, "error_msg", None) or ""
    path = getattr(trial, "error_file", None)
    if not err and path and os.path.exists(path):
        err = Path(path).read_text()
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "trial failed"


def _run_trials(args, todo: list[dict], labels: dict[str, str], out: Path, metrics: list[str]) -> None:
    import ray
    from ray import tune

    from ablations.trial import tune_trainable

    if not ray.is_initialized():  # a learning-rate sweep runs two rounds on one cluster
        url = start_ray(args)
        print(dashboard_help(url), flush=True)
    resources: dict[str, float] = {"cpu": args.cpus_per_trial}
    gpus = ray.cluster_resources().get("GPU", 0)
    if gpus:
        resources["gpu"] = min(args.gpus_per_trial, gpus)
    print(f"resources per trial: {resources} (cluster: {int(ray.cluster_resources().get('CPU', 0))} CPUs, {gpus:g} GPUs)")
    scheduler = None
    if args.scheduler == "asha":
        from ray.tune.schedulers import ASHAScheduler

        scheduler = ASHAScheduler(metric="val_loss", mode="min", grace_period=1)
    tuner = tune.Tuner(
        tune.with_resources(tune_trainable, resources),
        param_space={"recipe": str(Path(args.recipe).resolve()) if is_recipe_path(args.recipe) else args.recipe,
                     "preset": args.preset, "threads": args.cpus_per_trial, "point": tune.grid_search(todo)},
        tune_config=tune.TuneConfig(scheduler=scheduler),
        run_config=tune.RunConfig(
            name="tune", storage_path=str(out / "ray"), verbose=2 if args.verbose else 0,
            callbacks=[_make_callback(labels, len(todo), out, metrics)],
            failure_config=tune.FailureConfig(max_failures=0),
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


def _run_round(args, todo, labels, out, metrics) -> bool:
    """Run the unfinished trials of one round; True when Ctrl-C stopped it."""
    try:
        if todo:
            _run_trials(args, todo, labels, out, metrics)
    except KeyboardInterrupt:
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
             "plot": args.plot}, indent=2))
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
        interrupted = _run_round(args, todo, {key_of(pt): label(pt) for pt in sweep}, out, metrics)
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
    print(f"grid: {len(points)} trial(s) of {args.recipe}/{args.preset}, {len(points) - len(todo)} already done; "
          f"results in {out}", flush=True)
    interrupted = interrupted or _run_round(args, todo, {key_of(pt): label(pt) for pt in points}, out, metrics)
    wall = time.perf_counter() - t0
    wanted = {key_of(pt) for pt in points}
    trials = [t for t in read_trials(out / "trials.jsonl") if key_of(t["point"]) in wanted]
    if getattr(module, "TEST_SPLIT", False):
        notes.insert(0, "Figures come from a test split that training, early stopping and any learning-rate choice "
                        "never saw; each cell is the mean over seeds with its 95% bootstrap interval.")
    elif lr_path:
        notes.insert(0, "This recipe has no test split: its figures come from the validation data the learning "
                        "rate was chosen on (optimistic).")
    extra = sorted({k for t in trials for k, v in t.items() if k not in metrics and k != "train_seconds" and is_figure(k, v)})
    rows = aggregate(trials, keys, seed_path, metrics + extra, recall)
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
    own = sum(t.get("train_seconds") or 0.0 for t in read_trials(out / "trials.jsonl"))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nwall {wall:.1f}s; the grid's trials' own times sum to {own:.1f}s; driver peak memory {peak_mb:.0f} MB")
    print(f"table: {out / 'results.csv'} (also .md, .json, raw, plots; per-epoch lines in progress.log)")
    missing = len(wanted) - sum(t["status"] in ("ok", "stopped") for t in trials)
    failed = sum(t["status"] == "failed" for t in trials)
    if interrupted or missing > failed:
        print(f"interrupted: {max(missing - failed, 1)} trial(s) unfinished; finish with --resume {out}", file=sys.stderr)
        return 130
    if lr_path and lost:
        failed += len(lost)
    if failed:
        print(f"{failed} of {len(wanted)} trial(s) failed; rerun them with --resume {out}", file=sys.stderr)
        return 1
    return 0


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
            print(list_keys(_check_recipe(args.recipe)))
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

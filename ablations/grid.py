"""The ablation grid: one Ray Tune trial per point of a --space, one results table.

    python -m ablations.grid --space memories=1,4,8
    python -m ablations.grid --recipe infini_pythia --preset tiny --space memories=4,8 --space update=linear,delta

Results go to ``results/<recipe>-<preset>-<time>/``: ``trials.jsonl`` (one line per trial as it
ends), then ``results.csv`` and ``results.json`` (the table). Bad input exits with status 2 and
one line; a failed trial is marked in the table and the exit status is 1.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from ablations.space import SpaceError, grid_points, leaf_fields, parse_space, type_name
from ablations.trial import load_recipe

METRICS = ["recall_acc", "val_ppl", "params", "memory_bytes", "sec_per_epoch", "tokens_per_s", "best_epoch", "epochs",
           "expand_share"]
RAY_TMP = "/tmp/memkit-ray"  # short: Ray's socket paths must stay under ~107 bytes


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints the whole usage otherwise)
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m ablations.grid", description="Run an ablation grid of a memkit recipe on Ray Tune.")
    p.add_argument("--recipe", default="infini_pythia", help="module in recipes/ (default: infini_pythia)")
    p.add_argument("--preset", default="tiny", help="preset of the recipe (default: tiny)")
    p.add_argument("--space", action="append", default=[], metavar="KEY=V1,V2", help="a swept key; repeat for a cross product")
    p.add_argument("--results", default="results", help="folder under which the grid's folder is made")
    p.add_argument("--cpus-per-trial", type=int, default=1)
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs Ray may use (default: all)")
    p.add_argument("--no-dashboard", action="store_true", help="start Ray without its dashboard")
    p.add_argument("--list-keys", action="store_true", help="print the recipe's keys and exit")
    p.add_argument("--verbose", action="store_true", help="show Ray's own output")
    return p


def list_keys(module) -> str:
    fields = leaf_fields(module.SPEC)
    base = module.PRESETS["tiny"]() if "tiny" in module.PRESETS else None
    lines = ["alias            path                                type                default"]
    by_path = {v: k for k, v in module.ALIASES.items()}
    for path, f in fields.items():
        default = base
        for part in path.split("."):
            default = getattr(default, part) if default is not None else f.default
        lines.append(f"{by_path.get(path, ''):16} {path:35} {type_name(f.annotation):19} {default}")
    return "\n".join(lines)


def check_inputs(args) -> tuple[Any, list, list[dict]]:
    """Everything a user can get wrong, checked before Ray starts."""
    if not (args.recipe.isidentifier() and Path(__file__).parent.parent.joinpath("recipes", f"{args.recipe}.py").exists()):
        available = sorted(p.stem for p in Path(__file__).parent.parent.joinpath("recipes").glob("*.py") if p.stem != "__init__")
        raise UsageError(f"unknown --recipe {args.recipe!r}; available: {', '.join(available)}")
    module = load_recipe(args.recipe)
    if args.preset not in module.PRESETS:
        raise UsageError(f"unknown --preset {args.preset!r} for {args.recipe}; available: {', '.join(sorted(module.PRESETS))}")
    if args.cpus_per_trial < 1:
        raise UsageError(f"--cpus-per-trial must be >= 1, got {args.cpus_per_trial}")
    try:
        space = parse_space(args.space, module.SPEC, module.ALIASES)
        points = grid_points(module.PRESETS[args.preset](), space)
    except SpaceError as e:
        raise UsageError(str(e)) from None
    return module, space, points


def start_ray(args) -> str | None:
    """Start a local Ray quietly; returns the dashboard URL (None without one)."""
    import ray

    if not args.verbose:
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        for name in ("ray", "ray.tune", "ray.train", "ray.data"):
            logging.getLogger(name).setLevel(logging.ERROR)
    repo = str(Path(__file__).resolve().parent.parent)
    path = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH", "")) if p)
    ctx = ray.init(
        address="local",  # always a fresh local cluster: never attach to another grid's by accident
        num_cpus=args.num_cpus,
        include_dashboard=not args.no_dashboard,
        dashboard_host="127.0.0.1",
        _temp_dir=RAY_TMP,
        log_to_driver=args.verbose,
        logging_level=logging.INFO if args.verbose else logging.ERROR,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    url = getattr(ctx, "dashboard_url", None)
    return f"http://{url}" if url and not url.startswith("http") else url


def dashboard_help(url: str | None) -> str:
    if not url:
        return "Ray dashboard: off (--no-dashboard)"
    token_path = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser("~/.ray/auth_token")
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return f"Ray dashboard: {url} (token auth disabled)"
    return (
        f"Ray dashboard: {url}  (token auth is on: paste the token from {token_path}, "
        "or print it with `ray get-auth-token`)"
    )


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"
    return str(v)


def format_table(rows: list[dict], columns: list[str]) -> str:
    cells = [[_fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    line = lambda vals: "  ".join(v.rjust(w) for v, w in zip(vals, widths))  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(r) for r in cells])


class _Progress:
    """A Tune callback: one compact line per epoch, and each finished trial appended to trials.jsonl."""

    def __new__(cls, *a, **k):
        from ray.tune import Callback

        class Impl(Callback):
            def __init__(self, labels: dict[str, str], total: int, log_path: Path, metrics: list[str]):
                self.labels, self.total, self.log_path, self.done = labels, total, log_path, 0
                self.metrics = metrics
                self.last: dict[str, dict] = {}

            def _label(self, trial) -> str:
                return self.labels.get(json.dumps(trial.config["point"], sort_keys=True), trial.trial_id)

            def on_trial_result(self, iteration, trials, trial, result, **info):
                self.last[trial.trial_id] = result
                if not result.get("final"):
                    print(
                        f"  [{self._label(trial)}] epoch {result.get('epoch')}  val_acc={_fmt(result.get('val_acc'))}"
                        f"  val_ppl={_fmt(result.get('val_ppl'))}  {_fmt(result.get('seconds'))}s",
                        flush=True,
                    )

            def _record(self, trial, status: str, error: str = "") -> None:
                self.done += 1
                row = {"trial": self._label(trial), "status": status, "error": error, "point": trial.config["point"]}
                row.update({k: v for k, v in self.last.get(trial.trial_id, {}).items() if k in self.metrics or k == "train_seconds"})
                with self.log_path.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"  [{row['trial']}] {status} ({self.done}/{self.total})" + (f": {error}" if error else ""), flush=True)

            def on_trial_complete(self, iteration, trials, trial, **info):
                self._record(trial, "ok")

            def on_trial_error(self, iteration, trials, trial, **info):
                self._record(trial, "failed", _trial_error(trial))

        return Impl(*a, **k)


def _trial_error(trial) -> str:
    err = getattr(trial, "error_msg", None) or ""
    if not err and getattr(trial, "error_file", None) and os.path.exists(trial.error_file):
        err = Path(trial.error_file).read_text()
    lines = [ln for ln in str(err).strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else "trial failed"


def run_grid(args, module, space, points) -> int:
    from ray import tune

    metrics_cols = getattr(module, "METRICS", METRICS)  # a recipe may name its own figures
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(args.results).resolve() / f"{args.recipe}-{args.preset}-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    keys = [k for k, _, _ in space]
    paths = [p for _, p, _ in space]
    labels = {
        json.dumps(pt, sort_keys=True): (",".join(f"{k}={pt[p]}" for k, p in zip(keys, paths)) or args.preset)
        for pt in points
    }
    print(f"grid: {len(points)} trial(s) of {args.recipe}/{args.preset}; results in {out}", flush=True)
    url = start_ray(args)
    print(dashboard_help(url), flush=True)

    from ablations.trial import tune_trainable

    trainable = tune.with_resources(tune_trainable, {"cpu": args.cpus_per_trial})
    tuner = tune.Tuner(
        trainable,
        param_space={
            "recipe": args.recipe,
            "preset": args.preset,
            "threads": args.cpus_per_trial,
            "point": tune.grid_search(points),
        },
        run_config=tune.RunConfig(
            name="tune",
            storage_path=str(out / "ray"),
            verbose=2 if args.verbose else 0,
            callbacks=[_Progress(labels, len(points), out / "trials.jsonl", metrics_cols)],
            failure_config=tune.FailureConfig(max_failures=0),
        ),
    )
    t0 = time.perf_counter()
    results = tuner.fit()
    wall = time.perf_counter() - t0

    rows = []
    for res in results:
        point = res.config["point"]
        row = {k: point.get(p) for k, p in zip(keys, paths)}
        metrics = res.metrics or {}
        if res.error is not None or not metrics.get("final"):
            msg = str(res.error).strip().splitlines() if res.error is not None else ["no final result"]
            row.update({"status": "failed", "error": msg[-1] if msg else "failed"})
        else:
            row.update({m: metrics.get(m) for m in metrics_cols})
            row.update({"trial_s": metrics.get("train_seconds"), "status": "ok"})
        rows.append(row)
    rows.sort(key=lambda r: [str(r.get(k)) for k in keys])
    columns = keys + metrics_cols + ["trial_s", "status"]
    if any(r["status"] != "ok" for r in rows):
        columns.append("error")
    write_results(out, rows, columns)
    print()
    print(format_table(rows, columns))
    print(f"\nwall {wall:.1f}s; table: {out / 'results.csv'} and results.json")
    failed = sum(r["status"] != "ok" for r in rows)
    if failed:
        print(f"{failed} of {len(rows)} trial(s) failed", file=sys.stderr)
    return 1 if failed else 0


def write_results(out: Path, rows: list[dict], columns: list[str]) -> None:
    with (out / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    (out / "results.json").write_text(json.dumps(rows, indent=2, default=str))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.list_keys:
            print(list_keys(check_inputs(args)[0]))
            return 0
        module, space, points = check_inputs(args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        return run_grid(args, module, space, points)
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())

"""The grid as a plan: everything ``python -m ablations.grid`` is asked, read and checked once, before Ray starts.

``check_inputs(args) -> GridPlan`` is where a user's mistake becomes one line (``UsageError``, exit 2); the plan it
returns is frozen: running the grid (``ablations.grid.run_plan``) and writing its tables (``summarise``) only read it.
A new grid option is a field here, checked in ``check_inputs`` and saved in ``grid.json`` (``saved()``) when a
``--resume`` must finish the grid as it was asked.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ablations.ladder import LadderPlan
from ablations.ladder import plan as ladder_plan
from ablations.match_params import matched_points
from ablations.space import SpaceError, apply_overrides, grid_points, parse_space, search_space
from ablations.storage import StorageError, check_storage
from ablations.sweep import parse_rates
from ablations.tracking import check_loggers
from ablations.trial import is_recipe_path, load_recipe
from memkit.data.corpus import CorpusMissing
from recipes._as_run import AS_RUN_CHOICES
from recipes.recipe import Recipe

DEFAULT_SEEDS = 3
RECIPES = Path(__file__).resolve().parent.parent / "recipes"
# what grid.json keeps: a --resume finishes the grid with these, whatever else it is given
SAVED = ("recipe", "preset", "space", "seeds", "lr_sweep", "plot", "search", "num_samples", "storage", "logger",
         "keep_checkpoints", "ladder", "match_params")


class UsageError(Exception):
    pass


@dataclass(frozen=True)
class GridPlan:
    """One grid, checked. ``recipe_name`` as given (a module in recipes/ or a file path) and its ``recipe``;
    ``space_args``: the ``--space`` texts (saved for ``--resume``); ``space``: (key, dotted path, values) per swept
    key, the seeds last; ``points``: the grid's overrides, one per trial (empty for a search, which samples
    ``sampled``); ``rates``: the ``--lr-sweep`` rates or None; ``resume``: the folder to finish, or None."""

    recipe_name: str
    recipe: Recipe
    preset: str
    space_args: list[str]
    space: list[tuple[str, str, list]]
    points: list[dict]
    seeds: int
    lr_sweep: str | None
    rates: list[float] | None
    plot: str | None
    search: str
    num_samples: int | None
    sampled: dict[str, Any] | None
    results: str
    resume: str | None
    storage: str | None
    logger: list[str]
    keep_checkpoints: int
    max_failures: int
    scheduler: str
    ladder: str | None  # --ladder: "all" or the choices' names; its rungs are ``points``
    ladder_plan: LadderPlan | None
    match_params: str | None
    # resources: where trials run
    cpus_per_trial: int
    gpus_per_trial: float
    num_cpus: int | None
    num_gpus: float | None
    address: str | None
    no_dashboard: bool
    verbose: bool

    @property
    def recipe_path(self) -> str:  # as Tune's trials find it; an absolute path for a file, saved in grid.json
        return str(Path(self.recipe_name).resolve()) if is_recipe_path(self.recipe_name) else self.recipe_name

    @property
    def seed_path(self) -> str | None:
        return self.recipe.aliases.get("seed") if self.seeds > 1 else None

    @property
    def lr_path(self) -> str | None:
        return self.recipe.aliases.get("lr") if self.rates else None

    def saved(self) -> dict:
        """What ``grid.json`` holds."""
        values = {"recipe": self.recipe_path, "space": self.space_args}
        return {k: values[k] if k in values else getattr(self, k) for k in SAVED}


def available_recipes() -> list[str]:
    """The recipes in recipes/: the files that define a ``RECIPE`` (or, the older way, ``PRESETS``); recipe.py, which
    defines what a recipe is, is none."""
    return sorted(p.stem for p in RECIPES.glob("*.py") if not p.stem.startswith("_")
                  and re.search(r"^(RECIPE|PRESETS) *=", p.read_text(encoding="utf-8"), re.M))


def check_recipe(name: str) -> Recipe:
    if is_recipe_path(name):
        if not Path(name).is_file():
            raise UsageError(f"--recipe {name!r}: no such file")
    elif not (name.isidentifier() and name in available_recipes()):
        available = available_recipes()
        raise UsageError(f"unknown --recipe {name!r}; available: {', '.join(available)} (or a path to a .py file)")
    module = load_recipe(name)
    try:
        return Recipe.from_module(module)
    except AttributeError as e:  # neither a RECIPE nor the older module-level names
        raise UsageError(f"--recipe {name!r} {e}") from None


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


def asked(args) -> dict:
    """The grid-defining flags as given, or, with ``--resume``, as that grid's ``grid.json`` saved them."""
    given = {k: getattr(args, k) for k in SAVED}
    if not args.resume:
        return given
    saved = Path(args.resume) / "grid.json"
    if not saved.is_file():
        raise UsageError(f"--resume {args.resume!r}: no grid.json there (not a grid folder)")
    plan = json.loads(saved.read_text())
    if args.recipe is not None and Path(args.recipe).stem != Path(plan["recipe"]).stem:
        raise UsageError(f"--resume {args.resume!r}: that grid ran recipe {plan['recipe']!r}, not {args.recipe!r}")
    for flag, key in (("--space", "space"), ("--lr-sweep", "lr_sweep"), ("--plot", "plot")):
        if given[key] and given[key] != plan.get(key):
            raise UsageError(f"{flag}: --resume finishes the grid as it was asked ({saved}); drop {flag}, or start "
                             "a new grid to ask something else")
    defaults = {"lr_sweep": None, "plot": None, "search": "grid", "num_samples": None, "storage": None,
                "logger": ["tensorboard"], "keep_checkpoints": 1, "ladder": None, "match_params": None}
    return {k: plan[k] if k in ("recipe", "preset", "space", "seeds") else plan.get(k, defaults[k]) for k in SAVED}


def _check_flags(args, a: dict) -> dict:
    """The flags that need no recipe: storage, loggers, checkpoints, sampling; ``a`` with them checked."""
    a = {**a, "recipe": a["recipe"] or "infini_pythia"}
    if not args.resume:
        check_writable(args.results, "--results")
    if a["storage"] is not None:
        try:
            a["storage"] = check_storage(a["storage"])
        except StorageError as e:
            raise UsageError(str(e)) from None
    try:
        a["logger"] = check_loggers(a["logger"] or ["tensorboard"])
    except ValueError as e:
        raise UsageError(str(e)) from None
    if a["keep_checkpoints"] < 0 or args.max_failures < 0:
        raise UsageError("--keep-checkpoints and --max-failures must be >= 0")
    if a["num_samples"] is not None and a["search"] == "grid":
        raise UsageError("--num-samples goes with --search optuna (a grid runs every point of --space)")
    return a


def _check_search(a: dict, recipe: Recipe) -> tuple[dict | None, int | None]:
    """``--search optuna``: the sampled search space and the number of samples; (None, num_samples) for a grid."""
    if a["search"] != "optuna":
        return None, a["num_samples"]
    if a["lr_sweep"] is not None or a["plot"] is not None:
        raise SpaceError("--search optuna samples points: it goes with neither --lr-sweep nor --plot")
    if importlib.util.find_spec("optuna") is None:
        raise SpaceError("--search optuna: the optuna package is not installed (pip install optuna)")
    sampled = search_space(a["space"], recipe.spec, recipe.aliases, recipe.preset(a["preset"]))
    if not any(not isinstance(v, (int, float, str, bool, type(None))) for v in sampled.values()):
        raise SpaceError("--search optuna needs ranges to sample: give --space KEY=START:STOP:logN (or "
                         "several values) for at least one key")
    num_samples = 10 if a["num_samples"] is None else a["num_samples"]
    if not 1 <= num_samples <= 100_000:
        raise SpaceError(f"--num-samples must be in 1..100000, got {num_samples}")
    return sampled, num_samples


def _check_rates(a: dict, recipe: Recipe, space) -> list[float] | None:
    rates = parse_rates(a["lr_sweep"]) if a["lr_sweep"] is not None else None
    if rates:
        lr_path = recipe.aliases.get("lr")
        if lr_path is None:
            raise SpaceError(f"--lr-sweep: recipe {a['recipe']} has no 'lr' alias")
        if any(p == lr_path for _, p, _ in space):
            raise SpaceError("--lr-sweep and --space lr=... both set the learning rate; use one")
        if not recipe.select_by.startswith("val_"):
            raise SpaceError(f"--lr-sweep: recipe {a['recipe']}'s SELECT_BY must be a validation figure (val_*)")
    return rates


def _check_plot_and_seeds(a: dict, recipe: Recipe, space) -> None:
    """``--plot`` names a numeric swept key; ``--seeds`` > 1 appends the seed to ``space``."""
    if a["plot"] is not None:
        swept = {k: v for k, _, v in space if len(v) > 1}
        if a["plot"] not in swept:
            raise SpaceError(f"--plot {a['plot']!r}: must be a --space key with several values; "
                             f"swept here: {', '.join(swept) or 'none'}")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in swept[a["plot"]]):
            raise SpaceError(f"--plot {a['plot']}: its values must be numbers (a load such as pairs)")
    if a["seeds"] > 1:
        seed_path = recipe.aliases.get("seed")
        if seed_path is None:
            raise SpaceError(f"--seeds: recipe {a['recipe']} has no 'seed' alias")
        if any(p == seed_path for _, p, _ in space):
            raise SpaceError("--seeds and --space seed=... both set the seed; use one")
        space.append(("seed", seed_path, list(range(a["seeds"]))))


def _check_space(a: dict, recipe: Recipe) -> dict:
    """The swept keys, the points, the sampled space and the rates; raises SpaceError, ValueError, CorpusMissing."""
    space = parse_space(a["space"], recipe.spec, recipe.aliases)
    sampled, num_samples = _check_search(a, recipe)
    rates = _check_rates(a, recipe, space)
    _check_plot_and_seeds(a, recipe, space)
    points = grid_points(recipe.preset(a["preset"]), space) if sampled is None else []
    ladder = None
    if a["ladder"] is not None:  # the ladder's rungs replace the cross product (its designs: space's other keys)
        if sampled is not None or rates or a["plot"]:
            raise SpaceError("--ladder runs its own points: it goes with none of --search optuna, --lr-sweep, --plot")
        ladder = ladder_plan(recipe.preset(a["preset"]), space, dict(recipe.aliases), AS_RUN_CHOICES,
                             None if a["ladder"] == "all" else a["ladder"].split(","))
        space, points = ladder.space, ladder.points
    if a["match_params"]:
        points = matched_points(a["match_params"], space, recipe.preset(a["preset"]), points)
    if rates:  # every rate must make a valid spec too
        grid_points(recipe.preset(a["preset"]), [("lr", recipe.aliases["lr"], rates)])
    for pt in points:
        check_min_epochs(apply_overrides(recipe.preset(a["preset"]), pt), space)
    if recipe.preflight is not None:  # what a trial needs from this machine (e.g. data files)
        for pt in points:
            recipe.preflight(apply_overrides(recipe.preset(a["preset"]), pt))
    return {"space": space, "points": points, "sampled": sampled, "num_samples": num_samples, "rates": rates,
            "ladder_plan": ladder}


def check_address(address: str | None) -> None:
    if address and address != "auto":
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise UsageError(f"--address {address!r}: expected 'auto' or host:port")
        try:
            socket.create_connection((host, int(port)), timeout=3).close()
        except OSError as e:
            raise UsageError(f"--address {address}: nothing answers there ({e.strerror or e})") from None


def check_inputs(args) -> GridPlan:
    """Everything a user can get wrong, checked before Ray starts; ``args`` (the parsed flags) is left as it was."""
    a = _check_flags(args, asked(args))
    recipe = check_recipe(a["recipe"])
    if a["seeds"] is None:
        a["seeds"] = recipe.seeds if recipe.seeds is not None else DEFAULT_SEEDS
    if not a["space"]:  # a report recipe names the designs it compares
        a["space"] = list(recipe.space)
    if a["preset"] not in recipe.presets:
        raise UsageError(f"unknown --preset {a['preset']!r} for {a['recipe']}; available: "
                         f"{', '.join(sorted(recipe.presets))}")
    check_resources(args)
    if not 0 < args.gpus_per_trial <= 64:
        raise UsageError(f"--gpus-per-trial must be in (0, 64], got {args.gpus_per_trial}")
    if not 1 <= a["seeds"] <= 1000:
        raise UsageError(f"--seeds must be in 1..1000, got {a['seeds']}")
    try:
        checked = _check_space(a, recipe)
    except CorpusMissing as e:
        raise UsageError(f"{e}, or give your own text: --space source=<your files>") from None
    except (SpaceError, ValueError) as e:
        raise UsageError(str(e)) from None
    check_address(args.address)
    return GridPlan(
        recipe_name=a["recipe"], recipe=recipe, preset=a["preset"], space_args=a["space"], seeds=a["seeds"],
        lr_sweep=a["lr_sweep"], plot=a["plot"], search=a["search"], storage=a["storage"], logger=a["logger"],
        ladder=a["ladder"], match_params=a["match_params"],
        keep_checkpoints=a["keep_checkpoints"], results=args.results, resume=args.resume, **checked,
        **{k: getattr(args, k) for k in ("max_failures", "scheduler", "cpus_per_trial", "gpus_per_trial", "num_cpus",
                                         "num_gpus", "address", "no_dashboard", "verbose")})

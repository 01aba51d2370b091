"""Recipe: what one experiment is, as the grid, a trial and a recipe's own command line read it.

Each recipe file exports one ``RECIPE = Recipe(...)``: its spec class, presets, ``--space`` keys (``aliases``), how a
trial runs (``run``) and, optionally, the grid's protocol (figures shown, solve thresholds, the validation figure a
learning-rate sweep chooses on, a test split), a report recipe's default designs and tables, and a check the grid
runs before any trial (``preflight``). A user's recipe file outside the repository does the same
(``--recipe path/to/file.py``).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from recipes._shared import one_line_errors

# the figures a grid's table shows when a recipe names none
DEFAULT_METRICS = ("recall_acc", "val_ppl", "params", "memory_bytes", "sec_per_epoch", "tokens_per_s", "best_epoch",
                   "epochs", "expand_share")


@dataclass(frozen=True)
class Recipe:
    """One experiment.

    - ``spec``: its spec class; ``presets``: name -> function returning a spec (``tiny`` trains on a CPU core in
      about a minute); ``aliases``: ``--space`` key -> dotted spec path (include ``seed`` so ``--seeds`` works);
    - ``run(spec, on_epoch=None, progress=None) -> dict`` of figures;
    - ``metrics``: the figures the grid's table shows; ``recall``: figures with a solve threshold (a trial returns
      it as ``solve_at``); ``select_by``: the ``val_*`` figure a ``--lr-sweep`` chooses on; ``test_split``: the
      reported figures come from a split no choice saw;
    - a report recipe: ``space`` (the designs it compares, used without ``--space``), ``seeds``, and
      ``report(rows, names, spec) -> str``, its tables from the aggregated rows;
    - ``preflight(spec)``: raises before any trial starts when the spec cannot run here (a missing corpus).
    """

    name: str
    doc: str
    spec: type
    presets: Mapping[str, Callable[[], Any]]
    aliases: Mapping[str, str]
    run: Callable[..., dict]
    metrics: tuple[str, ...] = DEFAULT_METRICS
    recall: tuple[str, ...] = ("recall_acc",)
    select_by: str = "val_ppl"
    test_split: bool = False
    space: tuple[str, ...] = ()
    seeds: int | None = None
    report: Callable[..., str] | None = None
    preflight: Callable[[Any], None] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # anything else a recipe wants to hand its users

    def preset(self, name: str):
        return self.presets[name]()

    def default_preset(self):
        """``tiny`` when there is one, else the first preset."""
        return self.preset("tiny" if "tiny" in self.presets else next(iter(self.presets)))

    def main(self, argv: list[str] | None = None) -> None:
        """``python -m recipes.<name> --preset P``: one trial without Ray, figures as JSON."""
        parser = argparse.ArgumentParser(description=self.doc.strip().split("\n\n")[0].replace("\n", " ") or self.name)
        parser.add_argument("--preset", choices=sorted(self.presets), default="tiny" if "tiny" in self.presets
                            else next(iter(self.presets)))
        args = parser.parse_args(argv)
        with one_line_errors(self.name):  # a user's mistake (a spec value, a missing corpus): one line, exit 2
            print(json.dumps(self.run(self.preset(args.preset), progress=True), indent=2))

    @classmethod
    def from_module(cls, module) -> "Recipe":
        """A recipe file's ``RECIPE``; a file written before ``Recipe`` (module-level ``SPEC``, ``PRESETS``,
        ``ALIASES``, ``run`` and the optional names above in capitals) is read into one here, and only here."""
        found = getattr(module, "RECIPE", None)
        if isinstance(found, Recipe):
            return found
        missing = [n for n in ("SPEC", "PRESETS", "ALIASES", "run") if not hasattr(module, n)]
        if missing:
            raise AttributeError(f"lacks RECIPE = Recipe(...) (recipes/recipe.py) and, written the older way, "
                                 f"{', '.join(missing)} (see CONTRIBUTING.md, 'Add a recipe')")
        optional = {"metrics": "METRICS", "recall": "RECALL", "select_by": "SELECT_BY", "test_split": "TEST_SPLIT",
                    "space": "SPACE", "seeds": "SEEDS", "report": "report", "preflight": "preflight"}
        given = {k: getattr(module, name) for k, name in optional.items() if hasattr(module, name)}
        for k in ("metrics", "recall", "space"):
            if k in given:
                given[k] = tuple(given[k])
        return cls(name=module.__name__.rpartition(".")[2], doc=module.__doc__ or "", spec=module.SPEC,
                   presets=module.PRESETS, aliases=module.ALIASES, run=module.run, **given)

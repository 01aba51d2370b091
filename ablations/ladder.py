"""The ladder: from a report recipe's as-run arm to its careful arm, one choice at a time.

Between the two arms lie the choices F the as-run arm makes (``recipes/_as_run.py``, ``AS_RUN_CHOICES``: the spec
paths it sets, grouped where they act together). For each choice f the ladder runs two rungs beside the two ends:
the careful arm with f alone set as run (``+f``), and the as-run arm with f alone set back careful (``−f``). Every
rung runs over the same seeds, so each is compared paired against both ends. A choice that differs between the arms
but means nothing for the design (the expansion gate's input without a hierarchy) is named and left out.

Rungs are grid points of the careful arm with explicit overrides, so each is the spec it says it is; both arms run
the as-run arm's evaluations (passkey and MQAR, which test nothing as run, are left out of every rung).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from ablations.space import apply_overrides
from memkit.blocks.attention_spec import MemoryAttentionSpec
from memkit.eval.stats import paired_difference


@dataclass(frozen=True)
class Rung:
    """One point of the ladder: ``name`` ("as run", "careful", "+<choice>", "−<choice>") and its overrides."""

    name: str
    choice: str | None
    point: dict[str, Any]


def leaves(data: dict, prefix: str = "") -> dict[str, Any]:
    """{dotted path: value} of a nested dict's leaves."""
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def arm_choices(base, overrides: dict[str, Any], groups: list[tuple[str, list[str]]]) -> tuple[dict, list[str]]:
    """The choices between the two arms of ``base`` (a report recipe's preset) with ``overrides`` (a design):
    ({choice: {path: as-run value}}, [those of them that mean nothing for this design in either arm])."""
    careful = leaves(apply_overrides(base, {**overrides, "arm": "careful"}).system().model_dump())
    as_run = leaves(apply_overrides(base, {**overrides, "arm": "as_run"}).system().model_dump())
    changed = {p: v for p, v in as_run.items() if careful.get(p) != v and p not in ("arm", "evals")}
    named = {p: name for name, paths in groups for p in paths}
    choices: dict[str, dict] = {}
    for path, value in changed.items():
        choices.setdefault(named.get(path, path), {})[path] = value
    inert = [name for name, sets in choices.items() if _inert_everywhere(sets, careful, as_run)]
    return choices, inert


def _inert_everywhere(sets: dict, careful: dict, as_run: dict) -> bool:
    """Whether every memory-layer field a choice sets does nothing for the design in both arms."""
    memory = "model.memory."
    fields = [p[len(memory):] for p in sets if p.startswith(memory)]
    if len(fields) != len(sets):
        return False
    for arm in (careful, as_run):
        values = {p[len(memory):]: v for p, v in arm.items() if p.startswith(memory)}
        inert = MemoryAttentionSpec.inert_fields({k: v for k, v in values.items()
                                                 if k in MemoryAttentionSpec.model_fields})
        if not all(f in inert for f in fields):
            return False
    return True


def rungs(base, overrides: dict[str, Any], groups: list[tuple[str, list[str]]]) -> tuple[list[Rung], list[str]]:
    """The ladder's points for one design (``overrides``): the two ends and, per choice, +f and −f."""
    choices, inert = arm_choices(base, overrides, groups)
    as_run_evals = apply_overrides(base, {**overrides, "arm": "as_run"}).system().evals
    common = {**overrides, "arm": "careful", "evals": list(as_run_evals)}
    every = {p: v for sets in choices.values() for p, v in sets.items()}
    out = [Rung("as run", None, {**common, **every}), Rung("careful", None, dict(common))]
    for name, sets in choices.items():
        if name in inert:  # set with the as-run end (so it is the as-run arm exactly), never flipped alone
            continue
        out.append(Rung(f"+{name}", name, {**common, **sets}))
        others = {p: v for other, s in choices.items() if other != name for p, v in s.items()}
        out.append(Rung(f"−{name}", name, {**common, **others}))
    return out, inert


@dataclass(frozen=True)
class RungResult:
    rung: Rung
    seeds: dict[int, dict]  # seed -> the trial's figures


def _cell(values: list[float], percent: bool = False, signed: bool = False) -> str:
    """Mean ± sd over seeds; ``percent``: a share or relative change, as % (0.0001 and 0.04 must not both read
    0.00); ``signed``: a change, with its sign."""
    if not values:
        return ""
    scale, unit, digits = (100, "%", 3) if percent else (1, "", 2)
    mean = statistics.fmean(values) * scale
    sd = "" if len(values) == 1 else f" ± {statistics.stdev(values) * scale:.{digits}f}"
    return f"{mean:{'+' if signed else ''}.{digits}f}{unit}{sd}"


def _paired(a: RungResult, b: RungResult, figure: str) -> str:
    """a − b over the seeds both ran, '*' where its 95% interval excludes 0."""
    number = lambda r: {s: v[figure] for s, v in r.seeds.items() if isinstance(v.get(figure), (int, float))}  # noqa: E731
    diff = paired_difference(number(a), number(b))
    if diff is None:
        return ""
    return f"{diff['mean']:+.2f}" + (" *" if diff["excludes_zero"] else "")


def ladder_table(results: list[RungResult], figure: str = "val_ppl", knocked: str = "ko_read_val_ppl_change",
                 share: str = "mem_share_mean") -> str:
    """A markdown table: each rung's ``figure`` (mean ± sd over seeds), its knock-out change and the memory's share
    of the layer's output (as %), and its paired difference against the as-run end and the careful end (* where
    the 95% interval excludes 0)."""
    by_name = {r.rung.name: r for r in results}
    ends = by_name.get("as run"), by_name.get("careful")
    head = f"| rung | {figure} | {knocked} | {share} | vs as run | vs careful |\n|---|---|---|---|---|---|\n"
    lines = []
    for r in results:
        of = lambda name: [v[name] for v in r.seeds.values() if isinstance(v.get(name), (int, float))]  # noqa: E731
        vs = [_paired(r, end, figure) if end is not None and end is not r else "" for end in ends]
        lines.append(f"| {r.rung.name} | {_cell(of(figure))} | {_cell(of(knocked), True, True)} | "
                     f"{_cell(of(share), True)} | {vs[0]} | {vs[1]} |")
    return head + "\n".join(lines) + "\n"


def main_choices(results: list[RungResult], figure: str = "val_ppl", top: int = 3) -> str:
    """One sentence: the choices that account for most of the as-run − careful difference in ``figure``, each by
    the mean of its two effects (+f against careful, as run against −f), paired over seeds."""
    by_name = {r.rung.name: r for r in results}

    def mean(r: RungResult | None) -> float | None:  # None: the rung did not run, or no seed of it finished
        values = [v[figure] for v in r.seeds.values() if isinstance(v.get(figure), (int, float))] if r else []
        return statistics.fmean(values) if values else None

    as_run, careful = mean(by_name.get("as run")), mean(by_name.get("careful"))
    if as_run is None or careful is None:  # an interrupted ladder: --resume finishes it
        return f"The ladder's two ends have not both finished: no choice can be weighed yet ({figure})."
    total = as_run - careful
    effects = {}
    for name in {r.rung.choice for r in results if r.rung.choice}:
        plus, minus = mean(by_name.get(f"+{name}")), mean(by_name.get(f"−{name}"))
        if plus is not None and minus is not None:
            effects[name] = ((plus - careful) + (as_run - minus)) / 2
    if not effects or total == 0:
        return f"As run and careful differ by {total:+.2f} {figure}; no choice's two rungs have both finished."
    share = lambda kv: f"{kv[0]} ({kv[1]:+.2f}, {100 * kv[1] / total:.0f}% of it)"  # noqa: E731
    singles = sorted(((n, e) for n, e in effects.items() if not is_joint(n)), key=lambda kv: -abs(kv[1]))[:top]
    joints = sorted(((n, e) for n, e in effects.items() if is_joint(n)), key=lambda kv: -abs(kv[1]))
    text = f"As run − careful: {total:+.2f} {figure}."
    if singles:
        text += (" The choices that account for most of it (each the mean of its two one-sided effects): "
                 + "; ".join(map(share, singles)) + ".")
    if joints:  # they overlap their members: not ranked with them, nor summed
        text += " Flipped together: " + "; ".join(map(share, joints)) + "."
    return text


def _joint(base, design: dict, groups: list[tuple[str, list[str]]], joint: str,
           label: str) -> tuple[list[tuple[str, list[str]]], str]:
    """A joint ("whole call+one memory per batch"): ``groups`` with its parts made one choice "(a & b)" that flips
    them together (two choices that each alone keep the memory out show only when both are set back), and that
    name. Each part names one choice of the design: the one whose name it is, else the one name containing it, else
    the one name beginning with it; raises ValueError naming the choices otherwise."""
    choices, _ = arm_choices(base, design, groups)
    members = []
    for part in (w.strip().lower() for w in joint.split("+")):
        found = [n for n in choices if n.lower() == part] or [n for n in choices if part and part in n.lower()]
        if len(found) > 1:
            found = [n for n in found if n.lower().startswith(part)] or found
        if len(found) != 1:
            what = f"matches {len(found)}: {'; '.join(found)}" if found else "matches none"
            raise ValueError(f"--ladder {joint}: each part joined by + must name one choice of {label}; "
                             f"{part!r} {what}; its choices: {'; '.join(sorted(choices))}")
        members.append(found[0])
    members = list(dict.fromkeys(members))
    if len(members) < 2:
        raise ValueError(f"--ladder {joint}: a joint flips two choices or more; every part names {members[0]!r}")
    name = f"({' & '.join(members)})"
    return [*groups, (name, [p for m in members for p in choices[m]])], name  # last: its fields go to the joint


def point_key(point: dict, leave_out: str | None = None) -> str:
    """A point's identity (its fields but ``leave_out``, values as text, in any order)."""
    return repr(sorted((k, str(v)) for k, v in point.items() if k != leave_out))


def _distinct(found: list[Rung]) -> list[Rung]:
    """The rungs in order, each point once."""
    out, seen = [], set()
    for r in found:
        key = point_key(r.point)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def is_joint(choice: str) -> bool:
    return choice.startswith("(") and " & " in choice


@dataclass(frozen=True)
class LadderPlan:
    """What ``--ladder`` runs: the table's keys (every path the rungs set, as ``space`` items), the grid points
    (each rung of each design, times the seeds) and which rung each point is."""

    space: list[tuple[str, str, list]]
    points: list[dict]
    rungs: list[tuple[str, Rung]]  # (design label, rung)
    inert: dict[str, list[str]]  # design label -> choices left out
    seed_path: str | None = None

    def label(self, point: dict) -> str:
        """A trial's name: its design, its rung and its seed ("design=multi, +documents run together, seed=1")."""
        bare = {k: v for k, v in point.items() if k != self.seed_path}
        for design, rung in self.rungs:
            if rung.point == bare:
                seed = f", seed={point[self.seed_path]}" if self.seed_path in point else ""
                return f"{design}, {rung.name}{seed}"
        return ",".join(f"{k}={v}" for k, v in point.items())


def plan(base, space: list[tuple[str, str, list]], aliases: dict[str, str],
         groups: list[tuple[str, list[str]]], only: list[str] | None = None) -> LadderPlan:
    """The ladder over the designs of ``space`` (its items other than the arm and the seed: a report recipe's
    designs), each rung over the seeds ``space`` holds; ``only``: the choices whose names contain one of these
    (the ends always run), and choices joined by "+" flipped together as one rung pair."""
    from ablations.space import grid_points

    if "arm" not in type(base).model_fields:
        raise ValueError("--ladder: this recipe has no arms (arm=as_run,careful): nothing to climb between")
    seed = next((item for item in space if item[0] == "seed"), None)
    designs_space = [item for item in space if item[1] != "arm" and item is not seed]
    designs = grid_points(base, designs_space) if designs_space else [{}]
    by_path = {p: k for k, p in aliases.items()}
    if only is not None and not any(w.strip(" +") for w in only):
        raise ValueError(f"--ladder {','.join(only)!r}: name the choices to climb (words of their names, a+b to flip "
                         f"two together), or give --ladder alone for every choice")
    words = [w for w in only if "+" not in w and w.strip()] if only is not None else []
    joints = [w for w in only or [] if "+" in w and w.strip(" +")]
    unformed: dict[str, str] = {}  # joint -> why it could not be formed ("" once formed for some design)
    out: list[tuple[str, Rung]] = []
    inert: dict[str, list[str]] = {}
    for design in designs:
        label = ",".join(f"{by_path.get(p, p)}={v}" for p, v in design.items()) or "the preset"
        found, left_out = rungs(base, design, groups)
        picked = [r for r in found if r.choice is None or only is None
                  or any(w.strip().lower() in r.choice.lower() for w in words)]
        why_not = []  # the joints this design cannot form: left out of it, as a word that matches nothing is
        for joint in joints:
            try:
                joint_groups, name = _joint(base, design, groups, joint, label)
            except ValueError as e:
                why_not.append(str(e))
                unformed.setdefault(joint, str(e))
                continue
            formed = [r for r in rungs(base, design, joint_groups)[0] if r.choice == name]
            if formed:
                unformed[joint] = ""  # formed for some design: never an error
            else:
                why_not.append(f"--ladder {joint}: {name} means nothing for {label} in either arm")
                unformed.setdefault(joint, why_not[-1])
            picked += formed
        picked = _distinct(picked)  # "a+b" and "b+a" set the same fields: one rung pair
        if only is not None and len(picked) == 2:
            names = sorted({r.choice for r in found if r.choice})
            raise ValueError(why_not[0] if why_not else
                             f"--ladder {','.join(only)}: no choice of {label} matches; its choices: {'; '.join(names)}")
        out += [(label, r) for r in picked]
        inert[label] = left_out
    never = [why for why in unformed.values() if why]
    if never:  # formed for no design at all
        raise ValueError(never[0])
    seeds = seed[2] if seed else [None]
    points = [r.point if s is None else {**r.point, seed[1]: s} for _, r in out for s in seeds]
    paths = sorted({p for _, r in out for p in r.point if p not in ("arm", "evals")},
                   key=lambda p: (p not in {q for _, q, _ in designs_space}, p))
    table = [(by_path.get(p, p), p, sorted({str(r.point.get(p)) for _, r in out})) for p in paths]
    return LadderPlan(table + ([seed] if seed else []), points, out, inert, seed[1] if seed else None)


def write_ladder(out_dir, trials: list[dict], ladder: LadderPlan, seed_path: str | None) -> str:
    """ladder.md: per design, the rungs' table and the sentence naming the choices that account for most of the
    difference; returns the sentences (the grid prints them)."""
    from pathlib import Path

    done = {}
    for t in trials:
        if t.get("status") == "ok":
            done.setdefault(point_key(t["point"], seed_path), {})[t["point"].get(seed_path, 0) if seed_path else 0] = t
    text, sentences = ["# The ladder: from the as-run arm to the careful one, one choice at a time\n"], []
    for design in dict.fromkeys(label for label, _ in ladder.rungs):
        results = [RungResult(r, done.get(point_key(r.point, seed_path), {})) for label, r in ladder.rungs if label == design]
        sentence = main_choices(results)
        sentences.append(f"{design}: {sentence}")
        text += [f"## {design}\n", ladder_table(results), "", sentence, ""]
        if ladder.inert.get(design):
            text.append("Left out, meaning nothing for this design: " + "; ".join(ladder.inert[design]) + ".\n")
    text.append("Rungs: `+choice` is the careful arm with that choice alone as run; `−choice` the as-run arm with it "
                "alone set back; `+(a & b)` and `−(a & b)` flip a joint's choices together. Differences are paired "
                "over the seeds both ran (* where the 95% interval excludes 0); `ko_read_val_ppl_change` is val "
                "PPL's relative change with the memory read zeroed, `mem_share_mean` the memory's share of the "
                "layer's output.\n")
    Path(out_dir, "ladder.md").write_text("\n".join(text))
    return "\n".join(sentences)

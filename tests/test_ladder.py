"""The ladder from a report's as-run arm to its careful arm: its ends are the two arms, each rung differs from
an end in exactly one choice, and its summary names the choice that made the difference."""

import pytest

from ablations.ladder import Rung, RungResult, ladder_table, leaves, main_choices, rungs
from ablations.space import apply_overrides
from recipes import report_designs, report_hsa, report_landmarks
from recipes._as_run import AS_RUN_CHOICES


def system(base, point):
    return leaves(apply_overrides(base, point).system().model_dump())


@pytest.mark.parametrize("module,design", [(report_designs, {"design": "single"}), (report_designs, {"design": "multi"}),
                                           (report_designs, {"design": "hierarchical"}),
                                           (report_landmarks, {"model.memory.landmark": "learned"}),
                                           (report_hsa, {"model.memory.landmark": "hsa"})])
def test_the_ends_are_the_arms_and_each_rung_flips_one_choice(module, design):
    base = module.tiny()
    ladder, inert = rungs(base, design, AS_RUN_CHOICES)
    by = {r.name: r for r in ladder}
    as_run = system(base, {**design, "arm": "as_run"})
    careful = system(base, {**design, "arm": "careful", "evals": as_run["evals"]})
    drop = lambda d: {k: v for k, v in d.items() if k != "arm"}  # noqa: E731
    assert drop(system(base, by["as run"].point)) == drop(as_run)
    assert drop(system(base, by["careful"].point)) == drop(careful)
    choices = {r.choice for r in ladder if r.choice}
    assert choices and len(ladder) == 2 + 2 * len(choices)
    for name in choices:
        plus, minus = system(base, by[f"+{name}"].point), system(base, by[f"−{name}"].point)
        flipped = {p for p in plus if plus[p] != careful[p]}
        assert flipped and flipped == {p for p in minus if minus[p] != as_run[p] and p != "arm"}, name
        assert all(p in dict(AS_RUN_CHOICES).get(name, [name]) for p in flipped), (name, flipped)
    if design.get("design") == "single":  # choosing among memories means nothing with one
        assert any(name.startswith("selection as run") for name in inert)


def result(name, choice, values):
    return RungResult(Rung(name, choice, {}), {s: {"val_ppl": v, "ko_read_val_ppl_change": 0.01, "mem_share_mean": 0.2}
                                               for s, v in enumerate(values)})


def test_the_summary_names_the_choice_that_made_the_difference():
    """Choice A moves val_ppl from 50 to 40 whichever end it is flipped from; choice B moves nothing."""
    results = [result("as run", None, [40.0, 41.0, 39.0]), result("careful", None, [50.0, 51.0, 49.5]),
               result("+A", "A", [40.1, 41.0, 39.2]), result("−A", "A", [50.0, 51.2, 49.4]),
               result("+B", "B", [50.1, 50.9, 49.5]), result("−B", "B", [40.0, 41.1, 39.0])]
    text = main_choices(results)
    assert text.index("A (") < text.index("B (")
    assert "A (-10.13, 100% of it)" in text and "B (-0.02, 0% of it)" in text
    table = ladder_table(results)
    assert "| +A | 40.10 ± 0.90 | +1.000% ± 0.000 | 20.000% ± 0.000 | +0.10 | -10.07 * |" in table
    assert "| careful | 50.17" in table
    assert "| as run | 40.00 ± 1.00 | +1.000% ± 0.000 | 20.000% ± 0.000 |  | -10.17 * |" in table  # not with itself
    inert = RungResult(Rung("+C", "C", {}), {0: {"val_ppl": 46.0, "ko_read_val_ppl_change": 0.0001,
                                                 "mem_share_mean": 0.002}})
    assert "| +C | 46.00 | +0.010% | 0.200% |" in ladder_table([inert])  # an inert read is not rounded to 0


def test_the_grid_plans_the_ladder_over_the_recipes_designs_and_seeds(tmp_path):
    """--ladder replaces the cross product: per design its two ends and two rungs per choice, times the seeds;
    every point is a valid spec, and ladder.md pairs each rung with both ends."""
    from ablations import grid
    from ablations.ladder import write_ladder
    from memkit.data import debian_texts

    if debian_texts.missing():
        pytest.skip("the Debian text packages are not installed (the report recipes' corpus)")
    args = grid.build_parser().parse_args(["--recipe", "report_designs", "--ladder", "--space", "design=single,multi",
                                           "--space", "arm=as_run,careful", "--seeds", "2",
                                           "--results", str(tmp_path)])
    checked = grid.check_inputs(args)
    space, points, plan = checked.space, checked.points, checked.ladder_plan
    per_design = {label: sum(1 for d, _ in plan.rungs if d == label) for label, _ in plan.rungs}
    assert set(per_design) == {"design=single", "design=multi"}
    assert per_design["design=multi"] == per_design["design=single"] + 2  # the selection choice: N memories only
    assert len(points) == 2 * len(plan.rungs) and {p["train.seed"] for p in points} == {0, 1}
    assert space[-1][0] == "seed" and all(k != "arm" for k, _, _ in space)
    # ladder.md from finished trials: the multi design's as-run end 10 PPL below careful, its batch-shared choice all
    trials = []
    for label, rung in plan.rungs:
        for seed in (0, 1):
            ppl = 50.0 + seed
            if label == "design=multi" and (rung.name == "as run" or rung.name.startswith("+one memory per batch")
                                            or (rung.name.startswith("−") and "one memory per batch" not in rung.name)):
                ppl -= 10
            trials.append({"status": "ok", "point": {**rung.point, "train.seed": seed}, "val_ppl": ppl})
    text = write_ladder(tmp_path, trials, plan, "train.seed")
    multi = [line for line in text.splitlines() if line.startswith("design=multi")][0]
    assert "-10.00 val_ppl" in multi and "one memory per batch (scaled writes, the script's regimes) (-10.00, 100%" in multi
    assert "## design=single" in (tmp_path / "ladder.md").read_text()


def test_the_ladder_is_refused_for_a_recipe_without_arms(tmp_path):
    from ablations import grid

    args = grid.build_parser().parse_args(["--ladder", "--space", "memories=1,4", "--results", str(tmp_path)])
    with pytest.raises(grid.UsageError, match="--ladder: this recipe has no arms"):
        grid.check_inputs(args)


def test_the_ladder_can_climb_chosen_rungs_only(tmp_path):
    from ablations import grid
    from memkit.data import debian_texts

    if debian_texts.missing():
        pytest.skip("the Debian text packages are not installed (the report recipes' corpus)")
    argv = ["--recipe", "report_designs", "--space", "design=multi", "--seeds", "1", "--results", str(tmp_path)]
    args = grid.build_parser().parse_args(argv + ["--ladder", "one memory per batch,documents"])
    checked = grid.check_inputs(args)
    points = checked.points
    assert [r.name for _, r in checked.ladder_plan.rungs] == [
        "as run", "careful", "+one memory per batch (scaled writes, the script's regimes)",
        "−one memory per batch (scaled writes, the script's regimes)", "+documents run together",
        "−documents run together"] and len(points) == 6
    args = grid.build_parser().parse_args(argv + ["--ladder", "warp drive"])
    with pytest.raises(grid.UsageError, match="no choice of design=multi matches; its choices: documents run"):
        grid.check_inputs(args)
    for empty in ("", ",", " + "):  # never the whole recipe grid instead, nor every choice
        with pytest.raises(grid.UsageError, match="name the choices to climb"):
            grid.check_inputs(grid.build_parser().parse_args(argv + ["--ladder", empty]))


def test_choices_joined_by_plus_flip_together(tmp_path):
    """Two choices that each alone keep the memory out show only when both flip: "a+b" is one rung pair whose +
    rung is the careful arm with exactly both choices' fields as run, and whose − rung is the as-run arm with both
    set back; a part that names no choice, or several equally, is refused naming what it matched."""
    from ablations import grid
    from memkit.data import debian_texts

    if debian_texts.missing():
        pytest.skip("the Debian text packages are not installed (the report recipes' corpus)")
    argv = ["--recipe", "report_designs", "--space", "design=multi", "--seeds", "1", "--results", str(tmp_path)]
    ladder = "whole call as one segment,whole call+one memory per batch"
    checked = grid.check_inputs(grid.build_parser().parse_args(argv + ["--ladder", ladder]))
    by = {r.name: r for _, r in checked.ladder_plan.rungs}
    joint = "(whole call as one segment & one memory per batch (scaled writes, the script's regimes))"
    assert list(by) == ["as run", "careful", "+whole call as one segment", "−whole call as one segment", f"+{joint}",
                        f"−{joint}"] and len(checked.points) == 6
    base, design = report_designs.tiny(), {"design": "multi"}
    as_run = system(base, {**design, "arm": "as_run"})
    careful = system(base, {**design, "arm": "careful", "evals": as_run["evals"]})
    groups = dict(AS_RUN_CHOICES)
    both = {p for p in groups["whole call as one segment"] + groups[joint[1:-1].split(" & ")[1]]
            if as_run[p] != careful[p]}
    assert {"model.memory.segmentation", "model.memory.memory_scope"} <= both
    plus, minus = system(base, by[f"+{joint}"].point), system(base, by[f"−{joint}"].point)
    assert {p for p in plus if plus[p] != careful[p]} == both
    assert {p for p in minus if minus[p] != as_run[p] and p != "arm"} == both
    twice = grid.check_inputs(grid.build_parser().parse_args(argv + ["--ladder", "whole call+batch,batch+whole call"]))
    assert len(twice.points) == 4  # the same joint twice is one rung pair, not two trials of each point
    for bad, said in (("whole call+warp drive", "'warp drive' matches none"),
                      ("whole call+ as run", "'as run' matches [2-9]"),
                      ("whole call+whole call as one", "a joint flips two choices or more")):
        with pytest.raises(grid.UsageError, match=said):
            grid.check_inputs(grid.build_parser().parse_args(argv + ["--ladder", bad]))


def test_an_interrupted_ladder_writes_its_table_and_weighs_nothing(tmp_path):
    """A ladder stopped before its careful end finished (Ctrl-C, then --resume) still writes ladder.md: the rungs
    that ran, and a sentence saying no choice can be weighed yet, not a crash in the summary."""
    results = [result("as run", None, [40.0]), RungResult(Rung("careful", None, {}), {}),
               result("+A", "A", [40.1]), RungResult(Rung("−A", "A", {}), {})]
    assert "have not both finished" in main_choices(results)
    assert "| +A | 40.10 |" in ladder_table(results)
    half = [result("as run", None, [40.0]), result("careful", None, [50.0]), result("+A", "A", [41.0]),
            RungResult(Rung("−A", "A", {}), {}), result("+B", "B", [49.0]), result("−B", "B", [41.0])]
    assert "B (-1.00, 10% of it)" in main_choices(half) and "A (" not in main_choices(half)
    assert "no choice's two rungs have both finished" in main_choices(half[:2] + [half[2]])


def test_a_joint_is_weighed_apart_from_the_choices_it_overlaps():
    """A joint's effect overlaps its members': it is named after them, never ranked among them."""
    results = [result("as run", None, [40.0]), result("careful", None, [50.0]), result("+A", "A", [45.0]),
               result("−A", "A", [45.0]), result("+(A & B)", "(A & B)", [41.0]), result("−(A & B)", "(A & B)", [49.0])]
    text = main_choices(results)
    ranked, together = text.split("Flipped together: ")
    assert "A (-5.00, 50% of it)" in ranked and "(A & B)" not in ranked
    assert together.startswith("(A & B) (-9.00, 90% of it)")

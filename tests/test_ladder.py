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
    return RungResult(Rung(name, choice, {}), {s: {"val_ppl": v, "ko_read_val_ppl_change": 0.01} for s, v in
                                               enumerate(values)})


def test_the_summary_names_the_choice_that_made_the_difference():
    """Choice A moves val_ppl from 50 to 40 whichever end it is flipped from; choice B moves nothing."""
    results = [result("as run", None, [40.0, 41.0, 39.0]), result("careful", None, [50.0, 51.0, 49.5]),
               result("+A", "A", [40.1, 41.0, 39.2]), result("−A", "A", [50.0, 51.2, 49.4]),
               result("+B", "B", [50.1, 50.9, 49.5]), result("−B", "B", [40.0, 41.1, 39.0])]
    text = main_choices(results)
    assert text.index("A (") < text.index("B (")
    assert "A (-10.13, 100% of it)" in text and "B (-0.02, 0% of it)" in text
    table = ladder_table(results)
    assert "| +A | 40.10 ± 0.90 | 0.01 ± 0.00 | +0.10 | -10.07 * |" in table
    assert "| careful | 50.17" in table

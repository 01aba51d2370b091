"""Equal parameters: every design's MLP is sized so its model counts what the named design's does."""

import pytest

from ablations.match_params import WIDTH, match_params, model_params
from ablations.space import SpaceError, apply_overrides
from recipes.infini_pythia import tiny

LAYERS = ["infini", "deltanet", "gated_deltanet", "sliding_window", "full_attention"]


def test_each_baseline_is_sized_to_the_memory_layers_count():
    base = tiny()
    points = [{"model.design.name": name, "model.memory.num_memories": 4} for name in LAYERS]
    sized = match_params(base, points, "model.design.name", "infini", "layer")
    target = model_params(apply_overrides(base, points[0]))
    assert WIDTH not in sized[0]  # the reference is left as it is
    counts = {p["model.design.name"]: model_params(apply_overrides(base, p)) for p in sized}
    unmatched = {p["model.design.name"]: model_params(apply_overrides(base, p)) for p in points}
    assert unmatched["gated_deltanet"] != target  # without matching the counts differ
    for name, n in counts.items():
        assert abs(n - target) <= 0.02 * target, (name, n, target)


def test_a_design_that_cannot_be_matched_by_the_mlp_is_one_clear_error():
    base = tiny()
    points = [{"model.hidden_size": 32}, {"model.hidden_size": 256, "model.num_heads": 4}]
    with pytest.raises(SpaceError, match=r"--match-params hidden=32: hidden=256 counts .* cannot be matched"):
        match_params(base, points, "model.hidden_size", 32, "hidden")


def test_the_grid_matches_parameters_to_the_named_design(tmp_path):
    from ablations import grid

    argv = ["--space", "layer=infini,deltanet,sliding_window", "--space", "memories=4", "--seeds", "1",
            "--match-params", "layer=infini", "--results", str(tmp_path)]
    args = grid.build_parser().parse_args(argv)
    points = grid.check_inputs(args).points
    by = {p["model.design.name"]: p for p in points}
    assert WIDTH not in by["infini"] and WIDTH in by["deltanet"]
    target = model_params(apply_overrides(tiny(), by["infini"]))
    assert abs(model_params(apply_overrides(tiny(), by["deltanet"])) - target) <= 0.02 * target
    for bad, message in (("width=64", "KEY a --space key; given here: layer, memories"),
                         ("layer=rwkv", "'rwkv' is not a value layer can take")):
        args = grid.build_parser().parse_args(argv[:-4] + ["--match-params", bad, "--results", str(tmp_path)])
        with pytest.raises(grid.UsageError, match=message):
            grid.check_inputs(args)


def test_named_designs_are_one_axis_matched_to_one_reference(tmp_path):
    """``--space design=...`` (the mqar and passkey recipes): each design is one point, sized against single's."""
    from ablations import grid
    from recipes.mqar import tiny as mqar_tiny

    names = ["single", "multi", "hierarchical", "sliding_window", "deltanet", "gated_deltanet"]
    argv = ["--recipe", "mqar", "--space", "design=" + ",".join(names), "--seeds", "1",
            "--match-params", "design=single", "--results", str(tmp_path)]
    points = grid.check_inputs(grid.build_parser().parse_args(argv)).points
    assert [p["design"] for p in points] == names
    target = model_params(apply_overrides(mqar_tiny(), points[0]))
    counts = [model_params(apply_overrides(mqar_tiny(), p)) for p in points]
    assert counts[names.index("gated_deltanet")] != model_params(apply_overrides(mqar_tiny(), {"design": "gated_deltanet"}))
    assert all(abs(n - target) <= 0.02 * target for n in counts), counts


def test_a_rerun_of_one_design_is_sized_against_a_reference_it_does_not_run(tmp_path):
    """--space design=gated_deltanet --match-params design=single: the reference is counted, never run, and the
    rerun gets the MLP the full comparison gave it."""
    from ablations import grid
    from recipes.mqar import tiny as mqar_tiny

    def points(*argv):
        return grid.check_inputs(grid.build_parser().parse_args(
            ["--recipe", "mqar", "--seeds", "1", "--results", str(tmp_path), *argv])).points

    alone = points("--space", "design=gated_deltanet", "--match-params", "design=single")
    full = points("--space", "design=single,gated_deltanet", "--match-params", "design=single")
    assert [p["design"] for p in alone] == ["gated_deltanet"]
    assert alone[0][WIDTH] == full[1][WIDTH] != mqar_tiny().model.intermediate_size

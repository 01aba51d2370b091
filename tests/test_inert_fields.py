"""A memory-layer field that means nothing for the chosen design: a SpecError on the layer's own spec,
kept inside a preset's settings, and merged away in a grid's cross product."""

import pytest

from ablations.space import SpaceError, grid_points, parse_space
from memkit import MemoryAttentionSpec, SpecError
from memkit.models.memory_lm import MemoryLMSpec
from recipes import infini_pythia


@pytest.mark.parametrize("fields, name, design, used", [
    ({"num_memories": 1, "landmark": "mean_k"}, "landmark", "one memory", {"num_memories": 2}),
    ({"num_memories": 1, "selection_score": "reports"}, "selection_score", "one memory", {"num_memories": 2}),
    ({"num_memories": 4, "shared_reset": "once"}, "shared_reset", "memory_scope='sequence'",
     {"memory_scope": "batch_shared"}),
    ({"num_memories": 4, "gate_input": "coarse_read_relu"}, "gate_input", "hierarchy='none'", {"hierarchy": "soft"}),
    ({"update": "delta", "write_strategy": "cumulative_sum"}, "write_strategy", "delta", {"update": "linear"}),
])
def test_a_field_the_design_ignores_is_a_spec_error_naming_both(fields, name, design, used):
    with pytest.raises(SpecError) as err:
        MemoryAttentionSpec.create(**fields)
    assert name in str(err.value) and design in str(err.value) and "\n" not in str(err.value)
    MemoryAttentionSpec.create(**{**fields, **used})  # the same value where the design uses it


def test_a_preset_keeps_such_a_field_for_the_designs_a_grid_sets():
    spec = MemoryLMSpec.create(memory=dict(num_memories=1, landmark="learned"))
    assert spec.memory.landmark == "learned"


def test_grid_points_that_differ_only_in_ignored_fields_run_once(capsys):
    space = parse_space(["memories=1,4", "landmark=mean_k,learned"], infini_pythia.SPEC, infini_pythia.ALIASES)
    points = grid_points(infini_pythia.tiny(), space)
    assert [(p["model.memory.num_memories"], p["model.memory.landmark"]) for p in points] == [
        (1, "memory_norm"), (4, "mean_k"), (4, "learned")]
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "1 point(s)" in out[0] and "landmark" in out[0]
    with pytest.raises(SpaceError, match="top_k"):  # wrong in itself, not merely ignored
        grid_points(infini_pythia.tiny(), parse_space(["memories=1", "selection=hard", "top_k=2"],
                                                      infini_pythia.SPEC, infini_pythia.ALIASES))

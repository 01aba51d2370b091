"""--space parsing, typed by the recipe spec."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ablations.space import SpaceError, apply_overrides, grid_points, parse_space
from recipes.infini_pythia import ALIASES, SPEC, tiny


def parse(*items):
    return parse_space(list(items), SPEC, ALIASES)


def test_aliases_dotted_paths_and_types():
    space = parse("memories=1,4,8", "model.memory.update=linear,delta", "lr=1e-3,3e-3", "key_shift=true,false",
                  "memory_layer=none,1")
    assert space == [
        ("memories", "model.memory.num_memories", [1, 4, 8]),
        ("model.memory.update", "model.memory.update", ["linear", "delta"]),
        ("lr", "train.lr", [1e-3, 3e-3]),
        ("key_shift", "model.memory.key_shift", [True, False]),
        ("memory_layer", "model.memory_layer", [None, 1]),
    ]


def test_cross_product_and_overrides_validate():
    points = grid_points(tiny(), parse("memories=1,2", "update=linear,delta"))
    assert len(points) == 4
    spec = apply_overrides(tiny(), points[-1])
    assert spec.model.memory.num_memories == 2 and spec.model.memory.update == "delta"
    # derived: the task's segment length follows the memory's
    assert apply_overrides(tiny(), {"model.memory.segment_len": 4}).task.segment_len == 4


@pytest.mark.parametrize(
    "item, words",
    [
        ("colour=red", ["unknown --space key", "memories"]),
        ("memories", ["expected KEY=V1,V2"]),
        ("memories=", ["empty value"]),
        ("memories=1,,2", ["empty value"]),
        ("memories=four", ["memories", "not an integer"]),
        ("update=sideways", ["update", "linear, delta"]),
        ("lr=fast", ["lr", "not a number"]),
        ("key_shift=maybe", ["key_shift", "bool"]),
        ("memories=1,1", ["repeated"]),
    ],
)
def test_malformed_values_are_one_clear_line(item, words):
    with pytest.raises(SpaceError) as err:
        parse(item)
    assert all(w in str(err.value) for w in words) and "\n" not in str(err.value)


def test_out_of_range_value_is_rejected_before_any_trial():
    with pytest.raises(SpaceError, match="num_memories"):
        grid_points(tiny(), parse("memories=-1,4"))
    with pytest.raises(SpaceError, match="num_heads"):
        grid_points(tiny(), parse("heads=3"))


@given(st.text(alphabet="abc=,1.-xe ", max_size=12))
def test_arbitrary_text_never_crashes_the_parser(text):
    try:
        parse(f"memories={text}")
    except SpaceError:
        pass


def test_family_keys_reach_the_memory_spec():
    space = parse("landmark=memory_norm,mean_k,learned,hsa", "gate=soft,hard", "memories=4,16", "selection=hard",
                  "top_k=2", "write_policy=nearest", "scope=sequence", "selection_query=projection")
    points = grid_points(tiny(), space)
    assert len(points) == 16
    spec = apply_overrides(tiny(), points[-1]).model.memory
    assert (spec.landmark, spec.hierarchy, spec.num_memories, spec.top_k, spec.selection_scope) == ("hsa", "hard", 16, 2, "sequence")
    with pytest.raises(SpaceError, match="top_k"):
        grid_points(tiny(), parse("memories=1", "selection=hard", "top_k=2"))

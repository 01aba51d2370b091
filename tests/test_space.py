"""--space parsing, typed by the recipe spec."""

import math

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


def _joined(*parts):
    """Text joining one draw of each part, in a drawn order."""
    return st.tuples(*parts).flatmap(lambda texts: st.permutations(texts)).map(",".join)


def _plain(number):
    return st.lists(number, min_size=1, max_size=3, unique=True).map(lambda xs: ",".join(map(repr, xs)))


# text that must parse: plain values and every range form together, each in its own region so no value comes twice
# (lr: plain < 0, log in (0, 500], lin in [2000, 4000]; memories: plain < 0, steps in [0, 110], lin in [200, 400])
MUST_PARSE = {
    "lr": _joined(
        _plain(st.floats(-1e6, -1e-3)),
        st.builds(lambda lo, gap, n: f"{lo}:{lo + gap}:lin{n}", st.integers(2000, 3000), st.integers(1, 1000),
                  st.integers(2, 40)),
        st.builds(lambda lo, ratio, n: f"{lo}:{lo * ratio}:LOG{n}", st.sampled_from([1e-6, 3e-4, 0.5]),
                  st.sampled_from([2, 10, 1000]), st.integers(3, 15)),
    ),
    "memories": _joined(
        _plain(st.integers(-10**6, -1)),
        st.builds(lambda lo, span, step: f"{lo}:{lo + span}" + (f":{step}" if step > 1 else ""),
                  st.integers(0, 50), st.integers(0, 60), st.integers(1, 7)),
        st.builds(lambda lo, n, extra: f"{lo}:{lo + 2 * (n - 1) + extra}:lin{n}", st.integers(200, 250),
                  st.integers(2, 10), st.integers(0, 50)),
    ),
}
# text that must not parse: a value twice, an empty value, a range out of its forms
NUMBER = st.integers(1, 999)
MUST_FAIL = {
    "lr": st.one_of(
        NUMBER.map(lambda x: f"{x / 8},{x / 8}"),
        NUMBER.map(lambda x: f"{x},"),
        st.builds(lambda lo, n: f"{lo}:{lo + 1}:lin{n}", NUMBER, st.sampled_from([0, 1, 1001])),
        st.builds(lambda lo: f"{-lo}:{lo}:log3", NUMBER),
        st.builds(lambda lo, step: f"{lo}:{lo + 5}:{step}", NUMBER, st.integers(1, 3)),  # steps are for ints
    ),
    "memories": st.one_of(
        NUMBER.map(lambda x: f"{x},{x}"),
        NUMBER.map(lambda x: f"{x}.5"),
        st.builds(lambda lo: f"{lo}:{lo + 2}:lin5", NUMBER),  # 5 points in 3 integers: repeats
        st.builds(lambda lo: f"{lo + 1}:{lo}", NUMBER),
        st.builds(lambda lo: f"{lo}:{lo + 4}:0", NUMBER),
    ),
}
# anything else: the parser gives values the text says, or one line naming the key
ARBITRARY = st.text(alphabet="0123456789.:-elogin ,x", max_size=16)


def _close(a, b):
    return abs(a - b) <= 1e-5 * max(abs(a), abs(b)) + 1e-300


def _read(part, kind, values):
    """The values ``part`` of a --space list stands for, checked against the front of ``values``; returns how many
    it took. A plain value is Python's own reading of it; a range is checked by its laws (count, ends, spacing)."""
    if ":" not in part:
        assert type(values[0]) is kind and values[0] == kind(part.strip())
        return 1
    lo, hi, *rest = (p.strip().lower() for p in part.split(":"))
    lo, hi = float(lo), float(hi)
    form = rest[0] if rest else "1"
    if form.startswith(("lin", "log")):
        n = int(form[3:])
        block = values[:n]
        assert len(block) == n and all(type(v) is kind for v in block)
        ends = (round(lo), round(hi)) if kind is int else (lo, hi)
        assert _close(block[0], ends[0]) and _close(block[-1], ends[-1])
        steps = [b - a for a, b in zip(block, block[1:])] if form.startswith("lin") else \
            [math.log(b / a) for a, b in zip(block, block[1:])]
        if kind is float:  # evenly spaced (in log for log), up to the 6 significant digits kept
            spread = 2e-5 * (max(abs(lo), abs(hi)) if form.startswith("lin") else 1)
            assert max(steps) - min(steps) <= spread, (part, block)
        else:
            assert all(s > 0 for s in steps) or all(s < 0 for s in steps)
        return n
    step = int(form)
    count = (int(hi) - int(lo)) // step + 1
    block = values[:count]
    assert block[0] == lo and all(b - a == step for a, b in zip(block, block[1:])) and block[-1] <= hi < block[-1] + step
    return count


@given(st.sampled_from(["lr", "memories"]), st.data())
def test_the_parser_reads_what_the_text_says_or_names_the_key(key, data):
    """``lr`` (a float field) and ``memories`` (an int field): lists of plain values and ranges that must parse, text
    that must not, and arbitrary text. What parses is what the text says, with no value twice; what does not is one
    SpaceError line naming the key."""
    kind = data.draw(st.sampled_from(["parses", "fails", "arbitrary"]))
    text = data.draw({"parses": MUST_PARSE, "fails": MUST_FAIL}[kind][key] if kind != "arbitrary" else ARBITRARY)
    try:
        [(_, _, values)] = parse(f"{key}={text}")
    except SpaceError as err:
        assert kind != "parses", (text, err)
        assert "\n" not in str(err) and key in str(err)
        return
    assert kind != "fails", (text, values)
    assert len(set(map(repr, values))) == len(values)
    kind = int if key == "memories" else float
    taken = 0
    for part in text.split(","):
        taken += _read(part, kind, values[taken:])
    assert taken == len(values)


def test_family_keys_reach_the_memory_spec():
    space = parse("landmark=memory_norm,mean_k,learned,hsa", "gate=soft,hard", "memories=4,16", "selection=hard",
                  "top_k=2", "write_policy=nearest", "scope=sequence", "selection_query=projection")
    points = grid_points(tiny(), space)
    assert len(points) == 16
    spec = apply_overrides(tiny(), points[-1]).model.memory
    assert (spec.landmark, spec.hierarchy, spec.num_memories, spec.top_k, spec.selection_scope) == ("hsa", "hard", 16, 2, "sequence")
    with pytest.raises(SpaceError, match="top_k"):
        grid_points(tiny(), parse("memories=1", "selection=hard", "top_k=2"))


def test_an_optional_parts_fields_are_keys_and_setting_one_switches_it_on():
    """report 004's recall run is an optional part (``RecallTask | None``): its fields are --space keys, typed, and
    a preset with the part off gets it back, at its defaults but for the field set."""
    from recipes import report_context_kv as r

    space = parse_space(["recall.num_train=16,32"], r.SPEC, r.ALIASES)
    assert space == [("recall.num_train", "recall.num_train", [16, 32])]
    [small, _] = grid_points(r.tiny(), space)
    assert apply_overrides(r.tiny(), small).recall.num_train == 16
    off = r.tiny().with_overrides(recall=None)
    assert apply_overrides(off, {"recall.num_train": 16}).recall.num_train == 16
    with pytest.raises(SpaceError, match="recall.num_train"):
        parse_space(["recall.num_train=abc"], r.SPEC, r.ALIASES)
    assert parse_space(["recall=none"], r.SPEC, r.ALIASES) == [("recall", "recall", [None])]  # still switched off

"""``--space KEY=V1,V2,...`` parsing, typed by the recipe's spec; no Ray here.

A key is a recipe alias (``memories``) or a dotted path into the spec
(``model.memory.num_memories``). Values are parsed by the field's type (int, float, bool,
enum, optional) and every grid point is validated by the spec before any trial starts.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from ablations.inert import distinct_points
from memkit.spec import Spec, SpecError


class SpaceError(ValueError):
    """A user's --space is wrong; the message is one line naming the key and what is allowed."""


@dataclass(frozen=True)
class Field_:
    path: str
    annotation: Any
    default: Any


def leaf_fields(spec_cls: type[BaseModel], prefix: str = "") -> dict[str, Field_]:
    """Every settable leaf of a spec: dotted path -> field info (nested specs are walked)."""
    out = {}
    for name, info in spec_cls.model_fields.items():
        ann = _optional_model(info.annotation) or info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out.update(leaf_fields(ann, f"{prefix}{name}."))
            if ann is not info.annotation:  # the optional part itself stays a key: recall=none switches it off
                out[f"{prefix}{name}"] = Field_(f"{prefix}{name}", info.annotation, info.get_default(
                    call_default_factory=True))
        else:
            default = info.get_default(call_default_factory=True)
            out[f"{prefix}{name}"] = Field_(f"{prefix}{name}", ann, default)
    return out


def _optional_model(ann: Any) -> type[BaseModel] | None:
    """The spec of an optional nested spec (``RecallTask | None``: a recipe's part that can be switched off), so that
    its fields are keys like any nested spec's."""
    if typing.get_origin(ann) not in (typing.Union, types.UnionType):
        return None
    models = [a for a in typing.get_args(ann) if isinstance(a, type) and issubclass(a, BaseModel)]
    rest = [a for a in typing.get_args(ann) if a is not type(None) and a not in models]
    return models[0] if len(models) == 1 and not rest else None


def type_name(ann: Any) -> str:
    origin = typing.get_origin(ann)
    if origin is Literal:
        return "|".join(str(a) for a in typing.get_args(ann))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(ann))
    return "none" if ann is type(None) else getattr(ann, "__name__", str(ann))


def parse_value(text: str, ann: Any, key: str) -> Any:
    """Parse one value by the field's annotation; SpaceError names the key and what is allowed."""
    text = text.strip()
    origin = typing.get_origin(ann)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(ann)
        if type(None) in args and text.lower() in ("none", "null"):
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return parse_value(text, a, key)
            except SpaceError as e:
                errors.append(str(e))
        raise SpaceError(f"{key}: {text!r} is not a {type_name(ann)}")
    if origin is Literal:
        choices = typing.get_args(ann)
        for c in choices:
            if str(c) == text:
                return c
        raise SpaceError(f"{key}: {text!r} is not allowed; choose from {', '.join(map(str, choices))}")
    if ann is bool:
        low = text.lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise SpaceError(f"{key}: {text!r} is not a bool (true/false)")
    if ann is int:
        try:
            return int(text)
        except ValueError:
            raise SpaceError(f"{key}: {text!r} is not an integer") from None
    if ann is float:
        try:
            return float(text)
        except ValueError:
            raise SpaceError(f"{key}: {text!r} is not a number") from None
    if ann is str:
        return text
    raise SpaceError(f"{key}: fields of type {type_name(ann)} cannot be set from the command line")


def _numeric(ann: Any) -> type | None:
    """int or float when the field takes one (optional allowed), else None."""
    args = typing.get_args(ann) if typing.get_origin(ann) in (typing.Union, types.UnionType) else (ann,)
    for t in (int, float):
        if t in args:
            return t
    return None


def expand_range(text: str, ann: Any, key: str) -> list:
    """START:STOP:logN or START:STOP:linN (N points, both ends included); for ints also
    START:STOP (step 1) and START:STOP:STEP."""
    kind = _numeric(ann)
    if kind is None:
        raise SpaceError(f"{key}: ranges need a number field; {key} is {type_name(ann)}")
    parts = text.split(":")
    form = f"{key}: range {text!r} must be START:STOP:logN, START:STOP:linN" + (" or START:STOP[:STEP]" if kind is int else "")
    if len(parts) not in (2, 3):
        raise SpaceError(form)
    try:
        lo, hi = float(parts[0]), float(parts[1])
    except ValueError:
        raise SpaceError(form) from None
    spec = parts[2].strip().lower() if len(parts) == 3 else "1"
    if spec.startswith(("log", "lin")):
        try:
            n = int(spec[3:])
        except ValueError:
            raise SpaceError(form) from None
        if n < 2 or n > 1000:
            raise SpaceError(f"{key}: range {text!r} needs 2..1000 points")
        if spec.startswith("log"):
            if lo <= 0 or hi <= 0:
                raise SpaceError(f"{key}: log range {text!r} needs positive ends")
            vals = [lo * (hi / lo) ** (i / (n - 1)) for i in range(n)]
        else:
            vals = [lo + (hi - lo) * i / (n - 1) for i in range(n)]
    else:
        if kind is not int:
            raise SpaceError(form)
        try:
            step = int(spec)
        except ValueError:
            raise SpaceError(form) from None
        if step <= 0 or lo != int(lo) or hi != int(hi) or hi < lo or (hi - lo) / step > 1000:
            raise SpaceError(f"{key}: range {text!r} needs integer ends, STOP >= START and a positive step")
        vals = list(range(int(lo), int(hi) + 1, step))
    if kind is int:
        vals = [int(round(v)) for v in vals]
        if len(set(vals)) != len(vals):
            raise SpaceError(f"{key}: range {text!r} gives repeated integers; use fewer points")
    else:
        vals = [float(f"{v:.6g}") for v in vals]
    return vals


def resolve_key(key: str, fields: dict[str, Field_], aliases: dict[str, str]) -> str:
    if key in aliases:
        return aliases[key]
    if key in fields:
        return key
    known = sorted(aliases) + ["<dotted path, see --list-keys>"]
    raise SpaceError(f"unknown --space key {key!r}; allowed: {', '.join(known)}")


def parse_space(items: list[str], spec_cls: type[Spec], aliases: dict[str, str]) -> list[tuple[str, str, list]]:
    """['memories=1,4,8', ...] -> [(key as typed, dotted path, [typed values]), ...]."""
    fields = leaf_fields(spec_cls)
    out, seen = [], set()
    for item in items:
        if "=" not in item:
            raise SpaceError(f"--space {item!r}: expected KEY=V1,V2,... (e.g. memories=1,4,8)")
        key, _, raw = item.partition("=")
        key = key.strip()
        path = resolve_key(key, fields, aliases)
        if path in seen:
            raise SpaceError(f"--space {key}: given twice; put all its values in one flag")
        seen.add(path)
        parts = [p for p in raw.split(",")]
        if not raw.strip() or any(not p.strip() for p in parts):
            raise SpaceError(f"--space {key}: empty value in {raw!r}; expected V1,V2,...")
        ann = fields[path].annotation
        values = [v for p in parts for v in (expand_range(p, ann, key) if ":" in p else [parse_value(p, ann, key)])]
        if len(set(map(repr, values))) != len(values):
            raise SpaceError(f"--space {key}: repeated value in {raw!r}")
        out.append((key, path, values))
    return out


def set_path(data: dict, path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for p in parents:
        if data.get(p) is None:  # a part switched off (None) is switched on by setting one of its fields
            data[p] = {}
        data = data[p]
    data[leaf] = value


def apply_overrides(base: Spec, overrides: dict[str, Any]) -> Spec:
    """A new spec: ``base`` with dotted-path ``overrides``, validated as a whole."""
    data = base.model_dump()
    for path, value in overrides.items():
        set_path(data, path, value)
    return type(base).create(**data)


def grid_points(base: Spec, space: list[tuple[str, str, list]]) -> list[dict[str, Any]]:
    """Cross product of the space as [{dotted path: value}], each validated against the spec."""
    points, merged = distinct_points(space, lambda point: apply_overrides(base, point))  # inert fields: once
    if merged:
        print(merged)
    keys = {p: k for k, p, _ in space}
    for point in points:
        try:
            apply_overrides(base, point)
        except SpecError as e:
            shown = ",".join(f"{keys[p]}={v}" for p, v in point.items())
            raise SpaceError(f"grid point {shown} is not a valid spec: {e}") from None
    return points or [{}]


def search_space(items: list[str], spec_cls: type[Spec], aliases: dict[str, str], base: Spec) -> dict[str, Any]:
    """For a sampled search (``--search optuna``): {dotted path: a Ray Tune domain, or a fixed value}.

    A range samples its interval: ``START:STOP:logN`` log-uniformly, ``START:STOP:linN`` uniformly (N is
    ignored), integer ``START:STOP[:STEP]`` over its steps; several values are a choice among them; one
    value is fixed. Every range's ends and every listed value are validated by the spec here."""
    from ray import tune

    fields = leaf_fields(spec_cls)
    out: dict[str, Any] = {}
    for key, path, values in parse_space(items, spec_cls, aliases):
        raw = next(item.partition("=")[2] for item in items if item.partition("=")[0].strip() == key)
        grid_points(base, [(key, path, values)])  # every value (a range's included) makes a valid spec
        if ":" not in raw or "," in raw:
            out[path] = tune.choice(values) if len(values) > 1 else values[0]
            continue
        kind = _numeric(fields[path].annotation)
        lo, hi, *rest = raw.split(":")
        how = rest[0].strip().lower() if rest else "1"
        lo, hi = kind(float(lo)), kind(float(hi))
        if how.startswith("log"):
            out[path] = tune.loguniform(lo, hi) if kind is float else tune.lograndint(lo, hi + 1)
        elif how.startswith("lin"):
            out[path] = tune.uniform(lo, hi) if kind is float else tune.randint(lo, hi + 1)
        else:
            out[path] = tune.qrandint(lo, hi, int(how))
    return out

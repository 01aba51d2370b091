"""Base class for specs: the one place a block's settings live.

A spec is a frozen pydantic model that validates its fields and builds its block from
flat keyword arguments (the block itself never sees pydantic). Overrides re-validate
through ``Spec.with_overrides`` instead of ``model_copy(update=...)``, which skips
validation.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

from memkit.errors import SpecError


class _OneLineErrors(type(BaseModel)):
    """``SomeSpec(...)`` raises the one-line ``SpecError`` that ``SomeSpec.create(...)`` does, not pydantic's
    multi-line ``ValidationError``. Only a direct call goes through here: nested specs built from dicts do not,
    so a nested field's error keeps its dotted path in the outer spec's line."""

    def __call__(cls, *args, **fields):
        try:
            return super().__call__(*args, **fields)
        except ValidationError as err:
            raise SpecError(describe_validation_error(err, cls.__name__, cls)) from None


def _takes_bool(annotation: Any) -> bool:
    """Whether a field's annotation admits bools (pydantic would otherwise read True as 1 in a number field)."""
    if annotation is bool or annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return any(isinstance(a, bool) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return any(_takes_bool(a) for a in typing.get_args(annotation))
    return annotation not in (int, float)


class Spec(BaseModel, metaclass=_OneLineErrors):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # num_memories=True would become 1 in silence
        if isinstance(value, bool) and not _takes_bool(cls.model_fields[info.field_name].annotation):
            raise ValueError("give a number, not true/false")
        return value

    @classmethod
    def create(cls, **fields: Any):
        """Validate ``fields`` and return the spec, raising ``SpecError`` with a one-line message."""
        try:
            return cls.model_validate(fields)
        except ValidationError as err:
            raise SpecError(describe_validation_error(err, cls.__name__, cls)) from None

    def with_overrides(self, **fields: Any):
        """A copy with ``fields`` replaced, validated again (nested specs accept dicts)."""
        data = self.model_dump()
        data.update(fields)
        return type(self).create(**data)


def _model_at(model: type | None, path: tuple) -> type | None:
    """The pydantic model class that holds the last key of ``path`` (None when it cannot be told)."""
    for key in path[:-1]:
        field = getattr(model, "model_fields", {}).get(key)
        model = field.annotation if field is not None else None
    return model if hasattr(model, "model_fields") else None


def describe_validation_error(err: ValidationError, owner: str = "", model: type | None = None) -> str:
    """One line per problem: ``field: what is wrong (got value)``; an unknown field lists the known ones."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or owner
        msg = e["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        holder = _model_at(model, e["loc"]) if e["type"] == "extra_forbidden" else None
        if holder is not None:
            msg = f"not a field of {holder.__name__}; its fields: {', '.join(holder.model_fields)}"
        got = e.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"{loc}: {msg}{shown}")
    return "; ".join(lines)


def check_heads(hidden_size: int, num_heads: int) -> None:
    """For spec validators: the width must split evenly into heads."""
    if hidden_size % num_heads:
        raise ValueError(f"hidden_size ({hidden_size}) must be divisible by num_heads ({num_heads})")

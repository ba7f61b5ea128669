"""A bad value for every choice and bound a params.yaml field declares, read from the
declarations themselves (steps/stage/config.py), so a new field or bound is tried through every
door (params.yaml, a stage's flags, `main --check`) without a line written here. A kind of
declaration this module cannot break fails
`test_every_declaration_kind_has_a_bad_value_and_every_constrained_field_is_tried` until it
learns how."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Annotated, Any, Literal

from steps.stage.coercion import mapping_text
from steps.stage.config import Params
from steps.stage.schema import NonEmpty, Pattern, Range, Span, allowed, flat_fields, section_fields


@dataclasses.dataclass(frozen=True)
class Case:
    section: str
    key: str  # a flat key of the section (`analysis.window`)
    typ: Any
    value: Any  # typed as the field holds it (a tuple for a list)

    @property
    def id(self) -> str:
        return f"{self.section}.{self.key}={self.text}"

    @property
    def text(self) -> str:
        """The value as typed on a command line or after `-P key=`."""
        return command_line(self.value)

    @property
    def yaml(self) -> Any:
        return list(self.value) if isinstance(self.value, tuple) else self.value


def command_line(value: Any) -> str:
    if isinstance(value, dict):  # tune.grid
        return mapping_text(value)
    if isinstance(value, tuple):
        return ",".join(map(command_line, value))
    if isinstance(value, bool):
        return str(value).lower()
    return "null" if value is None else str(value)


def _range(mark: Range, base: Any) -> list[Any]:
    edges = [
        mark.ge - 1 if mark.ge is not None else None,
        mark.gt,
        mark.le + 1 if mark.le is not None else None,
        mark.lt,
    ]
    return [base(edge) for edge in edges if edge is not None]


def _non_empty(mark: NonEmpty, base: Any) -> list[Any]:
    empty = {tuple: (), dict: {}}
    return [empty.get(typing.get_origin(base), "")]


def _pattern(mark: Pattern, base: Any) -> list[Any]:
    return ["!"]  # no pattern here accepts a lone "!" (the test of each field checks it)


def _span(mark: Span, base: Any) -> list[Any]:
    return [(mark.ge + 1, mark.ge), (mark.ge - 1, mark.ge)]


# How to break each kind of mark a field may carry in Annotated[..., mark].
BREAKERS = {Range: _range, NonEmpty: _non_empty, Pattern: _pattern, Span: _span}


def bad_values(typ: Any) -> list[Any]:
    """Values of the field's type that its choices or bounds refuse."""
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin is Annotated:
        found = bad_values(args[0])
        for mark in typ.__metadata__:
            found += BREAKERS[type(mark)](mark, args[0])
        return found
    if origin is Literal:
        return [f"{args[0]}x"]
    if origin in (typing.Union, types.UnionType):
        return [v for option in args if option is not type(None) for v in bad_values(option)]
    if origin is tuple and args[-1:] == (Ellipsis,):
        return [(v,) for v in bad_values(args[0])]
    return []


def constrained_fields() -> list[tuple[str, str, Any]]:
    """(section, flat key, declared type) of every field that declares what it accepts."""
    return [
        (section, key, typ)
        for section, cls in section_fields(Params).items()
        for key, typ in flat_fields(cls).items()
        if allowed(typ)
    ]


def cases(sections: tuple[str, ...] | None = None) -> list[Case]:
    """Every bad value of every constrained field (of `sections`, default all)."""
    return [
        Case(section, key, typ, value)
        for section, key, typ in constrained_fields()
        if sections is None or section in sections
        for value in bad_values(typ)
    ]


def wrongly_typed() -> list[Case]:
    """For every field that is not free text, a value of the wrong type, as command-line text."""
    found = []
    for section, cls in section_fields(Params).items():
        for key, typ in flat_fields(cls).items():
            text = _wrong_text(typ)
            if text is not None:
                found.append(Case(section, key, typ, text))
    return found


def _wrong_text(typ: Any) -> str | None:
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin is Annotated:
        return _wrong_text(args[0])
    if origin in (typing.Union, types.UnionType):
        return next((t for o in args if (t := _wrong_text(o)) is not None), None)
    if origin is tuple:
        inner = _wrong_text(args[0])
        return None if inner is None else f"{inner},{inner}"
    return {int: "1.5", float: "lots", bool: "maybe"}.get(typ)

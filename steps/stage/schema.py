"""How a params.yaml field declares what it accepts, and how the declarations are read.

A field of a config dataclass (steps/stage/config.py) declares its type and, where only some
values make sense, which ones: `Literal[...]` for a closed set of words, `Annotated[<type>,
Range(...)]` for bounds (also `Pattern`, `NonEmpty`, `Span`); rules across fields are the
section's `conflicts()`. `allowed` says what a declaration accepts in words (for `--help` and
errors), `refusal` why a value is refused. Every door checks each value as it reads it
(steps/stage/coercion.py), and a `Section` checks again whenever it is built, so
`dataclasses.replace` in code cannot make a bad one either.

Hand-written rather than pydantic: values arrive as command-line text (`1,3`, `yes`, `null`) and
every problem must read as one line naming the params.yaml key and the door it came through.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import itertools
import re
import textwrap
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from steps.stage.errors import ConfigError

# --- what a field may declare -------------------------------------------------------------------


@dataclass(frozen=True)
class Range:
    """Bounds of a number (the names of annotated-types): ge/gt the lower, le/lt the upper."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def allows(self, value: Any) -> bool:
        return (
            (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
        )

    def __str__(self) -> str:
        if self.ge is not None and self.le is not None:
            return f"between {_number(self.ge)} and {_number(self.le)}"
        low = (
            f"at least {_number(self.ge)}" if self.ge is not None
            else f"over {_number(self.gt)}" if self.gt is not None else ""
        )  # fmt: skip
        high = (
            f"at most {_number(self.le)}" if self.le is not None
            else f"under {_number(self.lt)}" if self.lt is not None else ""
        )  # fmt: skip
        return " and ".join(part for part in (low, high) if part)


@dataclass(frozen=True)
class Pattern:
    """A string that matches `regex` in full; `meaning` says so in words."""

    regex: str
    meaning: str

    def allows(self, value: Any) -> bool:
        return re.fullmatch(self.regex, value) is not None

    def __str__(self) -> str:
        return self.meaning


@dataclass(frozen=True)
class NonEmpty:
    """A string or list with something in it."""

    def allows(self, value: Any) -> bool:
        return len(value) > 0

    def __str__(self) -> str:
        return "non-empty"


@dataclass(frozen=True)
class Span:
    """A (low, high) pair with `ge` <= low <= high, such as an n-gram size range."""

    ge: int

    def allows(self, value: Any) -> bool:
        low, high = value
        return self.ge <= low <= high

    def __str__(self) -> str:
        return f"low,high with {self.ge} <= low <= high"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def allows(value: Any, typ: Any) -> bool:
    """Whether a value of the declared type also holds to the declaration's choices and bounds."""
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin is Annotated:
        return allows(value, args[0]) and all(_holds(mark, value) for mark in typ.__metadata__)
    if origin is Literal:
        return value in args
    if origin in (typing.Union, types.UnionType):
        return any(value is None if o is type(None) else allows(value, o) for o in args)
    if origin is tuple and isinstance(value, (tuple, list)):
        items = args[:1] * len(value) if args[-1:] == (Ellipsis,) else args
        return len(items) == len(value) and all(map(allows, value, items))
    return True


def _holds(mark: Any, value: Any) -> bool:
    try:
        return bool(mark.allows(value))
    except (TypeError, ValueError):  # a value of another type (dataclasses.replace in code)
        return False


def allowed(typ: Any) -> str:
    """What a declaration accepts, in words ("" = any value of its type): for --help and errors."""
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin is Annotated:
        return ", ".join(p for p in (allowed(args[0]), *map(str, typ.__metadata__)) if p)
    if origin is Literal:
        return _either(map(str, args))
    if origin in (typing.Union, types.UnionType):
        rest = " or ".join(d for o in args if o is not type(None) and (d := allowed(o)))
        return f"null or {rest}" if rest and type(None) in args else rest
    if origin is tuple and args[-1:] == (Ellipsis,) and (item := allowed(args[0])):
        return f"a list of {item}"
    return ""


def refusal(value: Any, typ: Any) -> str | None:
    """What is wrong with a field's value (`must be <allowed>, got <value>`), or None."""
    return None if allows(value, typ) else f"must be {allowed(typ)}, got {value!r}"


def _either(words: Iterable[str]) -> str:
    words = list(words)
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


class Invalid(ConfigError):
    """Fields of a section that hold values their declarations refuse: field -> what is wrong."""

    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__("; ".join(f"{field} {why}" for field, why in problems.items()))
        self.problems = problems


class Section:
    """Base of every params.yaml section: an instance never holds a value its declaration
    refuses, however it was built."""

    def __post_init__(self) -> None:
        problems = {
            name: why
            for name, typ in hints(type(self)).items()
            if (why := refusal(getattr(self, name), typ))
        }
        if not problems:  # rules across fields only between values that are each fine
            problems = self.conflicts()
        if problems:
            raise Invalid(problems)

    def conflicts(self) -> dict[str, str]:
        """Rules across fields: field -> what is wrong with it given the others ({} = none)."""
        return {}


# --- reading the declarations -------------------------------------------------------------------


@functools.cache
def hints(cls: type) -> dict[str, Any]:
    """Field name -> declared type, with its choices and bounds (Annotated kept)."""
    return typing.get_type_hints(cls, include_extras=True)


def section_fields(cls: type) -> dict[str, Any]:
    """Field name -> declared type of a config class (a nested section's type is its class)."""
    return hints(cls)


def flat_fields(cls: type, prefix: str = "") -> dict[str, Any]:
    """Every settable key of a config class -> its declared type, a nested section's fields
    named with dots (`spark.master`): the flags of a stage's command line."""
    fields: dict[str, Any] = {}
    for name, typ in hints(cls).items():
        if dataclasses.is_dataclass(typ):
            fields.update(flat_fields(typ, f"{prefix}{name}."))
        else:
            fields[prefix + name] = typ
    return fields


def flat_docs(cls: type, prefix: str = "") -> dict[str, str]:
    """`flat_fields`' keys -> their docstrings."""
    docs: dict[str, str] = {}
    for name, typ in hints(cls).items():
        if dataclasses.is_dataclass(typ):
            docs.update(flat_docs(typ, f"{prefix}{name}."))
        else:
            docs[prefix + name] = field_docs(cls)[name]
    return docs


def flat_value(cfg: Any, key: str) -> Any:
    """The value of a `flat_fields` key (`spark.master`) in a config."""
    for name in key.split("."):
        cfg = getattr(cfg, name)
    return cfg


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Field name -> its docstring (the string literal under the field), for `--help`."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    docs = {}
    for field, doc in itertools.pairwise(body):
        if (
            isinstance(field, ast.AnnAssign)
            and isinstance(field.target, ast.Name)
            and isinstance(doc, ast.Expr)
            and isinstance(doc.value, ast.Constant)
            and isinstance(doc.value.value, str)
        ):
            docs[field.target.id] = " ".join(doc.value.value.split())
    return docs

"""Values into config sections through every door, coerced to each field's declared type and
held to its choices and bounds (steps/stage/schema.py): params.yaml (`load`, also what `dvc exp
run -S` reaches), and command-line text from a stage's flags, `mlflow run -P` and `main` alike
(`override`). Whatever is wrong is one ConfigError line after the door's name, naming every bad
key, its value and what is allowed; an unknown key lists the known keys of its section and
suggests the closest one.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml

from steps.stage.errors import ConfigError, one_line
from steps.stage.schema import Invalid, flat_fields, hints, refusal

T = TypeVar("T")

# How true/false may be written on the command line and in `mlflow run -P`.
BOOL_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
NULL_WORDS = ("", "none", "null")  # how null may be written on the command line
# A mapping of keys to lists of values on the command line (tune.grid): `C=10|30;min_df=2|3`.
# Neither `;` nor `|` occurs in a value of any list-valued key, and both pass unchanged through
# `mlflow run -P` (which quotes each value) and make's P="grid=..." (which splits on spaces).
PAIR_SEPARATOR, VALUE_SEPARATOR = ";", "|"


def unknown_key(what: str, key: str, known: Iterable[str], section: str = "") -> str:
    """`unknown <what> 'key' (did you mean 'x'? known[ under <section>]: a, b, ...)`; the closest
    known key is looked for by the whole key, then by its last dotted part."""
    known = sorted(known)
    close = [
        match
        for probe in (key, key.rpartition(".")[2])
        for match in difflib.get_close_matches(probe, known, n=1)
    ]
    hint = f"did you mean {close[0]!r}? " if close else ""
    under = f" under {section}" if section else ""
    return f"unknown {what} {key!r} ({hint}known{under}: {', '.join(known)})"


def mapping_text(mapping: dict[str, tuple[Any, ...]]) -> str:
    """A mapping of keys to lists of values as the command line writes it (`C=10|30;min_df=3`)."""
    return PAIR_SEPARATOR.join(
        f"{key}={VALUE_SEPARATOR.join(map(value_text, values))}" for key, values in mapping.items()
    )


def value_text(value: Any) -> str:
    """One value as the command line writes it: null, true/false, a list as a,b."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, list)):
        return ",".join(map(value_text, value))
    return str(value)


def checked(value: Any, typ: Any) -> Any:
    """A YAML value, or command-line text, as a field of type `typ`, held to its choices and
    bounds; ValueError(`must be <allowed>, got <value>`) when refused."""
    try:
        return _field_value(value, typ, from_text=isinstance(value, str))
    except _Refused as refused:
        raise ValueError(str(refused)) from None


def _mapping_from_text(text: str) -> dict[str, tuple[str, ...]]:
    """`C=10|30;min_df=3` (pairs also apart by spaces) -> {"C": ("10", "30"), "min_df": ("3",)}."""
    mapping: dict[str, tuple[str, ...]] = {}
    for pair in text.replace(PAIR_SEPARATOR, " ").split():
        key, equals, values = pair.partition("=")
        if not equals or not key:
            raise _WrongType(
                f"name=value{VALUE_SEPARATOR}value pairs apart by {PAIR_SEPARATOR!r}"
                f" (C=10{VALUE_SEPARATOR}30{PAIR_SEPARATOR}min_df=2{VALUE_SEPARATOR}3)"
            )
        mapping[key] = tuple(values.split(VALUE_SEPARATOR)) if values else ()
    return mapping


def load(cls: type[T], path: str | Path) -> T:
    """Read and check a YAML file of `cls`' sections; raise ConfigError naming the bad key(s)
    and the file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: parameters file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({one_line(exc)})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of stage sections at the top level")
    problems: list[str] = []
    built = _build(cls, raw, path, "", problems)
    if built is None:
        raise ConfigError(f"{path}: {'; '.join(problems)}")
    return built


def override(cfg: T, values: dict[str, Any], origin: str = "command line") -> T:
    """Return a copy of a stage config with some fields replaced, coerced to their declared types
    and held to their choices and bounds (ConfigError naming every bad one, after `origin`).

    Values may be strings (as they arrive from argparse or `mlflow run -P`) or already typed. A
    field of a nested section is named with dots (`spark.master`).
    """
    problems: list[str] = []
    changed = _override(cfg, values, origin, "", problems)
    if problems:
        raise ConfigError(f"{origin}: {'; '.join(problems)}")
    return changed


def _override(cfg: T, values: dict[str, Any], origin: str, prefix: str, problems: list[str]) -> T:
    if not values:
        return cfg
    declared = hints(type(cfg))
    changes: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        head, dot, rest = key.partition(".")
        if head not in declared or bool(dot) != dataclasses.is_dataclass(declared[head]):
            known = [prefix + name for name in flat_fields(type(cfg))]
            raise ConfigError(f"{origin}: {unknown_key('parameter', prefix + key, known)}")
        if dot:
            nested.setdefault(head, {})[rest] = value
            continue
        try:
            changes[key] = _field_value(value, declared[key], from_text=isinstance(value, str))
        except _Refused as refused:
            problems.append(f"{prefix}{key} {refused}")
    for head, inner in nested.items():
        changes[head] = _override(getattr(cfg, head), inner, origin, f"{prefix}{head}.", problems)
    if problems:
        return cfg
    changed = _construct(lambda: dataclasses.replace(cfg, **changes), prefix, problems)
    return cfg if changed is None else changed


def _build(cls: type[T], raw: dict, path: Path, prefix: str, problems: list[str]) -> T | None:
    """An instance of `cls` from its YAML mapping, or None with `problems` saying why."""
    declared = hints(cls)
    unknown = sorted(set(raw) - set(declared))
    if unknown:
        section = prefix.rstrip(".") or "top level"
        message = unknown_key("key", f"{prefix}{unknown[0]}", declared, section)
        raise ConfigError(f"{path}: {message}")
    missing = sorted(set(declared) - set(raw))
    if missing:
        raise ConfigError(f"{path}: missing key '{prefix}{missing[0]}'")
    before = len(problems)
    values = {}
    for name, typ in declared.items():
        key = f"{prefix}{name}"
        if dataclasses.is_dataclass(typ):
            if isinstance(raw[name], dict):
                values[name] = _build(typ, raw[name], path, f"{key}.", problems)
            else:
                problems.append(f"{key} must be a mapping, got {raw[name]!r}")
            continue
        try:
            values[name] = _field_value(raw[name], typ, from_text=False)
        except _Refused as refused:
            problems.append(f"{key} {refused}")
    if len(problems) > before:
        return None  # what is wrong is in `problems` already
    return _construct(lambda: cls(**values), prefix, problems)


def _construct(make: Callable[[], T], prefix: str, problems: list[str]) -> T | None:
    """`make()`, or None with the section's refusals (its conflicts) added to `problems`."""
    try:
        return make()
    except Invalid as invalid:
        problems.extend(f"{prefix}{field} {why}" for field, why in invalid.problems.items())
        return None


class _Refused(Exception):
    """`must be <what>, got <value>`: a value its field refuses (type, choice or bound)."""


class _WrongType(Exception):
    """A value that is not of its field's type; the message says what the type is, in words."""


def _field_value(value: Any, typ: Any, *, from_text: bool) -> Any:
    """A YAML value (checked) or command-line text (converted) as its field's type, held to its
    choices and bounds; _Refused says why not."""
    try:
        typed = _coerce(value, typ, from_text=from_text)
    except _WrongType as wrong:
        raise _Refused(f"must be {wrong}, got {value!r}") from None
    if why := refusal(typed, typ):
        raise _Refused(why)
    return typed


def _coerce(value: Any, typ: Any, *, from_text: bool) -> Any:
    """Check (YAML) or convert (command-line text) one value to its declared type (choices and
    bounds are `refusal`'s)."""
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin is Annotated:
        return _coerce(value, args[0], from_text=from_text)
    if typ is Any:  # held to what it stands for by its section (tune.grid's values: TuneConfig)
        return value
    if origin is dict:
        mapping = _mapping_from_text(value) if from_text else value
        shape = "a mapping of keys to lists of values"
        if not isinstance(mapping, dict) or not all(isinstance(k, str) for k in mapping):
            raise _WrongType(shape)
        try:
            return {k: _coerce(v, args[1], from_text=False) for k, v in mapping.items()}
        except _WrongType:
            raise _WrongType(f"{shape} (one value: [value])") from None
    if origin is Literal:
        if isinstance(value, str):
            return value
        raise _WrongType("a string (quote it in YAML)")
    if origin in (typing.Union, types.UnionType):
        is_null = value is None or (from_text and value.lower() in NULL_WORDS)
        if is_null and type(None) in args:
            return None
        wrong = []
        for option in args:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, from_text=from_text)
            except _WrongType as exc:
                wrong.append(str(exc))
        raise _WrongType(" or ".join(["null"] * (type(None) in args) + wrong))
    if origin is tuple:
        items = (value.split(",") if value else []) if from_text else value  # "" = an empty list
        if not isinstance(items, (list, tuple)):
            raise _WrongType("a list")
        shape = "a list" if args[-1:] == (Ellipsis,) else f"a list of {len(args)} values"
        if args[-1:] == (Ellipsis,):
            args = args[:1] * len(items)
        elif len(items) != len(args):
            raise _WrongType(shape)
        try:
            return tuple(
                _coerce(v, t, from_text=from_text) for v, t in zip(items, args, strict=True)
            )
        except _WrongType as exc:
            raise _WrongType(f"{shape}, each {exc}") from None
    if typ is bool:
        if isinstance(value, bool):
            return value
        if from_text and value.lower() in BOOL_WORDS:
            return BOOL_WORDS[value.lower()]
        raise _WrongType("true or false")
    if typ in (int, float):
        expected = "a whole number" if typ is int else "a number"
        accepted = int if typ is int else (int, float)  # YAML's 1 is a fine float, 1.5 no int
        if from_text:
            try:
                return typ(value)
            except ValueError:
                raise _WrongType(expected) from None
        if isinstance(value, accepted) and not isinstance(value, bool):
            return typ(value)
        raise _WrongType(expected)
    if typ is str:
        if isinstance(value, str):
            return value
        raise _WrongType("a string (quote it in YAML)")
    raise TypeError(f"unsupported config type {typ!r}")

"""params.yaml -> frozen dataclasses, one per stage.

params.yaml is the single source of truth for every knob. Each top-level section maps to one
frozen dataclass below; an unknown key, a missing key or a value of the wrong type is a
`ConfigError` naming the key and the file, so a typo fails at once instead of silently using a
default. CLI flags and `mlflow run -P key=value` go through the same coercion (`override`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from steps.errors import ConfigError
from steps.paths import PARAMS_FILE


@dataclass(frozen=True)
class IngestConfig:
    """Where the reviews come from and how a missing test split is made."""

    source: str
    sha256: str  # expected checksum of an https download; "" skips the check
    test_size: float  # fraction held out when the source has no test split
    seed: int
    s3_endpoint_url: str  # S3-compatible endpoint; "" = AWS (or AWS_ENDPOINT_URL)
    sql_query: str
    sql_password_env: str  # name of the environment variable that holds the SQL password
    sql_driver: str  # ODBC driver used for mssql:// sources


@dataclass(frozen=True)
class ValidateConfig:
    """Bounds for the Great Expectations suite (the suite JSON refers to them by name)."""

    suite: str
    min_rows: int
    min_review_chars: int
    max_review_chars: int
    min_class_fraction: float
    max_duplicate_fraction: float
    max_overlap_fraction: float


@dataclass(frozen=True)
class RegisterConfig:
    """The Model Registry entry every stage after training refers to."""

    model_name: str


@dataclass(frozen=True)
class Params:
    """Every section of params.yaml."""

    ingest: IngestConfig
    validate: ValidateConfig
    register: RegisterConfig


T = TypeVar("T")


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    """Read and check params.yaml; raise ConfigError naming the bad key and the file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: parameters file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({_one_line(exc)})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of stage sections at the top level")
    return _build(Params, raw, path, prefix="")


def override(cfg: T, values: dict[str, Any], origin: str = "command line") -> T:
    """Return a copy of a stage config with some fields replaced, coerced to their declared types.

    Values may be strings (as they arrive from argparse or `mlflow run -P`) or already typed.
    """
    if not values:
        return cfg
    hints = typing.get_type_hints(type(cfg))
    changes = {}
    for key, value in values.items():
        if key not in hints:
            known = ", ".join(sorted(hints))
            raise ConfigError(f"{origin}: unknown parameter {key!r} (known: {known})")
        changes[key] = _coerce(value, hints[key], key, origin, from_text=isinstance(value, str))
    return dataclasses.replace(cfg, **changes)


def section_fields(cls: type) -> dict[str, Any]:
    """Field name -> declared type of a stage config class (used to build CLIs)."""
    return typing.get_type_hints(cls)


def _build(cls: type[T], raw: dict, path: Path, prefix: str) -> T:
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(raw) - set(hints))
    if unknown:
        raise ConfigError(
            f"{path}: unknown key '{prefix}{unknown[0]}'"
            f" (known under {prefix.rstrip('.') or 'top level'}: {', '.join(sorted(hints))})"
        )
    missing = sorted(set(hints) - set(raw))
    if missing:
        raise ConfigError(f"{path}: missing key '{prefix}{missing[0]}'")
    values = {}
    for name, typ in hints.items():
        key = f"{prefix}{name}"
        if dataclasses.is_dataclass(typ):
            if not isinstance(raw[name], dict):
                raise ConfigError(f"{path}: {key!r} must be a mapping")
            values[name] = _build(typ, raw[name], path, prefix=f"{key}.")
        else:
            values[name] = _coerce(raw[name], typ, key, str(path), from_text=False)
    return cls(**values)


def _coerce(value: Any, typ: Any, key: str, origin: str, *, from_text: bool) -> Any:
    """Check (YAML) or convert (CLI text) one value against its declared type."""
    origin_type = typing.get_origin(typ)
    if origin_type in (typing.Union, types.UnionType):
        options = typing.get_args(typ)
        if value is None or (from_text and value.lower() in ("", "none", "null")):
            if type(None) in options:
                return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key, origin, from_text=from_text)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if origin_type is tuple:
        args = typing.get_args(typ)
        items = value.split(",") if from_text else value
        if not isinstance(items, (list, tuple)):
            raise _type_error(key, origin, value, "a list")
        if len(args) == 2 and args[1] is Ellipsis:
            args = (args[0],) * len(items)
        elif len(items) != len(args):
            raise _type_error(key, origin, value, f"a list of {len(args)} values")
        return tuple(
            _coerce(v, t, key, origin, from_text=from_text) for v, t in zip(items, args, strict=True)
        )
    if typ is bool:
        if from_text and value.lower() in ("true", "1", "yes"):
            return True
        if from_text and value.lower() in ("false", "0", "no"):
            return False
        if isinstance(value, bool):
            return value
        raise _type_error(key, origin, value, "true or false")
    if typ is int:
        if from_text:
            try:
                return int(value)
            except ValueError:
                raise _type_error(key, origin, value, "a whole number") from None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _type_error(key, origin, value, "a whole number")
    if typ is float:
        if from_text:
            try:
                return float(value)
            except ValueError:
                raise _type_error(key, origin, value, "a number") from None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _type_error(key, origin, value, "a number")
    if typ is str:
        if isinstance(value, str):
            return value
        raise _type_error(key, origin, value, "a string (quote it in YAML)")
    raise TypeError(f"unsupported config type {typ!r} for {key}")


def _type_error(key: str, origin: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(f"{origin}: {key} must be {expected}, got {value!r}")


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())

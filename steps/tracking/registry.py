"""Model Registry access shared by register, promote and deploy: versions, aliases, tags.

Which version is live is held by the registry alone, as aliases (`champion`, `previous`; deploy
adds `blue` / `green`), never model stages (deprecated). Setting an alias by hand in the MLflow UI
or client is as valid as any stage doing it. Every call goes through `MlflowClient()` with its
defaults, so a registry URI set by `store.configure()` applies. Registry failures become one-line
`StageError`s naming the model and what was being done.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from mlflow.entities.model_registry import ModelVersion, RegisteredModel
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from steps.stage.errors import StageError, one_line
from steps.tracking import store

CHAMPION_ALIAS = "champion"  # the version that serves (models:/<name>@champion)
PREVIOUS_ALIAS = "previous"  # the champion it replaced: where rollback goes

# The few version tags code reads; everything else about a version is its card (cards.py).
CHECKS_TAG = "behavioural_checks"  # "passed" / "failed": evaluate's verdict; promote requires it
CHECKS_PASSED = "passed"
CHECKS_FAILED = "failed"
ACCURACY_TAG = "test_accuracy"  # evaluate's test accuracy (monitor weighs a labelled batch with it)
DATA_TAG = store.DATA_TAG  # content hash of the data the version was trained on (promote)
COMMIT_TAG = store.COMMIT_TAG  # the code it was trained with (models)
# promote's latest decision on the version and both figures (models shows them)
DECISION_TAG = "promotion.decision"
CANDIDATE_VALUE_TAG = "promotion.candidate_value"
CHAMPION_VALUE_TAG = "promotion.champion_value"
# On the registered model: the tools' own memory of the champion they last saw
# (tracking/champion.py), named as bookkeeping so a reader of the tags knows it is not for them.
RECORDED_CHAMPION_TAG = "bookkeeping.last_seen_champion"
LEGACY_RECORDED_CHAMPION_TAG = "champion.recorded"  # its name before: read once, then moved
# migrate: a version re-logged as code and data names the one it came from, and back (migrate.py)
MIGRATED_FROM_TAG = "migrated_from"
MIGRATED_TO_TAG = "migrated_to"
ANALYSIS_TAG_PREFIX = "analysis."  # analysis.<field>: deploy's checks before and after the switch

_MISSING = "RESOURCE_DOES_NOT_EXIST"


@contextmanager
def registry_call(what: str) -> Iterator[None]:
    """Turn an MlflowException raised inside into a one-line StageError saying what failed."""
    try:
        yield
    except MlflowException as exc:
        message = one_line(exc.message)
        raise StageError(f"registry: {what}: {message}") from None


def model_uri(name: str, version: int | str) -> str:
    """`models:/<name>/<version>`, or `models:/<name>@<alias>` when given an alias."""
    text = str(version)
    return f"models:/{name}/{text}" if text.isdigit() else f"models:/{name}@{text}"


def registered_model(name: str, client: MlflowClient | None = None) -> RegisteredModel | None:
    """The registered model (its aliases and tags), or None when nothing is registered under
    that name."""
    client = client or MlflowClient()
    try:
        return client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == _MISSING:
            return None
        raise StageError(f"registry: read model {name!r}: {one_line(exc.message)}") from None


def version_by_alias(
    name: str, alias: str, client: MlflowClient | None = None
) -> ModelVersion | None:
    """The version an alias points at, or None when the model or the alias does not exist."""
    client = client or MlflowClient()
    model = registered_model(name, client)
    if model is None or alias not in (model.aliases or {}):
        return None
    with registry_call(f"resolve {name}@{alias}"):
        return client.get_model_version_by_alias(name, alias)


def repair_alias(name: str, alias: str, client: MlflowClient | None = None) -> str | None:
    """Remove `alias` when the version it names no longer exists (a deletion that did not finish,
    an edit of the store); return what was fixed, or None when the alias is sound or absent.

    A dangling alias otherwise makes every lookup of it fail, and with it promote and rollback.
    """
    client = client or MlflowClient()
    model = registered_model(name, client)
    if model is None or alias not in (model.aliases or {}):
        return None
    version = str(model.aliases[alias])
    try:
        client.get_model_version(name, version)
        return None
    except MlflowException as exc:
        if exc.error_code != _MISSING:
            raise StageError(
                f"registry: read {name} version {version}: {one_line(exc.message)}"
            ) from None
    delete_alias(name, alias, client)
    return f"removed {name}@{alias}: it pointed at version {version}, which no longer exists"


def all_versions(name: str, client: MlflowClient | None = None) -> list[ModelVersion]:
    """Every version of a registered model, oldest first (empty when it does not exist)."""
    client = client or MlflowClient()
    with registry_call(f"list versions of {name!r}"):
        found = client.search_model_versions(f"name = '{name}'")
    return sorted(found, key=lambda v: int(v.version))


def latest_version(name: str, client: MlflowClient | None = None) -> ModelVersion | None:
    """The most recently registered version, or None."""
    versions = all_versions(name, client)
    return versions[-1] if versions else None


def get_version(name: str, version: int | str, client: MlflowClient | None = None) -> ModelVersion:
    """One version; a missing model or version is a StageError listing what does exist."""
    client = client or MlflowClient()
    text = str(version).strip()
    if not text.isdigit():
        raise StageError(f"model version must be a whole number, got {text!r}")
    try:
        return client.get_model_version(name, text)
    except MlflowException as exc:
        if exc.error_code != _MISSING:
            raise StageError(
                f"registry: read {name} version {text}: {one_line(exc.message)}"
            ) from None
    existing = [str(v.version) for v in all_versions(name, client)]
    if not existing:
        raise StageError(f"no model named {name!r} in the registry: run the register stage first")
    raise StageError(f"{name} has no version {text} (registered versions: {', '.join(existing)})")


def set_alias(
    name: str, alias: str, version: int | str, client: MlflowClient | None = None
) -> None:
    """Point an alias at a version (creating or moving it)."""
    client = client or MlflowClient()
    with registry_call(f"set {name}@{alias} -> version {version}"):
        client.set_registered_model_alias(name, alias, str(version))


def delete_alias(name: str, alias: str, client: MlflowClient | None = None) -> None:
    """Remove an alias (the version itself stays)."""
    client = client or MlflowClient()
    with registry_call(f"delete {name}@{alias}"):
        client.delete_registered_model_alias(name, alias)


def set_model_tag(name: str, key: str, value: Any, client: MlflowClient | None = None) -> None:
    """Set a tag on the registered model itself (not on a version)."""
    client = client or MlflowClient()
    with registry_call(f"tag {name}"):
        client.set_registered_model_tag(name, key, tag_value(value))


def delete_model_tag(name: str, key: str, client: MlflowClient | None = None) -> None:
    """Remove a tag from the registered model."""
    client = client or MlflowClient()
    with registry_call(f"remove tag {key} of {name}"):
        client.delete_registered_model_tag(name, key)


def set_version_tags(
    name: str, version: int | str, tags: Mapping[str, Any], client: MlflowClient | None = None
) -> None:
    """Set tags on a version; values become strings (floats to 6 significant digits)."""
    client = client or MlflowClient()
    with registry_call(f"tag {name} version {version}"):
        for key, value in tags.items():
            client.set_model_version_tag(name, str(version), key, tag_value(value))


def tag_value(value: Any) -> str:
    """How a value reads as a registry tag: floats short, booleans lower-case, None empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def describe(name: str, client: MlflowClient | None = None) -> str:
    """A table of every version: aliases, promotion decision, figures, data, commit."""
    client = client or MlflowClient()
    model = registered_model(name, client)
    if model is None:
        return f"no model named {name!r} in the registry"
    by_version: dict[str, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        by_version.setdefault(str(version), []).append(alias)
    rows = [("version", "aliases", "decision", "candidate", "champion", "checks", "commit")]
    for v in reversed(all_versions(name, client)):
        tags = v.tags or {}
        rows.append(
            (
                str(v.version),
                ",".join(sorted(by_version.get(str(v.version), []))) or "-",
                tags.get(DECISION_TAG, "-"),
                tags.get(CANDIDATE_VALUE_TAG, "-") or "-",
                tags.get(CHAMPION_VALUE_TAG, "-") or "-",
                tags.get(CHECKS_TAG, "-"),
                tags.get(COMMIT_TAG, "-")[:12],
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    return f"{name}\n" + "\n".join(lines)

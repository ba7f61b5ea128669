"""Which version serves: moving `champion` (and `previous`) and noticing when someone else did.

The aliases are the only state, and setting `champion` by hand (MLflow UI, `MlflowClient`) is as
valid as promote doing it. MLflow keeps no history of an alias, so the tools remember the champion
they last saw as a tag on the registered model (`bookkeeping.last_seen_champion`). When
`champion` is found elsewhere (`notice`: promote, rollback and `make models` call it first), it
was moved by hand: the recorded version, which served before, becomes `previous` (so `make
rollback` returns to it), and both versions' cards say what happened.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

from steps.stage import hints
from steps.stage.errors import StageError
from steps.tracking import cards, registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HandMove:
    """A champion change the tools did not make."""

    champion: str | None  # the version set by hand (None: the alias was deleted)
    before: str  # the version that served before, now `previous`

    def summary(self, name: str) -> str:
        now = f"version {self.champion}" if self.champion else "no version"
        return (
            f"{name}@{registry.CHAMPION_ALIAS} was moved by hand from version {self.before} to"
            f" {now}: recorded, version {self.before} is @{registry.PREVIOUS_ALIAS}"
        )


def crown(name: str, version: str, old: ModelVersion | None, why: str) -> None:
    """champion -> version; the old champion keeps `previous` (set first: never no champion)."""
    if old is not None:
        registry.set_alias(name, registry.PREVIOUS_ALIAS, old.version)
        cards.add_history(name, old.version, f"replaced as champion by version {version}")
    registry.set_alias(name, registry.CHAMPION_ALIAS, version)
    record(name, version)
    cards.add_history(name, version, f"became champion: {why}")
    log.info("%s@%s -> version %s", name, registry.CHAMPION_ALIAS, version)


def record(name: str, version: str | None, client: MlflowClient | None = None) -> None:
    """Remember `version` as the champion the tools last saw."""
    registry.set_model_tag(name, registry.RECORDED_CHAMPION_TAG, version or "", client)


def notice(name: str, by: str, client: MlflowClient | None = None) -> HandMove | None:
    """Record a champion set (or removed) outside the tools since they last saw it.

    The version recorded before becomes `previous`; a model never recorded (registered by older
    code, or its first champion set by hand) just has its champion recorded. `by` names the
    stage that noticed, for the cards.
    """
    client = client or MlflowClient()
    model = registry.registered_model(name, client)
    if model is None:
        return None
    current = (model.aliases or {}).get(registry.CHAMPION_ALIAS)
    current = str(current) if current is not None else None
    tags = dict(model.tags or {})
    if (legacy := tags.pop(registry.LEGACY_RECORDED_CHAMPION_TAG, None)) is not None:
        if registry.RECORDED_CHAMPION_TAG not in tags:  # recorded by older code: moved
            tags[registry.RECORDED_CHAMPION_TAG] = legacy
            record(name, legacy or None, client)
        registry.delete_model_tag(name, registry.LEGACY_RECORDED_CHAMPION_TAG, client)
    if registry.RECORDED_CHAMPION_TAG not in tags:
        if current is not None:
            record(name, current, client)
        return None
    before = tags[registry.RECORDED_CHAMPION_TAG] or None
    if before == current:
        return None
    record(name, current, client)
    if before is None or before not in {str(v.version) for v in registry.all_versions(name)}:
        return None  # nothing served before (or that version was deleted): nothing to go back to
    registry.set_alias(name, registry.PREVIOUS_ALIAS, before, client)
    move = HandMove(champion=current, before=before)
    if current is not None:
        cards.add_history(
            name, current, f"set as champion by hand (noticed by {by}); version {before} served"
        )
    cards.add_history(name, before, f"replaced as champion by hand (noticed by {by})")
    log.warning("%s", move.summary(name))
    return move


def repair(name: str) -> tuple[str, ...]:
    """Remove `champion` / `previous` where they name a version that no longer exists."""
    repairs = []
    for alias in (registry.CHAMPION_ALIAS, registry.PREVIOUS_ALIAS):
        if repair := registry.repair_alias(name, alias):
            log.warning("repaired the registry: %s", repair)
            repairs.append(repair)
    return tuple(repairs)


def roll_back(name: str, by: str) -> tuple[str, str | None, tuple[str, ...]]:
    """Move `champion` back to `previous`, then drop `previous`; (restored, demoted, repairs).

    A champion set by hand since the tools last looked is noticed first, so `previous` is the
    version that served before it. `previous` is removed afterwards so that a second rollback
    cannot put back the version just rolled back from; promote by hand (`--version N`) to go
    anywhere else. `by` names the stage rolling back, for the cards: "rollback" (`promote
    --rollback`) or "deploy" (after a failed analysis).
    """
    repairs = repair(name)
    notice(name, by=by)
    previous = registry.version_by_alias(name, registry.PREVIOUS_ALIAS)
    if previous is None:
        fixed = f" ({'; '.join(repairs)})" if repairs else ""
        raise StageError(
            f"{name} has no @{registry.PREVIOUS_ALIAS} version to roll back to{fixed}"
            f" (promote a version by hand instead: {hints.command('promote', {'version': 'N'})})"
        )
    current = registry.version_by_alias(name, registry.CHAMPION_ALIAS)
    demoted = str(current.version) if current else None
    restored = str(previous.version)
    registry.set_alias(name, registry.CHAMPION_ALIAS, restored)
    record(name, restored)
    registry.delete_alias(name, registry.PREVIOUS_ALIAS)
    cards.add_history(name, restored, f"champion again by {by} (was {demoted})")
    if demoted is not None and demoted != restored:
        cards.add_history(name, demoted, f"rolled back to version {restored}")
    return restored, demoted, repairs


def serving(name: str) -> ModelVersion:
    """The champion's version, or a StageError saying there is none and the command that
    promotes one by hand (make serve, image and deploy resolve the model through this)."""
    current = registry.version_by_alias(name, registry.CHAMPION_ALIAS)
    if current is None:
        raise StageError(no_champion(name))
    return current


def status(name: str) -> str:
    """One line for the end of a pipeline: which version serves, or `no_champion`."""
    current = registry.version_by_alias(name, registry.CHAMPION_ALIAS)
    if current is None:
        return no_champion(name)
    return f"{name} version {current.version} is @{registry.CHAMPION_ALIAS}"


def no_champion(name: str) -> str:
    """Why `name` has no champion, and the exact command that makes its latest version one."""
    latest = registry.latest_version(name)
    if latest is None:
        return f"{name} has no registered version yet: run the pipeline ({hints.command('main')})"
    decision = (latest.tags or {}).get(registry.DECISION_TAG)
    why = f" (version {latest.version}: {decision})" if decision else ""
    return (
        f"{name} has no @{registry.CHAMPION_ALIAS}{why}: to serve version {latest.version}"
        f" anyway, promote it by hand: {hints.command('promote', {'version': latest.version})}"
    )

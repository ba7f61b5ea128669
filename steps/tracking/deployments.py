"""What deploy records in MLflow (the cluster holds the rest): which version each slot runs
(aliases `blue` / `green`), the live slot and a version a rollback took out of service (tags on
the registered model), its analyses' verdicts on a version (`analysis.*` tags, for code and the
UI's filters, and a line in the version's card) and each plan it carried out (a text artifact of
the active run). Moving `champion` itself is champion.py's.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from steps.stage.errors import one_line
from steps.tracking import cards, registry

log = logging.getLogger(__name__)

LIVE_SLOT_TAG = "deploy.live_slot"  # on the registered model: the slot the live Service selects
HELD_TAG = "deploy.rolled_back_version"  # on the registered model: not redeployed by itself
ANALYSIS_TAG = registry.ANALYSIS_TAG_PREFIX  # analysis.<phase>[.<figure>] on the version analysed
TAG_TEXT_LIMIT = 4000  # a registry tag holds 5,000 characters


@dataclass(frozen=True)
class Recorded:
    """What deploy last recorded on the registered model."""

    aliases: Mapping[str, int]  # slot -> the version it runs
    live_slot: str | None
    held: int | None


def recorded(
    name: str, slots: Collection[str], client: MlflowClient | None = None
) -> Recorded | None:
    """The slot aliases and deploy's tags on the registered model; None when there is none."""
    model = registry.registered_model(name, client)
    if model is None:
        return None
    tags = model.tags or {}
    held = tags.get(HELD_TAG)
    return Recorded(
        aliases={a: int(v) for a, v in (model.aliases or {}).items() if a in slots},
        live_slot=tags.get(LIVE_SLOT_TAG),
        held=int(held) if held else None,
    )


def champion_version(name: str, client: MlflowClient | None = None) -> int | None:
    """The version the `champion` alias names, or None."""
    version = registry.version_by_alias(name, registry.CHAMPION_ALIAS, client)
    return int(version.version) if version else None


def record_slots(
    name: str,
    versions: Mapping[str, int | None],
    live: str,
    held: int | None,
    client: MlflowClient | None = None,
) -> None:
    """Slot aliases name the version each slot runs (None: no alias); tags name the live slot
    and the held version (None: no hold)."""
    client = client or MlflowClient()
    model = registry.registered_model(name, client)
    aliases, tags = (model.aliases or {}, model.tags or {}) if model else ({}, {})
    for slot, version in sorted(versions.items()):
        if version is not None:
            registry.set_alias(name, slot, version, client)
        elif slot in aliases:
            registry.delete_alias(name, slot, client)
    registry.set_model_tag(name, LIVE_SLOT_TAG, live, client)
    if held is not None:
        registry.set_model_tag(name, HELD_TAG, held, client)
    elif HELD_TAG in tags:
        registry.delete_model_tag(name, HELD_TAG, client)


def record_analysis(
    name: str,
    version: int,
    phase: str,
    outcome: str,
    figures: Mapping[str, float],
    why: str = "",
    client: MlflowClient | None = None,
) -> None:
    """analysis.<phase> = outcome, analysis.<phase>.<figure> = value on the version, and one
    line in its card's history (`why` ends it)."""
    tags: dict[str, Any] = {f"{ANALYSIS_TAG}{phase}": outcome}
    tags |= {f"{ANALYSIS_TAG}{phase}.{k}": v for k, v in figures.items()}
    registry.set_version_tags(name, version, tags, client)
    shown = ", ".join(f"{k} {registry.tag_value(v)}" for k, v in figures.items())
    line = f"deploy: {phase}-promotion analysis {outcome}" + (f" ({shown})" if shown else "")
    cards.add_history(name, version, line + (f": {why}" if why else ""), client)


def record_failed_analysis(
    name: str,
    version: int,
    phase: str,
    check: str,
    reason: str,
    figures: Mapping[str, float],
    client: MlflowClient | None = None,
) -> None:
    """A failed analysis: the check that failed and why (analysis.<phase>.failed_check and
    .reason), besides what `record_analysis` records."""
    tags = {
        f"{ANALYSIS_TAG}{phase}.failed_check": check,
        f"{ANALYSIS_TAG}{phase}.reason": reason[:TAG_TEXT_LIMIT],
    }
    registry.set_version_tags(name, version, tags, client)
    record_analysis(name, version, phase, "failed", figures, why=reason, client=client)


def log_plan(text: str, artifact_file: str) -> bool:
    """Log a plan's text to the active run, if there is one; True when logged. Best effort: a
    deployment never fails over its own log."""
    if mlflow.active_run() is None:
        return False
    try:
        mlflow.log_text(text, artifact_file)
    except MlflowException as exc:
        log.warning("could not log the plan to MLflow: %s", one_line(exc))
        return False
    return True

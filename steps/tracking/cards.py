"""Model cards: the Markdown descriptions the MLflow UI shows on a registered model and on each
version, instead of dozens of tags it truncates.

A version's card (written by register) says what it was trained on and how it measured: data
hash and source, test metrics, behavioural checks, the recipe (the train run's params), the
train run and commit. promote and rollback append one dated line per decision to it, so the card
is also the version's history. Tags stay for the few facts code reads (registry.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from mlflow.tracking import MlflowClient

from steps.tracking import registry

HISTORY_HEADING = "### History"
# Marks a description a stage wrote; placed after the text, never first: the UI previews a card's
# first characters in the version list, and an HTML comment there shows as itself.
MODEL_CARD_MARKER = "<!-- imdb-sentiment model card -->"
# Test metrics in the order a reader wants them; any other number follows.
FIRST_METRICS = ("accuracy", "f1", "roc_auc", "log_loss", "precision", "recall", "n_reviews")


@dataclass(frozen=True)
class VersionFacts:
    """What a version's card says."""

    model_uri: str
    run_id: str
    commit: str | None
    data_sha256: str | None
    data_source: str | None
    metrics: Mapping[str, float]  # the evaluation report: test metrics and behavioural rates
    checks_passed: bool
    recipe: Mapping[str, str]  # the train run's params


def version_card(facts: VersionFacts) -> str:
    """The Markdown card of a newly registered version."""
    checks = "passed" if facts.checks_passed else "FAILED"
    rates = {k: v for k, v in facts.metrics.items() if k.startswith("behavioural_")}
    rest = {k: v for k, v in facts.metrics.items() if k not in rates}
    ordered = [k for k in FIRST_METRICS if k in rest] + sorted(set(rest) - set(FIRST_METRICS))
    lines = [
        f"Trained by run `{facts.run_id}` ({facts.model_uri}) at commit"
        f" `{(facts.commit or 'unknown')[:12]}`.",
        "",
        f"**Data**: manifest `{facts.data_sha256 or 'unknown'}` from"
        f" `{facts.data_source or 'unknown'}`.",
        "",
        "| test metric | value |",
        "| --- | --- |",
        *(f"| {k} | {registry.tag_value(rest[k])} |" for k in ordered),
        "",
        f"**Behavioural checks: {checks}** ("
        + ", ".join(
            f"{k.removeprefix('behavioural_').removesuffix('_pass_rate').replace('_', ' ')} {v:.0%}"
            for k, v in sorted(rates.items())
        )
        + ").",
        "",
        "**Recipe** (train.*): "
        + ", ".join(f"`{k}={v}`" for k, v in sorted(facts.recipe.items()))
        + ".",
        "",
        MODEL_CARD_MARKER,
        "",
        HISTORY_HEADING,
        "",
    ]
    return "\n".join(lines)


def model_card(name: str) -> str:
    """The registered model's card: what it is, what it takes, how versions become champion."""
    return "\n".join(
        [
            f"**{name}**: sentiment of an English movie review (IMDB), as an MLflow pyfunc.",
            "",
            'In: a `review` column of strings (`{"dataframe_records": [{"review": "..."}]}`).'
            " Out: per review, `label` (positive / negative / unknown) and `score`"
            " (probability of positive).",
            "",
            f"`@{registry.CHAMPION_ALIAS}` serves; `@{registry.PREVIOUS_ALIAS}` is where a"
            " rollback goes. `promote` moves the champion only for a version whose behavioural"
            " checks passed and that beats the champion on the same reviews; setting the alias"
            " by hand is as valid (the next promote, rollback or `make models` records it)."
            " Each version's card says how it was made and keeps its history.",
            "",
            MODEL_CARD_MARKER,
        ]
    )


def describe_model(name: str, client: MlflowClient | None = None) -> None:
    """Give the registered model its card unless someone wrote another description."""
    client = client or MlflowClient()
    model = registry.registered_model(name, client)
    if model is not None and (not model.description or MODEL_CARD_MARKER in model.description):
        with registry.registry_call(f"describe {name}"):
            client.update_registered_model(name, description=model_card(name))


def add_history(
    name: str, version: int | str, event: str, client: MlflowClient | None = None
) -> None:
    """Append one dated line to a version's card (under its History heading)."""
    client = client or MlflowClient()
    with registry.registry_call(f"read {name} version {version}"):
        current = client.get_model_version(name, str(version)).description or ""
    if HISTORY_HEADING not in current:
        current = f"{current.rstrip()}\n\n{HISTORY_HEADING}\n\n".lstrip()
    now = datetime.now(UTC).isoformat(timespec="seconds")
    updated = f"{current.rstrip()}\n- {now}: {event}\n"
    with registry.registry_call(f"describe {name} version {version}"):
        client.update_model_version(name, str(version), description=updated)

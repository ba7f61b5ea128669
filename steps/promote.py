"""`promote` entry point: champion/challenger promotion by Model Registry aliases.

    python -m steps.promote                 # the latest version challenges @champion
    python -m steps.promote --version 3     # make version 3 champion by hand (no gate)
    python -m steps.promote --rollback      # champion back to @previous
(`mlflow run . -e promote -P version=3`, `-P rollback=true` reach the same code.)

The candidate and the current champion are both scored on the same reviews (the ingested test
split, or `promote.eval_data`), each in its own process with the code it was logged with: metrics
recorded at registration time come from whatever data each model was evaluated on and are not
comparable. The candidate becomes `champion` only if its registered behavioural checks passed and
it beats the champion's `promote.metric` by at least `promote.min_gain`; the first model becomes
champion if its checks passed. The replaced champion keeps the `previous` alias. Every decision
is printed, logged to the stage's run, tagged on the candidate (`promotion.decision` and both
figures, which `make models` shows) and added, with its reason and the evaluation data, to the
candidate's card (its description). The registry's aliases are the only state: moving `champion`
by hand in the MLflow UI is equally valid, and is noticed and recorded first (so a rollback
returns to the version that served before; steps/tracking/champion.py). An alias left pointing
at a version that no longer exists is removed first (every mode), and the printed summary says so.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.entities.model_registry import ModelVersion

from pyfunc.contract import SCORE_FIELD
from steps.data import dataset
from steps.entry import cli
from steps.measure import scoring
from steps.measure.metrics import classification_metrics
from steps.stage import lock
from steps.stage.config import Params, PromoteConfig
from steps.stage.errors import ConfigError, StageError
from steps.stage.paths import INGESTED_DIR, VALIDATED_MARKER
from steps.tracking import cards, champion, registry, store

log = logging.getLogger(__name__)


# The run's tags besides registry.DECISION_TAG: what was compared and why, or what a rollback did.
CANDIDATE_TAG = "promotion.candidate_version"
REASON_TAG = "promotion.reason"
RESTORED_TAG = "rollback.restored_version"
DEMOTED_TAG = "rollback.demoted"


@dataclass(frozen=True)
class EvalData:
    """The reviews both models are scored on, and how the decision names them."""

    texts: list[str]
    labels: list[str]  # positive / negative
    description: str
    sha256: str


@dataclass(frozen=True)
class Decision:
    """One promotion decision, as tagged on the candidate version."""

    candidate: str  # version
    champion: str | None  # version the candidate was compared with
    promoted: bool
    reason: str
    metric: str
    candidate_value: float | None
    champion_value: float | None
    mode: str  # "auto" or "manual"
    repairs: tuple[str, ...] = field(default=())  # dangling aliases removed first

    def tags(self) -> dict[str, object]:
        """What `make models` shows of the latest decision; the rest goes on the card."""
        return {
            registry.DECISION_TAG: "promoted" if self.promoted else "refused",
            registry.CANDIDATE_VALUE_TAG: self.candidate_value,
            registry.CHAMPION_VALUE_TAG: self.champion_value,
        }

    def summary(self) -> str:
        verdict = "PROMOTED" if self.promoted else "REFUSED"
        line = f"version {self.candidate}: {verdict} ({self.mode}): {self.reason}"
        return _with_repairs(line, self.repairs)


@dataclass(frozen=True)
class Rollback:
    """What a rollback did: the version restored as champion and the one it replaced."""

    model_name: str
    restored: str
    demoted: str | None
    repairs: tuple[str, ...] = field(default=())  # dangling aliases removed first

    def summary(self) -> str:
        line = (
            f"rolled back: {self.model_name}@{registry.CHAMPION_ALIAS} -> version {self.restored}"
            f" (was {self.demoted or 'unset'}); @{registry.PREVIOUS_ALIAS} removed"
        )
        return _with_repairs(line, self.repairs)


def _with_repairs(line: str, repairs: tuple[str, ...]) -> str:
    return "\n".join([*(f"repaired: {repair}" for repair in repairs), line])


def decide(
    metric: str,
    candidate_value: float,
    champion_value: float | None,
    checks: str | None,
    min_gain: float,
    champion_version: str | None = None,
) -> tuple[bool, str]:
    """The promotion rule, on figures already measured: (promote?, why)."""
    if checks != registry.CHECKS_PASSED:
        state = checks or "not recorded (register the version through the register stage)"
        return False, f"behavioural checks {state}"
    if champion_value is None:
        return True, f"first model: no champion yet ({metric} {candidate_value:.4f})"
    gain = round(candidate_value - champion_value, 9)  # no float noise at the boundary
    versus = (
        f"{metric} {candidate_value:.4f} vs champion v{champion_version} {champion_value:.4f}"
        f" (gain {gain:+.4f}, min_gain {min_gain:g})"
    )
    if gain >= min_gain:
        return True, versus
    return False, f"not better enough: {versus}"


def load_eval_data(
    cfg: PromoteConfig, ingested_dir: Path = INGESTED_DIR, marker: Path = VALIDATED_MARKER
) -> EvalData:
    """The evaluation reviews: `eval_data` if set, else the validated ingested test split."""
    if cfg.eval_data:
        path = Path(cfg.eval_data)
        frame = _read_table(path)
        description = str(path)
    else:
        frame = dataset.read_validated_split("test", ingested_dir, marker)
        description = f"ingested test split ({ingested_dir})"
    missing = [c for c in dataset.COLUMNS if c not in frame.columns]
    if missing:
        raise StageError(f"{description}: missing column(s) {missing}; need review, sentiment")
    unknown = sorted(set(frame["sentiment"]) - set(dataset.LABELS))
    if unknown:
        raise StageError(f"{description}: sentiment must be positive/negative, found {unknown[:3]}")
    if frame.empty:
        raise StageError(f"{description}: no reviews to evaluate on")
    frame = frame[list(dataset.COLUMNS)]
    return EvalData(
        texts=frame["review"].astype(str).tolist(),
        labels=frame["sentiment"].astype(str).tolist(),
        description=description,
        sha256=dataset.content_hash([frame]),
    )


def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ConfigError(f"promote.eval_data: {path} not found (Parquet or CSV: review,sentiment)")
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise StageError(f"promote.eval_data: cannot read {path}: {exc}") from None


def measure(
    model_name: str, versions: list[ModelVersion], data: EvalData, metric: str
) -> list[float]:
    """Score versions on the evaluation data (each in its own process); their metric values."""
    models = [
        (registry.model_uri(model_name, v.version), f"{model_name} v{v.version}") for v in versions
    ]
    return [
        classification_metrics(data.labels, scores[SCORE_FIELD].to_numpy(dtype=float))[metric]
        for scores in scoring.score_models(models, data.texts)
    ]


def promote(
    cfg: PromoteConfig,
    model_name: str,
    version: str | None = None,
    ingested_dir: Path = INGESTED_DIR,
    marker: Path = VALIDATED_MARKER,
) -> Decision | None:
    """Challenge @champion with a version (default: the latest); None if it already is champion.

    With `version` given this is a promotion by hand: the gate is reported but not applied.
    """
    manual = version is not None
    repairs = champion.repair(model_name)
    if manual:
        candidate = registry.get_version(model_name, version)
    else:
        candidate = registry.latest_version(model_name)
        if candidate is None:
            raise StageError(f"no versions of {model_name!r} registered: run register first")
    champion.notice(model_name, by="promote")
    current = registry.version_by_alias(model_name, registry.CHAMPION_ALIAS)
    if current is not None and str(current.version) == str(candidate.version):
        return None

    figures = _figures(
        cfg, model_name, candidate, current, ingested_dir, marker, required=not manual
    )
    candidate_value, champion_value, data = figures
    checks = candidate.tags.get(registry.CHECKS_TAG)
    if candidate_value is None:  # manual, nothing to measure on
        promoted, reason = True, "promoted by hand (no evaluation data to compare on)"
    else:
        promoted, reason = decide(
            cfg.metric,
            candidate_value,
            champion_value,
            checks,
            cfg.min_gain,
            str(current.version) if current else None,
        )
        if manual:
            rule = "would also promote" if promoted else "would refuse"
            promoted, reason = True, f"promoted by hand; the automatic rule {rule}: {reason}"
    decision = Decision(
        candidate=str(candidate.version),
        champion=str(current.version) if current else None,
        promoted=promoted,
        reason=reason,
        metric=cfg.metric,
        candidate_value=candidate_value,
        champion_value=champion_value,
        mode="manual" if manual else "auto",
        repairs=repairs,
    )
    details = [decision.summary(), f"min_gain {cfg.min_gain:g}"]
    if data is not None:
        details.append(f"on {data.description} ({len(data.texts):,} reviews, {data.sha256[:12]})")
    champion_data = current.tags.get(registry.DATA_TAG) if current else None
    if current is not None and champion_data != candidate.tags.get(registry.DATA_TAG):
        # Both are scored on this split, but the champion may have trained on some of it.
        note = (
            f"champion v{current.version} was trained on other data"
            f" (manifest {champion_data or 'unknown'}): if that data overlaps the evaluation"
            " reviews its figure is optimistic, which only makes promotion harder"
        )
        details.append(note)
        log.warning("%s", note)
    registry.set_version_tags(model_name, candidate.version, decision.tags())
    cards.add_history(model_name, candidate.version, "; ".join(details))
    if promoted:
        champion.crown(model_name, decision.candidate, current, why=decision.summary())
    return decision


def _figures(
    cfg: PromoteConfig,
    model_name: str,
    candidate: ModelVersion,
    champion: ModelVersion | None,
    ingested_dir: Path,
    marker: Path,
    required: bool,
) -> tuple[float | None, float | None, EvalData | None]:
    """Both models' metric on the same reviews; (None, None, None) if optional and impossible."""
    try:
        data = load_eval_data(cfg, ingested_dir, marker)
    except StageError as exc:
        if required:
            raise
        log.warning("promoting by hand without figures: %s", exc)
        return None, None, None
    log.info("evaluating on %s: %d reviews", data.description, len(data.texts))
    versions = [candidate] if champion is None else [candidate, champion]
    values = measure(model_name, versions, data, cfg.metric)
    return values[0], (values[1] if champion is not None else None), data


def rollback(model_name: str) -> Rollback:
    """Move `champion` back to `previous`, then drop `previous` (steps/tracking/champion.py,
    shared with deploy's automatic rollback); return what was restored and demoted."""
    restored, demoted, repairs = champion.roll_back(model_name, by="rollback")
    return Rollback(model_name, restored, demoted, repairs)


def run(
    cfg: PromoteConfig,
    model_name: str,
    version: str | None = None,
    rollback_to_previous: bool = False,
    ingested_dir: Path = INGESTED_DIR,
    marker: Path = VALIDATED_MARKER,
) -> Decision | Rollback | None:
    """Roll back, promote `version` by hand, or challenge @champion with the latest version.

    None when the candidate already is champion.
    """
    if rollback_to_previous and version is not None:
        raise ConfigError("promote parameters: --rollback goes alone (no --version)")
    if rollback_to_previous:
        return rollback(model_name)
    return promote(cfg, model_name, version, ingested_dir, marker)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("what to do (each also as `mlflow run -P name=value`)")
    group.add_argument(
        "--version", default=None, metavar="N",
        help="promote this version by hand (the gate is reported, not applied)",
    )  # fmt: skip
    cli.add_flag(group, "rollback", "move champion back to the previous alias")


def _command(params: Params, cfg: PromoteConfig, args: argparse.Namespace) -> None:
    model_name = params.register.model_name
    version = args.version.strip() if args.version and args.version.strip() else None
    with lock.hold("promote"), store.stage_run("rollback" if args.rollback else "promote"):
        store.log_config(cfg)
        outcome = run(cfg, model_name, version, rollback_to_previous=args.rollback)
        if isinstance(outcome, Rollback):
            mlflow.set_tags({RESTORED_TAG: outcome.restored, DEMOTED_TAG: outcome.demoted})
        elif outcome is None:
            mlflow.set_tag(registry.DECISION_TAG, "already champion")
        else:
            mlflow.set_tags(
                {
                    CANDIDATE_TAG: outcome.candidate,
                    registry.DECISION_TAG: "promoted" if outcome.promoted else "refused",
                    REASON_TAG: outcome.reason[:5000],
                }
            )
            figures = {"candidate": outcome.candidate_value, "champion": outcome.champion_value}
            mlflow.log_metrics(
                {f"{k}_{cfg.metric}": v for k, v in figures.items() if v is not None}
            )
    if outcome is None:
        champion = registry.version_by_alias(model_name, registry.CHAMPION_ALIAS)
        print(f"{model_name} version {champion.version} is already @{registry.CHAMPION_ALIAS}")
    else:
        print(outcome.summary())


def main(argv: list[str] | None = None) -> int:
    return cli.main("promote", argv, _command, add_arguments)


if __name__ == "__main__":
    sys.exit(main())

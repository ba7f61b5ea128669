"""`validate` stage: run the Great Expectations suites on the ingested splits.

    python -m steps.validate [--params FILE] [--min_rows N ...]
    mlflow run . -e validate --env-manager local

`expectations/imdb_reviews.json` runs on each split and `expectations/imdb_train_test.json` on both
splits stacked (train/test overlap); `expectations/imdb_unlabeled.json` on the unlabeled split
stacked with test, when the source had unlabeled reviews. Their `{"$PARAMETER": ...}` bounds
come from params.yaml `validate.*`. Pass: the marker `data/validated.json` records the content,
suite and bounds that passed, down to the sha256 of each Parquet file, and later stages require
it. Fail: every failed expectation is printed in plain words, the marker is removed and the stage
exits 1. Either way the GX report (Data Docs site + result JSON) is written to
`reports/validation/` and logged to MLflow. A marker that already matches the same content,
suites and bounds makes a second run skip GX ("already validated").
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

from pyfunc.contract import TEXT_COLUMN
from steps.data.dataset import (
    FILES,
    LABELS,
    MODEL_TEXT_COLUMN,
    SPLITS,
    UNLABELED,
    Manifest,
    content_hash,
    file_sha256,
    load_split,
    marker_record,
    model_text,
    read_manifest,
    read_marker,
    write_marker,
)
from steps.entry import cli
from steps.stage import lock
from steps.stage.config import Params, ValidateConfig
from steps.stage.errors import StageError, ValidationFailed
from steps.stage.files import atomic_dir, write_json
from steps.stage.paths import (
    INGESTED_DIR,
    UNLABELED_FILE_NAME,
    VALIDATED_MARKER,
    VALIDATION_REPORT_DIR,
    VALIDATION_RESULT_FILE_NAME,
)
from steps.tracking import store
from steps.validation.messages import Checked, describe_failures
from steps.validation.suite import Batch, load_suite_json, run_suites

log = logging.getLogger(__name__)

# ValidateConfig fields that are not bounds
SUITE_FIELDS = ("suite", "train_test_suite", "unlabeled_suite")
SUCCESS_TAG = "validation_success"  # the run's verdict: "true" / "false"
CACHED_TAG = "validation_cached"  # "true" when the marker already covered these exact files
PAIR_BATCH = "train+test"  # the stacked splits the train/test suite runs on
SPLIT_COLUMN = "split"  # tells the stacked rows apart (the train/test suite's group_column)


@dataclass(frozen=True)
class Outcome:
    """What a validation run found (or found again, when `cached`)."""

    success: bool
    cached: bool
    evaluated: int  # expectations evaluated over all batches
    failed: int
    failures: tuple[str, ...]  # one plain-words line per failed expectation
    rows: dict[str, int]  # split (and "unlabeled", when there is one) -> rows
    report_dir: Path

    @property
    def docs_index(self) -> Path:
        return self.report_dir / "index.html"

    @property
    def result_file(self) -> Path:
        return self.report_dir / VALIDATION_RESULT_FILE_NAME


def bounds(cfg: ValidateConfig) -> dict[str, Any]:
    """The params.yaml bounds the suites refer to (every validate.* key but the suite paths)."""
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in SUITE_FIELDS}


def suite_parameters(cfg: ValidateConfig) -> dict[str, Any]:
    """Values for the suites' `$PARAMETER`s: the bounds plus the label set of the data contract."""
    return {**bounds(cfg), "labels": list(LABELS)}


def suites_sha256(cfg: ValidateConfig) -> str:
    """One hash over both suite files, so editing either invalidates the marker."""
    digest = hashlib.sha256()
    for name in SUITE_FIELDS:
        path = Path(getattr(cfg, name))
        if not path.is_file():
            raise StageError(f"{path}: expectation suite not found (params.yaml validate.{name})")
        digest.update(f"{name}={file_sha256(path)}\n".encode())
    return digest.hexdigest()


def check(
    cfg: ValidateConfig,
    ingested_dir: Path = INGESTED_DIR,
    marker: Path = VALIDATED_MARKER,
    report_dir: Path = VALIDATION_REPORT_DIR,
) -> Outcome:
    """Validate the ingested splits; write the report, and the marker on success.

    Returns the outcome whether or not the data passed; raises StageError only when validation
    cannot run (no ingested data, a missing or invalid suite, a manifest that does not match
    the data).
    """
    ingested_dir, marker, report_dir = Path(ingested_dir), Path(marker), Path(report_dir)
    manifest = read_manifest(ingested_dir)
    loaded = {split: load_split(split, ingested_dir) for split in SPLITS}
    if (ingested_dir / UNLABELED_FILE_NAME).is_file():
        loaded[UNLABELED] = load_split(UNLABELED, ingested_dir)
    unlabeled = loaded[UNLABELED].frame if UNLABELED in loaded else None
    frames = {split: loaded[split].frame for split in SPLITS}
    files = {FILES[split]: split_data.sha256 for split, split_data in loaded.items()}
    wanted = marker_record(manifest, files, suites_sha256(cfg), bounds(cfg))
    data_sha256 = _content_hash_or_none(frames, unlabeled)
    cached = _cached_outcome(wanted, read_marker(marker), data_sha256, report_dir)
    if cached:
        return cached

    marker.unlink(missing_ok=True)  # whatever happens next, no stale marker survives
    if data_sha256 is not None and data_sha256 != manifest.content_sha256:
        raise StageError(
            f"{ingested_dir}: the Parquet files do not match {ingested_dir}/manifest.json"
            " (content hash differs): run the ingest stage again"
        )
    # duplicates and overlaps are judged as the model sees the text (steps/data/dataset.py)
    frames = {split: _with_model_text(frame) for split, frame in frames.items()}
    if unlabeled is not None:
        unlabeled = _with_model_text(unlabeled)
    batches = [
        *(_batch(split, frame, cfg.suite) for split, frame in frames.items()),
        _batch(PAIR_BATCH, _stack(frames), cfg.train_test_suite),
    ]
    if unlabeled is not None:  # its review checks see its rows only; the overlap one sees test
        stacked = _stack({UNLABELED: unlabeled, "test": frames["test"]})
        batches.append(_batch(UNLABELED, stacked, cfg.unlabeled_suite))
    rows = {split: len(frame) for split, frame in frames.items()}
    if unlabeled is not None:
        rows[UNLABELED] = len(unlabeled)
    with atomic_dir(report_dir) as tmp:
        results = run_suites(
            [Batch(b.name, b.frame, Path(suite)) for b, suite in batches],
            suite_parameters(cfg),
            docs_dir=tmp,
        )
        checked = [
            dataclasses.replace(b, result=result)
            for (b, _), result in zip(batches, results, strict=True)
        ]
        failures = tuple(line for c in checked for line in describe_failures(c))
        outcome = Outcome(
            success=all(result["success"] for result in results),
            cached=False,
            evaluated=sum(r["statistics"]["evaluated_expectations"] for r in results),
            failed=sum(r["statistics"]["unsuccessful_expectations"] for r in results),
            failures=failures,
            rows=rows,
            report_dir=report_dir,
        )
        write_json(tmp / VALIDATION_RESULT_FILE_NAME, _report(outcome, manifest, wanted, checked))
    if outcome.success:
        write_marker(wanted, marker)
    return outcome


def run(
    cfg: ValidateConfig,
    ingested_dir: Path = INGESTED_DIR,
    marker: Path = VALIDATED_MARKER,
    report_dir: Path = VALIDATION_REPORT_DIR,
) -> Outcome:
    """`check`, raising ValidationFailed (with every failure in plain words) when data fails."""
    outcome = check(cfg, ingested_dir, marker, report_dir)
    if not outcome.success:
        raise ValidationFailed(_summary(outcome), outcome.failures)
    return outcome


def failure_report(outcome: Outcome) -> str:
    """The multi-line, plain-words report printed when validation fails."""
    lines = [f"validation failed: {outcome.failed} of {outcome.evaluated} expectations not met"]
    lines += [f"  {line}" for line in outcome.failures]
    lines.append(f"report: {outcome.docs_index} (Data Docs), {outcome.result_file}")
    return "\n".join(lines)


def _summary(outcome: Outcome) -> str:
    return (
        f"{outcome.failed} of {outcome.evaluated} expectations not met"
        f" (listed above); report: {outcome.docs_index}"
    )


def _batch(name: str, frame: pd.DataFrame, suite: str) -> tuple[Checked, str]:
    return Checked(name, frame, result={}, raw_suite=load_suite_json(Path(suite))), suite


def _with_model_text(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` plus its reviews as the model sees them (none if it has no review column: the
    suite's column check says so, and the checks on the cleaned text are folded into it)."""
    if TEXT_COLUMN not in frame.columns:
        return frame
    return frame.assign(**{MODEL_TEXT_COLUMN: model_text(frame[TEXT_COLUMN])})


def _stack(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Both splits' reviews (raw and as the model sees them) stacked and tagged by split (no
    review columns if a split lacks them)."""
    columns = [TEXT_COLUMN, MODEL_TEXT_COLUMN]
    if not all(set(columns) <= set(frame.columns) for frame in frames.values()):
        return pd.DataFrame({SPLIT_COLUMN: pd.Series([], dtype="str")})
    return pd.concat(
        [frame[columns].assign(**{SPLIT_COLUMN: split}) for split, frame in frames.items()],
        ignore_index=True,
    )


def _content_hash_or_none(
    frames: dict[str, pd.DataFrame], unlabeled: pd.DataFrame | None
) -> str | None:
    """The content hash, or None when the data is too broken to hash (validation says why)."""
    try:
        return content_hash(list(frames.values()), unlabeled)
    except (KeyError, AttributeError, TypeError):
        return None


def _cached_outcome(
    wanted: dict, recorded: dict | None, data_sha256: str | None, report_dir: Path
) -> Outcome | None:
    """The previous outcome when the marker matches this content, suite and bounds."""
    if recorded != wanted or data_sha256 != wanted["content_sha256"]:
        return None
    try:
        report = json.loads((report_dir / VALIDATION_RESULT_FILE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # the report is gone: validate again to rewrite it
    if not report.get("success") or report.get("marker") != wanted:
        return None
    return Outcome(
        success=True,
        cached=True,
        evaluated=report["evaluated"],
        failed=0,
        failures=(),
        rows=dict(report["rows"]),
        report_dir=report_dir,
    )


def _report(outcome: Outcome, manifest: Manifest, wanted: dict, checked: list[Checked]) -> dict:
    return {
        "success": outcome.success,
        "evaluated": outcome.evaluated,
        "failed": outcome.failed,
        "failures": list(outcome.failures),
        "rows": outcome.rows,
        "source": manifest.source,
        "marker": wanted,
        "results": {c.name: c.result for c in checked},
    }


def _log_outcome(outcome: Outcome) -> None:
    mlflow.set_tags(
        {
            SUCCESS_TAG: str(outcome.success).lower(),
            CACHED_TAG: str(outcome.cached).lower(),
        }
    )
    mlflow.log_metrics(
        {
            "expectations_evaluated": outcome.evaluated,
            "expectations_failed": outcome.failed,
            **{f"rows_{split}": n for split, n in outcome.rows.items()},
        }
    )
    if outcome.report_dir.is_dir():
        mlflow.log_artifacts(str(outcome.report_dir), artifact_path="validation")


def _command(params: Params, cfg: ValidateConfig, args: argparse.Namespace) -> None:
    with lock.hold("validate"), store.stage_run("validate"):
        store.log_config(cfg)
        outcome = check(cfg)
        _log_outcome(outcome)
        rows = ", ".join(f"{split} {n:,} rows" for split, n in outcome.rows.items())
        if outcome.cached:
            log.info(
                "already validated: %s matches this content, suite and bounds (%s); report %s",
                VALIDATED_MARKER,
                rows,
                outcome.docs_index,
            )
        elif outcome.success:
            log.info(
                "validation passed: %d expectations met (%s); marker %s, report %s",
                outcome.evaluated,
                rows,
                VALIDATED_MARKER,
                outcome.docs_index,
            )
        else:
            print(failure_report(outcome), file=sys.stderr)
            raise ValidationFailed(_summary(outcome), outcome.failures)


def main(argv: list[str] | None = None) -> int:
    return cli.main("validate", argv, _command)


if __name__ == "__main__":
    sys.exit(main())

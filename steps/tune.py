"""`tune` entry point: K-fold cross-validation of train recipes over a small grid, ranked.

    python -m steps.tune [--grid 'C=10|30;ngram_range=1,2|1,3'] [--folds 5] [--max_fits 20]
    mlflow run . -e tune -P grid='C=10|30;ngram_range=1,2|1,3'      make tune GRID='...'

Each combination of `tune.grid`'s values is a candidate: params.yaml's train recipe with those
keys changed (a key given one value sets it for every candidate: `unlabeled=none` searches
without self-training). Each candidate is fitted `tune.folds` times on the ingested, validated
train split by train's own `fit`, and scored on the held-out fold. Folds are grouped by movie
where the reviews have a movie key (no movie on both sides: with 5 folds, fold 1 is train's
grouped validation split), stratified otherwise. A candidate is self-trained as train would
self-train it (`train.unlabeled` and a usable unlabeled split), each fold learning from no
unlabeled copy of its held-out reviews. A grid with an unknown key, a value train refuses or more
fits than `tune.max_fits` is one error line before any fit (steps/stage/grid.py).

MLflow: one `tune` run with a nested run per candidate, whose params are the whole train recipe
(the same keys on every candidate: the parallel-coordinates chart compares them) and whose
metrics are cv_accuracy_mean, cv_accuracy_std, cv_fold_accuracy (step = fold), fit_cpu_seconds,
fit_seconds and rank. The ranking is written to reports/tune.md (logged with the run) and printed
with the best candidate as the params.yaml lines to paste: tune never edits params.yaml.
Data never ingested or validated is first made by ingest and validate, as for train.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.tracking import MlflowClient

from steps.data import dataset
from steps.data.dataset import MOVIE_COLUMN, POSITIVE
from steps.data.splits import Unlabeled, cv_folds, unlabeled_per_fold, usable_unlabeled
from steps.entry import cli
from steps.fitting.recipe import clean_once, fit
from steps.measure.metrics import ACCURACY, classification_metrics
from steps.stage import grid, lock
from steps.stage.coercion import mapping_text, value_text
from steps.stage.config import Params, TrainConfig, TuneConfig
from steps.stage.errors import ConfigError
from steps.stage.files import atomic_path, yaml_text
from steps.stage.paths import INGESTED_DIR, TUNE_REPORT, UNLABELED_FILE_NAME, VALIDATED_MARKER
from steps.stage.schema import hints
from steps.tracking import store

# tune cross-validates train's recipe with train's own code: the one entry point another imports
# (tests/test_architecture.py names it), so a fit here is a fit there.

log = logging.getLogger(__name__)

CANDIDATE_STAGE = "tune.candidate"  # the stage tag of a candidate's nested run
FOLD_METRIC = "cv_fold_accuracy"  # one value per fold, step = fold number


@dataclass(frozen=True)
class Candidate:
    """One recipe of the grid and how it did on every fold."""

    number: int  # 1.. in the grid's order (its first key changes slowest)
    values: dict[str, Any]  # the grid keys' values
    recipe: TrainConfig  # params.yaml's train section with those values
    accuracies: tuple[float, ...]  # per fold, in fold order
    fit_cpu_seconds: float  # all folds' fits (process CPU time)
    fit_seconds: float  # all folds' fits, wall
    run_id: str

    @property
    def mean(self) -> float:
        return float(np.mean(self.accuracies))

    @property
    def std(self) -> float:
        return float(np.std(self.accuracies))


@dataclass(frozen=True)
class Tuned:
    """What tune measured, best candidate first, and where it wrote the ranking."""

    ranked: list[Candidate]
    keys: list[str]  # the grid's keys, in its order
    folds: str  # how the folds were made
    reviews: int
    unlabeled: int  # unlabeled reviews self-training candidates learnt from (0 = none)
    table: str  # the ranking as markdown (reports/tune.md)
    run_id: str
    cpu_seconds: float = 0.0  # the whole cross-validation, this process
    wall_seconds: float = 0.0
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average at its start and end


def candidates(cfg: TuneConfig, base: TrainConfig) -> list[tuple[dict[str, Any], TrainConfig]]:
    """Every combination of the grid's values, and the train recipe it makes."""
    made = []
    for values in grid.combinations(cfg.grid, hints(TrainConfig)):
        try:
            made.append((values, dataclasses.replace(base, **values)))
        except ConfigError as exc:  # a rule across train's fields
            raise ConfigError(f"tune parameters: grid candidate {_shown(values)}: {exc}") from None
    return made


def run(
    cfg: TuneConfig,
    base: TrainConfig,
    ingested_dir: Path = INGESTED_DIR,
    marker: Path = VALIDATED_MARKER,
    report: Path = TUNE_REPORT,
) -> Tuned:
    """Cross-validate every candidate inside the active MLflow run (one nested run each), rank
    them (accuracy mean, then spread, then fit CPU time) and write the ranking to `report`."""
    made = candidates(cfg, base)  # before any data is read: a bad grid costs nothing
    manifest = dataset.read_manifest(ingested_dir)
    frame = dataset.read_validated_split("train", ingested_dir, marker)
    reviews, labels = frame["review"].tolist(), frame["sentiment"].tolist()
    movies = frame[MOVIE_COLUMN].tolist() if MOVIE_COLUMN in frame.columns else None
    unlabeled = None
    if any(recipe.unlabeled == "self_training" for _, recipe in made):
        unlabeled = usable_unlabeled(
            dataset.read_validated_unlabeled(ingested_dir, marker),
            frame,
            dataset.read_validated_split("test", ingested_dir, marker),
            dataclasses.replace(base, unlabeled="self_training"),  # the grid may turn it on
            where=str(Path(ingested_dir) / UNLABELED_FILE_NAME),
        )
    folds, how = cv_folds(labels, movies, cfg.folds, base.seed)
    held_out = [held for _, held in folds]
    extra = unlabeled_per_fold(unlabeled, reviews, held_out) if unlabeled else [None] * len(folds)
    parent = mlflow.active_run()
    store.log_params({"grid": mapping_text(cfg.grid), "folds": cfg.folds, "max_fits": cfg.max_fits})
    mlflow.set_tags({store.DATA_TAG: manifest.content_sha256, store.SOURCE_TAG: manifest.source})
    mlflow.log_input(dataset.as_mlflow_dataset(frame, manifest, "train", ingested_dir), "train")
    log.info(
        "%d candidates x %s of %d reviews%s", len(made), how, len(reviews),
        f" (+ {len(unlabeled.reviews):,} unlabeled for self-training)" if unlabeled else "",
    )  # fmt: skip
    cpu, wall, load = time.process_time(), time.perf_counter(), os.getloadavg()[0]
    done = [
        _cross_validate(number, values, recipe, reviews, labels, folds, extra, unlabeled, len(made))
        for number, (values, recipe) in enumerate(made, 1)
    ]
    ranked = sorted(done, key=lambda c: (-c.mean, c.std, c.fit_cpu_seconds))
    client = MlflowClient()
    for rank, candidate in enumerate(ranked, 1):
        client.log_metric(candidate.run_id, "rank", rank)
        client.set_tag(candidate.run_id, "rank", str(rank))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    mlflow.log_metrics(
        {
            "best_cv_accuracy_mean": ranked[0].mean,
            "candidates": float(len(ranked)),
            "fits": float(len(ranked) * len(folds)),
            "tune_cpu_seconds": cpu,
            "tune_seconds": wall,
        }
    )
    mlflow.set_tag("best_candidate_run_id", ranked[0].run_id)
    tuned = Tuned(
        ranked, list(cfg.grid), how, len(reviews), len(unlabeled.reviews) if unlabeled else 0, "",
        parent.info.run_id,
        cpu, wall, (load, os.getloadavg()[0]),
    )  # fmt: skip
    tuned = dataclasses.replace(tuned, table=markdown(tuned))
    with atomic_path(report) as tmp:
        tmp.write_text(tuned.table, encoding="utf-8")
    mlflow.log_artifact(str(report))
    return tuned


def _cross_validate(
    number: int,
    values: dict[str, Any],
    recipe: TrainConfig,
    reviews: list[str],
    labels: list[str],
    folds: list[tuple[np.ndarray, np.ndarray]],
    extra: list[list[str] | None],
    unlabeled: Unlabeled | None,
    total: int,
) -> Candidate:
    """One candidate's nested run: fitted on each fold's rest, scored on the fold. `extra`: each
    fold's unlabeled reviews, of `unlabeled` (cleaned once for all folds when self-trained)."""
    cleaned = None
    if unlabeled is not None and recipe.unlabeled == "self_training":
        cleaned = clean_once(recipe, unlabeled.reviews, unlabeled.as_model)
    with mlflow.start_run(run_name=f"candidate {number}: {_shown(values)}", nested=True) as run:
        mlflow.set_tags(
            {store.STAGE_TAG: CANDIDATE_STAGE, store.PROJECT_TAG: store.PROJECT_NAME,
             "candidate": str(number)}
        )  # fmt: skip
        store.log_config(recipe)
        accuracies, cpu, wall = [], 0.0, 0.0
        for k, ((fit_rows, held_rows), learnt) in enumerate(zip(folds, extra, strict=True), 1):
            pipeline, fit_wall, fit_cpu = fit(
                recipe,
                [reviews[i] for i in fit_rows],
                [labels[i] for i in fit_rows],
                cleaned.pick(learnt) if cleaned is not None else None,
                cleaned=True,
            )
            held = [reviews[i] for i in held_rows]
            scores = pipeline.predict_proba(held)[:, list(pipeline.classes_).index(POSITIVE)]
            accuracy = classification_metrics([labels[i] for i in held_rows], scores)[ACCURACY]
            mlflow.log_metric(FOLD_METRIC, accuracy, step=k)
            accuracies.append(accuracy)
            cpu, wall = cpu + fit_cpu, wall + fit_wall
            log.info(
                "candidate %d/%d (%s), fold %d/%d: accuracy %.4f (fit %.1f CPU-s)",
                number, total, _shown(values), k, len(folds), accuracy, fit_cpu,
            )  # fmt: skip
        candidate = Candidate(number, values, recipe, tuple(accuracies), cpu, wall, run.info.run_id)
        mlflow.log_metrics(
            {
                "cv_accuracy_mean": candidate.mean,
                "cv_accuracy_std": candidate.std,
                "cv_accuracy_min": min(accuracies),
                "fit_cpu_seconds": cpu,
                "fit_seconds": wall,
            }
        )
    return candidate


def _shown(values: dict[str, Any]) -> str:
    return " ".join(f"{key}={value_text(value)}" for key, value in values.items())


def markdown(tuned: Tuned) -> str:
    """The ranking as a markdown table, with a line saying what was measured."""
    folds = len(tuned.ranked[0].accuracies)
    self_trained = f" + {tuned.unlabeled:,} unlabeled" if tuned.unlabeled else ""
    lines = [
        f"{len(tuned.ranked)} candidates, cross-validated on {tuned.reviews:,} reviews"
        f"{self_trained} ({tuned.folds}): {tuned.cpu_seconds:,.0f} CPU-s,"
        f" {tuned.wall_seconds / 60:.1f} min wall, load average {tuned.load[0]:.1f} at the start"
        f" and {tuned.load[1]:.1f} at the end; MLflow run {tuned.run_id}",
        "",
        "| rank | " + " | ".join(tuned.keys) + " | CV accuracy | ± std | min .. max"
        " | fit CPU-s per fold |",
        "| ---: |" + " --- |" * len(tuned.keys) + " ---: | ---: | ---: | ---: |",
    ]
    for rank, c in enumerate(tuned.ranked, 1):
        cells = [value_text(c.values[key]) for key in tuned.keys]
        lines.append(
            f"| {rank} | {' | '.join(cells)} | {c.mean:.2%} | {c.std:.2%}"
            f" | {min(c.accuracies):.2%} .. {max(c.accuracies):.2%}"
            f" | {c.fit_cpu_seconds / folds:.1f} |"
        )
    return "\n".join(lines) + "\n"


def to_paste(best: Candidate, cfg: TuneConfig, current: TrainConfig) -> dict[str, Any]:
    """The keys the grid varied (two values or more) whose best value is not params.yaml's.
    A key given one value is a setting of the search for every candidate, not a finding."""
    varied = [key for key, values in cfg.grid.items() if len(values) > 1]
    return {k: best.values[k] for k in varied if best.values[k] != getattr(current, k)}


def paste_lines(values: dict[str, Any]) -> str:
    """train: lines of params.yaml, block style as params.yaml is written."""
    return yaml_text(
        {"train": {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}}
    )


def _command(params: Params, cfg: TuneConfig, args: Any) -> None:
    made = candidates(cfg, params.train)  # a bad grid is refused before any data is made
    with lock.hold("tune"), store.stage_run("tune"):
        dataset.ensure_validated(args.params)
        dataset.require_validated()
        tuned = run(cfg, params.train)
    best = tuned.ranked[0]
    print(tuned.table)
    print(f"ranking written to {TUNE_REPORT}")
    print(
        f"best: candidate {best.number} ({_shown(best.values)}), CV accuracy {best.mean:.2%}"
        f" ± {best.std:.2%} over {len(best.accuracies)} folds, of {len(made)} candidates."
    )
    fixed = {k: v for k, v in best.values.items() if len(cfg.grid[k]) == 1}
    if fixed:
        print(f"Set for every candidate by the grid, not ranked: {_shown(fixed)}.")
    if changes := to_paste(best, cfg, params.train):
        print("To ship it, set these in params.yaml (tune never edits it):")
        print(paste_lines(changes), end="")
    else:
        print("params.yaml's train recipe already has the best values: nothing to paste.")


def main(argv: list[str] | None = None) -> int:
    return cli.main("tune", argv, _command)


if __name__ == "__main__":
    sys.exit(main())

"""`ingest` stage: read reviews from the configured source into data/ingested/.

`python -m steps.ingest [--source X] [--params FILE]` or `mlflow run . -e ingest -P source=X`.
The source may be a local folder or file, an https:// URL, s3://bucket/key or an ODBC source
(see steps/data/sources). The output is `train.parquet`, `test.parquet`, `unlabeled.parquet` (only
when the source has unlabeled reviews) and `manifest.json`, written as a whole folder atomically;
when the source has no test split a seeded one is carved (`ingest.test_size`, `ingest.seed`):
stratified by label, or grouped by movie where the source knows each review's movie, so that no
movie is on both sides (as in the official split). Output whose content hash already matches, and
whose files are still byte for byte those its manifest recorded, is left untouched, so re-running
on unchanged data changes no file; a damaged, swapped or edited file is written again.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from steps.data import sources
from steps.data.dataset import (
    MOVIE_COLUMN,
    POSITIVE,
    SPLITS,
    Manifest,
    changed_files,
    content_hash,
    file_digests,
    model_text,
    read_manifest,
)
from steps.entry import cli
from steps.stage import lock
from steps.stage.config import IngestConfig, Params
from steps.stage.errors import SourceError, StageError
from steps.stage.files import atomic_dir, sweep_stale, write_json
from steps.stage.paths import (
    DOWNLOAD_DIR,
    INGESTED_DIR,
    MANIFEST_FILE_NAME,
    UNLABELED_FILE_NAME,
)
from steps.tracking import store

log = logging.getLogger(__name__)

# The run's tags: whether the ingested files were rewritten, and the content hash they hold.
OUTPUT_TAG = "ingest.output"
CONTENT_TAG = "ingest.content_sha256"


@dataclass(frozen=True)
class Outcome:
    """What `ingest` left in the output folder."""

    manifest: Manifest
    written: bool  # False when the folder already held exactly this content
    seconds: float


def run(
    cfg: IngestConfig, out_dir: Path = INGESTED_DIR, download_dir: Path = DOWNLOAD_DIR
) -> Outcome:
    """Read `cfg.source`, normalise it into train/test splits and write `out_dir` atomically."""
    started = time.monotonic()
    where = sources.describe(cfg.source)
    for folder in {Path(out_dir).parent, Path(download_dir)}:
        sweep_stale(folder)  # litter of an ingest or download that was killed
    log.info("ingesting %s", where)
    loaded = sources.load(cfg, Path(download_dir), labels=sources.Labels.REQUIRED)
    if loaded.test is None:
        train, test = carve_test_split(loaded.train, cfg.test_size, cfg.seed, where)
        grouping = "grouped by movie" if MOVIE_COLUMN in train.columns else "stratified"
        how = f"carved ({grouping}, test_size={cfg.test_size}, seed={cfg.seed})"
    else:
        train, test, how = loaded.train, loaded.test, "source"
    frames = {"train": train, "test": test}
    details = dict(loaded.details)
    unlabeled = loaded.unlabeled
    if unlabeled is not None:
        unlabeled, dropped = drop_test_copies(unlabeled, test)
        if dropped:
            details["unlabeled_dropped"] = f"{dropped} copies of test reviews (once cleaned)"
            log.info(
                "left out %d unlabeled reviews that are a test review as the model sees it", dropped
            )
    manifest = Manifest(
        source=where,
        content_sha256=content_hash([train, test], unlabeled),
        rows={split: len(frame) for split, frame in frames.items()},
        positives={split: int((f["sentiment"] == POSITIVE).sum()) for split, f in frames.items()},
        test_split=how,
        details=details,
        unlabeled_rows=0 if unlabeled is None else len(unlabeled),
    )
    out_dir = Path(out_dir)
    existing = _current_manifest(out_dir)
    if existing is not None and existing.content_sha256 == manifest.content_sha256:
        changed = changed_files(existing, out_dir)
        if not changed:
            log.info(
                "%s already holds this content (sha256 %s, from %s): left untouched",
                out_dir,
                manifest.content_sha256[:12],
                existing.source,
            )
            return Outcome(existing, written=False, seconds=time.monotonic() - started)
        log.warning(
            "%s no longer matches its manifest (%s changed since it was written): writing it again",
            out_dir,
            ", ".join(changed),
        )
    with atomic_dir(out_dir) as tmp:
        for split, frame in frames.items():
            frame.to_parquet(tmp / SPLITS[split], index=False)
        if unlabeled is not None:
            unlabeled.to_parquet(tmp / UNLABELED_FILE_NAME, index=False)
        manifest = dataclasses.replace(manifest, files=file_digests(tmp))
        write_json(tmp / MANIFEST_FILE_NAME, manifest.to_dict())
    log.info(
        "wrote %s: train %s rows, test %s rows (%s test split), %s unlabeled, sha256 %s",
        out_dir,
        f"{len(train):,}",
        f"{len(test):,}",
        how,
        f"{manifest.unlabeled_rows:,}",
        manifest.content_sha256[:12],
    )
    return Outcome(manifest, written=True, seconds=time.monotonic() - started)


def carve_test_split(
    frame: pd.DataFrame, test_size: float, seed: int, where: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded train/test split of a source that has no test split.

    Stratified: the test split gets ceil(test_size * rows) rows, shared out between the labels in
    proportion (largest remainder), each label's rows drawn by a seeded permutation. Grouped,
    where the frame has a movie column: whole movies, in a seeded order, until the test split has
    ceil(test_size * rows) rows or more (reviews of one movie share telling n-grams, so a movie
    on both sides makes the test read high). Both splits are then shuffled. Done with numpy
    rather than scikit-learn, whose import alone costs seconds here.
    """
    rows = len(frame)
    n_test = math.ceil(test_size * rows)
    if not 0 < n_test < rows:
        raise SourceError(
            f"{where}: {rows} rows are too few to carve a test split of {test_size}:"
            " give more rows or a source with a test split"
        )
    rng = np.random.default_rng(seed)
    if MOVIE_COLUMN in frame.columns:
        test_mask = _movies_for_test(frame[MOVIE_COLUMN].to_numpy(), n_test, rng, where)
        train_idx, test_idx = np.flatnonzero(~test_mask), np.flatnonzero(test_mask)
    else:
        train_idx, test_idx = _stratified(frame["sentiment"].to_numpy(), n_test, rng)
    train = frame.iloc[rng.permutation(train_idx)]
    test = frame.iloc[rng.permutation(test_idx)]
    return train.reset_index(drop=True), test.reset_index(drop=True)


def drop_test_copies(unlabeled: pd.DataFrame, test: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The unlabeled reviews without those that are a test review as the model sees it (equal
    once cleaned: case, whitespace, HTML variants too), and how many went.

    The aclImdb unlabeled reviews hold a few hundred copies of labelled reviews (generic or
    re-posted texts); one of a test review would let self-training see the test split.
    """
    copies = model_text(unlabeled["review"]).isin(set(model_text(test["review"])))
    return unlabeled[~copies].reset_index(drop=True), int(copies.sum())


def _movies_for_test(
    movies: np.ndarray, n_test: int, rng: np.random.Generator, where: str
) -> np.ndarray:
    """Rows of whole movies, drawn in a seeded order until at least n_test rows are in."""
    names, inverse, sizes = np.unique(movies, return_inverse=True, return_counts=True)
    order = rng.permutation(len(names))
    taken = order[: int(np.searchsorted(np.cumsum(sizes[order]), n_test)) + 1]
    if len(taken) == len(names):
        raise SourceError(
            f"{where}: the reviews are about {len(names)} movies, too few to carve a test split"
            " of whole movies: give more movies or a source with a test split"
        )
    return np.isin(inverse, taken)


def _stratified(
    labels: np.ndarray, n_test: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test row indices, each label shared out in proportion (largest remainder)."""
    rows = len(labels)
    classes = sorted(set(labels))
    members = {label: np.flatnonzero(labels == label) for label in classes}
    quotas = {label: n_test * len(members[label]) / rows for label in classes}
    take = {label: math.floor(quota) for label, quota in quotas.items()}
    by_remainder = sorted(classes, key=lambda label: take[label] - quotas[label])
    for label in by_remainder[: n_test - sum(take.values())]:
        take[label] += 1
    test_idx, train_idx = [], []
    for label in classes:
        drawn = rng.permutation(members[label])
        test_idx.append(drawn[: take[label]])
        train_idx.append(drawn[take[label] :])
    return np.concatenate(train_idx), np.concatenate(test_idx)


def _current_manifest(out_dir: Path) -> Manifest | None:
    """The manifest of a complete existing output folder, or None."""
    if not all((out_dir / name).is_file() for name in SPLITS.values()):
        return None
    try:
        manifest = read_manifest(out_dir)
    except (StageError, TypeError):  # missing, unreadable or from an older layout
        return None
    if manifest.unlabeled_rows and not (out_dir / UNLABELED_FILE_NAME).is_file():
        return None
    return manifest


def checksum_for(file_cfg: IngestConfig, cfg: IngestConfig) -> IngestConfig:
    """Apply `ingest.sha256` only to the source it was written for.

    The checksum in params.yaml describes params.yaml's source. A source given on the command
    line (`-P source=...`) without its own `--sha256` is downloaded unchecked, and its computed
    digest is logged and recorded in the manifest.
    """
    if cfg.source == file_cfg.source or cfg.sha256 != file_cfg.sha256 or not cfg.sha256:
        return cfg
    if sources.kind_name(cfg.source) == "https":
        log.info(
            "ingest.sha256 in the params file belongs to %s, not to %s: not checked"
            " (pass --sha256 to check it)",
            file_cfg.source,
            sources.describe(cfg.source),
        )
    return dataclasses.replace(cfg, sha256="")


def _command(params: Params, cfg: IngestConfig, args: argparse.Namespace) -> None:
    """Ingest inside the `ingest` MLflow run and log what happened."""
    cfg = checksum_for(params.ingest, cfg)
    sources.check(cfg.source.strip(), cfg)  # before a run exists to log it in
    out_dir = INGESTED_DIR
    with lock.hold("ingest"), store.stage_run("ingest"):
        store.log_config(dataclasses.replace(cfg, source=sources.describe(cfg.source)))
        outcome = run(cfg, out_dir=out_dir, download_dir=DOWNLOAD_DIR)
        manifest = outcome.manifest
        metrics = {"ingest_seconds": outcome.seconds}
        for split, rows in manifest.rows.items():
            positives = manifest.positives[split]
            metrics |= {
                f"{split}_rows": rows,
                f"{split}_positive": positives,
                f"{split}_negative": rows - positives,
            }
        metrics["unlabeled_rows"] = manifest.unlabeled_rows
        mlflow.log_metrics(metrics)
        mlflow.set_tags(
            {
                OUTPUT_TAG: "written" if outcome.written else "unchanged",
                CONTENT_TAG: manifest.content_sha256,
            }
        )
        mlflow.log_artifact(str(out_dir / MANIFEST_FILE_NAME), artifact_path="ingest")


def main(argv: list[str] | None = None) -> int:
    return cli.main("ingest", argv, _command)


if __name__ == "__main__":
    sys.exit(main())

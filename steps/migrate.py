"""`migrate` entry point: a version logged as pickles, re-logged as code and data, as a new version.

    python -m steps.migrate --version 3      (make migrate VERSION=3; -e migrate -P version=3)

Versions logged before the model became code and data (pyfunc/README.md) are pickles: a
cloudpickled PythonModel and the fitted pipeline as a joblib file. Where
MLFLOW_ALLOW_PICKLE_DESERIALIZATION is false (the pods, `make serve`) they do not load. This stage
reads such a version's pipeline once, here, whatever the guard says, because you named the
version: it is the one pickle it reads. It logs the same fitted weights as code and data in its
own run, scores reviews with both models (the old one in its own process with its own code, the
behavioural checks' reviews and the version's analysis sample) and, when every score agrees
within `migrate.max_score_difference`, registers the result as a new version of the same run (so
deploy finds its analysis sample) with the old one's card and tags, and `migrated_from`; the old
version gets `migrated_to`. No alias moves: `make promote VERSION=<new>` when it should serve.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

from pyfunc import packaging
from pyfunc.contract import PIPELINE_ARTIFACT, PROFILE_ARTIFACT
from steps.entry import cli
from steps.measure import behavioural, sample, scoring
from steps.stage import hints, lock
from steps.stage.config import MigrateConfig, Params
from steps.stage.errors import StageError, one_line
from steps.tracking import cards, loading, registry, store

log = logging.getLogger(__name__)

# The tags that describe the model itself (register sets them): the new version carries them on.
CARRIED_TAGS = (registry.CHECKS_TAG, registry.ACCURACY_TAG, registry.DATA_TAG, registry.COMMIT_TAG)
# Reviews every model must score the same beside the checks' and the sample's: no known word.
EDGE_REVIEWS = ("", "<br /><br />", "qwertz asdfgh")


@dataclass(frozen=True)
class Migrated:
    """What a migration did."""

    model_name: str
    old_version: str
    new_version: str
    model_uri: str  # the new version's logged model
    reviews: int  # reviews both models scored
    max_difference: float  # the largest score difference between them

    def summary(self) -> str:
        return (
            f"{self.model_name} version {self.old_version} (pickles) -> version"
            f" {self.new_version} (code and data, {self.model_uri}): {self.reviews} reviews"
            f" scored within {self.max_difference:.1e} of each other; no alias moved"
            f" (make promote VERSION={self.new_version} when it should serve)"
        )


def run(cfg: MigrateConfig, model_name: str, version: str) -> Migrated:
    """Re-log `version` of `model_name` (logged as pickles) as code and data, as a new version."""
    old = registry.get_version(model_name, version)
    what = f"{model_name} version {old.version}"
    uri = registry.model_uri(model_name, old.version)
    with tempfile.TemporaryDirectory(prefix="imdb-migrate-") as tmp:
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
        except Exception as exc:  # MlflowException, OSError...: one line either way
            raise StageError(f"cannot download {what}: {one_line(exc, 300)}") from None
        if not loading.is_pickled(local):
            raise StageError(f"{what} is already code and data: nothing to migrate")
        pipeline = _pickled_pipeline(local, what)
        profile = _profile(local)
    reviews = _comparison_reviews(old, what)
    info = packaging.log_model(pipeline, name=model_name, profile=profile)  # as train names it
    mlflow.set_tags({registry.MIGRATED_FROM_TAG: old.version, "migrated_from_uri": uri})
    with _pickles_allowed():  # the old version loads in its own process, as it was logged
        before, after = scoring.score_models(
            [(uri, what), (info.model_uri, "its code-and-data copy")], reviews
        )
    difference = float(np.abs(before["score"].to_numpy() - after["score"].to_numpy()).max())
    mlflow.log_metrics({"reviews_compared": len(reviews), "max_score_difference": difference})
    if difference > cfg.max_score_difference or before["label"].tolist() != after["label"].tolist():
        raise StageError(
            f"{what} and its code-and-data copy score {len(reviews)} reviews up to {difference:.3g}"
            f" apart (migrate.max_score_difference: {cfg.max_score_difference}): not registered;"
            " train and register a new version instead"
        )
    new = _register(model_name, old, info, difference, len(reviews))
    return Migrated(
        model_name=model_name,
        old_version=str(old.version),
        new_version=str(new.version),
        model_uri=info.model_uri,
        reviews=len(reviews),
        max_difference=difference,
    )


def _pickled_pipeline(local: Path, what: str) -> Any:
    """The fitted pipeline of a version logged as pickles (the one pickle this stage reads)."""
    import joblib

    flavor = mlflow.models.Model.load(str(local)).flavors[mlflow.pyfunc.FLAVOR_NAME]
    relative = flavor.get("artifacts", {}).get(PIPELINE_ARTIFACT, {}).get("path")
    if not relative:
        raise StageError(f"{what} has no {PIPELINE_ARTIFACT!r} artifact: it is not this model")
    log.warning("reading %s's pickled pipeline (%s): you named this version", what, relative)
    try:
        return joblib.load(local / relative)
    except Exception as exc:  # any unpickling error: classes renamed since, a damaged file...
        raise StageError(
            f"cannot read {what}'s pipeline with this code ({one_line(exc, 200)}): train and"
            " register a new version instead"
        ) from None


def _profile(local: Path) -> dict | None:
    """The training profile logged with the version (drift monitoring reads it), if any."""
    flavor = mlflow.models.Model.load(str(local)).flavors[mlflow.pyfunc.FLAVOR_NAME]
    relative = flavor.get("artifacts", {}).get(PROFILE_ARTIFACT, {}).get("path")
    return json.loads((local / relative).read_text(encoding="utf-8")) if relative else None


def _comparison_reviews(old: ModelVersion, what: str) -> list[str]:
    """The behavioural checks' reviews, a few without known words, and the version's analysis
    sample (real test reviews) when its run has one."""
    texts = [t for t, _ in behavioural.MINIMUM_FUNCTIONALITY]
    texts += [t for pair in behavioural.DIRECTIONAL + behavioural.INVARIANCE for t in pair]
    texts += EDGE_REVIEWS
    try:
        texts += sample.load(old.run_id, what).reviews
    except StageError as exc:
        log.warning("comparing on the checks' reviews only: %s", exc)
    return list(dict.fromkeys(texts))


@contextmanager
def _pickles_allowed() -> Iterator[None]:
    """MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true for this process and its children, then back."""
    before = os.environ.get(loading.GUARD_ENV)
    os.environ[loading.GUARD_ENV] = "true"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(loading.GUARD_ENV, None)
        else:
            os.environ[loading.GUARD_ENV] = before


def _register(
    model_name: str, old: ModelVersion, info: Any, difference: float, reviews: int
) -> ModelVersion:
    """The new version: the old one's run, card and model tags, and where it came from."""
    tags = {k: old.tags[k] for k in CARRIED_TAGS if k in old.tags}
    tags[registry.MIGRATED_FROM_TAG] = str(old.version)
    client = MlflowClient()
    with registry.registry_call(f"register {info.model_uri} as {model_name}"):
        new = client.create_model_version(
            name=model_name,
            source=info.model_uri,
            run_id=old.run_id,  # the run that trained these weights (evaluation, sample)
            tags=tags,
            description=old.description,
            model_id=info.model_id,
        )
    run_id = mlflow.active_run().info.run_id
    cards.add_history(
        model_name,
        new.version,
        f"migrated from version {old.version} (pickles) to code and data by run `{run_id}`;"
        f" {reviews} reviews scored within {difference:.1e}",
        client,
    )
    registry.set_version_tags(model_name, old.version, {registry.MIGRATED_TO_TAG: new.version})
    cards.add_history(
        model_name, old.version, f"re-logged as version {new.version} (code and data)", client
    )
    mlflow.set_tag(registry.MIGRATED_TO_TAG, new.version)
    return new


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("which version (also as `mlflow run -P version=N`)")
    group.add_argument(
        "--version", default=None, metavar="N", help="the version logged as pickles to re-log"
    )


def _command(params: Params, cfg: MigrateConfig, args: argparse.Namespace) -> None:
    model_name = params.register.model_name
    if not (args.version or "").strip():  # checked here, after the parameters: they come first
        raise StageError(
            f"migrate needs the version to re-log: {hints.command('migrate', {'version': 'N'})}"
        )
    with lock.hold("migrate"), store.stage_run("migrate"):
        store.log_config(cfg)
        mlflow.log_param("version", args.version)
        migrated = run(cfg, model_name, args.version)
    print(migrated.summary())


def main(argv: list[str] | None = None) -> int:
    return cli.main("migrate", argv, _command, add_arguments)


if __name__ == "__main__":
    sys.exit(main())

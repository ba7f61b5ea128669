"""`score` entry point: a label and a score for every review of a batch of any size.

    python -m steps.score --input reviews.parquet --output scores.parquet
    make score INPUT=reviews.csv OUTPUT=scores.csv
    mlflow run . -e score -P input=s3://bucket/reviews/ -P output=scores.parquet -P engine=spark

Reads any source ingest accepts (a folder, a CSV/Parquet file, https://, s3://, an ODBC query),
or a Parquet dataset folder, needing only a review column (`score.review_column`; labels are
not needed, an id column is kept), and writes Parquet or CSV (by the output's ending) with the
id or row number, label, score, and the registered model name and version that scored it. The
output appears only when complete. Rows that cannot be scored (null, empty, not UTF-8) are
skipped and counted, or stop the run (`score.bad_rows`).

engine=local streams the input through the model in this process, chunk by chunk, in bounded
memory; engine=spark reads, scores (mlflow.pyfunc.spark_udf) and writes with Apache Spark on
`score.spark.master` or $SPARK_MASTER (steps/batch/README.md, "On a real Spark cluster"). The run
is logged to MLflow: input, output, model version, rows, reviews/s, label shares.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow

from pyfunc.contract import SERVING_LIMITS_ENV, TEXT_COLUMN
from steps.batch import output
from steps.batch.local import Tally, score_stream
from steps.data.sources import Columns, ReviewStream, open_stream
from steps.entry import cli
from steps.measure import scoring
from steps.stage.coercion import override
from steps.stage.config import IngestConfig, Params, ScoreConfig
from steps.stage.errors import StageError, one_line
from steps.stage.paths import DOWNLOAD_DIR
from steps.tracking import loading, registry, store

log = logging.getLogger(__name__)

SPARK_MASTER_ENV = "SPARK_MASTER"
_REGISTERED = re.compile(r"models:/(?P<name>[^/@]+)(?:@(?P<alias>[\w.-]+)|/(?P<version>\d+))")


@dataclass(frozen=True)
class ModelRef:
    """The model a run scores with: where to load it from, and what the output calls it."""

    uri: str  # as given
    load_uri: str  # an alias resolved to its version, so one run uses one version throughout
    name: str  # the registered name, or the URI for an unregistered model
    version: str  # the registered version, or "" for an unregistered model


@dataclass(frozen=True)
class Scored:
    """What a score run did."""

    input: str
    output: str
    engine: str
    model: ModelRef
    tally: Tally

    @property
    def reviews_per_second(self) -> float:
        return self.tally.scored / self.tally.seconds if self.tally.seconds else 0.0

    @property
    def label_shares(self) -> dict[str, float]:
        scored = self.tally.scored or 1
        return {label: count / scored for label, count in sorted(self.tally.labels.items())}


def resolve_model(uri: str, registered_name: str) -> ModelRef:
    """`uri` ("" = models:/<registered_name>@champion) with an alias resolved to its version."""
    uri = uri.strip() or registry.model_uri(registered_name, registry.CHAMPION_ALIAS)
    match = _REGISTERED.fullmatch(uri)
    if not match:
        return ModelRef(uri=uri, load_uri=uri, name=uri, version="")
    name, alias = match["name"], match["alias"]
    if alias:
        found = registry.version_by_alias(name, alias)
        if found is None:
            known = registry.registered_model(name)
            why = (
                f"no model named {name!r} is registered"
                if known is None
                else f"{name} has no alias @{alias} (aliases: {', '.join(known.aliases) or 'none'})"
            )
            raise StageError(f"model {uri} does not resolve: {why}: register and promote one first")
        version = str(found.version)
    else:
        version = str(registry.get_version(name, match["version"]).version)
    return ModelRef(uri=uri, load_uri=registry.model_uri(name, version), name=name, version=version)


def run(
    cfg: ScoreConfig,
    ingest: IngestConfig,
    registered_name: str,
    download_dir: Path = DOWNLOAD_DIR,
) -> Scored:
    """Score `cfg.input` into `cfg.output` with `cfg.model` on `cfg.engine`."""
    target = output.target_of(cfg.output)
    if cfg.engine == "spark" and target.kind != "parquet":
        raise StageError(f"{target.uri}: engine=spark writes Parquet: end the output in .parquet")
    output.check_not_input(target, cfg.input)
    output.check_free(target, cfg.overwrite, ingest.s3_endpoint_url)
    source = dataclasses.replace(ingest, sha256="", sql_query=cfg.sql_query)
    columns = Columns(review=cfg.review_column, id=cfg.id_column)
    with (
        # Opened first: a missing input or column is reported before the model is fetched.
        open_stream(
            cfg.input, columns, source, download_dir, cfg.chunk_rows, "score.sql_query"
        ) as stream,
        tempfile.TemporaryDirectory(prefix="imdb-score-model-") as tmp,
    ):
        model = resolve_model(cfg.model, registered_name)
        model_dir = _download(model, Path(tmp))
        loading.check_loadable(model_dir, _described(model), model.version)
        _without_serving_limits()
        log.info(
            "scoring %s with %s on engine=%s into %s",
            stream.where,
            _described(model),
            cfg.engine,
            target.uri,
        )
        if cfg.engine == "local":
            tally = _score_locally(cfg, stream, model, model_dir, target, ingest.s3_endpoint_url)
        else:
            tally = _score_on_spark(cfg, stream, model, model_dir, target)
    if tally.rows == 0:
        raise StageError(f"{stream.where}: no rows to score")
    return Scored(
        input=stream.where, output=target.uri, engine=cfg.engine, model=model, tally=tally
    )


def _download(model: ModelRef, folder: Path) -> str:
    """The model's files, fetched once, so every engine loads the same copy."""
    try:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=model.load_uri, dst_path=str(folder)
        )
    except Exception as exc:  # MlflowException, OSError...: one line either way
        raise StageError(f"model {model.uri} does not resolve: {one_line(exc, 300)}") from None
    loading.require_mlmodel(local, model.uri)
    return local


def _without_serving_limits() -> None:
    """A server's request limits guard a server, not a batch: the model loaded here (and by
    the Spark workers this process starts) must not read them."""
    for name in SERVING_LIMITS_ENV:
        if os.environ.pop(name, None) is not None:
            log.info("%s is set here: not applied to a batch (it limits a server's requests)", name)


def _score_locally(
    cfg: ScoreConfig,
    stream: ReviewStream,
    model: ModelRef,
    model_dir: str,
    target: output.Target,
    s3_endpoint_url: str,
) -> Tally:
    try:
        loaded = scoring.load_model(model_dir)
    except StageError:
        raise
    except Exception as exc:  # MlflowException, OSError, ImportError...: the model's, one line
        raise StageError(f"model {model.uri} cannot be loaded: {one_line(exc, 300)}") from None
    schema = loaded.metadata.get_input_schema()
    text_column = schema.input_names()[0] if schema else TEXT_COLUMN
    try:
        with (
            output.committed(target, s3_endpoint_url) as tmp,
            output.TableWriter(tmp, target) as out,
        ):
            tally = score_stream(
                stream, loaded, text_column, out, model.name, model.version, cfg.bad_rows
            )
            if tally.rows == 0:
                raise StageError(f"{stream.where}: no rows to score")
    except OSError as exc:  # the reads are SourceErrors by now: this is the output's
        raise StageError(
            f"{target.uri}: cannot write the output ({exc.strerror or one_line(exc)}); nothing"
            " was written"
        ) from None
    return tally


def _score_on_spark(
    cfg: ScoreConfig, stream: ReviewStream, model: ModelRef, model_dir: str, target: output.Target
) -> Tally:
    from steps.batch import spark as engine

    session, started = engine.start_session(cfg.spark)
    try:
        columns = Columns(review=cfg.review_column, id=cfg.id_column)
        frame, review, ident = engine.frame_of(session, stream, columns)
        return engine.score(
            session,
            frame,
            review,
            ident,
            stream.where,
            model_dir,
            target,
            cfg.overwrite,
            cfg.spark.partitions,
            model.name,
            model.version,
            cfg.bad_rows,
        )
    finally:
        if started:
            session.stop()


def _described(model: ModelRef) -> str:
    return f"{model.name} version {model.version}" if model.version else model.uri


def summary(result: Scored) -> str:
    """What score prints when it is done."""
    tally = result.tally
    shares = ", ".join(f"{label} {share:.1%}" for label, share in result.label_shares.items())
    skipped = f"; skipped {tally.bad.total:,}: {tally.bad.summary()}" if tally.bad.total else ""
    return (
        f"scored {tally.scored:,} of {tally.rows:,} reviews from {result.input} with"
        f" {_described(result.model)} on engine={result.engine} in {tally.seconds:.1f} s"
        f" ({result.reviews_per_second:,.0f} reviews/s){skipped}; labels: {shares or 'none'}"
        f" -> {result.output}"
    )


def log_run(result: Scored) -> None:
    """Input, output, model and version as params; rows, speed and label shares as metrics."""
    tally = result.tally
    store.log_params(
        {
            "input_source": result.input,
            "output_uri": result.output,
            "model_uri": result.model.load_uri,
            "model_name": result.model.name,
            "model_version": result.model.version,
        }
    )
    metrics = {
        "rows": tally.rows,
        "rows_scored": tally.scored,
        "rows_skipped": tally.bad.total,
        "seconds": tally.seconds,
        "reviews_per_second": result.reviews_per_second,
        **{f"rows_skipped_{kind}": count for kind, count in tally.bad.counts.items()},
        **{f"share_{label}": share for label, share in result.label_shares.items()},
    }
    mlflow.log_metrics(metrics)


def _command(params: Params, cfg: ScoreConfig, args: argparse.Namespace) -> None:
    master = os.environ.get(SPARK_MASTER_ENV)
    if master and getattr(args, "spark.master") is None:  # -P spark.master=... wins over it
        cfg = override(cfg, {"spark.master": master}, origin=f"${SPARK_MASTER_ENV}")
    with store.stage_run("score"):
        store.log_config(cfg)
        result = run(cfg, params.ingest, params.register.model_name)
        log_run(result)
    print(summary(result))


def main(argv: list[str] | None = None) -> int:
    return cli.main("score", argv, _command)


if __name__ == "__main__":
    sys.exit(main())

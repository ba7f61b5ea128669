"""The Spark engine: read with Spark, score with `mlflow.pyfunc.spark_udf`, write Parquet with
Spark, so the same command scores on a laptop (`local[*]`) or on a cluster.

The session: when one exists (spark-submit, a Databricks or EMR job, a notebook), it is used as
it is, its master included. Otherwise one is started on `score.spark.master` (or $SPARK_MASTER),
with the workers running this interpreter (PYSPARK_PYTHON), bound to loopback for local masters,
and quiet (steps/batch/log4j2.properties, no progress bars, no UI for local masters).

The model is scored as MLflow ships it to Spark: `spark_udf(spark, model, env_manager="local")`
loads it in every Python worker with the packages installed there (this project's, on a local
master; a cluster's executors need the same, see the README next to this code). The review
column is passed by position, so the model reads it under its own input name.

Reading: Parquet and CSV files and folders by their ending, with the CSV options that read what
pandas writes (header, quoted multi-line fields, "" escapes, "" as an empty string, not null);
an https file from ingest's verified download cache: where the stream read of steps/data/sources/
says Spark can read it itself. ODBC queries and the aclImdb forms are read on the driver through
that stream and handed to Spark. Unscorable rows are found by the rule of steps/batch/checks.py
as Spark expressions, in one counting pass before any scoring.

Writing: a Parquet folder (part files + _SUCCESS) written to a hidden sibling and renamed onto
the target only when complete, through Hadoop's filesystem API (atomic on local disks and HDFS;
on object stores the rename is a copy, so readers should look for _SUCCESS).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pyfunc.contract import LABEL_FIELD, SCORE_FIELD, TEXT_COLUMN
from steps.batch import checks
from steps.batch.local import Tally
from steps.batch.output import ROW_COLUMN, Target
from steps.data.sources import Columns, ReviewStream
from steps.data.sources.streams import pick_column
from steps.stage import hints
from steps.stage.config import SparkConfig
from steps.stage.errors import StageError, one_line
from steps.tracking import loading

log = logging.getLogger(__name__)

LOG4J2_FILE = Path(__file__).resolve().parent / "log4j2.properties"
APP_NAME = "imdb-sentiment-score"
RESULT_TYPE = f"{LABEL_FIELD} string, {SCORE_FIELD} double"  # the model's output, as Spark types
INSTALL_HINT = "pip install '.[spark]' (make install-spark)"
JAVA_HINT = "install Java 17 or newer (Debian: apt-get install openjdk-17-jre-headless)"
# The CSV dialect pandas and ingest use: "" inside quotes escapes a quote, fields may span
# lines, and an empty field is an empty string (Spark would read an unquoted one as null).
CSV_OPTIONS = {
    "header": "true",
    "multiLine": "true",
    "escape": '"',
    "encoding": "UTF-8",
    "mode": "FAILFAST",
    "nullValue": "\u0000",
}
_KIND, _PID, _MID = "_score_kind", "_score_pid", "_score_mid"


def start_session(cfg: SparkConfig) -> tuple[Any, bool]:
    """The Spark session to score in, and whether this call started it (then it is stopped)."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise StageError(f"engine=spark needs pyspark, an optional extra: {INSTALL_HINT}") from None
    from pyspark.sql import SparkSession

    # PySpark >= 4.2 warns at every Arrow call that its pandas 3 support is incomplete; the parts
    # spark_udf uses work (tests/batch compares them with the local engine).
    warnings.filterwarnings(
        "ignore", message="PySpark does not yet fully support pandas", category=FutureWarning
    )
    active = SparkSession.getActiveSession()
    if active is not None:
        log.info("scoring in the running Spark session (master %s)", active.sparkContext.master)
        return active, False
    if os.environ.get("PYSPARK_GATEWAY_PORT"):  # spark-submit started the JVM and set its master
        return SparkSession.builder.appName(APP_NAME).getOrCreate(), True
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        raise StageError(f"engine=spark needs Java, which is not on PATH: {JAVA_HINT}")
    master = cfg.master
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers: this venv's packages
    local = master.startswith("local")
    if local:  # else the driver must be reachable from the executors
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    settings = {
        "spark.driver.memory": cfg.driver_memory,
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile={LOG4J2_FILE.as_uri()}",
    }
    if local:
        settings["spark.ui.enabled"] = "false"
    guard = os.environ.get(loading.GUARD_ENV)
    if guard is not None:  # the executors load the model: they refuse pickles if this process does
        settings[f"spark.executorEnv.{loading.GUARD_ENV}"] = guard
    settings.update(extra_settings(cfg.conf))
    builder = SparkSession.builder.appName(APP_NAME).master(master)
    for key, value in settings.items():
        builder = builder.config(key, value)
    started = time.perf_counter()
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # PySparkRuntimeError JAVA_GATEWAY_EXITED and the like
        raise StageError(
            f"cannot start Spark on {master} ({one_line(exc, 300)}): check score.spark.master"
            f" and Java 17+ ({JAVA_HINT})"
        ) from None
    spark.sparkContext.setLogLevel("ERROR")
    logging.getLogger("py4j").setLevel(logging.WARNING)  # narrates every connection at INFO
    log.info(
        "started Spark %s on %s in %.1f s (%d cores)",
        spark.version,
        master,
        time.perf_counter() - started,
        spark.sparkContext.defaultParallelism,
    )
    return spark, True


def extra_settings(conf: tuple[str, ...]) -> dict[str, str]:
    """score.spark.conf's key=value entries (their form is checked with the field, config.py)."""
    pairs = (entry.partition("=") for entry in conf if entry.strip())
    return {key.strip(): value.strip() for key, _, value in pairs}


def frame_of(spark: Any, stream: ReviewStream, columns: Columns) -> tuple[Any, str, str | None]:
    """The input as a DataFrame, its review column and its id column (None: rows get numbered).

    Spark reads what it can itself (the stream's location); the rest is read on the driver."""
    if stream.location is None:
        return from_stream(spark, stream)
    reader = spark.read.option("recursiveFileLookup", "true")  # like the local reader's walk
    where = stream.where
    try:
        if stream.kind == "csv":
            frame = (
                reader.option("pathGlobFilter", "*.{csv,csv.gz,CSV,CSV.GZ}")
                .options(**CSV_OPTIONS)
                .csv(stream.location)
            )
        else:
            frame = reader.option("pathGlobFilter", "*.{parquet,pq}").parquet(stream.location)
    except Exception as exc:  # AnalysisException (path not found), Py4JJavaError...
        raise StageError(f"{where}: Spark cannot read it ({one_line(exc, 300)})") from None
    review = pick_column(frame.columns, columns.review, where, required=True)
    ident = pick_column(frame.columns, columns.id, where, required=False)
    if stream.kind == "csv":
        # CSV has no nulls: Spark reads an unquoted empty field as one, pandas (and the local
        # engine) as the empty string it is.
        from pyspark.sql import functions as F

        frame = frame.withColumn(review, F.coalesce(F.col(review), F.lit("")))
    return frame, review, ident


def from_stream(spark: Any, stream: ReviewStream) -> tuple[Any, str, str | None]:
    """A source Spark cannot read itself (ODBC, aclImdb), read on the driver and handed over."""
    import pyarrow as pa

    reviews, ids = [], []
    for chunk in stream.chunks:
        reviews += checks.replace_undecodable(chunk.reviews)
        if chunk.ids is not None:
            ids.append(chunk.ids)
    columns = {TEXT_COLUMN: pa.array(reviews, type=pa.string())}
    if stream.id_name is not None:
        columns = {stream.id_name: pa.concat_arrays(ids), **columns}
    log.info("read %s rows of %s on the driver", f"{len(reviews):,}", stream.where)
    return spark.createDataFrame(pa.table(columns)), TEXT_COLUMN, stream.id_name


def score(
    spark: Any,
    frame: Any,
    review: str,
    ident: str | None,
    where: str,
    model_dir: str,
    target: Target,
    overwrite: bool,
    partitions: int,
    model_name: str,
    model_version: str,
    bad_rows: str,
) -> Tally:
    """Score `frame` with the model in `model_dir` and commit the Parquet folder at `target`."""
    import mlflow
    from pyspark.sql import functions as F

    started = time.perf_counter()
    output = _hadoop_path(spark, target)
    if output.exists() and not overwrite:
        raise StageError(
            f"{target.uri}: the output exists: give another output, or"
            f" {hints.setting('overwrite', True)} to replace it (once the new one is complete)"
        )
    text = _as_text(frame, review, where)
    key = ident or ROW_COLUMN
    if ident is None:
        frame = with_row_numbers(frame)
    kind = (
        F.when(text.isNull(), checks.NULL)
        .when(text.rlike(checks.EMPTY_PATTERN), checks.EMPTY)
        .when(text.contains(checks.NOT_UTF8_CHARACTERS), checks.NOT_UTF8)
        .otherwise(checks.OK)
    )
    frame = frame.select(F.col(key), text.alias(review), kind.alias(_KIND))
    tally = Tally()
    counts = frame.groupBy(_KIND).agg(F.count(F.lit(1)).alias("n"), F.min(key).alias("first"))
    for row in counts.collect():
        tally.rows += row["n"]
        if row[_KIND] != checks.OK:
            tally.bad.add(checks.KINDS[row[_KIND]], row["n"], f"{key} {row['first']!r}")
    if tally.rows == 0:
        raise StageError(f"{where}: no rows to score")
    if tally.bad.total and bad_rows == "refuse":
        raise checks.refusal(where, tally.bad)
    good = frame.filter(F.col(_KIND) == checks.OK).drop(_KIND)
    wanted = partitions or spark.sparkContext.defaultParallelism
    if partitions or good.rdd.getNumPartitions() < wanted:
        # One Parquet row group or one CSV file is one split: spread the work over every core.
        good = good.repartition(wanted)
    with _quiet("mlflow"):  # its advice to recreate the training environment: we run this one
        predict = mlflow.pyfunc.spark_udf(
            spark, model_dir, env_manager="local", result_type=RESULT_TYPE
        )
    scored = good.select(F.col(key), predict(F.col(review)).alias("p")).select(
        key,
        f"p.{LABEL_FIELD}",
        f"p.{SCORE_FIELD}",
        F.lit(model_name).alias("model_name"),
        F.lit(model_version).alias("model_version"),
    )
    _write_committed(spark, scored, output, target, where)
    written = spark.read.parquet(str(output.path)).groupBy(LABEL_FIELD).count().collect()
    tally.labels.update({row[LABEL_FIELD]: row["count"] for row in written})
    tally.scored = sum(tally.labels.values())
    tally.seconds = time.perf_counter() - started
    return tally


@contextmanager
def _quiet(logger: str) -> Iterator[None]:
    """Only errors from `logger` inside the block."""
    chatty = logging.getLogger(logger)
    level = chatty.level
    chatty.setLevel(logging.ERROR)
    try:
        yield
    finally:
        chatty.setLevel(level)


def _as_text(frame: Any, column: str, where: str) -> Any:
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    kind = frame.schema[column].dataType
    # Spark keeps a string's bytes as written (Parquet writers need not check them) and reads a
    # binary column as bytes: invalid UTF-8 becomes U+FFFD, which the check counts as not UTF-8.
    if isinstance(kind, T.StringType):
        return F.make_valid_utf8(F.col(column))
    if isinstance(kind, T.BinaryType):
        return F.make_valid_utf8(F.col(column).cast("string"))
    if isinstance(kind, T.NullType):
        return F.col(column).cast("string")
    raise StageError(f"{where}: column {column!r} must hold text, found {kind.simpleString()}")


def with_row_numbers(frame: Any) -> Any:
    """`frame` with `row`: its rows numbered from 1 in the order read (files, then splits),
    computed from partition sizes (one counting pass) instead of a sort on one executor."""
    from pyspark.sql import functions as F

    frame = frame.withColumn(_PID, F.spark_partition_id()).withColumn(
        _MID, F.monotonically_increasing_id()
    )
    sizes = {row[_PID]: row["count"] for row in frame.groupBy(_PID).count().collect()}
    offsets, total = [], 0
    for pid in sorted(sizes):
        offsets += [F.lit(pid), F.lit(total)]
        total += sizes[pid]
    # monotonically_increasing_id() is the partition index << 33 plus the row's place in it.
    place = F.col(_MID) - F.col(_PID).cast("long") * (1 << 33)
    start = F.create_map(*offsets)[F.col(_PID)] if offsets else F.lit(0)
    return frame.withColumn(ROW_COLUMN, (start + place + 1).cast("long")).drop(_PID, _MID)


class _HadoopPath:
    """A path on whatever filesystem Hadoop resolves it to (local, hdfs, s3a...)."""

    def __init__(self, spark: Any, text: str) -> None:
        jvm = spark.sparkContext._jvm
        self.spark, self.jvm, self.path = spark, jvm, text
        self._path = jvm.org.apache.hadoop.fs.Path(text)
        self.fs = self._path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())

    def sibling(self, tag: str) -> _HadoopPath:
        name = f".{self._path.getName()}.{tag}-{uuid.uuid4().hex[:8]}"
        return _HadoopPath(self.spark, self._path.getParent().suffix(f"/{name}").toString())

    def child(self, name: str) -> _HadoopPath:
        return _HadoopPath(self.spark, self._path.suffix(f"/{name}").toString())

    def exists(self) -> bool:
        return bool(self.fs.exists(self._path))

    def rename(self, other: _HadoopPath) -> None:
        if not self.fs.rename(self._path, other._path):
            raise StageError(f"cannot rename {self.path} to {other.path}")

    def delete(self) -> None:
        self.fs.delete(self._path, True)


def _hadoop_path(spark: Any, target: Target) -> _HadoopPath:
    text = target.uri if target.scheme else target.path.resolve().as_uri()
    return _HadoopPath(spark, text)


def _write_committed(
    spark: Any, scored: Any, output: _HadoopPath, target: Target, where: str
) -> None:
    """Write to a hidden sibling folder, check Spark's _SUCCESS marker, then rename it onto the
    target (an existing one is moved aside first and deleted after)."""
    tmp = output.sibling("tmp")
    try:
        try:
            scored.write.mode("errorifexists").parquet(tmp.path)
        except Exception as exc:  # the model or a task failed: Python's error, in one line
            raise StageError(f"{where}: scoring on Spark failed ({_reason(exc)})") from None
        if not tmp.child("_SUCCESS").exists():
            raise StageError(f"Spark wrote no _SUCCESS marker in {tmp.path}: nothing was kept")
        old = output.sibling("old") if output.exists() else None
        if old is not None:
            output.rename(old)
        tmp.rename(output)
        if old is not None:
            old.delete()
    finally:
        if tmp.exists():
            tmp.delete()
    log.info("wrote %s", target.uri)


def _reason(exc: Exception) -> str:
    """The last Python error line of a failed Spark job (its JVM wrapper says little)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    python = [line for line in lines if "Error:" in line or "Exception:" in line]
    return one_line(python[-1] if python else (lines[0] if lines else exc), 400)

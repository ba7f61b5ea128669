"""`score -P engine=spark` for real: pyspark from PyPI on Java 17, master local[2], against the
local engine on the same inputs (labels equal, scores within 1e-9, ids kept, the same rows
counted and set aside), atomic commits, and one-line errors.

One Spark session serves the module (tests/steps/conftest.py `spark`); `score` uses the running
session as it would under spark-submit. The command line starts its own in one test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import PICKLE_GUARD, make_reviews, reviews_with_ids, spark_missing, write_aclimdb

from steps.stage.errors import StageError
from steps.stage.paths import PROJECT_ROOT

pytestmark = [pytest.mark.spark, pytest.mark.slow]


@pytest.fixture(autouse=True)
def _pickles_refused(monkeypatch):
    """The driver refuses pickles as the session's executors do (tests/steps/conftest.py)."""
    monkeypatch.setenv(PICKLE_GUARD, "false")


SCORE_TOLERANCE = 1e-9


def both_engines(run_score, tmp_path: Path, source: Path, **settings) -> tuple:
    """Score `source` with each engine; the two outputs as frames and the two results."""
    outputs, results = {}, {}
    for engine in ("local", "spark"):
        out = tmp_path / f"{engine}.parquet"
        results[engine] = run_score(input=str(source), output=str(out), engine=engine, **settings)
        outputs[engine] = pd.read_parquet(out)
    return outputs["local"], outputs["spark"], results["local"], results["spark"]


def assert_same_scores(local: pd.DataFrame, spark: pd.DataFrame, key: str) -> None:
    assert len(local) == len(spark)
    spark = spark.set_index(key).loc[local[key]].reset_index()  # Spark writes in any order
    assert spark[key].tolist() == local[key].tolist()
    assert spark["label"].tolist() == local["label"].tolist()
    assert np.abs(spark["score"].to_numpy() - local["score"].to_numpy()).max() <= SCORE_TOLERANCE
    for column in ("model_name", "model_version"):
        assert spark[column].tolist() == local[column].tolist()


def test_the_session_refuses_pickles_on_its_executors_as_the_driver_does(spark):
    assert spark.sparkContext.getConf().get(f"spark.executorEnv.{PICKLE_GUARD}") == "false"


def test_engines_agree_on_parquet_with_ids(spark, run_score, model_dir, tmp_path, in_process):
    frame = reviews_with_ids(800, seed=81)
    pq.write_table(pa.Table.from_pandas(frame), tmp_path / "reviews.parquet")  # one row group
    local, on_spark, local_result, spark_result = both_engines(
        run_score, tmp_path, tmp_path / "reviews.parquet", model=str(model_dir)
    )
    assert_same_scores(local, on_spark, "id")
    assert sorted(on_spark["id"]) == frame["id"].tolist()  # every id kept, as int64
    assert on_spark["id"].dtype == np.int64
    expected = in_process(frame["review"].tolist())
    assert local["label"].tolist() == expected["label"].tolist()
    assert spark_result.tally.rows == local_result.tally.rows == 800
    assert spark_result.tally.labels == local_result.tally.labels
    # Spark spread the single row group over both cores.
    parts = [p for p in (tmp_path / "spark.parquet").iterdir() if p.name.startswith("part-")]
    assert len(parts) == 2


def bad_csv(path: Path) -> None:
    """200 synthetic reviews (quoted, one with "" escapes over two lines, as pandas writes them)
    and, as rows 101-105, every kind of bad review a CSV can hold: an unquoted empty field, a
    quoted empty one, whitespace, Latin-1 bytes, and the U+FFFD an earlier decoder left."""
    reviews = make_reviews(200, seed=82)["review"].tolist()
    reviews[3] = 'A "quoted" superb film,\nover two lines.'
    good = ['"' + r.replace('"', '""') + '",7\n' for r in reviews]
    bad = [
        b",5\n",
        b'"",5\n',
        b'" \t ",5\n',
        b'"Sch\xf6n, superb.",5\n',
        b'"Dull \xef\xbf\xbd.",5\n',
    ]
    body = b"review,stars\n" + "".join(good[:100]).encode() + b"".join(bad)
    path.write_bytes(body + "".join(good[100:]).encode())


def test_engines_agree_on_csv_without_ids_and_set_aside_the_same_rows(
    spark, run_score, model_dir, tmp_path
):
    bad_csv(tmp_path / "reviews.csv")
    local, on_spark, local_result, spark_result = both_engines(
        run_score, tmp_path, tmp_path / "reviews.csv", model=str(model_dir)
    )
    assert_same_scores(local, on_spark, "row")
    assert local_result.tally.bad.counts == {"null": 0, "empty": 3, "not_utf8": 2}
    assert spark_result.tally.bad.counts == local_result.tally.bad.counts
    assert spark_result.tally.rows == local_result.tally.rows == 205
    assert sorted(local["row"]) == [*range(1, 101), *range(106, 206)]


def test_engines_agree_on_a_folder_with_nulls_and_undecodable_bytes(
    spark, run_score, model_dir, tmp_path
):
    folder = tmp_path / "dataset"
    folder.mkdir()
    reviews = make_reviews(300, seed=83)["review"].tolist()
    for i in range(3):
        values = [r.encode() for r in reviews[i * 100 : (i + 1) * 100]]
        values[5], values[6] = None, b"caf\xe9 and a superb film"  # null; Latin-1, not UTF-8
        table = pa.table({"id": [f"{i}-{j}" for j in range(100)], "review": values})
        pq.write_table(table, folder / f"part-{i:05d}.parquet")  # review is binary here
    local, on_spark, local_result, spark_result = both_engines(
        run_score, tmp_path, folder, model=str(model_dir)
    )
    assert_same_scores(local, on_spark, "id")
    assert local_result.tally.bad.counts == {"null": 3, "empty": 0, "not_utf8": 3}
    assert spark_result.tally.bad.counts == local_result.tally.bad.counts
    assert len(on_spark) == 294


def test_engines_agree_on_a_source_spark_cannot_read_itself(spark, run_score, model_dir, tmp_path):
    # The aclImdb layout: its kind's stream is read on the driver and handed to Spark.
    splits = {"train": make_reviews(60, seed=84), "test": make_reviews(40, seed=85)}
    acl = write_aclimdb(tmp_path / "extracted", splits)
    local, on_spark, local_result, spark_result = both_engines(
        run_score, tmp_path, acl, model=str(model_dir)
    )
    assert_same_scores(local, on_spark, "row")
    assert sorted(on_spark["row"]) == list(range(1, 101))
    assert spark_result.tally.labels == local_result.tally.labels


def test_refused_bad_rows_write_nothing(spark, run_score, model_dir, tmp_path):
    bad_csv(tmp_path / "reviews.csv")
    with pytest.raises(StageError) as raised:
        run_score(
            input=str(tmp_path / "reviews.csv"),
            output=str(tmp_path / "scores.parquet"),
            engine="spark",
            model=str(model_dir),
            bad_rows="refuse",
        )
    message = str(raised.value)
    assert (
        "5 reviews cannot be scored: 3 empty (first: row 101), 2 not UTF-8 (first: row 104)"
        in message
    )
    assert "\n" not in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reviews.csv"]


def test_a_failed_job_leaves_the_old_output_whole(spark, run_score, failing_model_dir, tmp_path):
    reviews_with_ids(50, seed=84).to_parquet(tmp_path / "reviews.parquet", index=False)
    target = tmp_path / "scores.parquet"
    target.mkdir()
    (target / "part-00000.parquet").write_bytes(b"yesterday")
    settings = {"input": str(tmp_path / "reviews.parquet"), "output": str(target)}
    with pytest.raises(StageError, match="the output exists"):
        run_score(**settings, engine="spark", model=str(failing_model_dir))
    with pytest.raises(StageError) as raised:
        run_score(**settings, engine="spark", model=str(failing_model_dir), overwrite=True)
    assert "scoring on Spark failed" in str(raised.value)
    assert "the model broke on purpose" in str(raised.value)
    assert [p.name for p in target.iterdir()] == ["part-00000.parquet"]
    assert (target / "part-00000.parquet").read_bytes() == b"yesterday"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".scores.parquet")]


def test_the_command_line_starts_its_own_quiet_session_on_spark_master(model_dir, tmp_path):
    if reason := spark_missing():
        pytest.skip(reason)  # the `spark` fixture's rule; CI has both
    make_reviews(60, seed=85)[["review"]].to_csv(tmp_path / "reviews.csv", index=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PYSPARK_"))}
    env.update(SPARK_MASTER="local[1]", MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'm.db'}")
    env[PICKLE_GUARD] = "false"  # and the session it starts passes it to its executors
    done = subprocess.run(
        [
            sys.executable, "-m", "steps.score", "--engine", "spark", "--model", str(model_dir),
            "--input", str(tmp_path / "reviews.csv"), "--output", str(tmp_path / "s.parquet"),
        ],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "on local[1]" in done.stderr  # $SPARK_MASTER, over params.yaml's local[*]
    assert "scored 60 of 60 reviews" in done.stdout
    assert sorted(pd.read_parquet(tmp_path / "s.parquet")["row"]) == list(range(1, 61))
    for noise in ("Setting default log level", "env_manager", "WARN ", "FutureWarning"):
        assert noise not in done.stderr, noise


def test_no_java_is_one_line(tmp_path):
    if (reason := spark_missing()) and "pyspark" in reason:
        pytest.skip(reason)
    child = (
        "from steps.batch.spark import start_session\n"
        "from steps.stage.config import SparkConfig\n"
        "start_session(SparkConfig('local[1]', '1g', 0, ()))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = str(tmp_path)  # no java anywhere on it
    done = subprocess.run(
        [sys.executable, "-c", child], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == (
        "steps.stage.errors.StageError: engine=spark needs Java, which is not on PATH: install"
        " Java 17 or newer (Debian: apt-get install openjdk-17-jre-headless)"
    )

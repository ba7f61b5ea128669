"""`score` with the local engine: a real model scores files, folders, S3 objects, downloads and
ODBC queries into Parquet and CSV, in chunks; bad rows and bad input are reported, never guessed.

The engine=spark side, and the two engines against each other: tests/steps/test_score_spark.py.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from local_services import BUCKET
from mlflow.tracking import MlflowClient
from support import make_reviews, reviews_with_ids

from steps import score
from steps.data.sources import Columns, open_stream
from steps.stage.config import load_params
from steps.stage.errors import SourceError, StageError
from steps.stage.paths import PROJECT_ROOT
from steps.tracking import registry, store

PARAMS = load_params(PROJECT_ROOT / "params.yaml")
MODEL_NAME = PARAMS.register.model_name


def cli(*argv: str) -> int:
    """`python -m steps.score ...` in this process, with the project's params.yaml."""
    return score.main(["--params", str(PROJECT_ROOT / "params.yaml"), *argv])


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_parquet_with_ids_is_scored_like_the_model_in_process(
    tmp_path, model_dir, in_process, run_score
):
    frame = reviews_with_ids(300, seed=62)  # `sentiment` is there too, and ignored
    frame.to_parquet(tmp_path / "reviews.parquet", index=False)
    result = run_score(
        input=str(tmp_path / "reviews.parquet"),
        output=str(tmp_path / "out" / "scores.parquet"),
        model=str(model_dir),
        chunk_rows=128,
    )
    out = pd.read_parquet(tmp_path / "out" / "scores.parquet")
    assert list(out.columns) == ["id", "label", "score", "model_name", "model_version"]
    assert out["id"].dtype == np.int64 and out["id"].tolist() == frame["id"].tolist()
    expected = in_process(frame["review"].tolist())
    assert out["label"].tolist() == expected["label"].tolist()
    np.testing.assert_allclose(out["score"], expected["score"], rtol=0, atol=1e-12)
    assert set(out["model_name"]) == {str(model_dir)} and set(out["model_version"]) == {""}
    assert (result.tally.rows, result.tally.scored, result.tally.bad.total) == (300, 300, 0)
    assert sum(result.label_shares.values()) == pytest.approx(1.0)
    assert files_under(tmp_path / "out") == ["scores.parquet"]  # no temp file left


@pytest.mark.parametrize("ending", [".csv", ".csv.gz"])
def test_csv_without_ids_numbers_rows_from_one_and_writes_csv(
    tmp_path, model_dir, ending, run_score
):
    frame = make_reviews(120, seed=63)[["review"]]
    frame.to_csv(tmp_path / "reviews.csv", index=False)
    out_file = tmp_path / f"scores{ending}"
    run_score(input=str(tmp_path / "reviews.csv"), output=str(out_file), model=str(model_dir))
    if ending == ".csv.gz":
        assert gzip.decompress(out_file.read_bytes()).startswith(b'"row","label","score"')
    out = pd.read_csv(out_file, keep_default_na=False)
    assert out["row"].tolist() == list(range(1, 121))
    assert set(out["label"]) <= {"positive", "negative", "unknown"}
    assert out["model_name"].nunique() == 1


def test_input_is_read_and_written_chunk_by_chunk(tmp_path, model_dir, run_score):
    frame = reviews_with_ids(1000, seed=64)
    pq.write_table(pa.Table.from_pandas(frame), tmp_path / "reviews.parquet", row_group_size=250)
    cfg = dataclasses.replace(PARAMS.ingest, source="")
    with open_stream(
        str(tmp_path / "reviews.parquet"), Columns("review", "id"), cfg, tmp_path, 100
    ) as stream:
        assert stream.total == 1000
        sizes = [len(chunk.reviews) for chunk in stream.chunks]
    assert sizes == [100] * 10  # never more than chunk_rows in memory
    run_score(
        input=str(tmp_path / "reviews.parquet"),
        output=str(tmp_path / "scores.parquet"),
        model=str(model_dir),
        chunk_rows=100,
    )
    written = pq.ParquetFile(tmp_path / "scores.parquet")
    assert written.metadata.num_row_groups == 10  # one per chunk, appended as it was scored
    assert written.metadata.num_rows == 1000


def test_a_parquet_dataset_folder_is_read_file_by_file(tmp_path, model_dir, in_process, run_score):
    # What Spark writes: part files (read in path order), a _SUCCESS marker, hidden checksums.
    folder = tmp_path / "dataset"
    frame = reviews_with_ids(90, seed=65)
    for i, start in enumerate(range(0, 90, 30)):
        part = folder / ("year=2026" if i == 2 else "") / f"part-{i:05d}.snappy.parquet"
        part.parent.mkdir(parents=True, exist_ok=True)
        frame.iloc[start : start + 30].to_parquet(part, index=False)
        (folder / f".part-{i:05d}.snappy.parquet.crc").write_bytes(b"crc")
    (folder / "_SUCCESS").write_bytes(b"")
    result = run_score(input=str(folder), output=str(tmp_path / "s.parquet"), model=str(model_dir))
    out = pd.read_parquet(tmp_path / "s.parquet")
    assert out["id"].tolist() == frame["id"].tolist()
    assert out["label"].tolist() == in_process(frame["review"].tolist())["label"].tolist()
    assert result.tally.rows == 90


def write_bad_csv(path: Path) -> bytes:
    """Six reviews as raw CSV bytes: fine, empty, whitespace, Latin-1, a U+FFFD, fine."""
    body = (
        b"id,review\n"
        b'a1,"A wonderful, brilliant film."\n'
        b"a2,\n"
        b'a3," \t "\n'
        b'a4,"Sehr sch\xf6n, a superb film."\n'
        b'a5,"A dull \xef\xbf\xbd film."\n'
        b'a6,"A dull and dreadful film."\n'
    )
    path.write_bytes(body)
    return body


def test_bad_rows_are_skipped_counted_and_never_labelled(tmp_path, model_dir, run_score):
    write_bad_csv(tmp_path / "reviews.csv")
    result = run_score(
        input=str(tmp_path / "reviews.csv"),
        output=str(tmp_path / "scores.parquet"),
        model=str(model_dir),
        bad_rows="skip",
    )
    out = pd.read_parquet(tmp_path / "scores.parquet")
    assert out["id"].tolist() == ["a1", "a6"]
    assert out["label"].tolist() == ["positive", "negative"]
    bad = result.tally.bad
    assert bad.counts == {"null": 0, "empty": 2, "not_utf8": 2}
    assert bad.summary() == "2 empty (first: id 'a2'), 2 not UTF-8 (first: id 'a4')"
    assert "skipped 4: 2 empty" in score.summary(result)


def test_nulls_in_parquet_are_skipped_by_row_number(tmp_path, model_dir, run_score):
    table = pa.table({"review": ["A superb film.", None, "A dreadful film.", None]})
    pq.write_table(table, tmp_path / "reviews.parquet")
    result = run_score(
        input=str(tmp_path / "reviews.parquet"),
        output=str(tmp_path / "scores.parquet"),
        model=str(model_dir),
    )
    assert pd.read_parquet(tmp_path / "scores.parquet")["row"].tolist() == [1, 3]
    assert result.tally.bad.summary() == "2 null (first: row 2)"


def test_bad_rows_refused_is_one_line_and_no_output(tmp_path, tracking_uri, model_dir, capsys):
    write_bad_csv(tmp_path / "reviews.csv")
    code = cli(
        "--input", str(tmp_path / "reviews.csv"), "--output", str(tmp_path / "s.parquet"),
        "--model", str(model_dir), "--bad_rows", "refuse",
    )  # fmt: skip
    assert code == 1
    (line,) = capsys.readouterr().err.strip().splitlines()[-1:]
    assert line.startswith(f"error: score: {tmp_path / 'reviews.csv'}: 4 reviews cannot be scored")
    assert "2 empty (first: id 'a2')" in line and "--bad_rows skip" in line
    assert not [name for name in files_under(tmp_path) if "s.parquet" in name]


def test_default_model_is_the_champion_and_the_run_is_logged(
    tmp_path, tracking_uri, model_dir, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # the stage's default download folder lands here
    store.configure()
    version = mlflow.register_model(model_dir.as_uri(), MODEL_NAME).version
    registry.set_alias(MODEL_NAME, registry.CHAMPION_ALIAS, version)
    reviews_with_ids(50, seed=66).to_csv(tmp_path / "reviews.csv", index=False)
    code = cli("--input", "reviews.csv", "--output", "scores.parquet")
    assert code == 0
    printed = capsys.readouterr().out
    assert (
        f"scored 50 of 50 reviews from reviews.csv with {MODEL_NAME} version {version}" in printed
    )
    out = pd.read_parquet(tmp_path / "scores.parquet")
    assert set(out["model_name"]) == {MODEL_NAME} and set(out["model_version"]) == {str(version)}
    assert out["id"].tolist() == [str(i) for i in range(1000, 1050)]  # CSV ids are text
    client = MlflowClient()
    (run,) = client.search_runs(
        [client.get_experiment_by_name(store.EXPERIMENT_NAME).experiment_id], "tags.stage='score'"
    )
    assert run.data.params["model_version"] == str(version)
    assert run.data.params["input_source"] == "reviews.csv"
    assert run.data.params["output_uri"] == "scores.parquet"
    assert run.data.metrics["rows"] == 50 and run.data.metrics["rows_scored"] == 50
    assert run.data.metrics["reviews_per_second"] > 0
    shares = {k: v for k, v in run.data.metrics.items() if k.startswith("share_")}
    assert sum(shares.values()) == pytest.approx(1.0) and shares


# --- bad input: one line each, exit 1, nothing written ------------------------------------------


BAD_INPUT = {
    "missing input": ({"input": "nowhere/reviews.csv"}, "nowhere/reviews.csv: no such file"),
    "no input": ({"input": ""}, "no input given: give a .parquet"),
    "no review column": ({"review_column": "text"}, "no column 'text' (found: id, review,"),
    "unknown engine": ({"engine": "dask"}, "engine must be local or spark, got 'dask'"),
    "unknown output format": ({"output": "scores.json"}, "scores.json: unknown output format"),
    "no output": ({"output": ""}, "no output given: --output scores.parquet"),
    "bad policy": ({"bad_rows": "ignore"}, "bad_rows must be skip or refuse, got 'ignore'"),
    "unregistered model": (
        {"model": "models:/nobody@champion"},
        "model models:/nobody@champion does not resolve: no model named 'nobody' is registered",
    ),
    "missing model version": ({"model": "models:/nobody/3"}, "no model named 'nobody'"),
    "missing model path": ({"model": "no/such/model"}, "model no/such/model does not resolve"),
    "spark writes parquet": (
        {"engine": "spark", "output": "scores.csv"},
        "scores.csv: engine=spark writes Parquet",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT), ids=str)
def test_bad_input_is_one_error_line_and_nothing_written(
    case, tmp_path, tracking_uri, model_dir, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    reviews_with_ids(20, seed=67).to_csv("reviews.csv", index=False)
    settings = {"input": "reviews.csv", "output": "scores.parquet", "model": str(model_dir)}
    overrides, expected = BAD_INPUT[case]
    settings.update(overrides)
    argv = [part for key, value in settings.items() for part in (f"--{key}", value)]
    assert cli(*argv) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("error: score: ") and expected in lines[-1], lines[-1]
    assert not [name for name in files_under(tmp_path) if "scores" in name]


def test_an_existing_output_is_refused_unless_overwrite(tmp_path, tracking_uri, model_dir, capsys):
    reviews_with_ids(30, seed=68).to_parquet(tmp_path / "reviews.parquet", index=False)
    target = tmp_path / "scores.parquet"
    target.write_bytes(b"yesterday's scores")
    argv = ["--input", str(tmp_path / "reviews.parquet"), "--output", str(target)]
    argv += ["--model", str(model_dir)]
    assert cli(*argv) == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == (
        f"error: score: {target}: the output exists: give another output, or --overwrite true"
        " to replace it (once the new one is complete)"
    )
    assert target.read_bytes() == b"yesterday's scores"
    assert cli(*argv, "--overwrite", "true") == 0
    assert len(pd.read_parquet(target)) == 30
    assert [name for name in files_under(tmp_path) if "scores" in name] == ["scores.parquet"]


def test_a_failure_midway_leaves_the_old_output_and_no_temp_file(tmp_path, model_dir, run_score):
    good = make_reviews(300, seed=69)[["review"]].to_csv(index=False).encode()
    (tmp_path / "reviews.csv").write_bytes(good + b'"an unterminated quote\n' + b"x,y,z\n" * 5)
    target = tmp_path / "scores.csv"
    target.write_text("old\n")
    with pytest.raises(SourceError, match="not a readable CSV"):
        run_score(
            input=str(tmp_path / "reviews.csv"),
            output=str(target),
            model=str(model_dir),
            overwrite=True,
            chunk_rows=50,  # several chunks are written before the bad part is read
        )
    assert target.read_text() == "old\n"
    assert files_under(tmp_path) == ["reviews.csv", "scores.csv"]


def test_an_input_with_no_rows_is_an_error(tmp_path, model_dir, run_score):
    (tmp_path / "reviews.csv").write_text("id,review\n")
    with pytest.raises(StageError, match="no rows to score"):
        run_score(
            input=str(tmp_path / "reviews.csv"),
            output=str(tmp_path / "s.parquet"),
            model=str(model_dir),
        )
    assert not (tmp_path / "s.parquet").exists()


def test_engine_spark_without_pyspark_says_so_in_one_line(
    tmp_path, model_dir, monkeypatch, run_score
):
    monkeypatch.setitem(sys.modules, "pyspark", None)  # what `import pyspark` meets without it
    reviews_with_ids(10, seed=70).to_parquet(tmp_path / "reviews.parquet", index=False)
    with pytest.raises(StageError) as raised:
        run_score(
            input=str(tmp_path / "reviews.parquet"),
            output=str(tmp_path / "s.parquet"),
            model=str(model_dir),
            engine="spark",
        )
    assert str(raised.value) == (
        "engine=spark needs pyspark, an optional extra: pip install '.[spark]' (make install-spark)"
    )


# --- other sources and an s3:// output ----------------------------------------------------------


def test_s3_input_and_output(tmp_path, model_dir, moto_s3, aws_env, in_process, run_score):
    frame = reviews_with_ids(60, seed=71)
    client = moto_s3.client()
    for i in range(2):  # a prefix of two objects, like a dataset
        body = frame.iloc[i * 30 : (i + 1) * 30].to_parquet(index=False)
        client.put_object(Bucket=BUCKET, Key=f"batches/2026-12-01/part-{i}.parquet", Body=body)
    aws_env.setenv("AWS_ENDPOINT_URL", moto_s3.endpoint)
    result = run_score(
        input=f"s3://{BUCKET}/batches/2026-12-01/",
        output=f"s3://{BUCKET}/scores/2026-12-01.csv",
        model=str(model_dir),
    )
    body = client.get_object(Bucket=BUCKET, Key="scores/2026-12-01.csv")["Body"].read()
    out = pd.read_csv(pd.io.common.BytesIO(body))
    assert out["id"].tolist() == frame["id"].tolist()
    assert out["label"].tolist() == in_process(frame["review"].tolist())["label"].tolist()
    assert result.output == f"s3://{BUCKET}/scores/2026-12-01.csv"
    # An existing object is refused like a file; a missing bucket before any work.
    with pytest.raises(StageError, match="the output exists"):
        run_score(input=f"s3://{BUCKET}/batches/", output=result.output, model="x")
    with pytest.raises(StageError, match="bucket 'nobucket' does not exist"):
        run_score(input="x.csv", output="s3://nobucket/s.parquet", model="x")


def test_s3_bad_credentials_are_one_line(tmp_path, model_dir, moto_s3, aws_env, run_score):
    moto_s3.client().put_object(Bucket=BUCKET, Key="auth/r.parquet", Body=b"PAR1")
    aws_env.setenv("AWS_ENDPOINT_URL", moto_s3.endpoint)
    aws_env.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(SourceError) as raised:
        run_score(
            input=f"s3://{BUCKET}/auth/r.parquet",
            output=str(tmp_path / "s.parquet"),
            model=str(model_dir),
        )
    message = str(raised.value)
    assert message.startswith(f"s3://{BUCKET}/auth/r.parquet: access denied")
    assert "not-the-secret" not in message and "\n" not in message


def test_https_csv_download(tmp_path, model_dir, server, run_score):
    frame = reviews_with_ids(40, seed=72)
    server.bodies["/exports/reviews.csv.gz"] = gzip.compress(frame.to_csv(index=False).encode())
    run_score(
        input=server.url("/exports/reviews.csv.gz"),
        output=str(tmp_path / "s.parquet"),
        model=str(model_dir),
    )
    assert len(pd.read_parquet(tmp_path / "s.parquet")) == 40
    assert (tmp_path / "downloads" / "reviews.csv.gz.verified.json").is_file()


@pytest.mark.odbc
def test_odbc_query_in_fetches(tmp_path, model_dir, monkeypatch, run_score, sqlite_odbc_driver):
    monkeypatch.delenv("IMDB_SQL_PASSWORD", raising=False)
    frame = reviews_with_ids(45, seed=73)
    with sqlite3.connect(tmp_path / "reviews.db") as db:
        db.execute("CREATE TABLE reviews (id INTEGER PRIMARY KEY, review TEXT)")
        db.executemany("INSERT INTO reviews VALUES (?, ?)", frame[["id", "review"]].values.tolist())
    run_score(
        input=f"odbc:Driver={sqlite_odbc_driver};Database={tmp_path / 'reviews.db'}",
        output=str(tmp_path / "s.parquet"),
        model=str(model_dir),
        chunk_rows=10,
    )
    out = pd.read_parquet(tmp_path / "s.parquet")
    assert out["id"].tolist() == frame["id"].tolist()


@pytest.mark.slow
def test_mlflow_run_of_the_score_entry_point(project_copy, tracking_uri, model_dir, tmp_path):
    reviews_with_ids(25, seed=74).to_csv(tmp_path / "reviews.csv", index=False)
    venv_bin = Path(sys.executable).parent  # `mlflow run --env-manager local` runs `python`
    done = subprocess.run(
        [
            str(venv_bin / "mlflow"), "run", str(project_copy), "-e", "score",
            "--env-manager", "local", "-P", f"input={tmp_path / 'reviews.csv'}",
            "-P", f"output={tmp_path / 'scores.csv'}", "-P", f"model={model_dir}",
            "-P", "chunk_rows=10",
        ],
        env={**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}"},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = pd.read_csv(tmp_path / "scores.csv")
    assert out["id"].tolist() == list(range(1000, 1025))
    assert "scored 25 of 25 reviews" in done.stdout


def test_a_servers_request_limits_in_the_environment_do_not_apply_to_a_batch(
    tmp_path, model_dir, monkeypatch, run_score
):
    from pyfunc.contract import MAX_CALL_CHARS_ENV, MAX_REVIEW_CHARS_ENV

    monkeypatch.setenv(MAX_CALL_CHARS_ENV, "1000")  # a shell that also serves the model
    monkeypatch.setenv(MAX_REVIEW_CHARS_ENV, "20")
    reviews_with_ids(200, seed=75).to_parquet(tmp_path / "reviews.parquet", index=False)
    result = run_score(
        input=str(tmp_path / "reviews.parquet"),
        output=str(tmp_path / "scores.parquet"),
        model=str(model_dir),
    )
    assert result.tally.scored == 200  # ~15,000 characters in one predict call


def test_a_model_that_fails_is_one_line_naming_the_rows(tmp_path, failing_model_dir, run_score):
    reviews_with_ids(30, seed=76).to_parquet(tmp_path / "reviews.parquet", index=False)
    with pytest.raises(StageError) as raised:
        run_score(
            input=str(tmp_path / "reviews.parquet"),
            output=str(tmp_path / "scores.parquet"),
            model=str(failing_model_dir),
            chunk_rows=10,
        )
    assert str(raised.value) == (
        f"{tmp_path / 'reviews.parquet'}: the model failed on rows 1-10 (the model broke on"
        " purpose); nothing was written"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reviews.parquet"]

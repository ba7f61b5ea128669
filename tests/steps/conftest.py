"""Fixtures of the stage tests: moto's S3 server (with credentials in the environment only)
and a local HTTP server, from tests/local_services.py; one Spark session for the Spark tests."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
from local_services import REGION, moto_s3_server
from support import PICKLE_GUARD, make_reviews, review_server, spark_missing, unavailable


@pytest.fixture(scope="module")
def moto_s3():
    with moto_s3_server() as server:
        yield server


@pytest.fixture
def aws_env(monkeypatch, tmp_path, moto_s3):
    """Credentials from the environment only (no ~/.aws, no instance metadata)."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto_s3.key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto_s3.secret)
    return monkeypatch


@pytest.fixture
def server():
    """An HTTP server on 127.0.0.1 serving `server.bodies[path]` (support.review_server)."""
    with review_server() as srv:
        yield srv


@pytest.fixture(scope="session")
def spark():
    """One Spark session on local[2] for every Spark test (a JVM takes half a minute to start),
    started as `score` starts its own, refusing pickles as the pods do (the model is code and
    data); skipped where pyspark or Java is missing, required in CI (IMDB_REQUIRE_SPARK=1, set by
    .ci/run)."""
    reason = spark_missing()
    if reason:
        unavailable(reason, "IMDB_REQUIRE_SPARK")
    from steps.batch.spark import start_session
    from steps.stage.config import SparkConfig

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(PICKLE_GUARD, "false")
        session, _ = start_session(
            SparkConfig(master="local[2]", driver_memory="1g", partitions=0, conf=())
        )
    yield session
    session.stop()


# --- score: a small real model, what it says in-process, and the stage run in this process ---


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """The real pipeline fitted on small synthetic reviews, saved as the pyfunc."""
    from pyfunc import packaging
    from pyfunc.pipeline import build_pipeline

    frame = make_reviews(400, seed=61)
    pipeline = build_pipeline().fit(frame["review"].tolist(), frame["sentiment"].tolist())
    path = tmp_path_factory.mktemp("score-model") / "model"
    packaging.save_model(pipeline, path)
    return path


FAILING_MODEL = textwrap.dedent(
    """
    import mlflow

    class Failing(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            raise ValueError("the model broke on purpose")

    mlflow.models.set_model(Failing())
    """
)


@pytest.fixture(scope="session")
def failing_model_dir(tmp_path_factory) -> Path:
    """A pyfunc model whose predict always raises, logged as code (it loads where pickles are
    refused, as the project's own model does)."""
    folder = tmp_path_factory.mktemp("failing-model")
    code = folder / "failing_model.py"
    code.write_text(FAILING_MODEL)
    mlflow.pyfunc.save_model(folder / "model", python_model=str(code), pip_requirements=["pandas"])
    return folder / "model"


@pytest.fixture(scope="session")
def in_process(model_dir) -> Callable[[list[str]], pd.DataFrame]:
    """What the model says in-process, review by review (the reference the engines must match)."""
    model = mlflow.pyfunc.load_model(str(model_dir))

    def predict(reviews: list[str]) -> pd.DataFrame:
        return model.predict(pd.DataFrame({"review": reviews}))

    return predict


@pytest.fixture
def run_score(tmp_path) -> Callable[..., Any]:
    """`score.run` with params.yaml's score section overridden by keyword (spark.master=...)."""
    from steps import score
    from steps.stage.coercion import override
    from steps.stage.config import load_params
    from steps.stage.paths import PROJECT_ROOT

    params = load_params(PROJECT_ROOT / "params.yaml")

    def run(**settings: Any) -> score.Scored:
        cfg = override(params.score, {k.replace("__", "."): v for k, v in settings.items()})
        model_name = params.register.model_name
        return score.run(cfg, params.ingest, model_name, download_dir=tmp_path / "downloads")

    return run

"""A real `mlflow models serve` of `models:/imdb-sentiment@champion`, and its serving image,
shared by the serving tests.

The model is trained on small synthetic reviews (tests/support.make_reviews), logged, registered
and made champion in a SQLite registry in tmp; or, with IMDB_SERVING_MODEL=<model folder or URI>
(the CI packaging job: the model `make run` trained), that model is registered instead. The server
runs as a child process on a free loopback port, is waited for on `/ping` (bounded) and is stopped
by its process group afterwards. The image is built once per session with the project's own code
(steps/rollout/image.py: base-image rule, then `mlflow models build-docker`) and keeps its tag
(imdb-sentiment-test:serving), so a rerun reuses Docker's layer cache.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
import model_server
import pytest
from support import free_port, make_reviews, point_mlflow_at, serving_env

from steps.rollout import image
from steps.stage.config import load_params
from steps.stage.paths import PROJECT_ROOT
from steps.tracking import registry, store

MODEL_NAME = "imdb-sentiment"
READY_TIMEOUT = 180.0  # generous: the machine is shared, and CI may be busy
SERVING_IMAGE = "imdb-sentiment-test:serving"
MODEL_ENV = "IMDB_SERVING_MODEL"  # serve this model instead of training a small one


def log_small_model() -> str:
    """Train the real pipeline on small synthetic reviews, log it as the pyfunc with a training
    profile of other synthetic reviews (as train ships one) and a calibrator (a mild Platt map
    that keeps every label: its fit on toy reviews would send every score to 0 or 1); its URI."""
    from pyfunc import packaging
    from pyfunc.calibration import Calibrator
    from pyfunc.pipeline import build_pipeline, token_counts
    from steps.monitoring.profile import build_profile

    reviews = make_reviews(600, seed=11)
    pipeline = build_pipeline().fit(reviews["review"].tolist(), reviews["sentiment"].tolist())
    held_out = make_reviews(200, seed=12)
    texts = held_out["review"].tolist()
    scores = pipeline.predict_proba(texts)[:, list(pipeline.classes_).index("positive")]
    profile = build_profile(
        texts, scores, token_counts(pipeline, texts), positive_label_share=0.5,
        accuracy=float(((scores > 0.5) == (held_out["sentiment"] == "positive")).mean()),
    )  # fmt: skip
    with mlflow.start_run():
        calibrator = Calibrator("platt", a=0.8, b=0.0)
        return packaging.log_model(
            pipeline, name="model", profile=profile, calibrator=calibrator
        ).model_uri


@pytest.fixture(scope="session")
def champion_store(tmp_path_factory) -> Iterator[tuple[str, str]]:
    """A tmp SQLite registry whose `imdb-sentiment@champion` is a small real model."""
    folder = tmp_path_factory.mktemp("serving-registry")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        point_mlflow_at(patch, uri)
        store.configure()
        try:
            model_uri = os.environ.get(MODEL_ENV) or log_small_model()
            version = mlflow.register_model(model_uri, MODEL_NAME).version
            registry.set_alias(MODEL_NAME, registry.CHAMPION_ALIAS, version)
        finally:
            mlflow.set_tracking_uri(None)
            mlflow.set_registry_uri(None)
    yield uri, str(version)


@pytest.fixture(scope="session")
def server(champion_store, tmp_path_factory) -> Iterator[model_server.Server]:
    """`mlflow models serve -m models:/imdb-sentiment@champion` on a free 127.0.0.1 port, with
    the request limits and the pickle guard the pods set (k8s/deployment-*.yaml)."""
    uri, _ = champion_store
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "IMDB_MAX_"))}
    env["MLFLOW_TRACKING_URI"] = uri
    env.update(serving_env())  # as the pods: request limits, pickles refused
    log_path = Path(tmp_path_factory.mktemp("serving-log")) / "serve.log"
    model_uri = registry.model_uri(MODEL_NAME, registry.CHAMPION_ALIAS)
    running = model_server.start(model_uri, free_port(), log_path, env=env)
    try:
        model_server.wait_ready(running, timeout=READY_TIMEOUT)
        yield running
    finally:
        model_server.stop(running)


@contextmanager
def tracking(uri: str) -> Iterator[None]:
    """MLflow pointed at `uri` in this process and its children, then back."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(None)
            mlflow.set_registry_uri(None)


@pytest.fixture(scope="session")
def serving_image(champion_store, rootfs_cache) -> str:
    """The champion's serving image, built with the project's code (needs a Docker engine:
    the tests that use it are marked `docker`)."""
    uri, version = champion_store
    cfg = load_params(PROJECT_ROOT / "params.yaml").image
    with tracking(uri):
        built = image.build_serving_image(
            registry.model_uri(MODEL_NAME, version), SERVING_IMAGE, cfg, rootfs_cache
        )
    return built.ref

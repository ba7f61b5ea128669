"""Fixtures shared by every test: isolated MLflow stores, project copies, the real data."""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
from pathlib import Path

import mlflow
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/support.py

import docker_pod
from support import (
    PROJECT_FILES,
    REPO_ROOT,
    REQUIRE_SHARED_DATA,
    SQLITE_ODBC_DRIVER,
    import_system_module,
    unavailable,
)

pytest_plugins = [
    "unit_tier",
    "xdist_groups",
]  # the unit tier; who shares a worker (tests/README.md)

# Environment variables that steer MLflow or our tracking set-up, or the words of hints (`make
# test` runs under the Makefile's IMDB_CALLER=make; a test that wants it sets it).
_STEERING_PREFIXES = ("MLFLOW_", "_MLFLOW_", "DAGSHUB_", "IMDB_CALLER")


def pytest_sessionstart(session):
    """The checkout's commit, asked once (steps/tracking/store.py caches it per process) before
    any test: a run started in the unit tier then records it without starting `git`."""
    from steps.tracking import store

    store.git_commit()


@pytest.fixture(autouse=True)
def _mlflow_state_per_test():
    """Tracking set-up writes into os.environ and MLflow's module globals (tracking and registry
    URIs, the active experiment): undo all of it after every test, so no test inherits another's
    store."""
    before = {k: v for k, v in os.environ.items() if k.startswith(_STEERING_PREFIXES)}
    os.environ.pop("IMDB_CALLER", None)
    yield
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
    mlflow.tracking.fluent._active_experiment_id = None  # no public way to forget it
    for name in [k for k in os.environ if k.startswith(_STEERING_PREFIXES)]:
        if name not in before:
            del os.environ[name]
    os.environ.update(before)


# What a test run itself may leave at the checkout's top level.
_TEST_RUN_LEFTOVERS = (".pytest_cache", ".coverage", "__pycache__")


@pytest.fixture(autouse=True)
def _checkout_left_as_found():
    """A test writes in its tmp folders, never into the checkout: a store, model or lock it leaves
    at the top level (./mlruns from a default tracking URI) fails the test that left it."""
    before = {p.name for p in REPO_ROOT.iterdir()}
    yield
    left = sorted(
        name
        for name in {p.name for p in REPO_ROOT.iterdir()} - before
        if not name.startswith(_TEST_RUN_LEFTOVERS)
    )
    for name in left:  # removed, so the next test starts from the checkout as it was
        path = REPO_ROOT / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    if left:
        pytest.fail(
            f"the test left {', '.join(left)} in the checkout {REPO_ROOT} (a stage run in-process:"
            " use the in_project_dir fixture)",
            pytrace=False,
        )


@pytest.fixture
def in_project_dir(tmp_path, monkeypatch) -> Path:
    """Work in tmp_path as in a project folder: a stage run in-process keeps its lock
    (.pipeline.lock) and MLflow's default store (./mlflow.db) in the working directory, as under
    `mlflow run`, which here must not be the checkout."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def _empty_store(tmp_path_factory) -> Path:
    """One migrated, empty SQLite store per session; creating one costs seconds, copying it none."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    folder = tmp_path_factory.mktemp("empty-store")
    store = SqlAlchemyStore(f"sqlite:///{folder / 'mlflow.db'}", (folder / "mlartifacts").as_uri())
    store.engine.dispose()
    return folder / "mlflow.db"


@pytest.fixture
def tracking_uri(tmp_path, monkeypatch, _empty_store) -> str:
    """A fresh SQLite MLflow store in tmp_path, set for this process and its children."""
    db = tmp_path / "mlflow.db"
    shutil.copyfile(_empty_store, db)
    with sqlite3.connect(db) as conn:  # the Default experiment's artifacts go to this test's tmp
        conn.execute(
            "UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
            ((tmp_path / "mlartifacts" / "0").as_uri(),),
        )
    uri = f"sqlite:///{db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    # An experiment created without an explicit artifact location (mlflow.set_experiment in a
    # test) would otherwise put its artifacts in ./mlruns of whatever the working directory is;
    # this is the variable MLflow's own store reads for its default artifact root.
    monkeypatch.setenv("_MLFLOW_SERVER_ARTIFACT_ROOT", (tmp_path / "mlartifacts").as_uri())
    # Whatever the caller's environment says about tracking must not reach the test.
    for name in (
        "MLFLOW_RUN_ID",
        "MLFLOW_EXPERIMENT_ID",
        "MLFLOW_EXPERIMENT_NAME",
        "MLFLOW_REGISTRY_URI",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "DAGSHUB_REPO",
        "DAGSHUB_USER_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    mlflow.set_tracking_uri(uri)
    return uri  # _mlflow_state_per_test undoes the global state afterwards


@pytest.fixture
def project_copy(tmp_path) -> Path:
    """A copy of the MLflow project in tmp_path: entry points run there write outputs there."""
    dest = tmp_path / "project"
    dest.mkdir()
    for name in PROJECT_FILES:
        src = REPO_ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    return dest


@pytest.fixture(scope="session")
def shared_imdb_dir() -> Path:
    """../shared/data/imdb (or $IMDB_SHARED_DATA): skipped when absent, required in CI."""
    path = Path(os.environ.get("IMDB_SHARED_DATA", REPO_ROOT.parent / "shared" / "data" / "imdb"))
    _require(path / "train.csv.gz", "IMDB_SHARED_DATA")
    return path


@pytest.fixture(scope="session")
def shared_aclimdb_archive() -> Path:
    """The official aclImdb train tree as a .tar.gz (labelled train, 50k unlabeled, movie URLs):
    ../shared/data/imdb-aclimdb-train (or $IMDB_ACLIMDB_DATA); skipped when absent, required in
    CI."""
    default = REPO_ROOT.parent / "shared" / "data" / "imdb-aclimdb-train"
    path = Path(os.environ.get("IMDB_ACLIMDB_DATA", default)) / "aclImdb-train.tar.gz"
    _require(path, "IMDB_ACLIMDB_DATA")
    return path


def _require(path: Path, variable: str) -> None:
    if not path.is_file():
        unavailable(f"real IMDB data not found at {path} (set {variable})", REQUIRE_SHARED_DATA)


@pytest.fixture(scope="session")
def prometheus_tools() -> dict[str, str]:
    """Debian's `promtool` and `prometheus`: skipped when absent, required in CI."""
    found = {name: shutil.which(name) for name in ("promtool", "prometheus")}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        unavailable(
            f"{' and '.join(missing)} not found: install Debian's prometheus package"
            " (apt-get install prometheus)",
            "IMDB_REQUIRE_PROMETHEUS",
        )
    return found


@pytest.fixture(scope="session")
def sqlite_odbc_driver() -> str:
    """The SQLite ODBC driver's name in unixODBC: skipped naming the apt packages when pyodbc's
    library or the driver is missing, required in CI."""
    pyodbc = import_system_module("pyodbc", apt="unixodbc")
    if SQLITE_ODBC_DRIVER not in pyodbc.drivers():
        unavailable(
            f"the {SQLITE_ODBC_DRIVER} ODBC driver is not installed: apt-get install libsqliteodbc"
        )
    return SQLITE_ODBC_DRIVER


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """A test marked `docker` runs only where a Docker engine answers: skipped with the reason
    elsewhere, a failure when IMDB_REQUIRE_DOCKER is set (.ci/run starts an engine and sets it)."""
    if item.get_closest_marker("docker") is not None:
        docker_pod.require(docker_pod.engine_problem())


@pytest.fixture(scope="session")
def rootfs_cache(tmp_path_factory) -> Path:
    """Where a stand-in base image's Debian root filesystem is kept for the session: the tests
    that build stand-ins (mmdebstrap takes minutes) build it once."""
    return tmp_path_factory.mktemp("rootfs") / "rootfs.tar"


@pytest.fixture(scope="session")
def docker_registry(tmp_path_factory):
    """Debian's docker-registry on a free 127.0.0.1 port (apt-get install docker-registry)."""
    if shutil.which(docker_pod.REGISTRY_BINARY) is None:
        docker_pod.require(
            f"{docker_pod.REGISTRY_BINARY} is not installed: apt-get install docker-registry"
        )
    registry = docker_pod.Registry(tmp_path_factory.mktemp("registry")).start()
    try:
        yield registry
    finally:
        registry.stop()

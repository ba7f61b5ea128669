"""`make image` (`python -m steps.image`): the champion's serving image, built for real, and one
clear line with a non-zero exit for each way it cannot be: no engine, no champion, a wrong model
URI, a build that fails (which must leave no tag behind)."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml
from docker_pod import docker
from pickled_model import save_pickled
from support import REPO_ROOT, make_reviews

from pyfunc.pipeline import build_pipeline
from steps import image as image_entry
from steps.rollout import image
from steps.tracking import registry

TEST_MODEL = "imdb-sentiment-test"  # its images are imdb-sentiment-test:<version>, never ours
IDENTITY_MODEL = """
import mlflow

class Identity(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input

mlflow.models.set_model(Identity())
"""


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = image_entry.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def last_line(err: str) -> str:
    return err.strip().splitlines()[-1]


@pytest.mark.integration
def test_without_docker_the_line_says_how_to_start_an_engine(monkeypatch, capsys, tracking_uri):
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))  # the venv: no docker
    code, _, err = run_cli(["--base-only"], capsys)
    assert code == 1
    assert last_line(err) == (
        "error: image: 'docker' is not on PATH, so no Docker engine; start one: `sudo"
        " .ci/start-dockerd` (installs Debian's docker.io if missing) or `sudo systemctl start"
        " docker`"
    )


@pytest.mark.integration
def test_an_engine_that_does_not_answer_is_one_line(monkeypatch, capsys, tracking_uri, tmp_path):
    if not any(Path(p, "docker").is_file() for p in os.environ["PATH"].split(os.pathsep)):
        pytest.skip("no docker command on PATH (apt-get install docker.io)")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    code, _, err = run_cli([], capsys)
    assert code == 1
    line = last_line(err)
    assert line.startswith("error: image: no Docker engine answers (")
    assert "no-engine.sock" in line and line.endswith("`sudo systemctl start docker`")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--base-only", "--deployer"], "--base-only goes alone"),
        (["--model-uri", "models:/x/1"], "--model-uri needs --tag"),
        (["--deployer", "--model-uri", "m", "--tag", "t"], "--deployer builds no model"),
    ],
)
def test_options_that_mean_nothing_are_refused(argv, message, capsys, tracking_uri):
    code, _, err = run_cli(argv, capsys)
    assert code == 1 and message in last_line(err)


@pytest.mark.docker
def test_no_champion_is_one_line(capsys, tracking_uri):
    code, _, err = run_cli([], capsys)
    assert code == 1
    assert last_line(err) == (
        "error: image: imdb-sentiment has no registered version yet: run the pipeline"
        " (python -m steps.main)"
    )


@pytest.mark.docker
def test_a_wrong_model_uri_is_one_line(capsys, tracking_uri):
    code, _, err = run_cli(["--model-uri", "models:/no-such-model/7", "--tag", "x:7"], capsys)
    assert code == 1
    line = last_line(err)
    assert line.startswith("error: image: model models:/no-such-model/7: ")
    assert "no-such-model" in line.split(": ", 2)[2]


@pytest.mark.docker
def test_a_version_logged_as_pickles_is_refused_before_any_build(capsys, tracking_uri, tmp_path):
    """The image refuses pickles (k8s/serving-image/Dockerfile): it could not load such a model."""
    frame = make_reviews(200, seed=31)
    pipeline = build_pipeline().fit(frame["review"].tolist(), frame["sentiment"].tolist())
    save_pickled(pipeline, tmp_path / "old")
    registered = mlflow.register_model(str(tmp_path / "old"), TEST_MODEL).version
    tag = f"{TEST_MODEL}:pickled"
    uri = registry.model_uri(TEST_MODEL, registered)
    code, _, err = run_cli(["--model-uri", uri, "--tag", tag], capsys)
    assert code == 1
    assert last_line(err) == (
        f"error: image: {uri} was logged as pickles, before the model became code and data, and"
        " MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false in the serving image refuses them: re-log it"
        f" with `make migrate VERSION={registered}` (a new version with the same weights), or"
        " train and register a new version"
    )
    assert docker("image", "inspect", tag, check=False).returncode != 0


@pytest.mark.docker
@pytest.mark.slow  # a real build up to pip's failure (the layers before it are cached)
def test_a_failed_build_is_one_line_and_leaves_no_tag(capsys, tracking_uri, tmp_path):
    model = tmp_path / "model"
    code = tmp_path / "identity.py"  # a model as code: the build refuses pickles before it starts
    code.write_text(IDENTITY_MODEL)
    mlflow.pyfunc.save_model(
        model, python_model=str(code),
        pip_requirements=[f"mlflow=={mlflow.__version__}", "imdb-sentiment-no-such-package==0.0.1"],
    )  # fmt: skip
    tag = f"{TEST_MODEL}:broken"
    docker("image", "rm", tag, check=False)
    before = set(docker("ps", "-aq", "--filter", "status=exited").stdout.split())

    code, _, err = run_cli(["--model-uri", str(model), "--tag", tag], capsys)

    # MLflow's `docker build` keeps the failed step's container; remove that one, nothing else
    for left in set(docker("ps", "-aq", "--filter", "status=exited").stdout.split()) - before:
        command = docker("inspect", "--format", "{{json .Config.Cmd}}", left, check=False).stdout
        if "_install_pyfunc_deps" in command:
            docker("rm", left, check=False)

    assert code == 1
    line = last_line(err)
    assert line.startswith("error: image: mlflow models build-docker exited with code 1: ")
    assert "imdb-sentiment-no-such-package" in line
    for leftover in (tag, image.with_tag_suffix(tag, "build-docker")):
        assert docker("image", "inspect", leftover, check=False).returncode != 0, leftover


@pytest.mark.docker
@pytest.mark.slow  # a real build; Docker's cache makes it quick after the serving image's
def test_make_image_builds_the_champion_as_model_colon_version(
    champion_store, serving_image, tracking_uri, tmp_path
):
    """`python -m steps.image` as a shell starts it: resolves the champion to its version, builds
    `<model>:<version>` (a test model name, so no real image is touched)."""
    served_uri, version = champion_store
    mlflow.set_tracking_uri(served_uri)
    local = mlflow.artifacts.download_artifacts(
        registry.model_uri("imdb-sentiment", version), dst_path=str(tmp_path / "champion")
    )
    mlflow.set_tracking_uri(tracking_uri)
    registered = mlflow.register_model(local, TEST_MODEL).version
    registry.set_alias(TEST_MODEL, registry.CHAMPION_ALIAS, registered)
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["register"]["model_name"] = TEST_MODEL
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    tag = f"{TEST_MODEL}:{registered}"
    docker("image", "rm", tag, check=False)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "steps.image", "--params", str(tmp_path / "params.yaml")],
            cwd=REPO_ROOT, env={**os.environ, "MLFLOW_TRACKING_URI": tracking_uri},
            capture_output=True, text=True, timeout=1800,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.strip().splitlines()[-1].startswith(f"built {tag} (base image python:")
        labels = docker("image", "inspect", "--format", "{{json .Config.Env}}", tag).stdout
        assert "UVICORN_TIMEOUT_WORKER_HEALTHCHECK=60" in labels  # our layer is on top
        assert "MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false" in labels
        # the model's requirements are ranges; the layer pins them to the versions tested here
        inside = docker(
            "run", "--rm", "--entrypoint", "python", tag, "-c",
            "from importlib.metadata import version as v; print(v('scikit-learn'), v('numpy'))",
        ).stdout.split()  # fmt: skip
        assert inside == [importlib.metadata.version(p) for p in ("scikit-learn", "numpy")]
        assert docker("image", "inspect", image.with_tag_suffix(tag, "build-docker"),
                      check=False).returncode != 0  # fmt: skip
    finally:
        docker("image", "rm", tag, check=False)

"""A metrics folder the server cannot write in (PROMETHEUS_MULTIPROC_DIR a file, under a file,
read-only, a name too long) leaves the model serving without metrics, saying so in one warning
line: a fresh process loading the model as a worker does, and one real `mlflow models serve`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import model_server
import pytest
import requests
from support import free_port

from pyfunc import contract
from steps.tracking import registry

pytestmark = pytest.mark.slow

MODEL_NAME = "imdb-sentiment"
CHILD = textwrap.dedent(
    """
    import json, logging, sys
    import mlflow, pandas as pd
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    model = mlflow.pyfunc.load_model(sys.argv[1])
    answer = model.predict(pd.DataFrame({"review": ["A great, wonderful film."]}))
    print(json.dumps({"label": answer["label"].tolist()}))
    """
)


def _a_file(tmp: Path) -> Path:
    (tmp / "metrics").write_text("not a folder")
    return tmp / "metrics"


def _under_a_file(tmp: Path) -> Path:
    (tmp / "plain").write_text("x")
    return tmp / "plain" / "metrics"


def _read_only(tmp: Path) -> Path:
    (tmp / "metrics").mkdir()
    (tmp / "metrics").chmod(0o555)
    return tmp / "metrics"


def _too_long(tmp: Path) -> Path:
    return tmp / ("m" * 300)


UNWRITABLE = {
    "a file": (_a_file, "File exists"),
    "under a file": (_under_a_file, "Not a directory"),
    "read-only": (_read_only, "Permission denied"),
    "name too long": (_too_long, "File name too long"),
}
# Root writes anywhere, unless it runs without the capability that lets it (CAP_DAC_OVERRIDE).
AS_A_USER = (
    ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
)


@pytest.fixture(scope="module")
def local_model(champion_store, tmp_path_factory) -> str:
    uri, _ = champion_store
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        return mlflow.artifacts.download_artifacts(
            artifact_uri=registry.model_uri(MODEL_NAME, registry.CHAMPION_ALIAS),
            dst_path=str(tmp_path_factory.mktemp("model")),
        )


@pytest.mark.parametrize("case", UNWRITABLE, ids=str)
def test_an_unwritable_metrics_folder_is_one_warning_and_the_model_answers(
    case, local_model, tmp_path
):
    make, why = UNWRITABLE[case]
    folder = make(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "IMDB_"))}
    env |= {
        contract.METRICS_PORT_ENV: f"127.0.0.1:{free_port()}",
        contract.MULTIPROC_DIR_ENV: str(folder),
    }
    done = subprocess.run(
        [*AS_A_USER, sys.executable, "-c", CHILD, local_model], env=env, cwd=tmp_path,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {"label": ["positive"]}
    assert "Traceback" not in done.stderr
    said = [line for line in done.stderr.splitlines() if contract.MULTIPROC_DIR_ENV in line]
    assert len(said) == 1, done.stderr[-3000:]
    assert f"is not a folder this server can write its metric files in ({why})" in said[0]
    assert "the model serves without metrics" in said[0]


def test_mlflow_models_serve_answers_without_metrics(champion_store, tmp_path):
    uri, _ = champion_store
    folder = _a_file(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "IMDB_"))}
    env |= {"MLFLOW_TRACKING_URI": uri, contract.METRICS_PORT_ENV: f"127.0.0.1:{free_port()}",
            contract.MULTIPROC_DIR_ENV: str(folder)}  # fmt: skip
    server = model_server.start(
        registry.model_uri(MODEL_NAME, registry.CHAMPION_ALIAS), free_port(),
        tmp_path / "serve.log", workers=1, env=env,
    )  # fmt: skip
    try:
        model_server.wait_ready(server, timeout=180)
        answer = requests.post(
            f"{server.url}/invocations", json={"inputs": ["A great, wonderful film."]}, timeout=60
        )
        assert answer.status_code == 200, answer.text[:300]
        assert answer.json()["predictions"][0]["label"] == "positive"
        log = server.log_path.read_text()
        said = [line for line in log.splitlines() if "can write its metric files in" in line]
        assert len(said) == 1, log[-3000:]
        assert "Traceback" not in log
    finally:
        model_server.stop(server)
    assert folder.read_text() == "not a folder"

"""What goes into the serving image: `mlflow models generate-dockerfile` for real, and its bundled
model (test_container.py builds the image itself on a Docker engine and runs it as the pod).

The Dockerfile MLflow writes is checked, and that the bundled model loads and predicts from that
folder alone, in a fresh interpreter whose working directory is elsewhere, with the repository off
sys.path and the project's editable-install finder removed, so nothing can come from steps/ or the
checkout's pyfunc/.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import model_server
import pytest
from support import PICKLE_GUARD

from steps.tracking import registry

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_NAME = "imdb-sentiment"

# Run in the child: load the bundle, predict, report where every imported module came from.
LOAD_BUNDLE = """
import json, sys
repo = sys.argv[2]
venv = sys.prefix + "/"  # the interpreter's own venv may live inside the repository (.venv)
def outside_repo(p):
    return p.startswith(venv) or not (p in ("", ".", repo) or p.startswith(repo + "/"))
sys.path[:] = [p for p in sys.path if outside_repo(p)]
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
import mlflow.pyfunc
import pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
reviews = ["A great, wonderful film.", "An awful, boring film."]
out = model.predict(pd.DataFrame({"review": reviews}))
files = [getattr(m, "__file__", None) or "" for m in list(sys.modules.values())]
print(json.dumps({
    "labels": list(out["label"]),
    "scores": [float(s) for s in out["score"]],
    "from_repo": sorted(f for f in files if f.startswith(repo + "/") and not f.startswith(venv)),
    "pyfunc": getattr(sys.modules.get("pyfunc"), "__file__", None),
}))
"""


@pytest.fixture(scope="module")
def docker_dir(champion_store, tmp_path_factory) -> Path:
    uri, _ = champion_store
    out = tmp_path_factory.mktemp("docker") / "image"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_TRACKING_URI"] = uri
    model_uri = registry.model_uri(MODEL_NAME, registry.CHAMPION_ALIAS)
    command = [
        str(model_server.BIN_DIR / "mlflow"), "models", "generate-dockerfile", "-m", model_uri,
        "--env-manager", "local", "-d", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def bundle(docker_dir: Path) -> Path:
    """The folder the Dockerfile copies to /opt/ml/model."""
    found = re.search(r"^COPY (\S+) /opt/ml/model$", (docker_dir / "Dockerfile").read_text(), re.M)
    assert found, "the Dockerfile copies no model to /opt/ml/model"
    return docker_dir / found.group(1)


def test_dockerfile_installs_pinned_mlflow_and_serves_the_bundled_model(docker_dir):
    dockerfile = (docker_dir / "Dockerfile").read_text()
    assert f"FROM python:{sys.version_info.major}.{sys.version_info.minor}" in dockerfile
    assert "pip install mlflow==3.17.2" in dockerfile
    assert (bundle(docker_dir) / "MLmodel").is_file()
    assert "_install_pyfunc_deps('/opt/ml/model', install_mlflow=False, env_manager='local')" in (
        dockerfile
    )
    assert "C._serve('local')" in dockerfile


def test_bundle_has_the_model_its_requirements_and_signature(docker_dir):
    model_dir = bundle(docker_dir)
    mlmodel = (model_dir / "MLmodel").read_text()
    assert "python_function" in mlmodel
    assert '"name": "review"' in mlmodel  # the input signature travels with it
    assert (model_dir / "code" / "pyfunc" / "model.py").is_file()
    requirements = (model_dir / "requirements.txt").read_text().splitlines()
    assert "mlflow==3.17.2" in requirements
    assert any(r.startswith("scikit-learn<2,>=") for r in requirements)  # a range: data, no pickle


def test_bundled_model_loads_and_predicts_from_the_bundle_alone_refusing_pickles(
    docker_dir, tmp_path
):
    model_dir = bundle(docker_dir)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    env[PICKLE_GUARD] = "false"  # as the image sets it
    done = subprocess.run(
        [sys.executable, "-c", LOAD_BUNDLE, str(model_dir), str(REPO_ROOT)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["labels"] == ["positive", "negative"]
    assert result["scores"][0] > 0.5 > result["scores"][1]
    assert result["from_repo"] == []  # nothing imported from the checkout
    assert result["pyfunc"].startswith(str(model_dir))  # pyfunc/ came with it (code_paths)

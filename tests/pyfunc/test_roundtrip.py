"""Log the model to a real MLflow store, then load and use it in a fresh Python process that
cannot see this repository: the model must carry everything it needs (code_paths, requirements)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from support import make_reviews

from pyfunc import packaging
from pyfunc.pipeline import build_pipeline

REPO_ROOT = Path(__file__).resolve().parents[2]

# Runs in the child: hide the editable install of this project (site-packages maps `pyfunc` and
# `steps` to the repository), load the model by URI, predict, report what was imported from where.
CHILD = textwrap.dedent(
    """
    import json, sys
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f)]
    import mlflow, pandas as pd
    model = mlflow.pyfunc.load_model(sys.argv[1])
    answer = model.predict(pd.DataFrame({"review": json.loads(sys.argv[2])}))
    try:
        model.predict(pd.DataFrame({"text": ["wrong column"]}))
        wrong_column = "accepted"
    except mlflow.exceptions.MlflowException as exc:
        wrong_column = str(exc)
    print(json.dumps({
        "labels": answer["label"].tolist(),
        "scores": answer["score"].tolist(),
        "pyfunc_file": sys.modules["pyfunc"].__file__,
        "steps_imported": "steps" in sys.modules,
        "sys_path": sys.path,
        "wrong_column": wrong_column,
    }))
    """
)


@pytest.fixture(scope="module")
def pipeline():
    frame = make_reviews(400, seed=3)
    return build_pipeline().fit(frame["review"].tolist(), frame["sentiment"].tolist())


def test_logged_model_loads_and_predicts_in_a_fresh_process_without_the_repo(
    pipeline, tracking_uri, tmp_path
):
    with mlflow.start_run():
        info = packaging.log_model(pipeline, name="model")
    texts = ["A wonderful, brilliant film.", "A dull and dreadful film.", ""]
    child_dir = tmp_path / "elsewhere"
    child_dir.mkdir()
    done = subprocess.run(
        [sys.executable, "-I", "-c", CHILD, info.model_uri, json.dumps(texts)],
        cwd=child_dir,
        env={"MLFLOW_TRACKING_URI": tracking_uri, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["labels"] == ["positive", "negative", "unknown"]
    assert result["scores"][2] == 0.5
    venv = Path(sys.prefix).resolve()  # may live inside the repository, as .venv does here
    outside_venv = [
        Path(p).resolve() for p in result["sys_path"] if venv not in Path(p).resolve().parents
    ]
    assert not any(p == REPO_ROOT or REPO_ROOT in p.parents for p in outside_venv)
    assert str(REPO_ROOT) not in result["pyfunc_file"]  # the copy shipped inside the model
    assert not result["steps_imported"]
    assert "missing inputs ['review']" in result["wrong_column"]


def test_logged_model_carries_signature_example_and_pinned_requirements(pipeline, tracking_uri):
    with mlflow.start_run():
        info = packaging.log_model(pipeline, name="model")
    assert info.signature.inputs.input_names() == ["review"]
    assert info.signature.outputs.input_names() == ["label", "score"]
    local = Path(mlflow.artifacts.download_artifacts(info.model_uri))
    requirements = (local / "requirements.txt").read_text().split()
    assert {r.split("==")[0] for r in requirements} == {"mlflow", *packaging.RUNTIME_PACKAGES}
    assert all("==" in r for r in requirements)
    assert (local / "code" / "pyfunc" / "model.py").is_file()
    assert not (local / "code" / "steps").exists()
    example = json.loads((local / "input_example.json").read_text())
    assert example["columns"] == ["review"]


@pytest.mark.slow
def test_mlflow_models_predict_scores_a_batch_over_the_servers_limits(pipeline, tmp_path):
    """The quick one-off batch: `mlflow models predict` loads the model without a server's
    limits, so 6,000 reviews of 1,000 characters (6 M in one call) are all scored."""
    packaging.save_model(pipeline, tmp_path / "model")
    reviews = ["A wonderful, brilliant film. ".ljust(1000, "!")] * 3000
    reviews += ["A dull and dreadful film. ".ljust(1000, ".")] * 3000
    pd.DataFrame({"review": reviews}).to_csv(tmp_path / "reviews.csv", index=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "IMDB_MAX_"))}
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "mlflow"), "models", "predict",
            "-m", str(tmp_path / "model"), "-i", str(tmp_path / "reviews.csv"), "-t", "csv",
            "-o", str(tmp_path / "scores.json"), "--env-manager", "local",
        ],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads((tmp_path / "scores.json").read_text())["predictions"]
    assert [row["label"] for row in answer] == ["positive"] * 3000 + ["negative"] * 3000


def test_signature_rejects_a_wrong_column_with_a_clear_error(pipeline, tmp_path):
    packaging.save_model(pipeline, tmp_path / "model")
    model = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    with pytest.raises(MlflowException, match=r"missing inputs \['review'\]"):
        model.predict(pd.DataFrame({"text": ["A wonderful film."]}))
    with pytest.raises(MlflowException, match="row 0 is null"):
        model.predict(pd.DataFrame({"review": [None]}))

"""Log the model to a real MLflow store, then load and use it in a fresh Python process that
cannot see this repository and refuses pickles (MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false): the
model must carry everything it needs (its code, its state as data, requirements), and nothing in
it may be a pickle. Versions logged the old way (pickles) still load where pickle is allowed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import version
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.exceptions import MlflowException
from packaging.requirements import Requirement
from pickled_model import log_pickled, pickles_in, save_pickled
from support import make_reviews

from pyfunc import packaging
from pyfunc.contract import STATE_ARTIFACT
from pyfunc.pipeline import build_pipeline
from pyfunc.state import WEIGHTS_FILE

GUARD = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"
TEXTS = ["A wonderful, brilliant film.", "A dull and dreadful film.", "", "qwertz wonderful"]

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


@pytest.mark.slow
@pytest.mark.integration
def test_logged_model_loads_and_predicts_in_a_fresh_process_without_the_repo_or_pickles(
    pipeline, tracking_uri, tmp_path
):
    with mlflow.start_run():
        info = packaging.log_model(pipeline, name="model")
    child_dir = tmp_path / "elsewhere"
    child_dir.mkdir()
    env = {"MLFLOW_TRACKING_URI": tracking_uri, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-I", "-c", CHILD, info.model_uri, json.dumps(TEXTS)],
        cwd=child_dir,
        env={**env, GUARD: "false"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["labels"] == ["positive", "negative", "unknown", "positive"]
    assert result["scores"][2] == 0.5
    # the same numbers as the pipeline that was fitted in this process
    expected = pipeline.predict_proba(TEXTS)[:, 1]
    assert np.abs(np.array(result["scores"]) - expected).max() <= 1e-9
    venv = Path(sys.prefix).resolve()  # may live inside the repository, as .venv does here
    outside_venv = [
        Path(p).resolve() for p in result["sys_path"] if venv not in Path(p).resolve().parents
    ]
    assert not any(p == REPO_ROOT or REPO_ROOT in p.parents for p in outside_venv)
    assert str(REPO_ROOT) not in result["pyfunc_file"]  # the copy shipped inside the model
    assert not result["steps_imported"]
    assert "missing inputs ['review']" in result["wrong_column"]


def test_logged_model_carries_signature_example_and_requirement_ranges(pipeline, tracking_uri):
    with mlflow.start_run():
        info = packaging.log_model(pipeline, name="model")
    assert info.signature.inputs.input_names() == ["review"]
    assert info.signature.outputs.input_names() == ["label", "score"]
    local = Path(mlflow.artifacts.download_artifacts(info.model_uri))
    requirements = [Requirement(r) for r in (local / "requirements.txt").read_text().split()]
    assert {r.name for r in requirements} == {"mlflow", *packaging.RUNTIME_PACKAGES}
    for requirement in requirements:  # a range the next minor release falls in (mlflow pins)
        if requirement.name != "mlflow":
            installed = version(requirement.name).split(".")
            next_minor = f"{installed[0]}.{int(installed[1]) + 1}.0"
            assert requirement.specifier.contains(next_minor), requirement
    assert "scikit-learn" in {r.name for r in requirements}
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


def test_the_logged_model_is_code_and_data_with_no_pickle_anywhere(pipeline, tracking_uri):
    with mlflow.start_run():
        info = packaging.log_model(pipeline, name="model")
    local = Path(mlflow.artifacts.download_artifacts(info.model_uri))
    assert pickles_in(local) == []
    flavor = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"]
    assert "python_model" not in flavor  # MLflow's key for a cloudpickled PythonModel
    assert (local / Path(flavor["model_code_path"]).name).is_file()
    assert (local / "artifacts" / STATE_ARTIFACT / WEIGHTS_FILE).is_file()


def test_the_pickle_scan_finds_the_pickles_of_a_model_logged_the_old_way(pipeline, tmp_path):
    save_pickled(pipeline, tmp_path / "old")
    found = pickles_in(tmp_path / "old")
    assert any("python_model.pkl: named like a pickle" in f for f in found), found
    assert any("pipeline.joblib: named like a pickle" in f for f in found), found
    assert any("pickle protocol" in f and "python_model.pkl" in f for f in found), found
    objects = tmp_path / "objects.npz"
    np.savez(objects, allow_pickle=True, words=np.array([{"a": 1}], dtype=object))
    assert [f.split(": ", 1)[1] for f in pickles_in(tmp_path) if "objects.npz" in f] == [
        "a .npy array of Python objects (pickled)"
    ]


def test_a_damaged_state_stops_the_load_in_one_line_and_gives_no_model(pipeline, tmp_path):
    packaging.save_model(pipeline, tmp_path / "model")
    weights = tmp_path / "model" / "artifacts" / STATE_ARTIFACT / WEIGHTS_FILE
    size = weights.stat().st_size
    weights.write_bytes(weights.read_bytes()[:1000])
    model = None
    with pytest.raises(ValueError) as caught:
        model = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    assert model is None
    assert str(caught.value) == (
        f"{weights}: 1,000 bytes, model.json records {size:,}: the file was cut short, replaced"
        " or changed after it was written"
    )


def test_a_version_logged_the_old_way_still_loads_where_pickle_is_allowed(
    pipeline, tracking_uri, monkeypatch
):
    """Beside a new one in the same process: MLflow unpickles the old model as this code's class,
    whose load_context then reads the old joblib artifact."""
    monkeypatch.delenv(GUARD, raising=False)  # MLflow's default: pickles allowed
    with mlflow.start_run():
        new = packaging.log_model(pipeline, name="new")
        old = log_pickled(pipeline, name="old")
    frame = pd.DataFrame({"review": TEXTS})
    answers = [mlflow.pyfunc.load_model(m.model_uri).predict(frame) for m in (new, old)]
    pd.testing.assert_frame_equal(answers[0], answers[1], rtol=0, atol=1e-9)
    monkeypatch.setenv(GUARD, "false")
    with pytest.raises(MlflowException, match="Deserializing model using pickle is disallowed"):
        mlflow.pyfunc.load_model(old.model_uri)
    mlflow.pyfunc.load_model(new.model_uri)  # and the new one loads with the guard off


@pytest.mark.integration
def test_a_process_that_imported_an_older_pyfunc_says_to_load_the_model_afresh(pipeline, tmp_path):
    """MLflow reuses a `pyfunc` package already imported (from an older version's code/): the
    model then says so instead of failing on a missing artifact key."""
    packaging.save_model(pipeline, tmp_path / "model")
    older = tmp_path / "older" / "pyfunc"
    older.mkdir(parents=True)
    (older / "__init__.py").write_text("")
    (older / "model.py").write_text("PIPELINE_ARTIFACT = 'pipeline'\n")
    child = (
        f"import sys; sys.path.insert(0, {str(older.parent)!r}); import pyfunc.model, mlflow;"
        f" mlflow.pyfunc.load_model({str(tmp_path / 'model')!r})"
    )
    done = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, timeout=300,
        env={**os.environ, GUARD: "false"},
    )  # fmt: skip
    assert done.returncode != 0
    assert f"already imported an older pyfunc ({older / 'model.py'})" in done.stderr

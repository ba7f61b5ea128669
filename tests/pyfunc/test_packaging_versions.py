"""A model saved here loads and predicts the same in an environment with other library versions:
the previous scikit-learn minor release and the oldest numpy, scipy and pandas the model's
requirements allow (their lower bounds), with pickles refused. The state is data, so nothing
ties it to the versions that wrote it (a pickled pipeline would not load, or warn, there)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import version

import numpy as np
import pytest
from packaging.requirements import Requirement
from packaging.version import Version
from support import make_reviews

from pyfunc import packaging
from pyfunc.pipeline import build_pipeline

CHILD = textwrap.dedent(
    """
    import json, sys
    from importlib.metadata import version
    import mlflow, pandas as pd
    model = mlflow.pyfunc.load_model(sys.argv[1])
    answer = model.predict(pd.DataFrame({"review": json.loads(sys.argv[2])}))
    names = ("scikit-learn", "numpy", "scipy", "pandas")
    print(json.dumps({
        "scores": answer["score"].tolist(),
        "labels": answer["label"].tolist(),
        "versions": {name: version(name) for name in names},
    }))
    """
)


def _oldest(name: str) -> str:
    """`name==<lower bound>.*` from the model's requirement range."""
    spec = Requirement(f"{name}{packaging.RUNTIME_REQUIREMENTS[name]}").specifier
    floor = next(s.version for s in spec if s.operator == ">=")
    return f"{name}=={floor}.*"


@pytest.mark.slow
def test_a_saved_model_predicts_the_same_with_the_previous_scikit_learn_minor(tmp_path):
    frame = make_reviews(400, seed=21)
    texts, labels = frame["review"].tolist(), frame["sentiment"].tolist()
    recipes = {
        "shipped": build_pipeline(ngram_range=(1, 3), min_df=3),
        "svm, negation view": build_pipeline(classifier="svm", C=1.0, negation_view=True),
    }
    held_out = [*make_reviews(100, seed=22)["review"].tolist(), "", "qwertz wonderful"]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    wanted = [_oldest(name) for name in ("scikit-learn", "numpy", "scipy", "pandas")]
    wanted += ["prometheus-client", f"mlflow-skinny=={version('mlflow')}"]
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *wanted],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-3000:]
    for name, pipeline in recipes.items():
        pipeline.fit(texts, labels)
        packaging.save_model(pipeline, tmp_path / name)
        done = subprocess.run(
            [str(venv / "bin" / "python"), "-I", "-c", CHILD, str(tmp_path / name),
             json.dumps(held_out)],
            cwd=tmp_path, capture_output=True, text=True, timeout=300,
            env={"PATH": os.environ["PATH"], "HOME": str(tmp_path),
                 "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false"},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        there = json.loads(done.stdout.strip().splitlines()[-1])
        here = Version(version("scikit-learn"))
        older = Version(there["versions"]["scikit-learn"])
        assert (older.major, older.minor) < (here.major, here.minor), there["versions"]
        assert there["versions"]["numpy"].startswith(_oldest("numpy").split("==")[1][:-1])
        expected = pipeline.predict_proba(held_out)[:, 1]
        assert np.abs(np.array(there["scores"]) - expected).max() <= 1e-9, name
        assert there["labels"][-2] == "unknown"

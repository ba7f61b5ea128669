"""steps/measure/scoring.py: a model loaded by a stage runs the pyfunc/ code logged with it, even
though every stage imports pyfunc.contract (and with it the project's `pyfunc` package)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from steps.measure import scoring

# Appended to the copy's pyfunc/model.py: predict looks score_reviews up when called, so a model
# running this copy answers every review with this label.
OWN_CODE = textwrap.dedent(
    """

    _score_reviews = score_reviews


    def score_reviews(*args, **kwargs):
        answer = _score_reviews(*args, **kwargs)
        answer["label"] = "its own code"
        return answer
    """
)
# A stage process: steps imported first (so pyfunc.contract is), then the model loaded.
CHILD = textwrap.dedent(
    """
    import json, sys
    import mlflow, pandas as pd
    from steps.measure import scoring
    load = scoring.load_model if sys.argv[2] == "scoring" else mlflow.pyfunc.load_model
    answer = load(sys.argv[1]).predict(pd.DataFrame({"review": ["A fine film."]}))
    print(json.dumps(answer["label"].tolist()))
    """
)


@pytest.fixture(scope="module")
def logged_with_other_code(model_dir, tmp_path_factory) -> Path:
    """The small real model, its logged pyfunc/ changed: the code it ships is not the project's."""
    copy = tmp_path_factory.mktemp("other-code") / "model"
    shutil.copytree(model_dir, copy)
    model_py = copy / "code" / "pyfunc" / "model.py"
    model_py.write_text(model_py.read_text() + OWN_CODE)
    return copy


def labels_in_a_stage_process(model: Path, loader: str, cwd: Path) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(model), loader],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.slow
@pytest.mark.integration
def test_a_stage_process_runs_the_models_own_code(logged_with_other_code, tmp_path):
    assert labels_in_a_stage_process(logged_with_other_code, "scoring", tmp_path) == [
        "its own code"
    ]
    # What load_model prevents: loaded plainly, the project's package answers for the model's.
    plain = labels_in_a_stage_process(logged_with_other_code, "mlflow", tmp_path)
    assert plain != ["its own code"]


@pytest.mark.slow
@pytest.mark.integration
def test_the_scoring_children_run_each_models_own_code(logged_with_other_code, model_dir):
    own, project = scoring.score_models(
        [(str(logged_with_other_code), "changed copy"), (str(model_dir), "as logged")],
        ["A fine film.", "Dull."],
    )
    assert own["label"].tolist() == ["its own code"] * 2
    assert set(project["label"]) <= {"positive", "negative", "unknown"}
    assert own["score"].tolist() == project["score"].tolist()


def test_a_process_running_the_projects_model_code_keeps_it(logged_with_other_code):
    from pyfunc import model as project_model  # as train and the tests import it

    model = scoring.load_model(str(logged_with_other_code))
    assert sys.modules["pyfunc.model"] is project_model
    answer = model.predict(pd.DataFrame({"review": ["A fine film."]}))
    assert answer["label"].tolist() != ["its own code"]

"""The tune entry point (steps/tune.py): a grid's candidates; a real tune on small data written
here logs one nested run per candidate, ranks them and prints the winner as params.yaml lines; a
bad grid stops `python -m steps.tune` before any work; `mlflow run . -e tune`. (The grid's checks
through every door: tests/steps/stage/test_grid.py.)"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient
from support import make_reviews, make_unlabeled, mark_validated, write_ingested

from pyfunc.cleaning import clean
from steps import tune
from steps.entry import cli
from steps.stage import grid
from steps.stage.coercion import mapping_text
from steps.stage.config import TrainConfig, load_params
from steps.stage.paths import INGESTED_DIR, TUNE_REPORT, UNLABELED_FILE_NAME, VALIDATED_MARKER
from steps.stage.schema import hints

REPO_ROOT = Path(__file__).resolve().parents[2]
PARAMS = REPO_ROOT / "params.yaml"
TRAIN_KEYS = sorted(load_params(PARAMS).train.__dataclass_fields__)
RECIPE_KEYS = ", ".join(sorted(grid.recipe_keys(hints(TrainConfig))))


def test_grid_text_and_yaml_make_the_same_candidates():
    params = load_params(PARAMS)
    _, cfg, _ = cli.parse(
        "tune", ["--params", str(PARAMS), "--grid", "C=10|30;ngram_range=1,2|1,3;unlabeled=none"]
    )
    made = tune.candidates(cfg, params.train)
    assert [values for values, _ in made] == [
        {"C": 10.0, "ngram_range": (1, 2), "unlabeled": "none"},
        {"C": 10.0, "ngram_range": (1, 3), "unlabeled": "none"},
        {"C": 30.0, "ngram_range": (1, 2), "unlabeled": "none"},
        {"C": 30.0, "ngram_range": (1, 3), "unlabeled": "none"},
    ]
    recipe = made[1][1]
    assert (recipe.C, recipe.ngram_range, recipe.unlabeled) == (10.0, (1, 3), "none")
    assert recipe.views == params.train.views  # the rest is params.yaml's recipe
    # params.yaml's own grid (a YAML mapping) is the same grid as its text
    assert mapping_text(params.tune.grid) == "C=10|30;ngram_range=1,2|1,3"
    from_yaml = [v for v, _ in tune.candidates(params.tune, params.train)]
    assert from_yaml == [{k: v for k, v in c.items() if k != "unlabeled"} for c, _ in made]


# A real tune on small data


@pytest.fixture(scope="module")
def reviews() -> pd.DataFrame:
    frame = make_reviews(300, seed=8)
    return frame.assign(movie=[f"tt{i // 3:07d}" for i in range(len(frame))])  # 3 per movie


@pytest.fixture
def ingested(in_project_dir, reviews) -> Path:
    """The small reviews ingested and validated in the working directory (a tmp folder)."""
    unlabeled = pd.DataFrame({"review": make_unlabeled(60)})
    write_ingested(in_project_dir / INGESTED_DIR, reviews[:240], reviews[240:], unlabeled)
    mark_validated(in_project_dir / INGESTED_DIR, in_project_dir / VALIDATED_MARKER)
    return in_project_dir


@pytest.fixture
def forget_experiment():
    """The CLI sets this process's active experiment; forget it for the tests after."""
    yield
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    mlflow.tracking.fluent._active_experiment_id = None


def test_tune_logs_a_nested_run_per_candidate_ranks_them_and_prints_the_lines_to_paste(
    ingested, tracking_uri, capsys, forget_experiment
):
    grid = "C=0.01|30;min_df=1|2;unlabeled=none"
    assert tune.main(["--params", str(PARAMS), "--grid", grid, "--folds", "3"]) == 0
    out = capsys.readouterr().out
    client = MlflowClient()
    experiment = client.get_experiment_by_name("imdb-sentiment")
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("stage") == "tune"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 4 and len(runs) == 5
    assert {r.data.tags["stage"] for r in children} == {tune.CANDIDATE_STAGE}
    # the whole recipe on every candidate: the same param keys, the grid's values among them
    assert all(sorted(r.data.params) == TRAIN_KEYS for r in children)
    assert sorted((r.data.params["C"], r.data.params["min_df"]) for r in children) == [
        ("0.01", "1"), ("0.01", "2"), ("30.0", "1"), ("30.0", "2"),
    ]  # fmt: skip
    assert {r.data.params["unlabeled"] for r in children} == {"none"}
    for child in children:
        folds = client.get_metric_history(child.info.run_id, tune.FOLD_METRIC)
        assert sorted(m.step for m in folds) == [1, 2, 3]
        accuracies = [m.value for m in sorted(folds, key=lambda m: m.step)]
        m = child.data.metrics
        assert m["cv_accuracy_mean"] == pytest.approx(sum(accuracies) / 3)
        assert m["cv_accuracy_std"] == pytest.approx(pd.Series(accuracies).std(ddof=0))
        assert m["fit_cpu_seconds"] > 0 and m["fit_seconds"] > 0
    ranked = sorted(children, key=lambda r: r.data.metrics["rank"])
    means = [r.data.metrics["cv_accuracy_mean"] for r in ranked]
    assert means == sorted(means, reverse=True) and [r.data.tags["rank"] for r in ranked] == [
        "1", "2", "3", "4",
    ]  # fmt: skip
    # C=0.01 all but ignores the reviews: both C=30 candidates rank above it
    assert {r.data.params["C"] for r in ranked[:2]} == {"30.0"}
    assert parent.data.params["grid"] == grid and parent.data.params["folds"] == "3"
    assert parent.data.metrics["best_cv_accuracy_mean"] == means[0]
    assert parent.data.tags["best_candidate_run_id"] == ranked[0].info.run_id
    # the table printed is the one written to reports/tune.md and logged with the run
    table = (ingested / TUNE_REPORT).read_text()
    assert table in out and "3 folds by movie" in table and "240 reviews" in table
    rows = [line for line in table.splitlines() if line.startswith("| 1 |")]
    assert rows[0].startswith(f"| 1 | {ranked[0].data.params['C']} |".replace("30.0", "30.0"))
    logged = client.list_artifacts(parent.info.run_id)
    assert [a.path for a in logged] == ["tune.md"]
    # the winner as the params.yaml lines to paste: the varied keys whose best value is not
    # params.yaml's (C=30 is); a key given one value is said to be fixed, not pasted
    best = ranked[0].data.params
    assert "Set for every candidate by the grid, not ranked: unlabeled=none." in out
    lines = out.split("To ship it, set these in params.yaml (tune never edits it):\n", 1)[1]
    assert yaml.safe_load(lines) == {"train": {"min_df": int(best["min_df"])}}
    assert yaml.safe_load(PARAMS.read_text())["train"]["C"] == 30.0  # untouched


def test_a_self_training_candidate_learns_from_no_copy_of_its_held_out_fold(
    ingested, tracking_uri, reviews, monkeypatch
):
    """Each fold's self-trained fit gets the unlabeled reviews minus copies (as the model sees
    them) of that fold's held-out reviews; a plain candidate gets none."""
    copied = reviews["review"][:5].str.upper().tolist()  # train reviews in another case
    unlabeled = pd.DataFrame({"review": make_unlabeled(40) + copied})
    write_ingested(ingested / INGESTED_DIR, reviews[:240], reviews[240:], unlabeled)
    mark_validated(ingested / INGESTED_DIR, ingested / VALIDATED_MARKER)
    seen = []
    real_fit = tune.fit

    def fit(recipe, texts, labels, extra=None, cleaned=False):
        seen.append((recipe.unlabeled, texts, extra, cleaned))
        return real_fit(recipe, texts, labels, extra, cleaned=cleaned)

    monkeypatch.setattr(tune, "fit", fit)
    params = load_params(PARAMS)
    _, cfg, _ = cli.parse(
        "tune",
        ["--params", str(PARAMS), "--grid", "unlabeled=self_training|none;self_training_rounds=1"],
    )
    plain = dataclasses.replace(params.train, unlabeled="none")  # the grid turns it on
    with mlflow.start_run():
        tuned = tune.run(cfg, plain)
    assert tuned.unlabeled == 45 and len(seen) == 10
    for use, texts, extra, cleaned in seen:
        if use == "none":
            assert extra is None
            continue
        assert cleaned  # the unlabeled reviews come cleaned, once for every fold
        fitted = {text.lower() for text in texts}
        held_copies = [text for text in copied if text.lower() not in fitted]
        assert len(extra) == 45 - len(held_copies)
        assert not {clean(text) for text in held_copies} & set(extra)


@pytest.mark.integration
def test_a_bad_grid_stops_python_m_steps_tune_before_any_work(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DAGSHUB_"))}
    done = subprocess.run(
        [sys.executable, "-m", "steps.tune", "--params", str(PARAMS), "--grid", "C=1|3;Cc=2"],
        cwd=tmp_path, env={**env, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "error: tune: tune parameters: grid holds an unknown train key 'Cc' (did you mean 'C'?"
        f" known: {RECIPE_KEYS})"
    ]
    assert list(tmp_path.iterdir()) == []  # no store, no data, no report


@pytest.mark.integration
@pytest.mark.slow
def test_mlflow_run_tune_in_a_project_copy(project_copy, reviews, tracking_uri):
    """`mlflow run <project> -e tune -P grid=... -P folds=2 --env-manager local`."""
    write_ingested(project_copy / INGESTED_DIR, reviews[:240], reviews[240:])
    mark_validated(project_copy / INGESTED_DIR, project_copy / VALIDATED_MARKER)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(
        [sys.executable, "-m", "mlflow", "run", str(project_copy), "--env-manager", "local",
         "-e", "tune", "-P", "grid=C=1|30;ngram_range=1,2", "-P", "folds=2"],
        cwd=project_copy, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "To ship it" in done.stdout or "nothing to paste" in done.stdout
    runs = MlflowClient().search_runs(
        [MlflowClient().get_experiment_by_name("Default").experiment_id]
    )
    children = [r for r in runs if r.data.tags.get("stage") == tune.CANDIDATE_STAGE]
    assert sorted(r.data.params["C"] for r in children) == ["1.0", "30.0"]
    assert {r.data.params["ngram_range"] for r in children} == {"1,2"}
    assert (project_copy / TUNE_REPORT).is_file()


def test_only_varied_keys_whose_best_value_is_new_are_to_paste():
    params = load_params(PARAMS)
    _, cfg, _ = cli.parse(
        "tune", ["--params", str(PARAMS), "--grid", "C=10|30;min_df=2|3;unlabeled=none"]
    )
    (values, recipe), *_ = [(v, r) for v, r in tune.candidates(cfg, params.train) if v["C"] == 30]
    best = tune.Candidate(1, values, recipe, (0.9,), 1.0, 1.0, "run")
    assert values == {"C": 30.0, "min_df": 2, "unlabeled": "none"}
    assert tune.to_paste(best, cfg, params.train) == {"min_df": 2}  # C=30 is params.yaml's
    assert tune.paste_lines({"min_df": 2, "ngram_range": (1, 2)}) == (
        "train:\n  min_df: 2\n  ngram_range:\n  - 1\n  - 2\n"
    )
    same = dict(values, min_df=params.train.min_df)
    assert tune.to_paste(dataclasses.replace(best, values=same), cfg, params.train) == {}


def test_tune_cleans_each_unlabeled_review_once(
    ingested, tracking_uri, monkeypatch, forget_experiment
):
    from pyfunc import cleaning

    unlabeled = pd.read_parquet(ingested / INGESTED_DIR / UNLABELED_FILE_NAME)["review"].tolist()
    cleaned, real = Counter(), cleaning.clean
    monkeypatch.setattr(
        cleaning,
        "clean",
        lambda text, negation=False: cleaned.update([text]) or real(text, negation),
    )
    grid = "C=10|30;unlabeled=self_training"
    assert tune.main(["--params", str(PARAMS), "--grid", grid, "--folds", "3"]) == 0
    # checked against the test split, kept out of the folds they copy, learnt from by 2 x 3 fits
    assert [cleaned[text] for text in unlabeled] == [1] * len(unlabeled)

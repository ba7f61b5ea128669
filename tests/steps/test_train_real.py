"""Train and evaluate on the real IMDB reviews (../shared/data/imdb): the figures that matter."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split
from support import mark_validated, write_ingested

from steps import evaluate, train
from steps.stage.config import load_params
from steps.tracking import runs


@pytest.mark.slow
def test_real_data_accuracy_and_behavioural_checks(shared_imdb_dir, tracking_uri, tmp_path):
    frame = pd.read_csv(shared_imdb_dir / "train.csv.gz")
    # the stratified 5,000-review split (seed 0) the recipe was chosen on serves as the test split
    fit, test = train_test_split(frame, test_size=5000, stratify=frame["sentiment"], random_state=0)
    ingested = write_ingested(tmp_path / "ingested", fit, test)
    marker = mark_validated(ingested)
    params = load_params()
    model_dir, info_file = tmp_path / "models" / "model", tmp_path / "models" / "model.json"
    with mlflow.start_run():
        info = train.run(
            params.train,
            ingested_dir=ingested,
            model_dir=model_dir,
            info_file=info_file,
            metrics_file=tmp_path / "train_metrics.json",
            marker=marker,
        )
    with mlflow.start_run():
        report = evaluate.run(
            params.evaluate,
            runs.from_record(info_file, model_dir),
            ingested_dir=ingested,
            metrics_file=tmp_path / "metrics.json",
            evaluation_file=tmp_path / "evaluation.json",
            plots_dir=tmp_path / "plots",
            misclassified_file=tmp_path / "misclassified.csv",
            behavioural_file=tmp_path / "behavioural.json",
            marker=marker,
            sample_file=tmp_path / "analysis_sample.json",
        )
    assert info["metrics"]["val_accuracy"] >= 0.90
    assert report["metrics"]["accuracy"] >= 0.90
    assert report["behavioural_checks_passed"], report
    assert info["metrics"]["model_size_mb"] < 100

"""`monitor`: a batch of reviews against the champion's training profile, from the registry alone.

The champion is trained by train's own code on synthetic reviews (so it ships a real profile),
registered in a SQLite registry in tmp and made champion; every batch is written by the test: one
from the same distribution (no figure over its bound) and shifted ones, each flagged by the
figure that describes its shift. Bad input is one line, exit 1, and no report.
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from support import REPO_ROOT, make_reviews, point_mlflow_at

from steps import monitor
from steps.data.sources import Labels
from steps.data.sources.tables import tidy
from steps.stage.errors import SourceError
from steps.tracking import registry, store

MODEL_NAME = "imdb-sentiment"
PARAMS = str(REPO_ROOT / "params.yaml")
EVALUATED_ACCURACY = 0.97


@pytest.fixture(scope="module")
def champion_store(tmp_path_factory) -> str:
    """A tmp SQLite registry whose champion was trained by steps.train (profile included)."""
    from steps.stage.config import load_params
    from steps.train import Trained, train_model
    from steps.train import log_model as train_log_model

    folder = tmp_path_factory.mktemp("monitor-registry")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    reviews = make_reviews(800, seed=11)
    with pytest.MonkeyPatch.context() as patch:
        point_mlflow_at(patch, uri)
        store.configure()
        try:
            texts, labels = reviews["review"].tolist(), reviews["sentiment"].tolist()
            cfg = load_params().train
            # the champion (version 1) is calibrated; version 2, as logged before calibration, not
            for calibration in ("best", "none"):
                recipe = dataclasses.replace(cfg, calibration=calibration)
                trained: Trained = train_model(texts, labels, recipe)
                with mlflow.start_run() as run:
                    model_uri, _ = train_log_model(trained, folder / "unused", run.info.run_id)
                version = mlflow.register_model(model_uri, MODEL_NAME).version
                registry.set_version_tags(MODEL_NAME, version, {monitor.ACCURACY_TAG: 0.97})
            registry.set_alias(MODEL_NAME, registry.CHAMPION_ALIAS, "1")
        finally:
            mlflow.set_tracking_uri(None)
            mlflow.set_registry_uri(None)
    return uri


@pytest.fixture
def workdir(tmp_path, monkeypatch, champion_store) -> Path:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", champion_store)
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_monitor(batch: str, *extra: str) -> int:
    return monitor.main(["--params", PARAMS, "--batch", batch, *extra])


def error_line(capsys) -> str:
    """The one `error:` line on stderr, which must also be its last line."""
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], lines[-5:]
    return errors[0]


def report(workdir: Path) -> dict:
    return json.loads((workdir / "reports" / "monitor" / "report.json").read_text())


def write_batch(workdir: Path, frame: pd.DataFrame, name: str = "batch.csv") -> str:
    if name.endswith(".parquet"):
        frame.to_parquet(workdir / name, index=False)
    else:
        frame.to_csv(workdir / name, index=False)
    return str(workdir / name)


FRENCH = [
    "Le film était {a}, et les acteurs étaient {b} aussi. Je ne le reverrai pas de sitôt.",
    "Quelle histoire {a} ! La mise en scène est {b} et la musique reste dans la tête.",
    "Franchement, le scénario est {a} du début à la fin, mais la photographie est {b}.",
]
FRENCH_WORDS = ["magnifique", "ennuyeux", "touchant", "lent", "drôle", "raté", "superbe"]
SHORT = ["Great film.", "Awful.", "Loved it!", "Boring.", "Superb!", "Dull film.", "Wonderful."]


def shifted(kind: str, n: int = 300) -> pd.DataFrame:
    rng = random.Random(7)
    same = make_reviews(n, seed=5)
    if kind == "short":
        return pd.DataFrame({"review": [f"{rng.choice(SHORT)} #{i}" for i in range(n)]})
    if kind == "french":
        texts = [
            rng.choice(FRENCH).format(a=rng.choice(FRENCH_WORDS), b=rng.choice(FRENCH_WORDS))
            + f" Critique {i}."
            for i in range(n)
        ]
        return pd.DataFrame({"review": texts})
    if kind == "markup":
        texts = [
            f'<div class="review-body"><p><span style="font-weight:bold">{t}</span></p>'
            f'<a href="https://example.org/reviews/{i}?ref=feed&amp;src=rss">read more</a></div>'
            for i, t in enumerate(same["review"])
        ]
        return pd.DataFrame({"review": texts})
    if kind == "one-sided":
        return make_reviews(n, seed=5, positive_share=1.0)
    raise ValueError(kind)


def test_a_batch_like_the_training_data_shows_no_drift(workdir, capsys):
    batch = write_batch(workdir, make_reviews(300, seed=5))
    assert run_monitor(batch) == 0, capsys.readouterr().err
    found = report(workdir)
    assert found["drift"] is False and found["crossed"] == []
    names = {f["name"] for f in found["figures"]}
    assert {"review_length_psi", "score_psi", "score_ks", "accuracy_drop"} <= names
    accuracy = next(f for f in found["figures"] if f["name"] == "accuracy_drop")
    assert accuracy["training"] == pytest.approx(EVALUATED_ACCURACY)  # the registry's figure
    html = (workdir / "reports" / "monitor" / "report.html").read_text()
    assert "No drift" in html and "data:image/png;base64," in html
    run = mlflow.search_runs(search_all_experiments=True, output_format="list")[0]
    assert run.data.tags["stage"] == "monitor" and run.data.tags["drift"] == "none"
    assert run.data.metrics["score_psi"] == pytest.approx(
        next(f["value"] for f in found["figures"] if f["name"] == "score_psi")
    )
    assert "monitor/report.html" in [
        a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "monitor")
    ]


@pytest.mark.parametrize(
    ("kind", "figure"),
    [
        ("short", "review_length_psi"),
        ("french", "not_english_increase"),
        ("markup", "markup_increase"),
        ("one-sided", "positive_label_shift"),
    ],
)
def test_a_shifted_batch_is_flagged_by_the_figure_that_describes_it(workdir, capsys, kind, figure):
    batch = write_batch(workdir, shifted(kind))
    assert run_monitor(batch) == 1
    line = error_line(capsys)
    assert line.startswith("error: monitor: drift: ")
    assert f"{figure} " in line and "> monitor.max_" in line
    found = report(workdir)
    assert found["drift"] is True
    assert figure in {f["name"] for f in found["figures"] if f["crossed"]}
    run = mlflow.search_runs(search_all_experiments=True, output_format="list")[0]
    assert run.data.tags["drift"] == "found" and run.info.status == "FINISHED"


def test_unlabelled_batches_are_read_and_have_no_label_figures(workdir):
    frame = make_reviews(300, seed=5)[["review"]]
    assert run_monitor(write_batch(workdir, frame, "batch.parquet")) == 0
    names = {f["name"] for f in report(workdir)["figures"]}
    assert "accuracy_drop" not in names and "positive_label_shift" not in names


def test_a_batch_from_a_folder_source_as_ingest_reads_it(workdir):
    folder = workdir / "exports"
    folder.mkdir()
    make_reviews(300, seed=5).to_csv(folder / "train.csv.gz", index=False)
    assert run_monitor(str(folder)) == 0
    assert report(workdir)["reviews"] == 300


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file or folder"),
        (b"\xff\xfe not text", "not UTF-8"),
        (b"", "the file is empty"),
        (b"review,sentiment\n", "no rows"),
        (b"text,stars\nA fine film,5\n", "missing column review"),
    ],
    ids=["missing", "unreadable", "empty-file", "no-rows", "no-review-column"],
)
def test_bad_batches_are_one_line_and_leave_no_report(workdir, capsys, content, expected):
    path = workdir / "batch.csv"
    if content is not None:
        path.write_bytes(content)
    assert run_monitor(str(path)) == 1
    line = error_line(capsys)
    assert line.startswith("error: monitor: ") and expected in line
    assert not (workdir / "reports" / "monitor").exists()


def test_too_small_a_batch_and_an_unknown_model_are_one_line(workdir, capsys):
    assert run_monitor(write_batch(workdir, make_reviews(20, seed=5))) == 1
    assert "fewer than monitor.min_reviews=100" in error_line(capsys)
    assert run_monitor(write_batch(workdir, make_reviews(300, seed=5)), "--model", "7") == 1
    assert "has no version 7" in error_line(capsys)
    assert not (workdir / "reports" / "monitor").exists()


def test_labels_stay_required_for_ingest_and_are_optional_only_when_asked():
    frame = pd.DataFrame({"Review": ["A fine film.", "A dull film."]})
    with pytest.raises(SourceError, match="missing column sentiment"):
        tidy(frame, "t.csv", Labels.REQUIRED)
    assert tidy(frame, "t.csv", Labels.OPTIONAL).columns.tolist() == ["review"]
    bad = pd.DataFrame({"review": ["x"], "sentiment": ["meh"]})
    with pytest.raises(SourceError, match="sentiment other than"):
        tidy(bad, "t.csv", Labels.OPTIONAL)  # a label column that is there is still checked


def mixed(n: int, seed: int = 5) -> pd.DataFrame:
    """Reviews that praise and pan at once: the model is unsure of each (labels kept)."""
    pos = make_reviews(n, seed=seed, positive_share=1.0)["review"]
    neg = make_reviews(n, seed=seed + 1, positive_share=0.0)["review"]
    labels = ["positive" if i % 2 else "negative" for i in range(n)]
    return pd.DataFrame(
        {"review": [f"{a} {b}" for a, b in zip(pos, neg, strict=True)], "sentiment": labels}
    )


def figure(found: dict, name: str) -> dict:
    return next(f for f in found["figures"] if f["name"] == name)


@pytest.mark.parametrize("labelled", [False, True], ids=["unlabelled", "labelled"])
def test_the_label_free_estimate_is_reported_with_intervals_and_the_truth(
    workdir, capsys, labelled
):
    frame = make_reviews(300, seed=5)
    assert run_monitor(write_batch(workdir, frame if labelled else frame[["review"]])) == 0
    found = report(workdir)
    assert found["calibrated"] is True and found["evaluated_accuracy"] == EVALUATED_ACCURACY
    assert 0.9 <= found["estimated_accuracy"] <= 1
    assert ("accuracy" in found) == labelled
    for name in ("accuracy", "precision", "recall", "f1"):
        entry = found["estimates"][name]
        low, high = entry["interval_95"]
        assert 0 <= low <= entry["estimate"] <= high <= 1, (name, entry)
        assert (entry["truth"] is not None) == labelled
    if labelled:
        assert found["accuracy"] == found["estimates"]["accuracy"]["truth"] > 0.9
    drop = figure(found, "estimated_accuracy_drop")
    assert drop["bound"] == 0.02 and not drop["crossed"]
    assert drop["value"] == pytest.approx(EVALUATED_ACCURACY - found["estimated_accuracy"])
    out = capsys.readouterr().out
    assert "label-free estimate (evaluated accuracy 0.9700)" in out and "95%" in out


@pytest.mark.parametrize(
    ("reviews", "version", "finding"),
    [(400, "champion", True), (150, "champion", False), (400, "2", False)],
    ids=["calibrated", "too-few-reviews", "uncalibrated-version"],
)
def test_an_estimated_accuracy_drop_is_a_finding_only_when_it_can_be_trusted(
    workdir, capsys, reviews, version, finding
):
    batch = write_batch(workdir, mixed(reviews)[["review"]])
    loose = ["--max_score_psi", "100", "--max_score_ks", "1", "--max_length_psi", "100"]
    code = run_monitor(batch, "--model", version, *loose)
    found = report(workdir)
    drop = figure(found, "estimated_accuracy_drop")
    assert found["estimated_accuracy"] < EVALUATED_ACCURACY - 0.02  # the model is unsure
    assert drop["crossed"] is finding and (drop["bound"] is not None) is finding
    assert code == (1 if finding else 0)
    captured = capsys.readouterr()
    if finding:
        assert "estimated_accuracy_drop" in error_line_of(captured.err)
        assert "monitor.max_estimated_accuracy_drop 0.02" in captured.err
    elif version == "2":
        assert found["calibrated"] is False and "uncalibrated" in drop["detail"]
        assert sum("uncalibrated version" in line for line in captured.out.splitlines()) == 1
    else:
        assert "fewer than monitor.min_estimate_reviews=200" in drop["detail"]
        low, high = found["estimates"]["accuracy"]["interval_95"]
        assert high - low > 0.05  # reported, with its wide interval


def error_line_of(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1
    return lines[0]

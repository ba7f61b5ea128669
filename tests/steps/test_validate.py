"""validate: the real Great Expectations suites on small splits written by each test."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from support import SAME_TO_THE_MODEL, make_reviews, make_unlabeled, write_ingested

from steps import validate as stage
from steps.data.dataset import (
    COLUMNS,
    LABELS,
    UNLABELED,
    is_validated,
    read_marker,
    require_validated,
)
from steps.stage.config import ValidateConfig, load_params
from steps.stage.errors import StageError, ValidationFailed
from steps.validation.suite import load_suite_json

REPO = Path(__file__).resolve().parents[2]
MIN_ROWS = 100  # small data; the default (1000) is checked by the real-data test


@pytest.fixture
def cfg() -> ValidateConfig:
    """params.yaml's validate section, suites by absolute path, min_rows fit for small data."""
    defaults = load_params(REPO / "params.yaml").validate
    return dataclasses.replace(
        defaults,
        suite=str(REPO / defaults.suite),
        train_test_suite=str(REPO / defaults.train_test_suite),
        unlabeled_suite=str(REPO / defaults.unlabeled_suite),
        min_rows=MIN_ROWS,
    )


@dataclasses.dataclass
class Layout:
    ingested: Path
    marker: Path
    report: Path

    def write(self, train: pd.DataFrame, test: pd.DataFrame, unlabeled=None) -> None:
        write_ingested(self.ingested, train, test, unlabeled)

    def check(self, cfg: ValidateConfig) -> stage.Outcome:
        return stage.check(cfg, self.ingested, self.marker, self.report)


@pytest.fixture
def layout(tmp_path) -> Layout:
    return Layout(
        tmp_path / "data" / "ingested",
        tmp_path / "data" / "validated.json",
        tmp_path / "reports" / "validation",
    )


def clean() -> tuple[pd.DataFrame, pd.DataFrame]:
    return make_reviews(400, seed=1), make_reviews(120, seed=2)


def failures_of(
    layout: Layout, cfg: ValidateConfig, train, test, unlabeled=None
) -> tuple[str, ...]:
    layout.write(train, test, unlabeled)
    outcome = layout.check(cfg)
    assert not outcome.success
    assert not layout.marker.exists()
    return outcome.failures


def test_clean_data_passes_and_writes_marker_and_report(layout, cfg, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # GX must leave no gx/ project folder in the working directory
    layout.write(*clean())

    outcome = layout.check(cfg)

    assert outcome.success and not outcome.cached
    assert outcome.failures == () and outcome.failed == 0
    assert outcome.evaluated == 25  # 12 per split + the train/test overlap
    assert outcome.rows == {"train": 400, "test": 120}
    assert is_validated(layout.ingested, layout.marker)
    require_validated(layout.ingested, layout.marker)
    recorded = read_marker(layout.marker)
    assert recorded["bounds"] == stage.bounds(cfg)
    assert recorded["suite_sha256"] == stage.suites_sha256(cfg)
    report = json.loads((layout.report / "validation_result.json").read_text())
    assert report["success"] is True
    assert set(report["results"]) == {"train", "test", "train+test"}
    assert all(r["success"] for r in report["results"].values())
    # The Data Docs site: an index, a page per suite and one per validated batch.
    assert (layout.report / "index.html").is_file()
    assert sorted(p.name for p in (layout.report / "expectations").glob("*.html")) == [
        "imdb_reviews.html",
        "imdb_train_test.html",
    ]
    pages = sorted(p.name for p in (layout.report / "validations").rglob("*.html"))
    assert pages == ["imdb-test.html", "imdb-train+test.html", "imdb-train.html"]
    assert not (tmp_path / "gx").exists()
    assert not list(layout.report.parent.glob(".*tmp"))  # no temp folders left by the swap


def test_second_run_reuses_the_marker_until_data_suite_or_bounds_change(layout, cfg, tmp_path):
    train, test = clean()
    layout.write(train, test)
    first = layout.check(cfg)
    result_file = layout.report / "validation_result.json"
    written = result_file.stat().st_mtime_ns

    again = layout.check(cfg)
    assert again.cached and again.success
    assert again.evaluated == first.evaluated and again.rows == first.rows
    assert result_file.stat().st_mtime_ns == written  # GX did not run again

    stricter = dataclasses.replace(cfg, max_overlap_fraction=0.01)
    assert not layout.check(stricter).cached

    edited = tmp_path / "edited_suite.json"
    suite = load_suite_json(Path(cfg.suite))
    suite["notes"] = "reviewed again"
    edited.write_text(json.dumps(suite), encoding="utf-8")
    assert not layout.check(dataclasses.replace(stricter, suite=str(edited))).cached

    layout.write(train.iloc[:-1], test)  # new content
    assert not layout.check(cfg).cached


def test_missing_column(layout, cfg):
    train, test = clean()
    failures = failures_of(layout, cfg, train, test.drop(columns=["sentiment"]))
    assert failures == (
        "test: sentiment: column is missing (columns present: review);"
        " 4 other checks on it could not run",
    )


def test_null_and_blank_reviews(layout, cfg):
    train, test = clean()
    train.loc[[5, 9, 40], "review"] = None
    train.loc[[7, 300], "review"] = ["", "   "]

    failures = failures_of(layout, cfg, train, test)

    assert "train: review: 3 of 400 rows are null, e.g. rows 5, 9, 40" in failures
    assert "train: review: 2 of 400 rows are blank, e.g. '', '   '" in failures
    # A blank review is also too short; that is the only other failure.
    (short,) = [f for f in failures if "characters" in f]
    assert short.startswith("train: review: 2 of 400 rows are shorter than 10 or longer than")
    assert len(failures) == 3


def test_review_length_bounds(layout, cfg):
    train, test = clean()
    test.loc[3, "review"] = "Meh."
    test.loc[4, "review"] = "x" * 25_000
    (failure,) = failures_of(layout, cfg, train, test)
    assert failure.startswith(
        "test: review: 2 of 120 rows are shorter than 10 or longer than 20,000 characters,"
        " e.g. 'Meh.' (4 chars), 'xxxx"
    )
    assert failure.endswith("(25,000 chars) [validate.min_review_chars, validate.max_review_chars]")


def test_unknown_label(layout, cfg):
    train, test = clean()
    train.loc[:5, "sentiment"] = "neutral"
    train.loc[6, "sentiment"] = "pos"
    (failure,) = failures_of(layout, cfg, train, test)
    assert failure == (
        "train: sentiment: 7 of 400 rows are not one of negative, positive,"
        " e.g. 'neutral' x6, 'pos' x1"
    )


def test_class_imbalance_95_5(layout, cfg):
    _, test = clean()
    train = make_reviews(400, seed=1, positive_share=0.95)
    (failure,) = failures_of(layout, cfg, train, test)
    assert failure == (
        "train: sentiment: class balance off: negative 20 (5.0%), positive 380 (95.0%)"
        " of 400 rows; each must be at least 40% [validate.min_class_fraction]"
    )


def test_one_label_missing_entirely(layout, cfg):
    train, test = clean()
    test = test[test["sentiment"] == "positive"]
    failures = failures_of(layout, cfg, train, test)
    assert any(
        f.startswith("test: sentiment: class balance off: negative 0 (0.0%)") for f in failures
    )


def test_many_duplicates(layout, cfg):
    train, test = clean()
    train.loc[1:40, "review"] = train.loc[0, "review"]  # 40 extra copies: 10% of the split
    (failure,) = failures_of(layout, cfg, train, test)
    assert failure.startswith(
        "train: review: 40 of 400 rows (10.0%) repeat an earlier review as the model sees it,"
        f" more than the 2.0% allowed, e.g. '{train.loc[0, 'review'][:39]}…' x41"
    )
    assert re.search(r"x41 \[validate.max_duplicate_fraction\]$", failure)


def test_train_test_leakage(layout, cfg):
    train, test = clean()
    test.loc[:11, "review"] = train["review"].iloc[:12].to_numpy()  # 12 of 120 test rows: 10%
    (failure,) = failures_of(layout, cfg, train, test)
    assert failure.startswith(
        "test: review: 12 of 120 rows (10.0%) also occur in train (review as the model sees it),"
        " more than the 2.0% allowed, e.g. "
    )
    assert failure.endswith("[validate.max_overlap_fraction]")


def unlabeled_reviews(n: int = 150) -> pd.DataFrame:
    return pd.DataFrame({"review": make_unlabeled(n)}, dtype="str")


def test_unlabeled_split_is_checked_with_test_when_there_is_one(layout, cfg):
    train, test = clean()
    layout.write(train, test, unlabeled_reviews())
    outcome = layout.check(cfg)
    assert outcome.success, outcome.failures
    assert outcome.evaluated == 25 + 5  # + the unlabeled suite
    assert outcome.rows == {"train": 400, "test": 120, "unlabeled": 150}
    report = json.loads((layout.report / "validation_result.json").read_text())
    assert set(report["results"]) == {"train", "test", "train+test", "unlabeled"}


def test_unlabeled_blank_too_long_and_test_copies_fail(layout, cfg):
    train, test = clean()
    unlabeled = unlabeled_reviews()
    unlabeled.loc[0, "review"] = "   "
    unlabeled.loc[1, "review"] = "x" * (cfg.max_review_chars + 1)
    unlabeled.loc[2:4, "review"] = test["review"].iloc[:3].to_numpy()
    failures = failures_of(layout, cfg, train, test, unlabeled)
    assert "unlabeled: review: 1 of 150 rows are blank, e.g. '   '" in failures
    assert any(
        f.startswith("unlabeled: review: 2 of 150 rows are shorter than 10 or longer than 20,000")
        for f in failures
    ), failures
    (overlap,) = [f for f in failures if "also occur" in f]
    assert overlap.startswith(
        "unlabeled: review: 3 of 150 rows (2.0%) also occur in test (review as the model sees it),"
    )
    assert len(failures) == 3


SPELLINGS = ["swapped-case", "tabs-newlines", "u2028"]


@pytest.mark.parametrize("name", SPELLINGS)
def test_copies_are_found_as_the_model_sees_the_text(layout, cfg, name):
    """Case and whitespace variants are copies: in a split, between train and test, and
    between unlabeled and test."""
    spell = SAME_TO_THE_MODEL[name]
    train, test = clean()
    train.loc[:39, "review"] = [spell(text) for text in train["review"].iloc[40:80]]  # 10%
    test.loc[:11, "review"] = [spell(text) for text in train["review"].iloc[100:112]]
    unlabeled = unlabeled_reviews()
    unlabeled.loc[:2, "review"] = [spell(text) for text in test["review"].iloc[20:23]]
    failures = failures_of(layout, cfg, train, test, unlabeled)
    assert [f.split(" rows ")[0] for f in failures] == [
        "train: review: 40 of 400",
        "test: review: 12 of 120",
        "unlabeled: review: 3 of 150",
    ]
    assert "repeat an earlier review as the model sees it" in failures[0]
    assert "also occur in train (review as the model sees it)" in failures[1]
    assert "also occur in test (review as the model sees it)" in failures[2]


def test_changed_unlabeled_file_no_longer_matches_the_manifest(layout, cfg):
    train, test = clean()
    layout.write(train, test, unlabeled_reviews())
    assert layout.check(cfg).success
    unlabeled_reviews(149).to_parquet(layout.ingested / "unlabeled.parquet", index=False)
    with pytest.raises(StageError, match="do not match .*manifest.json.*run the ingest stage"):
        layout.check(cfg)


def test_too_few_rows(layout, cfg):
    train, _ = clean()
    (failure,) = failures_of(layout, cfg, train, make_reviews(60, seed=2))
    assert failure == (
        "test: 60 rows, fewer than the 100 required (a smaller source for one run:"
        " --min_rows 60) [validate.min_rows]"
    )


def test_wrong_column_type(layout, cfg):
    train, test = clean()
    test["sentiment"] = (test["sentiment"] == "positive").astype(int)
    failures = failures_of(layout, cfg, train, test)
    assert any(
        f.startswith("test: sentiment: column type is int64, expected str, e.g. ") for f in failures
    )
    assert any(f.startswith("test: sentiment: 120 of 120 rows are not one of") for f in failures)


def test_failure_removes_a_stale_marker_and_still_writes_the_report(layout, cfg):
    train, test = clean()
    layout.write(train, test)
    assert layout.check(cfg).success and layout.marker.exists()

    train.loc[0, "review"] = "  "
    layout.write(train, test)
    with pytest.raises(ValidationFailed) as caught:
        stage.run(cfg, layout.ingested, layout.marker, layout.report)

    assert not layout.marker.exists()
    assert not is_validated(layout.ingested, layout.marker)
    assert "expectations not met" in str(caught.value)
    assert "train: review: 1 of 400 rows are blank, e.g. '  '" in caught.value.failures
    report = json.loads((layout.report / "validation_result.json").read_text())
    assert report["success"] is False
    assert report["failures"] == list(caught.value.failures)
    assert (layout.report / "index.html").is_file()


def test_manifest_that_does_not_match_the_data_is_an_error(layout, cfg):
    train, test = clean()
    layout.write(train, test)
    assert layout.check(cfg).success
    train.iloc[:-1].to_parquet(layout.ingested / "train.parquet", index=False)
    with pytest.raises(StageError, match="do not match .*manifest.json.*run the ingest stage"):
        layout.check(cfg)
    assert not layout.marker.exists()  # the marker no longer vouches for these files


def test_missing_ingested_data_says_to_run_ingest(layout, cfg):
    with pytest.raises(StageError, match="run the ingest stage first"):
        layout.check(cfg)


def test_invalid_suite_names_the_file_and_expectation(layout, cfg, tmp_path):
    layout.write(*clean())
    bad = tmp_path / "bad_suite.json"
    bad.write_text(
        json.dumps({"name": "bad", "expectations": [{"type": "expect_reviews_to_be_nice"}]})
    )
    with pytest.raises(StageError, match=r"bad_suite.json: expectation #1 \(expect_reviews_to_be"):
        layout.check(dataclasses.replace(cfg, suite=str(bad)))
    with pytest.raises(StageError, match="nowhere.json: expectation suite not found"):
        layout.check(dataclasses.replace(cfg, suite=str(tmp_path / "nowhere.json")))


def suite_parameter_names(raw_suite: dict) -> set[str]:
    """The `$PARAMETER` expressions in a suite (e.g. "min_rows", "1 - max_duplicate_fraction")."""
    return {
        value["$PARAMETER"]
        for item in raw_suite["expectations"]
        for value in item.get("kwargs", {}).values()
        if isinstance(value, dict) and "$PARAMETER" in value
    }


def test_suites_use_every_bound_and_nothing_else(cfg):
    """The reviewed JSON and params.yaml validate.* must name the same knobs."""
    suites = [
        load_suite_json(Path(cfg.suite)),
        load_suite_json(Path(cfg.train_test_suite)),
        load_suite_json(Path(cfg.unlabeled_suite)),
    ]
    expressions = set().union(*(suite_parameter_names(s) for s in suites))
    names = {name for e in expressions for name in re.findall(r"[A-Za-z_]\w*", e)}
    assert names == set(stage.suite_parameters(cfg))
    assert stage.suite_parameters(cfg)["labels"] == list(LABELS)
    required = {
        e["kwargs"]["column"]
        for e in suites[0]["expectations"]
        if e["type"] == "expect_column_to_exist"
    }
    assert required == set(COLUMNS)
    (overlap,) = suites[1]["expectations"]
    assert overlap["kwargs"]["group_column"] == stage.SPLIT_COLUMN
    unlabeled = suites[2]["expectations"]
    assert {e["kwargs"].get("group_column") for e in unlabeled} == {None, stage.SPLIT_COLUMN}
    conditions = [e["kwargs"]["row_condition"] for e in unlabeled if "regex" in e["kwargs"]]
    assert conditions[0]["column"] == {"name": stage.SPLIT_COLUMN}
    assert conditions[0]["parameter"] == UNLABELED


@pytest.mark.integration
def test_importing_the_stage_does_not_import_great_expectations():
    """GX takes seconds to import: only a validation run may pay for it."""
    code = (
        "import sys, steps.validate, steps.validation.suite, steps.validation.messages;"
        "sys.exit(any(m.startswith('great_expectations') for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=120).returncode == 0

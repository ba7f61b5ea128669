"""Calibration measured (steps/measure/calibration.py): the ECE and its table, the folds the
out-of-fold scores come from, and the choice of method."""

from __future__ import annotations

import numpy as np
import pytest

from pyfunc import calibration
from steps.data.splits import cv_folds
from steps.measure.calibration import (
    choose,
    expected_calibration_error,
    out_of_fold_scores,
    reliability_table,
)


def test_the_ece_of_honest_scores_is_near_zero_and_of_overconfident_ones_their_gap():
    rng = np.random.default_rng(0)
    scores = rng.uniform(size=200_000)
    honest = rng.uniform(size=scores.size) < scores
    assert expected_calibration_error(honest, scores) < 0.005
    # every review scored 0.99 or 0.01 but only 60% right: the gap is 0.39
    sure = np.where(rng.uniform(size=10_000) < 0.5, 0.99, 0.01)
    right = rng.uniform(size=sure.size) < 0.6
    truth = np.where(right, sure > 0.5, sure < 0.5)
    assert expected_calibration_error(truth, sure) == pytest.approx(0.99 - right.mean())


def test_the_reliability_table_counts_every_review_once_in_15_bins():
    scores = np.array([0.5, 0.51, 0.49, 0.7, 0.3, 0.99, 0.01, 1.0, 0.0])
    truth = np.array([True, True, False, True, True, True, False, True, False])
    table = reliability_table(truth, scores)
    assert len(table["count"]) == 15 and table["count"].sum() == len(scores)
    assert table["count"][-1] == 4  # 0.99, 0.01, 1.0, 0.0: confidence in [0.9667, 1]
    assert table["accuracy"][-1] == 1.0
    # 0.5 (no evidence) counts as wrong; 0.51 and 0.49 are right: 2 of 3
    assert table["accuracy"][0] == pytest.approx(2 / 3)
    assert np.isnan(table["confidence"][5])  # an empty bin


@pytest.mark.parametrize(
    "movies", [None, [f"tt{i // 4}" for i in range(240)]], ids=["random", "grouped"]
)
def test_out_of_fold_scores_come_from_fits_that_never_saw_the_review_or_its_movie(movies):
    labels = ["positive" if i % 3 else "negative" for i in range(240)]
    seen: list[set[int]] = []

    def fit_and_score(fit_rows, held_rows):
        assert not set(fit_rows) & set(held_rows)
        if movies is not None:
            assert not {movies[i] for i in fit_rows} & {movies[i] for i in held_rows}
        seen.append(set(held_rows))
        return np.asarray(held_rows, dtype=float) / 1000

    scores, how = out_of_fold_scores(fit_and_score, labels, movies, folds=3, seed=0)
    assert len(seen) == 3 and set().union(*seen) == set(range(240))
    assert np.allclose(scores, np.arange(240) / 1000)  # each review scored by its own fold
    assert ("by movie" in how) == (movies is not None)
    assert len(cv_folds(labels, movies, 4, seed=1)[0]) == 4


def test_the_choice_keeps_the_method_with_the_lower_held_out_ece():
    rng = np.random.default_rng(3)
    scores = rng.uniform(0.001, 0.999, 20_000)
    truth = rng.uniform(size=scores.size) < 0.5 + (scores - 0.5) / 2  # overconfident, linearly
    calibrator, measured = choose(scores, truth, calibration.fit, calibration.METHODS)
    assert set(measured) == {"raw", "isotonic", "platt"}
    assert calibrator.method == min(calibration.METHODS, key=measured.__getitem__)
    assert max(measured["isotonic"], measured["platt"]) < measured["raw"]
    only, measured = choose(scores, truth, calibration.fit, ["platt"])
    assert only.method == "platt" and set(measured) == {"raw", "platt"}

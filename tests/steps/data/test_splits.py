"""The folds of cross-validation (steps/data/splits.py cv_folds: tune, calibration and
bench/bench_model.py) and the unlabeled reviews each fold may learn from."""

from __future__ import annotations

import numpy as np
from support import make_reviews

from steps.data.splits import Unlabeled, cv_folds, unlabeled_per_fold


def test_folds_keep_each_movie_on_one_side_and_cover_every_review_once():
    reviews = make_reviews(200, seed=3)
    labels = reviews["sentiment"].tolist()
    movies = [f"tt{i // 4:07d}" for i in range(200)]
    folds, how = cv_folds(labels, movies, 5, seed=0)
    assert how == "5 folds by movie" and len(folds) == 5
    assert sorted(np.concatenate([held for _, held in folds]).tolist()) == list(range(200))
    for fit_rows, held_rows in folds:
        assert not {movies[i] for i in fit_rows} & {movies[i] for i in held_rows}
    plain, how = cv_folds(labels, None, 5, seed=0)
    assert how == "5 stratified folds"
    for _, held_rows in plain:  # stratified: each fold half positive, as the reviews are
        assert sum(labels[i] == "positive" for i in held_rows) == 20
    again, _ = cv_folds(labels, movies, 5, seed=0)
    assert all((a[1] == b[1]).all() for a, b in zip(folds, again, strict=True))


def test_each_fold_learns_from_no_unlabeled_copy_of_its_held_out_reviews():
    reviews = ["A fine film.", "A dull film.", "Great acting.", "Poor plot."]
    unlabeled = ["A FINE   film.", "Something else.", "poor plot."]  # copies as the model sees
    kept = unlabeled_per_fold(
        Unlabeled.of(unlabeled), reviews, [np.array([0, 1]), np.array([2, 3])]
    )
    assert kept == [["Something else.", "poor plot."], ["A FINE   film.", "Something else."]]

"""Sample weights in the classifier and self-training on unlabeled reviews, on small data."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from support import make_reviews, make_unlabeled

from pyfunc.classifier import WARM_SOLVER, MultiViewClassifier
from pyfunc.pipeline import build_pipeline, n_features
from pyfunc.self_training import self_train


@pytest.fixture(scope="module")
def reviews():
    frame = make_reviews(300, seed=5)
    return frame["review"].tolist(), frame["sentiment"].to_numpy()


@pytest.fixture(scope="module")
def unlabeled():
    return make_unlabeled(400, seed=6)


@pytest.fixture(scope="module")
def counts(reviews):
    texts, labels = reviews
    features = build_pipeline(ngram_range=(1, 2), min_df=1)[:-1]
    return features.fit_transform(texts, labels), labels


def _proba(classifier, X):
    return classifier.predict_proba(X)[:, 1]


def test_weight_two_is_the_same_as_the_review_twice(counts):
    X, y = counts
    weights = np.ones(X.shape[0])
    weights[:40] = 2
    nb_only = MultiViewClassifier(views=("nb",))
    weighted = clone(nb_only).fit(X, y, sample_weight=weights)
    doubled = clone(nb_only).fit(sp.vstack([X, X[:40]]), np.concatenate([y, y[:40]]))
    np.testing.assert_allclose(weighted.log_ratio_, doubled.log_ratio_, rtol=1e-5)
    np.testing.assert_allclose(_proba(weighted, X), _proba(doubled, X), atol=1e-4)
    plain = clone(nb_only).fit(X, y)
    assert not np.allclose(plain.log_ratio_, weighted.log_ratio_)  # the weights did something


def test_weight_zero_is_the_same_as_leaving_the_review_out_except_for_idf(counts):
    X, y = counts
    weights = np.ones(X.shape[0])
    weights[250:] = 0
    for views in (("nb",), ("tfidf",), ("nb", "tfidf", "nb_tfidf")):
        model = MultiViewClassifier(views=views)
        weighted = clone(model).fit(X, y, sample_weight=weights)
        left_out = clone(model).fit(X[:250], y[:250])
        if "nb" in views:
            np.testing.assert_allclose(weighted.log_ratio_, left_out.log_ratio_, rtol=1e-5)
        if views == ("nb",):  # the tf-idf views count every review in the IDF by design
            np.testing.assert_allclose(_proba(weighted, X), _proba(left_out, X), atol=1e-4)


def test_bad_sample_weights_are_rejected(counts):
    X, y = counts
    with pytest.raises(ValueError, match="one non-negative weight per review"):
        MultiViewClassifier().fit(X, y, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="one non-negative weight per review"):
        MultiViewClassifier().fit(X, y, sample_weight=-np.ones(X.shape[0]))


def test_zero_rounds_is_the_plain_fit(reviews, unlabeled):
    texts, labels = reviews
    plain = build_pipeline().fit(texts, labels)
    self_trained = self_train(build_pipeline(), texts, labels, unlabeled, rounds=0)
    np.testing.assert_array_equal(plain.predict_proba(texts), self_trained.predict_proba(texts))


@pytest.mark.parametrize("weighting", ["confidence", "uniform"])
def test_one_round_refits_on_the_labelled_and_the_pseudo_labelled_reviews(
    reviews, unlabeled, weighting
):
    """The recipe, computed by hand: label every unlabeled review with the plain model's p, then
    refit the classifier on both with label 1[p > 0.5] and weight |2p - 1| (or 1), starting from
    the plain model's coefficients."""
    texts, labels = reviews
    plain = build_pipeline().fit(texts, labels)
    p = plain.predict_proba(unlabeled)[:, 1]
    guessed = plain.classes_[(p > 0.5).astype(int)]
    weights = np.abs(2 * p - 1) if weighting == "confidence" else np.ones(len(p))
    features = plain[:-1]
    expected = (
        copy.deepcopy(plain[-1])
        .set_params(warm_start=True)
        .fit(
            sp.vstack([features.transform(texts), features.transform(unlabeled)]),
            np.concatenate([labels, guessed]),
            sample_weight=np.concatenate([np.ones(len(texts)), weights]),
        )
    )
    got = self_train(build_pipeline(), texts, labels, unlabeled, rounds=1, weighting=weighting)
    probe = features.transform(unlabeled[:50] + texts[:50])
    np.testing.assert_allclose(got[-1].predict_proba(probe), expected.predict_proba(probe))
    assert not np.allclose(got.predict_proba(texts), plain.predict_proba(texts))
    assert got[-1].get_params() == plain[-1].get_params()  # the recipe's, warm_start off


def test_a_warm_started_refit_is_the_model_a_cold_one_is(counts):
    """Self-training's later rounds start from the previous coefficients with another solver:
    the same predictions, within what a solver's tolerance leaves, on the same problem."""
    X, y = counts
    rng = np.random.default_rng(0)
    weights = rng.uniform(0.2, 1.0, X.shape[0])
    flipped = y.copy()
    flipped[:30] = np.where(y[:30] == "positive", "negative", "positive")  # a round's new labels
    first = MultiViewClassifier().fit(X, y)
    cold = clone(first).fit(X, flipped, sample_weight=weights)
    warm = copy.deepcopy(first).set_params(warm_start=True).fit(X, flipped, sample_weight=weights)
    assert [m.solver for m in cold.estimators_] == ["liblinear"] * 3
    assert [m.solver for m in warm.estimators_] == [WARM_SOLVER] * 3
    assert all(m.n_iter_.max() <= 5 for m in warm.estimators_)  # a few steps, not a solve
    cold_p, warm_p = _proba(cold, X), _proba(warm, X)
    assert np.mean((cold_p > 0.5) == (warm_p > 0.5)) >= 0.99
    assert np.abs(cold_p - warm_p).max() < 0.1
    assert not np.allclose(_proba(first, X), warm_p)  # it did refit


def test_warm_start_starts_from_zero_when_there_is_nothing_to_start_from(counts):
    X, y = counts
    fitted = MultiViewClassifier(views=("nb",), warm_start=True).fit(X, y)  # nothing fitted yet
    assert fitted.estimators_[0].solver == "liblinear"
    fewer = fitted.fit(X[:, :-5], y)  # other features: the old coefficients do not fit
    assert fewer.estimators_[0].solver == "liblinear"
    svm = MultiViewClassifier(views=("nb",), classifier="svm", warm_start=True).fit(X, y)
    assert svm.fit(X, y).predict(X).shape == y.shape  # svm views have no warm start: refit


def test_self_training_keeps_the_vocabulary_of_the_labelled_reviews(reviews, unlabeled):
    texts, labels = reviews
    plain = build_pipeline(min_df=1).fit(texts, labels)
    self_trained = self_train(build_pipeline(min_df=1), texts, labels, unlabeled, rounds=2)
    assert n_features(self_trained) == n_features(plain)
    vocabulary = self_trained.named_steps["vectorize"].get_feature_names_out()
    assert "unlabelled" not in vocabulary  # a word only the unlabeled reviews use
    assert list(self_trained.classes_) == ["negative", "positive"]
    held_out = make_reviews(200, seed=7)
    accuracy = np.mean(self_trained.predict(held_out["review"]) == held_out["sentiment"])
    assert accuracy > 0.95


def test_bad_self_training_options(reviews, unlabeled):
    texts, labels = reviews
    with pytest.raises(ValueError, match="weighting must be one of"):
        self_train(build_pipeline(), texts, labels, unlabeled, weighting="loud")
    with pytest.raises(ValueError, match="rounds must be 0 or more"):
        self_train(build_pipeline(), texts, labels, unlabeled, rounds=-1)
    with pytest.raises(ValueError, match="negation-view average is not supported"):
        self_train(build_pipeline(negation_view=True), texts, labels, unlabeled)


def test_the_unlabeled_reviews_are_scored_from_the_fits_views_not_weighted_again(
    reviews, unlabeled, monkeypatch
):
    texts, labels = reviews
    pipeline = build_pipeline(ngram_range=(1, 2), min_df=1)
    # what self-training is: each round scores the unlabeled reviews with the last model
    features = clone(pipeline)[:-1]
    labelled = features.fit_transform(texts, labels)
    pseudo = features.transform(unlabeled)
    model = MultiViewClassifier(warm_start=True).fit(labelled, labels)
    for _ in range(2):
        positive = model.predict_proba(pseudo)[:, 1]
        model.fit(
            sp.vstack([labelled, pseudo]),
            np.concatenate([labels, model.classes_[(positive > 0.5).astype(int)]]),
            sample_weight=np.concatenate([np.ones(len(labels)), np.abs(2 * positive - 1)]),
        )
    scored = []
    real = MultiViewClassifier.predict_proba
    monkeypatch.setattr(
        MultiViewClassifier,
        "predict_proba",
        lambda self, X: scored.append(X.shape[0]) or real(self, X),
    )
    trained = self_train(clone(pipeline), texts, labels, unlabeled, rounds=2)
    assert scored == [len(unlabeled)]  # round 0's model only; round 1's fit scored them itself
    monkeypatch.undo()
    np.testing.assert_array_equal(
        trained.predict_proba(texts)[:, 1], model.predict_proba(labelled)[:, 1]
    )

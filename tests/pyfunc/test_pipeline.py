"""The whole pipeline on small data written by the test: it learns, and its options work."""

from __future__ import annotations

import numpy as np
import pytest
from support import make_reviews

from pyfunc.classifier import NO_EVIDENCE
from pyfunc.pipeline import build_pipeline, n_features


@pytest.fixture(scope="module")
def reviews():
    frame = make_reviews(800, seed=1)
    return frame["review"].tolist(), frame["sentiment"].to_numpy()


def _accuracy(pipeline, texts, labels):
    return float(np.mean(pipeline.predict(texts) == labels))


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"negation": True},
        {"ngram_range": (1, 3), "min_df": 1},
        {"views": ("nb",)},
        {"views": ("tfidf",), "max_features": 500},
        {"classifier": "svm", "C": 1.0},
        {"negation_view": True, "ngram_range": (1, 3)},
    ],
)
def test_pipeline_learns_held_out_reviews(reviews, options):
    texts, labels = reviews
    pipeline = build_pipeline(**options).fit(texts[:600], labels[:600])
    assert _accuracy(pipeline, texts[600:], labels[600:]) > 0.95
    proba = pipeline.predict_proba(texts[600:])
    assert proba.shape == (200, 2)
    assert np.allclose(proba.sum(axis=1), 1) and (proba >= 0).all() and (proba <= 1).all()
    assert list(pipeline.classes_) == ["negative", "positive"]


def test_views_are_averaged(reviews):
    texts, labels = reviews
    both = build_pipeline(views=("nb", "tfidf")).fit(texts, labels)
    singles = [build_pipeline(views=(v,)).fit(texts, labels) for v in ("nb", "tfidf")]
    expected = np.mean([p.predict_proba(texts[:50])[:, 1] for p in singles], axis=0)
    assert np.allclose(both.predict_proba(texts[:50])[:, 1], expected)


def test_a_review_without_known_words_gets_no_evidence(reviews):
    texts, labels = reviews
    pipeline = build_pipeline().fit(texts, labels)
    scores = pipeline.predict_proba(["", "qwertz asdfgh", "<br />", "wonderful"])[:, 1]
    assert list(scores[:3]) == [NO_EVIDENCE] * 3
    assert scores[3] > 0.5


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"views": ("nb", "bert")}, "views"),
        ({"views": ()}, "views"),
        ({"classifier": "forest"}, "classifier"),
    ],
)
def test_bad_options_are_clear_errors(reviews, options, message):
    texts, labels = reviews
    with pytest.raises(ValueError, match=message):
        build_pipeline(**options).fit(texts, labels)


def test_one_class_only_is_a_clear_error(reviews):
    texts, _ = reviews
    with pytest.raises(ValueError, match="two classes"):
        build_pipeline().fit(texts[:20], ["positive"] * 20)


def test_row_normalisation_matches_sklearn_with_empty_rows_anywhere():
    import scipy.sparse as sp
    from sklearn.preprocessing import normalize

    from pyfunc.classifier import _normalize_rows

    dense = np.array([[0, 0, 0], [3, 4, 0], [0, 0, 0], [1, 0, 1], [0, 0, 0]], dtype=np.float32)
    ours = _normalize_rows(sp.csr_matrix(dense)).toarray()
    assert np.allclose(ours, normalize(dense))
    assert _normalize_rows(sp.csr_matrix((2, 3), dtype=np.float32)).nnz == 0


def test_negation_view_averages_a_negation_marked_model_with_equal_weight_per_view(reviews):
    texts, labels = reviews
    averaged = build_pipeline(negation_view=True, views=("nb", "tfidf")).fit(texts, labels)
    plain = build_pipeline(views=("nb", "tfidf")).fit(texts, labels)
    negated = build_pipeline(negation=True, views=("nb",)).fit(texts, labels)
    expected = (2 * plain.predict_proba(texts[:50]) + negated.predict_proba(texts[:50])) / 3
    assert np.allclose(averaged.predict_proba(texts[:50]), expected)
    assert n_features(averaged) == n_features(plain) + n_features(negated) > n_features(plain)

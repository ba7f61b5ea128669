"""NgramVectorizer: exact n-gram counts (checked against a plain Counter), pruning, options."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from pyfunc.features import NgramVectorizer

DOCS = [
    "the film was good the film was long",
    "the film was bad",
    "a good film ! a good cast",
    "bad bad bad acting",
]


def reference_counts(docs, low, high, min_df):
    """Brute force: every n-gram string, document frequencies, per-document counts."""
    grams = []
    for doc in docs:
        tokens = doc.split()
        grams.append(
            Counter(
                " ".join(tokens[i : i + n])
                for n in range(low, high + 1)
                for i in range(len(tokens) - n + 1)
            )
        )
    df = Counter(g for counts in grams for g in counts)
    kept = {g for g, d in df.items() if d >= min_df}
    return [{g: c for g, c in counts.items() if g in kept} for counts in grams]


@pytest.mark.parametrize(
    ("low", "high", "min_df"), [(1, 1, 1), (1, 2, 1), (1, 3, 1), (1, 2, 2), (2, 3, 1)]
)
def test_counts_equal_a_brute_force_count(low, high, min_df):
    vectorizer = NgramVectorizer(ngram_range=(low, high), min_df=min_df)
    matrix = vectorizer.fit_transform(DOCS)
    names = vectorizer.get_feature_names_out()
    got = [{names[j]: matrix[i, j] for j in matrix[i].indices} for i in range(matrix.shape[0])]
    assert got == reference_counts(DOCS, low, high, min_df)
    assert np.array_equal(vectorizer.transform(DOCS).toarray(), matrix.toarray())


def test_transform_ignores_unknown_words_and_never_joins_reviews():
    vectorizer = NgramVectorizer(ngram_range=(1, 2), min_df=1).fit(DOCS)
    names = list(vectorizer.get_feature_names_out())
    matrix = vectorizer.transform(["good zzz film", "", "bad", "acting the"])
    row = {names[j]: matrix[0, j] for j in matrix[0].indices}
    assert row == {"good": 1, "film": 1}  # "good zzz" and "zzz film" are unknown
    assert matrix[1].nnz == 0
    # "bad" ends review 3 and "acting" starts review 4: no "bad acting" across them
    assert {names[j] for j in matrix[2].indices} == {"bad"}
    assert {names[j] for j in matrix[3].indices} == {"acting", "the"}


def test_max_features_keeps_the_most_frequent():
    # "film" is in 3 reviews; every other n-gram in at most 2
    vectorizer = NgramVectorizer(ngram_range=(1, 2), min_df=1, max_features=1).fit(DOCS)
    assert list(vectorizer.get_feature_names_out()) == ["film"]
    assert vectorizer.transform(["film film the"]).toarray().tolist() == [[2.0]]


def test_char_ngrams_add_columns():
    word_only = NgramVectorizer(ngram_range=(1, 1), min_df=1).fit_transform(DOCS)
    both = NgramVectorizer(ngram_range=(1, 1), min_df=1, char_ngram_range=(2, 3)).fit(DOCS)
    assert both.transform(DOCS).shape[1] == both.n_features_ > word_only.shape[1]


def test_a_bad_ngram_range_is_a_clear_error():
    with pytest.raises(ValueError, match="ngram_range"):
        NgramVectorizer(ngram_range=(2, 1)).fit(DOCS)


def test_a_large_transform_counts_in_batches_with_the_same_counts(monkeypatch):
    from pyfunc import features

    docs = DOCS * 5 + ["", "unseen words only"]  # 22 reviews, an empty one in the last batch
    vectorizer = NgramVectorizer(ngram_range=(1, 3), min_df=1).fit(DOCS)
    whole = vectorizer.transform(docs)
    counted = []
    real_counts = NgramVectorizer._counts
    monkeypatch.setattr(features, "TRANSFORM_BATCH", 4)
    monkeypatch.setattr(
        NgramVectorizer,
        "_counts",
        lambda self, grams, n: counted.append(n) or real_counts(self, grams, n),
    )
    batched = vectorizer.transform(docs)
    assert counted == [4, 4, 4, 4, 4, 2]
    assert batched.dtype == whole.dtype and batched.has_sorted_indices
    assert np.array_equal(batched.toarray(), whole.toarray())

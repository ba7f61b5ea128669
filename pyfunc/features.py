"""Cleaned token strings -> a sparse matrix of word n-gram counts (optionally char n-grams too).

One count matrix feeds every feature view of the classifier (binary NB-weighted, sublinear
TF-IDF...), so a review is tokenised once however many views the model averages.

How n-grams are counted, and why: each token is looked up once in a word -> id dict, and an
n-gram is the integer `id1 * V**(n-1) + ... + idn` (V = number of known words), computed for a
whole batch at once with numpy; the kept n-grams are sorted integer arrays searched with
`np.searchsorted`. Building and looking up n-gram *strings* (sklearn's CountVectorizer, or a
dict of strings) cost 300-400 us per review here, mostly cache misses in a dict of a million
strings; HashingVectorizer is faster but its collisions cost 0.3-0.5 accuracy points at 2**20-2**22
buckets. The integer keys are exact (no collisions) and the model stores no n-gram strings.
A large batch looks its keys up in a hash table of the kept keys (pandas' Index) instead: 5x
faster than the binary search over millions of keys (4 s of a 9 s transform of 50,000 reviews,
issue 26); a small one keeps the binary search, which costs nothing to set up.
A transform of many reviews counts them TRANSFORM_BATCH at a time: one pass over 50,000 reviews
allocates arrays of hundreds of MB that the kernel must hand over page by page (1.3-2 of its
5 CPU-s were system time, issue 26); batches reuse memory that is already mapped.
"""

from __future__ import annotations

from array import array
from collections import defaultdict
from collections.abc import Iterable, Sequence
from itertools import repeat

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.utils.validation import check_is_fitted

_MAX_KEY = np.iinfo(np.int64).max
_HASHED_FROM = 100_000  # n-grams in a batch from which the hash table pays for itself
TRANSFORM_BATCH = 5_000  # reviews counted at once by transform (the same counts, less memory)


class NgramVectorizer(TransformerMixin, BaseEstimator):
    """Word n-gram counts of space-separated token strings, with a pruned vocabulary.

    ngram_range: (low, high) word n-gram sizes.
    min_df: keep n-grams found in at least this many training documents.
    max_features: keep at most this many (the most frequent by document count); None = all.
    char_ngram_range: (low, high) character n-grams within words, appended as extra columns;
        None = off (they cost several times the fit time and did not help on IMDB).
    """

    def __init__(
        self,
        ngram_range: tuple[int, int] = (1, 2),
        min_df: int = 2,
        max_features: int | None = None,
        char_ngram_range: tuple[int, int] | None = None,
    ):
        self.ngram_range = ngram_range
        self.min_df = min_df
        self.max_features = max_features
        self.char_ngram_range = char_ngram_range

    def fit(self, X: Sequence[str], y=None) -> NgramVectorizer:
        self.fit_transform(X)
        return self

    def fit_transform(self, X: Sequence[str], y=None) -> sp.csr_matrix:
        low, high = self._checked_range()
        words: defaultdict[str, int] = defaultdict()
        words.default_factory = words.__len__  # a new word gets the next id, all in C
        ids, lengths = _token_ids(X, lambda tokens: map(words.__getitem__, tokens))
        self.words_ = dict(words)
        if len(words) ** high > _MAX_KEY:
            raise ValueError(
                f"{len(words)} distinct words are too many for {high}-grams as 64-bit keys;"
                " lower ngram_range or clean the text harder"
            )
        grams = _ngram_keys(ids, lengths, low, high, len(words))
        self.keys_ = self._select(grams, len(lengths))
        counts = self._counts(grams, len(lengths))
        if self.char_ngram_range:
            self.char_vectorizer_ = self._char_vectorizer()
            chars = self.char_vectorizer_.fit_transform(X).astype(np.float32)
            counts = sp.hstack([counts, chars], format="csr")
        return counts

    def transform(self, X: Iterable[str]) -> sp.csr_matrix:
        check_is_fitted(self, "keys_")
        X = list(X)
        if len(X) > TRANSFORM_BATCH:
            batches = range(0, len(X), TRANSFORM_BATCH)
            return sp.vstack([self.transform(X[i : i + TRANSFORM_BATCH]) for i in batches], "csr")
        low, high = self._checked_range()
        get = self.words_.get
        ids, lengths = _token_ids(X, lambda tokens: map(get, tokens, repeat(-1)))
        counts = self._counts(_ngram_keys(ids, lengths, low, high, len(self.words_)), len(lengths))
        if self.char_ngram_range:
            chars = self.char_vectorizer_.transform(X).astype(np.float32)
            counts = sp.hstack([counts, chars], format="csr")
        return counts

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state.pop("_hashed", None)  # a cache of keys_, rebuilt on use: not copied nor pickled
        return state

    @property
    def n_features_(self) -> int:
        check_is_fitted(self, "keys_")
        extra = len(self.char_vectorizer_.vocabulary_) if self.char_ngram_range else 0
        return sum(len(k) for k in self.keys_) + extra

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """The n-grams as strings, in column order (word n-grams first, then char n-grams)."""
        check_is_fitted(self, "keys_")
        low, _ = self._checked_range()
        vocabulary_size = len(self.words_)
        by_id = np.array(list(self.words_), dtype=object)
        names = []
        for n, keys in enumerate(self.keys_, start=low):
            parts = [(keys // vocabulary_size ** (n - 1 - k)) % vocabulary_size for k in range(n)]
            names += [" ".join(by_id[list(word_ids)]) for word_ids in zip(*parts, strict=True)]
        if self.char_ngram_range:
            names += list(self.char_vectorizer_.get_feature_names_out())
        return np.array(names, dtype=object)

    def _checked_range(self) -> tuple[int, int]:
        low, high = self.ngram_range
        if not 1 <= low <= high:
            raise ValueError(
                f"ngram_range must be (low, high) with 1 <= low <= high, got {low, high}"
            )
        return low, high

    def _select(self, grams: list[tuple[np.ndarray, np.ndarray]], n_docs: int) -> list[np.ndarray]:
        """Per n-gram size, the sorted keys kept: document frequency >= min_df, then the
        max_features most frequent overall."""
        kept, frequencies = [], []
        for docs, keys in grams:
            # distinct (document, key) pairs -> each key's document frequency
            unique_keys, df = np.unique(keys[_first_pairs(docs, keys)], return_counts=True)
            keep = df >= self.min_df
            kept.append(unique_keys[keep])
            frequencies.append(df[keep])
        if self.max_features is not None and sum(len(k) for k in kept) > self.max_features:
            everything = np.concatenate(frequencies)
            # the threshold frequency; stable order keeps the choice deterministic on ties
            cut = np.sort(np.argsort(-everything, kind="stable")[: self.max_features])
            sizes = np.cumsum([0] + [len(k) for k in kept])
            kept = [
                keys[cut[(cut >= start) & (cut < stop)] - start]
                for keys, start, stop in zip(kept, sizes[:-1], sizes[1:], strict=True)
            ]
        return kept

    def _counts(self, grams: list[tuple[np.ndarray, np.ndarray]], n_docs: int) -> sp.csr_matrix:
        rows, columns, offset = [], [], 0
        for n, ((docs, keys), kept) in enumerate(zip(grams, self.keys_, strict=True)):
            if len(kept):
                position, hit = self._positions(n, kept, keys)
                rows.append(docs[hit])
                columns.append(position[hit] + offset)
            offset += len(kept)
        rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        columns = np.concatenate(columns) if columns else np.zeros(0, np.int64)
        data = np.ones(len(rows), dtype=np.float32)
        # COO -> CSR sums duplicates: repeated n-grams become counts.
        matrix = sp.coo_matrix((data, (rows, columns)), shape=(n_docs, offset)).tocsr()
        matrix.sort_indices()
        return matrix

    def _positions(
        self, n: int, kept: np.ndarray, keys: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Where each key is in the sorted `kept` keys, and whether it is there at all."""
        if len(keys) < _HASHED_FROM:
            position = np.minimum(np.searchsorted(kept, keys), len(kept) - 1)
            return position, kept[position] == keys
        tables = self.__dict__.setdefault("_hashed", {})  # built once per fitted key array
        if tables.get(n, (None,))[0] is not kept:
            tables[n] = (kept, pd.Index(kept))
        position = tables[n][1].get_indexer(keys)
        return position, position >= 0

    def _char_vectorizer(self) -> CountVectorizer:
        return CountVectorizer(
            analyzer="char_wb",
            ngram_range=tuple(self.char_ngram_range),
            min_df=self.min_df,
            max_features=self.max_features,
            lowercase=False,
            dtype=np.float32,
        )


def _token_ids(X: Iterable[str], lookup) -> tuple[np.ndarray, np.ndarray]:
    """All documents' token ids concatenated (-1 = unknown word), and each document's length."""
    ids, lengths = array("q"), array("q")
    for text in X:
        before = len(ids)
        ids.extend(lookup(text.split()))
        lengths.append(len(ids) - before)
    return np.frombuffer(ids, dtype=np.int64), np.frombuffer(lengths, dtype=np.int64)


def _ngram_keys(
    ids: np.ndarray, lengths: np.ndarray, low: int, high: int, vocabulary_size: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each n in low..high: (document index, integer key) of every n-gram of known words."""
    docs = np.repeat(np.arange(len(lengths)), lengths)
    grams = []
    for n in range(low, high + 1):
        count = max(len(ids) - n + 1, 0)
        keys = ids[:count].copy()
        valid = (keys >= 0) & (docs[:count] == docs[n - 1 : n - 1 + count])  # within one review
        for k in range(1, n):
            following = ids[k : k + count]
            valid &= following >= 0
            keys = keys * vocabulary_size + following
        grams.append((docs[:count][valid], keys[valid]))
    return grams


def _first_pairs(docs: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Indices of the first occurrence of each distinct (document, key) pair."""
    order = np.lexsort((keys, docs))
    sorted_docs, sorted_keys = docs[order], keys[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = (sorted_docs[1:] != sorted_docs[:-1]) | (sorted_keys[1:] != sorted_keys[:-1])
    return order[first]

"""An average of linear classifiers, each on its own weighting of one shared n-gram count matrix.

Views (every one L2-normalised per review, so one `C` suits all of them):
- "nb": binary presence x Naive-Bayes log-count ratio (NBSVM, Wang & Manning 2012);
- "tfidf": sublinear term frequency x inverse document frequency;
- "nb_tfidf": TF-IDF x the NB log-count ratio.
Averaging the views' probabilities beat each view alone by 0.2-0.5 points on the validation
split, and costs no second tokenisation because all views reweight the same counts.

The views' classifiers are fitted in threads, one per view up to the number of CPUs (liblinear
releases the GIL), so a fit on 2 cores takes about half as long; predictions are unchanged.

With `warm_start`, a refit on the same features (self-training's later rounds) starts each
view's logistic regression from the previous fit's coefficients with WARM_SOLVER, which can
start there (liblinear cannot): a few Newton steps instead of a solve from zero. Measured on the
round-1 problem of the grouped validation fit (20,000 + 50,000 reviews): 6.4 CPU-s for the three
views instead of 42, the same validation accuracy (pyfunc/README.md, "The cost of a self-trained
fit").

Views are weighted VIEW_BATCH rows at a time into one array of values that shares the count
matrix's index arrays: weighting 75,000 rows in one pass allocated copies and temporaries of
hundreds of MB, which the kernel maps page by page (in a self-trained fit, 1.2-1.9 CPU-s of
system time per round, issue 26); the values come out the same. `fit_scored` fits and
scores some of the rows it fitted on from the views it built (self-training's next round needs
the unlabeled rows scored): the same probabilities as predict_proba, without weighting them again.

`fit` takes per-review sample weights (self-training gives pseudo-labelled reviews weight
|2p - 1|, see pyfunc/self_training.py): the NB log-count ratios then come from weighted document
counts and each view's classifier is fitted with the weights; the IDF counts every review once.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from pyfunc.contract import CLASSIFIERS, VIEWS

NO_EVIDENCE = 0.5  # probability given to a review with no known n-gram
WARM_SOLVER = "newton-cg"  # warm-startable; GIL-bound, unlike liblinear (see warm_start)
# Its stopping gradient norm: from round 0's coefficients one or two Newton steps reach it, with
# the grouped-validation accuracy of a full solve (1e-4: three steps, the same accuracy).
WARM_TOL = 1e-3
VIEW_BATCH = 5_000  # rows weighted (and scored) at once: the same rows, less memory mapped


class MultiViewClassifier(ClassifierMixin, BaseEstimator):
    """Binary classifier on n-gram counts: one linear model per view, probabilities averaged.

    views: which weightings to average (see VIEWS).
    classifier: "logistic" (logistic regression) or "svm" (linear SVM with sigmoid-calibrated
        probabilities, 3-fold).
    C: inverse regularisation strength of every view's model.
    nb_alpha: smoothing of the NB log-count ratio.
    n_jobs: threads that fit the views' classifiers; None = one per view, at most os.cpu_count().
    warm_start: a fit of a fitted logistic classifier on as many features starts each view from
        its coefficients (WARM_SOLVER); else every fit starts from zero with liblinear.
    """

    def __init__(
        self,
        views: Sequence[str] = VIEWS,
        classifier: str = "logistic",
        C: float = 30.0,
        nb_alpha: float = 1.0,
        n_jobs: int | None = None,
        warm_start: bool = False,
    ):
        self.views = views
        self.classifier = classifier
        self.C = C
        self.nb_alpha = nb_alpha
        self.n_jobs = n_jobs
        self.warm_start = warm_start

    def fit(
        self, X: sp.spmatrix, y: Sequence, sample_weight: Sequence[float] | None = None
    ) -> MultiViewClassifier:
        self._fit(X, y, sample_weight, None)
        return self

    def fit_scored(
        self,
        X: sp.spmatrix,
        y: Sequence,
        sample_weight: Sequence[float] | None = None,
        from_row: int = 0,
    ) -> np.ndarray:
        """`fit`, then the positive-class probability of X's rows from `from_row` on (as
        predict_proba gives it) from the views the fit weighted."""
        return self._fit(X, y, sample_weight, from_row)

    def _fit(
        self,
        X: sp.spmatrix,
        y: Sequence,
        sample_weight: Sequence[float] | None,
        from_row: int | None,
    ) -> np.ndarray | None:
        views = self._checked_views()
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) != 2:
            raise ValueError(f"need exactly two classes to train on, got {list(self.classes_)}")
        positive = y == self.classes_[1]
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight, dtype=np.float64)
            if sample_weight.shape != positive.shape or (sample_weight < 0).any():
                raise ValueError("sample_weight must hold one non-negative weight per review")
        X = sp.csr_matrix(X, dtype=np.float32)
        present = _binary(X)
        if any(v.startswith("nb") for v in views):
            self.log_ratio_ = _log_count_ratio(present, positive, self.nb_alpha, sample_weight)
        if any(v.endswith("tfidf") for v in views):
            df = np.bincount(present.indices, minlength=X.shape[1])
            self.idf_ = (np.log((1 + X.shape[0]) / (1 + df)) + 1).astype(np.float32)
        starts = self._warm_starts(views, X.shape[1])
        base = self._base_estimator()

        def fit_view(view: str, start: LogisticRegression | None):
            model, weighted = clone(base), self._view(X, view)
            if start is not None:
                model.set_params(solver=WARM_SOLVER, tol=WARM_TOL, warm_start=True)
                model.coef_, model.intercept_ = start.coef_.copy(), start.intercept_.copy()
            model.fit(weighted, positive, sample_weight=sample_weight)
            if start is not None:
                # float32 views give float32 coefficients here (liblinear's are float64, as the
                # state stores them): float64, so the model scores as it will once saved and loaded
                model.coef_, model.intercept_ = (
                    model.coef_.astype(float),
                    model.intercept_.astype(float),
                )
            if from_row is None:
                return model, None
            rows = _batches(from_row, X.shape[0])
            return model, np.concatenate([_positive_probability(model, weighted[r]) for r in rows])

        # GIL-bound warm solves gain nothing from threads: one at a time (less memory at once)
        threads = 1 if any(starts) else self.n_jobs or min(len(views), os.cpu_count() or 1)
        # The views are the parallelism: BLAS threads under them only spin (round 0 of the
        # grouped validation fit: 15.4 CPU-s with OpenBLAS's 2 threads, 6.4 with one; issue 26).
        with threadpool_limits(1), ThreadPoolExecutor(max_workers=threads) as pool:
            fitted = list(pool.map(fit_view, views, starts))
        self.estimators_ = [model for model, _ in fitted]
        self.n_features_in_ = X.shape[1]
        if from_row is None:
            return None
        positive = np.mean([scores for _, scores in fitted], axis=0)
        positive[np.diff(X.indptr)[from_row:] == 0] = NO_EVIDENCE
        return positive

    def predict_proba(self, X: sp.spmatrix) -> np.ndarray:
        check_is_fitted(self, "estimators_")
        X = sp.csr_matrix(X, dtype=np.float32)
        if X.shape[0] > VIEW_BATCH:
            return np.vstack([self.predict_proba(X[rows]) for rows in _batches(0, X.shape[0])])
        positive = np.mean(
            [
                _positive_probability(model, self._view(X, view))
                for view, model in zip(self.views, self.estimators_, strict=True)
            ],
            axis=0,
        )
        positive[X.getnnz(axis=1) == 0] = NO_EVIDENCE
        return np.column_stack([1 - positive, positive])

    def predict(self, X: sp.spmatrix) -> np.ndarray:
        return self.classes_[(self.predict_proba(X)[:, 1] > 0.5).astype(int)]

    def _view(self, X: sp.csr_matrix, view: str) -> sp.csr_matrix:
        """X's counts weighted as `view`, each row of unit L2 norm. Every view has X's non-zeros,
        so it shares X's index arrays; its values are computed VIEW_BATCH rows at a time."""
        data = np.empty_like(X.data)
        for rows in _batches(0, X.shape[0]):
            start, stop = X.indptr[rows.start], X.indptr[rows.stop]
            values = data[start:stop]
            values[:] = self._weighted(X.data[start:stop], X.indices[start:stop], view)
            _normalize(values, X.indptr[rows.start : rows.stop + 1] - start)
        return sp.csr_matrix((data, X.indices, X.indptr), shape=X.shape)

    def _weighted(self, counts: np.ndarray, columns: np.ndarray, view: str) -> np.ndarray:
        if view == "nb":  # presence (1) x the NB ratio
            return self.log_ratio_[columns]
        weighted = np.log1p(counts)
        weighted *= self.idf_[columns]
        if view == "nb_tfidf":
            weighted *= self.log_ratio_[columns]
        return weighted

    def _warm_starts(self, views: tuple[str, ...], n_features: int) -> list:
        """Per view, the fitted model to start from (None: start from zero)."""
        previous = getattr(self, "estimators_", None) if self.warm_start else None
        if (
            previous is None
            or self.classifier != "logistic"
            or len(previous) != len(views)
            or getattr(self, "n_features_in_", None) != n_features
        ):
            return [None] * len(views)
        return list(previous)

    def _checked_views(self) -> tuple[str, ...]:
        views = tuple(self.views)
        unknown = [v for v in views if v not in VIEWS]
        if not views or unknown:
            raise ValueError(f"views must be a non-empty subset of {VIEWS}, got {views}")
        return views

    def _base_estimator(self):
        if self.classifier == "logistic":
            return LogisticRegression(C=self.C, solver="liblinear", max_iter=1000, random_state=0)
        if self.classifier == "svm":
            return CalibratedClassifierCV(LinearSVC(C=self.C), method="sigmoid", cv=3)
        raise ValueError(f"classifier must be one of {CLASSIFIERS}, got {self.classifier!r}")


class CalibratedLinear:
    """An svm view as loaded from data (pyfunc/state.py): the average over its folds of a linear
    model with a sigmoid calibration, which is what sklearn's CalibratedClassifierCV(LinearSVC,
    method="sigmoid") computes for the positive class. Its private per-fold classes are not
    rebuilt: their layout changes between scikit-learn versions, this arithmetic does not."""

    def __init__(self, coef: np.ndarray, intercept: np.ndarray, a: np.ndarray, b: np.ndarray):
        self.coef, self.intercept, self.a, self.b = coef, intercept, a, b

    def parts(self) -> dict[str, np.ndarray]:
        """The arrays it is made of, as state.py writes them."""
        return {
            "coef": self.coef, "intercept": self.intercept,
            "sigmoid_a": self.a, "sigmoid_b": self.b,
        }  # fmt: skip

    def predict_proba(self, X: sp.spmatrix) -> np.ndarray:
        positive = np.zeros(X.shape[0])
        for coef, intercept, a, b in zip(self.coef, self.intercept, self.a, self.b, strict=True):
            positive += expit(-(a * (X @ coef + intercept) + b))
        positive /= len(self.intercept)
        return np.column_stack([1 - positive, positive])


def _batches(start: int, stop: int) -> list[slice]:
    """Rows start..stop as slices of at most VIEW_BATCH rows."""
    return [slice(i, min(i + VIEW_BATCH, stop)) for i in range(start, stop, VIEW_BATCH)]


def _positive_probability(model, X: sp.csr_matrix) -> np.ndarray:
    if isinstance(model, LogisticRegression):
        # The same sigmoid as model.predict_proba, without its per-call input validation, which
        # costs more than the arithmetic when a request carries one review.
        return expit(X @ model.coef_[0] + model.intercept_[0])
    return model.predict_proba(X)[:, 1]


def _normalize_rows(X: sp.csr_matrix) -> sp.csr_matrix:
    """Each row scaled to unit L2 norm (empty rows stay empty), in place."""
    _normalize(X.data, X.indptr)
    return X


def _normalize(data: np.ndarray, indptr: np.ndarray) -> None:
    """The rows (`indptr`, from 0) of CSR values `data` scaled to unit L2 norm, in place."""
    lengths = np.diff(indptr)
    filled = lengths > 0
    norms = np.ones(len(lengths))
    if len(data):  # reduceat over the non-empty rows only: an empty row's start may be out of range
        squares = np.add.reduceat(data.astype(np.float64) ** 2, indptr[:-1][filled])
        norms[filled] = np.sqrt(squares)
    norms[norms == 0] = 1.0
    data /= np.repeat(norms, lengths).astype(data.dtype)


def _binary(X: sp.csr_matrix) -> sp.csr_matrix:
    """X's pattern with every value 1 (sharing X's index arrays: nothing writes to them)."""
    return sp.csr_matrix((np.ones_like(X.data), X.indices, X.indptr), shape=X.shape)


def _log_count_ratio(
    present: sp.csr_matrix, positive: np.ndarray, alpha: float, weights: np.ndarray | None = None
) -> np.ndarray:
    """log((p / |p|1) / (q / |q|1)) with p, q the smoothed per-class document counts (each
    document counted with its weight, when there are weights)."""
    if weights is None:
        p = alpha + np.asarray(present[positive].sum(axis=0)).ravel()
        q = alpha + np.asarray(present[~positive].sum(axis=0)).ravel()
    else:
        p = alpha + present.T @ np.where(positive, weights, 0.0)
        q = alpha + present.T @ np.where(positive, 0.0, weights)
    return np.log((p / p.sum()) / (q / q.sum())).astype(np.float32)

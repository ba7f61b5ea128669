"""How train and tune divide their data: the validation split carved from the ingested train
split and the K folds of cross-validation (both grouped by movie where the reviews have a movie
key), and the unlabeled reviews self-training may use (none that are copies of test or held-out
reviews as the model sees them)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split

from steps.data.dataset import model_text
from steps.stage.config import TrainConfig
from steps.stage.errors import StageError

log = logging.getLogger(__name__)


def validation_split(
    labels: list[str], movies: list[str] | None, cfg: TrainConfig
) -> tuple[np.ndarray, np.ndarray, str]:
    """Row indices to fit on and to validate on, and how they were chosen.

    grouped (with movies): StratifiedGroupKFold with round(1 / val_fraction) folds, the first
    held out, so no movie is on both sides; otherwise a stratified random split.
    """
    rows = np.arange(len(labels))
    try:
        if cfg.val_split == "grouped" and movies is not None:
            folds = max(2, round(1 / cfg.val_fraction))
            splitter = StratifiedGroupKFold(folds, shuffle=True, random_state=cfg.seed)
            fit_idx, val_idx = next(splitter.split(rows, labels, groups=movies))
            return fit_idx, val_idx, f"grouped by movie, 1 of {folds} folds, seed {cfg.seed}"
        fit_idx, val_idx = train_test_split(
            rows, test_size=cfg.val_fraction, stratify=labels, random_state=cfg.seed
        )
    except ValueError as exc:  # e.g. too few reviews of one label, or movies, to split
        raise StageError(f"cannot carve a validation split: {exc}") from None
    grouping = " (the reviews have no movie key)" if cfg.val_split == "grouped" else ""
    return fit_idx, val_idx, f"stratified at random, seed {cfg.seed}{grouping}"


def cv_folds(
    labels: Sequence[str], movies: Sequence[str] | None, folds: int, seed: int
) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    """(fit rows, held-out rows) per fold, grouped by movie where there are movie keys (no movie
    on both sides; with round(1 / val_fraction) folds and train's seed, the first is train's
    grouped validation split), else stratified at random; and how. Calibration's out-of-fold
    scores, tune and bench/bench_model.py fold with this."""
    rows = np.arange(len(labels))
    if movies is not None:
        splitter = StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
        return list(splitter.split(rows, labels, groups=movies)), f"{folds} folds by movie"
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return list(splitter.split(rows, labels)), f"{folds} stratified folds"


@dataclass(frozen=True)
class Unlabeled:
    """The unlabeled reviews self-training may use, and each as the model sees it (model_text):
    cleaned once, for the checks and for every fit (3.5 CPU-s per 50,000 reviews, issue 26)."""

    reviews: list[str]
    as_model: list[str]

    @classmethod
    def of(cls, reviews: Sequence[str]) -> Unlabeled:
        """The reviews, cleaned here."""
        return cls(list(reviews), model_text(pd.Series(reviews, dtype=object)).tolist())

    def __len__(self) -> int:
        return len(self.reviews)

    def copying_none_of(self, held: set[str]) -> list[str]:
        """The reviews that are, as the model sees them, none of `held` (model_text keys)."""
        pairs = zip(self.reviews, self.as_model, strict=True)
        return [text for text, key in pairs if key not in held]


def unlabeled_per_fold(
    unlabeled: Unlabeled, reviews: list[str], held_out: Sequence[np.ndarray]
) -> list[list[str]]:
    """For each fold's held-out rows of `reviews`, the unlabeled reviews that copy none of them
    as the model sees them (as train's validation fit learns from no copy of a validation
    review)."""
    keys = model_text(pd.Series(reviews, dtype=object)).to_numpy()
    return [unlabeled.copying_none_of(set(keys[rows])) for rows in held_out]


def usable_unlabeled(
    unlabeled: pd.DataFrame | None,
    train: pd.DataFrame,
    test: pd.DataFrame,
    cfg: TrainConfig,
    where: str = "the unlabeled split",
) -> Unlabeled | None:
    """The unlabeled reviews self-training may use, or None (none ingested, or not wanted).

    An unusable split (empty, mostly copies of labelled train reviews, sharing reviews with the
    test split) is a StageError naming the problem, or with `train.unlabeled_fallback` a warning
    and None.
    """
    if cfg.unlabeled == "none" or unlabeled is None:
        return None
    reviews = unlabeled["review"]
    copies = int(reviews.isin(set(train["review"])).sum())
    # as the model sees them: a case or spacing variant of a test review leaks it just the same
    as_model = model_text(reviews)
    in_test = reviews[as_model.isin(set(model_text(test["review"])))]
    problem = None
    if reviews.empty:
        problem = "holds no reviews"
    elif copies / len(reviews) > cfg.max_unlabeled_copies:
        problem = (
            f"{copies:,} of {len(reviews):,} reviews ({copies / len(reviews):.0%}) are copies of"
            f" labelled train reviews, more than train.max_unlabeled_copies"
            f" ({cfg.max_unlabeled_copies:.0%}) allows"
        )
    elif len(in_test):
        problem = (
            f"{len(in_test):,} reviews also occur in the test split"
            f" (e.g. {in_test.iloc[0][:60]!r}): learning from them leaks the test into the model"
        )
    if problem is None:
        return Unlabeled(reviews.tolist(), as_model.tolist())
    if cfg.unlabeled_fallback:
        log.warning(
            "%s: %s: training on the labelled reviews alone (train.unlabeled_fallback)",
            where,
            problem,
        )
        return None
    raise StageError(
        f"{where}: {problem}: ingest a clean unlabeled split, set train.unlabeled: none, or"
        " set train.unlabeled_fallback: true to train without it"
    )

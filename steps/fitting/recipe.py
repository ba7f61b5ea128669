"""The recipe (train.* of params.yaml) as a pipeline, and its fit: one function that train's
validation fit, calibration folds and refit, and every fold of tune, all go through."""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.pipeline import Pipeline

from pyfunc.pipeline import build_pipeline
from pyfunc.self_training import self_train
from steps.data.dataset import POSITIVE
from steps.stage.config import TrainConfig
from steps.stage.errors import StageError


def pipeline_for(cfg: TrainConfig) -> Pipeline:
    """The unfitted pipeline a train config describes (each build_pipeline keyword is a key)."""
    keys = inspect.signature(build_pipeline).parameters
    return build_pipeline(**{key: getattr(cfg, key) for key in keys})


@dataclass(frozen=True)
class Cleaned:
    """Unlabeled reviews, and each as the recipe's cleaner leaves it: cleaned once for all fits."""

    reviews: list[str]
    by_review: dict[str, str]

    def pick(self, reviews: list[str] | None) -> list[str] | None:
        return [self.by_review[text] for text in reviews] if reviews else None


def clean_once(cfg: TrainConfig, unlabeled: list[str] | None, as_model: Any = None) -> Cleaned:
    """`as_model`: model_text of them, which is the cleaner's output unless train.negation."""
    unlabeled = unlabeled or []
    cleaner = pipeline_for(cfg).named_steps["clean"]
    cleaned = cleaner.transform(unlabeled) if as_model is None or cfg.negation else list(as_model)
    return Cleaned(unlabeled, dict(zip(unlabeled, cleaned, strict=True)))


def fit_job(
    cfg: TrainConfig,
    reviews: list[str],
    labels: list[str],
    cleaned_unlabeled: list[str] | None = None,
    scored: list[str] | None = None,
) -> tuple[Pipeline, np.ndarray | None, float, float, float]:
    """One fit (in a worker or not): pipeline, scores of `scored`, fit wall/CPU s, scoring CPU s."""
    pipeline, wall, cpu = fit(cfg, reviews, labels, cleaned_unlabeled, cleaned=True)
    if scored is None:
        return pipeline, None, wall, cpu, 0.0
    started = time.process_time()
    scores = pipeline.predict_proba(scored)[:, list(pipeline.classes_).index(POSITIVE)]
    return pipeline, scores, wall, cpu, time.process_time() - started


def fit(
    cfg: TrainConfig,
    reviews: list[str],
    labels: list[str],
    unlabeled: list[str] | None = None,
    cleaned: bool = False,
) -> tuple[Pipeline, float, float]:
    """The recipe fitted (self-trained when `unlabeled` reviews are given, `cleaned`: already
    through the recipe's cleaner); wall and CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        if unlabeled:
            pipeline = self_train(
                pipeline_for(cfg), reviews, labels, unlabeled, rounds=cfg.self_training_rounds,
                weighting=cfg.self_training_weighting, cleaned=cleaned,
            )  # fmt: skip
        else:
            pipeline = pipeline_for(cfg).fit(reviews, labels)
    except ValueError as exc:  # bad recipe values: unknown view or classifier, bad n-gram range
        if "0 feature(s)" in str(exc):  # sklearn's words for an empty vocabulary
            raise StageError(
                f"cannot train: no n-gram occurs in train.min_df={cfg.min_df} of the"
                f" {len(reviews):,} reviews fitted on; lower train.min_df"
            ) from None
        raise StageError(f"cannot train with these train.* parameters: {exc}") from None
    return pipeline, time.perf_counter() - wall, time.process_time() - cpu

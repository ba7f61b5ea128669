"""The recipe's fit (steps/fitting/recipe.py): what train ships and tune cross-validates."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
from support import make_reviews, make_unlabeled

from pyfunc.pipeline import build_pipeline
from steps.fitting import recipe
from steps.stage.config import TrainConfig, load_params
from steps.stage.errors import StageError


@pytest.fixture
def cfg() -> TrainConfig:
    return dataclasses.replace(load_params().train, min_df=1, calibration="none")


def test_every_keyword_of_the_pipeline_is_a_train_key():
    """pipeline_for passes each build_pipeline keyword from the config: a keyword added there
    without a train.* key (or the other way round) fails here, not in a run."""
    keys = set(inspect.signature(build_pipeline).parameters)
    assert keys <= {field.name for field in dataclasses.fields(TrainConfig)}


def test_the_pipeline_follows_the_config(cfg):
    steps = recipe.pipeline_for(dataclasses.replace(cfg, C=0.5, ngram_range=(1, 1)))
    assert steps.named_steps["classify"].C == 0.5
    assert steps.named_steps["vectorize"].ngram_range == (1, 1)


def test_a_plain_and_a_self_trained_fit_both_learn_and_report_their_time(cfg):
    data = make_reviews(400, seed=3)
    reviews, labels = data["review"].tolist(), data["sentiment"].tolist()
    held = make_reviews(100, seed=4)
    for unlabeled in (None, make_unlabeled(200)):
        pipeline, wall, cpu = recipe.fit(cfg, reviews, labels, unlabeled)
        assert (pipeline.predict(held["review"].tolist()) == held["sentiment"]).mean() > 0.9
        assert wall > 0 and cpu > 0


def test_a_min_df_no_n_gram_reaches_is_one_line_naming_the_key(cfg):
    data = make_reviews(100)
    too_rare = dataclasses.replace(cfg, min_df=500)
    with pytest.raises(StageError) as err:
        recipe.fit(too_rare, data["review"].tolist(), data["sentiment"].tolist())
    assert str(err.value) == (
        "cannot train: no n-gram occurs in train.min_df=500 of the 100 reviews fitted on;"
        " lower train.min_df"
    )


def test_unlabeled_reviews_are_cleaned_once_and_picked_by_text(cfg):
    unlabeled = ["<br />Great   FILM!", "Dull."]
    cleaned = recipe.clean_once(cfg, unlabeled)
    cleaner = recipe.pipeline_for(cfg).named_steps["clean"]
    assert cleaned.pick(["Dull."]) == list(cleaner.transform(["Dull."]))
    assert cleaned.pick(None) is None and cleaned.pick([]) is None

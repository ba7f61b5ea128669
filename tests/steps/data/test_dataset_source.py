"""The reviews logged as MLflow datasets name their source without MLflow's warning that a local
path could be read two ways (steps/data/dataset.py): once per split, it filled every run's log."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest

from steps.data import dataset


class Manifest:
    def __init__(self, source: str) -> None:
        self.source = source


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("/data/reviews.csv", "LocalArtifactDatasetSource"),
        ("https://example.org/aclImdb_v1.tar.gz", "HTTPDatasetSource"),
        ("odbc:DRIVER=SQLite3;Database=x.db", "LocalArtifactDatasetSource"),  # the ingested file
    ],
)
def test_a_source_is_resolved_without_warnings(source, kind, tmp_path):
    frame = pd.DataFrame({"review": ["a fine film"], "sentiment": ["positive"]})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logged = dataset.as_mlflow_dataset(frame, Manifest(source), "train", tmp_path)
    assert type(logged.source).__name__ == kind
    assert [str(w.message) for w in caught if "dataset source" in str(w.message)] == []

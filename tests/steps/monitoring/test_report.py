"""The monitor report's length histogram spans the data, not 1 to 1e9 characters."""

from __future__ import annotations

import numpy as np
import pytest

from steps.monitoring import report


@pytest.mark.parametrize(
    ("train", "batch"),
    [([52, 800, 13704], [120, 3000]), ([500, 500], [500]), ([10, 100], []), ([0, 3], [2])],
)
def test_length_bins_run_from_the_shortest_review_to_the_longest(train, batch):
    bins = report._fitted_bins(np.array(train, dtype=float), np.array(batch, dtype=float))
    logs = np.log10(np.maximum(np.array(train + batch, dtype=float), 1))
    assert bins[0] <= logs.min() and logs.max() <= bins[-1]
    # fitted: the data fills the range, give or take the minimum width of a single length
    assert bins[-1] - bins[0] <= max(logs.max() - logs.min(), 0.1) + 1e-9
    assert np.all(np.diff(bins) > 0)

"""tune.grid: the train recipe keys `tune` varies and the values each takes, every combination a
candidate. A grid is held to the train section's own declarations (a value TrainConfig refuses,
a grid refuses, in the same words), and to tune.max_fits, before any fit.

In params.yaml a grid is a mapping of keys to lists of values (`C: [10, 30]`, `ngram_range:
[[1, 2], [1, 3]]`); on the command line and after `mlflow run -P grid=` it is text,
`C=10|30;ngram_range=1,2|1,3` (each value as `--KEY VALUE` takes it: steps/stage/coercion.py).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

from steps.stage.coercion import checked, unknown_key

# The train keys a cross-validated fit does not read: how train validates, calibrates and ships
# the model, and whether an unlabeled split is usable (decided once, with params.yaml's values).
NOT_RECIPE = (
    "val_fraction",
    "val_split",
    "seed",
    "refit_full",
    "max_unlabeled_copies",
    "unlabeled_fallback",
    "calibration",
    "calibration_folds",
)


def recipe_keys(train_fields: Mapping[str, Any]) -> list[str]:
    """The train keys a grid may vary, in params.yaml's order."""
    return [key for key in train_fields if key not in NOT_RECIPE]


def typed(grid: Mapping[str, tuple[Any, ...]], train_fields: Mapping[str, Any]) -> dict:
    """The grid with each value as its train field holds it; ValueError naming the first key or
    value the train section refuses (or a key with no values)."""
    known = recipe_keys(train_fields)
    values: dict[str, tuple[Any, ...]] = {}
    for key, given in grid.items():
        if key not in known:
            if key in train_fields:
                raise ValueError(
                    f"holds train key {key!r}, which a cross-validated fit does not read"
                    f" (grid keys: {', '.join(sorted(known))})"
                )
            raise ValueError(f"holds an {unknown_key('train key', key, known)}")
        if not given:
            raise ValueError(f"{key} has no values: give at least one")
        try:
            values[key] = tuple(checked(value, train_fields[key]) for value in given)
        except ValueError as refused:
            raise ValueError(f"{key} {refused}") from None
    return values


def size(grid: Mapping[str, tuple[Any, ...]]) -> int:
    """How many candidates a grid makes."""
    return math.prod(len(values) for values in grid.values())


def problems(
    grid: Mapping[str, tuple[Any, ...]], train_fields: Mapping[str, Any], folds: int, max_fits: int
) -> dict[str, str]:
    """What is wrong with a tune section's grid ({} = nothing): field -> why."""
    try:
        typed(grid, train_fields)
    except ValueError as wrong:
        return {"grid": str(wrong)}
    fits = size(grid) * folds
    if fits > max_fits:
        return {
            "grid": f"of {size(grid)} candidates x {folds} folds would take {fits} fits, more"
            f" than max_fits ({max_fits}): fewer values or folds, or a higher tune.max_fits"
        }
    return {}


def combinations(grid: Mapping[str, tuple[Any, ...]], train_fields: Mapping[str, Any]) -> list:
    """Every candidate: {key: typed value} for each combination, the grid's first key slowest."""
    values = typed(grid, train_fields)
    return [
        dict(zip(values, chosen, strict=True)) for chosen in itertools.product(*values.values())
    ]

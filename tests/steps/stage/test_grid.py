"""tune.grid (steps/stage/grid.py): each bad grid is one line naming what is wrong and what is
allowed, the same through the command line (`--grid`, `mlflow run -P grid=`) and params.yaml,
before any fit; a good one's candidates, typed as train's fields hold them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from steps.entry import cli
from steps.stage import grid
from steps.stage.coercion import mapping_text
from steps.stage.config import TrainConfig, load_params
from steps.stage.errors import ConfigError
from steps.stage.schema import hints

REPO_ROOT = Path(__file__).resolve().parents[3]
PARAMS = REPO_ROOT / "params.yaml"
RECIPE_KEYS = (
    "C, char_ngram_range, classifier, max_features, min_df, nb_alpha, negation, negation_view,"
    " ngram_range, self_training_rounds, self_training_weighting, unlabeled, views"
)

# The bad-input family: (grid as typed after --grid / -P grid=, as written in params.yaml,
# what the one line says after the door's name).
BAD_GRIDS = {
    "unknown key": (
        "Cc=10|30",
        {"Cc": [10, 30]},
        f"grid holds an unknown train key 'Cc' (did you mean 'C'? known: {RECIPE_KEYS})",
    ),
    "train key a fit does not read": (
        "refit_full=true|false",
        {"refit_full": [True, False]},
        "grid holds train key 'refit_full', which a cross-validated fit does not read"
        f" (grid keys: {RECIPE_KEYS})",
    ),
    "value out of bounds": ("C=10|-1", {"C": [10, -1]}, "grid C must be over 0, got -1.0"),
    "value not a choice": (
        "classifier=logistic|forest",
        {"classifier": ["logistic", "forest"]},
        "grid classifier must be logistic or svm, got 'forest'",
    ),
    "bad n-gram span": (
        "ngram_range=1,3|3,1",
        {"ngram_range": [[1, 3], [3, 1]]},
        "grid ngram_range must be low,high with 1 <= low <= high, got (3, 1)",
    ),
    "wrong type": ("min_df=2|many", {"min_df": [2, "many"]}, "grid min_df must be a whole number"),
    "empty value list": ("C=", {"C": []}, "grid C has no values: give at least one"),
    "empty grid": ("", {}, "grid must be non-empty, got {}"),
    "too many fits": (
        "C=1|3|10|30|100;min_df=2|3",
        {"C": [1, 3, 10, 30, 100], "min_df": [2, 3]},
        "grid of 10 candidates x 5 folds would take 50 fits, more than max_fits (20): fewer"
        " values or folds, or a higher tune.max_fits",
    ),
}


@pytest.mark.parametrize(("text", "written", "said"), BAD_GRIDS.values(), ids=BAD_GRIDS)
def test_a_bad_grid_is_one_line_through_the_command_line_and_params_yaml(
    text, written, said, tmp_path
):
    with pytest.raises(ConfigError) as refused:
        cli.parse("tune", ["--params", str(PARAMS), "--grid", text])
    assert str(refused.value).startswith(f"tune parameters: {said}")
    assert "\n" not in str(refused.value)
    params = yaml.safe_load(PARAMS.read_text())
    params["tune"]["grid"] = written
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError) as refused:
        load_params(tmp_path / "params.yaml")
    assert str(refused.value).startswith(f"{tmp_path / 'params.yaml'}: tune.{said}")


def test_the_bound_counts_folds_and_can_be_raised():
    grid = ["--grid", "C=1|3|10|30|100;min_df=2|3"]
    _, cfg, _ = cli.parse("tune", ["--params", str(PARAMS), *grid, "--folds", "2"])
    assert cfg.folds == 2  # 10 x 2 = 20 fits: within the bound
    _, cfg, _ = cli.parse("tune", ["--params", str(PARAMS), *grid, "--max_fits", "50"])
    assert cfg.max_fits == 50


def test_candidates_are_every_combination_typed_as_train_holds_them():
    given = {"C": ("10", "30"), "ngram_range": ([1, 2], "1,3"), "max_features": (None, "null")}
    made = grid.combinations(given, hints(TrainConfig))
    assert grid.size(given) == len(made) == 8
    assert made[0] == {"C": 10.0, "ngram_range": (1, 2), "max_features": None}
    assert made[-1] == {"C": 30.0, "ngram_range": (1, 3), "max_features": None}


def test_grid_text_round_trips():
    text = "C=10|30;ngram_range=1,2|1,3;unlabeled=none;max_features=null"
    _, cfg, _ = cli.parse("tune", ["--params", str(PARAMS), "--grid", text])
    assert mapping_text(cfg.grid) == text
    # pairs may also be apart by spaces (mlflow run -P quotes the value)
    _, spaced, _ = cli.parse("tune", ["--params", str(PARAMS), "--grid", text.replace(";", " ")])
    assert spaced.grid == cfg.grid

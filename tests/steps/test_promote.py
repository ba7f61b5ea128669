"""Promotion by aliases against a real SQLite registry, with tiny real pyfunc models.

Each test registers keyword models (tests/steps/keyword_model.py) that know more or fewer
sentiment words, so "better" and "worse" are measured, not declared: promote scores both models
on the same reviews in child processes, as it does for the real model.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types.schema import ColSpec, Schema
from support import make_reviews, mark_validated

from steps import models, promote, register
from steps.stage.config import PromoteConfig, load_params
from steps.stage.errors import StageError
from steps.stage.paths import TEST_FILE_NAME
from steps.tracking import registry, runs, store

# The stages run in-process keep their lock and default store in the working directory.
pytestmark = pytest.mark.usefixtures("in_project_dir")

REPO_ROOT = Path(__file__).resolve().parents[2]
KEYWORD_MODEL = Path(__file__).with_name("keyword_model.py")
NAME = "imdb-sentiment"
# The sentiment words tests/support.make_reviews writes.
POSITIVE = ["wonderful", "brilliant", "moving", "superb", "delightful", "excellent", "great",
            "touching", "funny", "gripping", "beautiful", "masterful", "charming",
            "memorable"]  # fmt: skip
NEGATIVE = ["awful", "boring", "terrible", "dull", "clumsy", "dreadful", "bad", "tedious",
            "pointless", "horrible", "lifeless", "predictable", "weak", "painful"]  # fmt: skip
STRONG = {"positive": POSITIVE, "negative": NEGATIVE}  # ~100% on make_reviews
WEAK = {"positive": POSITIVE[:3], "negative": NEGATIVE[:3]}  # ~60%


def signature(column: str = "review") -> ModelSignature:
    return ModelSignature(
        inputs=Schema([ColSpec("string", column)]),
        outputs=Schema([ColSpec("string", "label"), ColSpec("double", "score")]),
    )


@pytest.fixture
def local_store(tracking_uri) -> str:
    """The tmp SQLite store, created as the stages create it (artifacts beside it, not ./mlruns)."""
    store.configure()
    return tracking_uri


@pytest.fixture
def ingested(tmp_path) -> Path:
    """An ingested test split (review, sentiment) both models are scored on."""
    folder = tmp_path / "ingested"
    folder.mkdir()
    make_reviews(200, seed=3).to_parquet(folder / TEST_FILE_NAME)
    mark_validated(folder)
    return folder


def at(ingested: Path) -> dict[str, Path]:
    """promote's data arguments for the `ingested` fixture: the folder and its marker."""
    return {"ingested_dir": ingested, "marker": ingested.parent / "validated.json"}


def cfg_of() -> PromoteConfig:
    return PromoteConfig(metric="accuracy", min_gain=0.002, eval_data="")


@pytest.fixture
def cfg() -> PromoteConfig:
    return cfg_of()


def add_version(
    words: dict, checks_passed: bool = True, data: str = "data-a", column: str = "review"
) -> str:
    """Log a keyword model reading `column` and register it through register.register; return
    the version."""
    with mlflow.start_run() as run:
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(KEYWORD_MODEL),
            model_config={**words, "column": column},
            signature=signature(column),
            pip_requirements=["mlflow", "pandas"],
        )
    trained = runs.TrainedModel(
        run_id=run.info.run_id,
        model_uri=info.model_uri,
        model_id=info.model_id,
        location=info.model_uri,
        data_sha256=data,
    )
    report = register.EvalReport(
        metrics={"accuracy": 0.5}, checks_passed=checks_passed, model_uri=info.model_uri
    )
    return str(register.register(NAME, trained, report).version)


def aliases() -> dict[str, str]:
    return {k: str(v) for k, v in MlflowClient().get_registered_model(NAME).aliases.items()}


def tags(version: str) -> dict[str, str]:
    return MlflowClient().get_model_version(NAME, version).tags


def card(version: str) -> str:
    """The version's description: its model card, whose History promote and rollback extend."""
    return MlflowClient().get_model_version(NAME, version).description


@pytest.mark.parametrize(
    ("candidate", "champion", "checks", "promoted", "reason"),
    [
        (0.80, None, "passed", True, "first model: no champion yet (accuracy 0.8000)"),
        (0.903, 0.900, "passed", True, "accuracy 0.9030 vs champion v1 0.9000 (gain +0.0030"),
        (0.902, 0.900, "passed", True, "(gain +0.0020, min_gain 0.002)"),  # boundary: promoted
        (0.9019, 0.900, "passed", False, "not better enough: accuracy 0.9019 vs champion v1"),
        (0.85, 0.90, "passed", False, "not better enough: accuracy 0.8500 vs champion v1 0.9000"),
        (0.99, 0.90, "failed", False, "behavioural checks failed"),
        (0.99, None, "failed", False, "behavioural checks failed"),
        (0.99, None, None, False, "behavioural checks not recorded (register the version"),
    ],
)
def test_decision_rule(candidate, champion, checks, promoted, reason):
    ok, why = promote.decide("accuracy", candidate, champion, checks, 0.002, "1")
    assert ok is promoted
    assert reason in why


@pytest.mark.slow
@pytest.mark.integration
def test_first_model_becomes_champion(local_store, ingested, cfg):
    v1 = add_version(STRONG)
    decision = promote.promote(cfg, NAME, **at(ingested))
    assert decision.promoted and decision.champion is None
    assert aliases() == {"champion": v1}
    recorded = tags(v1)
    assert recorded["promotion.decision"] == "promoted"
    assert float(recorded["promotion.candidate_value"]) > 0.95
    assert recorded["promotion.champion_value"] == ""
    history = card(v1)
    assert f"version {v1}: PROMOTED (auto): first model" in history
    assert "on ingested test split" in history and "(200 reviews, " in history
    assert "became champion" in history
    # The decision is a card line and three tags, not a tag per field.
    assert {k for k in recorded if k.startswith("promotion.")} == {
        "promotion.decision", "promotion.candidate_value", "promotion.champion_value",
    }  # fmt: skip
    assert decision.summary().startswith(f"version {v1}: PROMOTED (auto): first model")
    assert promote.promote(cfg, NAME, **at(ingested)) is None  # already champion


@pytest.mark.slow
@pytest.mark.integration
def test_better_candidate_is_promoted_and_rollback_restores_the_previous_champion(
    local_store, ingested, cfg
):
    v1 = add_version(WEAK, data="data-a")
    promote.promote(cfg, NAME, **at(ingested))
    v2 = add_version(STRONG, data="data-b")
    decision = promote.promote(cfg, NAME, **at(ingested))
    assert decision.promoted and decision.champion == v1
    assert decision.candidate_value > decision.champion_value + cfg.min_gain
    assert aliases() == {"champion": v2, "previous": v1}
    recorded = tags(v2)
    assert float(recorded["promotion.champion_value"]) == pytest.approx(decision.champion_value)
    assert f"vs champion v{v1}" in card(v2)
    assert "trained on other data (manifest data-a)" in card(v2)
    assert f"replaced as champion by version {v2}" in card(v1)

    assert promote.rollback(NAME) == promote.Rollback(NAME, restored=v1, demoted=v2)
    assert aliases() == {"champion": v1}
    assert str(registry.version_by_alias(NAME, "champion").version) == v1
    assert f"rolled back to version {v1}" in card(v2)
    assert f"champion again by rollback (was {v2})" in card(v1)
    with pytest.raises(StageError, match="no @previous version to roll back to"):
        promote.rollback(NAME)


@pytest.mark.slow
@pytest.mark.integration
def test_a_champion_logged_before_the_input_column_was_renamed_is_still_scored(
    local_store, ingested, cfg
):
    """Versions logged when the model's input column was `text` stay comparable: each model is
    sent the column its own signature names."""
    old = add_version(WEAK, column="text")
    promote.promote(cfg, NAME, **at(ingested))
    new = add_version(STRONG)
    decision = promote.promote(cfg, NAME, **at(ingested))
    assert decision.promoted and decision.champion == old
    assert decision.champion_value < 0.8 < decision.candidate_value
    assert aliases() == {"champion": new, "previous": old}


@pytest.mark.slow
@pytest.mark.integration
def test_worse_candidate_and_one_failing_behavioural_checks_are_refused_with_reasons(
    local_store, ingested, cfg
):
    v1 = add_version(STRONG)
    promote.promote(cfg, NAME, **at(ingested))
    v2 = add_version(WEAK)
    decision = promote.promote(cfg, NAME, **at(ingested))
    assert not decision.promoted
    assert aliases() == {"champion": v1}
    recorded = tags(v2)
    assert recorded["promotion.decision"] == "refused"
    assert f"version {v2}: REFUSED (auto): not better enough: accuracy" in card(v2)
    assert float(recorded["promotion.candidate_value"]) < float(
        recorded["promotion.champion_value"]
    )
    assert decision.summary().startswith(f"version {v2}: REFUSED (auto): not better enough")

    v3 = add_version(STRONG, checks_passed=False)  # as good as the champion, checks failed
    assert not promote.promote(cfg, NAME, **at(ingested)).promoted
    assert aliases() == {"champion": v1}
    assert f"version {v3}: REFUSED (auto): behavioural checks failed" in card(v3)
    assert tags(v3)["promotion.candidate_value"] == tags(v3)["promotion.champion_value"]


@pytest.mark.slow
@pytest.mark.integration
def test_alias_set_by_hand_counts_and_promote_by_hand_skips_the_gate(local_store, ingested, cfg):
    v1 = add_version(STRONG)
    v2 = add_version(WEAK)
    MlflowClient().set_registered_model_alias(NAME, "champion", v1)  # as in the MLflow UI
    decision = promote.promote(cfg, NAME, version=v2, **at(ingested))
    assert decision.champion == v1  # compared with the alias set by hand
    assert decision.promoted and decision.mode == "manual"
    assert aliases() == {"champion": v2, "previous": v1}
    assert (
        f"version {v2}: PROMOTED (manual): promoted by hand; the automatic rule would refuse:"
        " not better"
    ) in card(v2)


def test_promote_by_hand_without_evaluation_data_still_promotes(local_store, tmp_path, cfg):
    v1 = add_version(STRONG)
    decision = promote.promote(cfg, NAME, version=v1, ingested_dir=tmp_path / "nothing")
    assert decision.promoted and decision.candidate_value is None
    assert aliases() == {"champion": v1}


def test_promoting_a_version_that_does_not_exist_is_a_clear_error(local_store, ingested, cfg):
    with pytest.raises(StageError, match="no model named 'imdb-sentiment' in the registry"):
        promote.promote(cfg, NAME, version="1", **at(ingested))
    add_version(STRONG)
    with pytest.raises(
        StageError, match=r"imdb-sentiment has no version 7 \(registered versions: 1\)"
    ):
        promote.promote(cfg, NAME, version="7", **at(ingested))
    with pytest.raises(StageError, match="must be a whole number"):
        promote.promote(cfg, NAME, version="latest", **at(ingested))


def test_promote_with_nothing_registered_says_run_register(local_store, ingested, cfg):
    with pytest.raises(StageError, match="no versions of 'imdb-sentiment' registered"):
        promote.promote(cfg, NAME, **at(ingested))


def test_bad_evaluation_data_is_one_clear_error(local_store, tmp_path, cfg):
    add_version(STRONG)
    with pytest.raises(StageError, match="test.parquet not found: run the ingest stage first"):
        promote.promote(cfg, NAME, ingested_dir=tmp_path / "empty")
    path = tmp_path / "bad.csv"
    pd.DataFrame({"text": ["a"], "label": ["x"]}).to_csv(path, index=False)
    bad = PromoteConfig(metric="accuracy", min_gain=0.0, eval_data=str(path))
    with pytest.raises(StageError, match=r"missing column\(s\) \['review', 'sentiment'\]"):
        promote.promote(bad, NAME)
    # A metric promotion cannot decide on is refused with the config, before any promotion.
    with pytest.raises(StageError, match="metric must be accuracy, f1 or roc_auc, got 'precision'"):
        PromoteConfig(metric="precision", min_gain=0.0, eval_data="")


@pytest.mark.slow
@pytest.mark.integration
def test_cli_promotes_by_hand_and_by_rule_rolls_back_and_fails_cleanly(
    local_store, ingested, tmp_path, capsys
):
    params = str(REPO_ROOT / "params.yaml")
    assert load_params(params).register.model_name == NAME
    eval_path = tmp_path / "fixed.csv"  # a fixed evaluation file instead of the ingested split
    pd.read_parquet(ingested / TEST_FILE_NAME).to_csv(eval_path, index=False)
    fixed = ["--params", params, "--eval_data", str(eval_path), "--metric", "roc_auc"]
    v1 = add_version(WEAK)
    v2 = add_version(STRONG)
    assert promote.main([*fixed, "--version", v1]) == 0
    assert promote.main(fixed) == 0
    assert aliases() == {"champion": v2, "previous": v1}
    assert f"on {eval_path} (" in card(v2) and ": roc_auc " in card(v2)
    assert promote.main(["--params", params, "--rollback"]) == 0
    assert aliases() == {"champion": v1}
    assert promote.main(["--params", params, "--version", "9"]) == 1
    assert promote.main(["--params", params, "--version", "1", "--rollback"]) == 1
    captured = capsys.readouterr()
    assert f"version {v1}: PROMOTED (manual)" in captured.out
    assert f"version {v2}: PROMOTED (auto)" in captured.out
    assert f"rolled back: {NAME}@champion -> version {v1} (was {v2})" in captured.out
    err = captured.err
    assert "error: promote: imdb-sentiment has no version 9 (registered versions: 1, 2)" in err
    assert "error: promote: promote parameters: --rollback goes alone" in err
    assert "Traceback" not in err
    runs = mlflow.search_runs(filter_string="tags.`promotion.decision` = 'promoted'")
    auto = runs[runs["tags.promotion.candidate_version"] == v2].iloc[0]
    assert auto["metrics.candidate_roc_auc"] > auto["metrics.champion_roc_auc"]
    # one param-key style: the keys a user types (`--metric`, `-P min_gain=`), no stage prefix
    assert (auto["params.metric"], auto["params.eval_data"]) == ("roc_auc", str(eval_path))
    assert "params.min_gain" in runs and not any(c.startswith("params.promote.") for c in runs)


def delete_leaving_its_aliases(version: str) -> None:
    """Delete a version the way MLflow does (marked Deleted_Internal) but leave its aliases
    behind, as a deletion that did not finish or a hand edit of the store would."""
    db = MlflowClient().tracking_uri.removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE model_versions SET current_stage = 'Deleted_Internal'"
            " WHERE name = ? AND version = ?",
            (NAME, int(version)),
        )
    with pytest.raises(Exception, match="not found"):
        MlflowClient().get_model_version_by_alias(NAME, "champion")


@pytest.mark.slow
@pytest.mark.integration
def test_aliases_pointing_at_deleted_versions_are_repaired_by_every_command(
    local_store, ingested, tmp_path, capsys
):
    params = str(REPO_ROOT / "params.yaml")
    eval_path = tmp_path / "fixed.csv"
    pd.read_parquet(ingested / TEST_FILE_NAME).to_csv(eval_path, index=False)
    fixed = ["--params", params, "--eval_data", str(eval_path)]

    def repaired(*dangling: tuple[str, str]) -> list[str]:
        lines = capsys.readouterr().out.splitlines()
        assert lines[: len(dangling)] == [
            f"repaired: removed {NAME}@{alias}: it pointed at version {v}, which no longer exists"
            for alias, v in dangling
        ]
        return lines[len(dangling) :]

    v1, v2, v3 = add_version(WEAK), add_version(STRONG), add_version(STRONG)
    promote.promote(cfg_of(), NAME, version=v1, **at(ingested))
    promote.promote(cfg_of(), NAME, version=v2, **at(ingested))
    delete_leaving_its_aliases(v2)
    assert aliases() == {"champion": v2, "previous": v1}  # champion dangles

    assert promote.main(["--params", params, "--rollback"]) == 0
    (line,) = repaired(("champion", v2))
    assert line.startswith(f"rolled back: {NAME}@champion -> version {v1} (was unset)")
    assert aliases() == {"champion": v1}

    promote.promote(cfg_of(), NAME, version=v3, **at(ingested))
    delete_leaving_its_aliases(v3)
    capsys.readouterr()
    assert promote.main([*fixed, "--version", v1]) == 0  # by hand
    (line,) = repaired(("champion", v3))
    assert line.startswith(f"version {v1}: PROMOTED (manual)")
    assert aliases() == {"champion": v1, "previous": v1}

    v4 = add_version(STRONG)
    delete_leaving_its_aliases(v1)  # champion and previous both dangle
    capsys.readouterr()
    assert promote.main(fixed) == 0  # the rule
    (line,) = repaired(("champion", v1), ("previous", v1))
    assert line.startswith(f"version {v4}: PROMOTED (auto): first model: no champion yet")
    assert aliases() == {"champion": v4}


@pytest.mark.slow
@pytest.mark.integration
def test_a_champion_set_by_hand_is_noticed_and_rollback_returns_to_the_one_before(
    local_store, ingested, cfg
):
    v1 = add_version(STRONG)
    v2 = add_version(WEAK)
    promote.promote(cfg, NAME, version=v1, **at(ingested))
    assert MlflowClient().get_registered_model(NAME).tags["bookkeeping.last_seen_champion"] == v1
    MlflowClient().set_registered_model_alias(NAME, "champion", v2)  # in the MLflow UI

    assert promote.rollback(NAME) == promote.Rollback(NAME, restored=v1, demoted=v2)
    assert aliases() == {"champion": v1}
    assert "set as champion by hand (noticed by rollback)" in card(v2)
    assert f"rolled back to version {v1}" in card(v2)
    assert MlflowClient().get_registered_model(NAME).tags["bookkeeping.last_seen_champion"] == v1


@pytest.mark.slow
@pytest.mark.integration
def test_make_models_records_a_champion_set_by_hand(local_store, ingested, cfg):
    v1 = add_version(STRONG)
    promote.promote(cfg, NAME, **at(ingested))  # the first model: champion
    v2 = add_version(WEAK)
    MlflowClient().set_registered_model_alias(NAME, "champion", v2)  # in the MLflow UI
    register_cfg = load_params(str(REPO_ROOT / "params.yaml")).register
    table = models.run(register_cfg)
    assert aliases() == {"champion": v2, "previous": v1}
    rows = {line.split()[0]: line.split()[1] for line in table.splitlines()[2:]}
    assert rows == {v2: "champion", v1: "previous"}
    assert models.run(register_cfg) == table  # recorded once: nothing new the second time

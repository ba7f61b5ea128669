"""Hints speak the interface the user called: make variables, `-P key=value`, `--flags`."""

from __future__ import annotations

import pytest

from steps.stage import hints
from steps.stage.hints import CALLER_ENV

MAKE = {CALLER_ENV: "make", "MLFLOW_RUN_ID": "abc"}  # make run: mlflow run under make
MLFLOW = {"MLFLOW_RUN_ID": "abc"}
PYTHON: dict[str, str] = {}


@pytest.mark.parametrize(
    ("environ", "expected"),
    [(MAKE, "make"), (MLFLOW, "mlflow"), (PYTHON, "python"), ({CALLER_ENV: "bogus"}, "python")],
)
def test_the_caller_is_read_from_the_environment(environ, expected):
    assert hints.caller(environ) == expected


@pytest.mark.parametrize(
    ("environ", "key", "value", "expected"),
    [
        (MAKE, "overwrite", True, "OVERWRITE=1"),
        (MAKE, "output", "scores.parquet", "OUTPUT=scores.parquet"),
        (MAKE, "min_rows", 300, 'P="min_rows=300"'),
        (MLFLOW, "overwrite", True, "-P overwrite=true"),
        (MLFLOW, "min_rows", 300, "-P min_rows=300"),
        (PYTHON, "overwrite", True, "--overwrite true"),
        (PYTHON, "output", "x.csv", "--output x.csv"),
    ],
)
def test_a_setting_in_each_interface(environ, key, value, expected):
    assert hints.setting(key, value, environ) == expected


@pytest.mark.parametrize(
    ("environ", "entry_point", "settings", "expected"),
    [
        (MAKE, "promote", {"version": 3}, "make promote VERSION=3"),
        (MAKE, "promote", {"rollback": True}, "make rollback"),
        (MAKE, "main", {}, "make run"),
        (
            MLFLOW,
            "promote",
            {"version": 3},
            "mlflow run . -e promote -P version=3 --env-manager local",
        ),
        (PYTHON, "promote", {"version": 3}, "python -m steps.promote --version 3"),
        (PYTHON, "promote", {"rollback": True}, "python -m steps.promote --rollback"),
    ],
)
def test_a_command_in_each_interface(environ, entry_point, settings, expected):
    assert hints.command(entry_point, settings, environ) == expected


def test_main_passes_its_caller_down_to_the_stages_it_chains():
    environ: dict[str, str] = {}
    hints.pass_down(environ)
    environ["MLFLOW_RUN_ID"] = "child"  # the stage runs under mlflow run
    assert hints.caller(environ) == "python"


def test_an_entry_point_under_mlflow_run_speaks_mlflow_after_its_run_resumed(
    tracking_uri, monkeypatch, capsys
):
    """MLflow deletes MLFLOW_RUN_ID from the environment when the stage resumes its run; a hint
    given after that still speaks `mlflow run` (the entry point recorded its caller first)."""
    from mlflow import MlflowClient

    from steps.entry import cli
    from steps.stage.errors import StageError
    from steps.tracking import store

    # as `mlflow run` starts an entry point: its experiment and the run it made
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "0")
    monkeypatch.setenv("MLFLOW_RUN_ID", MlflowClient(tracking_uri).create_run("0").info.run_id)

    def command(params, cfg, args) -> None:
        with store.stage_run("promote"):
            raise StageError(f"try {hints.command('promote', {'version': 3})}")

    assert cli.main("promote", [], command) == 1
    assert (
        capsys.readouterr()
        .err.strip()
        .splitlines()[-1]
        .endswith("try mlflow run . -e promote -P version=3 --env-manager local")
    )

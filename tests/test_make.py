"""The Makefile passes what users give it on: P="key=value ...", OVERWRITE=1, and resolves the
champion before serving, building or deploying it (one line, not a traceback, without one)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from support import REPO_ROOT, make_dry_run

from steps import main as main_stage

pytestmark = pytest.mark.integration  # every test runs make


def test_run_passes_any_override_to_the_check_and_to_mlflow_run():
    dry = make_dry_run("run", "SOURCE=reviews.csv", "P=min_rows=300 train.C=0.5")
    commands = [line for line in dry.replace("\\\n", " ").splitlines() if not line.startswith("#")]
    check, run = [line for line in commands if "steps.main --check" in line or "mlflow run" in line]
    assert "--source 'reviews.csv' '--min_rows=300' '--train.C=0.5'" in check
    assert "-P 'source=reviews.csv'" in run and "-P 'min_rows=300' -P 'train.C=0.5'" in run


@pytest.mark.parametrize(("given", "passed"), [("OVERWRITE=1", True), ("OVERWRITE=", False)])
def test_score_takes_overwrite(given, passed):
    dry = make_dry_run("score", "INPUT=a.csv", "OUTPUT=b.parquet", given)
    assert ("--overwrite true" in dry) is passed


@pytest.mark.parametrize("target", ["serve", "image", "dockerfile", "deploy", "deploy-plan"])
def test_targets_that_need_a_champion_resolve_it_first(target):
    first = make_dry_run(target).splitlines()
    resolving = [
        i
        for i, line in enumerate(first)
        if "steps.models --champion" in line or "--servable" in line
    ]
    assert resolving and resolving[0] == min(
        i for i, line in enumerate(first) if "steps." in line or "mlflow " in line
    )


def test_main_takes_key_equals_value_as_make_passes_it():
    assert main_stage.route_overrides(["--min_rows=300", "--train.C=0.5", "--source", "x"]) == {
        "validate": {"min_rows": "300"},
        "train": {"C": "0.5"},
        "ingest": {"source": "x"},
    }


def test_a_bad_override_through_p_is_refused_before_anything_runs(capsys):
    assert main_stage.main(["--check", "--min_rows=-1"]) == 1
    assert "min_rows must be at least 0" in capsys.readouterr().err


def test_clean_removes_only_regenerated_untracked_files(tmp_path):
    """In a checkout where the metrics files (and one report) are committed, as after `make
    repro; git add ...`, make clean leaves every tracked file and the downloads alone."""
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    committed = ["reports/metrics.json", "reports/train_metrics.json", "reports/train_stats.json"]
    committed.append("reports/plots/kept.csv")
    regenerated = [
        "data/ingested/train.parquet",
        "data/validated.json",
        "models/model/MLmodel",
        "reports/plots/roc.png",
        "reports/validation/index.html",
        "reports/evaluation.json",
    ]
    kept = ["data/downloads/aclImdb_v1.tar.gz", "mlflow.db", "reports/compare.md"]
    for name in committed + regenerated + kept:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "Makefile", "pyproject.toml", *committed], check=True)
    subprocess.run([*git, "commit", "-qm", "metrics"], check=True)
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    subprocess.run(["make", "-C", str(tmp_path), "clean"], check=True, env=env, timeout=60,
                   capture_output=True)  # fmt: skip
    status = subprocess.run(
        [*git, "status", "--porcelain"], check=True, capture_output=True, text=True
    ).stdout
    assert not [line for line in status.splitlines() if "D" in line[:2]], status
    assert [n for n in regenerated if (tmp_path / n).exists()] == []
    assert [n for n in committed + kept if not (tmp_path / n).exists()] == []

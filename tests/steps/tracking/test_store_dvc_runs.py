"""Runs DVC starts (dvc repro, dvc exp run, queued or --temp) land in the checkout's own store
and carry the experiment's name and baseline commit (steps/tracking/store.py)."""

from __future__ import annotations

import mlflow
import pytest

from steps.tracking import store


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, store.DEFAULT_TRACKING_URI),
        # a queued experiment runs in <root>/.dvc/tmp/exps/<tmp>, DVC_ROOT names <root>
        ({"DVC_ROOT": "/work/checkout"}, "sqlite:////work/checkout/mlflow.db"),
        ({"DVC_ROOT": "/work/checkout", "MLFLOW_TRACKING_URI": "http://x"}, "http://x"),
    ],
)
def test_dvc_runs_use_the_checkout_store_by_its_absolute_path(env, expected):
    assert store.resolve_target(env).tracking_uri == expected


def test_a_dvc_run_elsewhere_still_logs_to_the_checkout_store(tmp_path, monkeypatch):
    checkout, executor = tmp_path / "checkout", tmp_path / "checkout/.dvc/tmp/exps/tmp123"
    executor.mkdir(parents=True)
    monkeypatch.chdir(executor)
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DVC_ROOT", str(checkout))
    monkeypatch.setenv("DVC_EXP_NAME", "lucid-bass")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "a" * 40)
    store.configure()
    with store.stage_run("train") as run:
        pass
    assert (checkout / "mlflow.db").exists() and not (executor / "mlflow.db").exists()
    tags = mlflow.get_run(run.info.run_id).data.tags
    assert tags["dvc.exp_name"] == "lucid-bass" and tags["dvc.baseline_rev"] == "a" * 40

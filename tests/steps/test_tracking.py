"""The environment `make` hands to MLflow's own CLI agrees with what the stages decide."""

from __future__ import annotations

import subprocess

from steps.tracking.store import DEFAULT_TRACKING_URI, EXPERIMENT_NAME, shell_exports


def evaluated(exports: str, env: dict[str, str]) -> dict[str, str]:
    """Run the export lines in bash, as the Makefile does, and read the MLflow variables back."""
    script = f'{exports}\nenv | grep "^MLFLOW_" | sort'
    out = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


def test_default_is_the_local_store_and_our_experiment():
    env = {"PATH": "/usr/bin:/bin"}
    assert evaluated(shell_exports(env), env) == {
        "MLFLOW_TRACKING_URI": DEFAULT_TRACKING_URI,
        "MLFLOW_REGISTRY_URI": DEFAULT_TRACKING_URI,
        "MLFLOW_EXPERIMENT_NAME": EXPERIMENT_NAME,
    }


def test_dagshub_credentials_are_referenced_never_printed():
    env = {"PATH": "/usr/bin:/bin", "DAGSHUB_REPO": "alice/imdb", "DAGSHUB_USER_TOKEN": "s3cr3t$x"}
    exports = shell_exports(env)
    assert "s3cr3t" not in exports
    assert evaluated(exports, env) == {
        "MLFLOW_TRACKING_URI": "https://dagshub.com/alice/imdb.mlflow",
        "MLFLOW_REGISTRY_URI": DEFAULT_TRACKING_URI,  # DagsHub's MLflow has no Model Registry
        "MLFLOW_EXPERIMENT_NAME": EXPERIMENT_NAME,
        "MLFLOW_TRACKING_USERNAME": "s3cr3t$x",
        "MLFLOW_TRACKING_PASSWORD": "s3cr3t$x",
    }
    named = {**env, "DAGSHUB_USERNAME": "alice"}
    assert evaluated(shell_exports(named), named)["MLFLOW_TRACKING_USERNAME"] == "alice"


def test_an_explicit_tracking_uri_wins_and_odd_values_survive_quoting():
    env = {"PATH": "/usr/bin:/bin", "MLFLOW_TRACKING_URI": "sqlite:////tmp/my store/x.db"}
    env["MLFLOW_EXPERIMENT_NAME"] = "it's mine"
    got = evaluated(shell_exports(env), env)
    assert got["MLFLOW_TRACKING_URI"] == "sqlite:////tmp/my store/x.db"
    assert got["MLFLOW_EXPERIMENT_NAME"] == "it's mine"

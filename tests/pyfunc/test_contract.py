"""pyfunc/contract.py: the files that are not Python and name the model's environment variables
(the pods of k8s/, `make serve`) name exactly those of the contract."""

from __future__ import annotations

import re

import pytest
import yaml
from support import REPO_ROOT, make_dry_run

from pyfunc import contract

SLOTS = ("blue", "green")
MODEL_ENV = {v for k, v in vars(contract).items() if k.endswith("_ENV") and isinstance(v, str)}
# The project's variables and prometheus_client's: in a pod, each must be one the model reads.
MODEL_VARIABLE = re.compile(r"\b(IMDB_[A-Z_]+|PROMETHEUS_MULTIPROC_DIR)\b")


def pod_variables(slot: str) -> set[str]:
    deployment = yaml.safe_load((REPO_ROOT / "k8s" / f"deployment-{slot}.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"] for e in container.get("env", [])}


@pytest.mark.parametrize("slot", SLOTS)
def test_each_pod_sets_every_variable_the_model_reads_and_no_other(slot):
    named = {name for name in pod_variables(slot) if MODEL_VARIABLE.fullmatch(name)}
    assert named == MODEL_ENV


@pytest.mark.integration
def test_make_serve_sets_only_variables_the_model_reads():
    dry_run = make_dry_run("serve", "METRICS_PORT=9102")
    assigned = set(re.findall(r"\b(IMDB_[A-Z_]+)=", dry_run))
    expected = {
        *contract.SERVING_LIMITS_ENV, contract.METRICS_PORT_ENV, contract.PREDICTION_LOG_ENV,
        contract.MODEL_NAME_ENV, contract.MODEL_VERSION_ENV,
    }  # fmt: skip
    assert assigned == expected

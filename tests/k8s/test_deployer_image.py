"""The deployer's image (k8s/deployer/Dockerfile) for real: built with the project's code on the
base-image rule, and run the way k8s/deployer/deployment.yaml runs it (tests/docker_pod.py turns
the pod spec into docker run flags): `--help`, and a `--dry-run` plan against the Kubernetes API
stub on the host's loopback (host networking), reading a real SQLite registry."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from deploy_support import BLUE, K8S_DIR, seed
from docker_pod import docker, run_args, running

from steps.rollout import image
from steps.stage.config import load_params
from steps.stage.paths import PROJECT_ROOT

pytestmark = [pytest.mark.docker, pytest.mark.slow]

TAG = "imdb-sentiment-test:deployer"
SECRET = "imdb-sentiment-tracking"  # the Secret the manifest's envFrom names
STATE = "/state"  # where the test's kubeconfig and registry appear inside the container


def deployment() -> dict:
    return yaml.safe_load((K8S_DIR / "deployer" / "deployment.yaml").read_text())


@pytest.fixture(scope="module")
def deployer_image(rootfs_cache) -> str:
    cfg = load_params(PROJECT_ROOT / "params.yaml").image
    return image.build_deployer_image(TAG, cfg, rootfs_cache).ref


def test_the_image_runs_as_the_pods_user(deployer_image):
    user = docker("image", "inspect", "--format", "{{.Config.User}}", deployer_image).stdout
    uid = deployment()["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    assert user.strip() == f"{uid}:{uid}"  # also without the pod's securityContext


def test_help_answers_as_the_pod(deployer_image, tmp_path):
    run = run_args(deployment(), deployer_image, tmp_path / "volumes",
                   secrets={SECRET: {}}, network="none", args=["--help"])  # fmt: skip
    with running(run) as container:
        state = container.wait_exit(timeout=120)
        out = container.logs(tail=500)
    assert state["ExitCode"] == 0, out
    assert "usage: python -m steps.deploy" in out and "--dry-run" in out


def test_dry_run_plans_against_the_api_stub(
    deployer_image, cluster, registry, deploy_cfg, tmp_path
):
    client, name = registry
    seed(cluster, deploy_cfg, BLUE, 1)
    client.set_registered_model_alias(name, "champion", "2")
    # The container's user (10001) reads the kubeconfig and opens the SQLite registry.
    tmp_path.chmod(0o777)
    (tmp_path / "mlflow.db").chmod(0o666)
    secret = {"MLFLOW_TRACKING_URI": f"sqlite:///{STATE}/mlflow.db"}  # as the Secret would
    run = run_args(
        deployment(), deployer_image, tmp_path / "volumes", secrets={SECRET: secret},
        network="host", extra_volumes={tmp_path: STATE},
        extra_env={"KUBECONFIG": f"{STATE}/{Path(os.environ['KUBECONFIG']).name}"},
        args=["--dry-run"],
    )  # fmt: skip

    with running(run) as container:
        state = container.wait_exit(timeout=300)
        out = container.logs(tail=500)

    assert state["ExitCode"] == 0, out
    assert "plan: promote: champion is version 2; live slot blue runs version 1" in out
    assert "1. [build] build and push localhost:5000/imdb-sentiment:2 from model version 2" in out
    assert "[switch] switch the live Service from slot blue to slot green" in out
    assert cluster.requests, "the container never reached the stub"
    assert {r.method for r in cluster.requests} == {"GET"}  # a dry run changes nothing

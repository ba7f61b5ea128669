"""Adapter + planner end to end: the real `kubernetes` client against the stub API server
(loaded with the repo's manifests), real `mlflow models serve` processes behind the service
proxy, and a real SQLite registry with tiny pyfunc versions."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_support import (
    BLUE,
    GREEN,
    JSON_PATCH,
    K8S_DIR,
    LIVE,
    PREVIEW,
    STRATEGIC,
    kustomization_documents,
    make_deployer,
    seed,
)
from mlflow import MlflowClient
from support import free_port, stage_env

from steps import deploy
from steps.rollout.kube import FIELD_MANAGER, Kube, KubeError
from steps.rollout.slots import MODEL_URI_ANNOTATION, VERSION_ANNOTATION, image_ref
from steps.stage.errors import StageError
from steps.tracking.deployments import HELD_TAG, LIVE_SLOT_TAG


def by_kind(documents: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in documents if d["kind"] == kind}


def no_builder(uri: str, image: str) -> None:
    raise AssertionError(f"nothing should be built here ({uri} -> {image})")


def expected_roll_patch(
    cfg, name: str, version: int, image: str, resource_version: str, replicas: int = 1
) -> dict:
    annotations = {
        VERSION_ANNOTATION: str(version),
        MODEL_URI_ANNOTATION: f"models:/{name}/{version}",
    }
    return {
        "metadata": {
            "resourceVersion": resource_version,
            "labels": {"model-version": str(version)},
            "annotations": annotations,
        },
        "spec": {
            "replicas": replicas,
            "template": {
                "metadata": {"labels": {"model-version": str(version)}, "annotations": annotations},
                "spec": {
                    "containers": [
                        {
                            "name": "model",
                            "image": image,
                            "env": [{"name": "MLFLOW_MODELS_WORKERS", "value": str(cfg.workers)}],
                        }
                    ]
                },
            },
        },
    }


def switch_ops(from_slot: str, to_slot: str) -> list[dict]:
    return [
        {"op": "test", "path": "/spec/selector/slot", "value": from_slot},
        {"op": "replace", "path": "/spec/selector/slot", "value": to_slot},
    ]


def preview_ops(slot: str) -> list[dict]:
    return [{"op": "add", "path": "/spec/selector/slot", "value": slot}]


def rbac_attributes(request) -> tuple[str, str, str, str]:
    """(API group, resource[/subresource], name, verb) as the API server's authorizer sees it."""
    parts = request.path.strip("/").split("/")
    group = "" if parts[0] == "api" else parts[1]
    rest = parts[3:] if parts[0] == "api" else parts[4:]  # after namespaces/<ns>
    resource, name, *sub = rest[1:]
    subresource = f"/{sub[0]}" if sub else ""
    verb = {"GET": "get", "PATCH": "patch", "POST": "create"}[request.method]
    return group, resource + subresource, name, verb


def allowed(role: dict, attributes: tuple[str, str, str, str]) -> bool:
    group, resource, name, verb = attributes
    return any(
        group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]
        and name in rule.get("resourceNames", [name])
        for rule in role["rules"]
    )  # fmt: skip


def aliases(client: MlflowClient, name: str) -> dict[str, str]:
    model = client.get_registered_model(name)
    return {k: str(v) for k, v in model.aliases.items()}


@pytest.fixture
def ci_cfg(deploy_cfg):
    """Images are pushed by CI (build: false): nothing is built in these tests."""
    return dataclasses.replace(deploy_cfg, build=False)


def test_blue_to_green_switch_then_rollback(cluster, registry, model_servers, ci_cfg, capsys):
    client, name = registry
    v1 = seed(cluster, ci_cfg, BLUE, 1, model_servers[1])
    v2 = image_ref(ci_cfg, 2)
    cluster.images[v2] = model_servers[2]
    client.set_registered_model_alias(name, "champion", "2")
    green_rv = cluster.deployments[GREEN]["metadata"]["resourceVersion"]

    plan = deploy.reconcile(make_deployer(ci_cfg, name, builder=no_builder))

    assert plan.kind == "promote"
    assert "done: live slot green serves version 2" in capsys.readouterr().out
    deployment_patches = cluster.patches("deployments")
    assert len(deployment_patches) == 2
    patch = deployment_patches[0]
    assert patch.path == f"/apis/apps/v1/namespaces/{ci_cfg.namespace}/deployments/{GREEN}"
    assert patch.content_type == STRATEGIC
    assert patch.query["fieldManager"] == [FIELD_MANAGER]
    assert patch.body == expected_roll_patch(ci_cfg, name, 2, v2, green_rv)
    # Rolled at the preview count (its autoscaler's floor lowered first, or the HPA would lift
    # it straight back), then scaled to the live slot's count with the floor restored.
    assert deployment_patches[1].body == {"spec": {"replicas": 2}}
    assert cluster.replicas(GREEN) == cluster.replicas(BLUE) == 2
    assert [r.body for r in cluster.patches("horizontalpodautoscalers")] == [
        [{"op": "replace", "path": "/spec/minReplicas", "value": 1}],
        [{"op": "replace", "path": "/spec/minReplicas", "value": 2}],
    ]
    assert cluster.floor(GREEN) == 2
    service_patches = [
        (r.path.rsplit("/", 1)[1], r.content_type, r.body) for r in cluster.patches("services")
    ]
    assert service_patches == [
        (LIVE, JSON_PATCH, switch_ops("blue", "green")),
        (PREVIEW, JSON_PATCH, preview_ops("blue")),
    ]
    # The smoke test went through the API server's proxy, to the preview Service, before the switch.
    kinds = [(r.method, r.path.rsplit("/", 2)[-2:]) for r in cluster.requests if r.method != "GET"]
    assert kinds.index(("POST", ["proxy", "invocations"])) < kinds.index(
        ("PATCH", ["services", LIVE])
    )
    proxy = next(r for r in cluster.requests if r.path.endswith("/proxy/invocations"))
    assert (
        proxy.path
        == f"/api/v1/namespaces/{ci_cfg.namespace}/services/{PREVIEW}:http/proxy/invocations"
    )
    assert proxy.body == {
        "dataframe_split": {"columns": ["review"], "data": [[r] for r in ci_cfg.smoke_reviews]}
    }
    assert cluster.selector(LIVE)["slot"] == "green" and cluster.selector(PREVIEW)["slot"] == "blue"
    assert cluster.image(GREEN) == v2 and cluster.image(BLUE) == v1
    assert aliases(client, name) == {"champion": "2", "blue": "1", "green": "2"}
    assert client.get_registered_model(name).tags[LIVE_SLOT_TAG] == "green"

    calls = list(cluster.requests)
    cluster.requests.clear()
    plan = deploy.roll_back(make_deployer(ci_cfg, name, builder=no_builder))
    calls += cluster.requests

    assert plan.kind == "rollback"
    assert [(r.path.rsplit("/", 1)[1], r.content_type, r.body) for r in cluster.patches()] == [
        (LIVE, JSON_PATCH, switch_ops("green", "blue")),
        (PREVIEW, JSON_PATCH, preview_ops("green")),
    ]
    assert not any(
        r.path.endswith("/invocations") for r in cluster.requests
    )  # at once: no smoke test
    assert cluster.selector(LIVE)["slot"] == "blue" and cluster.image(BLUE) == v1
    tags = client.get_registered_model(name).tags
    assert tags[LIVE_SLOT_TAG] == "blue" and tags[HELD_TAG] == "2"
    assert aliases(client, name) == {"champion": "2", "blue": "1", "green": "2"}

    # The deployer's Role (k8s/deployer/rbac.yaml) allows every call made, and no more kinds.
    role = by_kind(kustomization_documents(K8S_DIR / "deployer"), "Role")["imdb-sentiment-deployer"]
    attributes = {rbac_attributes(r) for r in calls}
    assert {a for a in attributes if not allowed(role, a)} == set()
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"]
               for r in rule["resources"] for v in rule["verbs"]}  # fmt: skip
    assert granted == {(g, r, v) for g, r, _, v in attributes}

    # The champion still names version 2, but the rollback holds it: no redeploy by itself...
    cluster.requests.clear()
    assert deploy.reconcile(make_deployer(ci_cfg, name, builder=no_builder)).kind == "held"
    assert cluster.patches() == []
    # ...until forced: green already runs it, so no roll, just wait, smoke-test and switch.
    plan = deploy.reconcile(make_deployer(ci_cfg, name, builder=no_builder), force=True)
    assert plan.kind == "resume"
    assert cluster.patches("deployments") == []
    assert cluster.selector(LIVE)["slot"] == "green"
    assert HELD_TAG not in client.get_registered_model(name).tags


def test_first_deploy_on_fresh_manifests(cluster, registry, model_servers, ci_cfg):
    client, name = registry
    cluster.images[image_ref(ci_cfg, 1)] = model_servers[1]
    client.set_registered_model_alias(name, "champion", "1")

    plan = deploy.reconcile(make_deployer(ci_cfg, name, builder=no_builder))

    assert plan.kind == "first-deploy"
    assert [r.path.rsplit("/", 1)[1] for r in cluster.patches("deployments")] == [GREEN, GREEN]
    assert cluster.image(BLUE) == "localhost:5000/imdb-sentiment:unset"  # untouched
    assert cluster.selector(LIVE)["slot"] == "green"
    assert aliases(client, name) == {"champion": "1", "green": "1"}


def test_noop_when_live_slot_runs_champion(cluster, registry, ci_cfg):
    client, name = registry
    seed(cluster, ci_cfg, BLUE, 1)
    client.set_registered_model_alias(name, "champion", "1")

    plan = deploy.reconcile(make_deployer(ci_cfg, name, builder=no_builder))

    assert plan.kind == "noop"
    assert cluster.patches() == []
    assert {r.method for r in cluster.requests} == {"GET"}
    # The registry had not recorded the slots yet: the no-op records them, touching no object.
    assert aliases(client, name) == {"champion": "1", "blue": "1"}
    assert deploy.reconcile(make_deployer(ci_cfg, name, builder=no_builder)).actions == ()


def test_idle_slot_failing_readiness_leaves_live_untouched(
    cluster, registry, model_servers, ci_cfg
):
    client, name = registry
    v1 = seed(cluster, ci_cfg, BLUE, 1, model_servers[1])  # 2's image has no server: never ready
    client.set_registered_model_alias(name, "champion", "2")
    cfg = dataclasses.replace(ci_cfg, rollout_timeout=0.3)

    with pytest.raises(StageError) as failure:
        deploy.reconcile(make_deployer(cfg, name, builder=no_builder))

    message = str(failure.value)
    assert message.startswith(
        "step wait failed: imdb-sentiment-green not ready after 0.3s: 1/1 updated, 0/1 available"
    )
    assert message.endswith("live slot blue serves version 1")
    assert "\n" not in message
    assert cluster.patches("services") == []
    assert cluster.selector(LIVE)["slot"] == "blue" and cluster.image(BLUE) == v1
    assert "green" not in aliases(client, name)


def test_smoke_test_mismatch_leaves_live_untouched(cluster, registry, model_servers, ci_cfg):
    client, name = registry
    seed(cluster, ci_cfg, BLUE, 1, model_servers[1])
    # A stale image pushed under version 2's tag: its pods answer like version 1.
    cluster.images[image_ref(ci_cfg, 2)] = model_servers[1]
    client.set_registered_model_alias(name, "champion", "2")

    with pytest.raises(StageError) as failure:
        deploy.reconcile(make_deployer(ci_cfg, name, builder=no_builder))

    assert str(failure.value) == (
        "step smoke-test failed: slot green disagrees with model version 2 in-process on 1/4"
        " smoke reviews, e.g. 'One of the best movies I have seen this year.': served"
        " 'positive', expected 'negative'; live slot blue serves version 1"
    )
    assert cluster.patches("services") == []
    assert cluster.selector(LIVE)["slot"] == "blue"


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = deploy.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_build_failure_without_docker_engine(cluster, registry, deploy_cfg, monkeypatch, capsys):
    """The real build step, on a PATH with no docker: one line saying how to get an engine."""
    client, name = registry
    seed(cluster, deploy_cfg, BLUE, 1)
    client.set_registered_model_alias(name, "champion", "2")
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))  # the venv: mlflow, no docker

    code, out, err = run_cli([], capsys)

    assert code == 1
    assert err.strip().splitlines()[-1] == (
        "error: deploy: step build failed: 'docker' is not on PATH, so no Docker engine; start"
        " one: `sudo .ci/start-dockerd` (installs Debian's docker.io if missing) or `sudo"
        " systemctl start docker` (--image IMAGE skips the build); live slot blue serves version 1"
    )
    assert "1. [build] build and push localhost:5000/imdb-sentiment:2 from model version 2" in out
    assert cluster.patches() == []
    assert cluster.selector(LIVE)["slot"] == "blue"
    assert aliases(client, name) == {"champion": "2"}


def test_image_flag_skips_the_build(
    cluster, registry, model_servers, deploy_cfg, monkeypatch, capsys
):
    client, name = registry
    seed(cluster, deploy_cfg, BLUE, 1, model_servers[1])
    pinned = "registry.example.com/acme/imdb-sentiment:2-rc1"
    cluster.images[pinned] = model_servers[2]
    client.set_registered_model_alias(name, "champion", "2")
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))  # a build would fail here

    code, out, err = run_cli(
        ["--image", pinned, "--rollout_timeout", "5", "--poll_interval", "0.01",
         "--analysis.replay", "false", "--scale_down_delay", "null"], capsys,
    )  # fmt: skip

    assert code == 0, err
    assert "[build]" not in out
    assert cluster.image(GREEN) == pinned and cluster.selector(LIVE)["slot"] == "green"
    # Pinned: the live slot runs version 2 but not this image, so it is rolled again.
    code, out, _ = run_cli(
        ["--image", "registry.example.com/acme/imdb-sentiment:2-rc2", "--dry-run"], capsys
    )
    assert code == 0 and "plan: promote" in out and "roll slot blue" in out


def test_dry_run_touches_nothing(cluster, registry, capsys):
    client, name = registry
    client.set_registered_model_alias(name, "champion", "1")
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs_before = len(client.search_runs(experiments))

    for argv in (
        ["--dry-run"],
        ["--dry_run", "true"],
    ):  # the second is `mlflow run -P dry_run=true`
        code, out, err = run_cli(argv, capsys)
        assert code == 0, err
        assert out.splitlines()[0] == (
            "plan: first-deploy: champion is version 1; live slot blue runs no model"
        )
        assert "[switch] switch the live Service from slot blue to slot green" in out
    assert {r.method for r in cluster.requests} == {"GET"}
    assert aliases(client, name) == {"champion": "1"}
    experiments = [e.experiment_id for e in client.search_experiments()]
    assert len(client.search_runs(experiments)) == runs_before  # not even an MLflow run


def test_rollback_with_nothing_to_roll_back_to(cluster, registry, capsys):
    code, _, err = run_cli(["--rollback"], capsys)
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        "error: deploy: plan: nothing to roll back to: slot green has never run a model version"
    )
    assert cluster.patches() == []


def test_watch_reconciles_when_champion_moves(cluster, registry, model_servers, ci_cfg, capsys):
    client, name = registry
    seed(cluster, ci_cfg, BLUE, 1, model_servers[1])
    cluster.images[image_ref(ci_cfg, 2)] = model_servers[2]
    client.set_registered_model_alias(name, "champion", "1")
    sleeps = []

    def sleep(seconds: float) -> None:  # between polls: the user promotes version 2 once
        sleeps.append(seconds)
        if len(sleeps) == 1:
            client.set_registered_model_alias(name, "champion", "2")

    cfg = dataclasses.replace(ci_cfg, watch_interval=7.0)  # told apart from rollout polls
    deployer = make_deployer(cfg, name, builder=no_builder, sleep=sleep)

    assert deploy.watch_champion(deployer, max_iterations=4) is None

    plans = [line.split(":")[1].strip() for line in capsys.readouterr().out.splitlines()
             if line.startswith("plan: ")]  # fmt: skip
    assert plans == ["noop", "promote"]  # polls 3 and 4 see no move: no reconcile
    assert sleeps.count(7.0) == 3
    assert cluster.selector(LIVE)["slot"] == "green" and cluster.image(GREEN) == image_ref(
        ci_cfg, 2
    )


def test_watch_says_a_failed_reconcile_in_one_line_and_goes_on(
    cluster, registry, model_servers, ci_cfg, capsys
):
    client, name = registry
    seed(cluster, ci_cfg, BLUE, 1, model_servers[1])
    cluster.images[image_ref(ci_cfg, 2)] = model_servers[1]  # a stale image: smoke test fails
    client.set_registered_model_alias(name, "champion", "2")

    def sleep(seconds: float) -> None:  # between the first polls: the user moves champion back
        if seconds == 7.0:
            client.set_registered_model_alias(name, "champion", "1")

    cfg = dataclasses.replace(ci_cfg, watch_interval=7.0)
    deployer = make_deployer(cfg, name, builder=no_builder, sleep=sleep)

    assert deploy.watch_champion(deployer, max_iterations=3) is None  # its last one passed

    out, err = capsys.readouterr()
    (line,) = [line for line in err.splitlines() if line.startswith("error: ")]
    assert line.startswith("error: deploy: step smoke-test failed: slot green disagrees with")
    assert line.endswith("; live slot blue serves version 1")
    plans = [line.split(":")[1].strip() for line in out.splitlines() if line.startswith("plan: ")]
    assert plans == ["promote", "noop"]  # went on: champion 1 is what blue runs
    # A watch whose last reconcile failed fails the command, saying why.
    client.set_registered_model_alias(name, "champion", "2")
    with pytest.raises(StageError, match=r"^the last reconcile failed \(step smoke-test failed"):
        deploy.run(deployer, watch=True, max_iterations=1)
    assert cluster.selector(LIVE)["slot"] == "blue"


@pytest.mark.usefixtures("in_project_dir")  # the deployer's MlflowClient: the default store
def test_switch_is_conditional_on_the_planned_slot(cluster, ci_cfg):
    deployer = make_deployer(ci_cfg, "imdb-sentiment")
    with pytest.raises(
        KubeError, match=r"patch service .*/imdb-sentiment: HTTP 422 .*testing value"
    ):
        deployer.slots.switch_live("green", "blue")  # the live Service selects blue, not green
    assert cluster.selector(LIVE)["slot"] == "blue"


def test_stale_resource_version_is_a_conflict(cluster, ci_cfg):
    kube = Kube.connect(ci_cfg.namespace, "", 5.0)
    with pytest.raises(
        KubeError, match=r"patch deployment .*/imdb-sentiment-blue: HTTP 409 Conflict"
    ):
        kube.patch_deployment(
            BLUE, {"metadata": {"resourceVersion": "1"}, "spec": {"paused": True}}
        )
    assert "paused" not in cluster.deployments[BLUE]["spec"]


def test_api_failures_are_one_line(cluster, ci_cfg, tmp_path, monkeypatch):
    with pytest.raises(KubeError, match=r'HTTP 404 Not Found: deployments.apps "nope" not found'):
        Kube.connect(ci_cfg.namespace, "", 5.0).deployment("nope")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(kubeconfig.read_text().replace("stub-token-for-tests", "wrong"))
    with pytest.raises(KubeError) as unauthorised:
        Kube.connect(ci_cfg.namespace, "", 5.0).deployment(BLUE)
    assert str(unauthorised.value) == (
        f"read deployment {ci_cfg.namespace}/{BLUE}: HTTP 401 Unauthorized: Unauthorized"
    )
    server = Kube.connect(ci_cfg.namespace, "", 5.0).server
    cluster_url = server.replace(server.rsplit(":", 1)[1], str(free_port()))
    kubeconfig.write_text(kubeconfig.read_text().replace(server, cluster_url))
    with pytest.raises(KubeError, match=r"cannot reach the Kubernetes API at http://127.0.0.1:"):
        Kube.connect(ci_cfg.namespace, "", 2.0).service_selector(LIVE)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(KubeError, match="no usable Kubernetes configuration"):
        Kube.connect(ci_cfg.namespace)


MALFORMED_KUBECONFIGS = {
    "not YAML": "apiVersion: v1\nclusters: [\n",
    "binary": "\x00\x01\x02 not a kubeconfig",
    "a list": "- just\n- a list\n",
    "wrong shapes": "clusters: 5\ncontexts: x\ncurrent-context: a\n",
    "context not a mapping": "current-context: a\ncontexts:\n- name: a\n  context: 7\n",
}


@pytest.mark.parametrize("text", MALFORMED_KUBECONFIGS.values(), ids=MALFORMED_KUBECONFIGS)
def test_a_malformed_kubeconfig_is_one_line_naming_the_file(text, tmp_path, monkeypatch):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(text)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(KubeError) as error:
        Kube.connect("imdb-sentiment")
    message = str(error.value)
    assert f"kubeconfig {kubeconfig}" in message and message.isprintable(), message


@pytest.mark.slow
@pytest.mark.integration
def test_the_deploy_command_says_so_in_one_line(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nclusters: [\n")
    (tmp_path / "params.yaml").write_text((K8S_DIR.parent / "params.yaml").read_text())
    env = stage_env(
        KUBECONFIG=str(kubeconfig), MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}"
    )
    env.pop("KUBERNETES_SERVICE_HOST", None)
    done = subprocess.run(
        [sys.executable, "-m", "steps.deploy", "--dry-run"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: deploy: kubeconfig {kubeconfig} is not valid YAML (")
    )

"""The manifests in k8s/: valid against the Kubernetes OpenAPI schemas, complete, consistent
with params.yaml, and lined up with the image `mlflow models build-docker` makes.

There is no `kustomize` binary here: the kustomizations use only `resources` (and, for the
deployer, one `secretGenerator`), which `kustomization_documents` renders the way kustomize does
(the listed files' documents, in order); a test checks that nothing else is used.
"""

from __future__ import annotations

import inspect
import os
import re
import shlex
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import kubernetes_validate
import mlflow
import mlflow.models.container as serving_container
import pytest
import yaml
from deploy_support import K8S_DIR, PIP_REQUIREMENTS, VERSION_WORDS, kustomization_documents
from support import PICKLE_GUARD, make_dry_run, pod_env, serving_limits

from steps import deploy
from steps.entry import cli
from steps.rollout import base_image, image, slots
from steps.rollout.actions import SLOTS
from steps.stage.config import load_params
from steps.stage.paths import PROJECT_ROOT

CFG = load_params(PROJECT_ROOT / "params.yaml").deploy
DEPLOYER_DIR = K8S_DIR / "deployer"
KUSTOMIZE_FIELDS = {"apiVersion", "kind", "resources"}


def by_kind(documents: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in documents if d["kind"] == kind}


def container(deployment: dict) -> dict:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


@pytest.fixture(scope="module")
def deployer_manifests() -> list[dict]:
    return kustomization_documents(DEPLOYER_DIR)


def test_every_manifest_validates_against_the_current_kubernetes_schemas(
    manifests, deployer_manifests
):
    version = kubernetes_validate.latest_version()
    assert version >= "1.37"
    for document in manifests + deployer_manifests:
        # strict: an unknown or misspelt field is an error, not silently dropped
        kubernetes_validate.validate(document, version, strict=True)


@pytest.mark.integration
def test_kustomizations_list_every_manifest_and_use_nothing_else():
    for directory, extra in (
        (K8S_DIR, set()),
        (DEPLOYER_DIR, {"secretGenerator", "generatorOptions"}),
    ):
        kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
        assert set(kustomization) <= KUSTOMIZE_FIELDS | extra
        listed = set(kustomization["resources"])
        on_disk = {p.name for p in directory.glob("*.yaml")} - {"kustomization.yaml"}
        assert listed == on_disk, directory
    generator = yaml.safe_load((DEPLOYER_DIR / "kustomization.yaml").read_text())["secretGenerator"]
    assert generator == [
        {"name": "imdb-sentiment-tracking", "namespace": CFG.namespace, "envs": [".env"]}
    ]
    # The credentials file is git-ignored; only the example with placeholders is committed.
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", str(DEPLOYER_DIR / ".env")], cwd=PROJECT_ROOT
    )
    assert ignored.returncode == 0
    example = (DEPLOYER_DIR / ".env.example").read_text()
    assert {"MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"} <= set(
        re.findall(r"^([A-Z_]+)=", example, re.M)
    )
    assert re.search(r"^MLFLOW_TRACKING_PASSWORD=<token>$", example, re.M)


def test_the_serving_set_is_complete(manifests):
    kinds = sorted(d["kind"] for d in manifests)
    assert kinds == sorted(
        ["Namespace", "Deployment", "Deployment", "Service", "Service", "HorizontalPodAutoscaler",
         "HorizontalPodAutoscaler", "PodDisruptionBudget", "PodDisruptionBudget", "NetworkPolicy"]
    )  # fmt: skip
    assert "Secret" not in kinds  # nothing secret in the serving set at all
    for document in manifests:
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == CFG.namespace


def test_slots_and_services_match_params_and_each_other(manifests):
    deployments = by_kind(manifests, "Deployment")
    assert set(deployments) == {slots.deployment_name(CFG, s) for s in SLOTS}
    for slot in SLOTS:
        d = deployments[slots.deployment_name(CFG, slot)]
        assert d["spec"]["selector"]["matchLabels"] == {"app": CFG.app, slots.SLOT_LABEL: slot}
        assert (
            d["spec"]["selector"]["matchLabels"].items()
            <= d["spec"]["template"]["metadata"]["labels"].items()
        )
        assert "replicas" not in d["spec"]  # the HPA owns it
        assert d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        c = container(d)
        assert c["name"] == CFG.container
        assert c["image"].rsplit(":", 1)[0] == slots.image_ref(CFG, 1).rsplit(":", 1)[0]
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env[slots.WORKERS_ENV] == str(CFG.workers)
    # Apart from their slot, the two Deployments are the same object.
    blue, green = (yaml.safe_dump(deployments[slots.deployment_name(CFG, s)]) for s in SLOTS)
    assert blue.replace("blue", "green") == green

    services = by_kind(manifests, "Service")
    live, preview = services[CFG.app], services[slots.preview_service(CFG)]
    assert live["spec"]["selector"] == {"app": CFG.app, "slot": "blue"}
    assert preview["spec"]["selector"] == {"app": CFG.app, "slot": "green"}
    for service in (live, preview):
        (port,) = service["spec"]["ports"]
        assert port["name"] == CFG.port_name and port["targetPort"] == "http"


def test_port_and_probes_line_up_with_the_mlflow_image(manifests):
    nginx = (Path(serving_container.__file__).parent / "scoring_server" / "nginx.conf").read_text()
    (listen,) = re.findall(r"listen (\d+)", nginx)
    routes = re.search(r"location ~ \^/\(([a-z|]+)\)", nginx).group(1).split("|")
    assert int(listen) == serving_container.DEFAULT_NGINX_SERVER_PORT
    assert "ping" in routes and "invocations" in routes
    # The entrypoint reads the worker count from this variable, else one per CPU.
    assert f'"{slots.WORKERS_ENV}", cpu_count' in inspect.getsource(serving_container._serve_pyfunc)
    for d in by_kind(manifests, "Deployment").values():
        c = container(d)
        port = c["ports"][0]  # then the model's metrics port (tests/k8s/test_monitoring.py)
        assert port == {"name": "http", "containerPort": int(listen), "protocol": "TCP"}
        assert int(listen) not in [p["containerPort"] for p in c["ports"][1:]]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["httpGet"] == {"path": "/ping", "port": "http"}, probe


def test_the_serving_images_nginx_conf_is_mlflows_but_for_the_marked_changes():
    """k8s/serving-image/nginx.conf replaces MLflow's in the image: only its marked lines differ
    (an MLflow upgrade that changes its own file fails here, not in a pod)."""
    ours = (K8S_DIR / "serving-image" / "nginx.conf").read_text().splitlines()
    mlflow_conf = Path(serving_container.__file__).parent / "scoring_server" / "nginx.conf"
    unmarked = []
    for line in ours:
        code, _, note = line.partition("# imdb-sentiment:")
        if not note:
            unmarked.append(line)
        elif code.strip().startswith("client_max_body_size"):  # MLflow's value, replaced
            unmarked.append(code.rstrip().replace("@MAX_BODY@", "100m"))
    header = next(i for i, line in enumerate(unmarked) if not line.startswith("#"))
    assert unmarked[header:] == mlflow_conf.read_text().splitlines()
    assert sum("# imdb-sentiment:" in line for line in ours) == 12


@pytest.mark.integration
def test_both_slots_and_make_serve_give_the_model_the_same_request_limits():
    from pyfunc.contract import SERVING_LIMITS_ENV
    from pyfunc.model import RequestLimits

    limits = {slot: serving_limits(slot) for slot in SLOTS}
    assert set(limits["blue"]) == set(SERVING_LIMITS_ENV)
    assert all(found == limits["blue"] for found in limits.values())
    parsed = RequestLimits.from_environment(limits["blue"])
    assert parsed.max_review_chars < parsed.max_call_chars
    assert parsed.max_call_reviews is not None
    serve = make_dry_run("serve")
    for name, value in limits["blue"].items():
        assert f"{name}={value} " in serve  # set for the `mlflow models serve` make starts


@pytest.mark.integration
def test_both_slots_the_serving_image_and_make_serve_refuse_pickles():
    """The model is code and data: where it is served, MLflow unpickles nothing."""
    assert all(pod_env(slot)[PICKLE_GUARD] == "false" for slot in SLOTS)
    dockerfile = (K8S_DIR / "serving-image" / "Dockerfile").read_text()
    assert re.search(rf"^ENV .*\b{PICKLE_GUARD}=false\b", dockerfile, re.M)
    serve = make_dry_run("serve").splitlines()  # after the venv's recipe when it is stale
    check = next(line for line in serve if "steps.models --servable" in line)
    assert f"{PICKLE_GUARD}=false " in check
    started = next(i for i, line in enumerate(serve) if "mlflow models serve" in line)
    assert any(f"{PICKLE_GUARD}=false " in line for line in serve[: started + 1])


def test_pods_are_non_root_and_restricted(manifests, deployer_manifests):
    namespace = by_kind(manifests, "Namespace")[CFG.namespace]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for d in by_kind(manifests + deployer_manifests, "Deployment").values():
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] > 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        c = container(d)
        assert c["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }
        assert {"requests", "limits"} <= set(c["resources"])
        # A read-only root needs every path the process writes to be a volume.
        volumes = {v["name"] for v in pod["volumes"]}
        assert {m["name"] for m in c["volumeMounts"]} <= volumes
        assert "/tmp" in {m["mountPath"] for m in c["volumeMounts"]}


def test_autoscaling_disruption_and_network_policy_cover_both_slots(manifests):
    deployments = by_kind(manifests, "Deployment")
    hpas = by_kind(manifests, "HorizontalPodAutoscaler")
    pdbs = by_kind(manifests, "PodDisruptionBudget")
    for name, d in deployments.items():
        target = hpas[name]["spec"]["scaleTargetRef"]
        assert target == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert hpas[name]["spec"]["minReplicas"] >= 2  # the idle slot stays a live rollback
        assert pdbs[name]["spec"]["selector"]["matchLabels"] == d["spec"]["selector"]["matchLabels"]
    (policy,) = by_kind(manifests, "NetworkPolicy").values()
    selected = policy["spec"]["podSelector"]["matchLabels"].items()
    assert all(
        selected <= d["spec"]["template"]["metadata"]["labels"].items()
        for d in deployments.values()
    )
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["egress"] == []
    # Serving from anywhere; the metrics port only from Prometheus (tests/k8s/test_monitoring.py).
    assert policy["spec"]["ingress"][0] == {"ports": [{"port": "http", "protocol": "TCP"}]}


def test_credentials_only_come_from_the_secret(manifests, deployer_manifests):
    assert not by_kind(manifests + deployer_manifests, "Secret")  # only the generator makes one
    for d in by_kind(manifests + deployer_manifests, "Deployment").values():
        for env in container(d).get("env", []):
            if re.search(r"(?i)password|token|secret|key|credential|tracking", env["name"]):
                assert "value" not in env, f"{env['name']} is inline in {d['metadata']['name']}"
    (watcher,) = by_kind(deployer_manifests, "Deployment").values()
    c = container(watcher)
    assert c["envFrom"] == [{"secretRef": {"name": "imdb-sentiment-tracking"}}]
    assert all("MLFLOW" not in e["name"] for e in c["env"])


def test_deployer_image_and_arguments():
    dockerfile = (DEPLOYER_DIR / "Dockerfile").read_text()
    sources = image.copied_sources(DEPLOYER_DIR / "Dockerfile")
    assert image.CONSTRAINTS in sources  # written by the build: this environment's versions
    for source in set(sources) - {image.CONSTRAINTS}:
        assert (PROJECT_ROOT / source).exists(), source
    entrypoint = yaml.safe_load(re.search(r"^ENTRYPOINT (.+)$", dockerfile, re.M).group(1))
    assert entrypoint == ["python", "-m", "steps.deploy"]
    (watcher,) = by_kind(kustomization_documents(DEPLOYER_DIR), "Deployment").values()
    args = container(watcher)["args"]
    cmd = yaml.safe_load(re.search(r"^CMD (.+)$", dockerfile, re.M).group(1))
    assert args == [*cmd, "--heartbeat", "/tmp/heartbeat"]  # the image's CMD, for the probes
    _, cfg, parsed = cli.parse("deploy", args, deploy.add_arguments)
    assert parsed.watch is True and cfg.build is False


@pytest.mark.slow  # runs the real `mlflow models generate-dockerfile` (about 10 s)
def test_build_command_and_generated_dockerfile_match_the_manifests(
    tmp_path, model_code, manifests
):
    """`mlflow models generate-dockerfile` (what build-docker builds) on a tiny real model."""
    model = tmp_path / "model"
    mlflow.pyfunc.save_model(
        model, python_model=str(model_code), model_config={"positive_words": VERSION_WORDS[1]},
        pip_requirements=PIP_REQUIREMENTS,
    )  # fmt: skip
    command = image.build_command(str(model), "unused:1")
    assert command[1:6] == ["-m", "mlflow", "models", "build-docker", "-m"]
    assert command[-2:] == ["--env-manager", "local"]
    out = tmp_path / "context"
    generate = [sys.executable, "-m", "mlflow", "models", "generate-dockerfile", "-m", str(model),
                "-d", str(out), *command[command.index("--env-manager"):]]  # fmt: skip
    subprocess.run(generate, check=True, capture_output=True, timeout=300)

    dockerfile = (out / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11[.\d]*-slim$", dockerfile, re.M)
    # the base the image build makes sure of first is the one this Dockerfile starts FROM
    assert f"FROM {base_image.model_base_image(model)}\n" in dockerfile
    assert base_image.model_base_image(model) == base_image.python_slim()
    assert f"RUN pip install mlflow=={mlflow.__version__}" in dockerfile  # same nginx.conf as ours
    assert "COPY model_dir/model /opt/ml/model" in dockerfile
    assert "ENV MLFLOW_DISABLE_ENV_CREATION=True" in dockerfile
    (entrypoint,) = re.findall(r"^ENTRYPOINT (.+)$", dockerfile, re.M)
    assert (
        shlex.split(entrypoint)[-1].endswith("C._serve('local')\"]")
        or "C._serve('local')" in entrypoint
    )
    exposed = {int(p) for p in re.findall(r"^EXPOSE (\d+)", dockerfile, re.M)}
    ports = {
        container(d)["ports"][0]["containerPort"] for d in by_kind(manifests, "Deployment").values()
    }
    assert ports == {serving_container.DEFAULT_NGINX_SERVER_PORT}
    assert exposed <= ports  # mlflow's Dockerfile exposes nothing today; if it does, it must agree
    # The model is baked in: the pods need no tracking server and no credentials.
    assert (out / "model_dir" / "model" / "MLmodel").is_file()


def test_deployer_image_is_pinned_to_the_release(deployer_manifests):
    """Not `:latest`: the tag is the project version a release builds (or a digest)."""
    version = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["version"]
    (watcher,) = by_kind(deployer_manifests, "Deployment").values()
    image = container(watcher)["image"]
    assert "@sha256:" in image or image.rsplit(":", 1)[1] == version, image
    assert not image.endswith(":latest")
    assert container(watcher).get("imagePullPolicy", "IfNotPresent") == "IfNotPresent"
    assert load_params().image.deployer_tag == image  # what make deployer-image builds


def _probe_command(probe: dict, heartbeat: Path) -> list[str]:
    return [sys.executable if c == "python" else c.replace("/tmp/heartbeat", str(heartbeat))
            for c in probe["exec"]["command"]]  # fmt: skip


@pytest.mark.integration
def test_deployer_probes_read_the_heartbeat_the_watcher_writes(deployer_manifests, tmp_path):
    (watcher,) = by_kind(deployer_manifests, "Deployment").values()
    c = container(watcher)
    args = c["args"]
    heartbeat = Path(args[args.index("--heartbeat") + 1])
    assert heartbeat.parent.as_posix() in {m["mountPath"] for m in c["volumeMounts"]}
    assert "readinessProbe" not in c  # it serves nothing
    # The liveness threshold outlasts the longest wait between beats.
    liveness = c["livenessProbe"]
    (threshold,) = map(int, re.findall(r"> (\d+)\)", liveness["exec"]["command"][-1]))
    assert threshold > max(CFG.watch_interval, CFG.poll_interval, CFG.request_timeout) * 10

    # The probes' commands, run for real against a heartbeat file.
    local = tmp_path / "heartbeat"
    startup, alive = _probe_command(c["startupProbe"], local), _probe_command(liveness, local)
    assert subprocess.run(startup, capture_output=True).returncode != 0  # no beat yet
    beats: list[float] = []
    sleep = deploy.heartbeat(local, sleep=beats.append)  # what `--heartbeat` wires in
    assert subprocess.run(startup, capture_output=True).returncode == 0
    assert subprocess.run(alive, capture_output=True).returncode == 0
    stale = time.time() - threshold - 60
    os.utime(local, (stale, stale))
    assert subprocess.run(alive, capture_output=True).returncode == 1  # a stuck loop
    sleep(30.0)  # the watcher's next wait beats again
    assert beats == [30.0] and subprocess.run(alive, capture_output=True).returncode == 0


def test_deployer_network_policy_allows_dns_the_api_server_tracking_and_prometheus_only(
    deployer_manifests,
):
    (policy,) = by_kind(deployer_manifests, "NetworkPolicy").values()
    (watcher,) = by_kind(deployer_manifests, "Deployment").values()
    selected = policy["spec"]["podSelector"]["matchLabels"].items()
    assert selected <= watcher["spec"]["template"]["metadata"]["labels"].items()
    assert policy["metadata"]["namespace"] == CFG.namespace
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["ingress"] == []
    dns, api_server, tracking, prometheus = policy["spec"]["egress"]
    (resolver,) = dns["to"]
    assert resolver["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
    assert resolver["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "kube-system"
    }
    assert sorted((p["port"], p["protocol"]) for p in dns["ports"]) == [(53, "TCP"), (53, "UDP")]
    for rule, ports in ((api_server, {443, 6443}), (tracking, {443}), (prometheus, {9090})):
        (peer,) = rule["to"]
        assert set(peer) == {"ipBlock"} and peer["ipBlock"]["cidr"].endswith("/32")  # one host
        assert {p["port"] for p in rule["ports"]} == ports
        assert {p["protocol"] for p in rule["ports"]} == {"TCP"}
    example = (DEPLOYER_DIR / ".env.example").read_text()
    uri = re.search(r"^MLFLOW_TRACKING_URI=(\S+)$", example, re.M).group(1)
    assert uri.startswith("https://")  # port 443, as the tracking rule allows
    prometheus_url = re.search(r"^IMDB_PROMETHEUS_URL=(\S+)$", example, re.M).group(1)
    assert prometheus_url.endswith(":9090")  # as the Prometheus rule allows

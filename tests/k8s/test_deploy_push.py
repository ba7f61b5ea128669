"""`make deploy`'s build-and-push step for real: the champion's image is built on a Docker
engine, pushed to Debian's docker-registry on 127.0.0.1, and the idle slot is rolled to the
digest the registry gave the pushed tag (repository:tag@sha256:...), not to the tag alone, which
anyone could push over. The slot's "pods" are that image pulled by digest and run as the
Deployment's pod, so the smoke test through the API stub's service proxy reaches the real
container."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from deploy_support import BLUE, GREEN, K8S_DIR, LIVE, STRATEGIC, make_deployer
from docker_pod import docker, run_args, start, startup_budget

from steps import deploy
from steps.rollout import image
from steps.stage.config import load_params
from steps.stage.paths import PROJECT_ROOT

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_the_slot_is_rolled_to_the_digest_of_the_pushed_tag(
    cluster, registry, deploy_cfg, docker_registry, rootfs_cache, tmp_path, capsys
):
    client, name = registry
    client.set_registered_model_alias(name, "champion", "1")
    cfg = dataclasses.replace(deploy_cfg, image_registry=docker_registry.host, build=True,
                              rollout_timeout=60.0)  # fmt: skip
    image_cfg = load_params(PROJECT_ROOT / "params.yaml").image
    manifest = yaml.safe_load((K8S_DIR / "deployment-green.yaml").read_text())
    pushed, containers = [], []

    def build_push_and_run(uri: str, tag: str) -> str:
        """The deployer's builder; then the pushed image, pulled by digest, runs as the pod."""
        ref = image.build_and_push(uri, tag, image_cfg, rootfs_cache=rootfs_cache)
        pushed.append((tag, ref))
        docker("pull", ref)
        container = start(run_args(manifest, ref, tmp_path / f"pod{len(containers)}"))
        containers.append(container)
        container.wait_ready(startup_budget(manifest["spec"]["template"]["spec"]["containers"][0]))
        cluster.images[ref] = container.url()
        return ref

    try:
        plan = deploy.reconcile(make_deployer(cfg, name, builder=build_push_and_run))

        ((tag, ref),) = pushed
        assert tag == f"{docker_registry.host}/{cfg.image_repository}:1"
        digest = docker_registry.manifest_digest(cfg.image_repository, "1")
        assert ref == f"{tag}@{digest}"
        out = capsys.readouterr().out
        assert f"[build] build and push {tag} from model version 1" in out
        assert f"[roll] roll slot green to {tag}@<digest of the push> (model version 1)" in out
        assert "done: live slot green serves version 1" in out
        assert plan.kind == "first-deploy"
        patch, scale = cluster.patches("deployments")  # rolled at the preview count, then up
        assert scale.body == {"spec": {"replicas": cluster.replicas(BLUE)}}
        assert patch.content_type == STRATEGIC and patch.path.endswith(f"/deployments/{GREEN}")
        (container_patch,) = patch.body["spec"]["template"]["spec"]["containers"]
        assert container_patch["image"] == ref  # pinned by digest
        assert cluster.image(GREEN) == ref and cluster.selector(LIVE)["slot"] == "green"
        # the smoke test went through the stub's proxy to the container pulled by digest
        assert "POST /invocations" in containers[0].logs(tail=200)
    finally:
        for container in containers:
            container.remove()
        for tag, _ in pushed:
            docker("image", "rm", tag, check=False)

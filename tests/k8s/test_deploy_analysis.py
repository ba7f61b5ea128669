"""Pre-promotion analysis, scale-down and the fail-safe side of post-promotion analysis, through
the real `kubernetes` client against the stub API server, with real `mlflow models serve`
processes behind the service proxy and a real SQLite registry.

The post-promotion analysis against a real Prometheus is in test_deploy_prometheus.py.
"""

from __future__ import annotations

import dataclasses
import json
import logging

import deploy_support
import pytest
from deploy_support import BLUE, GREEN, LIVE, log_sample, seed
from support import free_port

from steps import deploy
from steps.rollout import analysis
from steps.rollout.deployer import Deployer
from steps.rollout.kube import Kube
from steps.rollout.slots import image_ref
from steps.stage.config import load_params
from steps.stage.errors import StageError
from steps.tracking.deployments import HELD_TAG, LIVE_SLOT_TAG

from test_deploy_cluster import aliases, no_builder  # isort: skip

PROXY_INVOCATIONS = "/proxy/invocations"


def make_deployer(cfg, name: str) -> Deployer:
    """A deployer on the stub that must build nothing (CI pushed the images)."""
    return deploy_support.make_deployer(cfg, name, builder=no_builder)


@pytest.fixture
def replay_cfg(deploy_cfg):
    """Images pushed by CI, the labelled sample replayed before the switch."""
    bounds = dataclasses.replace(deploy_cfg.analysis, replay=True, replay_p99_seconds=30.0)
    return dataclasses.replace(deploy_cfg, build=False, analysis=bounds)


def promote_two(cluster, registry, model_servers, cfg, served_by: int = 2) -> tuple:
    """Blue runs version 1; champion is 2, whose image is answered by `served_by`'s server."""
    client, name = registry
    seed(cluster, cfg, BLUE, 1, model_servers[1])
    cluster.images[image_ref(cfg, 2)] = model_servers[served_by]
    client.set_registered_model_alias(name, "champion", "2")
    return client, name


def version_tags(client, name: str, version: int) -> dict[str, str]:
    tags = client.get_model_version(name, str(version)).tags
    return {k: v for k, v in tags.items() if k.startswith("analysis.")}


def assert_not_switched(cluster, client, name: str) -> None:
    """No switch: the live Service untouched, green back at the count it was found at."""
    assert cluster.patches("services") == []
    assert cluster.selector(LIVE)["slot"] == "blue"
    assert cluster.replicas(GREEN) == 2 and cluster.floor(GREEN) == 2
    assert "green" not in aliases(client, name)


def assert_switched_back(cluster, client, name: str, version: int, check: str) -> dict:
    """After a failed post-promotion analysis of `version`: blue is live again, champion is 1
    again (no `previous`), `version` is held and its tags name the failed check; its tags."""
    assert cluster.selector(LIVE)["slot"] == "blue"
    assert cluster.replicas(BLUE) == 2  # never scaled down: the analysis did not pass
    model = client.get_registered_model(name)
    assert model.aliases["champion"] == 1 and "previous" not in model.aliases
    assert model.tags[HELD_TAG] == str(version)
    tags = version_tags(client, name, version)
    assert tags["analysis.post"] == "failed"
    assert tags["analysis.post.failed_check"] == check
    return tags


def test_a_good_version_passes_the_replay_and_is_switched(
    cluster, registry, model_servers, replay_cfg, tmp_path
):
    client, name = promote_two(cluster, registry, model_servers, replay_cfg)
    sample = log_sample(client, name, 2, tmp_path)

    deploy.reconcile(make_deployer(replay_cfg, name))

    assert cluster.selector(LIVE)["slot"] == "green"
    proxied = [r for r in cluster.requests if r.path.endswith(PROXY_INVOCATIONS)]
    # One smoke request, then the sample one review per request, all before the switch.
    assert [r.body["dataframe_split"]["data"] for r in proxied[1:]] == [
        [[review]] for review in sample.reviews
    ]
    tags = version_tags(client, name, 2)
    assert tags["analysis.pre"] == "passed"
    assert float(tags["analysis.pre.accuracy"]) == pytest.approx(4 / 6)
    assert float(tags["analysis.pre.reviews"]) == 6
    # an uncalibrated version (these keyword models): no label-free estimate is reported
    assert "analysis.pre.estimated_accuracy" not in tags


@pytest.mark.parametrize(
    ("served_by", "figures", "bounds", "check", "message"),
    [
        # A stale image under version 2's tag (version 3's pods): it passes the smoke test,
        # but not the sample.
        (3, {}, {}, "labels",
         "served labels differ from version 2 in-process on 1/6 sample reviews, e.g."
         " 'A superb film.': served 'positive', expected 'negative'"),
        # Evaluation measured more than the sample gets now.
        (2, {"accuracy": 0.9}, {}, "accuracy",
         "accuracy 0.6667 on 6 sample reviews is below 0.8800 (evaluated 0.9000 -"
         " max_accuracy_drop 0.02)"),
        (2, {}, {"replay_p99_seconds": 1e-6}, "latency", "p99 round trip "),
    ],
    ids=["labels", "accuracy", "latency"],
)  # fmt: skip
def test_a_failed_replay_means_no_switch_the_slot_scaled_back_and_a_tag(
    cluster, registry, model_servers, replay_cfg, tmp_path, served_by, figures, bounds, check,
    message,
):  # fmt: skip
    client, name = promote_two(cluster, registry, model_servers, replay_cfg, served_by)
    log_sample(client, name, 2, tmp_path, **figures)
    cfg = dataclasses.replace(
        replay_cfg, analysis=dataclasses.replace(replay_cfg.analysis, **bounds)
    )

    with pytest.raises(StageError) as failure:
        deploy.reconcile(make_deployer(cfg, name))

    text = str(failure.value)
    assert text.startswith(f"step analysis failed: {message}"), text
    assert text.endswith("; live slot blue serves version 1") and "\n" not in text
    assert_not_switched(cluster, client, name)
    tags = version_tags(client, name, 2)
    assert tags["analysis.pre"] == "failed"
    assert tags["analysis.pre.failed_check"] == check
    assert tags["analysis.pre.reason"].startswith(message)
    card = client.get_model_version(name, "2").description
    assert "deploy: pre-promotion analysis failed (" in card and message in card


def test_a_version_without_a_sample_is_not_switched(cluster, registry, model_servers, replay_cfg):
    client, name = promote_two(cluster, registry, model_servers, replay_cfg)

    with pytest.raises(StageError, match=r"^step analysis failed: imdb-sentiment version 2 has no"):
        deploy.reconcile(make_deployer(replay_cfg, name))

    assert_not_switched(cluster, client, name)
    assert version_tags(client, name, 2)["analysis.pre.failed_check"] == "sample"


def test_old_slot_scaled_to_zero_after_the_delay_then_rollback_scales_it_up_first(
    cluster, registry, model_servers, deploy_cfg, capsys
):
    cfg = dataclasses.replace(deploy_cfg, build=False, scale_down_delay=0.05)
    client, name = promote_two(cluster, registry, model_servers, cfg)

    deploy.reconcile(make_deployer(cfg, name))

    assert cluster.selector(LIVE)["slot"] == "green"
    assert cluster.replicas(BLUE) == 0 and cluster.replicas(GREEN) == 2
    # The HPA is left alone: at zero replicas it does not scale its target.
    assert cluster.floor(BLUE) == 2
    assert cluster.patches("deployments")[-1].body == {"spec": {"replicas": 0}}
    capsys.readouterr()

    plan = deploy.roll_back(make_deployer(cfg, name))

    out = capsys.readouterr().out
    assert "slot blue was scaled to zero after the last deploy, so it is scaled up to 2 pods" in out
    assert "not instant" in out
    assert cluster.replicas(BLUE) == 2 and cluster.selector(LIVE)["slot"] == "blue"
    assert [a.step for a in plan.actions][:3] == ["scale", "wait", "switch"]
    assert client.get_registered_model(name).tags[HELD_TAG] == "2"
    # Version 1 answers through the live Service again ("best" is one of its words only).
    kube = Kube.connect(cfg.namespace, cfg.context, cfg.request_timeout)
    payload = {"dataframe_split": {"columns": [cfg.text_column], "data": [["The best film."]]}}
    status, body = kube.proxy_post(LIVE, cfg.port_name, "invocations", payload)
    assert status == 200 and json.loads(body)["predictions"][0]["label"] == "positive"


def test_next_rollout_into_a_scaled_down_slot_restores_its_floor_first(
    cluster, registry, model_servers, deploy_cfg
):
    cfg = dataclasses.replace(deploy_cfg, build=False, scale_down_delay=0.0)
    client, name = promote_two(cluster, registry, model_servers, cfg)
    deploy.reconcile(make_deployer(cfg, name))
    assert cluster.replicas(BLUE) == 0
    cluster.images[image_ref(cfg, 3)] = model_servers[3]
    client.set_registered_model_alias(name, "champion", "3")
    cluster.requests.clear()

    deploy.reconcile(make_deployer(cfg, name))

    assert cluster.selector(LIVE)["slot"] == "blue"
    assert cluster.replicas(BLUE) == 2 and cluster.floor(BLUE) == 2
    assert cluster.replicas(GREEN) == 0
    hpa = [
        (r.path.rsplit("/", 1)[1], r.body[0]["value"])
        for r in cluster.patches("horizontalpodautoscalers")
    ]
    assert hpa == [(BLUE, 1), (BLUE, 2)]


def test_no_prometheus_is_said_once_and_only_the_checks_before_run(
    cluster, registry, model_servers, deploy_cfg, caplog
):
    cfg = dataclasses.replace(
        deploy_cfg, build=False, analysis=dataclasses.replace(deploy_cfg.analysis, duration=5.0)
    )
    _, name = promote_two(cluster, registry, model_servers, cfg)
    deployer = make_deployer(cfg, name)

    with caplog.at_level(logging.WARNING):
        first = deploy.reconcile(deployer)
        deploy.reconcile(deployer)

    assert "post-analysis" not in [a.step for a in first.actions]
    said = [r for r in caplog.records if "no Prometheus configured" in r.getMessage()]
    assert len(said) == 1
    assert cluster.selector(LIVE)["slot"] == "green"


def test_an_unreachable_prometheus_fails_safe_and_rolls_back(
    cluster, registry, model_servers, deploy_cfg, tmp_path, capsys
):
    """Fail safe: no answer from Prometheus is a failed analysis, not a pass."""
    bounds = dataclasses.replace(
        deploy_cfg.analysis, duration=0.2, interval=0.1,
        prometheus_url=f"http://127.0.0.1:{free_port()}",  # nothing listens there
    )  # fmt: skip
    cfg = dataclasses.replace(deploy_cfg, build=False, scale_down_delay=0.0, analysis=bounds)
    client, name = promote_two(cluster, registry, model_servers, cfg)
    client.set_registered_model_alias(name, "previous", "1")  # as promote leaves it
    log_sample(client, name, 2, tmp_path)

    with pytest.raises(StageError) as failure:
        deploy.reconcile(make_deployer(cfg, name))

    text = str(failure.value)
    assert text.startswith("step post-analysis failed: Prometheus at http://127.0.0.1:")
    assert text.endswith("; live slot blue serves version 1")
    assert "switching the live Service back to slot blue" in capsys.readouterr().out
    assert_switched_back(cluster, client, name, 2, "prometheus")
    assert client.get_registered_model(name).tags[LIVE_SLOT_TAG] == "blue"
    # The cards say it too: the demoted version why, the restored one that it serves again.
    card = client.get_model_version(name, "2").description
    assert "deploy: post-promotion analysis failed: Prometheus at http://127.0.0.1:" in card
    assert "rolled back to version 1" in card
    assert "champion again by deploy (was 2)" in client.get_model_version(name, "1").description


def test_prometheus_url_from_the_environment_and_credentials_never_shown(monkeypatch):
    bounds = dataclasses.replace(load_params().deploy.analysis, prometheus_url="")
    monkeypatch.setenv(analysis.PROMETHEUS_URL_ENV, "https://bob:s3cret@prom.example:9090/")
    url = analysis.prometheus_url(bounds)
    assert url == "https://bob:s3cret@prom.example:9090"
    assert analysis.shown_url(url) == "https://***@prom.example:9090"
    given = dataclasses.replace(bounds, prometheus_url="http://127.0.0.1:9090")
    assert analysis.prometheus_url(given) == "http://127.0.0.1:9090"


def test_plan_without_a_cluster_comes_from_the_manifests_and_says_what_it_assumed(
    registry, deploy_cfg, tmp_path, monkeypatch, capsys
):
    client, name = registry
    client.set_registered_model_alias(name, "champion", "2")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)

    code = deploy.main(["--dry-run"])
    out, err = capsys.readouterr()

    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "plan: first-deploy: champion is version 2; live slot blue runs no model"
    assert (
        "  2. [roll] roll slot green to localhost:5000/imdb-sentiment:2@<digest of the push>"
        " (model version 2) at 1 pod" in lines
    )
    assumed = [line for line in lines if line.startswith("assumed: ")]
    assert assumed[0].startswith("assumed: no cluster (no usable Kubernetes configuration")
    assert "assumed: each slot runs its autoscaler's minReplicas (2), settled and ready" in assumed
    assert "assumed: no model version deployed yet (a first rollout)" in assumed
    # Anything but a plan still needs a cluster.
    assert deploy.main([]) == 1
    assert "no usable Kubernetes configuration" in capsys.readouterr().err


def test_scale_down_leaves_a_slot_that_is_live_again_running(
    cluster, registry, model_servers, deploy_cfg, caplog
):
    cfg = dataclasses.replace(deploy_cfg, build=False)
    _, name = promote_two(cluster, registry, model_servers, cfg)
    deployer = make_deployer(cfg, name)
    deploy.reconcile(deployer)  # green live, blue still running (no scale-down configured)
    deploy.roll_back(deployer)  # blue live again, as a person would during the delay
    cluster.requests.clear()

    with caplog.at_level(logging.WARNING):
        deployer.scale_down("blue", 0.0)

    assert cluster.patches() == [] and cluster.replicas(BLUE) == 2
    assert "slot blue is live again (a rollback?): left running" in caplog.text

"""Post-promotion analysis against a real Prometheus (Debian's package, on 127.0.0.1) scraping
two real `mlflow models serve` processes that stand in for the blue and green slots.

Each server runs a tiny keyword pyfunc that records itself with the project's own telemetry
(pyfunc/telemetry.py, shipped with the model via code_paths), so its series carry the slot the
server is told it is (IMDB_SLOT, as the pods set it). The cluster side is the stub API server:
its live Service routes the test's steady traffic to whichever slot it selects, so after the
switch the new slot is what Prometheus sees taking calls. A good new version passes and the old
slot goes to zero after the delay; a slow one is switched back, `champion` moves back to
`previous`, the version is tagged with the failed check and the command exits non-zero.

Time bounds are seconds: a 1 s scrape interval, a 4 s rate window, rounds every second.
"""

from __future__ import annotations

import dataclasses
import os
import textwrap
import threading
import time
from pathlib import Path

import mlflow
import model_server
import prometheus_server
import pytest
from deploy_support import BLUE, GREEN, LIVE, PIP_REQUIREMENTS, log_sample, seed
from mlflow import MlflowClient
from support import free_port

from pyfunc import contract
from steps import deploy
from steps.rollout import analysis
from steps.rollout.kube import Kube
from steps.rollout.slots import image_ref
from steps.stage.config import load_params
from steps.stage.errors import StageError
from steps.stage.paths import PROJECT_ROOT
from steps.tracking.deployments import HELD_TAG

from test_deploy_analysis import assert_switched_back, make_deployer, version_tags  # isort: skip

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]

READY_TIMEOUT = 180.0
WORDS = ["wonderful", "best", "loved"]
SLOW_SECONDS = 0.4  # inside the bad version, per call: over the bound below
MAX_P99 = 0.2
# Version -> (slot its server claims, seconds it sleeps per call). 1 runs in blue; 2 (good) and
# 3 (slow) are candidates for green, each with its own server.
VERSIONS = {1: ("blue", 0.0), 2: ("green", 0.0), 3: ("green", SLOW_SECONDS), 4: ("green", 0.0)}
# Version 4 is calibrated and unsure: each answer right with probability 0.6 by its own account,
# so its label-free estimate (0.6) is far below the accuracy evaluation measured.
UNSURE = 4
TRAFFIC = [["A wonderful film."], ["A dull film."]]  # half positive, as evaluation measured

WATCHED_MODEL = textwrap.dedent("""
    import time

    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow.pyfunc import PythonModel


    class WatchedKeywordModel(PythonModel):
        def load_context(self, context):
            from pyfunc.telemetry import from_environment

            self.words = tuple(context.model_config["positive_words"])
            self.delay = float(context.model_config["delay"])
            self.sure = float(context.model_config["sure"])
            self.telemetry = from_environment(None, calibrated=self.sure < 0.9)

        def predict(self, context, model_input, params=None):
            from pyfunc.telemetry import watch

            with watch(self.telemetry) as call:
                texts = model_input["review"].astype(str).tolist()
                time.sleep(self.delay)
                hits = np.array([any(w in t.lower() for w in self.words) for t in texts])
                labels = np.where(hits, "positive", "negative")
                scores = np.where(hits, self.sure, 1 - self.sure)
                call.scored(texts, labels, scores)
            return pd.DataFrame({"label": labels, "probability": scores})


    mlflow.models.set_model(WatchedKeywordModel())
""")


def model_args(code: Path, version: int) -> dict:
    return {
        "python_model": str(code),
        "model_config": {
            "positive_words": WORDS,
            "delay": VERSIONS[version][1],
            "sure": 0.6 if version == UNSURE else 0.9,
        },
        "code_paths": [str(PROJECT_ROOT / "pyfunc")],
        "pip_requirements": PIP_REQUIREMENTS,
    }


@pytest.fixture(scope="module")
def watched(tmp_path_factory, prometheus_tools):
    """A real server per version, telemetry on: version -> (URL, host:port of its metrics)."""
    root = tmp_path_factory.mktemp("watched")
    code = root / "watched_model.py"
    code.write_text(WATCHED_MODEL)
    servers, found = [], {}
    try:
        for version, (slot, _) in VERSIONS.items():
            path = root / f"v{version}"
            mlflow.pyfunc.save_model(path, **model_args(code, version))
            metrics = f"127.0.0.1:{free_port()}"
            env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "IMDB_"))}
            env |= {
                contract.METRICS_PORT_ENV: metrics,
                contract.SLOT_ENV: slot,
                contract.MODEL_VERSION_ENV: str(version),
                contract.MULTIPROC_DIR_ENV: str(root / f"multiproc-{version}"),
            }
            server = model_server.start(str(path), free_port(), root / f"v{version}.log", env=env)
            servers.append(server)
            found[version] = (server.url, metrics)
        for server in servers:
            model_server.wait_ready(server, timeout=READY_TIMEOUT)
        yield {"versions": found, "code": code}
    finally:
        for server in servers:
            model_server.stop(server)


@pytest.fixture
def prometheus(request, watched, prometheus_tools, tmp_path):
    """A real Prometheus scraping blue (version 1) and the green candidate of the test."""
    candidate = request.param
    targets = [watched["versions"][1][1], watched["versions"][candidate][1]]
    running = prometheus_server.start(
        prometheus_tools["prometheus"], free_port(), tmp_path / "prometheus", targets
    )
    try:
        prometheus_server.wait_ready(running)
        for slot in ("blue", "green"):  # every series exists at 0 once the model has loaded
            expr = f'count({contract.CALLS_METRIC}_total{{slot="{slot}"}})'
            assert running.wait_for(expr, 3.0) == 3.0, running.log_path.read_text()[-2000:]
        yield running
    finally:
        prometheus_server.stop(running)


@pytest.fixture
def watched_registry(tracking_uri, watched, tmp_path):
    """Versions 1-3 of the registered model, each with its analysis sample; version 1 is
    `previous`, as promote leaves it when it crowns another."""
    client = MlflowClient()
    name = load_params(PROJECT_ROOT / "params.yaml").register.model_name
    mlflow.set_experiment("deploy-prometheus-tests")
    for version in VERSIONS:
        with mlflow.start_run():
            info = mlflow.pyfunc.log_model(
                name="model", registered_model_name=name, **model_args(watched["code"], version)
            )
        assert int(info.registered_model_version) == version
        log_sample(client, name, version, tmp_path, words=WORDS)
    client.set_registered_model_alias(name, "previous", "1")
    return client, name


class LiveTraffic:
    """Steady calls to the live Service through the API server's proxy, as users would make
    them, until stopped (bounded: at most `limit` calls)."""

    def __init__(self, cfg, limit: int = 3000) -> None:
        self.kube = Kube.connect(cfg.namespace, cfg.context, cfg.request_timeout)
        self.cfg, self.limit = cfg, limit
        self.stop = threading.Event()
        self.answers: list[int] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for i in range(self.limit):
            if self.stop.is_set():
                return
            payload = {
                "dataframe_split": {
                    "columns": [self.cfg.text_column],
                    "data": TRAFFIC[i % 2 : i % 2 + 1],
                }
            }
            status, _ = self.kube.proxy_post(LIVE, self.cfg.port_name, "invocations", payload)
            self.answers.append(status)
            time.sleep(0.02)

    def __enter__(self) -> LiveTraffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def watch_cfg(deploy_cfg, url: str):
    bounds = dataclasses.replace(
        deploy_cfg.analysis, replay=False, prometheus_url=url, duration=6.0, interval=1.0,
        window=4.0, max_p99_seconds=MAX_P99,
    )  # fmt: skip
    return dataclasses.replace(deploy_cfg, build=False, scale_down_delay=0.1, analysis=bounds)


def start_on_blue(cluster, cfg, watched, client, name, candidate: int) -> None:
    seed(cluster, cfg, BLUE, 1, watched["versions"][1][0])
    cluster.images[image_ref(cfg, candidate)] = watched["versions"][candidate][0]
    client.set_registered_model_alias(name, "champion", str(candidate))


@pytest.mark.parametrize("prometheus", [2], indirect=True)
def test_a_good_version_passes_and_the_old_slot_goes_to_zero(
    cluster, watched, watched_registry, prometheus, deploy_cfg
):
    client, name = watched_registry
    cfg = watch_cfg(deploy_cfg, prometheus.url)
    start_on_blue(cluster, cfg, watched, client, name, candidate=2)

    with LiveTraffic(cfg) as traffic:
        plan = deploy.reconcile(make_deployer(cfg, name))

    assert [a.step for a in plan.actions][-2:] == ["post-analysis", "scale-down"]
    assert set(traffic.answers) == {200}
    assert cluster.selector(LIVE)["slot"] == "green"
    assert cluster.replicas(BLUE) == 0 and cluster.replicas(GREEN) == 2
    tags = version_tags(client, name, 2)
    assert tags["analysis.post"] == "passed"
    assert float(tags["analysis.post.judged"]) >= 1
    assert float(tags["analysis.post.p99_seconds"]) <= MAX_P99
    assert float(tags["analysis.post.error_ratio"]) == 0.0
    model = client.get_registered_model(name)
    assert model.aliases["champion"] == 2 and HELD_TAG not in model.tags


@pytest.mark.parametrize("prometheus", [3], indirect=True)
def test_a_slow_version_is_switched_back_and_champion_moves_back(
    cluster, watched, watched_registry, prometheus, deploy_cfg, capsys
):
    client, name = watched_registry
    cfg = watch_cfg(deploy_cfg, prometheus.url)
    start_on_blue(cluster, cfg, watched, client, name, candidate=3)
    a = cfg.analysis
    argv = [
        "--build", "false", "--rollout_timeout", "5", "--poll_interval", "0.01",
        "--scale_down_delay", str(cfg.scale_down_delay), "--analysis.replay", "false",
        "--analysis.prometheus_url", prometheus.url, "--analysis.duration", str(a.duration),
        "--analysis.interval", str(a.interval), "--analysis.window", str(a.window),
        "--analysis.max_p99_seconds", str(a.max_p99_seconds),
    ]  # fmt: skip

    with LiveTraffic(cfg):
        code = deploy.main(argv)
    out, err = capsys.readouterr()

    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: deploy: step post-analysis failed: p99 time in the model 0.")
    assert f"over max_p99_seconds {MAX_P99:g} (slot green, last 4s)" in last
    assert last.endswith("; live slot blue serves version 1")
    assert "switching the live Service back to slot blue" in out
    tags = assert_switched_back(cluster, client, name, 3, "p99_latency")
    assert float(tags["analysis.post.p99_seconds"]) > MAX_P99
    # A watching deployer now sees champion = 1, which blue runs: nothing to roll out again.
    assert deploy.reconcile(make_deployer(cfg, name)).kind == "noop"


@pytest.mark.parametrize("prometheus", [UNSURE], indirect=True)
def test_a_version_whose_estimated_accuracy_falls_is_switched_back(
    cluster, watched, watched_registry, prometheus, deploy_cfg
):
    client, name = watched_registry
    cfg = watch_cfg(deploy_cfg, prometheus.url)
    cfg = dataclasses.replace(
        cfg, analysis=dataclasses.replace(cfg.analysis, min_estimate_reviews=5, window=6.0)
    )
    start_on_blue(cluster, cfg, watched, client, name, candidate=UNSURE)

    with LiveTraffic(cfg), pytest.raises(StageError) as failed:
        deploy.reconcile(make_deployer(cfg, name))

    message = str(failed.value)
    assert "label-free accuracy estimate 0.6000 is " in message
    assert "over max_estimated_accuracy_drop 0.02 (slot green, last 6s," in message
    assert cluster.selector(LIVE)["slot"] == "blue"
    tags = version_tags(client, name, UNSURE)
    assert tags["analysis.post.failed_check"] == "estimated_accuracy"
    assert float(tags["analysis.post.estimated_accuracy"]) == pytest.approx(0.6)
    assert client.get_registered_model(name).aliases["champion"] == 1


@pytest.mark.parametrize("prometheus", [2], indirect=True)
def test_no_series_or_no_calls_is_a_failed_analysis_not_a_pass(prometheus, deploy_cfg):
    bounds = watch_cfg(deploy_cfg, prometheus.url).analysis
    bounds = dataclasses.replace(bounds, duration=2.0, interval=0.5)
    client = analysis.Prometheus(prometheus.url, timeout=10)

    with pytest.raises(analysis.AnalysisFailed) as none:
        analysis.watch_live(client, bounds, "purple", 0.5, time.sleep, time.monotonic)
    assert none.value.check == "prometheus" and "has no series for error_ratio" in str(none.value)

    # Green is scraped, but nobody calls it: every round is inconclusive, so the whole is failed.
    with pytest.raises(analysis.AnalysisFailed) as idle:
        analysis.watch_live(client, bounds, "green", 0.5, time.sleep, time.monotonic)
    assert idle.value.check == "no-traffic"
    assert str(idle.value).startswith("no calls to slot green in any of ")

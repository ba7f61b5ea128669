"""The serving image for real: built by the project's code (`mlflow models build-docker` on the
base-image rule) and run on a Docker engine the way k8s/deployment-blue.yaml runs it.

The container's flags come from the manifest itself (tests/docker_pod.py turns the pod spec into
`docker run` flags: uid/gid, read-only root, emptyDirs, dropped capabilities, no new privileges,
env, memory and CPU limits, the port on 127.0.0.1 only), so the two cannot drift. One container
answers every test in file order; the last one stops it.
"""

from __future__ import annotations

import csv
import http.client
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import mlflow
import pandas as pd
import pytest
import requests
import yaml
from docker_pod import Container, PeakRss, docker, memory_bytes, pod_template, run_args, start
from docker_pod import startup_budget as budget_of
from support import REPO_ROOT, serving_limits

from pyfunc.contract import MAX_CALL_CHARS_ENV, MAX_CALL_REVIEWS_ENV, TEXT_COLUMN
from steps.stage.config import load_params
from steps.tracking import registry

pytestmark = [pytest.mark.docker, pytest.mark.slow]

MANIFEST = REPO_ROOT / "k8s" / "deployment-blue.yaml"
MODEL_NAME = "imdb-sentiment"
JSON = {"Content-Type": "application/json"}
CSV = {"Content-Type": "text/csv"}
TIMEOUT = 120
# nginx's client_max_body_size on /invocations, as the image's own layer sets it
NGINX_MAX_BODY = load_params(REPO_ROOT / "params.yaml").image.max_body_mb * 2**20
REVIEWS = [
    "A wonderful, moving film with superb acting. I loved every minute.",
    "Dreadful. Boring plot, wooden acting, and far too long.",
    "Not bad at all<br /><br />the ending was great, though the middle drags.",
    "Ein großartiger Film — great, truly great.",
    "I didn't like this film.",
    "   ",  # no known word: the defined answer
]


def deployment() -> dict:
    return yaml.safe_load(MANIFEST.read_text())


@pytest.fixture(scope="module")
def pod(serving_image, tmp_path_factory):
    """The image running as the manifest's pod, ready (its cold start recorded)."""
    run = run_args(deployment(), serving_image, tmp_path_factory.mktemp("pod-volumes"))
    container = start(run)
    try:
        container.cold_start = container.wait_ready(budget_of(pod_template(deployment())[1]))
        yield container
    finally:
        container.remove()


@pytest.fixture(scope="module")
def in_process(champion_store):
    """The registered champion loaded in this process: what every served answer must equal."""
    uri, version = champion_store
    mlflow.set_tracking_uri(uri)
    try:
        return mlflow.pyfunc.load_model(registry.model_uri(MODEL_NAME, version))
    finally:
        mlflow.set_tracking_uri(None)


def invoke(pod: Container, body, headers=JSON) -> requests.Response:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(f"{pod.url()}/invocations", data=data, headers=headers, timeout=TIMEOUT)


def assert_same_as_in_process(response: requests.Response, expected: pd.DataFrame) -> None:
    assert response.status_code == 200, response.text[:500]
    served = response.json()["predictions"]
    assert [row["label"] for row in served] == list(expected["label"])
    for row, score in zip(served, expected["score"], strict=True):
        assert row["score"] == pytest.approx(float(score), abs=1e-9, rel=0)


def test_runs_as_the_pod_and_answers_ping_within_the_startup_probe_budget(pod):
    budget = budget_of(pod_template(deployment())[1])
    assert pod.cold_start <= budget  # wait_ready is bounded by it; this says so
    print(f"cold start to the first 200 on /ping: {pod.cold_start:.1f} s (budget {budget:.0f} s)")
    status = docker("exec", pod.id, "cat", "/proc/1/status").stdout
    fields = dict(line.split(":", 1) for line in status.splitlines())
    pod_spec, _ = pod_template(deployment())
    uid = pod_spec["securityContext"]["runAsUser"]
    assert fields["Uid"].split()[:2] == [str(uid), str(uid)]
    assert int(fields["CapEff"], 16) == 0 and fields["NoNewPrivs"].strip() == "1"
    assert str(pod_spec["securityContext"]["fsGroup"]) in fields["Groups"].split()
    readonly = docker("exec", pod.id, "touch", "/opt/mlflow/x", check=False)
    assert readonly.returncode != 0 and "Read-only file system" in readonly.stderr
    # only /ping and /invocations go through nginx; the rest is nginx's 404
    assert requests.get(f"{pod.url()}/version", timeout=TIMEOUT).status_code == 404


@pytest.mark.parametrize(
    "make_body",
    [
        lambda r: ({"dataframe_split": {"columns": [TEXT_COLUMN], "data": [[x] for x in r]}}, JSON),
        lambda r: ({"dataframe_records": [{TEXT_COLUMN: x} for x in r]}, JSON),
        lambda r: ({"inputs": r}, JSON),
        lambda r: ({"inputs": {TEXT_COLUMN: r}}, JSON),
        # quoted, or a CSV reader skips the whitespace-only review as a blank line
        lambda r: (pd.DataFrame({TEXT_COLUMN: r}).to_csv(index=False, quoting=csv.QUOTE_ALL), CSV),
        lambda r: ({"inputs": r}, {"Content-Type": "application/json; charset=utf-8"}),
    ],
    ids=["dataframe_split", "dataframe_records", "inputs-list", "inputs-columns", "csv", "utf-8"],
)
def test_every_documented_input_format_answers_as_the_model_in_process(pod, in_process, make_body):
    expected = in_process.predict(pd.DataFrame({TEXT_COLUMN: REVIEWS}))
    body, headers = make_body(REVIEWS)
    assert_same_as_in_process(invoke(pod, body, headers), expected)


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"", JSON, 400),
        ('{"inputs": ["unterminated', JSON, 400),
        ({"dataframe_records": [{TEXT_COLUMN: 1.5}]}, JSON, 400),
        ({"dataframe_records": [{TEXT_COLUMN: True}]}, JSON, 400),
        ({"reviews": ["A great film."]}, JSON, 400),
        ({"dataframe_records": [{"no such column": "A great film."}]}, JSON, 400),
        ("A great film.", {"Content-Type": "text/plain"}, 415),
        # nginx's 415 (k8s/serving-image/nginx.conf): MLflow answers a missing one with a 500
        ('{"inputs": ["A great film."]}', {}, 415),
        ('{"inputs": ["A great film."]}', {"Content-Type": "application/jsonx"}, 415),
        ("inputs=A+great+film.", {"Content-Type": "application/x-www-form-urlencoded"}, 415),
    ],
    ids=[
        "empty",
        "invalid-json",
        "numbers",
        "bool",
        "unknown-field",
        "unknown-column",
        "text",
        "no-content-type",
        "jsonx",
        "form",
    ],
)
def test_bad_input_is_a_4xx(pod, body, headers, status):
    response = invoke(pod, body, headers)
    assert response.status_code == status, response.text[:500]
    assert len(response.content) < 20_000


def test_a_body_over_nginx_limit_is_413_before_it_is_read(pod):
    """nginx refuses by Content-Length alone: such a body never reaches the server."""
    connection = http.client.HTTPConnection("127.0.0.1", pod.run.ports[8080], timeout=TIMEOUT)
    try:
        connection.putrequest("POST", "/invocations")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(NGINX_MAX_BODY + 1))
        connection.endheaders(b'{"inputs": ["')
        assert connection.getresponse().status == 413
    finally:
        connection.close()


def largest_body(make: Callable[[list[str]], dict], review: str) -> bytes:
    """The largest JSON body of one review repeated that nginx lets through (`make` turns a list
    of reviews into the body)."""

    def size(rows: int) -> int:
        return len(json.dumps(make([review] * rows)))

    per_row = size(2) - size(1)
    rows = (NGINX_MAX_BODY - 512 - (size(1) - per_row)) // per_row
    body = json.dumps(make([review] * rows)).encode()
    assert NGINX_MAX_BODY - 512 - per_row < len(body) <= NGINX_MAX_BODY
    return body


FORMATS = {
    "inputs": lambda rows: {"inputs": rows},
    "inputs-columns": lambda rows: {"inputs": {TEXT_COLUMN: rows}},
    "dataframe_split": lambda rows: {
        "dataframe_split": {"columns": [TEXT_COLUMN], "data": [[r] for r in rows]}
    },
    "dataframe_records": lambda rows: {"dataframe_records": [{TEXT_COLUMN: r} for r in rows]},
}


def survives(pod: Container, bodies: list[bytes]) -> tuple[list[requests.Response], int]:
    """Send the bodies at once; check no process in the pod was OOM-killed and it still runs;
    (responses, peak RSS of the whole container in bytes)."""
    memory = pod.cgroup()
    limit = memory_bytes(pod_template(deployment())[1]["resources"]["limits"]["memory"])
    assert memory.limit() == limit
    kills_before = memory.oom_kills()
    with PeakRss(memory) as peak, ThreadPoolExecutor(len(bodies)) as pool:
        responses = list(pool.map(lambda body: invoke(pod, body), bodies))
    state = pod.state()
    print(f"{len(bodies)} x {len(bodies[0]) / 2**20:.1f} MiB: HTTP"
          f" {[r.status_code for r in responses]}, container peak RSS {peak.peak / 2**20:.0f} MiB"
          f" of a {limit / 2**20:.0f} MiB limit")  # fmt: skip
    assert memory.oom_kills() == kills_before, "the OOM killer killed a process in the pod"
    assert state["Running"] and not state["OOMKilled"]
    assert peak.peak < limit
    return responses, peak.peak


@pytest.mark.parametrize("make", FORMATS.values(), ids=FORMATS.keys())
def test_the_largest_body_nginx_lets_through_is_refused_by_the_model_in_memory(pod, make):
    """Full-length reviews up to nginx's limit: more than a call may hold, so the model answers
    400 saying so, and the container lives on under its memory limit."""
    max_call_chars = int(serving_limits()[MAX_CALL_CHARS_ENV])  # as the pod sets it
    body = largest_body(make, REVIEWS[0] * 15)  # about 1,000 characters a review
    assert len(body) > max_call_chars
    (response,), _ = survives(pod, [body])
    assert response.status_code == 400, response.text[:300]
    assert f"{max_call_chars:,}" in response.json()["message"]


def test_two_largest_bodies_of_the_costliest_kind_at_once_fit_the_memory_limit(pod):
    """The worst case for memory: every worker parsing a body of the shortest reviews (a Python
    object per two-letter review) at once. MLflow parses a whole body before the model sees it,
    so that cost is paid; the model then refuses more reviews than a call may hold."""
    max_reviews = int(serving_limits()[MAX_CALL_REVIEWS_ENV])  # as the pod sets it
    body = largest_body(FORMATS["inputs-columns"], "ok")
    workers = int(next(e["value"] for e in pod_template(deployment())[1]["env"]
                       if e["name"] == "MLFLOW_MODELS_WORKERS"))  # fmt: skip
    assert len(json.loads(body)["inputs"][TEXT_COLUMN]) > max_reviews
    responses, _ = survives(pod, [body] * workers)
    for response in responses:
        assert response.status_code == 400, response.text[:300]
        message = response.json()["message"]
        assert f"{max_reviews:,} reviews per call ({MAX_CALL_REVIEWS_ENV})" in message


def test_a_call_of_as_many_reviews_as_allowed_is_answered_in_full(pod):
    max_reviews = int(serving_limits()[MAX_CALL_REVIEWS_ENV])
    body = json.dumps({"inputs": {TEXT_COLUMN: ["ok"] * max_reviews}}).encode()
    (response,), _ = survives(pod, [body])
    assert response.status_code == 200, response.text[:300]
    assert len(response.json()["predictions"]) == max_reviews


def test_keeps_serving_after_every_bad_and_large_request(pod, in_process):
    expected = in_process.predict(pd.DataFrame({TEXT_COLUMN: REVIEWS}))
    assert_same_as_in_process(invoke(pod, {"inputs": REVIEWS}), expected)
    logs = pod.logs(tail=100_000)
    assert "died" not in logs  # no uvicorn worker was killed (health check, OOM) and restarted
    assert pod.state()["Running"]


def test_the_emptydir_stand_ins_are_what_the_kubelet_makes(serving_image, tmp_path):
    """world-writable, setgid fsGroup: uid 10001 can write; `--tmpfs` could not (see docstring)."""
    run = run_args(deployment(), serving_image, tmp_path)
    for host in run.empty_dirs.values():
        assert host.stat().st_mode & 0o7777 == 0o2777
    pod_spec, container = pod_template(deployment())
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert set(run.empty_dirs) == mounts
    if os.geteuid() == 0:  # only root may give the folder to another group
        fs_group = pod_spec["securityContext"]["fsGroup"]
        assert {p.stat().st_gid for p in run.empty_dirs.values()} == {fs_group}


def test_docker_stop_is_clean_within_the_grace_period(pod):
    """Last: SIGTERM to the entrypoint stops nginx and uvicorn, exit 0, before the SIGKILL."""
    grace = pod.run.stop_timeout
    assert grace == deployment()["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    seconds, state = pod.stop()
    print(f"docker stop: {seconds:.1f} s (grace {grace} s)")
    assert seconds < grace
    assert state["ExitCode"] == 0 and not state["OOMKilled"]

"""Benchmark: the serving image run as the pod runs it vs `mlflow models serve` on the host.

    python bench/bench_image.py [--data DIR] [--model-uri URI] [--quick] [--repeats N]

The same model on both sides: trained like bench/bench_serve.py on the 25k shared reviews (or
--model-uri), registered in a scratch SQLite registry. Host: `mlflow models serve` with the pod's
MLFLOW_MODELS_WORKERS, on 127.0.0.1. Container: the image the project builds (base-image rule,
`mlflow models build-docker`, the body-size layer: steps/rollout/image.py), run with the flags
tests/docker_pod.py derives from k8s/deployment-blue.yaml (uid 10001, read-only root, emptyDirs,
memory and CPU limits), nginx in front, published on 127.0.0.1. The same asyncio client as
bench_serve.py drives both.

Printed tables:
1. single-review p50/p99 (1 client), requests/s with 8 clients (keep-alive, and a connection per
   request), reviews/s in batches of 100 (4 clients), cold start to the first 200 on /ping, for
   both and their ratio (aim: the container within 20% of the host; cold start under 20 s);
2. the image: its size, its layers, and which installed packages take the space, split into what
   the model's requirements need, what mlflow-skinny (enough for the scoring server) needs, and
   what only the full `mlflow` package brings: what an image built on mlflow-skinny would drop.
Skipped, with a line saying why, where no Docker engine answers or the data is missing.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # model_server, docker_pod, support

import docker_pod
import model_server
import yaml
from bench_serve import (
    BATCH,
    BATCH_CLIENTS,
    argument_parser,
    group_cpu_seconds,
    percentile,
    run_clients,
    scratch_champion,
    shared_reviews,
)
from support import free_port

from steps.rollout import image
from steps.stage.config import load_params
from steps.tracking import registry

MODEL_NAME = "imdb-sentiment"
TAG = "imdb-sentiment-bench:champion"
MANIFEST = REPO / "k8s" / "deployment-blue.yaml"
AIM_RATIO = 1.2  # the container within 20% of the host
AIM_COLD_START_S = 20.0
# Run inside the image: every installed distribution's size, and what needs it.
PACKAGES_SCRIPT = r"""
import importlib.metadata as md, json, os, re, sys
from packaging.requirements import Requirement
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
dists = {norm(d.metadata["Name"]): d for d in md.distributions() if d.metadata["Name"]}
def size(d):
    total = 0
    for f in d.files or []:
        try:
            total += os.path.getsize(d.locate_file(f))
        except OSError:
            pass
    return total
def closure(names):
    seen, todo = set(), [norm(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen or name not in dists:
            continue
        seen.add(name)
        for text in dists[name].requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(norm(req.name))
    return seen
lines = open("/opt/ml/model/requirements.txt").read().split()
model = closure([Requirement(r).name for r in lines if norm(Requirement(r).name) != "mlflow"])
print(json.dumps({"sizes": {n: size(d) for n, d in dists.items()}, "model": sorted(model),
                  "skinny": sorted(closure(["mlflow-skinny"]))}))
"""


def main() -> int:
    parser = argument_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=3, help="figures are medians of N runs")
    args = parser.parse_args()
    problem = docker_pod.engine_problem()
    if problem:
        print(f"skipped: {problem}")
        return 0
    data = Path(args.data).resolve()
    reviews = shared_reviews(data)  # the reviews sent (and trained on)
    if reviews is None:
        return 0
    sizes = {"singles": 300 if args.quick else 2000, "batches": 20 if args.quick else 150}
    repeats = 1 if args.quick else args.repeats
    manifest = yaml.safe_load(MANIFEST.read_text())
    _, container_spec = docker_pod.pod_template(manifest)
    workers = int(next(e["value"] for e in container_spec["env"]
                       if e["name"] == "MLFLOW_MODELS_WORKERS"))  # fmt: skip
    load_before = os.getloadavg()

    with tempfile.TemporaryDirectory(prefix="bench_image.") as scratch:
        work = Path(scratch)
        scratch_champion(work, data, args.model_uri)
        champion = registry.version_by_alias(MODEL_NAME, registry.CHAMPION_ALIAS).version
        uri = registry.model_uri(MODEL_NAME, champion)

        started = time.perf_counter()
        built = image.build_serving_image(uri, TAG, load_params(REPO / "params.yaml").image)
        build_s = time.perf_counter() - started
        print(f"built {built.ref} in {build_s:.0f} s ({built.base.describe()})", flush=True)

        host = measure_host(uri, workers, reviews, sizes, repeats, work)
        pod = measure_pod(manifest, reviews, sizes, repeats, work)
    layers, packages = image_contents(TAG)
    load_after = os.getloadavg()
    print_speed(host, pod, workers)
    print_size(layers, packages)
    print(
        f"\nload average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after, on"
        f" {os.cpu_count()} cores: other work on the machine inflates the wall-clock figures"
    )
    return 0


# --- speed ------------------------------------------------------------------------------------


def measure(
    port: int, reviews: list[str], sizes: dict, repeats: int, cpu_seconds: Callable[[], float]
) -> dict[str, float]:
    """The rows of the speed table against a server on 127.0.0.1:port (medians of repeats);
    `cpu_seconds` reads the CPU time the server has used so far."""
    singles = [json.dumps({"inputs": [r]}).encode() for r in reviews[: sizes["singles"]]]
    batches = [
        json.dumps({"inputs": reviews[i * BATCH : (i + 1) * BATCH]}).encode()
        for i in range(sizes["batches"])
    ]
    run_clients(port, singles[:100], 8, keep_alive=False)  # warm every worker up
    runs = []
    for _ in range(repeats):
        latencies, _ = run_clients(port, singles, 1)
        run = {
            "p50_ms": percentile(latencies, 0.5) * 1e3,
            "p99_ms": percentile(latencies, 0.99) * 1e3,
        }
        for key, keep_alive in (("rps_8", True), ("rps_8_new", False)):
            cpu = cpu_seconds()
            latencies, wall = run_clients(port, singles, 8, keep_alive=keep_alive)
            run[key] = len(latencies) / wall
            run[f"cpu_ms_{key}"] = (cpu_seconds() - cpu) / len(latencies) * 1e3
        _, wall = run_clients(port, batches, BATCH_CLIENTS, keep_alive=False)
        run["batch_rps"] = len(batches) * BATCH / wall
        runs.append(run)
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def measure_host(uri, workers, reviews, sizes, repeats, work: Path) -> dict[str, float]:
    server = model_server.start(uri, free_port(), work / "serve.log", workers=workers)
    try:
        ready = model_server.wait_ready(server, timeout=300)
        port = int(server.url.rsplit(":", 1)[1])
        row = measure(port, reviews, sizes, repeats, lambda: group_cpu_seconds(server.process.pid))
    finally:
        model_server.stop(server)
    return {**row, "ready_s": ready}


def measure_pod(manifest, reviews, sizes, repeats, work: Path) -> dict[str, float]:
    run = docker_pod.run_args(manifest, TAG, work / "pod-volumes")
    with docker_pod.running(run) as container:
        budget = docker_pod.startup_budget(docker_pod.pod_template(manifest)[1])
        ready = container.wait_ready(budget)
        row = measure(run.ports[8080], reviews, sizes, repeats, container.cpu_seconds)
    return {**row, "ready_s": ready}


def print_speed(host: dict, pod: dict, workers: int) -> None:
    print(f"\nThe same model: host `mlflow models serve --workers {workers}` vs the image run as"
          " k8s/deployment-blue.yaml's pod (nginx in front; wall clock, medians)")  # fmt: skip
    print("| measurement | host | container | container/host | aim |")
    print("| --- | ---: | ---: | ---: | --- |")
    rows = [
        ("single review, 1 client: p50 ms", "p50_ms", True),
        ("single review, 1 client: p99 ms", "p99_ms", True),
        ("8 keep-alive clients: requests/s", "rps_8", False),
        ("8 clients, connection per request: requests/s", "rps_8_new", False),
        (f"{BATCH}-review batches, {BATCH_CLIENTS} clients: reviews/s", "batch_rps", False),
        ("server CPU per request, 8 keep-alive clients: ms", "cpu_ms_rps_8", True),
        ("server CPU per request, 8 clients, new connections: ms", "cpu_ms_rps_8_new", True),
        ("start to first 200 on /ping, s", "ready_s", True),
    ]
    for label, key, lower_is_better in rows:
        ratio = pod[key] / host[key]
        if key.startswith("cpu_ms"):  # where a difference comes from: nginx, logs, connections
            aim = ""
        elif key == "ready_s":
            aim = (
                f"< {AIM_COLD_START_S:.0f} s: {'met' if pod[key] < AIM_COLD_START_S else 'MISSED'}"
            )
        else:
            worse = ratio if lower_is_better else 1 / ratio
            aim = f"within 20%: {'met' if worse <= AIM_RATIO else 'MISSED'}"
        print(f"| {label} | {_fmt(host[key])} | {_fmt(pod[key])} | {ratio:.2f} | {aim} |")


# --- size -------------------------------------------------------------------------------------


def image_contents(tag: str) -> tuple[list[tuple[int, str]], dict]:
    """(layers as (bytes, what made them), the packages report from inside the image)."""
    history = docker_pod.docker(
        "history", "--no-trunc", "--human=false", "--format", "{{json .}}", tag
    ).stdout
    layers = []
    for line in history.splitlines():
        entry = json.loads(line)
        if int(entry["Size"]) >= 1e6:
            layers.append((int(entry["Size"]), " ".join(entry["CreatedBy"].split())))
    done = docker_pod.docker("run", "--rm", "--network", "none", "--entrypoint", "python", tag,
                             "-c", PACKAGES_SCRIPT)  # fmt: skip
    return layers[::-1], json.loads(done.stdout)


def print_size(layers: list[tuple[int, str]], packages: dict) -> None:
    total = int(docker_pod.docker("image", "inspect", "--format", "{{.Size}}", TAG).stdout)
    print(f"\nThe image: {total / 1e6:,.0f} MB uncompressed; its layers over 1 MB")
    print("| MB | made by |\n| ---: | --- |")
    for size, created_by in layers:
        what = created_by.removeprefix("/bin/sh -c ").removeprefix("#(nop) ")
        print(f"| {size / 1e6:,.0f} | `{what[:90]}{'...' if len(what) > 90 else ''}` |")

    sizes = packages["sizes"]
    model, skinny = set(packages["model"]), set(packages["skinny"]) - set(packages["model"])
    rest = set(sizes) - model - skinny
    print("\nInstalled Python packages, by what needs them")
    print("| needed by | MB | largest |\n| --- | ---: | --- |")
    for label, group in (
        ("the model's requirements (scikit-learn, scipy, numpy, pandas...)", model),
        ("mlflow-skinny (the scoring server: fastapi, uvicorn, ...)", skinny),
        ("only the full `mlflow` package (and pip, gunicorn MLflow adds)", rest),
    ):
        biggest = sorted(group, key=lambda n: -sizes[n])[:6]
        listed = ", ".join(f"{n} {sizes[n] / 1e6:.0f}" for n in biggest)
        print(f"| {label} | {sum(sizes[n] for n in group) / 1e6:,.0f} | {listed} |")
    dropped = sum(sizes[n] for n in rest) / 1e6
    print(
        f"\nWhat would shrink it: an image on mlflow-skinny + the model's requirements would"
        f" leave out about {dropped:,.0f} MB of {total / 1e6:,.0f} MB (no longer `build-docker`"
        " unchanged: a Dockerfile of our own)."
    )


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


if __name__ == "__main__":
    sys.exit(main())

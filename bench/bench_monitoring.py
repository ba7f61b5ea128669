"""Benchmark: what monitoring (pyfunc/telemetry.py) adds to a single-review prediction.

    python bench/bench_monitoring.py [--data DIR] [--model-uri URI] [--quick]

The champion is trained as bench/bench_serve.py trains it (the shipped recipe on the 25k shared
reviews) unless --model-uri names one. Printed table, metrics off vs on (on = IMDB_METRICS_PORT
with prometheus_client's multiprocess files and IMDB_PREDICTION_LOG's JSON line per call):
1. in process, one thread: CPU time per single-review `predict`, and of the recording alone
   (metrics + log line around an answer already made: the figure the aim is about);
2. over HTTP: two `mlflow models serve` of the same model (1 worker each) side by side, one with
   monitoring on, one off; one keep-alive client sends single-review requests to them in
   alternating blocks, so both see the same moments of a shared machine; p50/p99 latency and
   the server's CPU per request, medians of the blocks.
Aim: under 0.2 ms added to the single-review p50.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import timeit
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # tests/support.free_port, tests/model_server
sys.path.insert(0, str(REPO / "bench"))  # bench_serve: the same champion and HTTP client

import bench_serve
import mlflow
import model_server
import pandas as pd
from support import free_port
from threadpoolctl import threadpool_limits

from pyfunc import contract, telemetry
from steps.tracking import registry

AIM_MS = 0.2
BLOCK = 100  # requests per block, alternating between the two servers


def main() -> int:
    args = bench_serve.argument_parser(__doc__).parse_args()
    data = Path(args.data).resolve()
    reviews = bench_serve.shared_reviews(data)
    if reviews is None:
        return 0
    blocks = 4 if args.quick else 20
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_monitoring.") as scratch:
        work = Path(scratch)
        bench_serve.scratch_champion(work, data, args.model_uri)
        champion = registry.model_uri(bench_serve.MODEL_NAME, registry.CHAMPION_ALIAS)
        inproc = in_process(champion, reviews, work, rounds=4 if args.quick else 20)
        http = over_http(champion, reviews, blocks, work)
    load_after = os.getloadavg()
    print_table(inproc, http)
    print(
        f"\nload average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after, on"
        f" {os.cpu_count()} cores"
    )
    return 0


def in_process(model_uri: str, reviews: list[str], work: Path, rounds: int) -> dict[str, float]:
    """CPU ms per single-review predict, telemetry off and on in alternating rounds (medians of
    the rounds, so a busy moment of the machine weighs on both alike); log lines to /dev/null."""
    model = mlflow.pyfunc.load_model(model_uri)
    inner = model.unwrap_python_model()
    frames = [pd.DataFrame({contract.TEXT_COLUMN: [r]}) for r in reviews[:2000]]
    environ = {
        contract.METRICS_PORT_ENV: f"127.0.0.1:{free_port()}",
        contract.PREDICTION_LOG_ENV: "1",
        contract.SLOT_ENV: "blue",
        contract.MULTIPROC_DIR_ENV: str(work / "multiproc"),
    }
    settings = {"off": None, "on": telemetry.from_environment(None, None, environ=environ)}
    per_round: dict[str, list[float]] = {"off": [], "on": []}
    with threadpool_limits(1), _stdout_to_devnull():
        for r in range(rounds):
            for name in ("off", "on") if r % 2 else ("on", "off"):
                inner.telemetry = settings[name]
                per_round[name].append(
                    bench_serve.cpu_per_call(lambda i: model.predict(frames[i % 2000]), 300, 10)
                )
        # The recording alone, around an answer already made: CPU time, the fastest of several
        # repeats (timeit's advice), so the machine's other work inflates it least.
        reviews = reviews[:1]
        answer = inner.predict(None, pd.DataFrame({contract.TEXT_COLUMN: reviews}))
        labels = answer[contract.LABEL_FIELD].to_numpy(dtype=object)
        scores = answer[contract.SCORE_FIELD].to_numpy()

        cpu = time.process_time

        def record(value):
            with telemetry.watch(value) as call:
                call.scored(reviews, labels, scores)

        alone = {
            name: min(timeit.repeat(lambda v=value: record(v), number=2000, repeat=7, timer=cpu))
            / 2000
            for name, value in settings.items()
        }
    inner.telemetry = None
    figures = {name: statistics.median(values) * 1e3 for name, values in per_round.items()}
    return figures | {f"alone_{name}": value * 1e3 for name, value in alone.items()}


@contextlib.contextmanager
def _stdout_to_devnull():
    saved = os.dup(1)
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 1)
        try:
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)


def over_http(model_uri: str, reviews: list[str], blocks: int, work: Path) -> dict[str, dict]:
    """Both servers up at once; alternating blocks of single-review requests; medians."""
    monitoring = {
        contract.METRICS_PORT_ENV: f"127.0.0.1:{free_port()}",
        contract.PREDICTION_LOG_ENV: "1",
        contract.SLOT_ENV: "blue",
        contract.MULTIPROC_DIR_ENV: str(work / "served-multiproc"),
    }
    base = {k: v for k, v in os.environ.items() if not k.startswith("IMDB_")}
    servers = {
        "off": model_server.start(model_uri, free_port(), work / "off.log", env=base),
        "on": model_server.start(
            model_uri, free_port(), work / "on.log", env={**base, **monitoring}
        ),
    }
    try:
        for server in servers.values():
            model_server.wait_ready(server, timeout=300)
        bodies = [json.dumps({"inputs": [r]}).encode() for r in reviews[:BLOCK]]
        results = {name: {"p50": [], "p99": [], "cpu": []} for name in servers}
        for block in range(blocks + 1):
            order = ("off", "on") if block % 2 else ("on", "off")
            for name in order:
                server = servers[name]
                port = int(server.url.rsplit(":", 1)[1])
                cpu_before = bench_serve.group_cpu_seconds(server.process.pid)
                latencies, _ = bench_serve.run_clients(port, bodies, 1)
                cpu = bench_serve.group_cpu_seconds(server.process.pid) - cpu_before
                if block:  # the first block of each warms its server up
                    results[name]["p50"].append(bench_serve.percentile(latencies, 0.5) * 1e3)
                    results[name]["p99"].append(bench_serve.percentile(latencies, 0.99) * 1e3)
                    results[name]["cpu"].append(cpu / len(latencies) * 1e3)
        logged = sum(
            1
            for line in servers["on"].log_path.read_text().splitlines()
            if line.startswith('{"time"')
        )
        assert logged == (blocks + 1) * BLOCK, f"{logged} log lines for {(blocks + 1) * BLOCK}"
        return {n: {k: statistics.median(v) for k, v in r.items()} for n, r in results.items()}
    finally:
        for server in servers.values():
            model_server.stop(server)


def print_table(inproc: dict[str, float], http: dict[str, dict]) -> None:
    print("\nMonitoring off vs on, single review (ms; HTTP: 1 worker, 1 keep-alive client)")
    print("| measurement | off | on | added | aim |\n| --- | ---: | ---: | ---: | --- |")
    rows = [
        ("in process: CPU per predict call", inproc["off"], inproc["on"], ""),
        (
            "in process: recording one call alone",
            inproc["alone_off"],
            inproc["alone_on"],
            f"< {AIM_MS} ms added",
        ),
        ("HTTP: p50 latency", http["off"]["p50"], http["on"]["p50"], f"< {AIM_MS} ms added"),
        ("HTTP: p99 latency", http["off"]["p99"], http["on"]["p99"], ""),
        ("HTTP: server CPU per request", http["off"]["cpu"], http["on"]["cpu"], ""),
    ]
    for label, off, on, aim in rows:
        print(f"| {label} | {off:.3f} | {on:.3f} | {on - off:+.3f} | {aim} |")


if __name__ == "__main__":
    sys.exit(main())

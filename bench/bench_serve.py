"""Benchmark: the served model, in process and through `mlflow models serve` on loopback.

    python bench/bench_serve.py [--data DIR] [--model-uri URI | --save-model DIR] [--quick]

Without --model-uri the model is trained with the train stage's own code and params.yaml recipe
on all 25k shared reviews (DIR/train.csv.gz, default $IMDB_SHARED_DATA or ../shared/data/imdb),
logged, registered and made champion in a scratch SQLite registry, then served exactly as
`make serve` does (`mlflow models serve -m models:/imdb-sentiment@champion --env-manager local`).

Printed tables:
1. in-process `predict` throughput on one thread, for 1 and 1,000 reviews per call;
2. HTTP on 127.0.0.1 with 1 and 2 uvicorn workers: single-review latency p50/p99 and requests/s
   at 1 client and at 8 concurrent clients (from one asyncio client process; 8 clients twice: on
   keep-alive connections, and with a new connection per request, which is how requests spread
   over uvicorn's workers), reviews/s in 100-review batches (4 clients), time from start to the
   first 200 on /ping, and the server's CPU time per request;
3. where one single-review request's CPU time goes, layer by layer.
Wall-clock figures depend on what else runs on the machine (the load average is printed); CPU
times per call are steadier. Aims: p50 <= 5 ms at 1 client; >= 250 requests/s at 8 clients and
>= 2,000 reviews/s in 100-review batches with 2 workers.
"""

from __future__ import annotations

import argparse
import asyncio
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
sys.path.insert(0, str(REPO / "tests"))  # tests/support.free_port

import mlflow
import model_server
import pandas as pd
from support import free_port
from threadpoolctl import threadpool_limits

from pyfunc.contract import TEXT_COLUMN
from steps.tracking import (
    registry,
    store,
)

MODEL_NAME = "imdb-sentiment"
BATCH = 100
CLIENTS = (1, 8)
BATCH_CLIENTS = 4
AIMS = {"p50_ms_1_client": 5.0, "rps_8_clients_2_workers": 250.0, "batch_rps_2_workers": 2000.0}


def main() -> int:
    parser = argument_parser(__doc__)
    parser.add_argument(
        "--save-model", type=Path, help="also save the trained model to this (new) folder"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="HTTP figures are the median of this many runs"
    )
    args = parser.parse_args()
    data = Path(args.data).resolve()
    reviews = shared_reviews(data)
    if reviews is None:
        return 0
    n_single = 300 if args.quick else 2000
    n_batches = 20 if args.quick else 150
    repeats = 1 if args.quick else args.repeats
    load_before = os.getloadavg()

    with tempfile.TemporaryDirectory(prefix="bench_serve.") as scratch:
        work = Path(scratch)
        source = scratch_champion(work, data, args.model_uri, args.save_model)
        champion = registry.model_uri(MODEL_NAME, registry.CHAMPION_ALIAS)
        print(f"model: {source} -> {champion}")

        inproc, layers = in_process(champion, reviews)
        http_rows = {}
        for workers in (1, 2):
            http_rows[workers] = over_http(
                champion,
                workers,
                reviews,
                n_single,
                n_batches,
                repeats,
                work / f"serve{workers}.log",
            )

    load_after = os.getloadavg()
    print_tables(inproc, layers, http_rows)
    print(
        f"\nload average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after, on"
        f" {os.cpu_count()} cores: other work on the machine inflates the wall-clock figures"
    )
    return 0


def argument_parser(doc: str) -> argparse.ArgumentParser:
    """The flags every serving benchmark takes: --data, --model-uri, --quick."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    default = os.environ.get("IMDB_SHARED_DATA", str(REPO.parent / "shared" / "data" / "imdb"))
    parser.add_argument("--data", default=default, help="folder holding train.csv.gz")
    parser.add_argument("--model-uri", help="benchmark this model instead of training one")
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    return parser


def shared_reviews(data: Path) -> list[str] | None:
    """The shared reviews, shuffled (seed 0); None, saying why, when they are not there."""
    if not (data / "train.csv.gz").is_file():
        print(f"skipped: {data}/train.csv.gz not found (set IMDB_SHARED_DATA or --data)")
        return None
    reviews = pd.read_csv(data / "train.csv.gz")["review"].sample(frac=1.0, random_state=0)
    return reviews.tolist()


def scratch_champion(
    work: Path, data: Path, model_uri: str | None, save_to: Path | None = None
) -> str:
    """A scratch SQLite registry in `work` whose champion is `model_uri`, or else the shipped
    recipe trained on `data`; returns the champion's source URI."""
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        os.environ.pop(name, None)
    store.configure()
    if model_uri is None:
        return train_champion(data, save_to)
    version = mlflow.register_model(model_uri, MODEL_NAME).version
    registry.set_alias(MODEL_NAME, registry.CHAMPION_ALIAS, version)
    return model_uri


def train_champion(data: Path, save_to: Path | None) -> str:
    """Train the shipped recipe (params.yaml train:) on all of `data`, log it, make it champion."""
    from pyfunc import packaging
    from steps.stage.config import load_params
    from steps.train import train_model

    cfg = load_params(REPO / "params.yaml").train
    frame = pd.read_csv(data / "train.csv.gz")
    print(f"training on {len(frame):,} reviews from {data} (params.yaml train:)...", flush=True)
    trained = train_model(frame["review"].tolist(), frame["sentiment"].tolist(), cfg)
    print(
        f"trained in {trained.metrics['train_seconds']:.0f} s;"
        f" validation accuracy {trained.metrics['val_accuracy']:.4f}",
        flush=True,
    )
    if save_to is not None:
        packaging.save_model(trained.pipeline, save_to, profile=trained.profile)
        print(f"saved to {save_to} (reuse with --model-uri {save_to})")
    with mlflow.start_run():
        info = packaging.log_model(trained.pipeline, name="model", profile=trained.profile)
    version = mlflow.register_model(info.model_uri, MODEL_NAME).version
    registry.set_alias(MODEL_NAME, registry.CHAMPION_ALIAS, version)
    return info.model_uri


# --- in process -------------------------------------------------------------------------------


def cpu_per_call(fn: Callable[[int], object], calls: int, warmup: int = 20) -> float:
    """CPU seconds per call of fn(i), after a warm-up."""
    for i in range(warmup):
        fn(i)
    start = time.process_time()
    for i in range(calls):
        fn(i)
    return (time.process_time() - start) / calls


def in_process(model_uri: str, reviews: list[str]) -> tuple[dict, dict]:
    """pyfunc predict throughput on one thread, and the CPU cost of each layer of a request."""
    from mlflow.pyfunc import scoring_server

    model = mlflow.pyfunc.load_model(model_uri)
    inner = model.unwrap_python_model()
    schema = model.metadata.get_input_schema()
    frames = [pd.DataFrame({TEXT_COLUMN: [r]}) for r in reviews[:2000]]
    big = [pd.DataFrame({TEXT_COLUMN: reviews[i : i + 1000]}) for i in range(0, 5000, 1000)]
    bodies = [json.dumps({"inputs": [r]}) for r in reviews[:2000]]
    with threadpool_limits(1):
        one = cpu_per_call(lambda i: model.predict(frames[i % 2000]), 1000)
        start_wall = time.perf_counter()
        thousand = cpu_per_call(lambda i: model.predict(big[i % 5]), 5, warmup=1)
        thousand_wall = (time.perf_counter() - start_wall) / 6
        layers = {
            "PythonModel.predict (the model alone)": cpu_per_call(
                lambda i: inner.predict(None, frames[i % 2000]), 1000
            ),
            "+ MLflow schema enforcement (PyFuncModel.predict)": one,
            "+ JSON parse and serialise (scoring_server.invocations)": cpu_per_call(
                lambda i: scoring_server.invocations(
                    bodies[i % 2000], "application/json", model, schema
                ),
                1000,
            ),
        }
    inproc = {
        "1 review per call": 1 / one,
        "1,000 reviews per call": 1000 / thousand,
        "1,000 reviews per call (wall)": 1000 / thousand_wall,
    }
    return inproc, layers


# --- over HTTP --------------------------------------------------------------------------------


async def _request(reader, writer, body: bytes, keep_alive: bool) -> tuple[bytes, bytes, bool]:
    """One POST /invocations on an open connection; (status line, payload, whether the
    connection is to be closed now)."""
    close = "" if keep_alive else "Connection: close\r\n"
    head = (
        "POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{close}\r\n"
    ).encode()
    writer.write(head + body)
    status_line = await reader.readline()
    length, closing = 0, not keep_alive
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
        elif name.strip().lower() == "connection" and value.strip().lower() == "close":
            closing = True  # nginx closes a kept-alive connection after 100 requests
    return status_line, await reader.readexactly(length), closing


async def _client(
    port: int, bodies: list[bytes], next_index, latencies: list[float], keep_alive: bool
) -> None:
    """One client sending bodies until none are left: over one keep-alive connection, or a new
    connection per request (the latency then includes connecting)."""
    connection = None
    try:
        while (i := next_index()) is not None:
            start = time.perf_counter()
            if connection is None:
                connection = await asyncio.open_connection("127.0.0.1", port)
            status_line, payload, closing = await _request(*connection, bodies[i], keep_alive)
            if closing:
                connection[1].close()
                connection = None
            latencies.append(time.perf_counter() - start)
            if b" 200 " not in status_line:
                raise RuntimeError(f"{status_line!r}: {payload[:300]!r}")
    finally:
        if connection is not None:
            connection[1].close()


def run_clients(
    port: int, bodies: list[bytes], clients: int, keep_alive: bool = True
) -> tuple[list[float], float]:
    """Send every body once from `clients` concurrent clients; (latencies, wall seconds).

    The clients are coroutines on one event loop: cheaper and steadier than threads, so the
    client takes as little as possible of the CPU the server shares with it.
    """
    latencies: list[float] = []
    indices = iter(range(len(bodies)))

    async def everything() -> float:
        start = time.perf_counter()
        await asyncio.gather(
            *(
                _client(port, bodies, lambda: next(indices, None), latencies, keep_alive)
                for _ in range(clients)
            )
        )
        return time.perf_counter() - start

    wall = asyncio.run(everything())
    return latencies, wall


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of every live process in a process group (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in (p.name for p in Path("/proc").iterdir()):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / tick


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def over_http(
    model_uri: str,
    workers: int,
    reviews: list[str],
    n_single: int,
    n_batches: int,
    repeats: int,
    log: Path,
) -> dict[str, float]:
    """Start the server with `workers`, measure every HTTP row (medians of `repeats`), stop it."""
    port = free_port()
    server = model_server.start(model_uri, port, log, workers=workers)
    try:
        ready = model_server.wait_ready(server, timeout=300)
        singles = [json.dumps({"inputs": [r]}).encode() for r in reviews[:n_single]]
        batches = [
            json.dumps({"inputs": reviews[i * BATCH : (i + 1) * BATCH]}).encode()
            for i in range(n_batches)
        ]
        run_clients(port, singles[:100], workers)  # warm every worker up
        # (clients, keep-alive): uvicorn's workers share one listening socket and a keep-alive
        # connection stays with the worker that accepted it, so a few long-lived connections
        # can all land on one worker; a connection per request spreads over the workers.
        runs = []
        for _ in range(repeats):
            run = {}
            for clients, keep_alive in ((1, True), (8, True), (8, False)):
                key = f"{clients}{'' if keep_alive else '_new'}"
                cpu_before = group_cpu_seconds(server.process.pid)
                latencies, wall = run_clients(port, singles, clients, keep_alive)
                cpu = group_cpu_seconds(server.process.pid) - cpu_before
                run[f"p50_ms_{key}"] = percentile(latencies, 0.50) * 1e3
                run[f"p99_ms_{key}"] = percentile(latencies, 0.99) * 1e3
                run[f"rps_{key}"] = len(latencies) / wall
                run[f"server_cpu_ms_{key}"] = cpu / len(latencies) * 1e3
            _, wall = run_clients(port, batches, BATCH_CLIENTS, keep_alive=False)
            run["batch_rps"] = n_batches * BATCH / wall
            runs.append(run)
        # The median of the repeats, figure by figure: one busy moment on a shared machine
        # does not decide a row.
        row = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        row["ready_s"] = ready
        return row
    finally:
        model_server.stop(server)


# --- output -----------------------------------------------------------------------------------


def print_tables(inproc: dict, layers: dict, http_rows: dict) -> None:
    print("\nIn-process pyfunc predict (one thread; CPU time unless marked wall)")
    print("| call | reviews/s |\n| --- | ---: |")
    for name, value in inproc.items():
        print(f"| {name} | {value:,.0f} |")

    one, two = http_rows[1], http_rows[2]
    print("\nHTTP, mlflow models serve on 127.0.0.1 (wall clock; medians of the repeats)")
    print("| measurement | 1 worker | 2 workers | aim |\n| --- | ---: | ---: | --- |")
    rows = [
        ("single review, 1 client: p50 ms", "p50_ms_1", "<= 5 ms (1 client)"),
        ("single review, 1 client: p99 ms", "p99_ms_1", ""),
        ("single review, 1 client: requests/s", "rps_1", ""),
        ("single review, 8 keep-alive clients: p50 ms", "p50_ms_8", ""),
        ("single review, 8 keep-alive clients: p99 ms", "p99_ms_8", ""),
        ("single review, 8 keep-alive clients: requests/s", "rps_8", ""),
        ("single review, 8 clients, connection per request: p50 ms", "p50_ms_8_new", ""),
        ("single review, 8 clients, connection per request: p99 ms", "p99_ms_8_new", ""),
        ("single review, 8 clients, connection per request: requests/s", "rps_8_new",
         ">= 250 (2 workers)"),
        (f"{BATCH}-review batches, {BATCH_CLIENTS} clients: reviews/s", "batch_rps",
         ">= 2,000 (2 workers)"),
        ("server CPU per single-review request, 1 client: ms", "server_cpu_ms_1", ""),
        ("server CPU per single-review request, 8 keep-alive clients: ms", "server_cpu_ms_8", ""),
        ("start to first 200 on /ping, s", "ready_s", ""),
    ]  # fmt: skip
    for label, key, aim in rows:
        print(f"| {label} | {_fmt(one[key])} | {_fmt(two[key])} | {aim} |")

    print("\nWhere one single-review request's CPU time goes (1 worker)")
    print("| layer | CPU ms per request (cumulative) |\n| --- | ---: |")
    for name, seconds in layers.items():
        print(f"| {name} | {seconds * 1e3:.2f} |")
    print(
        f"| + uvicorn, Starlette/FastAPI, thread hand-off (server process, measured) |"
        f" {one['server_cpu_ms_1']:.2f} |"
    )


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


if __name__ == "__main__":
    sys.exit(main())

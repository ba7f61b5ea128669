"""Benchmark: batch scoring (`score`) with the local engine and Spark local[2], against one
in-process call, on 25k, 250k and 1M reviews.

    python bench/bench_score.py [--data DIR] [--model DIR] [--sizes 25000,250000,1000000]
                                [--ways inprocess,local,spark] [--timeout SECONDS]

Inputs are resampled on the fly (with replacement, seed 0) from the 25k shared training reviews
(DIR/train.csv.gz, default $IMDB_SHARED_DATA or ../shared/data/imdb) into a temp folder, as
Parquet with an `id` column in row groups of 100,000 rows. The model is params.yaml's recipe
fitted by the train stage's code on 20,000 of them (refit_full off, to save a second fit), unless
--model names a saved one. Each run is a process of its own, one BLAS thread each:
- in-process, one call: `mlflow.pyfunc.load_model(dir).predict(<all N reviews>)`, the reviews read
  first; the figure is the predict call alone;
- local: `python -m steps.score --engine local` (read, score, write Parquet, in chunks);
- spark: `python -m steps.score --engine spark --spark.master local[2]`.
Columns: `scoring s` and `reviews/s` are the stage's own figures (read + score + write, after
start-up; for in-process the predict call); `wall s` is the whole process; `CPU s` adds up the
user+system time of the process and everything it starts (JVM, Python workers), sampled from
/proc every 0.2 s; `peak MB` is the highest sum of their proportional set sizes (PSS, so pages
forked workers share count once). Wall-clock figures depend on the machine's load (printed per
run); reviews per CPU second do not. Aims: local within 10% of in-process; local's peak memory
flat from 25k to 1M; Spark's throughput per core within 30% of local's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SIZES = (25_000, 250_000, 1_000_000)
WAYS = ("inprocess", "local", "spark")
ROW_GROUP = 100_000
SPARK_CORES = 2
THREADS_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
SUMMARY = re.compile(r"in (?P<seconds>[\d.]+) s \((?P<rate>[\d,]+) reviews/s\)")
IN_PROCESS = """
import json, sys, time
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
column = model.metadata.get_input_schema().input_names()[0]
frame = pd.read_parquet(sys.argv[2], columns=["review"]).rename(columns={"review": column})
started = time.perf_counter()
answer = model.predict(frame)
print(json.dumps({"seconds": time.perf_counter() - started, "rows": len(answer)}))
"""


@dataclass
class Run:
    """One way of scoring one input, as measured."""

    way: str
    rows: int
    wall: float = 0.0
    seconds: float | None = None  # the stage's own scoring time (None: stopped or failed)
    cpu: float = 0.0
    peak_mb: float = 0.0
    load: tuple[float, float] = (0.0, 0.0)
    note: str = ""

    @property
    def rate(self) -> float | None:
        return self.rows / self.seconds if self.seconds else None

    @property
    def per_cpu(self) -> float | None:
        return self.rows / self.cpu if self.seconds and self.cpu else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.environ.get("IMDB_SHARED_DATA", str(REPO.parent / "shared" / "data" / "imdb"))
    parser.add_argument("--data", default=default, help="folder holding train.csv.gz")
    parser.add_argument("--model", type=Path, help="a saved pyfunc model folder (else trained)")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="reviews per input")
    parser.add_argument("--ways", default=",".join(WAYS), help="inprocess, local, spark")
    parser.add_argument(
        "--timeout", type=float, default=3600.0, help="stop a run after this many seconds"
    )
    args = parser.parse_args()
    data = Path(args.data).resolve()
    if not (data / "train.csv.gz").is_file():
        print(f"skipped: {data}/train.csv.gz not found (set IMDB_SHARED_DATA or --data)")
        return 0
    ways = [w for w in args.ways.split(",") if w]
    if "spark" in ways and not spark_available():
        print("spark: skipped (pyspark or Java missing: make install-spark; Java 17+)")
        ways.remove("spark")
    sizes = [int(s) for s in args.sizes.split(",") if s]
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="bench_score.") as scratch:
        work = Path(scratch)
        model = args.model.resolve() if args.model else train(data, work / "model")
        for size in sizes:
            source = resample(data, size, work / f"reviews_{size}.parquet")
            for way in ways:
                run = measure(way, size, source, model, work, args.timeout)
                runs.append(run)
                print(f"  {describe(run)}", file=sys.stderr, flush=True)
    print_table(runs)
    return 0


def spark_available() -> bool:
    import importlib.util
    import shutil

    return bool(
        importlib.util.find_spec("pyspark")
        and (shutil.which("java") or os.environ.get("JAVA_HOME"))
    )


def train(data: Path, target: Path) -> Path:
    """params.yaml's recipe fitted on 20,000 of the shared reviews, saved as the pyfunc."""
    import dataclasses

    import pandas as pd

    from pyfunc import packaging
    from steps.stage.config import load_params
    from steps.train import train_model

    cfg = dataclasses.replace(load_params(REPO / "params.yaml").train, refit_full=False)
    frame = pd.read_csv(data / "train.csv.gz")
    print(f"training params.yaml's recipe on {data / 'train.csv.gz'}...", file=sys.stderr)
    trained = train_model(frame["review"].tolist(), frame["sentiment"].tolist(), cfg)
    packaging.save_model(trained.pipeline, target)
    return target


def resample(data: Path, size: int, target: Path) -> Path:
    """`size` reviews drawn with replacement (seed 0), ids 0.., written in row groups."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    reviews = pd.read_csv(data / "train.csv.gz")["review"].to_numpy(dtype=object)
    rng = np.random.default_rng(0)
    schema = pa.schema([("id", pa.int64()), ("review", pa.string())])
    with pq.ParquetWriter(target, schema) as writer:
        for start in range(0, size, ROW_GROUP):
            count = min(ROW_GROUP, size - start)
            picked = reviews[rng.integers(0, len(reviews), count)]
            ids = np.arange(start, start + count, dtype=np.int64)
            writer.write_table(pa.table({"id": ids, "review": picked}, schema=schema))
    return target


def measure(way: str, size: int, source: Path, model: Path, work: Path, timeout: float) -> Run:
    """Run one way on one input in its own process group, sampling its process tree."""
    out = work / f"scores_{way}_{size}.parquet"
    if way == "inprocess":
        command = [sys.executable, "-c", IN_PROCESS, str(model), str(source)]
    else:
        command = [
            sys.executable, "-m", "steps.score", "--input", str(source), "--output", str(out),
            "--model", str(model), "--engine", way, "--spark.master", f"local[{SPARK_CORES}]",
        ]  # fmt: skip
    env = {**os.environ, **THREADS_ENV, "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}"}
    run = Run(way=way, rows=size)
    before = os.getloadavg()[0]
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    sampler = TreeSampler(process.pid)
    sampler.start()
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        run.note = f"stopped after {timeout:.0f} s"
    run.wall = time.perf_counter() - started
    sampler.stop()
    run.cpu, run.peak_mb = sampler.cpu_seconds(), sampler.peak_mb
    run.load = (before, os.getloadavg()[0])
    if run.note:
        return run
    if process.returncode != 0:
        run.note = f"failed: {(stderr.strip().splitlines() or ['?'])[-1][:120]}"
        return run
    if way == "inprocess":
        run.seconds = json.loads(stdout.strip().splitlines()[-1])["seconds"]
    else:
        found = SUMMARY.search(stdout)
        run.seconds = float(found["seconds"]) if found else None
    return run


@dataclass
class TreeSampler:
    """CPU time and peak PSS of a process and its descendants, read from /proc."""

    root: int
    interval: float = 0.2
    peak_mb: float = 0.0
    cpu: dict[int, float] = field(default_factory=dict)  # pid -> last seen user+system s
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def cpu_seconds(self) -> float:
        return sum(self.cpu.values())

    def _loop(self) -> None:
        ticks = os.sysconf("SC_CLK_TCK")
        while not self._stop.is_set():
            pss = 0.0
            for pid in self._tree():
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    self.cpu[pid] = (int(fields[11]) + int(fields[12])) / ticks
                    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                        if line.startswith("Pss:"):
                            pss += int(line.split()[1]) / 1024
                except (OSError, IndexError, ValueError):
                    continue  # the process ended between listing and reading
            self.peak_mb = max(self.peak_mb, pss)
            self._stop.wait(self.interval)

    def _tree(self) -> list[int]:
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    parents[int(entry.name)] = int(
                        (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                    )
                except (OSError, IndexError, ValueError):
                    continue
        tree, frontier = [self.root], [self.root]
        while frontier:
            frontier = [pid for pid, parent in parents.items() if parent in frontier]
            tree += frontier
        return tree


def describe(run: Run) -> str:
    rate = f"{run.rate:,.0f} reviews/s" if run.rate else run.note
    return f"{run.way} {run.rows:,}: {rate}, wall {run.wall:.0f} s, load {run.load[0]:.1f}"


def print_table(runs: list[Run]) -> None:
    print(
        "| reviews | way | wall s | scoring s | reviews/s | CPU s | reviews/CPU-s | peak MB"
        " | load before/after |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---|")
    for run in runs:
        cells = [
            f"{run.rows:,}",
            "Spark local[2]" if run.way == "spark" else run.way,
            f"{run.wall:.0f}",
            f"{run.seconds:.1f}" if run.seconds else run.note or "?",
            f"{run.rate:,.0f}" if run.rate else "-",
            f"{run.cpu:.0f}",
            f"{run.per_cpu:,.0f}" if run.per_cpu else "-",
            f"{run.peak_mb:,.0f}",
            f"{run.load[0]:.1f} / {run.load[1]:.1f}",
        ]
        print("| " + " | ".join(cells) + " |")
    print_aims(runs)


def marginal(runs: list[Run], way: str) -> tuple[int, int, float] | None:
    """(smallest, largest, reviews per CPU second between them) for one way: the steady cost of
    a review, without what starting up costs (imports, the model, a JVM, Python workers)."""
    done = sorted((r for r in runs if r.way == way and r.rate), key=lambda r: r.rows)
    if len(done) < 2 or done[-1].cpu <= done[0].cpu:
        return None
    first, last = done[0], done[-1]
    return first.rows, last.rows, (last.rows - first.rows) / (last.cpu - first.cpu)


def print_aims(runs: list[Run]) -> None:
    """The issue's aims, from the figures above: CPU-based ones are what the load cannot skew."""
    lines = []
    steady = {way: marginal(runs, way) for way in WAYS}
    for way, found in steady.items():
        if found:
            lines.append(
                f"{way}: {found[2]:,.0f} reviews per CPU second from {found[0]:,} to"
                f" {found[1]:,} reviews (the CPU the extra reviews cost)"
            )
    by = {(r.way, r.rows): r for r in runs if r.rate}
    for (way, rows), run in sorted(by.items(), key=lambda item: item[0][1]):
        single, local = by.get(("inprocess", rows)), by.get(("local", rows))
        if way == "local" and single:
            lines.append(
                f"local vs one in-process call, {rows:,}: {run.rate / single.rate:.0%} of its"
                " reviews/s (aim >= 90%)"
            )
        if way == "spark" and local:
            lines.append(
                f"Spark per core vs local, {rows:,}: {run.rate / SPARK_CORES / local.rate:.0%}"
                " of its reviews/s per core (aim >= 70%)"
            )
    if steady["local"] and steady["inprocess"]:
        ratio = steady["local"][2] / steady["inprocess"][2]
        lines.append(f"local vs in-process per CPU second: {ratio:.0%} (aim >= 90%)")
    if steady["spark"] and steady["local"]:
        ratio = steady["spark"][2] / steady["local"][2]
        lines.append(f"Spark vs local per CPU second (per core): {ratio:.0%} (aim >= 70%)")
    local_runs = sorted((r for r in runs if r.way == "local" and r.rate), key=lambda r: r.rows)
    if len(local_runs) > 1:
        first, last = local_runs[0], local_runs[-1]
        lines.append(
            f"local peak memory: {first.peak_mb:,.0f} MB at {first.rows:,} reviews,"
            f" {last.peak_mb:,.0f} MB at {last.rows:,} (aim: flat)"
        )
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: ingest + validate of the 25k-review IMDB train file, as `make run` runs them.

    python bench/bench_data.py [--data DIR]     (default $IMDB_SHARED_DATA or ../shared/data/imdb)

Each stage runs through its CLI (`python -m steps.ingest --source DIR`, `python -m steps.validate`)
in a fresh process, in a scratch copy of the project with its own SQLite MLflow store, exactly as
`make run` chains them. Per stage: wall time (process start to exit, imports included), CPU time
(user + system; steadier than wall time on a shared machine) and peak resident memory (RSS).
"Together" is the two stages back to back (times add up; the peak is the larger one, since each
stage is its own process). A second round shows the reruns: ingest finds the same content and
validate finds its marker. Aim: under 30 s wall together. Last, the integrity check every later
stage makes before it reads the data (`dataset.require_validated`: sha256 of both Parquet files'
bytes against the marker), median of 5.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import runpy
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROJECT_FILES = ("MLproject", "conda.yaml", "params.yaml", "expectations")
AIM_SECONDS = 30.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.environ.get("IMDB_SHARED_DATA", str(REPO.parent / "shared" / "data" / "imdb"))
    parser.add_argument("--data", default=default, help="folder holding train.csv.gz")
    args = parser.parse_args()
    data = Path(args.data).resolve()
    if not (data / "train.csv.gz").is_file():
        print(f"skipped: {data}/train.csv.gz not found (set IMDB_SHARED_DATA or --data)")
        return 0

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_data.") as scratch:
        work = Path(scratch)
        for name in PROJECT_FILES:
            source = REPO / name
            copy = shutil.copytree if source.is_dir() else shutil.copy2
            copy(source, work / name)
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}"}
        env.pop("MLFLOW_RUN_ID", None)
        # Create the tracking store first: its one-off schema migration is not a stage's cost.
        subprocess.run(
            [sys.executable, "-m", "steps.models", "--exports"],
            cwd=work,
            env=env,
            check=True,
            capture_output=True,
        )
        rows = []
        for round_name in ("first run", "second run"):
            ingest = _measure("ingest", ["--source", str(data)], work, env)
            validate = _measure("validate", [], work, env)
            rows += [
                (round_name, "ingest", ingest),
                (round_name, "validate", validate),
                (round_name, "together", _together(ingest, validate)),
            ]
        marker = json.loads((work / "data" / "validated.json").read_text())
        check_ms, parquet_mb = _integrity_check(work / "data")

    print(f"ingest + validate of {data}/train.csv.gz (25,000 reviews, carved 80/20)")
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; load average"
        f" {load_before:.1f} before, {os.getloadavg()[0]:.1f} after (other work inflates wall time)"
    )
    print()
    print("| round | stage | wall s | CPU s (user+sys) | peak RSS MB |")
    print("| --- | --- | ---: | ---: | ---: |")
    for round_name, stage, m in rows:
        print(f"| {round_name} | {stage} | {m['wall']:.1f} | {m['cpu']:.1f} | {m['rss_mb']:.0f} |")
    first = rows[2][2]
    verdict = "met" if first["wall"] < AIM_SECONDS else "NOT met"
    print()
    print(
        f"aim: first run together under {AIM_SECONDS:.0f} s wall: {verdict}"
        f" ({first['wall']:.1f} s wall, {first['cpu']:.1f} s CPU)"
    )
    print(f"marker bounds: {marker['bounds']}")
    print(
        f"integrity check before train/evaluate (sha256 of {parquet_mb:.1f} MB of Parquet):"
        f" {check_ms:.0f} ms (median of 5)"
    )
    return 0


def _integrity_check(data_dir: Path) -> tuple[float, float]:
    """Median milliseconds of `require_validated` on the ingested data, and its size in MB."""
    sys.path.insert(0, str(REPO))
    from steps.data.dataset import require_validated

    ingested = data_dir / "ingested"
    times = []
    for _ in range(5):
        started = time.perf_counter()
        require_validated(ingested, data_dir / "validated.json")
        times.append((time.perf_counter() - started) * 1000)
    size = sum(p.stat().st_size for p in ingested.glob("*.parquet")) / 1e6
    return sorted(times)[2], size


def _measure(stage: str, stage_args: list[str], cwd: Path, env: dict) -> dict:
    """Run one stage CLI in a fresh process; its wall time, CPU time and peak RSS."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        stats_file = Path(handle.name)
    try:
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, __file__, "--child", str(stats_file), f"steps.{stage}", *stage_args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - started
        if done.returncode != 0:
            sys.stderr.write(done.stderr)
            raise SystemExit(f"bench: {stage} failed (exit {done.returncode})")
        usage = json.loads(stats_file.read_text())
    finally:
        stats_file.unlink(missing_ok=True)
    return {"wall": wall, "cpu": usage["cpu"], "rss_mb": usage["maxrss_kb"] / 1024}


def _together(a: dict, b: dict) -> dict:
    return {
        "wall": a["wall"] + b["wall"],
        "cpu": a["cpu"] + b["cpu"],
        "rss_mb": max(a["rss_mb"], b["rss_mb"]),
    }


def _child(stats_file: str, module: str, argv: list[str]) -> int:
    """Run `python -m <module> <argv>` in this process, then record its own resource usage."""
    sys.argv = [module, *argv]
    code = 0
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    usage = resource.getrusage(resource.RUSAGE_SELF)
    Path(stats_file).write_text(
        json.dumps({"cpu": usage.ru_utime + usage.ru_stime, "maxrss_kb": usage.ru_maxrss})
    )
    return code


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[1] == "--child":
        sys.path.insert(0, str(REPO))  # the stages of this checkout, run in the scratch copy
        sys.exit(_child(sys.argv[2], sys.argv[3], sys.argv[4:]))
    sys.exit(main())

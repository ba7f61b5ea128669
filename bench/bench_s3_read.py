"""Benchmark: streaming a Parquet object from S3 in chunks, the ways score could read it.

    python bench/bench_s3_read.py [--data DIR] [--rows 200000] [--chunk-rows 10000]

The object: `rows` reviews resampled as bench_score.py does (with replacement, seed 0) from the
25k shared training reviews (DIR/train.csv.gz, default $IMDB_SHARED_DATA or ../shared/data/imdb),
with an `id` column, in row groups of 100,000 rows, uploaded to moto's S3 server on 127.0.0.1
(started here).
Each way runs in a process of its own and reads every chunk of the review and id columns:
- ranged: the shipped reader (`sources.open_stream` -> s3.RangedFile): ranged GETs pinned to
  the listed ETag, pyarrow reading pages as the batches need them;
- spool: boto3's `download_file` to a temp file, then the same page-by-page read of that file;
- whole body: one GET read into memory, then the same read of the bytes (ingest's way: fine for
  a whole-dataset read, which holds every review anyway);
- pyarrow S3FileSystem: the second S3 client score used before (pyarrow's own, in C++);
- local file: the same read of a local copy, no S3 at all (the floor).
Columns: seconds to the last chunk (after imports and set-up); peak RSS of the process (VmHWM)
and how far it rose above its RSS before the read; GETs of the object (ranged only). moto copies
the whole object to answer each ranged GET and loopback is no network, so the seconds here are
not what S3 costs; the GETs and the memory are.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

WAYS = ("ranged", "spool", "whole body", "pyarrow S3FileSystem", "local file")
BUCKET, KEY = "bench", "reviews/part-0.parquet"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.environ.get("IMDB_SHARED_DATA", str(REPO.parent / "shared" / "data" / "imdb"))
    parser.add_argument("--data", default=default, help="folder holding train.csv.gz")
    parser.add_argument("--rows", type=int, default=200_000, help="reviews in the object")
    parser.add_argument("--chunk-rows", type=int, default=10_000, help="rows per chunk read")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one way, in its own process
    args = parser.parse_args()
    if args.child:
        print(json.dumps(read(args.child, args.chunk_rows)))
        return 0
    data = Path(args.data).resolve()
    if not (data / "train.csv.gz").is_file():
        print(f"skipped: {data}/train.csv.gz not found (set IMDB_SHARED_DATA or --data)")
        return 0
    try:
        from local_services import moto_s3_server  # noqa: F401 (moto is a dev dependency)
    except ImportError:
        print("skipped: moto is not installed (make install)")
        return 0
    return compare(data, args.rows, args.chunk_rows)


def compare(data: Path, rows: int, chunk_rows: int) -> int:
    from bench_score import resample  # the same resampled input, in row groups of 100,000
    from local_services import moto_s3_server

    with tempfile.TemporaryDirectory(prefix="bench_s3_read.") as scratch, moto_s3_server() as s3:
        source = resample(data, rows, Path(scratch) / "reviews.parquet")
        client = s3.client()
        client.create_bucket(Bucket=BUCKET)
        client.upload_file(str(source), BUCKET, KEY)
        size_mb = source.stat().st_size / 2**20
        env = {
            **os.environ,
            "BENCH_LOCAL_COPY": str(source),
            "AWS_ENDPOINT_URL": s3.endpoint,
            "AWS_ACCESS_KEY_ID": s3.key_id,
            "AWS_SECRET_ACCESS_KEY": s3.secret,
            "AWS_DEFAULT_REGION": "us-east-1",
            "TMPDIR": scratch,
        }
        results = []
        for way in WAYS:
            done = subprocess.run(
                [sys.executable, __file__, "--child", way, "--chunk-rows", str(chunk_rows)],
                env=env, capture_output=True, text=True, timeout=1800, check=False,
            )  # fmt: skip
            if done.returncode != 0:
                print(f"{way}: failed: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                continue
            results.append({"way": way, **json.loads(done.stdout.strip().splitlines()[-1])})
    print(f"{rows:,} reviews, {size_mb:,.0f} MiB Parquet object, chunks of {chunk_rows:,} rows")
    print("| way | rows read | seconds | peak RSS MiB | rise MiB | GETs |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        gets = f"{r['gets']:,}" if r["gets"] is not None else "-"
        print(
            f"| {r['way']} | {r['rows']:,} | {r['seconds']:.1f} | {r['peak_mb']:,.0f}"
            f" | {r['rise_mb']:,.0f} | {gets} |"
        )
    return 0


def read(way: str, chunk_rows: int) -> dict:
    """Read every chunk one way; seconds, rows, peak and rise of this process's RSS, GETs."""
    import dataclasses
    import io

    import boto3
    import pyarrow.parquet as pq

    from steps.data.sources import Columns, open_stream, s3
    from steps.stage.config import load_params

    gets = None
    if way == "ranged":
        counted = s3.RangedFile._get

        def counting(self, start, end):
            nonlocal gets
            gets = (gets or 0) + 1
            return counted(self, start, end)

        s3.RangedFile._get = counting
    before = _rss_mb()
    started = time.perf_counter()
    rows = 0
    if way == "ranged":
        settings = dataclasses.replace(load_params(REPO / "params.yaml").ingest, sha256="")
        with open_stream(
            f"s3://{BUCKET}/{KEY}", Columns("review", "id"), settings, Path("unused"), chunk_rows
        ) as stream:
            rows = sum(len(chunk.reviews) for chunk in stream.chunks)
    else:
        if way == "local file":
            source = os.environ["BENCH_LOCAL_COPY"]
        elif way == "spool":
            handle = tempfile.NamedTemporaryFile(suffix=".parquet")  # noqa: SIM115
            boto3.client("s3").download_file(BUCKET, KEY, handle.name)
            source = handle.name
        elif way == "whole body":
            reply = boto3.client("s3").get_object(Bucket=BUCKET, Key=KEY)
            source = io.BytesIO(reply["Body"].read())
        else:
            from urllib.parse import urlsplit

            from pyarrow import fs

            endpoint = urlsplit(os.environ["AWS_ENDPOINT_URL"])
            filesystem = fs.S3FileSystem(
                endpoint_override=endpoint.netloc, scheme=endpoint.scheme, region="us-east-1"
            )
            source = filesystem.open_input_file(f"{BUCKET}/{KEY}")
        parquet = pq.ParquetFile(source, pre_buffer=False, buffer_size=1 << 20)
        for batch in parquet.iter_batches(batch_size=chunk_rows, columns=["review", "id"]):
            rows += len(batch.column("review").to_pylist())
    seconds = time.perf_counter() - started
    peak = _rss_mb("VmHWM")
    rise = peak - before
    return {"rows": rows, "seconds": seconds, "peak_mb": peak, "rise_mb": rise, "gets": gets}


def _rss_mb(field: str = "VmRSS") -> float:
    """This process's resident set now (VmRSS) or at its highest (VmHWM), in MiB. (Not
    ru_maxrss: Linux carries the parent's over fork and exec.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


if __name__ == "__main__":
    sys.exit(main())

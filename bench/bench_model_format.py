"""Benchmark: the model as pickles (before) against the model as code and data (after), on a model
fitted to the 25,000 shared reviews.

    python bench/bench_model_format.py [--runs 5]    (make bench; data: $IMDB_SHARED_DATA)

"Before" is the pyfunc/ of BEFORE_COMMIT, the last commit whose model was a cloudpickled
PythonModel plus a joblib pipeline (read with `git archive`, so this checkout is untouched);
"after" is this checkout's. Each side fits params.yaml's recipe with its own code (the same data
and seed give the same weights) and saves the model, in a child process. Then, alternating the
two sides `--runs` times, a fresh process per run (`python -I`, the project's editable install
hidden, so the model runs the code it carries) times `mlflow.pyfunc.load_model` to the first
prediction of one review (after `import mlflow`, which both pay alike), then scores 5,000 reviews
in batches of 1,000 and 500 one at a time. After refuses pickles
(MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false); before cannot, it is pickles. Figures are medians
over the runs; CPU seconds are the process's own (user+system), which other work on the machine
does not inflate as it does wall seconds; the load average is printed before and after. Aims
(issue 23): size and cold load no worse than before, speed unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import textwrap
from io import BytesIO
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BEFORE_COMMIT = "9348f0c"  # main before issue 23: the model as pickles
THREADS_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
GUARD = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"
REVIEWS = 5000
SINGLES = 500

# Fit params.yaml's recipe with the code in argv[1] and save the model to argv[2].
SAVE = textwrap.dedent(
    """
    import json, sys, time
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
    sys.path.insert(0, sys.argv[1])
    import pandas as pd, yaml
    from pyfunc import packaging
    from pyfunc.pipeline import build_pipeline
    recipe = yaml.safe_load(open(sys.argv[4]))["train"]
    keys = ("negation", "negation_view", "ngram_range", "min_df", "max_features",
            "char_ngram_range", "views", "classifier", "C", "nb_alpha")
    frame = pd.read_csv(sys.argv[3])
    pipeline = build_pipeline(**{k: recipe[k] for k in keys})
    pipeline.fit(frame["review"].tolist(), frame["sentiment"].tolist())
    started = time.perf_counter()
    packaging.save_model(pipeline, sys.argv[2])
    print(json.dumps({"save_seconds": time.perf_counter() - started}))
    """
)

# In a fresh process: load argv[1] to the first prediction, then score argv[2]'s reviews.
LOAD = textwrap.dedent(
    """
    import json, os, sys, time
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
    import mlflow, pandas as pd
    reviews = pd.read_parquet(sys.argv[2])["review"].tolist()
    wall, cpu = time.perf_counter(), time.process_time()
    model = mlflow.pyfunc.load_model(sys.argv[1])
    model.predict(pd.DataFrame({"review": reviews[:1]}))
    load_wall, load_cpu = time.perf_counter() - wall, time.process_time() - cpu
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(reviews), 1000):
        model.predict(pd.DataFrame({"review": reviews[i : i + 1000]}))
    batch_wall, batch_cpu = time.perf_counter() - wall, time.process_time() - cpu
    singles = reviews[: int(sys.argv[3])]
    cpu = time.process_time()
    for review in singles:
        model.predict(pd.DataFrame({"review": [review]}))
    single_cpu = time.process_time() - cpu
    scores = model.predict(pd.DataFrame({"review": reviews[:200]}))["score"].tolist()
    print(json.dumps({
        "load_wall": load_wall, "load_cpu": load_cpu,
        "batch_per_cpu_s": len(reviews) / batch_cpu, "batch_per_wall_s": len(reviews) / batch_wall,
        "single_per_cpu_s": len(singles) / single_cpu, "scores": scores,
        "pyfunc": sys.modules["pyfunc"].__file__,
    }))
    """
)


def data_file() -> Path:
    base = Path(os.environ.get("IMDB_SHARED_DATA", REPO.parent / "shared" / "data" / "imdb"))
    return base / "train.csv.gz"


def before_code(into: Path) -> Path | None:
    """BEFORE_COMMIT's pyfunc/ under `into`, or None where git or that commit is missing."""
    done = subprocess.run(
        ["git", "-C", str(REPO), "archive", BEFORE_COMMIT, "pyfunc"],
        capture_output=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        return None
    with tarfile.open(fileobj=BytesIO(done.stdout)) as archive:
        archive.extractall(into, filter="data")
    return into


def child(script: str, *argv: str, cwd: Path, env: dict[str, str]) -> dict:
    done = subprocess.run(
        [sys.executable, "-I", "-c", script, *argv],
        cwd=cwd, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        sys.exit(f"error: bench_model_format: a child failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def folder_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh load processes per side")
    args = parser.parse_args()
    if not data_file().is_file():
        print(f"error: bench_model_format: {data_file()} not found (set IMDB_SHARED_DATA)")
        return 1
    import pandas as pd

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-format-") as tmp:
        work = Path(tmp)
        reviews = work / "reviews.parquet"
        frame = pd.read_csv(data_file()).sample(REVIEWS, random_state=0)
        frame[["review"]].to_parquet(reviews)
        code = {"after": REPO, "before": before_code(work / "before")}
        sides = [side for side, where in code.items() if where is not None]
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PYTHON"))
        } | THREADS_ENV
        saved, runs = {}, {side: [] for side in sides}
        for side in sides:
            model = work / side / "model"
            saved[side] = child(
                SAVE, str(code[side]), str(model), str(data_file()), str(REPO / "params.yaml"),
                cwd=work, env=env,
            )  # fmt: skip
            saved[side]["model_mb"] = folder_mb(model)
            state = model / "artifacts"
            saved[side]["weights_mb"] = folder_mb(state)
        for _ in range(args.runs):
            for side in sides:
                side_env = env | ({GUARD: "false"} if side == "after" else {})
                model = work / side / "model"
                found = child(LOAD, str(model), str(reviews), str(SINGLES), cwd=work, env=side_env)
                if not found["pyfunc"].startswith(str(model)):
                    sys.exit(f"error: bench_model_format: {side} ran {found['pyfunc']}")
                runs[side].append(found)
    load_after = os.getloadavg()
    print(
        f"{data_file()}: params.yaml's recipe fitted on 25,000 reviews; {args.runs} fresh"
        f" processes per side, medians; one thread; load average {load_before[0]:.1f} before,"
        f" {load_after[0]:.1f} after"
    )
    if "before" not in sides:
        print(f"(before: git has no commit {BEFORE_COMMIT} here, so only after is measured)")
    elif runs["before"]:
        gap = max(
            abs(a - b)
            for a, b in zip(runs["before"][0]["scores"], runs["after"][0]["scores"], strict=True)
        )
        print(f"the two models' scores on 200 reviews differ by at most {gap:.1e}")

    def median(side: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[side])

    rows = [
        ("model on disk, MB", lambda s: saved[s]["model_mb"], "{:.1f}", "no more than before"),
        ("  of which fitted state, MB", lambda s: saved[s]["weights_mb"], "{:.1f}", ""),
        ("cold load to 1st prediction, wall s", lambda s: median(s, "load_wall"), "{:.2f}", ""),
        ("cold load to 1st prediction, CPU s", lambda s: median(s, "load_cpu"), "{:.2f}",
         "no more than before"),
        ("predict reviews/CPU s, batches of 1,000", lambda s: median(s, "batch_per_cpu_s"),
         "{:,.0f}", "unchanged"),
        ("predict reviews/wall s, batches of 1,000", lambda s: median(s, "batch_per_wall_s"),
         "{:,.0f}", ""),
        ("predict reviews/CPU s, 1 per call", lambda s: median(s, "single_per_cpu_s"), "{:,.0f}",
         "unchanged"),
        ("loads with pickles refused", lambda s: s == "after", "{}", "yes"),
    ]  # fmt: skip
    print(f"\n| {'figure':42} | {'before':>9} | {'after':>9} | {'after/before':>12} | aim")
    print(f"|{'-' * 44}|{'-' * 11}|{'-' * 11}|{'-' * 14}|{'-' * 22}")
    for name, value, fmt, aim in rows:
        shown = {s: fmt.format(value(s)) if s in sides else "-" for s in ("before", "after")}
        ratio = "-"
        if set(sides) == {"before", "after"} and not isinstance(value("after"), bool):
            ratio = f"{value('after') / value('before'):.2f}x"
        print(f"| {name:42} | {shown['before']:>9} | {shown['after']:>9} | {ratio:>12} | {aim}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

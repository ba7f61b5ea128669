"""Benchmark: our model vs the seed-style baseline, side by side, on the real IMDB reviews.

    python bench/bench_model.py    (make bench; data: ../shared/data/imdb-aclimdb-train or
                                    $IMDB_ACLIMDB_DATA, else ../shared/data/imdb or
                                    $IMDB_SHARED_DATA: the same 25,000 labelled reviews)

For each model, in its own child process (so peak memory is its own), on one thread:
- validation accuracy: fit on 20,000 reviews, score the other 5,000: the first of 5 folds grouped
  by movie where the reviews have movie keys (the aclImdb archive), else stratified (seed 0),
  made by the fold code tune and train's calibration use (steps.data.splits.cv_folds);
- training time (featurise + fit) and peak memory: fit on all 25,000 reviews;
- in-process prediction throughput from raw text, reviews per CPU second (process time, so other
  work on the machine does not distort it), for batches of 1,000 and one review per call;
- size of the saved model on disk.
Seed-style baseline: per-word NLTK Porter stemming and sklearn's English stop-word list, a
5,000-feature bag of words, logistic regression (what the project started from).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
REPO_ROOT = Path(__file__).resolve().parents[1]
ARCHIVE_NAME = "aclImdb-train.tar.gz"  # the official train folder, movie URLs included
VAL_SIZE, SEED = 5000, 0
TARGETS = {  # from the project brief
    # 0.928 was set on a random split, which reads high; a fold grouped by movie reads ~2 points
    # lower, as the official test does
    "val_accuracy": ">= 0.928 on a random split; ~0.92 official",
    "train_seconds": "< 60",
    "peak_mb": "< 3000",
    "reviews_per_cpu_s_batch": ">= 2500",
    "model_mb": "< 100",
}


def data_dir() -> Path:
    return Path(os.environ.get("IMDB_SHARED_DATA", REPO_ROOT.parent / "shared" / "data" / "imdb"))


def archive() -> Path:
    default = REPO_ROOT.parent / "shared" / "data" / "imdb-aclimdb-train"
    return Path(os.environ.get("IMDB_ACLIMDB_DATA", default)) / ARCHIVE_NAME


def prepare(cache: Path) -> Path:
    """The labelled reviews as cache/labelled.parquet, read once for both children: from the
    aclImdb archive (with each review's movie) where it is, else train.csv.gz; the file read."""
    import dataclasses

    import pandas as pd

    sys.path.insert(0, str(REPO_ROOT))
    if archive().is_file():
        from steps.data.sources import Labels, load
        from steps.stage.config import load_params

        ingest = dataclasses.replace(
            load_params(REPO_ROOT / "params.yaml").ingest, source=str(archive())
        )
        frame, source = load(ingest, cache, labels=Labels.REQUIRED).train, archive()
    else:
        source = data_dir() / "train.csv.gz"
        frame = pd.read_csv(source)
    frame.to_parquet(cache / "labelled.parquet", index=False)
    return source


def validation_rows(labels, movies) -> tuple[list[int], list[int], str]:
    """Rows to fit on and to validate on: the first of len / VAL_SIZE folds, grouped by movie
    where there are movie keys (tune's and calibration's folds, one place)."""
    from steps.data.splits import cv_folds

    folds, how = cv_folds(labels, movies, round(len(labels) / VAL_SIZE), SEED)
    return folds[0][0].tolist(), folds[0][1].tolist(), how


class SeedCleaner:
    """The seed's per-word cleaning: lower case, strip tags, drop stop words, Porter-stem."""

    def __init__(self):
        from nltk.stem import PorterStemmer
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        self.stemmer, self.stop_words = PorterStemmer(), ENGLISH_STOP_WORDS

    def __call__(self, text: str) -> str:
        import re

        words = re.findall(r"[a-z]+", re.sub(r"<[^>]+>", " ", text.lower()))
        return " ".join(self.stemmer.stem(w) for w in words if w not in self.stop_words)


def seed_style_pipeline():
    """The seed's recipe: per-word stemming + stop words removed, 5,000-word BoW, LR."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return make_pipeline(
        CountVectorizer(preprocessor=SeedCleaner(), max_features=5000),
        LogisticRegression(max_iter=1000),
    )


def measure(which: str, cache: Path) -> dict:
    """Run in a child process: every figure for one model."""
    import resource
    import time

    import joblib
    import numpy as np
    import pandas as pd

    sys.path.insert(0, str(REPO_ROOT))
    from pyfunc.contract import TEXT_COLUMN
    from pyfunc.model import SentimentModel
    from pyfunc.packaging import save_model
    from steps.fitting.recipe import pipeline_for
    from steps.stage.config import load_params

    frame = pd.read_parquet(cache / "labelled.parquet")
    reviews, labels = frame["review"].tolist(), frame["sentiment"].to_numpy()
    movies = frame["movie"].tolist() if "movie" in frame.columns else None
    fit_rows, val_rows, _ = validation_rows(labels, movies)
    fit_x, val_x = [reviews[i] for i in fit_rows], [reviews[i] for i in val_rows]
    fit_y, val_y = labels[fit_rows], labels[val_rows]

    def build():
        return (
            pipeline_for(load_params(REPO_ROOT / "params.yaml").train)
            if which == "ours"
            else seed_style_pipeline()
        )

    pipeline = build().fit(fit_x, fit_y)
    positive = list(pipeline.classes_).index("positive")
    accuracy = float(
        np.mean((pipeline.predict_proba(val_x)[:, positive] > 0.5) == (val_y == "positive"))
    )

    # throughput: 5,000 raw reviews, in batches of 1,000 and one per call, CPU time
    started = time.process_time()
    for i in range(0, VAL_SIZE, 1000):
        pipeline.predict_proba(val_x[i : i + 1000])
    batch_rate = VAL_SIZE / (time.process_time() - started)
    singles = val_x[:500]
    started = time.process_time()
    for text in singles:
        pipeline.predict_proba([text])
    single_rate = len(singles) / (time.process_time() - started)
    pyfunc_rate = None
    if which == "ours":  # the same through the PythonModel adapter (DataFrame in, DataFrame out)
        model = SentimentModel(pipeline)
        started = time.process_time()
        for i in range(0, VAL_SIZE, 1000):
            model.predict(None, pd.DataFrame({TEXT_COLUMN: val_x[i : i + 1000]}))
        pyfunc_rate = VAL_SIZE / (time.process_time() - started)

    # training on all 25,000 reviews: wall and CPU time, peak memory, size on disk
    del pipeline
    wall, cpu = time.perf_counter(), time.process_time()
    pipeline = build().fit(reviews, labels)
    train_seconds, train_cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with tempfile.TemporaryDirectory() as tmp:
        if which == "ours":
            save_model(pipeline, Path(tmp) / "model")
        else:
            joblib.dump(pipeline, Path(tmp) / "model.joblib")
        model_mb = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file()) / 1e6
    return {
        "val_accuracy": accuracy,
        "train_seconds": train_seconds,
        "train_cpu_seconds": train_cpu,
        "peak_mb": peak_mb,
        "reviews_per_cpu_s_batch": batch_rate,
        "reviews_per_cpu_s_single": single_rate,
        "pyfunc_reviews_per_cpu_s_batch": pyfunc_rate,
        "model_mb": model_mb,
    }


def run_child(which: str, cache: Path) -> dict:
    env = {**os.environ, **dict.fromkeys(THREAD_VARIABLES, "1")}
    done = subprocess.run(
        [sys.executable, __file__, "--child", which, str(cache)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        sys.exit(f"error: bench_model: the {which} child failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    if not archive().is_file() and not (data_dir() / "train.csv.gz").is_file():
        print(
            f"error: bench_model: neither {archive()} nor {data_dir()}/train.csv.gz found"
            " (set IMDB_ACLIMDB_DATA or IMDB_SHARED_DATA)"
        )
        return 1
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        source = prepare(Path(tmp))
        frame = pd.read_parquet(Path(tmp) / "labelled.parquet")
        movies = frame["movie"].tolist() if "movie" in frame.columns else None
        fit_rows, val_rows, how = validation_rows(frame["sentiment"].tolist(), movies)
        print(
            f"IMDB {source}: fit {len(fit_rows):,} / validate {len(val_rows):,} (fold 1 of"
            f" {how}, seed {SEED}); train on {len(frame):,}"
        )
        print("one thread per model; throughput in reviews per CPU second (process time)")
        ours, seed = run_child("ours", Path(tmp)), run_child("seed", Path(tmp))
    rows = [
        ("val_accuracy", "validation accuracy", "{:.2%}"),
        ("train_seconds", "train on 25k, wall s", "{:.1f}"),
        ("train_cpu_seconds", "train on 25k, CPU s", "{:.1f}"),
        ("peak_mb", "peak memory, MB", "{:,.0f}"),
        ("reviews_per_cpu_s_batch", "predict reviews/s, batches of 1,000", "{:,.0f}"),
        ("reviews_per_cpu_s_single", "predict reviews/s, 1 per call", "{:,.0f}"),
        ("pyfunc_reviews_per_cpu_s_batch", "pyfunc reviews/s, batches of 1,000", "{:,.0f}"),
        ("model_mb", "model on disk, MB", "{:.1f}"),
    ]
    print(f"\n| {'figure':38} | {'ours':>10} | {'seed-style':>10} | {'ours/seed':>9} | target")
    print(f"|{'-' * 40}|{'-' * 12}|{'-' * 12}|{'-' * 11}|{'-' * 40}")
    for key, name, fmt in rows:
        a, b = ours.get(key), seed.get(key)
        shown_b = fmt.format(b) if b is not None else "-"
        ratio = f"{a / b:.2f}x" if a is not None and b else "-"
        target = TARGETS.get(key, "")
        print(f"| {name:38} | {fmt.format(a):>10} | {shown_b:>10} | {ratio:>9} | {target}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(measure(sys.argv[2], Path(sys.argv[3]))))
        sys.exit(0)
    sys.exit(main())

"""Benchmark: today's recipe vs self-training on the 50,000 unlabeled reviews, on splits grouped
by movie (issue 17), and what a self-trained fit costs against a plain one (issue 26).

    python bench/bench_self_training.py   (make bench; data: ../shared/data/imdb-aclimdb-train
                                           or $IMDB_ACLIMDB_DATA, the aclImdb train archive)

The 25,000 labelled reviews (with their movies) and the 50,000 unlabeled ones are read once by
the ingest library; both recipes come from params.yaml `train` (today's = `unlabeled: none`) and
are fitted by the train stage's own code (steps.fitting.recipe.fit), without the unlabeled
reviews that copy a held-out one (as ingest leaves out copies of test reviews). Every fit runs
in its own child process, at most two at once.
- grouped validation: the train stage's split (`train.val_split: grouped`, the first of
  round(1 / val_fraction) StratifiedGroupKFold folds, seed `train.seed`), fit on the rest;
- 5-fold grouped CV: the same splitter's 5 folds (the first is the grouped validation), mean,
  min..max, and on how many folds self-training was better;
- a random stratified split (val_fraction, seed): the split train used before, for contrast;
- fit on all 25,000 (+ 50,000 unlabeled) alone on the machine: wall and CPU seconds;
- prediction from raw text in batches of 1,000, reviews per CPU second on one thread, and the
  size of the saved model on disk.
The machine may be shared: the load average is printed before and after, and CPU seconds are
given beside wall seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
REPO_ROOT = Path(__file__).resolve().parents[1]
ARCHIVE_NAME = "aclImdb-train.tar.gz"
CV_FOLDS = 5
RECIPES = ("today", "self-training")
AIMS = {
    "grouped_val": ">= +0.3 points",
    "fit_seconds": "< 120 on 2 cores",
    "fit_cpu_seconds": "<= 2x (issue 26)",
    "reviews_per_cpu_s": ">= 2,500, unchanged",
    "model_mb": "< 100, unchanged",
}


def data_file() -> Path:
    default = REPO_ROOT.parent / "shared" / "data" / "imdb-aclimdb-train"
    return Path(os.environ.get("IMDB_ACLIMDB_DATA", default)) / ARCHIVE_NAME


def load_avg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def config(recipe: str):
    import dataclasses

    from steps.stage.config import load_params

    cfg = load_params(REPO_ROOT / "params.yaml").train
    return dataclasses.replace(cfg, unlabeled="none") if recipe == "today" else cfg


def prepare(cache: Path) -> dict:
    """Read the archive once into Parquet files the children read; the splits as row indices."""
    import dataclasses

    import numpy as np
    from sklearn.model_selection import StratifiedGroupKFold

    from steps.data.sources import Labels, load
    from steps.data.splits import validation_split
    from steps.stage.config import load_params

    ingest = dataclasses.replace(
        load_params(REPO_ROOT / "params.yaml").ingest, source=str(data_file())
    )
    loaded = load(ingest, cache, labels=Labels.REQUIRED)
    loaded.train.to_parquet(cache / "labelled.parquet", index=False)
    loaded.unlabeled.to_parquet(cache / "unlabeled.parquet", index=False)
    labels, movies = loaded.train["sentiment"].to_numpy(), loaded.train["movie"].to_numpy()
    cfg = config("today")
    rows = np.arange(len(labels))
    splitter = StratifiedGroupKFold(CV_FOLDS, shuffle=True, random_state=cfg.seed)
    folds = [val.tolist() for _, val in splitter.split(rows, labels, groups=movies)]
    grouped = validation_split(labels, movies, cfg)[1].tolist()
    random = validation_split(labels, None, dataclasses.replace(cfg, val_split="random"))[1]
    return {
        "folds": folds,
        "grouped_is_fold_1": grouped == folds[0],
        "random": random.tolist(),
        "labelled": len(labels),
        "unlabeled": len(loaded.unlabeled),
        "movies": len(set(movies)),
    }


def measure(job: dict) -> dict:
    """In a child process: fit one recipe, holding out `job["held_out"]` rows (none = full)."""
    import time

    import numpy as np
    import pandas as pd

    from pyfunc.packaging import save_model
    from steps.fitting.recipe import fit

    cache = Path(job["cache"])
    frame = pd.read_parquet(cache / "labelled.parquet")
    unlabeled = pd.read_parquet(cache / "unlabeled.parquet")["review"].tolist()
    cfg = config(job["recipe"])
    held_out = np.zeros(len(frame), dtype=bool)
    held_out[job["held_out"]] = True
    fit_part, val = frame[~held_out], frame[held_out]
    # as ingest does for the test split: no unlabeled copy of a held-out review is learnt from
    held_out_texts = set(val["review"])
    unlabeled = [text for text in unlabeled if text not in held_out_texts]
    pipeline, wall, cpu = fit(
        cfg,
        fit_part["review"].tolist(),
        fit_part["sentiment"].tolist(),
        unlabeled if cfg.unlabeled == "self_training" else None,
    )
    result = {"fit_seconds": wall, "fit_cpu_seconds": cpu}
    if len(val):
        result["accuracy"] = float(
            np.mean(pipeline.predict(val["review"].tolist()) == val["sentiment"])
        )
        return result
    texts = frame["review"].tolist()[:5000]
    started = time.process_time()
    for i in range(0, len(texts), 1000):
        pipeline.predict_proba(texts[i : i + 1000])
    result["reviews_per_cpu_s"] = len(texts) / (time.process_time() - started)
    with tempfile.TemporaryDirectory() as tmp:
        save_model(pipeline, Path(tmp) / "model")
        files = [f for f in Path(tmp).rglob("*") if f.is_file()]
        result["model_mb"] = sum(f.stat().st_size for f in files) / 1e6
    return result


def run_child(job: dict) -> dict:
    env = {**os.environ, **dict.fromkeys(THREAD_VARIABLES, "1")}  # BLAS on one thread
    done = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(job)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        sys.exit(
            f"error: bench_self_training: a child failed ({job['recipe']}):\n{done.stderr[-2000:]}"
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    if not data_file().is_file():
        print(f"error: bench_self_training: {data_file()} not found (set IMDB_ACLIMDB_DATA)")
        return 1
    sys.path.insert(0, str(REPO_ROOT))
    print(f"aclImdb train archive {data_file()}; load average at start {load_avg()}")
    with tempfile.TemporaryDirectory() as tmp:
        facts = prepare(Path(tmp))
        print(
            f"{facts['labelled']:,} labelled reviews of {facts['movies']:,} movies,"
            f" {facts['unlabeled']:,} unlabeled; grouped validation = fold 1 of {CV_FOLDS}:"
            f" {facts['grouped_is_fold_1']}"
        )
        jobs = [
            {"cache": tmp, "recipe": recipe, "held_out": held_out, "name": name}
            for recipe in RECIPES
            for name, held_out in [
                *((f"fold{k}", fold) for k, fold in enumerate(facts["folds"], 1)),
                ("random", facts["random"]),
            ]
        ]
        with ThreadPoolExecutor(max_workers=2) as pool:  # two held-out fits at once
            results = pool.map(run_child, jobs)
            held = dict(zip([(j["recipe"], j["name"]) for j in jobs], results, strict=True))
        load_mid = load_avg()
        full = {r: run_child({"cache": tmp, "recipe": r, "held_out": []}) for r in RECIPES}
    print(f"load average before the full fits {load_mid}, after {load_avg()}")
    print_table(held, full)
    return 0


def print_table(held: dict, full: dict) -> None:
    import numpy as np

    def accuracies(recipe: str) -> np.ndarray:
        return np.array([held[recipe, f"fold{k}"]["accuracy"] for k in range(1, CV_FOLDS + 1)])

    def cv_seconds(recipe: str) -> float:
        return float(np.mean([held[recipe, f"fold{k}"]["fit_seconds"] for k in folds]))

    folds = range(1, CV_FOLDS + 1)
    today, selft = accuracies("today"), accuracies("self-training")
    rows = [
        ("grouped validation accuracy (fold 1)", today[0], selft[0], "pct", "grouped_val"),
        (f"{CV_FOLDS}-fold grouped CV accuracy, mean", today.mean(), selft.mean(), "pct", ""),
        (f"{CV_FOLDS}-fold grouped CV, lowest fold", today.min(), selft.min(), "pct", ""),
        (f"{CV_FOLDS}-fold grouped CV, highest fold", today.max(), selft.max(), "pct", ""),
        ("random stratified split accuracy", held["today", "random"]["accuracy"],
         held["self-training", "random"]["accuracy"], "pct", ""),
        ("fit on all, wall s (alone)", full["today"]["fit_seconds"],
         full["self-training"]["fit_seconds"], "s", "fit_seconds"),
        ("fit on all, CPU s", full["today"]["fit_cpu_seconds"],
         full["self-training"]["fit_cpu_seconds"], "s", "fit_cpu_seconds"),
        ("fit in CV (2 at once), wall s, mean", cv_seconds("today"),
         cv_seconds("self-training"), "s", ""),
        ("predict reviews/CPU s, batches of 1,000", full["today"]["reviews_per_cpu_s"],
         full["self-training"]["reviews_per_cpu_s"], "rate", "reviews_per_cpu_s"),
        ("model on disk, MB", full["today"]["model_mb"], full["self-training"]["model_mb"],
         "mb", "model_mb"),
    ]  # fmt: skip
    fmt = {"pct": "{:.2%}", "s": "{:.1f}", "rate": "{:,.0f}", "mb": "{:.1f}"}
    print(f"\n| {'figure':42} | {'today':>9} | {'self-training':>13} | {'difference':>11} | aim")
    print(f"|{'-' * 44}|{'-' * 11}|{'-' * 15}|{'-' * 13}|{'-' * 22}")
    for name, a, b, kind, aim in rows:
        diff = f"{(b - a) * 100:+.2f} pts" if kind == "pct" else f"{b / a:.2f}x"
        shown_a, shown_b = fmt[kind].format(a), fmt[kind].format(b)
        row = f"| {name:42} | {shown_a:>9} | {shown_b:>13} | {diff:>11} | {AIMS.get(aim, '')}"
        print(row.rstrip())
    better = int(np.sum(selft > today))
    gains = ", ".join(f"{d:+.2f}" for d in (selft - today) * 100)
    print(
        f"\nself-training better on {better} of {CV_FOLDS} grouped folds; per fold: {gains} points"
    )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        sys.path.insert(0, str(REPO_ROOT))
        print(json.dumps(measure(json.loads(sys.argv[2]))))
        sys.exit(0)
    sys.exit(main())

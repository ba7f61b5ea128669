"""Benchmark: the label-free accuracy estimate (mean max(p, 1 - p) of calibrated scores) against
the true accuracy on windows of 2,000 held-out reviews, unshifted and shifted (issue 24).

    python bench/bench_quality_estimate.py   (make bench; data: ../shared/data/imdb-aclimdb-train
                                               or $IMDB_ACLIMDB_DATA, the aclImdb train archive)

The 25,000 labelled reviews with their movies (urls_*.txt) and star ratings (file names
`<id>_<rating>.txt`) are cut into 5 folds grouped by movie (StratifiedGroupKFold, seed 0); for
HELD_OUT_FOLDS of them the recipe of params.yaml `train` (labelled reviews only, to keep the bench
short) is fitted on the other four by the train stage's own code (steps.fitting.recipe.fit) and
calibrated as train calibrates (steps.train.calibrate: out-of-fold scores, the lower-ECE method).
The held-out reviews of those folds are the pool windows are drawn from (without replacement within
a window, seed 0); the evaluated accuracy is the pool's, as evaluate measures the test split's.
Kinds of window:
- unshifted: any pool reviews (WINDOWS_UNSHIFTED windows; the false alarms are counted on them);
- shifted by what the text shows: the longest or shortest 30%, those with 3+ `<br />` tags, or
  the 30% with most words outside the 10,000 most frequent of the training folds;
- shifted by hidden quality: only ratings 4 and 7 (mild), only 1 and 10 (extreme): the text is
  of the same kind, the task is harder or easier.
An alarm is an estimate more than monitor.max_estimated_accuracy_drop under the evaluated accuracy.
Also measured: ECE (15 bins) of the pool before and after calibration, the train stage's CPU
seconds without and with calibration (steps.train.train_model on all 25,000, labelled only), and
the prediction CPU time with and without the calibrator (2,000 reviews, median of 9).
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import re
import sys
import tarfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

ARCHIVE_NAME = "aclImdb-train.tar.gz"
WINDOW = 2000
HELD_OUT_FOLDS = 2  # of 5: 10,000 held-out reviews, two fitted models
WINDOWS_UNSHIFTED = 100
WINDOWS_SHIFTED = 20
_REVIEW = re.compile(r"train/(pos|neg)/(\d+)_(\d+)\.txt$")
_URLS = re.compile(r"train/urls_(pos|neg)\.txt$")


def data_file() -> Path:
    default = REPO_ROOT.parent / "shared" / "data" / "imdb-aclimdb-train"
    return Path(os.environ.get("IMDB_ACLIMDB_DATA", default)) / ARCHIVE_NAME


def load_avg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def read_reviews(path: Path) -> dict[str, np.ndarray]:
    """Text, label, star rating and movie of every labelled review (the aclImdb reader keeps no
    ratings, so the archive is read here)."""
    rows, urls = [], {}
    with gzip.open(path, "rb") as unzipped, tarfile.open(fileobj=unzipped, mode="r|") as archive:
        for member in archive:
            if not member.isfile():
                continue
            if found := _URLS.search(member.name):
                urls[found[1]] = archive.extractfile(member).read().decode().splitlines()
            elif found := _REVIEW.search(member.name):
                text = archive.extractfile(member).read().decode("utf-8")
                rows.append((found[1], int(found[2]), int(found[3]), text))
    movie = [urls[folder][i].split("/")[4] for folder, i, _, _ in rows]
    return {
        "review": np.array([r[3] for r in rows], dtype=object),
        "sentiment": np.array(["positive" if r[0] == "pos" else "negative" for r in rows]),
        "rating": np.array([r[2] for r in rows]),
        "movie": np.array(movie),
    }


def main() -> None:
    from sklearn.model_selection import StratifiedGroupKFold

    from pyfunc.model import score_reviews
    from steps.fitting.recipe import fit
    from steps.measure.calibration import expected_calibration_error
    from steps.stage.config import load_params
    from steps.train import calibrate, train_model

    params = load_params(REPO_ROOT / "params.yaml")
    cfg = dataclasses.replace(params.train, unlabeled="none")
    bound = params.monitor.max_estimated_accuracy_drop
    print(f"load average before: {load_avg()}")
    data = read_reviews(data_file())
    n = len(data["review"])
    folds = StratifiedGroupKFold(5, shuffle=True, random_state=0).split(
        np.arange(n), data["sentiment"], groups=data["movie"]
    )
    pool, raw, calibrated, methods = [], [], [], []
    speed = None
    for fit_rows, held in list(folds)[:HELD_OUT_FOLDS]:
        texts = data["review"][fit_rows].tolist()
        labels = data["sentiment"][fit_rows].tolist()
        pipeline, _, _ = fit(cfg, texts, labels)
        calibrator, _ = calibrate(cfg, texts, labels, data["movie"][fit_rows].tolist(), None)
        methods.append(calibrator.method)
        scores = score_reviews(pipeline, data["review"][held].tolist())["score"].to_numpy()
        pool.append(held)
        raw.append(scores)
        calibrated.append(calibrator(scores))
        if speed is None:
            speed = prediction_speed(pipeline, calibrator, data["review"][held][:WINDOW].tolist())
    held = np.concatenate(pool)
    raw, calibrated = np.concatenate(raw), np.concatenate(calibrated)
    positive = data["sentiment"][held] == "positive"
    evaluated = accuracy(calibrated, positive)
    subsets = shifted_subsets(data, held)
    rng = np.random.default_rng(0)
    print(
        f"pool: {len(held):,} held-out reviews ({HELD_OUT_FOLDS} of 5 folds by movie),"
        f" calibration {'/'.join(methods)}, evaluated accuracy {evaluated:.4f}"
    )
    print(
        f"ECE (15 bins) on the pool: raw {expected_calibration_error(positive, raw):.4f},"
        f" calibrated {expected_calibration_error(positive, calibrated):.4f}"
    )
    print("| kind | windows | true accuracy | estimate | mean abs error | worst abs error"
          " | raw estimate's mean abs error | alarms |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for kind, rows in subsets.items():
        count = WINDOWS_UNSHIFTED if kind == "unshifted" else WINDOWS_SHIFTED
        truth, estimate, raw_estimate = [], [], []
        for _ in range(count):
            pick = rng.choice(rows, size=min(WINDOW, len(rows)), replace=False)
            truth.append(accuracy(calibrated[pick], positive[pick]))
            estimate.append(float(np.maximum(calibrated[pick], 1 - calibrated[pick]).mean()))
            raw_estimate.append(float(np.maximum(raw[pick], 1 - raw[pick]).mean()))
        truth, estimate, raw_estimate = map(np.array, (truth, estimate, raw_estimate))
        error = np.abs(estimate - truth)
        alarms = int(np.sum(evaluated - estimate > bound))
        print(
            f"| {kind} ({len(rows):,} reviews) | {count} | {truth.mean():.4f}"
            f" | {estimate.mean():.4f}"
            f" | {error.mean() * 100:.2f} pts | {error.max() * 100:.2f} pts"
            f" | {np.abs(raw_estimate - truth).mean() * 100:.2f} pts | {alarms} of {count} |"
        )
    print(
        f"prediction, CPU ms per {WINDOW:,} reviews (median of 9, interleaved): raw"
        f" {speed[0]:.0f}, calibrated {speed[1]:.0f} (ratio {speed[1] / speed[0]:.3f});"
        f" the calibrator alone on one score: {speed[2]:.0f} us"
    )
    cpu = {}
    for calibration in ("none", params.train.calibration):
        started = time.process_time()
        train_model(
            data["review"].tolist(), data["sentiment"].tolist(),
            dataclasses.replace(cfg, calibration=calibration), data["movie"].tolist(),
        )  # fmt: skip
        cpu[calibration] = time.process_time() - started
    print(
        f"train stage on 25,000 (labelled only, validation fit + refit): CPU s without"
        f" calibration {cpu['none']:.0f}, with ({cfg.calibration_folds} folds)"
        f" {cpu[params.train.calibration]:.0f} (x{cpu[params.train.calibration] / cpu['none']:.2f})"
    )
    print(f"load average after: {load_avg()}")


def accuracy(scores: np.ndarray, positive: np.ndarray) -> float:
    right = (scores > 0.5) == positive
    right[scores == 0.5] = False
    return float(right.mean())


def shifted_subsets(data: dict, held: np.ndarray) -> dict[str, np.ndarray]:
    """Pool positions of each kind of window."""
    texts, ratings = data["review"][held], data["rating"][held]
    lengths = np.array([len(t) for t in texts])
    markup = np.array([t.count("<br") for t in texts])
    counts = Counter(w for t in data["review"] for w in re.findall(r"[a-z']+", t.lower()))
    common = {w for w, _ in counts.most_common(10_000)}
    rare = np.array([_rare_share(t, common) for t in texts])
    positions = np.arange(len(held))
    return {
        "unshifted": positions,
        "text: long (top 30% length)": positions[lengths >= np.quantile(lengths, 0.7)],
        "text: short (bottom 30% length)": positions[lengths <= np.quantile(lengths, 0.3)],
        "text: markup (3+ <br />)": positions[markup >= 3],
        "text: rare vocabulary (top 30%)": positions[rare >= np.quantile(rare, 0.7)],
        "hidden: mild (ratings 4 and 7)": positions[np.isin(ratings, [4, 7])],
        "hidden: extreme (ratings 1 and 10)": positions[np.isin(ratings, [1, 10])],
    }


def _rare_share(text: str, common: set[str]) -> float:
    words = re.findall(r"[a-z']+", text.lower())
    return sum(w not in common for w in words) / max(len(words), 1)


def prediction_speed(pipeline, calibrator, reviews: list[str]) -> tuple[float, float, float]:
    """CPU ms per call of `reviews` without and with the calibrator (medians of 9, interleaved
    so that the machine's load falls on both alike), and CPU us of the calibrator alone on one
    score (what it adds to a one-review request)."""
    from pyfunc.model import score_reviews

    raw, calibrated = [], []
    for _ in range(9):
        for use, times in ((None, raw), (calibrator, calibrated)):
            started = time.process_time()
            score_reviews(pipeline, reviews, calibrator=use)
            times.append((time.process_time() - started) * 1000)
    one = np.array([0.7])
    started = time.process_time()
    for _ in range(2000):
        calibrator(one)
    alone = (time.process_time() - started) / 2000 * 1e6
    return float(np.median(raw)), float(np.median(calibrated)), alone


if __name__ == "__main__":
    main()

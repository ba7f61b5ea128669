"""Helpers for tests: small review data written by the tests themselves, free loopback ports, a
local HTTP server.

The reviews are varied enough that validation passes (unique, balanced, realistic lengths) and a
real model can learn them, but they are synthetic: no test depends on ../shared.
"""

from __future__ import annotations

import http.server
import importlib
import importlib.util
import json
import os
import random
import shutil
import socket
import subprocess
import tarfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pandas as pd
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# What an MLflow project needs to run (anything else in the repo is not copied).
PROJECT_FILES = ("MLproject", "conda.yaml", "params.yaml", "steps", "pyfunc", "expectations")


def checkout_files(pattern: str) -> list[Path]:
    """The repository's own files matching `pattern` (tracked or not ignored), sorted: a store,
    venv or pipeline output a run left in the checkout is not the project's (a model's copy of
    pyfunc/README.md under mlruns/ is not a README to check). Outside a git checkout, every match
    outside the .gitignore'd top-level folders."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "--", f":(glob)**/{pattern}"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        ignored = {".venv", "mlruns", "mlartifacts", "data", "models", "reports", "build"}
        return sorted(
            p
            for p in REPO_ROOT.rglob(pattern)
            if p.relative_to(REPO_ROOT).parts[0].split("-")[0] not in ignored
        )
    return sorted({REPO_ROOT / name for name in listed if (REPO_ROOT / name).is_file()})


_POSITIVE = [
    "wonderful",
    "brilliant",
    "moving",
    "superb",
    "delightful",
    "excellent",
    "great",
    "touching",
    "funny",
    "gripping",
    "beautiful",
    "masterful",
    "charming",
    "memorable",
]
_NEGATIVE = [
    "awful",
    "boring",
    "terrible",
    "dull",
    "clumsy",
    "dreadful",
    "bad",
    "tedious",
    "pointless",
    "horrible",
    "lifeless",
    "predictable",
    "weak",
    "painful",
]
_NEUTRAL = [
    "the plot",
    "the acting",
    "the script",
    "the ending",
    "the soundtrack",
    "the director",
    "the cast",
    "the pacing",
    "the dialogue",
    "the camera work",
    "the story",
    "the lead actor",
]
_TEMPLATES = [
    "I thought {n} was {a}.",
    "Honestly, {n} felt {a} from start to finish.",
    "{N} is {a}, and {n2} is {a2} too.",
    "What a {a} film; {n} was {a2}.<br /><br />Would say the same again.",
    "My friends found {n} {a}, and I agree: {a2}!",
]


def make_reviews(n: int, seed: int = 0, positive_share: float = 0.5) -> pd.DataFrame:
    """`n` unique labelled reviews (columns review, sentiment) with the given positive share."""
    rng = random.Random(seed)
    rows, seen = [], set()
    n_pos = round(n * positive_share)
    while len(rows) < n:
        label = "positive" if len(rows) < n_pos else "negative"
        words = _POSITIVE if label == "positive" else _NEGATIVE
        text = rng.choice(_TEMPLATES).format(
            n=rng.choice(_NEUTRAL),
            N=rng.choice(_NEUTRAL).capitalize(),
            n2=rng.choice(_NEUTRAL),
            a=rng.choice(words),
            a2=rng.choice(words),
        )
        text = f"{text} Review #{len(rows)} of {rng.randint(1, 10**6)}."
        if text not in seen:
            seen.add(text)
            rows.append((text, label))
    frame = pd.DataFrame(rows, columns=["review", "sentiment"])
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def point_mlflow_at(patch, uri: str) -> None:
    """Within a MonkeyPatch context: MLflow uses `uri` and nothing else of the caller's
    MLFLOW_*/DAGSHUB_* environment (for session fixtures, which cannot use `tracking_uri`)."""
    patch.setenv("MLFLOW_TRACKING_URI", uri)
    for name in [k for k in os.environ if k.startswith(("MLFLOW_", "DAGSHUB_"))]:
        if name != "MLFLOW_TRACKING_URI":
            patch.delenv(name)


def stage_env(**extra: str) -> dict[str, str]:
    """The environment for a stage started as its own process from a scratch folder: this
    checkout's code, none of the caller's MLflow or DagsHub settings, then `extra`."""
    steering = ("MLFLOW_", "_MLFLOW_", "DAGSHUB_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(steering)}
    return {**env, "PYTHONPATH": str(REPO_ROOT), **extra}


# Set by .ci/run: a test whose system package or data is missing fails there instead of skipping.
REQUIRE_SYSTEM_PACKAGES = "IMDB_REQUIRE_SYSTEM_PACKAGES"
REQUIRE_SHARED_DATA = "IMDB_REQUIRE_SHARED_DATA"
SQLITE_ODBC_DRIVER = "SQLite3"  # libsqliteodbc's driver, registered with unixODBC by apt


def unavailable(reason: str, required_by: str = REQUIRE_SYSTEM_PACKAGES) -> NoReturn:
    """Skip (at module level too) for a missing system package or data; fail when `required_by`
    is set in the environment, as CI sets it, so CI never passes by skipping."""
    if os.environ.get(required_by):
        pytest.fail(f"{reason}; {required_by} is set, so this is an error", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def import_system_module(name: str, apt: str) -> ModuleType:
    """Import a Python module that needs a system library, or skip naming the apt packages.

    Any ImportError counts, not only ModuleNotFoundError: pyodbc installs from a wheel but its
    import raises `ImportError: libodbc.so.2: cannot open shared object file` without unixODBC,
    which pytest.importorskip (pytest >= 9) re-raises as a collection error.
    """
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        first = " ".join(str(exc).split())
        unavailable(f"cannot import {name} ({first}): apt-get install {apt}")


def small_data_project(project: Path, rows: int = 5200, unlabeled: int = 0) -> Path:
    """Point a project copy's params.yaml at small synthetic data written there: a CSV file, or
    with `unlabeled` reviews an aclImdb folder (train only, movie URLs, train/unsup); the source.

    5,200 reviews leave >= 1,000 per split after the 80/20 carve (validate.min_rows).
    """
    import yaml

    if unlabeled:
        reviews = {"train": make_reviews(rows, seed=11)}
        source = write_aclimdb(project / "src", reviews, unlabeled=make_unlabeled(unlabeled))
    else:
        source = project / "reviews.csv"
        make_reviews(rows, seed=11).to_csv(source, index=False)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["ingest"]["source"] = str(source)
    # The synthetic reviews carry none of the behavioural suites' phrases.
    params["evaluate"]["min_check_pass_rate"] = 0.0
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return source


def pod_env(slot: str = "blue") -> dict[str, str]:
    """The plain environment variables (name: value) the serving pods of k8s/ set."""
    import yaml

    deployment = yaml.safe_load((REPO_ROOT / "k8s" / f"deployment-{slot}.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def serving_limits(slot: str = "blue") -> dict[str, str]:
    """The model's request limits as the pods set them (IMDB_MAX_*: pyfunc/model.py)."""
    return {k: v for k, v in pod_env(slot).items() if k.startswith("IMDB_MAX_")}


PICKLE_GUARD = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"


def serving_env(slot: str = "blue") -> dict[str, str]:
    """What the pods set for the model itself: its request limits, and pickles refused."""
    return {**serving_limits(slot), PICKLE_GUARD: pod_env(slot)[PICKLE_GUARD]}


def reviews_with_ids(n: int, seed: int) -> pd.DataFrame:
    """`make_reviews` with an `id` column first: 1000, 1001, ... (int64)."""
    frame = make_reviews(n, seed=seed)
    frame.insert(0, "id", range(1000, 1000 + n))
    frame["id"] = frame["id"].astype("int64")
    return frame


def spark_missing() -> str | None:
    """Why engine=spark cannot run here (and how to fix it), or None."""
    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed: make install-spark (pip install '.[spark]')"
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        return "Java is not installed: apt-get install openjdk-17-jre-headless"
    return None


def make_dry_run(*args: str) -> str:
    """What `make -n ARGS` would run, one command per line, as a user's own shell prints it:
    without the directory lines and flags a make the tests run under (CI's) hands down."""
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    return subprocess.run(
        ["make", "--no-print-directory", "-n", *args], cwd=REPO_ROOT, env=env,
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


REVIEWS_PER_MOVIE = 3  # in write_aclimdb: review ids 0-2 of a split are about one movie, ...
_MOVIE_BASE = {"train": 1_000_000, "test": 2_000_000, "unsup": 3_000_000}


def movie_of(split: str, review_id: int) -> str:
    """The movie key write_aclimdb gives review `review_id` of `split` (pos and neg share it)."""
    return f"tt{_MOVIE_BASE[split] + review_id // REVIEWS_PER_MOVIE:07d}"


def make_unlabeled(n: int, seed: int = 100) -> list[str]:
    """`n` unique reviews without labels (the same kind of text as make_reviews)."""
    return make_reviews(n, seed=seed)["review"].str.replace("Review #", "Unlabelled #").tolist()


def write_aclimdb(
    root: Path,
    splits: Mapping[str, pd.DataFrame],
    unlabeled: Sequence[str] | None = None,
    urls: bool = True,
) -> Path:
    """Write reviews in the official layout `root/aclImdb/<split>/{pos,neg}/<id>_<rating>.txt`.

    Ids count from 0 within each label folder. `unlabeled` reviews go to train/unsup/<id>_0.txt
    (default: 12 from make_unlabeled; [] writes none). With `urls`, each folder gets its
    urls_<folder>.txt, line i naming the movie of review id i (see movie_of), as the official
    archive does. Also writes what readers must ignore (*.feat, imdb.vocab). Returns
    `root/aclImdb`.
    """
    acl = Path(root) / "aclImdb"
    unlabeled = make_unlabeled(12) if unlabeled is None else list(unlabeled)
    for split, frame in splits.items():
        for folder, rating, label in (("pos", 8, "positive"), ("neg", 3, "negative")):
            target = acl / split / folder
            target.mkdir(parents=True, exist_ok=True)
            texts = frame.loc[frame["sentiment"] == label, "review"]
            for review_id, text in enumerate(texts):
                (target / f"{review_id}_{rating}.txt").write_bytes(text.encode("utf-8"))
            if urls:
                _write_urls(acl / split / f"urls_{folder}.txt", split, len(texts))
        (acl / split / "labeledBow.feat").write_text("9 0:9 1:1\n")
    if unlabeled:
        (acl / "train" / "unsup").mkdir(parents=True, exist_ok=True)
        for review_id, text in enumerate(unlabeled):
            (acl / "train" / "unsup" / f"{review_id}_0.txt").write_bytes(text.encode("utf-8"))
        if urls:
            _write_urls(acl / "train" / "urls_unsup.txt", "unsup", len(unlabeled))
    (acl / "imdb.vocab").write_text("the\nand\n")
    return acl


def _write_urls(path: Path, split: str, rows: int) -> None:
    lines = [f"http://www.imdb.com/title/{movie_of(split, i)}/usercomments\n" for i in range(rows)]
    path.write_text("".join(lines))


def write_aclimdb_tar(path: Path, splits: Mapping[str, pd.DataFrame], **options) -> Path:
    """`write_aclimdb` packed as a .tar.gz (members under aclImdb/, like aclImdb_v1.tar.gz)."""
    path = Path(path)
    staging = path.parent / f"{path.name}.staging"
    acl = write_aclimdb(staging, splits, **options)
    with tarfile.open(path, "w:gz") as archive:
        archive.add(acl, arcname="aclImdb")
    return path


def aclimdb_order(frame: pd.DataFrame, split: str | None = "train") -> pd.DataFrame:
    """A split as the aclImdb readers return it: positives, then negatives, each in order, with
    the movie column write_aclimdb's URLs give (`split` None: written without URLs)."""
    parts = []
    for label in ("positive", "negative"):
        part = frame[frame["sentiment"] == label].reset_index(drop=True)
        if split is not None:
            part = part.assign(movie=[movie_of(split, i) for i in range(len(part))])
        parts.append(part)
    ordered = pd.concat(parts, ignore_index=True)
    return ordered.astype(dict.fromkeys(ordered.columns, "str"))


def write_ingested(
    folder: Path,
    train: pd.DataFrame,
    test: pd.DataFrame,
    unlabeled: pd.DataFrame | None = None,
) -> Path:
    """What ingest leaves behind (two Parquet splits, the unlabeled one if given, and their
    manifest), written directly.

    Splits may be broken on purpose (a missing column, nulls); their manifest then carries a
    content hash of "unhashable".
    """
    from steps.data.dataset import Manifest, content_hash

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    frames = {"train": train, "test": test}
    for split, frame in frames.items():
        frame.to_parquet(folder / f"{split}.parquet", index=False)
    if unlabeled is not None:
        unlabeled.to_parquet(folder / "unlabeled.parquet", index=False)
    try:
        digest = content_hash([train, test], unlabeled)
    except (KeyError, AttributeError, TypeError):
        digest = "unhashable"
    manifest = Manifest(
        source="written by the test",
        content_sha256=digest,
        rows={split: len(frame) for split, frame in frames.items()},
        positives={
            split: int(frame.get("sentiment", pd.Series()).eq("positive").sum())
            for split, frame in frames.items()
        },
        test_split="source",
        unlabeled_rows=0 if unlabeled is None else len(unlabeled),
    )
    (folder / "manifest.json").write_text(json.dumps(manifest.to_dict()), encoding="utf-8")
    return folder


def mark_validated(folder: Path, marker: Path | None = None) -> Path:
    """Write the marker validation writes when the ingested files in `folder` pass (for tests
    of the stages after validate); returns its path (default: `validated.json` beside `folder`).
    A folder without a manifest (a bare test split) gets a marker for its files alone."""
    from steps.data.dataset import (
        Manifest,
        file_digests,
        marker_record,
        read_manifest,
        write_marker,
    )

    folder = Path(folder)
    marker = Path(marker) if marker else folder.parent / "validated.json"
    if (folder / "manifest.json").is_file():
        manifest = read_manifest(folder)
    else:
        manifest = Manifest("written by the test", "", {}, {}, "source")
    write_marker(marker_record(manifest, file_digests(folder), "written by the test"), marker)
    return marker


class ReviewServer(http.server.ThreadingHTTPServer):
    """Serves registered bodies on 127.0.0.1; `truncated` paths promise more bytes than they
    send; `stalled` paths send half, then hang until `release` is set (an interrupted download).
    `status` answers every request with that HTTP status instead (a failing server)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.bodies: dict[str, bytes] = {}
        self.truncated: set[str] = set()
        self.stalled: set[str] = set()
        self.release = threading.Event()
        self.status: int | None = None
        self.requests: list[str] = []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_port}{path}"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: ReviewServer

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        if self.server.status is not None:
            self.send_error(self.server.status)
            return
        body = self.server.bodies.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = self.path in self.server.truncated or self.path in self.server.stalled
        self.wfile.write(body[: len(body) // 2] if cut else body)
        self.wfile.flush()
        if self.path in self.server.stalled:
            self.server.release.wait(timeout=120)
        self.close_connection = True

    do_POST = do_GET

    def log_message(self, *args) -> None:  # keep test output quiet
        pass


@contextmanager
def review_server() -> Iterator[ReviewServer]:
    """A ReviewServer running in a thread for the duration of the block."""
    srv = ReviewServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield srv
    finally:
        srv.release.set()
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


def project_files(root: Path) -> set[str]:
    """Every file under a project copy (relative paths), bytecode caches left out: what a stage
    that must write nothing would change."""
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def own_code_env() -> dict[str, str]:
    """The environment for an entry point started in a project copy with `python -m`: the copy's
    own code and default tracking store (mlflow.db there), the caller's MLflow settings gone."""
    steering = ("MLFLOW_", "_MLFLOW_", "DAGSHUB_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(steering)}
    env.pop("PYTHONPATH", None)
    return env


# Spellings of one review that the model cannot tell apart (pyfunc/cleaning.py cleans them to
# the same tokens): a test review spelled so must count as a copy wherever copies matter.
SAME_TO_THE_MODEL = {
    "upper-case": str.upper,
    "swapped-case": str.swapcase,
    "doubled-spaces": lambda text: text.replace(" ", "  "),
    "tabs-newlines": lambda text: text.replace(" ", "\t", 2).replace(" ", "\r\n", 1),
    "padded": lambda text: f"  {text} \n",
    "html-breaks": lambda text: text.replace(" ", "<br /><br />", 2),
    "no-break-spaces": lambda text: text.replace(" ", "\u00a0"),
    "u2028": lambda text: text.replace(" ", "\u2028", 2),
    "form-feed": lambda text: text.replace(" ", "\x0c", 2),
    "x85": lambda text: text.replace(" ", "\x85", 2),
}

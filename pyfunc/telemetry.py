"""What the served model says about itself: Prometheus metrics and one JSON log line per call.

Off unless the environment turns it on, so a notebook, a batch job, `evaluate` or `promote` see
the model exactly as before: without the variables below nothing here runs, `prometheus_client`
is not imported, no port is opened and no file is written.

| variable | effect |
| --- | --- |
| `IMDB_METRICS_PORT` | `[host:]port`: expose Prometheus metrics there (host default 0.0.0.0) |
| `IMDB_PREDICTION_LOG` | `1`: one JSON line per call on stdout (never the review text) |
| `IMDB_SLOT` | `blue`/`green`: label `slot` on every series and field of every log line |
| `IMDB_MODEL_NAME`, `IMDB_MODEL_VERSION` | the registered name and version (the pod sets them) |
| `IMDB_EVALUATED_ACCURACY` | the version's test accuracy (unset: its validation accuracy) |
| `PROMETHEUS_MULTIPROC_DIR` | where the workers' metric files go (default: a private folder) |

Why an exporter inside the model, not a sidecar: it works wherever the model is served
(`mlflow models serve`, the `build-docker` image, the pods) with one variable and no second
container or image, and MLflow's own endpoints stay untouched (nginx in the image forwards only
/ping and /invocations; the metrics port is separate).

Several uvicorn workers: each worker loads the model and records into prometheus_client's
multiprocess files in one shared folder. One worker at a time holds an exclusive lock on
`exporter.lock` in that folder and serves `/metrics` on the port, summing every worker's files,
so one scrape sees all of them; the others wait on the lock in a daemon thread and take over if
the holder dies (the kernel releases its lock). A port already taken by another program: the
lock holder logs one warning and the model serves on, without metrics. So does a
`PROMETHEUS_MULTIPROC_DIR` this server cannot write in (a file, a read-only or missing mount):
each worker says so in one warning line and serves, unwatched.

The registered name and version are not in the model's files (a version is made after the model
is logged), so they come from the environment; the run id and logged-model id come from the
model's own MLmodel file.
"""

from __future__ import annotations

import collections
import fcntl
import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyfunc.contract import (
    ACCURACY_KEY,
    BASELINE_SHARE_KEY,
    BASELINE_SHARE_METRIC,
    CALLS_METRIC,
    ERROR,
    EVALUATED_ACCURACY_ENV,
    EVALUATED_ACCURACY_METRIC,
    EXPECTED_CORRECT_METRIC,
    IDENTITY_LABELS,
    LABELS,
    METRICS_PORT_ENV,
    MODEL_INFO_METRIC,
    MODEL_NAME_ENV,
    MODEL_VERSION_ENV,
    MULTIPROC_DIR_ENV,
    OK,
    OUTCOME_LABEL,
    OUTCOMES,
    PREDICT_SECONDS_METRIC,
    PREDICTED_LABEL,
    PREDICTION_LOG_ENV,
    REASON_LABEL,
    REJECTED,
    REJECTED_METRIC,
    REVIEW_CHARS_METRIC,
    REVIEWS_METRIC,
    SCORE_METRIC,
    SLOT_ENV,
    SLOT_LABEL,
    UNKNOWN_LABEL,
)

log = logging.getLogger(__name__)

EXPORTER_LOCK = "exporter.lock"
UNKNOWN = "unknown"  # an identity field the environment or the MLmodel file does not give

# Seconds inside the model per call: one review takes about a millisecond, 1,000 about 0.3 s.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
SCORE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
# Characters per review: IMDB's run from ~50 to ~14,000 (the model refuses over 100,000).
LENGTH_BUCKETS = (25, 50, 100, 250, 500, 1000, 2000, 4000, 8000, 16000, 100_000)


@dataclass(frozen=True)
class Identity:
    """Which model this is and where it serves: the info series and every log line carry it."""

    model_name: str
    model_version: str
    run_id: str
    model_id: str
    slot: str


def from_environment(
    artifact_path: str | Path | None,
    profile_path: str | Path | None = None,
    environ: Any = os.environ,
    calibrated: bool = False,
) -> Telemetry | None:
    """The telemetry the environment asks for, or None (the default: nothing is recorded).

    `artifact_path` is any file inside the model folder (its MLmodel is found above it);
    `profile_path` the training profile logged with the model (its baseline positive share);
    `calibrated`: the scores are calibrated, so their confidence is counted (expected correct).
    """
    port = environ.get(METRICS_PORT_ENV, "").strip()
    log_calls = environ.get(PREDICTION_LOG_ENV, "").strip().lower() in ("1", "true", "yes")
    if not port and not log_calls:
        return None
    ident = identity(artifact_path, environ)
    metrics = None
    if port:
        host, number = parse_address(port)
        try:
            directory = _multiproc_dir(environ)
        except OSError as exc:  # a file, a read-only or missing mount: serve, unwatched
            log.warning(
                "%s=%s is not a folder this server can write its metric files in (%s): the"
                " model serves without metrics; point it at a writable folder (or unset it)",
                MULTIPROC_DIR_ENV, environ.get(MULTIPROC_DIR_ENV), exc.strerror or exc,
            )  # fmt: skip
            return Telemetry(ident, None, log_calls) if log_calls else None
        metrics = _process_metrics()
        profile = _read_profile(profile_path)
        evaluated = _evaluated_accuracy(environ, profile)
        metrics.describe(ident, profile, evaluated, calibrated)
        _start_exporter(host, number, directory)
    return Telemetry(ident, metrics, log_calls)


def parse_address(text: str) -> tuple[str, int]:
    """`9102` or `127.0.0.1:9102` -> (host, port); a ValueError naming the variable otherwise."""
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{METRICS_PORT_ENV}={text!r}: expected [host:]port, e.g. 9102")
    return host.strip("[]") or "0.0.0.0", int(port)


def identity(artifact_path: str | Path | None, environ: Any = os.environ) -> Identity:
    """Name and version from the environment; run and logged-model ids from the MLmodel file."""
    run_id = model_id = UNKNOWN
    mlmodel = _find_mlmodel(artifact_path)
    if mlmodel is not None:
        from mlflow.models import Model

        meta = Model.load(str(mlmodel))
        run_id = meta.run_id or UNKNOWN
        model_id = getattr(meta, "model_id", None) or UNKNOWN
    return Identity(
        model_name=environ.get(MODEL_NAME_ENV) or UNKNOWN,
        model_version=environ.get(MODEL_VERSION_ENV) or UNKNOWN,
        run_id=run_id,
        model_id=model_id,
        slot=environ.get(SLOT_ENV) or UNKNOWN,
    )


def _evaluated_accuracy(environ: Any, profile: dict[str, Any]) -> float | None:
    text = environ.get(EVALUATED_ACCURACY_ENV, "").strip()
    try:
        value = float(text) if text else profile.get(ACCURACY_KEY)
    except ValueError:
        value = None
    if value is None or not 0 <= value <= 1:
        if text:
            log.warning(
                "%s=%r is not an accuracy (0-1): not exported", EVALUATED_ACCURACY_ENV, text
            )
        return None
    return float(value)


def _read_profile(path: str | Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("cannot read the training profile %s (%s): no baseline series", path, exc)
        return {}


def _find_mlmodel(artifact_path: str | Path | None) -> Path | None:
    if artifact_path is None:
        return None
    for folder in list(Path(artifact_path).resolve().parents)[:3]:
        if (folder / "MLmodel").is_file():
            return folder / "MLmodel"
    return None


class Telemetry:
    """Records each call: metrics (when a port is set) and a JSON log line (when asked)."""

    def __init__(self, ident: Identity, metrics: _Metrics | None, log_calls: bool):
        self.identity = ident
        self.metrics = metrics
        self.log_calls = log_calls
        self._pid = os.getpid()

    def call(self) -> _Call:
        return _Call(self)

    def record(self, n: int, counts: dict[str, int], scores: Any, lengths: Any, seconds: float):
        """A call that was answered: `n` reviews, labels counted, per-review scores and lengths."""
        if self.metrics is not None:
            self.metrics.scored(counts, scores, lengths, seconds)
        if self.log_calls:
            self._log(OK, seconds, reviews=n, labels=counts)

    def refused(self, exc: BaseException, seconds: float) -> None:
        """A call that raised: rejected input (the exception names its reason) or an error."""
        reason = getattr(exc, "reason", None)
        outcome = REJECTED if reason else ERROR
        if self.metrics is not None:
            self.metrics.refused(outcome, reason, seconds)
        if self.log_calls:
            self._log(outcome, seconds, reason=reason or type(exc).__name__)

    def _log(self, outcome: str, seconds: float, **fields: Any) -> None:
        ident = self.identity
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
        line = {
            "time": f"{stamp}.{int(now % 1 * 1000):03d}Z",  # UTC, milliseconds
            "event": "predict",
            "model": ident.model_name,
            "version": ident.model_version,
            "slot": ident.slot,
            "outcome": outcome,
            "latency_ms": round(seconds * 1000, 3),
            **fields,
            "pid": self._pid,
        }
        # One write() per line: lines of several workers sharing stdout never interleave.
        os.write(1, (json.dumps(line, separators=(",", ":")) + "\n").encode())


class _Call:
    """One predict call, as a context manager around the scoring (see `watch`)."""

    __slots__ = ("_done", "_started", "_telemetry")

    def __init__(self, telemetry: Telemetry):
        self._telemetry = telemetry
        self._done = False

    def __enter__(self) -> _Call:
        self._started = time.perf_counter()
        return self

    def scored(self, reviews: list[str], labels: Any, scores: Any) -> None:
        """`labels` and `scores`: numpy arrays, one entry per review."""
        seconds = time.perf_counter() - self._started
        # Plain lists first: numpy scalars one by one cost more than the counting.
        counts = dict(collections.Counter(labels.tolist()))
        self._telemetry.record(len(reviews), counts, scores.tolist(), map(len, reviews), seconds)
        self._done = True

    def __exit__(self, kind, exc, traceback) -> bool:
        if exc is not None and not self._done:
            self._telemetry.refused(exc, time.perf_counter() - self._started)
        return False


class _Unwatched:
    """What `watch(None)` gives: does nothing, costs next to nothing."""

    def __enter__(self) -> _Unwatched:
        return self

    def scored(self, reviews: list[str], labels: Any, scores: Any) -> None:
        pass

    def __exit__(self, kind, exc, traceback) -> bool:
        return False


_UNWATCHED = _Unwatched()


def watch(telemetry: Telemetry | None) -> _Call | _Unwatched:
    """`with watch(t) as call: ...; call.scored(reviews, labels, scores)` times and records
    one call (an exception inside is recorded as rejected or failed, then re-raised)."""
    return _UNWATCHED if telemetry is None else telemetry.call()


class _Metrics:
    """This process's metric objects; values go to the multiprocess files, read by the exporter."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        # registry=None: in multiprocess mode the exporter reads the files, not a registry, and
        # loading a second model in the same process must not register the names twice.
        slot = [SLOT_LABEL]
        self.calls = Counter(
            CALLS_METRIC, "predict calls by outcome (ok, rejected input, error)",
            [*slot, OUTCOME_LABEL], registry=None,
        )  # fmt: skip
        self.reviews = Counter(
            REVIEWS_METRIC, "reviews scored, by predicted label", [*slot, PREDICTED_LABEL],
            registry=None,
        )  # fmt: skip
        self.rejected = Counter(
            REJECTED_METRIC, "calls refused for bad input, by reason", [*slot, REASON_LABEL],
            registry=None,
        )  # fmt: skip
        self.latency = Histogram(
            PREDICT_SECONDS_METRIC, "time inside the model per call", slot,
            buckets=LATENCY_BUCKETS, registry=None,
        )  # fmt: skip
        self.score = Histogram(
            SCORE_METRIC, "probability of positive per review", slot,
            buckets=SCORE_BUCKETS, registry=None,
        )  # fmt: skip
        self.length = Histogram(
            REVIEW_CHARS_METRIC, "characters per review", slot,
            buckets=LENGTH_BUCKETS, registry=None,
        )  # fmt: skip
        self.info = Gauge(
            MODEL_INFO_METRIC, "the model served: always 1", [*slot, *IDENTITY_LABELS],
            multiprocess_mode="max", registry=None,
        )  # fmt: skip
        self.baseline = Gauge(
            BASELINE_SHARE_METRIC,
            "share of positive predictions on the validation split at train time",
            slot, multiprocess_mode="max", registry=None,
        )  # fmt: skip
        self.expected_correct = Counter(
            EXPECTED_CORRECT_METRIC, "sum of max(p, 1 - p) over reviews scored (calibrated p)",
            slot, registry=None,
        )  # fmt: skip
        self.evaluated = Gauge(
            EVALUATED_ACCURACY_METRIC, "the version's evaluated accuracy (test split)",
            slot, multiprocess_mode="max", registry=None,
        )  # fmt: skip

    def describe(
        self,
        ident: Identity,
        profile: dict[str, Any],
        evaluated: float | None = None,
        calibrated: bool = False,
    ) -> None:
        """Bind the slot label and publish the info, baseline and evaluated accuracy series."""
        slot = ident.slot
        if evaluated is not None:
            self.evaluated.labels(slot).set(evaluated)
        # an uncalibrated model's confidence is no estimate: no series, so the alert skips it
        self._expected = self.expected_correct.labels(slot) if calibrated else None
        self.info.labels(
            slot, ident.model_name, ident.model_version, ident.run_id, ident.model_id
        ).set(1)
        share = profile.get(BASELINE_SHARE_KEY)
        if share is not None:
            self.baseline.labels(slot).set(float(share))
        # Children made now: every series exists (at 0) before the first call.
        self._outcome = {o: self.calls.labels(slot, o) for o in OUTCOMES}
        self._label = {}
        for label in (*LABELS, UNKNOWN_LABEL):
            self._label[label] = self.reviews.labels(slot, label)
        self._slot = slot
        self._latency = self.latency.labels(slot)
        self._score = self.score.labels(slot)
        self._length = self.length.labels(slot)

    def scored(self, counts: dict[str, int], scores: Any, lengths: Any, seconds: float) -> None:
        self._outcome[OK].inc()
        for label, count in counts.items():
            child = self._label.get(label) or self.reviews.labels(self._slot, label)
            child.inc(count)
        observe = self._score.observe
        for score in scores:
            observe(score)
        if self._expected is not None:
            self._expected.inc(sum(s if s > 0.5 else 1 - s for s in scores))
        observe = self._length.observe
        for length in lengths:
            observe(length)
        self._latency.observe(seconds)

    def refused(self, outcome: str, reason: str | None, seconds: float) -> None:
        self._outcome[outcome].inc()
        if reason:
            self.rejected.labels(self._slot, reason).inc()
        self._latency.observe(seconds)


_METRICS: _Metrics | None = None  # one set per process, whatever number of models it loads
_EXPORTER_LOCK = threading.Lock()
_EXPORTER_STARTED = False
_LOCK_FILE = None  # the open exporter.lock: closing it would release the lock to a sibling


def _process_metrics() -> _Metrics:
    global _METRICS
    if _METRICS is None:  # after MULTIPROC_DIR_ENV is set: prometheus_client reads it on import
        _METRICS = _Metrics()
    return _METRICS


def _multiproc_dir(environ: Any) -> Path:
    """The shared folder of the workers' metric files: the environment's, or one private to this
    server (named after the process that started the workers, so siblings find the same one)."""
    given = environ.get(MULTIPROC_DIR_ENV)
    if given:
        folder = Path(given)
    else:
        parent = os.getppid()
        folder = Path(tempfile.gettempdir()) / f"imdb-sentiment-metrics-{parent}-{_started(parent)}"
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=folder):  # writable? (an OSError says why not)
        pass
    os.environ[MULTIPROC_DIR_ENV] = str(folder)  # where prometheus_client looks, on import
    return folder


def _started(pid: int) -> str:
    """The process's start time in clock ticks (Linux), so a reused pid gets a new folder."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "0"


def _start_exporter(host: str, port: int, directory: Path) -> None:
    """Serve /metrics on host:port from the worker that holds the folder's exporter lock."""
    global _EXPORTER_STARTED, _LOCK_FILE
    with _EXPORTER_LOCK:
        if _EXPORTER_STARTED:
            return
        _EXPORTER_STARTED = True
    # Held open for the life of the process, also when the port was taken: one warning, not
    # one per worker in turn.
    _LOCK_FILE = lock = open(directory / EXPORTER_LOCK, "a")  # noqa: SIM115
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # a sibling worker serves; take over when it is gone

        def wait_then_serve() -> None:
            fcntl.flock(lock, fcntl.LOCK_EX)
            _serve(host, port, directory)

        threading.Thread(target=wait_then_serve, name="metrics-standby", daemon=True).start()
        return
    _serve(host, port, directory)


def _serve(host: str, port: int, directory: Path) -> None:
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        log.warning(
            "metrics port %s:%d is not available (%s): the model serves without exposing"
            " metrics; set %s to a free port",
            host, port, exc.strerror or exc, METRICS_PORT_ENV,
        )  # fmt: skip
        return
    log.info("metrics of every worker on http://%s:%d/metrics (pid %d)", host, port, os.getpid())

"""Score a logged or registered model on reviews, in a fresh Python process per model.

Every model version carries its own copy of `pyfunc/` (code_paths). Python imports a package
once per process, so loading two versions side by side would run the second one with the first
one's code: a champion logged with older code would be scored by the candidate's cleaner. A child
process per model runs each version with exactly the code it was logged with; the children of one
comparison run side by side (one per core on this machine). A child runs `score_in_child`
through `python -c` (it is no program of its own).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PyFuncModel

from pyfunc import contract
from pyfunc.contract import OUTPUT_FIELDS, SCORE_FIELD, TEXT_COLUMN
from steps.stage.errors import StageError
from steps.tracking import loading

log = logging.getLogger(__name__)

# Versions logged before the input column was renamed read `text`: `input_column` asks each
# model's signature.
CHUNK = 1000  # reviews per predict call in the child (progress granularity)
_CHILD = f"import sys; from {__name__} import score_in_child; score_in_child(*sys.argv[1:5])"


def load_model(uri: str, what: str | None = None, version: str | int | None = None) -> PyFuncModel:
    """`mlflow.pyfunc.load_model`, the model running the `pyfunc/` code logged with it; a version
    logged as pickles is refused in one line first where the pickle guard is off (`what` names
    it, `version` says what to migrate: steps/tracking/loading.py).

    Importing pyfunc/contract.py also imports the project's `pyfunc` package; left in
    sys.modules, it would answer the model's own `import pyfunc.model` with the project's code
    (a champion logged with older code would run the candidate's). Where nothing else of the
    project's pyfunc is loaded (a stage process), both are forgotten first, so the model
    imports its own copy; the names already bound here stay. A process that runs the project's
    model code itself (train, the tests) keeps it, as before.
    """
    loading.check_loadable(uri, what or uri, version)
    loaded = [name for name in sys.modules if name.partition(".")[0] == "pyfunc"]
    if set(loaded) <= {"pyfunc", contract.__name__}:
        for name in loaded:
            del sys.modules[name]
    return mlflow.pyfunc.load_model(uri)


def input_column(model: PyFuncModel) -> str:
    """The column a loaded model reads reviews from: its signature's one input name (`text` for
    versions logged before the rename), else TEXT_COLUMN."""
    schema = model.metadata.get_input_schema()
    names = schema.input_names() if schema is not None and schema.has_input_names() else []
    return names[0] if len(names) == 1 else TEXT_COLUMN


def review_frame(model: PyFuncModel, texts: Sequence[str]) -> pd.DataFrame:
    """Reviews as the one-column DataFrame this model's signature asks for."""
    return pd.DataFrame({input_column(model): list(texts)})


def score_models(models: Sequence[tuple[str, str]], texts: list[str]) -> list[pd.DataFrame]:
    """Predict `texts` with each (model URI, name) in its own child process, side by side.

    Returns one DataFrame (columns label, score) per model, in order.
    """
    with tempfile.TemporaryDirectory(prefix="imdb-score-") as tmp:
        work = Path(tmp)
        reviews = work / "reviews.parquet"
        pd.DataFrame({TEXT_COLUMN: texts}).to_parquet(reviews)
        commands = []
        for i, (uri, name) in enumerate(models):
            try:
                # Downloaded here, in the parent, so the registry URI configured here applies.
                local = mlflow.artifacts.download_artifacts(
                    artifact_uri=uri, dst_path=str(work / f"model{i}")
                )
            except Exception as exc:  # MlflowException, OSError...: one line either way
                raise StageError(f"cannot download {name}: {' '.join(str(exc).split())}") from None
            loading.check_loadable(local, name, loading.registered_version(uri))
            out = work / f"scores{i}.parquet"
            commands.append(
                (name, out, [sys.executable, "-c", _CHILD, local, str(reviews), str(out), name])
            )
        log.info("scoring %d reviews with %s", len(texts), ", ".join(m[1] for m in models))
        # cwd is the temp folder, so nothing of the project shadows a model's own code.
        procs = [(name, out, subprocess.Popen(cmd, cwd=tmp)) for name, out, cmd in commands]
        try:
            codes = [proc.wait() for _, _, proc in procs]
        finally:
            for _, _, proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        results = []
        for (name, out, _), code in zip(procs, codes, strict=True):
            if code != 0:
                raise StageError(f"scoring with {name} failed (exit {code}; see its output above)")
            results.append(_checked(pd.read_parquet(out), name, len(texts)))
    return results


def _checked(scores: pd.DataFrame, name: str, rows: int) -> pd.DataFrame:
    missing = [c for c in OUTPUT_FIELDS if c not in scores.columns]
    if missing or len(scores) != rows:
        raise StageError(
            f"{name} returned columns {list(scores.columns)} for {len(scores)} rows;"
            f" expected {list(OUTPUT_FIELDS)} for {rows} rows"
        )
    return scores


def score_in_child(model_dir: str, reviews_path: str, out_path: str, name: str) -> None:
    """The child's work: load one model, score the reviews file in chunks, write the scores."""
    from tqdm import tqdm

    logging.basicConfig(level=logging.WARNING)
    model = load_model(model_dir)
    texts = pd.read_parquet(reviews_path)[TEXT_COLUMN].tolist()
    parts = []
    with tqdm(
        total=len(texts), unit="review", desc=f"scoring ({name})", file=sys.stderr, disable=None
    ) as bar:  # disable=None: drawn on a terminal only, no carriage returns in a log file
        for start in range(0, len(texts), CHUNK):
            chunk = texts[start : start + CHUNK]
            parts.append(pd.DataFrame(model.predict(review_frame(model, chunk))))
            bar.update(len(chunk))
    result = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=OUTPUT_FIELDS)
    result.to_parquet(out_path)


def predict_scores(model: Any, reviews: list[str], batch_size: int) -> np.ndarray:
    """Probability of positive for each review, from a model loaded in this process, in batches
    of `batch_size`, with a progress bar (evaluate, monitor)."""
    from tqdm import tqdm

    scores = np.empty(len(reviews))
    with tqdm(
        total=len(reviews), desc="scoring", unit="review", file=sys.stderr, disable=None
    ) as bar:  # disable=None: drawn on a terminal only
        for start in range(0, len(reviews), batch_size):
            batch = reviews[start : start + batch_size]
            answer = model.predict(review_frame(model, batch))
            scores[start : start + len(batch)] = answer[SCORE_FIELD].to_numpy(dtype=float)
            bar.update(len(batch))
    return scores

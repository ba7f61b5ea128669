"""The local engine: the input streamed through the model in this process, chunk by chunk.

Each chunk is read (the stream read of steps/data/sources/), its unscorable rows are set aside
(steps/batch/checks.py), the rest scored in one `model.predict` call (the model itself works
through it in bounded pieces) and appended to the output file as one row group, so memory holds
one chunk whatever the input's size. A progress bar counts reviews as they are written.
"""

from __future__ import annotations

import collections
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from tqdm import tqdm

from pyfunc.contract import LABEL_FIELD, SCORE_FIELD
from steps.batch import checks
from steps.batch.output import ROW_COLUMN, TableWriter, scores_table
from steps.data.sources import ReviewStream
from steps.stage.errors import StageError, one_line


@dataclass
class Tally:
    """What an engine did: rows read and scored, rows set aside, labels given, time taken."""

    rows: int = 0
    scored: int = 0
    bad: checks.BadRows = field(default_factory=checks.BadRows)
    labels: collections.Counter = field(default_factory=collections.Counter)
    seconds: float = 0.0  # reading, scoring and writing (not starting an engine or the model)


def score_stream(
    stream: ReviewStream,
    model: Any,
    text_column: str,
    writer: TableWriter,
    model_name: str,
    model_version: str,
    bad_rows: str,
) -> Tally:
    """Score every chunk of `stream` with the loaded pyfunc `model` into `writer`."""
    tally = Tally()
    key = stream.id_name or ROW_COLUMN
    started = time.perf_counter()
    with tqdm(
        total=stream.total, desc="scoring", unit=" reviews", file=sys.stderr, disable=None
    ) as bar:
        for chunk in stream.chunks:
            first_row = tally.rows + 1
            kinds = checks.classify(chunk.reviews, stream.where, first_row)
            keys = (
                chunk.ids
                if chunk.ids is not None
                else pa.array(np.arange(first_row, first_row + len(kinds), dtype=np.int64))
            )
            tally.rows += len(kinds)
            good = np.flatnonzero(kinds == checks.OK)
            if len(good) < len(kinds):
                _set_aside(tally.bad, kinds, keys, key)
                if bad_rows == "refuse":
                    raise checks.refusal(stream.where, tally.bad)
            reviews = [chunk.reviews[i] for i in good]
            try:
                answer = model.predict(pd.DataFrame({text_column: reviews}))
            except Exception as exc:  # the model's own refusal (MlflowException) or a failure
                last_row = first_row + len(kinds) - 1
                raise StageError(
                    f"{stream.where}: the model failed on rows {first_row:,}-{last_row:,}"
                    f" ({one_line(exc, 300)}); nothing was written"
                ) from None
            labels = answer[LABEL_FIELD].to_numpy(dtype=object)
            known = writer.schema.field(0).type if writer.schema is not None else keys.type
            if keys.type != known:
                raise StageError(
                    f"{stream.where}: the {key} column is {known} in the rows before"
                    f" row {first_row:,} and {keys.type} from there: give every file the same"
                    " id type"
                )
            writer.write(
                scores_table(
                    key,
                    keys.take(pa.array(good)) if len(good) < len(kinds) else keys,
                    labels,
                    answer[SCORE_FIELD].to_numpy(dtype=np.float64),
                    model_name,
                    model_version,
                )
            )
            tally.scored += len(good)
            tally.labels.update(labels.tolist())
            bar.update(len(kinds))
    tally.seconds = time.perf_counter() - started
    return tally


def _set_aside(bad: checks.BadRows, kinds: np.ndarray, keys: pa.Array, key: str) -> None:
    for kind, name in checks.KINDS.items():
        where = np.flatnonzero(kinds == kind)
        if len(where):
            bad.add(name, len(where), f"{key} {keys[int(where[0])].as_py()!r}")

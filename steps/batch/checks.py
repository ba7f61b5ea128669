"""Which reviews can be scored, by one rule both engines apply.

A review the model would answer for the wrong reason is not scored: a null (nothing to score),
an empty or whitespace-only string (the model could only say "unknown"), and text whose bytes
were not UTF-8 (lone surrogates where the local reader kept undecodable bytes, or U+FFFD, the
replacement character an earlier decoder such as Spark's CSV reader put in their place). With
`score.bad_rows: skip` they are left out of the output and counted by kind; with `refuse` the
first one stops the run, nothing written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from steps.stage import hints
from steps.stage.errors import StageError

OK, NULL, EMPTY, NOT_UTF8 = 0, 1, 2, 3
KINDS = {NULL: "null", EMPTY: "empty", NOT_UTF8: "not_utf8"}  # what each is counted as
SAID = {NULL: "null", EMPTY: "empty", NOT_UTF8: "not UTF-8"}  # how a message says it
# ASCII whitespace only, spelt so that Python and Java (Spark's rlike) read it alike.
EMPTY_PATTERN = r"^[ \t\n\r\f\x0b]*$"
NOT_UTF8_CHARACTERS = "\ufffd"  # what decoders put where bytes were not UTF-8
_WHITESPACE = " \t\n\r\f\x0b"  # EMPTY_PATTERN's characters, for str.strip


def classify(reviews: Sequence[Any], where: str, first_row: int) -> np.ndarray:
    """OK, NULL, EMPTY or NOT_UTF8 per review; a value that is not text at all is an error
    naming its row (numbered from 1 across the whole input; `first_row` is this chunk's)."""
    kinds = np.zeros(len(reviews), dtype=np.int8)
    for i, review in enumerate(reviews):
        if isinstance(review, str):
            if not review.strip(_WHITESPACE):
                kinds[i] = EMPTY
            elif not review.isascii() and (NOT_UTF8_CHARACTERS in review or _undecoded(review)):
                kinds[i] = NOT_UTF8
        elif review is None or (isinstance(review, float) and np.isnan(review)):
            kinds[i] = NULL
        else:
            raise StageError(
                f"{where}: row {first_row + i:,}: the review is {type(review).__name__}"
                f" {review!r:.40}, not text: the review column must hold text"
            )
    return kinds


def _undecoded(text: str) -> bool:
    """Whether `text` holds lone surrogates (bytes a reader could not decode and kept)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def replace_undecodable(reviews: Sequence[Any]) -> list[Any]:
    """The reviews with bytes kept as lone surrogates turned into U+FFFD (still NOT_UTF8 by the
    rule above), for consumers that only take valid text (Arrow, Spark)."""
    return [
        r.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        if isinstance(r, str) and not r.isascii() and _undecoded(r)
        else r
        for r in reviews
    ]


@dataclass
class BadRows:
    """Rows left out, by kind, with where the first of each kind was."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS.values(), 0))
    first: dict[str, str] = field(default_factory=dict)  # kind -> "row 12" / "id 'a7'"

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(self, kind: str, count: int, first: str) -> None:
        self.counts[kind] += count
        self.first.setdefault(kind, first)

    def summary(self) -> str:
        """'2 null (first: row 3), 1 not UTF-8 (first: id 'x')', or 'none'."""
        parts = [
            f"{self.counts[KINDS[k]]:,} {SAID[k]} (first: {self.first[KINDS[k]]})"
            for k in KINDS
            if self.counts[KINDS[k]]
        ]
        return ", ".join(parts) or "none"


def refusal(where: str, bad: BadRows, policy_key: str = "score.bad_rows") -> StageError:
    """The one line that stops a run with bad rows under the refuse policy."""
    return StageError(
        f"{where}: {bad.total:,} review{'s' if bad.total != 1 else ''} cannot be scored:"
        f" {bad.summary()}; {policy_key} is"
        f" refuse, so nothing was written: fix them, or skip them with"
        f" {hints.setting('bad_rows', 'skip')}"
    )

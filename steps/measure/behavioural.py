"""Behavioural checks of a sentiment model (CheckList-style, as in Made With ML).

Three suites, each a list of cases with an expected outcome:
- minimum functionality: short, obvious reviews get the obvious label;
- directional: negating a clearly positive statement ("good" -> "not good") flips the label to
  negative;
- invariance: changing names, punctuation, case or line-break markup leaves the label of a
  clear review unchanged.
A suite passes when its pass rate reaches the threshold (evaluate.min_check_pass_rate).
`run_checks` takes any function from a list of reviews to scores (probability of positive), so
the same cases run on an in-process pipeline, a loaded pyfunc, or a served model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

Scorer = Callable[[list[str]], np.ndarray]  # reviews -> probability of positive each

MINIMUM_FUNCTIONALITY: tuple[tuple[str, str], ...] = (
    ("This movie was great.", "positive"),
    ("I loved this film.", "positive"),
    ("A wonderful, moving film with superb acting.", "positive"),
    ("One of the best movies I have ever seen.", "positive"),
    ("Brilliant! I enjoyed every minute.", "positive"),
    ("A beautiful and touching story. Highly recommended.", "positive"),
    ("This movie was terrible.", "negative"),
    ("I hated this film.", "negative"),
    ("The worst movie I have ever seen.", "negative"),
    ("Boring, badly acted and far too long.", "negative"),
    ("A complete waste of time.", "negative"),
    ("Awful script, awful acting. Avoid it.", "negative"),
)

# (positive statement, its negation): the negation must be labelled negative.
DIRECTIONAL: tuple[tuple[str, str], ...] = (
    ("The movie was good.", "The movie was not good."),
    ("I liked this film.", "I didn't like this film."),
    ("The acting was great.", "The acting was not great at all."),
    ("It is worth watching.", "It is not worth watching."),
    ("I would recommend it to anyone.", "I would not recommend it to anyone."),
    ("I enjoyed it.", "I did not enjoy it."),
)

_CLEAR_POSITIVE = "Tom Hanks is wonderful in this film. A moving story and a great cast."
_CLEAR_NEGATIVE = "Tom Hanks is awful in this film. A boring story and a weak cast."

# (original, perturbed): both must get the same label.
INVARIANCE: tuple[tuple[str, str], ...] = (
    (_CLEAR_POSITIVE, _CLEAR_POSITIVE.replace("Tom Hanks", "Meryl Streep")),
    (_CLEAR_POSITIVE, _CLEAR_POSITIVE.replace("Tom Hanks", "Priya Raman")),
    (_CLEAR_NEGATIVE, _CLEAR_NEGATIVE.replace("Tom Hanks", "Meryl Streep")),
    (_CLEAR_NEGATIVE, _CLEAR_NEGATIVE.replace("Tom Hanks", "Kenji Watanabe")),
    (_CLEAR_POSITIVE, _CLEAR_POSITIVE.upper()),
    (_CLEAR_NEGATIVE, _CLEAR_NEGATIVE.lower()),
    (_CLEAR_POSITIVE, _CLEAR_POSITIVE.replace(".", "")),
    (_CLEAR_NEGATIVE, _CLEAR_NEGATIVE.replace(". ", "... ")),
    (_CLEAR_POSITIVE, _CLEAR_POSITIVE.replace(". ", ".<br /><br />")),
    (_CLEAR_NEGATIVE, _CLEAR_NEGATIVE.replace(". ", ".<br /><br />")),
)

SUITES = ("minimum_functionality", "directional", "invariance")

PASSED_KEY = "behavioural_checks_passed"  # the verdict: a metric (0/1), a boolean in the record


@dataclass(frozen=True)
class CaseResult:
    """One case: what was scored, what was expected, and whether it held."""

    suite: str
    text: str
    expected: str  # "positive"/"negative", or "same as: <original>" for invariance
    label: str
    score: float
    passed: bool


@dataclass(frozen=True)
class CheckReport:
    """Every case's outcome, each suite's pass rate, and the overall verdict."""

    cases: list[CaseResult]
    pass_rates: dict[str, float]
    passed: bool

    def metrics(self) -> dict[str, float]:
        """Flat numbers to log: behavioural_<suite>_pass_rate and behavioural_checks_passed."""
        values = {f"behavioural_{suite}_pass_rate": rate for suite, rate in self.pass_rates.items()}
        values[PASSED_KEY] = float(self.passed)
        return values

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "pass_rates": self.pass_rates,
            "cases": [asdict(case) for case in self.cases],
        }


def _label(score: float) -> str:
    return "positive" if score > 0.5 else "negative"


def run_checks(score: Scorer, min_pass_rate: float) -> CheckReport:
    """Score every case in one call and judge each suite against `min_pass_rate`."""
    texts = [t for t, _ in MINIMUM_FUNCTIONALITY]
    texts += [t for pair in DIRECTIONAL for t in pair]
    texts += [t for pair in INVARIANCE for t in pair]
    ordered = list(dict.fromkeys(texts))
    scores = dict(zip(ordered, map(float, np.asarray(score(ordered))), strict=True))
    cases = []
    for text, expected in MINIMUM_FUNCTIONALITY:
        s = scores[text]
        cases.append(
            CaseResult("minimum_functionality", text, expected, _label(s), s, _label(s) == expected)
        )
    for positive, negated in DIRECTIONAL:
        s = scores[negated]
        # the negation must flip a statement the model reads as positive
        flipped = _label(scores[positive]) == "positive" and _label(s) == "negative"
        cases.append(
            CaseResult(
                "directional", negated, f"negative, unlike: {positive}", _label(s), s, flipped
            )
        )
    for original, perturbed in INVARIANCE:
        s = scores[perturbed]
        same = _label(s) == _label(scores[original])
        cases.append(
            CaseResult("invariance", perturbed, f"same as: {original}", _label(s), s, same)
        )
    pass_rates = {
        suite: float(np.mean([c.passed for c in cases if c.suite == suite])) for suite in SUITES
    }
    passed = all(rate >= min_pass_rate for rate in pass_rates.values())
    return CheckReport(cases=cases, pass_rates=pass_rates, passed=passed)


def failures(report: CheckReport) -> Sequence[CaseResult]:
    """The cases that did not hold."""
    return [case for case in report.cases if not case.passed]

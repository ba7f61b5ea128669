"""Failed Great Expectations results in plain words, one line each.

    train: review: 3 of 1,000 rows are blank, e.g. '', '  '

Each line names the batch (split), the column, how many rows, a few example values and, in
brackets, the params.yaml knob(s) behind the bound. Works on the JSON form of GX results (no GX
import), with the validated DataFrame at hand for details GX does not return (which reviews repeat).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from pyfunc.contract import TEXT_COLUMN
from steps.data.dataset import MODEL_TEXT_COLUMN
from steps.stage import hints
from steps.stage.errors import one_line

EXAMPLES = 3  # example values per line
EXAMPLE_CHARS = 40  # longer examples are cut with an ellipsis
BLANK_REGEX = r"^\s*$"  # the suite's "blank review" pattern, named as such in messages
KNOB_SECTION = "validate"  # params.yaml section whose keys the suite's $PARAMETERs name
# A column validate derives from another: its checks cannot run when the other is missing.
DERIVED_FROM = {MODEL_TEXT_COLUMN: TEXT_COLUMN}


@dataclass(frozen=True)
class Checked:
    """One validated batch: its name, the frame GX saw, its GX result and its suite as reviewed."""

    name: str
    frame: pd.DataFrame
    result: Mapping[str, Any]  # ExpectationSuiteValidationResult.to_json_dict()
    raw_suite: Mapping[str, Any]  # the suite JSON, with its {"$PARAMETER": ...} bounds


def describe_failures(checked: Checked) -> list[str]:
    """One plain-words line per failed expectation of a batch.

    An expectation that could not run because its column is missing is folded into the
    "column is missing" line instead of being listed on its own.
    """
    failed = [r for r in checked.result["results"] if not r["success"]]
    missing = {
        _kwargs(r).get("column")
        for r in failed
        if _type(r) == "expect_column_to_exist" and not _raised(r)
    }
    skipped: dict[str, int] = {}
    described = []
    for item in failed:
        column = _kwargs(item).get("column")
        column = DERIVED_FROM.get(column, column)  # no review column: no cleaned one either
        if _raised(item) and column in missing:
            skipped[column] = skipped.get(column, 0) + 1
            continue
        described.append((item, _describe(checked, item)))
    lines = []
    for item, line in described:
        n = skipped.get(_kwargs(item).get("column"), 0)
        if _type(item) == "expect_column_to_exist" and n:
            line += f"; {n} other check{'s' if n > 1 else ''} on it could not run"
        lines.append(line)
    return lines


def _describe(checked: Checked, item: Mapping[str, Any]) -> str:
    kwargs = _kwargs(item)
    column = kwargs.get("column")
    shown = DERIVED_FROM.get(column, column)  # a check on the cleaned review is on the review
    where = f"{checked.name}: {shown}" if column else checked.name
    if _raised(item):
        if column and column not in checked.frame.columns:
            return f"{where}: {_type(item)} could not run: column {column!r} is missing"
        return f"{where}: {_type(item)} could not run: {_exception_message(item)[:200]}"
    describe = _DESCRIBERS.get(_type(item))
    text = describe(checked, item, kwargs) if describe else _generic(item)
    if describe is _describe_overlap:  # names its own split (the checked group)
        return text + _knobs(checked, item)
    return f"{where}: {text}{_knobs(checked, item)}"


def _describe_row_count(checked, item, kwargs) -> str:
    rows = item["result"]["observed_value"]
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    if low is not None and rows < low:
        # A small source passes with a lower floor for one run (the README's small-data recipe).
        return (
            f"{rows:,} rows, fewer than the {low:,} required (a smaller source for one run:"
            f" {hints.setting('min_rows', rows)})"
        )
    return f"{rows:,} rows, more than the {high:,} allowed"


def _describe_missing_column(checked, item, kwargs) -> str:
    present = ", ".join(str(c) for c in checked.frame.columns if c not in DERIVED_FROM) or "none"
    return f"column is missing (columns present: {present})"


def _describe_type(checked, item, kwargs) -> str:
    observed = item["result"].get("observed_value")
    examples = _examples(checked.frame[kwargs["column"]].dropna().head(EXAMPLES).tolist())
    return f"column type is {observed}, expected {kwargs['type_']}{examples}"


def _describe_nulls(checked, item, kwargs) -> str:
    result = item["result"]
    rows = result.get("partial_unexpected_index_list") or []
    where = f", e.g. rows {', '.join(map(str, rows[:EXAMPLES]))}" if rows else ""
    return f"{_count(result)} rows are null{where}"


def _describe_regex(checked, item, kwargs) -> str:
    result = item["result"]
    what = "blank" if kwargs["regex"] == BLANK_REGEX else f"matching {kwargs['regex']!r}"
    return f"{_count(result)} rows are {what}{_examples(result['partial_unexpected_list'])}"


def _describe_lengths(checked, item, kwargs) -> str:
    result = item["result"]
    outside = _bound_words(kwargs, "shorter than {:,}", "longer than {:,}", " or ")
    values = _distinct(result["partial_unexpected_list"])
    examples = ", ".join(f"{_quote(v)} ({len(v):,} chars)" for v in values[:EXAMPLES])
    return f"{_count(result)} rows are {outside} characters" + (
        f", e.g. {examples}" if examples else ""
    )


def _describe_duplicates(checked, item, kwargs) -> str:
    values = checked.frame[kwargs["column"]].dropna()
    repeats = len(values) - values.nunique()
    allowed = 1 - kwargs["min_value"] if kwargs.get("min_value") is not None else 0.0
    counts = values.value_counts()
    top = counts[counts > 1].head(EXAMPLES)
    source = DERIVED_FROM.get(kwargs["column"])
    if source in checked.frame.columns:  # the first review spelled so, not its cleaned tokens
        first = values.reset_index().drop_duplicates(kwargs["column"]).set_index(kwargs["column"])
        shown = checked.frame.loc[first.loc[top.index, "index"], source].tolist()
    else:
        shown = top.index.tolist()
    examples = ", ".join(f"{_quote(v)} x{n}" for v, n in zip(shown, top, strict=True))
    share = repeats / len(values) if len(values) else 0.0
    return (
        f"{repeats:,} of {len(values):,} rows ({share:.1%}) repeat an earlier {kwargs['column']},"
        f" more than the {allowed:.1%} allowed" + (f", e.g. {examples}" if examples else "")
    )


def _describe_not_in_set(checked, item, kwargs) -> str:
    result = item["result"]
    counts = result.get("partial_unexpected_counts") or []
    examples = ", ".join(f"{_quote(c['value'])} x{c['count']:,}" for c in counts[:EXAMPLES])
    allowed = ", ".join(map(str, kwargs["value_set"]))
    return f"{_count(result)} rows are not one of {allowed}" + (
        f", e.g. {examples}" if examples else ""
    )


def _describe_shares(checked, item, kwargs) -> str:
    details = item["result"]["details"]
    parts = ", ".join(
        f"{value} {details['rows'][value]:,} ({share:.1%})"
        for value, share in details["shares"].items()
    )
    bound = _bound_words(kwargs, "at least {:.0%}", "at most {:.0%}", " and ")
    return f"class balance off: {parts} of {details['total_rows']:,} rows; each must be {bound}"


def _describe_overlap(checked, item, kwargs) -> str:
    details = item["result"]["details"]
    share = item["result"]["observed_value"]
    group, group_column = kwargs["group"], kwargs["group_column"]
    others = sorted(
        str(g) for g in checked.frame[group_column].dropna().unique() if str(g) != str(group)
    )
    high = kwargs.get("max_value")
    bound = f", more than the {high:.1%} allowed" if high is not None else ""
    column = kwargs["column"]
    seen = f" ({column})" if column in DERIVED_FROM else ""
    return (
        f"{group}: {DERIVED_FROM.get(column, column)}: {details['overlap_rows']:,} of"
        f" {details['group_rows']:,} rows ({share:.1%}) also occur in"
        f" {' or '.join(others) or 'another group'}{seen}{bound}"
        f"{_examples(details['examples'])}"
    )


_DESCRIBERS: dict[str, Callable[[Checked, Mapping, Mapping], str]] = {
    "expect_table_row_count_to_be_between": _describe_row_count,
    "expect_column_to_exist": _describe_missing_column,
    "expect_column_type_to_be": _describe_type,
    "expect_column_values_to_not_be_null": _describe_nulls,
    "expect_column_values_to_not_match_regex": _describe_regex,
    "expect_column_value_lengths_to_be_between": _describe_lengths,
    "expect_column_proportion_of_unique_values_to_be_between": _describe_duplicates,
    "expect_column_values_to_be_in_set": _describe_not_in_set,
    "expect_column_value_shares_to_be_between": _describe_shares,
    "expect_column_value_overlap_between_groups_to_be_between": _describe_overlap,
}


def _bound_words(kwargs: Mapping[str, Any], low_words: str, high_words: str, joint: str) -> str:
    """'shorter than 10 or longer than 20,000' from min_value/max_value, skipping a None bound."""
    words = [
        template.format(kwargs[key])
        for key, template in (("min_value", low_words), ("max_value", high_words))
        if kwargs.get(key) is not None
    ]
    return joint.join(words)


def _generic(item: Mapping[str, Any]) -> str:
    observed = item["result"].get("observed_value")
    return f"{_type(item)} not met (observed {observed!r})"


def _knobs(checked: Checked, item: Mapping[str, Any]) -> str:
    """' [validate.min_rows]': the params.yaml keys in the reviewed suite entry's bounds."""
    names = []
    for raw in _raw_entries(checked.raw_suite, item):
        for value in raw.get("kwargs", {}).values():
            if isinstance(value, dict) and "$PARAMETER" in value:
                for name in re.findall(r"[A-Za-z_]\w*", str(value["$PARAMETER"])):
                    if name != "labels" and f"{KNOB_SECTION}.{name}" not in names:
                        names.append(f"{KNOB_SECTION}.{name}")
    return f" [{', '.join(names)}]" if names else ""


def _raw_entries(raw_suite: Mapping[str, Any], item: Mapping[str, Any]) -> list[Mapping]:
    """The suite entries this result came from (same type and column; GX reorders results)."""
    column = _kwargs(item).get("column")
    return [
        raw
        for raw in raw_suite.get("expectations", [])
        if raw.get("type") == _type(item) and raw.get("kwargs", {}).get("column") == column
    ]


def _type(item: Mapping[str, Any]) -> str:
    return item["expectation_config"]["type"]


def _kwargs(item: Mapping[str, Any]) -> dict:
    return item["expectation_config"]["kwargs"]


def _exception_message(item: Mapping[str, Any]) -> str | None:
    """The message of an exception the expectation raised, or None.

    GX reports an expectation's own exception flat, and a failed metric as a dict of
    {metric id: exception info}.
    """
    info = item.get("exception_info") or {}
    found = [info, *(v for v in info.values() if isinstance(v, dict))]
    for entry in found:
        if entry.get("raised_exception"):
            return one_line(entry.get("exception_message"))
    return None


def _raised(item: Mapping[str, Any]) -> bool:
    return _exception_message(item) is not None


def _count(result: Mapping[str, Any]) -> str:
    return f"{result['unexpected_count']:,} of {result['element_count']:,}"


def _distinct(values: list) -> list:
    seen, out = set(), []
    for value in values:
        key = repr(value)
        if key not in seen:
            seen.add(key)
            out.append(value)
    return out


def _examples(values: list) -> str:
    shown = _distinct(values)[:EXAMPLES]
    return f", e.g. {', '.join(_quote(v) for v in shown)}" if shown else ""


def _quote(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "null"
    if not isinstance(value, str):
        return repr(value)
    if len(value) > EXAMPLE_CHARS:
        value = value[: EXAMPLE_CHARS - 1] + "…"
    return repr(value)

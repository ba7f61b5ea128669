"""Two custom Great Expectations 1.x expectations for checks GX has no built-in for.

- `expect_column_value_shares_to_be_between`: every value of a set makes up a bounded share of
  the column's non-null rows (class balance). Missing values count as a share of 0, which is what
  a built-in such as `expect_column_distinct_values_to_be_in_set` cannot see.
- `expect_column_value_overlap_between_groups_to_be_between`: in a batch holding several groups
  (the train and test splits stacked, tagged by a `split` column), the share of one group's rows
  whose value also occurs in another group (train/test leakage).

Importing this module imports GX (slow) and registers both expectations by name, which is what lets
a suite JSON refer to them; only `steps.validation.suite` imports it, inside a function.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pandas as pd
from great_expectations.compatibility import pydantic
from great_expectations.core.metric_domain_types import MetricDomainTypes
from great_expectations.core.suite_parameters import SuiteParameterDict
from great_expectations.execution_engine import PandasExecutionEngine
from great_expectations.expectations.expectation import (
    ColumnAggregateExpectation,
    render_suite_parameter_string,
)
from great_expectations.expectations.metrics.column_aggregate_metric_provider import (
    ColumnAggregateMetricProvider,
)
from great_expectations.expectations.metrics.metric_provider import metric_value
from great_expectations.render import LegacyRendererType, RenderedStringTemplateContent
from great_expectations.render.renderer.renderer import renderer
from great_expectations.render.util import substitute_none_for_missing

# How many overlapping values a result carries as examples (the report shows a few of them).
EXAMPLE_COUNT = 5


class ColumnValueOverlapBetweenGroups(ColumnAggregateMetricProvider):
    """Rows of `group` (by `group_column`) whose non-null value also occurs outside that group."""

    metric_name = "column.value_overlap_between_groups"
    value_keys = ("group_column", "group")

    @metric_value(engine=PandasExecutionEngine)
    def _pandas(cls, execution_engine, metric_domain_kwargs, metric_value_kwargs, **kwargs):
        df, _, accessor = execution_engine.get_compute_domain(
            metric_domain_kwargs, MetricDomainTypes.COLUMN
        )
        column = accessor["column"]
        group_column = metric_value_kwargs["group_column"]
        group = metric_value_kwargs["group"]
        values = df[[column, group_column]].dropna(subset=[column])
        inside = values[group_column] == group
        others = set(values.loc[~inside, column])
        mine = values.loc[inside, column]
        shared = mine[mine.isin(others)]
        return {
            "group_rows": len(mine),
            "overlap_rows": len(shared),
            "examples": shared.drop_duplicates().head(EXAMPLE_COUNT).tolist(),
        }


class ExpectColumnValueOverlapBetweenGroupsToBeBetween(ColumnAggregateExpectation):
    """Expect the share of `group`'s rows whose value also occurs in another group to be bounded.

    The batch stacks the groups (e.g. train and test splits) and `group_column` says which row
    belongs to which. Null values are left out of both sides.
    """

    group_column: str = pydantic.Field(description="Column that names each row's group.")
    group: str = pydantic.Field(description="The group whose rows are checked.")
    min_value: float | SuiteParameterDict | None = None
    max_value: float | SuiteParameterDict | None = None

    metric_dependencies = ("column.value_overlap_between_groups",)
    success_keys = ("group_column", "group", "min_value", "max_value")
    args_keys = ("column", "group_column", "group", "min_value", "max_value")
    library_metadata: ClassVar[dict] = {"maturity": "experimental", "tags": ["imdb-sentiment"]}

    def _validate(self, metrics, runtime_configuration=None, execution_engine=None):
        found = metrics["column.value_overlap_between_groups"]
        share = found["overlap_rows"] / found["group_rows"] if found["group_rows"] else 0.0
        return {
            "success": _between(
                share, self._get_success_kwarg("min_value"), self._get_success_kwarg("max_value")
            ),
            "result": {"observed_value": share, "details": found},
        }

    @classmethod
    @renderer(renderer_type=LegacyRendererType.PRESCRIPTIVE)
    @render_suite_parameter_string
    def _prescriptive_renderer(
        cls, configuration=None, result=None, runtime_configuration=None, **kwargs
    ):
        params = substitute_none_for_missing(
            configuration.kwargs if configuration else {},
            ["column", "group_column", "group", "min_value", "max_value"],
        )
        template = (
            "share of rows with $group_column $group whose $column also occurs in another"
            f" $group_column must be {_range_words(params)}."
        )
        return [_template_content(template, params, runtime_configuration)]


class ExpectColumnValueSharesToBeBetween(ColumnAggregateExpectation):
    """Expect each value of `value_set` to make up a bounded share of the column's non-null rows.

    A value of the set that never occurs has a share of 0. Values outside the set are not
    judged here (that is `expect_column_values_to_be_in_set`'s job) but count in the total.
    """

    value_set: list | SuiteParameterDict = pydantic.Field(
        description="The values whose shares are bounded."
    )
    min_value: float | SuiteParameterDict | None = None
    max_value: float | SuiteParameterDict | None = None

    metric_dependencies = ("column.value_counts",)
    success_keys = ("value_set", "min_value", "max_value")
    args_keys = ("column", "value_set", "min_value", "max_value")
    library_metadata: ClassVar[dict] = {"maturity": "experimental", "tags": ["imdb-sentiment"]}

    def _validate(self, metrics, runtime_configuration=None, execution_engine=None):
        counts: pd.Series = metrics["column.value_counts"]
        total = int(counts.sum())
        rows = {
            str(value): int(counts.get(value, 0)) for value in self._get_success_kwarg("value_set")
        }
        shares = {value: (n / total if total else 0.0) for value, n in rows.items()}
        low, high = self._get_success_kwarg("min_value"), self._get_success_kwarg("max_value")
        return {
            "success": all(_between(share, low, high) for share in shares.values()),
            # The smallest share decides a minimum bound, the largest a maximum one.
            "result": {
                "observed_value": min(shares.values()) if shares else None,
                "details": {"rows": rows, "total_rows": total, "shares": shares},
            },
        }

    @classmethod
    @renderer(renderer_type=LegacyRendererType.PRESCRIPTIVE)
    @render_suite_parameter_string
    def _prescriptive_renderer(
        cls, configuration=None, result=None, runtime_configuration=None, **kwargs
    ):
        params = substitute_none_for_missing(
            configuration.kwargs if configuration else {},
            ["column", "value_set", "min_value", "max_value"],
        )
        template = f"each of $value_set must make up {_range_words(params)} of the rows."
        if (runtime_configuration or {}).get("include_column_name") is not False:
            template = f"$column {template}"
        return [_template_content(template, params, runtime_configuration)]


def _between(value: float, low: Any, high: Any) -> bool:
    return (low is None or value >= low) and (high is None or value <= high)


def _range_words(params: dict) -> str:
    if params["min_value"] is not None and params["max_value"] is not None:
        return "between $min_value and $max_value"
    if params["min_value"] is not None:
        return "at least $min_value"
    if params["max_value"] is not None:
        return "at most $max_value"
    return "any share"


def _template_content(template: str, params: dict, runtime_configuration: dict | None):
    styling = (runtime_configuration or {}).get("styling")
    return RenderedStringTemplateContent(
        content_block_type="string_template",
        string_template={"template": template, "params": params, "styling": styling},
    )

"""`compare` stage: rank the experiment's runs by one metric and show what made them differ.

`python -m steps.compare [--metric M] [--top_n N] ...` (entry point `compare`, `make compare`)
prints a table of the best N runs with only the parameters that differ between them and the key
metrics, and draws the ranking metric against each varied parameter plus a parallel-coordinates
view of every run. Table and chart go to `reports/` and onto the compare run as artifacts.

Only `MlflowClient.search_runs` is used (the REST `runs/search` call every MLflow 2.x and 3.x
server has), so the same command works against the local SQLite store, a plain `mlflow server`
and DagsHub's hosted MLflow.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.entities import Run, RunStatus, ViewType
from mlflow.environment_variables import MLFLOW_EXPERIMENT_ID
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from steps.stage import cli
from steps.stage.config import CompareConfig, Params
from steps.stage.errors import StageError, one_line
from steps.stage.files import atomic_path
from steps.stage.paths import COMPARE_PLOT, COMPARE_TABLE
from steps.tracking import store

log = logging.getLogger(__name__)

SEARCH_PAGE_SIZE = 500  # under the 1,000-row page limit of MLflow servers (DagsHub's included)
MAX_RUNS = 5000  # enough for any sweep here; bounds the time spent paging a huge experiment
MISSING = "—"  # a param or metric the run does not have


@dataclass(frozen=True)
class RankedRun:
    """One run as the comparison sees it."""

    run_id: str
    name: str
    score: float  # the ranking metric
    metrics: dict[str, float]
    params: dict[str, str]


@dataclass(frozen=True)
class Comparison:
    """The ranked runs of an experiment and the parameters that differ between them."""

    metric: str
    higher_is_better: bool
    runs: list[RankedRun]  # every run with the metric, best first
    top_n: int
    key_metrics: tuple[str, ...]

    @property
    def best(self) -> list[RankedRun]:
        return self.runs[: self.top_n]


def search_runs(client: MlflowClient, experiment_id: str, cfg: CompareConfig) -> list[Run]:
    """Finished runs of the experiment (tagged `cfg.stage`, if set), best first by the metric."""
    filters = [f"attributes.status = '{RunStatus.to_string(RunStatus.FINISHED)}'"]
    if cfg.stage:
        filters.append(f"tags.stage = '{cfg.stage}'")
    order = f"metrics.`{cfg.metric}` {'DESC' if cfg.higher_is_better else 'ASC'}"
    runs: list[Run] = []
    token = None
    while len(runs) < MAX_RUNS:
        page = client.search_runs(
            [experiment_id],
            filter_string=" and ".join(filters),
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=min(SEARCH_PAGE_SIZE, MAX_RUNS - len(runs)),
            order_by=[order, "attributes.start_time DESC"],
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            break
    return runs


def rank(runs: list[Run], cfg: CompareConfig) -> Comparison:
    """Keep runs with a finite ranking metric and order them best first (ties: newest first).

    Sorting happens here, not only on the server, so ranking never depends on how a server
    orders missing or NaN metrics.
    """
    ranked = []
    for run in sorted(runs, key=lambda r: r.info.start_time or 0, reverse=True):
        score = run.data.metrics.get(cfg.metric)
        if score is None or not math.isfinite(score):
            continue
        ranked.append(
            RankedRun(
                run_id=run.info.run_id,
                name=run.info.run_name or "",
                score=score,
                metrics=dict(run.data.metrics),
                params=dict(run.data.params),
            )
        )
    ranked.sort(key=lambda r: -r.score if cfg.higher_is_better else r.score)  # stable: ties keep
    return Comparison(
        metric=cfg.metric,
        higher_is_better=cfg.higher_is_better,
        runs=ranked,
        top_n=cfg.top_n,
        key_metrics=tuple(m for m in cfg.key_metrics if m != cfg.metric),
    )


def varied_params(runs: list[RankedRun]) -> list[str]:
    """Names of the params whose value is not the same in every run (absent counts as a value)."""
    names = sorted({name for run in runs for name in run.params})
    return [name for name in names if len({run.params.get(name) for run in runs}) > 1]


def format_table(comparison: Comparison) -> str:
    """A Markdown table of the best runs: rank, run, the metric, key metrics, varied params."""
    best = comparison.best
    params = varied_params(best)
    header = ["#", "run", comparison.metric, *comparison.key_metrics, *params]
    rows = [
        [
            str(i),
            f"{run.name} ({run.run_id[:8]})" if run.name else run.run_id[:8],
            _number(run.score),
            *(_number(run.metrics.get(m)) for m in comparison.key_metrics),
            *(run.params.get(p, MISSING) for p in params),
        ]
        for i, run in enumerate(best, start=1)
    ]
    widths = [max(len(line[col]) for line in [header, *rows]) for col in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    separator = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), separator, *(line(r) for r in rows)])


def plot(comparison: Comparison, path: Path) -> None:
    """Metric against each varied parameter, and every run as a line across params -> metric."""
    from matplotlib.figure import Figure  # Agg canvas, no pyplot state: safe in any process

    runs = comparison.runs
    params = varied_params(runs)
    panels = max(len(params), 1)
    fig = Figure(figsize=(max(4.0 * panels, 8.0), 8.0), layout="constrained")
    grid = fig.add_gridspec(2, panels)
    direction = "higher" if comparison.higher_is_better else "lower"
    fig.suptitle(f"{len(runs)} runs by {comparison.metric} ({direction} is better)")
    top = {run.run_id for run in comparison.best}
    for col, name in enumerate(params):
        ax = fig.add_subplot(grid[0, col])
        axis = _Axis.of(name, [run.params.get(name) for run in runs])
        for chosen, color, label in ((False, "tab:blue", "other runs"), (True, "tab:orange", "")):
            picked = [run for run in runs if (run.run_id in top) == chosen]
            if not picked:
                continue
            xs = [axis.position(run.params.get(name)) for run in picked]
            label = label or f"top {comparison.top_n}"
            ax.scatter(xs, [run.score for run in picked], c=color, alpha=0.8, label=label)
        axis.decorate_x(ax)
        ax.legend(fontsize=8)
        ax.set_xlabel(name)
        ax.set_ylabel(comparison.metric)
        ax.grid(alpha=0.3)
    if not params:
        ax = fig.add_subplot(grid[0, 0])
        ax.text(0.5, 0.5, "every run has the same parameters", ha="center", va="center")
        ax.set_axis_off()
    _parallel_coordinates(fig.add_subplot(grid[1, :]), comparison, params)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def _parallel_coordinates(ax, comparison: Comparison, params: list[str]) -> None:
    """One line per run across the varied params and the metric, coloured by the metric."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    runs = comparison.runs
    columns = [*params, comparison.metric]
    axes = [_Axis.of(name, [run.params.get(name) for run in runs]) for name in params]
    axes.append(_Axis.of(comparison.metric, [_number(run.score) for run in runs]))
    scores = [run.score for run in runs]
    norm = Normalize(min(scores), max(scores))
    cmap = colormaps["viridis" if comparison.higher_is_better else "viridis_r"]
    # Worst first, so the best runs are drawn on top.
    for run in reversed(runs):
        values = [*(run.params.get(p) for p in params), _number(run.score)]
        ys = [axis.unit(value) for axis, value in zip(axes, values, strict=True)]
        ax.plot(range(len(columns)), ys, color=cmap(norm(run.score)), alpha=0.8, marker="o")
    ax.set_xticks(range(len(columns)), columns)
    ax.set_yticks([])
    for x, axis in enumerate(axes):
        ax.axvline(x, color="grey", linewidth=0.8)
        for label, y in axis.ticks():
            ax.annotate(label, (x, y), xytext=(3, 0), textcoords="offset points", fontsize=7)
    ax.set_xlim(-0.1, len(columns) - 0.6)
    ax.set_title("parallel coordinates (each axis scaled to its own range)")
    ax.get_figure().colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=comparison.metric)


@dataclass(frozen=True)
class _Axis:
    """How a param's logged (text) values are placed on an axis: numbers, log numbers or labels."""

    name: str
    kind: str  # "linear", "log" or "category"
    categories: tuple[str, ...] = ()
    low: float = 0.0
    high: float = 1.0

    @classmethod
    def of(cls, name: str, values: list[str | None]) -> _Axis:
        numbers = [_float(v) for v in values]
        if all(n is not None and math.isfinite(n) for n in numbers):
            low, high = min(numbers), max(numbers)
            # Regularisation strengths and feature counts are swept in orders of magnitude.
            if low > 0 and high / low >= 100:
                return cls(name, "log", low=math.log10(low), high=math.log10(high))
            return cls(name, "linear", low=low, high=high)
        labels = sorted({MISSING if v is None else v for v in values})
        return cls(name, "category", categories=tuple(labels), high=max(len(labels) - 1, 1))

    def position(self, value: str | None) -> float:
        """Where the value sits on a plain axis (categories at 0, 1, 2, ...)."""
        if self.kind == "category":
            return float(self.categories.index(MISSING if value is None else value))
        return float(value)

    def unit(self, value: str | None) -> float:
        """The value scaled to [0, 1] along this axis."""
        x = self.position(value)
        if self.kind == "log":
            x = math.log10(x)
        span = self.high - self.low
        return 0.5 if span == 0 else (x - self.low) / span

    def ticks(self) -> list[tuple[str, float]]:
        if self.kind == "category":
            return [(c, self.unit(c)) for c in self.categories]
        low, high = (10**self.low, 10**self.high) if self.kind == "log" else (self.low, self.high)
        if high == low:
            return [(_number(low), 0.5)]
        return [(_number(low), 0.0), (_number(high), 1.0)]

    def decorate_x(self, ax) -> None:
        if self.kind == "category":
            ax.set_xticks(range(len(self.categories)), self.categories, rotation=30)
            ax.margins(x=0.25)
        elif self.kind == "log":
            ax.set_xscale("log")


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _number(value: float | None) -> str:
    return MISSING if value is None else f"{value:.4g}"


def run(
    client: MlflowClient,
    experiment_id: str,
    cfg: CompareConfig,
    table_path: Path = COMPARE_TABLE,
    plot_path: Path = COMPARE_PLOT,
) -> Comparison:
    """Rank the experiment's runs, write the table and chart; raise StageError if none qualify."""
    try:
        runs = search_runs(client, experiment_id, cfg)
    except MlflowException as exc:
        uri = mlflow.get_tracking_uri()
        raise StageError(f"cannot search runs at {uri}: {one_line(exc)}") from None
    comparison = rank(runs, cfg)
    if not comparison.runs:
        experiment = client.get_experiment(experiment_id).name
        which = f"{cfg.stage} runs" if cfg.stage else "runs"
        raise StageError(
            f"experiment {experiment!r} has no finished {which} with metric {cfg.metric!r}"
            f" at {mlflow.get_tracking_uri()}: train a model first (make run) or set compare.metric"
        )
    table = format_table(comparison)
    with atomic_path(Path(table_path)) as tmp:
        tmp.write_text(table + "\n", encoding="utf-8")
    plot(comparison, Path(plot_path))
    return comparison


def _command(params: Params, cfg: CompareConfig, args: argparse.Namespace) -> None:
    # cli.run has called store.configure(), whose mlflow.set_experiment exports the id here.
    experiment_id = MLFLOW_EXPERIMENT_ID.get()
    comparison = run(MlflowClient(), experiment_id, cfg)
    print(format_table(comparison))
    best = comparison.runs[0]
    log.info(
        "best of %d runs by %s: %s (%s = %s); table %s, chart %s",
        len(comparison.runs),
        cfg.metric,
        best.run_id,
        cfg.metric,
        _number(best.score),
        COMPARE_TABLE,
        COMPARE_PLOT,
    )
    with store.stage_run("compare"):
        store.log_config(cfg)
        mlflow.set_tag("best_run_id", best.run_id)
        mlflow.log_artifact(str(COMPARE_TABLE))
        mlflow.log_artifact(str(COMPARE_PLOT))


def main(argv: list[str] | None = None) -> int:
    return cli.main("compare", argv, _command)


if __name__ == "__main__":
    sys.exit(main())

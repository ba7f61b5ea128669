"""`compare` entry point: rank the project's runs by one metric and show what made them differ.

`python -m steps.compare [--metric M] [--top_n N] ...` (entry point `compare`, `make compare`)
prints a table of the best N runs with the key metrics and only the params.yaml keys that differ
between them, and draws the ranking metric against each key that varied (a sweep's curve). Table
and chart go to `reports/` and onto the compare run as artifacts.

The runs are the project's wherever they were logged (steps/tracking/runs.py): a bare
`mlflow run . -e train -P C=0.5` lands in MLflow's `Default` experiment, `make run` in
`imdb-sentiment`, and both are ranked together (an `experiment` column appears when the best runs
span more than one). Only `runs/search` and `experiments/search` are used, which every MLflow 2.x
and 3.x server has: the same command works against the local SQLite store, a plain
`mlflow server` and DagsHub's hosted MLflow.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.entities import Run, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from steps.entry import cli
from steps.stage.config import CompareConfig, Params
from steps.stage.errors import StageError, one_line
from steps.stage.files import atomic_path
from steps.stage.paths import COMPARE_PLOT, COMPARE_TABLE
from steps.stage.schema import section_fields
from steps.tracking import runs as project
from steps.tracking import store

log = logging.getLogger(__name__)

MAX_RUNS = 5000  # enough for any sweep here; bounds the time spent paging a huge store
MISSING = "—"  # a param or metric the run does not have
BEST_RUN_TAG = "best_run_id"  # on the compare run: the run ranked first


@dataclass(frozen=True)
class RankedRun:
    """One run as the comparison sees it."""

    run_id: str
    name: str
    score: float  # the ranking metric
    metrics: dict[str, float]
    params: dict[str, str]  # only params.yaml keys (not --params, the file's path)
    experiment: str = ""  # the experiment's name


@dataclass(frozen=True)
class Comparison:
    """The ranked runs of the project and the parameters that differ between them."""

    metric: str
    higher_is_better: bool
    runs: list[RankedRun]  # every run with the metric, best first
    top_n: int
    key_metrics: tuple[str, ...]

    @property
    def best(self) -> list[RankedRun]:
        return self.runs[: self.top_n]


def search_runs(client: MlflowClient, cfg: CompareConfig) -> list[Run]:
    """The project's finished runs (tagged `cfg.stage`, if set), in any experiment."""
    filters = [f"attributes.status = '{RunStatus.to_string(RunStatus.FINISHED)}'"]
    if cfg.stage:
        filters.append(f"tags.{store.STAGE_TAG} = '{cfg.stage}'")
    order = f"metrics.`{cfg.metric}` {'DESC' if cfg.higher_is_better else 'ASC'}"
    return project.project_runs(
        client, " and ".join(filters), [order, "attributes.start_time DESC"], MAX_RUNS
    )


def knobs() -> set[str]:
    """Every params.yaml key, bare (as stages log them) and qualified (as main's -P may)."""
    names = set()
    for section, cls in section_fields(Params).items():
        for name in section_fields(cls):
            names |= {name, f"{section}.{name}"}
    return names


def rank(
    runs: list[Run], cfg: CompareConfig, experiments: dict[str, str] | None = None
) -> Comparison:
    """Keep runs with a finite ranking metric and order them best first (ties: newest first).

    Sorting happens here, not only on the server, so ranking never depends on how a server
    orders missing or NaN metrics. Params that are no params.yaml key (`params`, the file a
    stage was given) are left out: they are plumbing, not a recipe.
    """
    keys = knobs()
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
                params={k: v for k, v in run.data.params.items() if k in keys},
                experiment=(experiments or {}).get(run.info.experiment_id, run.info.experiment_id),
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
    where = len({run.experiment for run in best}) > 1  # name the experiment only if it varies
    header = ["#", "run", *(["experiment"] if where else []), comparison.metric]
    header += [*comparison.key_metrics, *params]
    rows = [
        [
            str(i),
            f"{run.name} ({run.run_id[:8]})" if run.name else run.run_id[:8],
            *([run.experiment] if where else []),
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


def chart(comparison: Comparison):  # -> matplotlib Figure | None
    """The ranking metric against each params.yaml key that varied: a sweep's curve per key.

    Each run is a dot; the runs in the table are numbered with their rank, so chart and table
    read together. What MLflow's own compare view does better (parallel coordinates, picking
    runs by hand) is left to it. None when no key varied: there is no curve to draw.
    """
    from matplotlib.figure import Figure  # Agg canvas, no pyplot state: safe in any process

    runs = comparison.runs
    params = varied_params(runs)
    if not params:
        return None
    fig = Figure(figsize=(max(4.5 * len(params), 6.0), 4.2), layout="constrained")
    axes = fig.subplots(1, len(params), squeeze=False)[0]
    direction = "higher" if comparison.higher_is_better else "lower"
    fig.suptitle(  # two short lines: one line was wider than a one-key chart and got cut
        f"{comparison.metric} of {len(runs)} runs ({direction} is better)\n"
        f"numbered: ranks 1-{len(comparison.best)} in {COMPARE_TABLE.name}"
    )
    rank = {run.run_id: i for i, run in enumerate(comparison.best, start=1)}
    for ax, name in zip(axes, params, strict=True):
        axis = _Axis.of(name, [run.params.get(name) for run in runs])
        xs = [axis.position(run.params.get(name)) for run in runs]
        ys = [run.score for run in runs]
        colours = ["tab:orange" if run.run_id in rank else "tab:blue" for run in runs]
        ax.scatter(xs, ys, c=colours, alpha=0.8)
        ranked = [(x, y, rank[run.run_id]) for x, y, run in zip(xs, ys, runs, strict=True)
                  if run.run_id in rank]  # fmt: skip
        for x, y, text in rank_labels(ranked, span=max(ys) - min(ys)):
            ax.annotate(text, (x, y), xytext=(5, 3), textcoords="offset points")
        axis.decorate_x(ax)
        ax.set_xlabel(name)
        ax.set_ylabel(comparison.metric)
        ax.grid(alpha=0.3)
    return fig


def rank_labels(
    points: list[tuple[float, float, int]], span: float
) -> list[tuple[float, float, str]]:
    """One label per cluster of ranked dots: dots at the same x within 3% of the metric's span
    of each other share one label ("2,5"), where one label each would overlap."""
    labels: list[tuple[float, float, list[int]]] = []
    for x, y, number in sorted(points, key=lambda p: (p[0], p[1])):
        near = labels[-1] if labels else None
        if near and near[0] == x and abs(y - near[1]) <= 0.03 * span:
            near[2].append(number)
        else:
            labels.append((x, y, [number]))
    return [(x, y, ",".join(map(str, sorted(numbers)))) for x, y, numbers in labels]


def plot(comparison: Comparison, path: Path) -> bool:
    """Write `chart` as a PNG; False (and nothing written) when there is no chart."""
    fig = chart(comparison)
    if fig is None:
        return False
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return True


@dataclass(frozen=True)
class _Axis:
    """How a param's logged (text) values are placed on an axis: numbers, log numbers or labels."""

    name: str
    kind: str  # "linear", "log" or "category"
    categories: tuple[str, ...] = ()

    @classmethod
    def of(cls, name: str, values: list[str | None]) -> _Axis:
        numbers = [_float(v) for v in values]
        if all(n is not None and math.isfinite(n) for n in numbers):
            low, high = min(numbers), max(numbers)
            # Regularisation strengths and feature counts are swept in orders of magnitude.
            kind = "log" if low > 0 and high / low >= 10 else "linear"  # a decade or more
            return cls(name, kind)
        labels = sorted({MISSING if v is None else v for v in values})
        return cls(name, "category", categories=tuple(labels))

    def position(self, value: str | None) -> float:
        """Where the value sits on the axis (categories at 0, 1, 2, ...)."""
        if self.kind == "category":
            return float(self.categories.index(MISSING if value is None else value))
        return float(value)

    def decorate_x(self, ax) -> None:
        if self.kind == "category":
            ax.set_xticks(range(len(self.categories)), self.categories, rotation=30)
            ax.margins(x=0.25)
        elif self.kind == "log":
            from matplotlib.ticker import FuncFormatter

            ax.set_xscale("log")
            # ticks as 1, 10, 30: not 10^0, 10^1
            ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _number(value: float | None) -> str:
    return MISSING if value is None else f"{value:.4g}"


def run(
    client: MlflowClient,
    cfg: CompareConfig,
    table_path: Path = COMPARE_TABLE,
    plot_path: Path = COMPARE_PLOT,
) -> Comparison:
    """Rank the project's runs, write the table (and the chart when a key varied); raise
    StageError if none qualify."""
    try:
        found = search_runs(client, cfg)
        names = project.experiments(client) if found else {}
    except MlflowException as exc:
        uri = mlflow.get_tracking_uri()
        raise StageError(f"cannot search runs at {uri}: {one_line(exc)}") from None
    comparison = rank(found, cfg, names)
    if not comparison.runs:
        which = f"{cfg.stage} runs" if cfg.stage else "runs"
        raise StageError(
            f"no finished {which} of {store.PROJECT_NAME} with metric {cfg.metric!r}"
            f" at {mlflow.get_tracking_uri()}: train a model first (make run) or set compare.metric"
        )
    table = format_table(comparison)
    with atomic_path(Path(table_path)) as tmp:
        tmp.write_text(table + "\n", encoding="utf-8")
    if not plot(comparison, Path(plot_path)):
        Path(plot_path).unlink(missing_ok=True)  # an older chart would describe other runs
        log.info("no chart: every run has the same params.yaml values")
    return comparison


def _command(params: Params, cfg: CompareConfig, args: argparse.Namespace) -> None:
    comparison = run(MlflowClient(), cfg)
    print(format_table(comparison))
    best = comparison.runs[0]
    log.info(
        "best of %d runs by %s: %s (%s = %s); table %s%s",
        len(comparison.runs),
        cfg.metric,
        best.run_id,
        cfg.metric,
        _number(best.score),
        COMPARE_TABLE,
        f", chart {COMPARE_PLOT}" if COMPARE_PLOT.exists() else "",
    )
    with store.stage_run("compare"):
        store.log_config(cfg)
        mlflow.set_tag(BEST_RUN_TAG, best.run_id)
        mlflow.log_artifact(str(COMPARE_TABLE))
        if COMPARE_PLOT.exists():
            mlflow.log_artifact(str(COMPARE_PLOT))


def main(argv: list[str] | None = None) -> int:
    return cli.main("compare", argv, _command)


if __name__ == "__main__":
    sys.exit(main())

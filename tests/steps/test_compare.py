"""compare against a real SQLite MLflow store holding runs made by the test."""

from __future__ import annotations

import dataclasses

import pytest
from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient

from steps import compare
from steps.stage.config import load_params
from steps.stage.paths import COMPARE_PLOT, COMPARE_TABLE, PROJECT_ROOT
from steps.tracking import runs, store

PARAMS = str(PROJECT_ROOT / "params.yaml")
CFG = load_params(PARAMS).compare
METRIC = CFG.metric
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def add_run(
    client, experiment_id, name, params, metrics, stage="train", status="FINISHED", tags=None
):
    run = client.create_run(experiment_id, run_name=name, tags={"stage": stage, **(tags or {})})
    client.log_batch(
        run.info.run_id,
        metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()],
        params=[Param(k, str(v)) for k, v in params.items()],
    )
    client.set_terminated(run.info.run_id, status=status)
    return run.info.run_id


@pytest.fixture
def local_store(tracking_uri, tmp_path, monkeypatch):
    """The project's experiment in a fresh store; reports/ lands in tmp_path."""
    monkeypatch.chdir(tmp_path)
    experiment_id = store.configure()
    return MlflowClient(), experiment_id


@pytest.fixture
def sweep(local_store):
    """Six train runs (C and classifier vary, seed does not) plus runs compare must ignore."""
    client, experiment_id = local_store
    scores = {
        ("0.01", "logreg"): 0.81,
        ("0.1", "logreg"): 0.86,
        ("1.0", "logreg"): 0.88,
        ("10.0", "logreg"): 0.84,
        ("1.0", "svm"): 0.89,
        ("100.0", "svm"): 0.83,
    }
    ids = {}
    for (c, clf), score in scores.items():
        ids[(c, clf)] = add_run(
            client,
            experiment_id,
            f"train-{clf}-{c}",
            {"C": c, "classifier": clf, "seed": 0},
            {METRIC: score, CFG.key_metrics[0]: score - 0.01},
        )
    # Better scores, but not candidates: another stage, a failed run, a run without the metric.
    add_run(client, experiment_id, "evaluate", {"C": "5"}, {METRIC: 0.99}, stage="evaluate")
    add_run(client, experiment_id, "crashed", {"C": "7"}, {METRIC: 0.98}, status="FAILED")
    add_run(client, experiment_id, "no-metric", {"C": "9"}, {"other": 1.0})
    return client, experiment_id, scores, ids


def table_rows(text: str) -> list[list[str]]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_ranks_best_first_and_shows_only_params_that_differ(sweep, capsys):
    _, _, scores, ids = sweep
    assert compare.main(["--params", PARAMS, "--top_n", "4"]) == 0
    out = capsys.readouterr().out
    header, _separator, *rows = table_rows(out)
    assert header == ["#", "run", METRIC, *CFG.key_metrics, "C", "classifier"]  # no seed
    assert [row[0] for row in rows] == ["1", "2", "3", "4"]
    ranked = sorted(scores.items(), key=lambda item: -item[1])[:4]
    c_col, clf_col = header.index("C"), header.index("classifier")
    assert [(row[c_col], row[clf_col]) for row in rows] == [key for key, _ in ranked]
    assert [float(row[2]) for row in rows] == [score for _, score in ranked]
    assert rows[0][1].endswith(f"({ids[('1.0', 'svm')][:8]})")
    # A key metric the runs never logged is shown as missing, not as 0.
    assert {row[header.index(CFG.key_metrics[1])] for row in rows} == {compare.MISSING}
    assert COMPARE_TABLE.read_text() == out.strip() + "\n"


def test_params_equal_among_the_best_are_left_out(sweep, capsys):
    # The best two are both C=1.0: only classifier differs between them.
    assert compare.main(["--params", PARAMS, "--top_n", "2"]) == 0
    header = table_rows(capsys.readouterr().out)[0]
    assert "classifier" in header
    assert "C" not in header and "seed" not in header


def test_lower_is_better_ranks_ascending(sweep, capsys):
    assert compare.main(["--params", PARAMS, "--higher_is_better", "false", "--top_n", "2"]) == 0
    header, _, *rows = table_rows(capsys.readouterr().out)
    assert [float(row[header.index(METRIC)]) for row in rows] == [0.81, 0.83]


def test_writes_chart_and_logs_a_compare_run_with_both_artifacts(sweep):
    client, experiment_id, _, ids = sweep
    assert compare.main(["--params", PARAMS]) == 0
    assert COMPARE_PLOT.read_bytes().startswith(PNG_MAGIC)
    fig = compare.chart(compare.rank(compare.search_runs(client, CFG), CFG))
    assert [ax.get_xlabel() for ax in fig.axes] == ["C", "classifier"]  # the keys that varied
    assert all(ax.get_legend() is None for ax in fig.axes)
    assert fig.axes[1].get_xscale() == "linear" and fig.axes[0].get_xscale() == "log"
    ranks = sorted(int(t.get_text()) for t in fig.axes[0].texts)
    assert ranks == list(range(1, CFG.top_n + 1))[: len(ids)]  # every run in the table, numbered
    runs = client.search_runs([experiment_id], "tags.stage = 'compare'")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == RunStatus.to_string(RunStatus.FINISHED)
    assert run.data.tags["best_run_id"] == ids[("1.0", "svm")]
    assert run.data.params["metric"] == METRIC
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert artifacts == {COMPARE_PLOT.name, COMPARE_TABLE.name}


def test_no_chart_when_no_params_yaml_key_varied(tmp_path, local_store, capsys):
    """Two runs that differ only in what is no recipe (the params file they were given) draw
    no chart with a `params` axis: no chart at all, and no stale one left behind."""
    client, experiment_id = local_store
    add_run(client, experiment_id, "a", {"C": "1.0", "params": "params.yaml"}, {METRIC: 0.9})
    add_run(client, experiment_id, "b", {"C": "1.0"}, {METRIC: 0.8})
    comparison = compare.rank(compare.search_runs(client, CFG), CFG)
    assert compare.varied_params(comparison.runs) == []
    assert compare.chart(comparison) is None
    COMPARE_PLOT.parent.mkdir(parents=True, exist_ok=True)
    COMPARE_PLOT.write_bytes(PNG_MAGIC)  # from an earlier comparison
    assert compare.main(["--params", PARAMS]) == 0
    assert not COMPARE_PLOT.exists() and COMPARE_TABLE.exists()
    assert "params" not in table_rows(capsys.readouterr().out)[0]


def test_empty_experiment_is_one_clear_line(local_store, capsys):
    assert compare.main(["--params", PARAMS]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1
    assert "no finished train runs of imdb-sentiment with metric" in lines[0]
    assert METRIC in lines[0]
    assert "Traceback" not in err
    assert not COMPARE_PLOT.exists() and not COMPARE_TABLE.exists()


def test_stage_filter_can_be_switched_off(sweep, capsys):
    assert compare.main(["--params", PARAMS, "--stage", "", "--top_n", "1"]) == 0
    _header, _, best = table_rows(capsys.readouterr().out)
    assert best[0] == "1" and best[1].startswith("evaluate")


def test_varied_params_treats_absent_as_different():
    def run(run_id, **params):
        return compare.RankedRun(run_id, run_id, 0.5, {}, params)

    runs = [run("a", C="1", seed="0"), run("b", C="1", seed="0", extra="x"), run("c", C="2")]
    assert compare.varied_params(runs) == ["C", "extra", "seed"]
    assert compare.varied_params(runs[:1]) == []


def test_search_pages_through_every_run(local_store, monkeypatch):
    client, experiment_id = local_store
    for i in range(5):
        add_run(client, experiment_id, f"r{i}", {"C": str(i)}, {METRIC: i / 10})
    monkeypatch.setattr(runs, "PAGE_SIZE", 2)
    found = compare.search_runs(client, dataclasses.replace(CFG, stage="train"))
    assert [r.data.metrics[METRIC] for r in found] == [0.4, 0.3, 0.2, 0.1, 0.0]


def test_the_project_s_runs_in_any_experiment_are_ranked_together(sweep, capsys):
    """A bare `mlflow run . -e train` lands in MLflow's Default experiment, tagged as ours."""
    client, _, _, _ = sweep
    bare = add_run(
        client, "0", "train", {"C": "0.5", "classifier": "logreg"}, {METRIC: 0.95},
        tags={store.PROJECT_TAG: store.PROJECT_NAME},
    )  # fmt: skip
    other = client.create_experiment("another-project")
    add_run(client, other, "theirs", {"C": "9"}, {METRIC: 0.99})  # not ours: no project tag
    assert compare.main(["--params", PARAMS, "--top_n", "3"]) == 0
    header, _, *rows = table_rows(capsys.readouterr().out)
    assert header[:4] == ["#", "run", "experiment", METRIC]
    assert rows[0][1].endswith(f"({bare[:8]})") and rows[0][2] == "Default"
    assert [row[2] for row in rows[1:]] == ["imdb-sentiment"] * 2
    assert all(float(row[3]) < 0.99 for row in rows)


@pytest.mark.parametrize(
    ("values", "kind"),
    [(["0.5", "30"], "log"), (["0.1", "1"], "log"), (["1", "5"], "linear"), (["0", "10"], "linear"),
     (["svm", "logistic"], "category")],
)  # fmt: skip
def test_a_key_spanning_a_decade_gets_a_log_axis(values, kind):
    assert compare._Axis.of("C", values).kind == kind


def test_rank_labels_of_dots_on_top_of_each_other_are_merged():
    points = [
        (30.0, 0.9244, 1),
        (30.0, 0.9240, 2),
        (10.0, 0.9238, 3),
        (0.5, 0.90, 7),
        (30.0, 0.91, 4),
    ]
    assert compare.rank_labels(points, span=0.0244) == [
        (0.5, 0.90, "7"), (10.0, 0.9238, "3"), (30.0, 0.91, "4"), (30.0, 0.9240, "1,2"),
    ]  # fmt: skip


def test_the_chart_title_fits_a_one_key_chart(sweep):
    client = sweep[0]
    fig = compare.chart(compare.run(client, CFG))
    assert fig is not None
    lines = fig.get_suptitle().splitlines()
    assert len(lines) == 2 and all(len(line) <= 60 for line in lines)

"""`main` routes each --KEY to the stage that owns it, and refuses before any stage starts (and
before the tracking store is touched) whatever a stage would refuse of its parameters: the same
`override` call, the same one line. `make run` runs `main --check` before `mlflow run`."""

import subprocess
import sys
from pathlib import Path

import pytest
from config_cases import Case, cases
from support import own_code_env, project_files, small_data_project

from steps import main as pipeline
from steps.main import route_overrides
from steps.stage import chain
from steps.stage.config import Params
from steps.stage.errors import ConfigError
from steps.stage.paths import PROJECT_ROOT
from steps.stage.schema import allowed, flat_fields, section_fields

PARAMS = str(PROJECT_ROOT / "params.yaml")


def test_bare_keys_go_to_the_stage_that_owns_them():
    routed = route_overrides(["--source", "data/x.csv", "--test_size", "0.3"])
    assert routed == {"ingest": {"source": "data/x.csv", "test_size": "0.3"}}


def test_qualified_keys_pick_one_stage():
    assert route_overrides(["--ingest.seed", "3"]) == {"ingest": {"seed": "3"}}


def test_unknown_ambiguous_and_malformed_keys_are_errors():
    train_keys = ", ".join(sorted(flat_fields(section_fields(Params)["train"])))
    with pytest.raises(ConfigError) as unknown:
        route_overrides(["--val_spilt", "x"])
    assert str(unknown.value) == (
        "main parameters: unknown parameter 'val_spilt' (did you mean 'val_split'? known under"
        f" train: {train_keys})"
    )
    with pytest.raises(ConfigError, match="unknown parameter 'sourse' \\(did you mean 'source'"):
        route_overrides(["--sourse", "x"])
    with pytest.raises(ConfigError, match="unknown parameter 'validate.source' .* under validate"):
        route_overrides(["--validate.source", "x"])
    with pytest.raises(ConfigError) as nothing_close:
        route_overrides(["--zzz", "x"])
    every = {k for s in chain.PIPELINE for k in flat_fields(section_fields(Params)[s])}
    assert str(nothing_close.value).endswith(f"(known: {', '.join(sorted(every))})")
    with pytest.raises(ConfigError, match="'seed' is ambiguous, use ingest.seed or train.seed"):
        route_overrides(["--seed", "1"])
    with pytest.raises(ConfigError, match="has no value"):
        route_overrides(["--source"])
    with pytest.raises(ConfigError, match="expected --KEY VALUE"):
        route_overrides(["source", "x"])


def run_main(argv: list[str], capsys) -> tuple[int, list[str]]:
    code = pipeline.main(["--params", PARAMS, *argv])
    captured = capsys.readouterr()
    return code, captured.err.strip().splitlines() + captured.out.strip().splitlines()


@pytest.mark.parametrize("case", cases(chain.PIPELINE), ids=lambda c: c.id)
def test_check_refuses_what_the_stage_would_in_the_stage_s_words(
    case: Case, capsys, monkeypatch, tmp_path
):
    """The line is the one `python -m steps.<stage>` prints (tests/steps/entry/test_cli.py), from
    main."""
    monkeypatch.chdir(tmp_path)
    code, said = run_main(["--check", f"--{case.section}.{case.key}", case.text], capsys)
    assert code == 1
    assert said == [
        f"error: main: {case.section} parameters: {case.key} must be {allowed(case.typ)},"
        f" got {case.value!r}"
    ]
    assert list(tmp_path.iterdir()) == []


def test_check_names_every_bad_override_of_every_stage_in_one_line(capsys):
    code, said = run_main(
        ["--check", "--C", "abc", "--val_split", "grupped", "--test_size", "2"], capsys
    )
    assert code == 1
    assert said == [
        "error: main: ingest parameters: test_size must be over 0 and under 1, got 2.0;"
        " train parameters: C must be a number, got 'abc';"
        " val_split must be grouped or random, got 'grupped'"
    ]
    assert run_main(["--check", "--C", "0.5", "--val_split", "random"], capsys) == (
        0,
        [f"main: {PARAMS} and the overrides are fine"],
    )


# --- the processes: nothing ingested, nothing logged --------------------------------------------


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["steps.main", "--C", "abc"],
            "error: main: train parameters: C must be a number, got 'abc'",
        ),
        (
            ["steps.main", "--val_split", "grupped"],
            "error: main: train parameters: val_split must be grouped or random, got 'grupped'",
        ),
        (
            ["steps.main", "--check", "--test_size", "2"],
            "error: main: ingest parameters: test_size must be over 0 and under 1, got 2.0",
        ),
        (
            ["steps.ingest", "--test_size", "2"],
            "error: ingest: ingest parameters: test_size must be over 0 and under 1, got 2.0",
        ),
        (
            ["steps.train", "--val_splitt", "random"],
            "error: train: train parameters: unknown parameter 'val_splitt' (did you mean",
        ),
    ],
    ids=lambda a: " ".join(a) if isinstance(a, list) else "",
)
@pytest.mark.integration
def test_a_refused_value_stops_the_process_before_anything_is_written(args, line, project_copy):
    """The pipeline and a stage started by hand (as `make run` and `dvc repro` start them) in a
    project copy pointed at real (small) data: one line, exit 1, not a file changed: no
    data/, no mlflow.db, no reports."""
    small_data_project(project_copy, rows=400)
    before = project_files(project_copy)
    done = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=project_copy, env=own_code_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.strip().startswith(line)
    assert project_files(project_copy) == before


@pytest.mark.integration
def test_a_bad_params_file_stops_a_stage_before_anything_is_written(project_copy):
    """`dvc exp run -S train.val_split=grupped` edits params.yaml, then `dvc repro` starts the
    first stage: every stage loads the whole file, so ingest refuses the train key."""
    small_data_project(project_copy, rows=400)
    params = project_copy / "params.yaml"
    params.write_text(params.read_text().replace("val_split: grouped", "val_split: grupped"))
    before = project_files(project_copy)
    done = subprocess.run(
        [sys.executable, "-m", "steps.ingest"],
        cwd=project_copy, env=own_code_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: ingest: params.yaml: train.val_split must be grouped or random, got 'grupped'"
    )
    assert project_files(project_copy) == before


@pytest.mark.slow
def test_mlflow_run_p_refuses_before_any_stage_runs(project_copy):
    """`mlflow run . -e main -P val_split=grupped`: MLflow passes `--val_split grupped` to main,
    which refuses before its first child run; nothing is ingested."""
    small_data_project(project_copy, rows=400)
    venv = Path(sys.executable).parent
    env = {**own_code_env(), "PATH": f"{venv}:{own_code_env()['PATH']}"}
    for entry_point, parameter, line in (
        ("main", "val_split=grupped", "error: main: train parameters: val_split must be grouped"),
        ("train", "C=abc", "error: train: train parameters: C must be a number, got 'abc'"),
    ):
        done = subprocess.run(
            ["mlflow", "run", ".", "-e", entry_point, "-P", parameter, "--env-manager", "local"],
            cwd=project_copy, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode != 0
        assert line in done.stderr, done.stderr[-3000:]
    assert not (project_copy / "data").exists()


def test_the_stage_times_are_a_table_with_their_total():
    times = [
        pipeline.StageTime("ingest", "r1", wall_seconds=2.04, cpu_seconds=1.5),
        pipeline.StageTime("train", "r2", wall_seconds=100.0, cpu_seconds=180.25),
    ]
    assert pipeline.time_table(times).splitlines() == [
        "| stage | wall s | CPU s |",
        "| --- | ---: | ---: |",
        "| ingest | 2.0 | 1.5 |",
        "| train | 100.0 | 180.2 |",
        "| total | 102.0 | 181.8 |",
    ]


def test_main_prints_each_stage_s_wall_and_cpu_time_at_the_end(monkeypatch, capsys):
    times = [
        pipeline.StageTime(s, f"run-{s}", 1.0 + i, 2.0 * i) for i, s in enumerate(chain.PIPELINE)
    ]
    monkeypatch.setattr(pipeline.store, "configure", lambda: "0")
    monkeypatch.setattr(pipeline, "run", lambda params, overrides: times)
    monkeypatch.setattr(pipeline.champion, "status", lambda name: "champion: version 1")
    code, lines = run_main([], capsys)
    assert code == 0
    start = next(i for i, line in enumerate(lines) if line.startswith("stage times (load average"))
    assert lines[start + 1 : start + 3 + len(times) + 1] == pipeline.time_table(times).splitlines()
    assert lines[-1] == "champion: version 1"


def test_the_children_s_cpu_time_is_what_the_stages_used(monkeypatch):
    """Each stage runs as a child process (mlflow run): its CPU seconds are the children's."""
    import resource
    from types import SimpleNamespace

    used = iter(
        [SimpleNamespace(ru_utime=10.0, ru_stime=1.0), SimpleNamespace(ru_utime=13.5, ru_stime=1.5)]
    )
    monkeypatch.setattr(
        resource, "getrusage", lambda who: next(used) if who == resource.RUSAGE_CHILDREN else None
    )
    before, after = pipeline._children_cpu_seconds(), pipeline._children_cpu_seconds()
    assert after - before == 4.0

"""DVC: dvc.yaml mirrors MLproject and params.yaml; `dvc repro` in a temporary git repository runs
the real stages on small data written here; push/pull go to the default local remote (from a fresh
clone) and to moto's S3 server on 127.0.0.1; `dvc exp run -S train.C=...` reruns only what it must.
"""

from __future__ import annotations

import ast
import dataclasses
import filecmp
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml
from code_graph import has_code, transitive_files
from support import PROJECT_FILES, REPO_ROOT, free_port, make_reviews

from steps.stage import chain
from steps.stage.config import Params
from steps.stage.paths import INGESTED_DIR, UNLABELED_FILE_NAME
from steps.stage.schema import section_fields

# The stages that turn files into files. register and promote change the Model Registry, not
# files, so they stay `mlflow run` entry points (main runs them after these).
DVC_STAGES = ("ingest", "validate", "train", "evaluate")
DVC_FILES = ("dvc.yaml", ".dvc/config", ".dvc/.gitignore", ".dvcignore", ".gitignore")
ROWS = 800  # 640 train / 160 test: enough to learn, validate and evaluate in seconds
MIN_ROWS = 100  # validate.min_rows for that small set (the real default expects 25k reviews)
C_VALUE = "0.37"  # an unusual value, so the logged param can only come from this experiment
SWEEP = ("0.2", "5.0")  # train.C values of the queued sweep


def load_dvc_yaml() -> dict:
    return yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())


def declared(stage: dict, *kinds: str, cached_only: bool = False) -> list[str]:
    """The paths a stage declares as outs/metrics/plots (entries may carry options); with
    `cached_only`, those DVC caches (the rest are committed to git)."""
    kinds = kinds or ("outs", "metrics", "plots")
    entries = [e if isinstance(e, dict) else {e: {}} for k in kinds for e in stage.get(k, [])]
    return [
        path
        for entry in entries
        for path, options in entry.items()
        if not (cached_only and (options or {}).get("cache") is False)
    ]


# Static checks: cheap, run always.


def test_dvc_yaml_has_the_mlproject_pipeline_stages_with_the_same_cli():
    stages = load_dvc_yaml()["stages"]
    mlproject = yaml.safe_load((REPO_ROOT / "MLproject").read_text())["entry_points"]
    assert tuple(stages) == DVC_STAGES
    assert chain.PIPELINE[: len(DVC_STAGES)] == DVC_STAGES
    for name, stage in stages.items():
        assert stage["cmd"] == mlproject[name]["command"] == f"python -m steps.{name}"
        assert f"steps/{name}.py" in stage["deps"]


@pytest.mark.parametrize("name", DVC_STAGES)
def test_each_stage_depends_on_every_project_file_its_module_imports(name):
    """Editing any code a stage runs must make `dvc repro` rerun it: every project file in the
    stage module's import closure (tests/code_graph.py) is a dep, or inside a folder that is.
    Files that hold only a docstring (package `__init__`s) cannot change what runs."""
    deps = [Path(d) for d in load_dvc_yaml()["stages"][name]["deps"]]
    needed = {
        path.relative_to(REPO_ROOT) for path in transitive_files(f"steps.{name}") if has_code(path)
    }
    assert needed, name
    uncovered = sorted(str(p) for p in needed if not any(p == d or d in p.parents for d in deps))
    assert uncovered == [], f"dvc.yaml stage {name} misses deps {uncovered}"


def params_read(name: str) -> tuple[set[str], set[str]]:
    """The params.yaml sections the stage's code reads (`params.train`), and of those the
    `section.field` keys read one by one (`params.register.model_name`)."""
    sections = set(section_fields(Params))
    read, keys = set(), set()
    for path in transitive_files(f"steps.{name}"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Attribute):
                continue
            if isinstance(node.value, ast.Name) and node.value.id == "params":
                read.add(node.attr)
            elif (
                isinstance(node.value, ast.Attribute)
                and isinstance(node.value.value, ast.Name)
                and node.value.value.id == "params"
                and node.value.attr in sections
            ):
                keys.add(f"{node.value.attr}.{node.attr}")
    return read & sections, keys


def foreign_keys(name: str) -> set[str]:
    """The keys of other sections the stage reads one by one."""
    return {key for key in params_read(name)[1] if not key.startswith(f"{name}.")}


def test_each_stage_reads_only_its_own_params_section_or_lists_the_key():
    """A stage that reads another section's key has it in its `params:` list too (so DVC reruns
    it when the key changes), and reads no other section whole."""
    stages = load_dvc_yaml()["stages"]
    for name in DVC_STAGES:
        keyed = {key.split(".")[0] for key in foreign_keys(name)}
        whole = params_read(name)[0]
        assert whole <= {name} | keyed, f"{name} reads params.yaml sections {whole - {name}}"
        unlisted = foreign_keys(name) - set(stages[name].get("params", []))
        assert not unlisted, f"dvc.yaml stage {name} reads {sorted(unlisted)}: list them in params"


def test_each_stage_lists_exactly_the_params_of_its_section():
    """Every stage reads its whole params.yaml section (the CLI loads it into one dataclass), and
    the other sections' keys it reads."""
    sections = section_fields(Params)
    for name, stage in load_dvc_yaml()["stages"].items():
        listed = set(stage.get("params", []))
        own = {f"{name}.{field}" for field in section_fields(sections[name])}
        assert listed == own | foreign_keys(name), name


def test_stage_deps_and_outs_exist_and_chain():
    stages = load_dvc_yaml()["stages"]
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    produced: set[str] = set()
    for name, stage in stages.items():
        for dep in stage["deps"]:
            dep = re.sub(r"\$\{(\w+)\.(\w+)\}", lambda m: params[m[1]][m[2]], dep)
            assert (REPO_ROOT / dep).exists() or dep in produced, f"{name}: {dep}"
        produced.update(declared(stage))


def test_validate_and_train_rerun_when_the_unlabeled_split_changes():
    """unlabeled.parquet lies inside an ingest out that validate and train depend on, so a changed
    unlabeled split reruns both (`dvc repro`)."""
    stages = load_dvc_yaml()["stages"]
    target = (INGESTED_DIR / UNLABELED_FILE_NAME).as_posix()

    def covers(path: str) -> bool:
        return target == path or target.startswith(path.rstrip("/") + "/")

    assert any(covers(out) for out in declared(stages["ingest"], "outs"))
    for stage in ("validate", "train"):
        assert any(covers(dep) for dep in stages[stage]["deps"]), stage


@pytest.mark.integration
def test_default_remote_is_a_local_folder_beside_the_checkout_without_credentials():
    config = (REPO_ROOT / ".dvc" / "config").read_text()
    assert re.search(r"^\s*remote = local$", config, re.M)
    assert re.search(r"^\s*url = \.\./\.\./dvc-storage$", config, re.M)  # relative to .dvc/
    assert not re.search(r"password|secret|access_key|token", config, re.I)
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", ".dvc/config.local"], cwd=REPO_ROOT, check=False
    )
    assert ignored.returncode == 0, ".dvc/config.local must be git-ignored (credentials go there)"


# The real pipeline in a temporary git repository.


def run(cmd: list[str], cwd: Path, env: dict[str, str], check: bool = True):
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


def outputs(repo: Path, cached_only: bool = False) -> list[Path]:
    """Every file the pipeline's outs, metrics and plots hold (to compare after a pull)."""
    paths = []
    for stage in load_dvc_yaml()["stages"].values():
        for out in declared(stage, cached_only=cached_only):
            path = repo / out
            paths.extend(
                sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            )
    return paths


@dataclasses.dataclass
class Pipeline:
    repo: Path
    env: dict[str, str]
    tracking_uri: str
    first_repro: str


def copy_project(repo: Path) -> Path:
    """The project's files (and DVC's) copied into `repo`, not yet a git repository."""
    repo.mkdir()
    for name in PROJECT_FILES + DVC_FILES:
        src, dest = REPO_ROOT / name, repo / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest)
    return repo


def repo_env(root: Path, tracking_uri: str) -> dict[str, str]:
    """git and dvc in a scratch repository: this venv first on PATH, MLflow at `tracking_uri`,
    none of the caller's MLflow, DagsHub, AWS, DVC or git settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_", "DAGSHUB_", "AWS_", "DVC_", "GIT_"))
    }
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        MLFLOW_TRACKING_URI=tracking_uri,
        DVC_NO_ANALYTICS="1",
        GIT_AUTHOR_NAME="test",
        GIT_AUTHOR_EMAIL="test@example.invalid",
        GIT_COMMITTER_NAME="test",
        GIT_COMMITTER_EMAIL="test@example.invalid",
        # No AWS credentials but what a test puts in .dvc/config.local.
        AWS_CONFIG_FILE=str(root / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(root / "no-aws-credentials"),
    )
    return env


@pytest.mark.slow
def test_exp_run_with_a_refused_value_stops_at_the_first_stage_with_nothing_written(tmp_path):
    """`dvc exp run -S train.val_split=grupped` edits params.yaml and reproduces: the first stage
    to run (ingest) loads the whole file and refuses in one line; nothing is ingested or logged."""
    repo = copy_project(tmp_path / "repo")
    db = tmp_path / "mlflow.db"
    env = repo_env(tmp_path, f"sqlite:///{db}")
    run(["git", "init", "-q", "-b", "main"], repo, env)
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-q", "-m", "project"], repo, env)
    done = run(["dvc", "exp", "run", "-S", "train.val_split=grupped"], repo, env, check=False)
    assert done.returncode != 0
    said = done.stdout + done.stderr
    assert stages_run(said) == ["ingest"]
    line = "error: ingest: params.yaml: train.val_split must be grouped or random, got 'grupped'"
    assert line in said.splitlines(), said[-3000:]
    # DVC makes the outs' parent folder (data/) before it starts the stage; nothing is in it.
    assert list((repo / "data").rglob("*")) == [] and not db.exists()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Pipeline:
    """The project copied into a fresh git repo, params pointed at small data, `dvc repro` done."""
    root = tmp_path_factory.mktemp("dvc")
    repo = copy_project(root / "repo")
    source = root / "reviews.csv"
    make_reviews(ROWS, seed=1).to_csv(source, index=False)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["ingest"].update(source=str(source), sha256="")
    params["validate"]["min_rows"] = MIN_ROWS
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    env = repo_env(root, tracking_uri)
    run(["git", "init", "-q", "-b", "main"], repo, env)
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-q", "-m", "project"], repo, env)
    first = run(["dvc", "repro"], repo, env)
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-q", "-m", "dvc repro"], repo, env)
    return Pipeline(repo, env, tracking_uri, first.stdout + first.stderr)


def stages_run(output: str) -> list[str]:
    return re.findall(r"Running stage '(\w+)'", output)


@pytest.mark.slow
def test_repro_runs_every_stage_and_a_second_repro_does_nothing(pipeline):
    assert stages_run(pipeline.first_repro) == list(DVC_STAGES)
    for path in outputs(pipeline.repo):
        assert path.is_file() and path.stat().st_size > 0, path
    lock = (pipeline.repo / "dvc.lock").read_text()

    again = run(["dvc", "repro"], pipeline.repo, pipeline.env)
    assert stages_run(again.stdout) == []
    assert "Data and pipelines are up to date" in again.stdout
    assert (pipeline.repo / "dvc.lock").read_text() == lock
    status = run(["dvc", "status", "--json"], pipeline.repo, pipeline.env)
    assert json.loads(status.stdout) == {}

    # Each stage logged to the one MLflow experiment, like `mlflow run` does.
    client = mlflow.MlflowClient(pipeline.tracking_uri)
    experiment = client.get_experiment_by_name("imdb-sentiment")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags["stage"] for r in runs) == sorted(DVC_STAGES)


@pytest.mark.slow
def test_metrics_are_numbers_and_plots_are_what_evaluate_wrote(pipeline):
    stages = load_dvc_yaml()["stages"]
    (metrics_file,) = declared(stages["evaluate"], "metrics")
    assert metrics_file == "reports/metrics.json"
    shown = json.loads(
        run(["dvc", "metrics", "show", "--json"], pipeline.repo, pipeline.env).stdout
    )
    written = json.loads((pipeline.repo / metrics_file).read_text())
    assert shown[""]["data"][metrics_file]["data"] == written
    for name in ("reports/metrics.json", "reports/train_metrics.json", "reports/train_stats.json"):
        values = shown[""]["data"][name]["data"]
        assert values and all(type(v) in (int, float) for v in values.values()), values
    table = run(["dvc", "metrics", "show"], pipeline.repo, pipeline.env).stdout
    assert "models:/" not in table and "run_id" not in table
    plots = json.loads(run(["dvc", "plots", "show", "--json"], pipeline.repo, pipeline.env).stdout)
    assert set(plots["data"]) == set(declared(stages["evaluate"], "plots"))
    # each curve once: drawn from its CSV, its PNG twin is an output, not a plot
    assert [name for name in plots["data"] if name.endswith(".png")] == []
    for name in ("roc.csv", "precision_recall.csv", "predictions.csv"):
        assert f"reports/plots/{name}" in plots["data"]
    # `dvc plots show` writes dvc_plots/index.html: generated, and ignored by git.
    run(["dvc", "plots", "show"], pipeline.repo, pipeline.env)
    assert (pipeline.repo / "dvc_plots" / "index.html").is_file()
    status = run(["git", "status", "--porcelain"], pipeline.repo, pipeline.env).stdout
    assert status == "", status


@pytest.mark.slow
def test_dvc_lock_and_metrics_are_committed_and_status_compares_against_them(pipeline):
    """What the README asks after `make repro`: commit dvc.lock and the metrics files. A clone
    then knows the state: `dvc status` names the stage a change affects and nothing else."""
    tracked = run(["git", "ls-files"], pipeline.repo, pipeline.env).stdout.split()
    assert {"dvc.lock", "reports/metrics.json", "reports/train_metrics.json"} <= set(tracked)
    assert json.loads(run(["dvc", "status", "--json"], pipeline.repo, pipeline.env).stdout) == {}
    params = pipeline.repo / "params.yaml"
    before = params.read_text()
    try:
        params.write_text(before.replace("batch_size: 1000", "batch_size: 500"))
        changed = json.loads(run(["dvc", "status", "--json"], pipeline.repo, pipeline.env).stdout)
        assert list(changed) == ["evaluate"]
        assert changed["evaluate"] == [
            {"changed deps": {"params.yaml": {"evaluate.batch_size": "modified"}}}
        ]
    finally:
        params.write_text(before)


@pytest.mark.slow
def test_push_to_the_default_local_remote_and_pull_into_a_fresh_clone(pipeline):
    run(["dvc", "push"], pipeline.repo, pipeline.env)
    storage = pipeline.repo.parent / "dvc-storage"  # ../dvc-storage, beside the checkout
    assert any(p.is_file() for p in storage.rglob("*"))

    clone = pipeline.repo.parent / "clone"
    run(["git", "clone", "-q", str(pipeline.repo), str(clone)], pipeline.repo.parent, pipeline.env)
    run(["dvc", "pull"], clone, pipeline.env)
    for path in outputs(pipeline.repo):
        assert filecmp.cmp(path, clone / path.relative_to(pipeline.repo), shallow=False), path
    assert json.loads(run(["dvc", "status", "--json"], clone, pipeline.env).stdout) == {}


@pytest.fixture
def moto_s3():
    """moto's S3 server on a free loopback port, stopped at the end."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.mark.slow
def test_push_and_pull_through_an_s3_remote_with_credentials_only_in_config_local(
    pipeline, moto_s3
):
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=moto_s3,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    s3.create_bucket(Bucket="imdb-dvc")
    repo, env = pipeline.repo, pipeline.env
    run(["dvc", "remote", "add", "s3", "s3://imdb-dvc/cache"], repo, env)
    run(["dvc", "remote", "modify", "s3", "endpointurl", moto_s3], repo, env)
    run(["dvc", "remote", "modify", "--local", "s3", "access_key_id", "testing"], repo, env)
    run(["dvc", "remote", "modify", "--local", "s3", "secret_access_key", "testing"], repo, env)
    try:
        assert "testing" not in (repo / ".dvc" / "config").read_text()
        assert "secret_access_key" in (repo / ".dvc" / "config.local").read_text()

        run(["dvc", "push", "-r", "s3"], repo, env)
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="imdb-dvc")["Contents"]]
        assert keys and all(k.startswith("cache/files/md5/") for k in keys)

        saved = {p: p.read_bytes() for p in outputs(repo, cached_only=True)}
        shutil.rmtree(repo / ".dvc" / "cache")
        for path in saved:
            path.unlink()
        run(["dvc", "pull", "-r", "s3"], repo, env)
        assert {p: p.read_bytes() for p in saved} == saved
        assert json.loads(run(["dvc", "status", "--json"], repo, env).stdout) == {}
    finally:
        (repo / ".dvc" / "config.local").unlink(missing_ok=True)  # only the s3 credentials
        run(["dvc", "remote", "remove", "s3"], repo, env)


def exp_params_and_metrics(repo: Path, env: dict[str, str]) -> tuple[dict, dict[float, dict]]:
    """`dvc exp show`: the baseline's metrics, and each experiment's metrics by its train.C."""
    shown = json.loads(run(["dvc", "exp", "show", "--json"], repo, env).stdout)
    baseline = shown[0]["rev"] if shown else None
    base_metrics, by_c = {}, {}
    for commit in shown:
        data = commit["data"] or {}
        if commit["rev"] == baseline:
            base_metrics = data.get("metrics", {})
        for exp in commit.get("experiments") or []:
            for rev in exp["revs"]:
                exp_data = rev.get("data") or {}
                c = exp_data["params"]["params.yaml"]["data"]["train"]["C"]
                by_c[float(c)] = exp_data.get("metrics", {})
    return base_metrics, by_c


@pytest.mark.slow
def test_a_queued_sweep_runs_each_value_and_exp_show_compares_it_with_the_commit(pipeline):
    """The README's sweep: `dvc exp run --queue -S train.C=...` per value, `dvc queue start`;
    each runs in its own temporary workspace, and `dvc exp show` lists each value's metrics next
    to the committed baseline's. With the default store, each run lands in the checkout's
    mlflow.db (not the temporary copy's), tagged with its experiment's name and baseline."""
    repo = pipeline.repo
    env = {k: v for k, v in pipeline.env.items() if k != "MLFLOW_TRACKING_URI"}
    names = []
    for value in SWEEP:
        queued = run(["dvc", "exp", "run", "--queue", "-S", f"train.C={value}"], repo, env)
        names += re.findall(r"Queued experiment '([^']+)'", queued.stdout + queued.stderr)
    assert len(names) == len(SWEEP)
    run(["dvc", "queue", "start", "--jobs", "1"], repo, env)
    try:
        for name in names:  # --follow returns when the task has finished
            run(["dvc", "queue", "logs", "--follow", name], repo, env)
    finally:
        run(["dvc", "queue", "stop", "--kill"], repo, env, check=False)
    base, by_c = exp_params_and_metrics(repo, env)
    assert base["reports/metrics.json"]["data"]["accuracy"] > 0.9  # the committed metrics
    assert set(by_c) >= {float(v) for v in SWEEP}
    for value in SWEEP:
        assert by_c[float(value)]["reports/metrics.json"]["data"]["accuracy"] > 0.5
    assert run(["git", "status", "--porcelain"], repo, env).stdout == ""  # workspace untouched
    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("imdb-sentiment")
    trained = client.search_runs([experiment.experiment_id], "tags.stage = 'train'")
    baseline = run(["git", "rev-parse", "HEAD"], repo, env).stdout.strip()
    assert sorted((r.data.params["C"], r.data.tags["dvc.exp_name"]) for r in trained) == sorted(
        zip(SWEEP, names, strict=True)
    )
    assert {r.data.tags["dvc.baseline_rev"] for r in trained} == {baseline}


@pytest.mark.slow
def test_exp_run_with_a_new_C_reruns_only_train_and_evaluate_and_logs_it(pipeline):
    """Last in this module: the experiment's results stay in the workspace."""
    result = run(["dvc", "exp", "run", "-S", f"train.C={C_VALUE}"], pipeline.repo, pipeline.env)
    assert stages_run(result.stdout) == ["train", "evaluate"]

    shown = json.loads(run(["dvc", "exp", "show", "--json"], pipeline.repo, pipeline.env).stdout)
    listed = [
        rev["data"]["params"]["params.yaml"]["data"]["train"]["C"]
        for commit in shown
        for exp in commit.get("experiments") or []
        for rev in exp["revs"]
    ]
    assert float(C_VALUE) in listed, f"dvc exp show does not list train.C={C_VALUE}: {listed}"

    client = mlflow.MlflowClient(pipeline.tracking_uri)
    experiment = client.get_experiment_by_name("imdb-sentiment")
    trained = client.search_runs(
        [experiment.experiment_id], "tags.stage = 'train'", order_by=["attributes.start_time DESC"]
    )
    assert trained[0].data.params["C"] == C_VALUE  # the newest train run is the experiment's
    assert [r.data.params["C"] for r in trained].count(C_VALUE) == 1


@pytest.mark.parametrize(
    "override",
    [
        "train.C=0.5",
        "train.max_features=5000",
        "validate.min_rows=300",
        "score.output=x.parquet",
        "promote.eval_data=fixed.csv",
        "deploy.analysis.duration=60",
        "compare.stage=evaluate",
    ],
)
def test_dvc_set_param_changes_exactly_one_line_of_params_yaml(override, tmp_path):
    """params.yaml is written as DVC's own writer writes it (`dvc exp run -S` loads and dumps
    it with ruamel), so an experiment's diff is the one value it sets."""
    from dvc.utils.hydra import apply_overrides

    copy = tmp_path / "params.yaml"
    shutil.copy(REPO_ROOT / "params.yaml", copy)
    apply_overrides(copy, [override])
    before = (REPO_ROOT / "params.yaml").read_text().splitlines()
    after = copy.read_text().splitlines()
    assert len(after) == len(before)
    changed = [(old, new) for old, new in zip(before, after, strict=True) if old != new]
    dotted, _, value = override.partition("=")
    key = dotted.rpartition(".")[2]
    assert len(changed) == 1, changed
    assert changed[0][1].lstrip().startswith(f"{key}: {value}")


@pytest.mark.slow
def test_exp_show_leads_with_validation_and_test_accuracy(pipeline):
    """The headline first (train's val_* file, then evaluate's with accuracy first); timings,
    sizes and counts still there, after them (dvc.yaml's top-level metrics)."""
    table = run(["dvc", "exp", "show", "--csv"], pipeline.repo, pipeline.env).stdout
    header = table.splitlines()[0].split(",")
    first = header.index("val_accuracy")
    assert header[first : first + 5] == [
        "val_accuracy", "val_f1", "val_roc_auc", "val_log_loss", "accuracy",
    ]  # fmt: skip
    assert header.index("train_seconds") > first + 5 and "model_size_mb" in header

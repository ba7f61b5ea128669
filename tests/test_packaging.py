"""The project's packaging agrees with itself: conda.yaml mirrors pyproject.toml, every MLproject
entry point has its stage module, the Makefile documents every target; and (slow) the conda.yaml
environment really builds and runs an entry point with `mlflow run --env-manager uv`."""

from __future__ import annotations

import os
import pty
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import mlflow
import pytest
import yaml
from support import REPO_ROOT, make_reviews

from steps.stage import chain


def _normalise(requirement: str) -> str:
    return re.sub(r"\s+", "", requirement).lower()


def test_conda_yaml_mirrors_pyproject_dependencies():
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    conda = yaml.safe_load((REPO_ROOT / "conda.yaml").read_text())
    pip_deps = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert [_normalise(d) for d in pip_deps] == [
        _normalise(d) for d in pyproject["project"]["dependencies"]
    ]
    python = next(d for d in conda["dependencies"] if isinstance(d, str) and d.startswith("python"))
    oldest, newest = supported_pythons()
    # `mlflow run` builds one environment: the oldest supported Python, as benchmarked.
    assert python == f"python={oldest[0]}.{oldest[1]}"
    # And the Python running these tests (3.11, 3.12 or 3.13 in CI) is one the project supports.
    assert oldest <= sys.version_info[:2] <= newest


def supported_pythons() -> tuple[tuple[int, int], tuple[int, int]]:
    """The oldest and newest Python of requires-python (">=3.11,<3.14" -> (3, 11), (3, 13))."""
    spec = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    low, high = re.fullmatch(r">=3\.(\d+),<3\.(\d+)", spec).groups()
    return (3, int(low)), (3, int(high) - 1)


def test_classifiers_name_every_supported_python():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    (_, low), (_, high) = supported_pythons()
    named = {c.rsplit(" :: ", 1)[1] for c in project["classifiers"] if re.search(r"3\.\d+$", c)}
    assert named == {f"3.{minor}" for minor in range(low, high + 1)}
    assert high >= 13  # the default Python of current distributions


def pyenv_python(minor: str) -> str | None:
    found = sorted(Path("~/.pyenv/versions").expanduser().glob(f"{minor}.*/bin/python"))
    return str(found[-1]) if found else shutil.which(f"python{minor}")


def make_install(venv: Path, python: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "-s", "install", f"VENV={venv}", f"PYTHON={python}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip


@pytest.mark.integration
def test_make_install_refuses_an_unsupported_python_in_one_line(tmp_path):
    python = pyenv_python("3.10")
    if python is None:
        pytest.skip("no Python 3.10 to try (pyenv install 3.10)")
    done = make_install(tmp_path / "venv", python)
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1, done.stderr
    assert "is Python 3.10; imdb-sentiment needs Python >=3.11,<3.14" in done.stderr
    assert not (tmp_path / "venv").exists()
    missing = make_install(tmp_path / "venv", "python3.99")
    assert missing.returncode != 0 and missing.stderr.count("\n") == 1
    assert "python3.99 not found" in missing.stderr


@pytest.mark.slow
def test_make_install_rebuilds_a_venv_of_another_python(tmp_path):
    """A .venv left by a failed install (no pip) of another Python is rebuilt with the one asked
    for, and installs; asking again with the same Python changes nothing."""
    old, new = pyenv_python("3.12"), pyenv_python("3.13")
    if old is None or new is None:
        pytest.skip("needs Python 3.12 and 3.13 (pyenv install 3.12 3.13)")
    venv = tmp_path / "venv"
    subprocess.run([old, "-m", "venv", "--without-pip", str(venv)], check=True)
    done = make_install(venv, new)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"building {venv} with {new} (Python 3.13)" in done.stdout
    version = [str(venv / "bin" / "python"), "-c", "import sys, steps; print(sys.version_info[:2])"]
    assert subprocess.run(version, capture_output=True, text=True).stdout.strip() == "(3, 13)"
    again = make_install(venv, new)
    assert again.returncode == 0 and "building" not in again.stdout


def test_every_entry_point_runs_a_stage_module_that_exists():
    project = yaml.safe_load((REPO_ROOT / "MLproject").read_text())
    entry_points = project["entry_points"]
    assert set(chain.PIPELINE) <= set(entry_points)
    for name, spec in entry_points.items():
        module = re.fullmatch(r"python -m steps\.(\w+)", spec["command"])
        assert module, f"entry point {name!r} should run a stage module: {spec['command']!r}"
        path = REPO_ROOT / "steps" / f"{module.group(1)}.py"
        assert path.is_file(), f"entry point {name!r} runs a missing module {path}"
        assert 'if __name__ == "__main__":' in path.read_text()


@pytest.mark.integration
def test_make_help_lists_every_target():
    makefile = (REPO_ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, flags=re.M))
    documented = set(re.findall(r"^([a-z][a-z-]*):.*## ", makefile, flags=re.M))
    assert targets == documented, f"targets without a ## comment: {targets - documented}"
    out = subprocess.run(
        ["make", "-s", "help"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "\x1b" not in out  # piped or redirected: plain text
    assert {line.split()[0] for line in out.splitlines()} == targets

    # On a terminal the target names are coloured.
    main, child = pty.openpty()
    with os.fdopen(main, "rb") as terminal:
        subprocess.run(["make", "-s", "help"], cwd=REPO_ROOT, stdout=child, check=True)
        os.close(child)
        shown = terminal.read1(1 << 16).decode()
    assert "\x1b[36mhelp" in shown


@pytest.mark.slow
def test_conda_yaml_environment_builds_and_runs_an_entry_point_with_uv(
    project_copy, tracking_uri, tmp_path, monkeypatch
):
    """conda.yaml must not drift from what the code needs: build it from scratch and run ingest."""
    source = tmp_path / "reviews.csv"
    make_reviews(400).to_csv(source, index=False)
    monkeypatch.setenv("MLFLOW_ENV_ROOT", str(tmp_path / "envs"))  # a fresh env, not a cached one
    bin_dir = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    result = subprocess.run(
        [
            "mlflow",
            "run",
            str(project_copy),
            "-e",
            "ingest",
            "-P",
            f"source={source}",
            "--env-manager",
            "uv",
        ],
        cwd=project_copy,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "envs").is_dir() and any((tmp_path / "envs").iterdir())
    assert (project_copy / "data" / "ingested" / "train.parquet").is_file()
    run = mlflow.search_runs(search_all_experiments=True, output_format="list")[0]
    assert run.data.tags["mlflow.project.env"] == "uv"
    assert run.info.status == "FINISHED"


def run_odbc_tests_without_libodbc(tmp_path, **env: str) -> subprocess.CompletedProcess:
    """pytest on the ODBC tests where importing pyodbc fails as it does without unixODBC."""
    fake = tmp_path / "no-libodbc"
    fake.mkdir(exist_ok=True)
    (fake / "pyodbc.py").write_text(
        'raise ImportError("libodbc.so.2: cannot open shared object file: No such file or'
        ' directory")\n'
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IMDB_REQUIRE_")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs",
         "tests/steps/data/sources/test_odbc.py"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
        env={**clean, "PYTHONPATH": str(fake), **env},
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.integration
def test_tests_that_need_unixodbc_skip_naming_the_apt_packages_and_ci_requires_them(tmp_path):
    skipped = run_odbc_tests_without_libodbc(tmp_path)
    assert skipped.returncode == 0, skipped.stdout[-3000:]
    assert "error" not in skipped.stdout.splitlines()[-1]
    assert re.search(r"\d+ skipped", skipped.stdout.splitlines()[-1])
    assert "libodbc.so.2" in skipped.stdout and "apt-get install unixodbc" in skipped.stdout

    required = run_odbc_tests_without_libodbc(tmp_path, IMDB_REQUIRE_SYSTEM_PACKAGES="1")
    assert required.returncode == 1, required.stdout[-3000:]
    assert "IMDB_REQUIRE_SYSTEM_PACKAGES is set, so this is an error" in required.stdout


def test_ci_requires_what_the_tests_can_skip():
    """Every IMDB_REQUIRE_* switch the tests read is set by .ci/run, which starts the engine."""
    read = set()
    for path in (REPO_ROOT / "tests").rglob("*.py"):
        read |= set(re.findall(r"\bIMDB_REQUIRE_[A-Z_]+", path.read_text()))
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert read == {
        "IMDB_REQUIRE_SHARED_DATA", "IMDB_REQUIRE_SYSTEM_PACKAGES",
        "IMDB_REQUIRE_PROMETHEUS", "IMDB_REQUIRE_DOCKER", "IMDB_REQUIRE_SPARK",
    }  # fmt: skip
    assert {v for v in read if re.search(rf"^export {v}=1\b", ci, re.M)} == read
    assert re.search(r"^\$sudo \.ci/start-dockerd$", ci, re.M)


@pytest.mark.slow
@pytest.mark.parametrize("required", [False, True], ids=["skipped", "required"])
@pytest.mark.integration
def test_a_docker_test_is_skipped_without_an_engine_and_fails_where_required(tmp_path, required):
    """The `docker` marker, for real: a pytest run that cannot reach an engine."""
    env = {k: v for k, v in os.environ.items() if k != "IMDB_REQUIRE_DOCKER"}
    env["DOCKER_HOST"] = f"unix://{tmp_path}/no-engine.sock"
    if required:
        env["IMDB_REQUIRE_DOCKER"] = "1"
    test = "tests/serving/test_image_build.py::test_no_champion_is_one_line"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", test, "-p", "no:cacheprovider", "-rsf"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert "no Docker engine answers" in done.stdout and "sudo .ci/start-dockerd" in done.stdout
    if required:
        assert done.returncode == 1 and "1 error" in done.stdout  # failed in its set-up
        assert "IMDB_REQUIRE_DOCKER is set, so this is an error" in done.stdout
    else:
        assert done.returncode == 0 and "1 skipped" in done.stdout


@pytest.mark.docker
def test_start_dockerd_leaves_an_engine_that_answers_alone():
    done = subprocess.run(
        [str(REPO_ROOT / ".ci" / "start-dockerd")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "start-dockerd: a Docker engine already answers"


def test_tests_import_system_modules_through_support_only():
    """`pytest.importorskip` of pyodbc skips only when pyodbc is missing, not when the wheel is
    there but unixODBC is not (an ImportError of libodbc): such tests use the
    `sqlite_odbc_driver` fixture or support.import_system_module, which skip naming the apt
    packages and are required in CI."""
    offenders = [
        str(path.relative_to(REPO_ROOT))
        for path in sorted((REPO_ROOT / "tests").rglob("*.py"))
        if path.name != "support.py"
        and re.search(r"importorskip\(|^\s*import pyodbc|^\s*from pyodbc", path.read_text(), re.M)
    ]
    assert offenders == []

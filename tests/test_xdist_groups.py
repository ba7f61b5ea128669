"""Who shares a worker under `-n 2 --dist loadgroup` (tests/xdist_groups.py): a file's tests stay
together, the Docker tests of every file run on one worker, and the groups still spread over both
workers."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

TESTS_DIR = Path(__file__).resolve().parent
PER_FILE = 12  # enough tests that a plain `--dist load` would put some on each worker


def _test_file(marker: str = "") -> str:
    return textwrap.dedent(
        f"""
        import json, os, pathlib, time
        import pytest

        @pytest.mark.parametrize("n", range({PER_FILE}))
        {marker}
        def test_record(n, request):
            time.sleep(0.05)
            name = request.node.nodeid.replace("/", "_")
            worker = os.environ["PYTEST_XDIST_WORKER"]
            (pathlib.Path(os.environ["RECORD_DIR"]) / name).write_text(worker)
        """
    )


# What pyspark.sql.connect checks before it calls sys.exit(0) (Great Expectations imports it).
MAIN_MODULE_TEST = """
import sys

def test_main_does_not_look_like_a_doctest_run():
    main = sys.modules["__main__"]
    assert main.__spec__ is not None or hasattr(main, "__file__") or hasattr(sys, "ps1")
"""


@pytest.mark.integration  # starts pytest-xdist workers
def test_files_and_the_docker_tests_each_stay_on_one_worker(pytester, tmp_path, monkeypatch):
    record = tmp_path / "record"
    record.mkdir()
    monkeypatch.setenv("RECORD_DIR", str(record))
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")])
    )
    pytester.makeini("[pytest]\nmarkers =\n    docker: needs a Docker engine\n")
    pytester.makeconftest('pytest_plugins = ["xdist_groups"]')
    pytester.makepyfile(
        test_main_module=MAIN_MODULE_TEST,
        test_plain_one=_test_file(),
        test_plain_two=_test_file(),
        test_docker_one=_test_file("@pytest.mark.docker"),
        test_docker_two=_test_file("@pytest.mark.docker"),
    )
    result = pytester.runpytest_subprocess(
        "-n", "2", "--dist", "loadgroup", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=4 * PER_FILE + 1)

    workers: dict[str, set[str]] = {}
    for path in record.iterdir():
        workers.setdefault(path.name.split(".py")[0], set()).add(path.read_text())
    assert set(workers) == {
        "test_plain_one",
        "test_plain_two",
        "test_docker_one",
        "test_docker_two",
    }
    assert all(len(used) == 1 for used in workers.values()), workers
    assert workers["test_docker_one"] == workers["test_docker_two"], workers
    assert len(set().union(*workers.values())) == 2, f"one worker ran everything: {workers}"
    assert not [p.name for p in record.iterdir() if "@" in p.name]  # ids are the tests' own

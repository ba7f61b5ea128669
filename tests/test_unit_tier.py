"""The unit tier's guard: a unit test that starts a process or opens a network socket fails,
saying how to mark it; marked tests and tests using a service fixture are left out of the tier."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap

import pytest
from unit_tier import UnitTierViolation, no_processes_or_sockets

pytest_plugins = ["pytester"]

SPAWNS = {
    "subprocess.run": lambda: subprocess.run([sys.executable, "-c", "pass"], check=True),
    "os.system": lambda: __import__("os").system("true"),
    "multiprocessing": lambda: _start_process(),
}


def _start_process() -> None:
    import multiprocessing

    process = multiprocessing.get_context("spawn").Process(target=print)
    process.start()
    process.join()


@pytest.mark.parametrize("spawn", SPAWNS.values(), ids=SPAWNS.keys())
def test_a_process_is_refused(spawn):
    with no_processes_or_sockets(), pytest.raises(UnitTierViolation, match="integration"):
        spawn()


@pytest.mark.parametrize("verb", ["connect", "connect_ex", "bind"])
@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_a_network_socket_is_refused(verb, family):
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    with (
        socket.socket(family) as sock,
        no_processes_or_sockets(),
        pytest.raises(UnitTierViolation, match=f"{host}.*integration"),
    ):
        getattr(sock, verb)((host, 9))


def test_a_unix_socket_is_allowed(tmp_path):
    path = str(tmp_path / "s")
    with no_processes_or_sockets(), socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen(1)
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(path)


@pytest.mark.integration  # it starts a process once the guard is lifted
def test_the_guard_is_lifted_afterwards():
    with no_processes_or_sockets():
        pass
    assert subprocess.run([sys.executable, "-c", "pass"], check=False).returncode == 0


@pytest.mark.integration
def test_a_marked_test_may_start_a_process():
    assert subprocess.run([sys.executable, "-c", "pass"], check=False).returncode == 0


TIERED = textwrap.dedent(
    """
    import subprocess, sys
    import pytest

    @pytest.fixture
    def server():
        subprocess.run([sys.executable, "-c", "pass"], check=True)

    def test_spawns():
        subprocess.run([sys.executable, "-c", "pass"], check=True)

    def test_spawns_in_a_fixture(spawning):
        pass

    @pytest.fixture
    def spawning():
        subprocess.run([sys.executable, "-c", "pass"], check=True)

    def test_plain():
        assert 1 + 1 == 2

    @pytest.mark.integration
    def test_marked():
        subprocess.run([sys.executable, "-c", "pass"], check=True)

    def test_uses_a_service_fixture(server):
        pass
    """
)


@pytest.mark.integration  # the marked tests it runs start processes
def test_the_tier_is_derived_and_enforced(pytester):
    pytester.makeconftest(
        f"import sys; sys.path.insert(0, {str(__import__('pathlib').Path(__file__).parent)!r})\n"
        "pytest_plugins = ['unit_tier']\n"
        "def pytest_configure(config):\n"
        "    config.addinivalue_line('markers', 'integration: starts processes')\n"
    )
    pytester.makepyfile(test_tiered=TIERED)
    unit = pytester.runpytest_inprocess("-m", "unit", "-p", "no:cacheprovider")
    unit.assert_outcomes(passed=1, failed=1, errors=1, deselected=2)
    unit.stdout.fnmatch_lines(
        ["E *UnitTierViolation: a unit test started a subprocess: mark it @pytest.mark.integ*"]
    )
    rest = pytester.runpytest_inprocess("-m", "not unit", "-p", "no:cacheprovider")
    rest.assert_outcomes(passed=2, deselected=3)

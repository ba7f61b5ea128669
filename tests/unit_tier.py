"""The unit tier (`make test-unit`, `pytest -m unit`): every test that starts no subprocess, server
or container. It is derived, not declared: a test is `unit` unless a marker or a fixture says it
needs more (NOT_UNIT_MARKERS, SERVICE_FIXTURES). While a unit test sets up and runs, starting a
process or opening a network socket fails it, saying how to mark it; so the tier stays an inner
loop whatever a new test does (tests/README.md)."""

from __future__ import annotations

import _posixsubprocess
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

UNIT = "unit"
# A test carrying any of these is left out of the unit tier.
NOT_UNIT_MARKERS = ("slow", "integration", "docker", "prometheus", "odbc", "spark")
# Fixtures that start a server, a process or a container: a test using one (directly or through
# another fixture) is left out of the unit tier.
SERVICE_FIXTURES = frozenset(
    {
        "moto_s3",
        "aws_env",
        "server",
        "spark",
        "sqlite_odbc_driver",
        "prometheus_tools",
        "docker_registry",
        "model_servers",
        "cluster",
        "serving_image",
        "deployer_image",
        "pod",
        "docker_dir",
        "mlflow2_server",
        "monitored",
        "watched",
        "prometheus",
    }
)
HOW_TO_MARK = (
    "mark it @pytest.mark.integration (or slow, if it takes seconds) to leave the unit tier"
    " (tests/README.md)"
)


class UnitTierViolation(AssertionError):
    """A unit test started a process or opened a network socket."""


def is_unit(item: pytest.Item) -> bool:
    if any(item.get_closest_marker(name) is not None for name in NOT_UNIT_MARKERS):
        return False
    return not SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ()))


def mark_unit_tier(items: list[pytest.Item]) -> None:
    for item in items:
        if is_unit(item):
            item.add_marker(UNIT)


def _refuse(what: str) -> Callable[..., Any]:
    def refused(*args: Any, **kwargs: Any) -> Any:
        raise UnitTierViolation(f"a unit test {what}: {HOW_TO_MARK}")

    return refused


def _local_only(original: Callable[..., Any], verb: str) -> Callable[..., Any]:
    def guarded(sock: socket.socket, address: Any, *args: Any, **kwargs: Any) -> Any:
        if sock.family != socket.AF_UNIX:
            raise UnitTierViolation(f"a unit test tried to {verb} {address!r}: {HOW_TO_MARK}")
        return original(sock, address, *args, **kwargs)

    return guarded


@contextmanager
def no_processes_or_sockets() -> Iterator[None]:
    """While inside: starting a process (subprocess, multiprocessing, os.fork/spawn/system) or
    connecting/binding a non-AF_UNIX socket raises UnitTierViolation."""
    with pytest.MonkeyPatch.context() as patch:
        # subprocess.Popen (whether it forks or posix_spawns) and multiprocessing's
        # spawn/forkserver (_posixsubprocess.fork_exec) start their children here.
        patch.setattr(subprocess.Popen, "_execute_child", _refuse("started a subprocess"))
        patch.setattr(_posixsubprocess, "fork_exec", _refuse("started a subprocess"))
        for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system", "spawnv"):
            if hasattr(os, name):
                patch.setattr(os, name, _refuse(f"called os.{name}"))
        for method, verb in (("connect", "connect to"), ("connect_ex", "connect to")):
            patch.setattr(socket.socket, method, _local_only(getattr(socket.socket, method), verb))
        patch.setattr(socket.socket, "bind", _local_only(socket.socket.bind, "bind"))
        yield


# --- the hooks (a plugin: tests/conftest.py lists this module in pytest_plugins) ---


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{UNIT}: set by tests/unit_tier.py on every test that needs no process,"
        " server or container (`make test-unit`); never set by hand",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_unit_tier(items)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    # Teardown stays unguarded: a session fixture's teardown (stopping a server) runs after
    # whichever test came last.
    if item.get_closest_marker(UNIT) is None:
        return (yield)
    with no_processes_or_sockets():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    if item.get_closest_marker(UNIT) is None:
        return (yield)
    with no_processes_or_sockets():
        return (yield)

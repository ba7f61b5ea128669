"""Which tests share a pytest-xdist worker (`make test`, `make test-fast` and `make test-unit` run
with `-n auto --dist loadgroup`). Every test is in one group, and a group runs on one worker:

- the tests that share something outside the process: the Docker tests (the engine's image tags,
  one stand-in root filesystem per session), the Spark tests (one JVM per session), the tests of
  the long-lived model servers (SHARED_GROUPS: they are handed out first, being the longest);
- any other test: its file, so a module's fixtures start once (what `--dist loadfile` does).

xdist's own loadgroup reads `xdist_group` marks by renaming the test ids, which pytest 9.2's ids
no longer allow; so each worker writes the groups of what it collected to a file, and the
controller's scheduler (`pytest_xdist_make_scheduler`) reads them. A plugin: tests/conftest.py
lists it in pytest_plugins; tests/README.md says why.
"""

from __future__ import annotations

import importlib.machinery
import json
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

# The first that applies names the group: a marker, then a session fixture that starts something
# costly or holds a name outside the process.
MARKER_GROUPS = {"docker": "docker"}
FIXTURE_GROUPS = {"spark": "spark", "model_servers": "model-servers"}
SHARED_GROUPS = (*MARKER_GROUPS.values(), *FIXTURE_GROUPS.values())
GROUPS_FOLDER = "imdb_xdist_groups"  # workerinput key: the folder the workers write to
FOLDER_KEY = pytest.StashKey[str]()  # the controller's: the same folder


def group_of(item: pytest.Item) -> str:
    for marker, group in MARKER_GROUPS.items():
        if item.get_closest_marker(marker) is not None:
            return group
    used = set(getattr(item, "fixturenames", ()))
    for fixture, group in FIXTURE_GROUPS.items():
        if fixture in used:
            return group
    return _file_of(item.nodeid)


def _file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


# --- set up by the controller, then in a worker ---


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        _give_main_a_spec()
    elif _loadgroup(config):  # the controller: where its workers write their groups
        config.stash[FOLDER_KEY] = tempfile.mkdtemp(prefix="xdist-groups-")


def _give_main_a_spec() -> None:
    """A worker's __main__ is execnet's `python -c` bootstrap: no __spec__, no __file__. pyspark
    (the spark extra) reads that as "running doctests" and calls sys.exit(0) when Great
    Expectations imports `pyspark.sql.connect`: give __main__ the spec of a plain `__main__`
    (multiprocessing's spawn then starts children without re-running any main)."""
    main = sys.modules["__main__"]
    if main.__spec__ is None and not hasattr(main, "__file__"):
        main.__spec__ = importlib.machinery.ModuleSpec("__main__", None)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    folder = getattr(config, "workerinput", {}).get(GROUPS_FOLDER)
    if folder is None:  # not an xdist worker, or not --dist loadgroup
        return
    groups = {item.nodeid: group_of(item) for item in items}
    target = Path(folder) / f"{config.workerinput['workerid']}.json"
    partial = target.with_suffix(".partial")
    partial.write_text(json.dumps(groups))
    partial.replace(target)


# --- in the controller ---


def _loadgroup(config: pytest.Config) -> bool:
    return config.pluginmanager.hasplugin("xdist") and config.getvalue("dist") == "loadgroup"


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    if FOLDER_KEY in node.config.stash:
        node.workerinput[GROUPS_FOLDER] = node.config.stash[FOLDER_KEY]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    if FOLDER_KEY not in config.stash:
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        """LoadScope whose scope of a test is its group (group_of, as its worker wrote it)."""

        groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:
                folder = Path(config.stash[FOLDER_KEY])
                self.groups = json.loads(next(folder.glob("*.json")).read_text())
            return self.groups.get(nodeid) or _file_of(nodeid)

        def _assign_work_unit(self, node) -> None:
            for group in reversed(SHARED_GROUPS):  # the long shared groups go out first
                if group in self.workqueue:
                    self.workqueue.move_to_end(group, last=False)
            super()._assign_work_unit(node)

    return GroupScheduling(config, log)


def pytest_unconfigure(config: pytest.Config) -> None:
    if FOLDER_KEY in config.stash:
        shutil.rmtree(config.stash[FOLDER_KEY], ignore_errors=True)

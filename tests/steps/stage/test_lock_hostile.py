"""The pipeline lock against what a checkout can hold where `.pipeline.lock` goes: a link (never
followed: its target is not truncated), a folder, a FIFO, a read-only folder; and IMDB_LOCK_WAIT
values that would wait forever. Each is one line, nothing written anywhere."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO_ROOT, make_reviews

from steps import ingest
from steps.stage import lock
from steps.stage.errors import StageError
from steps.stage.paths import PROJECT_ROOT

PRECIOUS = "a file the lock must never touch\n"


def _link_to_a_file(tmp: Path) -> Path:
    (tmp / "precious.txt").write_text(PRECIOUS)
    (tmp / ".pipeline.lock").symlink_to(tmp / "precious.txt")
    return tmp / ".pipeline.lock"


def _dangling_link(tmp: Path) -> Path:
    (tmp / ".pipeline.lock").symlink_to(tmp / "created-through-the-link")
    return tmp / ".pipeline.lock"


def _link_to_a_folder(tmp: Path) -> Path:
    (tmp / "folder").mkdir()
    (tmp / ".pipeline.lock").symlink_to(tmp / "folder")
    return tmp / ".pipeline.lock"


def _folder(tmp: Path) -> Path:
    (tmp / ".pipeline.lock").mkdir()
    return tmp / ".pipeline.lock"


def _fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / ".pipeline.lock")
    return tmp / ".pipeline.lock"


def _under_a_file(tmp: Path) -> Path:
    (tmp / "plain").write_text("x")
    return tmp / "plain" / ".pipeline.lock"


IN_THE_WAY = {
    "link to a file": (_link_to_a_file, "it is a symbolic link, refused"),
    "dangling link": (_dangling_link, "it is a symbolic link, refused"),
    "link to a folder": (_link_to_a_folder, "it is a symbolic link, refused"),
    "folder": (_folder, "it is a folder"),
    "fifo": (_fifo, "it is not a regular file"),
    "parent is a file": (_under_a_file, "its folder cannot be made there (File exists)"),
}


def contents(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): p.read_text() if p.is_file() and not p.is_fifo() else "<other>"
        for p in sorted(folder.rglob("*"))
    }


@pytest.mark.parametrize("case", IN_THE_WAY, ids=str)
def test_what_is_in_the_locks_way_is_one_line_and_left_alone(case, tmp_path):
    make, said = IN_THE_WAY[case]
    path = make(tmp_path)
    before = contents(tmp_path)

    with pytest.raises(StageError) as refused, lock.hold("ingest", path, wait=0):
        pytest.fail("the lock was taken")

    text = str(refused.value)
    assert text.startswith(f"cannot take the pipeline lock {path}: {said}"), text
    assert "\n" not in text
    assert contents(tmp_path) == before  # no target truncated, nothing created through a link
    assert lock.holder(path) == {}  # and never read through a link either


@pytest.mark.parametrize("case", ["link to a file", "folder"])
def test_a_stage_in_such_a_checkout_exits_1_with_one_line(
    case, tmp_path, tracking_uri, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    IN_THE_WAY[case][0](tmp_path)
    make_reviews(40, seed=3).to_csv(tmp_path / "reviews.csv", index=False)

    code = ingest.main(["--params", str(PROJECT_ROOT / "params.yaml"), "--source", "reviews.csv"])

    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert lines[-1].startswith("error: ingest: cannot take the pipeline lock .pipeline.lock: ")
    assert not any("Traceback" in line for line in lines)
    if case == "link to a file":
        assert (tmp_path / "precious.txt").read_text() == PRECIOUS


HOLD_ONCE = (
    "import sys\n"
    "from pathlib import Path\n"
    "from steps.stage import lock\n"
    "from steps.stage.errors import StageError\n"
    "try:\n"
    "    with lock.hold('main', Path(sys.argv[1]), wait=0):\n"
    "        print('held')\n"
    "except StageError as exc:\n"
    "    print(exc)\n"
)


@pytest.mark.integration  # a child process that is not root
def test_a_read_only_checkout_is_one_line(tmp_path):
    """A folder this user cannot write in (root writes anywhere, unless the check runs without the
    capability that lets it: CAP_DAC_OVERRIDE)."""
    folder = tmp_path / "checkout"
    folder.mkdir()
    folder.chmod(0o555)
    as_user = []
    if os.geteuid() == 0:
        as_user = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    done = subprocess.run(
        [*as_user, sys.executable, "-c", HOLD_ONCE, str(folder / ".pipeline.lock")],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, cwd="/",
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f"cannot take the pipeline lock {folder / '.pipeline.lock'}: Permission denied: is the"
        " checkout read-only?; a stage writes its lock there: remove what is in the way, or run"
        " from a writable checkout"
    )
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "Infinity", "1e999", "-1", "x"])
def test_a_lock_wait_that_would_never_end_or_is_not_a_number_is_refused(
    value, tmp_path, monkeypatch
):
    monkeypatch.setenv(lock.WAIT_ENV, value)
    refused = pytest.raises(StageError, match=rf"^{lock.WAIT_ENV}='{value}' must be a ")
    with refused, lock.hold("main", tmp_path / ".pipeline.lock"):
        pytest.fail("the lock was taken")
    assert not (tmp_path / ".pipeline.lock").exists()


def test_a_finite_wait_still_works(tmp_path, monkeypatch):
    monkeypatch.setenv(lock.WAIT_ENV, "0.5")
    assert lock.wait_seconds() == 0.5
    with lock.hold("main", tmp_path / ".pipeline.lock"):
        assert lock.holder(tmp_path / ".pipeline.lock")["stage"] == "main"

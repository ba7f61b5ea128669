"""Progress bars only on a terminal: ours are tqdm bars built with `disable=None`, which draw
when their stream (stderr) is a terminal and write nothing otherwise, so a `make run` log read
in a file or CI has the stages' plain lines and no carriage-return spam."""

from __future__ import annotations

import ast
import io
import sys

import pytest
from support import REPO_ROOT

from steps.data.sources.common import progress

STEPS = REPO_ROOT / "steps"


class Terminal(io.StringIO):
    """stderr as a terminal reports itself."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("stderr", "drawn"), [(io.StringIO(), False), (Terminal(), True)], ids=["log", "terminal"]
)
@pytest.mark.parametrize("method", ["read", "write"])
def test_a_byte_stream_bar_draws_only_on_a_terminal(monkeypatch, stderr, drawn, method):
    monkeypatch.setattr(sys, "stderr", stderr)
    data = io.BytesIO(b"" if method == "write" else b"x" * 4096)
    with progress(data, 4096, "reviews.csv", method) as stream:
        if method == "read":
            assert stream.read() == b"x" * 4096
        else:
            stream.write(b"x" * 4096)
    assert data.getvalue() == b"x" * 4096  # the bytes pass through either way
    assert ("reviews.csv" in stderr.getvalue()) == drawn
    if not drawn:
        assert stderr.getvalue() == ""


def tqdm_calls() -> list[tuple[str, ast.Call]]:
    """Every `tqdm(...)` and `tqdm.wrapattr(...)` under steps/, with where it is."""
    found = []
    for path in sorted(STEPS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if (isinstance(func, ast.Name) and func.id == "tqdm") or (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and func.value.id == "tqdm"
            ):
                found.append((f"{path.relative_to(REPO_ROOT)}:{node.lineno}", node))
    return found


def test_every_bar_of_ours_is_off_when_stderr_is_no_terminal():
    """The family: every bar in steps/ says `disable=None` (tqdm: off unless a terminal) and
    draws on stderr (tqdm's default), never on stdout, where results are printed."""
    calls = tqdm_calls()
    assert len(calls) >= 3  # the byte streams (https, s3, aclImdb), ODBC rows, scoring
    wrong = []
    for where, call in calls:
        keywords = {k.arg: k.value for k in call.keywords}
        disable = keywords.get("disable")
        if not (isinstance(disable, ast.Constant) and disable.value is None):
            wrong.append(f"{where}: disable={ast.unparse(disable) if disable else 'missing'}")
        if "file" in keywords and ast.unparse(keywords["file"]) != "sys.stderr":
            wrong.append(f"{where}: file={ast.unparse(keywords['file'])}")
    assert wrong == []

"""Writes that never leave a half-written file behind: write to a temp path beside the target,
then rename over it (atomic on POSIX). A failure removes the temp path and leaves any previous
version of the target untouched.

Temp paths are named `.<target>.<pid>-<random>.tmp` (`.old` for a folder being replaced), so a
later write into the same folder can tell the litter of a killed run (its pid is gone) from the
work of a live one, and removes only the former (`sweep_stale`).

CSV files people open in a spreadsheet go through `write_csv`, which neutralises text cells a
spreadsheet would run as a formula."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from steps.stage.errors import StageError

log = logging.getLogger(__name__)

_TEMP = re.compile(r"^\..+\.(?P<pid>\d+)-[^.]+\.(?:tmp|old)$")  # what _temp_prefix makes
# Text a spreadsheet runs as a formula when a cell starts with it (OWASP, "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temp file path in `final`'s folder; on success rename it to `final`."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(final.parent)
    fd, name = tempfile.mkstemp(prefix=_temp_prefix(final), suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    tmp.chmod(0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
    try:
        yield tmp
        tmp.replace(final)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield an empty temp folder beside `final`; on success it replaces `final` as a whole."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(final.parent)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(final), suffix=".tmp", dir=final.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700
    try:
        yield tmp
        if final.exists():
            old = Path(
                tempfile.mkdtemp(prefix=_temp_prefix(final), suffix=".old", dir=final.parent)
            )
            final.replace(old / final.name)
            tmp.replace(final)
            shutil.rmtree(old)
        else:
            tmp.replace(final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _temp_prefix(final: Path) -> str:
    return f".{final.name}.{os.getpid()}-"


def sweep_stale(folder: Path) -> list[Path]:
    """Remove the temp files and folders of writes whose process is gone; return them.

    Only names this module makes are considered, and only when their pid is not running, so a
    write in progress in another live process is never touched.
    """
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP.match(entry.name)
        if not match or _alive(int(match["pid"])):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except FileNotFoundError:
            continue  # another run swept it first
        removed.append(entry)
    if removed:
        log.info(
            "removed %d temp file(s) left by interrupted runs in %s: %s",
            len(removed), folder, ", ".join(p.name for p in removed[:3]),
        )  # fmt: skip
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: Path, data: Any, sort_keys: bool = True) -> None:
    """Write JSON atomically (sorted keys, so the bytes only change when the content does; a
    metrics file keeps its order instead: `dvc exp show` makes its columns in that order)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=sort_keys) + "\n", encoding="utf-8")


def read_json(path: Path, what: str, remedy: str) -> dict:
    """A JSON object from `path`, or a StageError naming the file, `what` it is and the `remedy`."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StageError(f"{path}: {what} not found: {remedy}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StageError(f"{path}: {what} is not valid JSON ({exc}): {remedy}") from None
    if not isinstance(raw, dict):
        raise StageError(f"{path}: {what} should be a JSON object: {remedy}")
    return raw


def spreadsheet_safe(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula, with a leading apostrophe (OWASP's
    advice): the spreadsheet takes it as text, and the words after it are unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    """Write a CSV atomically, its text cells spreadsheet-safe (numbers are left as numbers)."""
    safe = frame.copy()
    for column in safe.columns:
        if not pd.api.types.is_numeric_dtype(safe[column]):
            safe[column] = safe[column].map(spreadsheet_safe)
    with atomic_path(path) as tmp:
        safe.to_csv(tmp, index=False)
    return Path(path)


class YamlBlock(str):
    """A string `yaml_text` writes as a YAML literal block (`|`): its line breaks kept."""

    __slots__ = ()


def yaml_text(document: Any) -> str:
    """`document` as YAML in its own key order, YamlBlock strings as literal blocks."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    Dumper.add_representer(
        YamlBlock, lambda dumper, text: dumper.represent_scalar("tag:yaml.org,2002:str", text, "|")
    )
    # No width: a folded line would read as two to a person, though YAML joins them.
    return yaml.dump(document, Dumper=Dumper, sort_keys=False, width=1 << 16, allow_unicode=True)

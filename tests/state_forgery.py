"""Forging a written model state (pyfunc/state.py) the way a careful attacker or a damaged disk
would, and the one-line refusal every such state must meet: for the tests of the state and of
the calibrator it carries."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from pyfunc.state import SEALED_FILES, SETTINGS_FILE, WEIGHTS_FILE, DamagedState, read_state


def seal(folder: Path) -> None:
    """Record the files' sizes and digests in model.json again, as a careful forger would: what
    is checked then is the content itself."""
    try:
        settings = json.loads((folder / SETTINGS_FILE).read_text())
    except (OSError, ValueError):
        return  # the case is about model.json itself
    if "files" not in settings:
        return
    for name in SEALED_FILES:
        if (folder / name).is_file():
            data = (folder / name).read_bytes()
            settings["files"][name] = {
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
    (folder / SETTINGS_FILE).write_text(json.dumps(settings))


def edit_settings(folder: Path, edit) -> None:
    settings = json.loads((folder / SETTINGS_FILE).read_text())
    edit(settings)
    (folder / SETTINGS_FILE).write_text(json.dumps(settings))


def read_arrays(folder: Path) -> dict[str, np.ndarray]:
    with np.load(folder / WEIGHTS_FILE, allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def rewrite_arrays(folder: Path, edit, allow_pickle: bool = False) -> None:
    arrays = read_arrays(folder)
    edit(arrays)
    (folder / WEIGHTS_FILE).unlink()
    np.savez(folder / WEIGHTS_FILE, allow_pickle=allow_pickle, **arrays)


def assert_refused_in_one_line(folder: Path, file_name: str, what: str) -> None:
    """read_state refuses `folder` with one line that starts with the damaged file and says
    `what` is wrong."""
    with pytest.raises(DamagedState) as caught:
        read_state(folder)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(str(folder / file_name)), message
    assert what in message, message

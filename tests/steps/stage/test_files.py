import hashlib
import os
import stat

import pytest

from steps.data.dataset import file_sha256
from steps.stage.errors import StageError
from steps.stage.files import atomic_dir, atomic_path, read_json, write_json


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half-writ")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temp file left behind
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~_umask()


def test_atomic_dir_swaps_the_whole_folder(tmp_path):
    target = tmp_path / "ingested"
    with atomic_dir(target) as tmp:
        (tmp / "a.parquet").write_text("1")
    with pytest.raises(KeyboardInterrupt), atomic_dir(target) as tmp:
        (tmp / "b.parquet").write_text("2")
        raise KeyboardInterrupt
    assert sorted([p.name for p in target.iterdir()]) == ["a.parquet"]
    with atomic_dir(target) as tmp:
        (tmp / "b.parquet").write_text("2")
    assert sorted([p.name for p in target.iterdir()]) == ["b.parquet"]
    assert [p.name for p in tmp_path.iterdir()] == ["ingested"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o777 & ~_umask()


def test_write_json_is_stable_and_hash_matches(tmp_path):
    path = tmp_path / "m.json"
    write_json(path, {"b": 1, "a": [1, 2]})
    first = path.read_bytes()
    write_json(path, {"a": [1, 2], "b": 1})
    assert path.read_bytes() == first
    assert file_sha256(path) == hashlib.sha256(first).hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_read_json_names_the_file_what_it_is_and_what_to_do(tmp_path):
    path = tmp_path / "manifest.json"
    with pytest.raises(StageError, match=r"manifest.json: manifest not found: run ingest$"):
        read_json(path, "manifest", "run ingest")
    path.write_text("{broken")
    with pytest.raises(StageError, match=r"manifest.json: manifest is not valid JSON \(.*\): run"):
        read_json(path, "manifest", "run ingest")
    path.write_text("[1, 2]")
    with pytest.raises(StageError, match="manifest should be a JSON object"):
        read_json(path, "manifest", "run ingest")
    path.write_text('{"rows": 3}')
    assert read_json(path, "manifest", "run ingest") == {"rows": 3}

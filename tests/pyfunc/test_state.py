"""The fitted pipeline as data (pyfunc/state.py): every recipe train can fit reads back as a
pipeline that predicts what the fitted one does, and a state folder that is not what was
written is refused in one line naming the file, without running anything it holds."""

from __future__ import annotations

import json
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from state_forgery import (
    assert_refused_in_one_line,
    edit_settings,
    rewrite_arrays,
    seal,
)
from support import make_reviews, make_unlabeled

from pyfunc.pipeline import build_pipeline, n_features, token_counts
from pyfunc.self_training import self_train
from pyfunc.state import (
    FORMAT_VERSION,
    SETTINGS_FILE,
    VOCABULARY_FILE,
    WEIGHTS_FILE,
    read_state,
    write_state,
)

# Held-out reviews the fitted words do not all cover, plus the edge cases of the scorer.
EXTRA = ["", "   ", "<br /><br />", "qwertz asdfgh", "Not good. NOT GOOD!!", "café naïve ½ 🙂"]


@pytest.fixture(scope="module")
def data():
    frame = make_reviews(500, seed=11)
    held_out = make_reviews(120, seed=12)["review"].tolist() + EXTRA
    return frame["review"].tolist(), frame["sentiment"].tolist(), held_out


RECIPES = {
    "default": {},
    "shipped": {"ngram_range": (1, 3), "min_df": 3},
    "negation": {"negation": True},
    "one view, max_features": {"views": ("tfidf",), "max_features": 300},
    "char n-grams": {"char_ngram_range": (2, 4)},
    "svm": {"classifier": "svm", "C": 1.0},
    "negation view": {"negation_view": True, "ngram_range": (1, 3)},
}


@pytest.mark.parametrize("recipe", RECIPES.values(), ids=RECIPES.keys())
def test_every_recipe_reads_back_as_the_same_pipeline(data, recipe, tmp_path):
    texts, labels, held_out = data
    fitted = build_pipeline(**recipe).fit(texts, labels)
    write_state(fitted, tmp_path / "state")
    loaded = read_state(tmp_path / "state")
    expected, got = fitted.predict_proba(held_out), loaded.predict_proba(held_out)
    assert np.abs(expected - got).max() <= 1e-9
    assert list(loaded.classes_) == list(fitted.classes_) == ["negative", "positive"]
    assert n_features(loaded) == n_features(fitted)
    for mine, theirs in zip(
        token_counts(loaded, held_out), token_counts(fitted, held_out), strict=True
    ):
        assert (mine == theirs).all()


def test_a_self_trained_pipeline_reads_back_with_its_refitted_weights(data, tmp_path):
    texts, labels, held_out = data
    fitted = self_train(build_pipeline(), texts, labels, make_unlabeled(300, seed=13), rounds=2)
    plain = build_pipeline().fit(texts, labels)
    write_state(fitted, tmp_path / "state")
    got = read_state(tmp_path / "state").predict_proba(held_out)[:, 1]
    assert np.abs(got - fitted.predict_proba(held_out)[:, 1]).max() <= 1e-9
    assert np.abs(got - plain.predict_proba(held_out)[:, 1]).max() > 1e-6  # not the plain fit


def test_the_state_is_json_and_plain_arrays(data, tmp_path):
    texts, labels, _ = data
    write_state(build_pipeline(ngram_range=(1, 3)).fit(texts, labels), tmp_path / "state")
    folder = tmp_path / "state"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [SETTINGS_FILE, VOCABULARY_FILE, WEIGHTS_FILE]
    )
    settings = json.loads((folder / SETTINGS_FILE).read_text())
    assert settings["format_version"] == FORMAT_VERSION
    words = json.loads((folder / VOCABULARY_FILE).read_text())["plain"]["words"]
    assert settings["members"][0]["n_words"] == len(words)
    with np.load(folder / WEIGHTS_FILE, allow_pickle=False) as npz:
        kinds = {name: npz[name].dtype.kind for name in npz.files}
    assert set(kinds.values()) <= {"i", "f"}
    assert {"plain.keys.1", "plain.keys.3", "plain.nb.coef", "plain.idf"} <= set(kinds)


def test_an_unsupported_estimator_is_refused_when_written(tmp_path):
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    with pytest.raises(ValueError, match="clean -> vectorize -> classify"):
        write_state(Pipeline([("scale", StandardScaler())]), tmp_path / "state")
    assert not (tmp_path / "state").exists()


# --- tampered or damaged state folders --------------------------------------------------------


class Payload:
    """Unpickling this creates the file `marker`: proof that a pickle ran, if it exists."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_the_payload_runs_when_unpickled(tmp_path):
    """So the tampering tests below can fail: their pickles would leave the marker."""
    pickle.loads(pickle.dumps(Payload(tmp_path / "ran")))
    assert (tmp_path / "ran").exists()


def _respell_a_word(folder: Path, marker: Path) -> None:
    """The same number of words and bytes, one word spelled otherwise."""
    path = folder / VOCABULARY_FILE
    text = path.read_text()
    assert '"wonderful"' in text
    path.write_text(text.replace('"wonderful"', '"wonderfux"', 1))


def _edit_words(folder: Path, edit) -> None:
    vocabulary = json.loads((folder / VOCABULARY_FILE).read_text())
    edit(vocabulary["plain"]["words"])
    (folder / VOCABULARY_FILE).write_text(json.dumps(vocabulary))


def _pickle_in_npz(folder: Path, marker: Path) -> None:
    def edit(arrays):
        arrays["plain.nb.coef"] = np.array([Payload(marker)], dtype=object)

    rewrite_arrays(folder, edit, allow_pickle=True)


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _corrupt_member(folder: Path) -> None:
    """Flip bytes inside one stored array: the zip's CRC no longer matches."""
    path = folder / WEIGHTS_FILE
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("plain.nb.coef.npy")
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + 200
    data[start : start + 16] = b"\xff" * 16
    path.write_bytes(bytes(data))


def _save_one_array(path: Path) -> None:
    with open(path, "wb") as f:  # np.save(path) would add ".npy" to the name
        np.save(f, np.zeros(3))


def _shorter(name: str):
    def edit(arrays):
        arrays[name] = arrays[name][..., :-1]

    return edit


def _drop_words(words: list) -> None:
    del words[len(words) // 2 :]


# Cases named "unsealed: ..." leave model.json's record of the files as it was; the others record
# the changed files' sizes and digests again (_seal), so the content checks are what refuses them.
TAMPERED = {
    "unsealed: weights replaced by a pickle": (
        lambda f, m: (f / WEIGHTS_FILE).write_bytes(pickle.dumps(Payload(m), protocol=4)),
        WEIGHTS_FILE, "bytes, model.json records",
    ),
    "unsealed: truncated weights file": (
        lambda f, m: _truncate(f / WEIGHTS_FILE), WEIGHTS_FILE, "the file was cut short",
    ),
    "unsealed: a word respelled": (
        _respell_a_word, VOCABULARY_FILE, "model.json records: the file was changed after",
    ),
    "unsealed: weights recomputed": (
        lambda f, m: rewrite_arrays(f, lambda a: a["plain.nb.coef"].__setitem__((0, 0), 1.5)),
        WEIGHTS_FILE, "the file was c",
    ),
    "no record of the files": (
        lambda f, m: edit_settings(f, lambda s: s.pop("files")),
        SETTINGS_FILE, "files must give bytes and sha256",
    ),
    "weights replaced by a pickle": (
        lambda f, m: (f / WEIGHTS_FILE).write_bytes(pickle.dumps(Payload(m), protocol=4)),
        WEIGHTS_FILE, "holds pickled data, never loaded",
    ),
    "an object array pickled inside the npz": (
        _pickle_in_npz, WEIGHTS_FILE, "holds pickled data, never loaded",
    ),
    "weights replaced by one .npy array": (
        lambda f, m: _save_one_array(f / WEIGHTS_FILE), WEIGHTS_FILE, "one array",
    ),
    "truncated weights file": (
        lambda f, m: _truncate(f / WEIGHTS_FILE), WEIGHTS_FILE, "not a zip file",
    ),
    "bytes of an array overwritten": (
        lambda f, m: _corrupt_member(f), WEIGHTS_FILE, "not a readable .npz of plain arrays (",
    ),
    "coefficients cut short": (
        lambda f, m: rewrite_arrays(f, _shorter("plain.nb.coef")),
        WEIGHTS_FILE, "array plain.nb.coef is float64[1, ",
    ),
    "idf cut short": (
        lambda f, m: rewrite_arrays(f, _shorter("plain.idf")), WEIGHTS_FILE, "array plain.idf",
    ),
    "keys cut short": (
        lambda f, m: rewrite_arrays(f, _shorter("plain.keys.2")),
        WEIGHTS_FILE, "vocabulary and weights do not belong together",
    ),
    "coefficients stored as float32": (
        lambda f, m: rewrite_arrays(
            f, lambda a: a.update({"plain.tfidf.coef": a["plain.tfidf.coef"].astype(np.float32)})
        ),
        WEIGHTS_FILE, "expected float64",
    ),
    "an array missing": (
        lambda f, m: rewrite_arrays(f, lambda a: a.pop("plain.log_ratio")),
        WEIGHTS_FILE, "arrays missing ['plain.log_ratio'], not expected []",
    ),
    "an array too many": (
        lambda f, m: rewrite_arrays(f, lambda a: a.update({"extra": np.zeros(2)})),
        WEIGHTS_FILE, "arrays missing [], not expected ['extra']",
    ),
    "a NaN weight": (
        lambda f, m: rewrite_arrays(f, lambda a: a["plain.nb.coef"].__setitem__((0, 0), np.nan)),
        WEIGHTS_FILE, "NaN",
    ),
    "keys out of order": (
        lambda f, m: rewrite_arrays(f, lambda a: a["plain.keys.1"].__setitem__(
            slice(None), a["plain.keys.1"][::-1].copy()
        )),
        WEIGHTS_FILE, "not sorted",
    ),
    "weights file missing": (
        lambda f, m: (f / WEIGHTS_FILE).unlink(), WEIGHTS_FILE, "no such file",
    ),
    "format version from the future": (
        lambda f, m: edit_settings(f, lambda s: s.update(format_version=FORMAT_VERSION + 1)),
        SETTINGS_FILE, f"format version {FORMAT_VERSION + 1} is newer",
    ),
    "format version not a number": (
        lambda f, m: edit_settings(f, lambda s: s.update(format_version="1")),
        SETTINGS_FILE, "format_version must be",
    ),
    "another format": (
        lambda f, m: edit_settings(f, lambda s: s.update(format="something-else")),
        SETTINGS_FILE, "not an imdb-sentiment-state settings file",
    ),
    "settings not JSON": (
        lambda f, m: (f / SETTINGS_FILE).write_bytes(b"\x80\x04not json"),
        SETTINGS_FILE, "not readable JSON",
    ),
    "settings missing": (
        lambda f, m: (f / SETTINGS_FILE).unlink(), SETTINGS_FILE, "no such file",
    ),
    "an unknown view": (
        lambda f, m: edit_settings(f, lambda s: s["members"][0].update(views=["nb", "bert"])),
        SETTINGS_FILE, "members[0].views must be",
    ),
    "an unknown setting": (
        lambda f, m: edit_settings(f, lambda s: s["members"][0].update(layers=3)),
        SETTINGS_FILE, "has unknown ['layers']",
    ),
    "feature count edited": (
        lambda f, m: edit_settings(
            f, lambda s: s["members"][0].update(n_features=s["members"][0]["n_features"] + 1)
        ),
        WEIGHTS_FILE, "array plain.",
    ),
    "vocabulary shorter than the weights need": (
        lambda f, m: (
            _edit_words(f, _drop_words),
            edit_settings(f, lambda s: s["members"][0].update(
                n_words=len(json.loads((f / VOCABULARY_FILE).read_text())["plain"]["words"])
            )),
        ),
        WEIGHTS_FILE, "does the vocabulary belong to these weights",
    ),
    "vocabulary with a word fewer than model.json says": (
        lambda f, m: _edit_words(f, lambda w: w.pop()), VOCABULARY_FILE, "words, model.json says",
    ),
    "vocabulary with a repeated word": (
        lambda f, m: _edit_words(f, lambda w: w.__setitem__(1, w[0])),
        VOCABULARY_FILE, "distinct",
    ),
    "vocabulary not JSON": (
        lambda f, m: _truncate(f / VOCABULARY_FILE, 0.3), VOCABULARY_FILE, "not readable JSON",
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def written(data, tmp_path_factory):
    texts, labels, _ = data
    folder = tmp_path_factory.mktemp("state") / "state"
    write_state(build_pipeline(ngram_range=(1, 3)).fit(texts, labels), folder)
    return folder


@pytest.mark.parametrize("case", TAMPERED)
def test_a_tampered_state_is_refused_in_one_line_naming_the_file(written, case, tmp_path):
    change, file_name, what = TAMPERED[case]
    folder, marker = tmp_path / "state", tmp_path / "pickle-ran"
    shutil.copytree(written, folder)
    change(folder, marker)
    if not case.startswith("unsealed:"):
        seal(folder)
    assert_refused_in_one_line(folder, file_name, what)
    assert not marker.exists(), "a pickle in the state ran"

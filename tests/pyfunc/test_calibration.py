"""The score's calibrator (pyfunc/calibration.py) and its place in the state (pyfunc/state.py):
both methods make overconfident scores honest, keep "no evidence" exactly where it was, read back
as the same numbers, and a state without one (format version 1, or calibration: none) loads as an
uncalibrated model; a calibration that is not what was written is refused in one line."""

from __future__ import annotations

import json
import shutil
import zipfile

import numpy as np
import pytest
from scipy.special import expit, logit
from state_forgery import assert_refused_in_one_line, edit_settings, rewrite_arrays, seal
from support import make_reviews

from pyfunc.calibration import METHODS, Calibrator, fit
from pyfunc.classifier import NO_EVIDENCE
from pyfunc.model import SentimentModel, score_reviews
from pyfunc.pipeline import build_pipeline
from pyfunc.state import (
    SETTINGS_FILE,
    WEIGHTS_FILE,
    read_calibrated_state,
    write_state,
)


def overconfident(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores whose true probability of positive has half their logit (a sigmoid, as Platt
    assumes; isotonic assumes only that it is monotone)."""
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0.001, 0.999, n)
    truth = rng.uniform(size=n) < expit(logit(scores) / 2)
    return scores, truth


def top_label_gap(scores: np.ndarray, truth: np.ndarray) -> float:
    """|mean confidence - accuracy|: how far the label-free accuracy estimate is off."""
    return abs(np.maximum(scores, 1 - scores).mean() - ((scores > 0.5) == truth).mean())


@pytest.mark.parametrize("method", METHODS)
def test_a_calibrator_makes_overconfident_scores_honest(method):
    scores, truth = overconfident(20_000, seed=1)
    held, held_truth = overconfident(20_000, seed=2)
    calibrate = fit(method, scores, truth)
    assert top_label_gap(held, held_truth) > 0.05  # the raw estimate is far off
    assert top_label_gap(calibrate(held), held_truth) < 0.01


@pytest.mark.parametrize("method", METHODS)
def test_no_evidence_keeps_its_score_and_no_other_review_takes_it(method):
    scores, truth = overconfident(2_000, seed=3)
    calibrate = fit(method, scores, truth)
    raw = np.array([NO_EVIDENCE, 0.0, 1.0, 0.5 + 1e-12, 0.5 - 1e-12, 0.3, 0.9])
    got = calibrate(raw)
    assert got[0] == NO_EVIDENCE
    assert (got[1:] != NO_EVIDENCE).all()
    assert ((got > 0) & (got < 1)).all()  # never certain
    assert (np.diff(calibrate(np.linspace(0, 1, 100))) >= 0).all()  # monotone (0.5 not in it)


def test_an_unknown_method_is_refused():
    with pytest.raises(ValueError, match="must be one of"):
        fit("beta", np.array([0.2, 0.8]), np.array([False, True]))


@pytest.fixture(scope="module")
def fitted():
    frame = make_reviews(400, seed=21)
    pipeline = build_pipeline().fit(frame["review"].tolist(), frame["sentiment"].tolist())
    held = [*make_reviews(100, seed=22)["review"].tolist(), "", "qwertz"]
    return pipeline, held


@pytest.mark.parametrize("method", METHODS)
def test_the_calibrator_reads_back_as_the_same_numbers(fitted, method, tmp_path):
    pipeline, held = fitted
    scores, truth = overconfident(3_000, seed=4)
    calibrator = fit(method, scores, truth)
    write_state(pipeline, tmp_path / "state", calibrator)
    loaded, back = read_calibrated_state(tmp_path / "state")
    assert back is not None and back.method == method
    expected = score_reviews(pipeline, held, calibrator=calibrator)
    got = score_reviews(loaded, held, calibrator=back)
    assert np.abs(expected["score"] - got["score"]).max() <= 1e-12
    assert (expected["label"] == got["label"]).all()
    assert got["label"].iloc[-2] == "unknown" and got["score"].iloc[-2] == NO_EVIDENCE
    raw = score_reviews(pipeline, held)["score"]
    assert np.abs(raw - got["score"]).max() > 1e-3  # calibrated, not the raw score


def test_a_state_without_a_calibrator_loads_uncalibrated(fitted, tmp_path):
    pipeline, _ = fitted
    write_state(pipeline, tmp_path / "state")
    loaded, calibrator = read_calibrated_state(tmp_path / "state")
    assert calibrator is None
    assert not SentimentModel(loaded).calibrated
    assert json.loads((tmp_path / "state" / SETTINGS_FILE).read_text())["calibration"] is None


def test_a_format_version_1_state_loads_uncalibrated(fitted, tmp_path):
    """As every version logged before calibration wrote it: no calibration key at all."""
    pipeline, held = fitted
    folder = tmp_path / "state"
    write_state(pipeline, folder)
    edit_settings(folder, lambda s: (s.pop("calibration"), s.update(format_version=1)))
    loaded, calibrator = read_calibrated_state(folder)
    assert calibrator is None
    assert np.abs(loaded.predict_proba(held) - pipeline.predict_proba(held)).max() <= 1e-12


def _reverse(arrays: dict, name: str) -> None:
    arrays[name] = arrays[name][::-1].copy()


TAMPERED = {
    "an unknown method": (
        lambda f: edit_settings(f, lambda s: s["calibration"].update(method="beta")),
        SETTINGS_FILE, "calibration must be",
    ),
    "a version 2 state without the key": (
        lambda f: edit_settings(f, lambda s: s.pop("calibration")),
        SETTINGS_FILE, "has a calibration",
    ),
    "a point count that is not the arrays'": (
        lambda f: edit_settings(f, lambda s: s["calibration"].update(points=7)),
        WEIGHTS_FILE, "array calibration.x",
    ),
    "an unknown calibration setting": (
        lambda f: edit_settings(f, lambda s: s["calibration"].update(temperature=2)),
        SETTINGS_FILE, "calibration must be",
    ),
    "knots out of order": (
        lambda f: rewrite_arrays(f, lambda a: _reverse(a, "calibration.y")),
        SETTINGS_FILE, "non-decreasing",
    ),
    "knots outside [0, 1]": (
        lambda f: rewrite_arrays(f, lambda a: a["calibration.x"].__imul__(3)),
        SETTINGS_FILE, "within [0, 1]",
    ),
    "knots missing": (
        lambda f: rewrite_arrays(f, lambda a: a.pop("calibration.x")),
        WEIGHTS_FILE, "arrays missing ['calibration.x']",
    ),
    "a platt slope that is not a number": (
        lambda f: edit_settings(
            f, lambda s: s.update(calibration={"method": "platt", "a": "1", "b": 0})
        ),
        SETTINGS_FILE, "calibration must be",
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def written(fitted, tmp_path_factory):
    pipeline, _ = fitted
    folder = tmp_path_factory.mktemp("calibrated") / "state"
    write_state(pipeline, folder, fit("isotonic", *overconfident(3_000, seed=5)))
    return folder


@pytest.mark.parametrize("case", TAMPERED)
def test_a_damaged_calibration_is_refused_in_one_line(written, case, tmp_path):
    change, file_name, what = TAMPERED[case]
    folder = tmp_path / "state"
    shutil.copytree(written, folder)
    change(folder)
    seal(folder)
    assert_refused_in_one_line(folder, file_name, what)


def test_the_calibrator_is_plain_numbers_in_the_state(written):
    settings = json.loads((written / SETTINGS_FILE).read_text())
    assert settings["calibration"]["method"] == "isotonic"
    with zipfile.ZipFile(written / WEIGHTS_FILE) as archive:
        assert {"calibration.x.npy", "calibration.y.npy"} <= set(archive.namelist())
    assert isinstance(Calibrator("platt", a=0.5, b=0.1)(np.array([0.9]))[0], float)

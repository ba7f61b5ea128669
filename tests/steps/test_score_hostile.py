"""`score` loses nothing: an output that is (or holds, or lies inside) the input is refused even
with overwrite=true; a folder mixing formats is scored; the output's and the model's errors are
reported as theirs, not as the input's; ids a spreadsheet would run are neutralised in CSV.

Real files, links and folders in tmp_path, the real model (tests/steps/conftest.py).
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import reviews_with_ids

from steps import score
from steps.stage.files import FORMULA_STARTS
from steps.stage.paths import PROJECT_ROOT

PARAMS = str(PROJECT_ROOT / "params.yaml")


def cli(*argv: str) -> int:
    return score.main(["--params", PARAMS, *argv])


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` but the tracking store's, by content."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.relative_to(folder).parts[0].startswith(("mlflow", "mlartifacts"))
    }


def _same(tmp: Path) -> tuple[str, str]:
    return str(tmp / "in" / "reviews.parquet"), str(tmp / "in" / "reviews.parquet")


def _dotdot(tmp: Path) -> tuple[str, str]:
    return str(tmp / "in" / "reviews.parquet"), str(tmp / "in" / "sub" / ".." / "reviews.parquet")


def _symlink(tmp: Path) -> tuple[str, str]:
    (tmp / "out").mkdir()
    (tmp / "out" / "scores.parquet").symlink_to(tmp / "in" / "reviews.parquet")
    return str(tmp / "in" / "reviews.parquet"), str(tmp / "out" / "scores.parquet")


def _symlinked_folder(tmp: Path) -> tuple[str, str]:
    (tmp / "elsewhere").symlink_to(tmp / "in")
    return str(tmp / "in" / "reviews.parquet"), str(tmp / "elsewhere" / "reviews.parquet")


def _hard_link(tmp: Path) -> tuple[str, str]:
    (tmp / "out").mkdir()
    os.link(tmp / "in" / "reviews.parquet", tmp / "out" / "scores.parquet")
    return str(tmp / "in" / "reviews.parquet"), str(tmp / "out" / "scores.parquet")


def _inside_folder(tmp: Path) -> tuple[str, str]:
    return str(tmp / "in"), str(tmp / "in" / "scores.parquet")


def _inside_subfolder(tmp: Path) -> tuple[str, str]:
    return str(tmp / "in"), str(tmp / "in" / "sub" / "scores.parquet")


def _holding_the_input(tmp: Path) -> tuple[str, str]:
    # A dataset folder named like a Parquet file: Spark replaces such an output folder whole.
    folder = tmp / "in" / "data.parquet"
    folder.mkdir()
    shutil.copy(tmp / "in" / "reviews.parquet", folder / "part-00000.parquet")
    return str(folder / "part-00000.parquet"), str(folder)


def _relative(tmp: Path) -> tuple[str, str]:
    os.chdir(tmp / "in")
    return "reviews.parquet", "./reviews.parquet"


OUTPUT_IS_INPUT = {
    "same path": _same,
    "dot-dot": _dotdot,
    "symlink to the input": _symlink,
    "through a linked folder": _symlinked_folder,
    "hard link to the input": _hard_link,
    "inside the input folder": _inside_folder,
    "in a subfolder of it": _inside_subfolder,
    "holding the input": _holding_the_input,
    "relative spellings": _relative,
}


@pytest.mark.parametrize("case", OUTPUT_IS_INPUT, ids=str)
def test_an_output_that_is_the_input_is_refused_even_with_overwrite(
    case, tmp_path, tracking_uri, model_dir, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    reviews_with_ids(30, seed=90).to_parquet(tmp_path / "in" / "reviews.parquet", index=False)
    source, target = OUTPUT_IS_INPUT[case](tmp_path)
    before = snapshot(tmp_path)

    code = cli("--input", source, "--output", target, "--model", str(model_dir),
               "--overwrite", "true")  # fmt: skip

    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 1
    assert line.startswith(f"error: score: {target}: the output is the input "), line
    assert "refused even with overwrite=true" in line
    assert snapshot(tmp_path) == before  # the reviews untouched, nothing added


def test_an_output_beside_the_input_is_still_written(tmp_path, model_dir, run_score):
    """The refusal is about the input itself: a sibling that only shares a prefix is fine."""
    (tmp_path / "in").mkdir()
    reviews_with_ids(10, seed=91).to_parquet(tmp_path / "in" / "reviews.parquet", index=False)
    run_score(input=str(tmp_path / "in"), output=str(tmp_path / "in-scores.parquet"),
              model=str(model_dir), overwrite=True)  # fmt: skip
    assert len(pd.read_parquet(tmp_path / "in-scores.parquet")) == 10


def test_a_folder_mixing_csv_and_parquet_is_scored_ids_as_text(tmp_path, model_dir, run_score):
    frame = reviews_with_ids(40, seed=92)
    folder = tmp_path / "mixed"
    folder.mkdir()
    frame.iloc[:15].to_csv(folder / "a.csv", index=False)
    frame.iloc[15:30].to_parquet(folder / "b.parquet", index=False)  # ids int64 here
    frame.iloc[30:].to_csv(folder / "c.csv.gz", index=False, compression="gzip")

    result = run_score(input=str(folder), output=str(tmp_path / "s.parquet"),
                       model=str(model_dir), chunk_rows=7)  # fmt: skip

    out = pd.read_parquet(tmp_path / "s.parquet")
    assert out["id"].tolist() == [str(i) for i in frame["id"]]
    assert result.tally.scored == 40


def test_parquet_files_whose_ids_change_type_are_one_line(
    tmp_path, tracking_uri, model_dir, capsys
):
    frame = reviews_with_ids(20, seed=93)
    folder = tmp_path / "parts"
    folder.mkdir()
    frame.iloc[:10].to_parquet(folder / "part-0.parquet", index=False)
    pq.write_table(
        pa.table({"id": [f"x{i}" for i in range(10)], "review": frame["review"][10:].tolist()}),
        folder / "part-1.parquet",
    )
    code = cli("--input", str(folder), "--output", str(tmp_path / "s.parquet"),
               "--model", str(model_dir))  # fmt: skip
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 1
    assert line == (
        f"error: score: {folder}: the id column is int64 in the rows before row 11 and string"
        " from there: give every file the same id type"
    )
    assert not (tmp_path / "s.parquet").exists()


def _existing_folder(tmp: Path) -> tuple[str, str]:
    (tmp / "scores.parquet").mkdir()
    (tmp / "scores.parquet" / "keep.txt").write_text("mine")
    return str(tmp / "scores.parquet"), "(Is a directory); nothing was written"


def _name_too_long(tmp: Path) -> tuple[str, str]:
    return str(tmp / ("x" * 300 + ".parquet")), "cannot write the output (File name too long)"


def _parent_loop(tmp: Path) -> tuple[str, str]:
    (tmp / "loop").symlink_to(tmp / "loop")
    return str(tmp / "loop" / "scores.csv"), "cannot write the output ("


OUTPUT_ERRORS = {
    "an existing folder": _existing_folder,
    "a name too long": _name_too_long,
    "a link loop above it": _parent_loop,
}


@pytest.mark.parametrize("case", OUTPUT_ERRORS, ids=str)
def test_output_errors_are_the_outputs_not_the_inputs(
    case, tmp_path, tracking_uri, model_dir, capsys
):
    reviews_with_ids(10, seed=94).to_csv(tmp_path / "reviews.csv", index=False)
    target, said = OUTPUT_ERRORS[case](tmp_path)
    before = snapshot(tmp_path)

    code = cli("--input", str(tmp_path / "reviews.csv"), "--output", target,
               "--model", str(model_dir), "--overwrite", "true")  # fmt: skip

    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 1
    assert line.startswith(f"error: score: {target}: ") and said in line, line
    assert "reviews.csv: cannot read" not in line
    assert snapshot(tmp_path) == before


def test_a_model_that_cannot_load_is_the_models_error(tmp_path, tracking_uri, model_dir, capsys):
    broken = tmp_path / "model"
    shutil.copytree(model_dir, broken)
    weights = next((broken / "artifacts").rglob("*.npz"))
    weights.unlink()
    weights.mkdir()  # where the weights should be, a folder: an OSError when loaded
    reviews_with_ids(10, seed=95).to_csv(tmp_path / "reviews.csv", index=False)

    code = cli("--input", str(tmp_path / "reviews.csv"), "--output",
               str(tmp_path / "s.csv"), "--model", str(broken))  # fmt: skip

    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 1
    assert line.startswith(f"error: score: model {broken} cannot be loaded: "), line
    assert not (tmp_path / "s.csv").exists()


FORMULAS = [start + "cmd|' /C calc'!A0" for start in FORMULA_STARTS] + ['=HYPERLINK("x")']


@pytest.mark.parametrize("ending", [".csv", ".csv.gz", ".parquet"])
def test_ids_a_spreadsheet_would_run_are_neutralised_in_csv(tmp_path, model_dir, run_score, ending):
    ids = [*FORMULAS, "plain", "7"]
    frame = pd.DataFrame({"id": ids, "review": ["A fine film."] * len(ids)})
    frame.to_parquet(tmp_path / "reviews.parquet", index=False)
    target = tmp_path / f"scores{ending}"

    run_score(input=str(tmp_path / "reviews.parquet"), output=str(target), model=str(model_dir))

    if ending == ".parquet":  # not a spreadsheet's format: the ids as they are
        assert pd.read_parquet(target)["id"].tolist() == ids
        return
    text = gzip.decompress(target.read_bytes()) if ending == ".csv.gz" else target.read_bytes()
    (tmp_path / "plain.csv").write_bytes(text)
    written = pd.read_csv(tmp_path / "plain.csv", dtype=str, keep_default_na=False)
    assert written["id"].tolist() == ["'" + f for f in FORMULAS] + ["plain", "7"]


def _empty(tmp: Path) -> Path:
    (tmp / "m").mkdir()
    return tmp / "m"


def _other_files(tmp: Path) -> Path:
    (tmp / "m").mkdir()
    (tmp / "m" / "model.pkl").write_bytes(b"not a model")
    (tmp / "m" / "conda.yaml").write_text("name: x\n")
    return tmp / "m"


def _a_file(tmp: Path) -> Path:
    (tmp / "m.pkl").write_bytes(b"not a model")
    return tmp / "m.pkl"


def _mlmodel_a_folder(tmp: Path) -> Path:
    (tmp / "m" / "MLmodel").mkdir(parents=True)
    return tmp / "m"


NOT_A_MODEL = {
    "an empty folder": _empty,
    "a folder of other files": _other_files,
    "a file": _a_file,
    "MLmodel a folder": _mlmodel_a_folder,
}


@pytest.mark.parametrize("case", NOT_A_MODEL, ids=str)
def test_a_model_path_without_an_mlmodel_file_is_one_line(case, tmp_path, tracking_uri, capsys):
    model = NOT_A_MODEL[case](tmp_path)
    reviews_with_ids(10, seed=96).to_csv(tmp_path / "reviews.csv", index=False)

    code = cli("--input", str(tmp_path / "reviews.csv"), "--output",
               str(tmp_path / "s.csv"), "--model", str(model))  # fmt: skip

    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"error: score: model {model}: no MLmodel file there, so not an MLflow model: give the"
        " folder a model was saved to, or models:/<name>/<version>"
    )
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.parametrize("case", NOT_A_MODEL, ids=str)
def test_the_image_build_refuses_a_model_path_without_an_mlmodel_file(case, tmp_path):
    from steps.rollout import image
    from steps.stage.errors import StageError

    model = NOT_A_MODEL[case](tmp_path)
    (tmp_path / "into").mkdir()
    with pytest.raises(StageError, match=rf"^model {model}: no MLmodel file there"):
        image._download_model(str(model), tmp_path / "into")

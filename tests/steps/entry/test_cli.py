"""Every flag of every entry point has help: a one-line description from its config field's
docstring, what the field accepts and the value params.yaml gives it. A bad command line (an
unknown flag, a refused value, a flag without its value) is one `error: <stage>:` line and exit 1,
before the stage does anything."""

from __future__ import annotations

import dataclasses
import importlib
import subprocess
import sys

import pytest
from config_cases import Case, cases

from steps.entry import cli
from steps.stage.config import Params, load_params
from steps.stage.paths import PROJECT_ROOT
from steps.stage.schema import (
    allowed,
    field_docs,
    flat_docs,
    flat_fields,
    flat_value,
    section_fields,
)

PARAMS = load_params(PROJECT_ROOT / "params.yaml")


@pytest.mark.parametrize("section", sorted(section_fields(Params)))
def test_every_config_field_has_a_one_line_doc(section):
    classes = [section_fields(Params)[section]]
    for cls in classes:  # and every nested section's
        docs = field_docs(cls)
        assert set(docs) == set(section_fields(cls)), f"{section}: fields without a docstring"
        assert all(10 <= len(doc) <= 100 and "\n" not in doc for doc in docs.values()), docs
        classes += [t for t in section_fields(cls).values() if dataclasses.is_dataclass(t)]


@pytest.mark.parametrize("section", sorted(section_fields(Params)))
def test_help_shows_each_flag_with_its_description_and_params_value(section):
    text = " ".join(cli.build_parser(section, PARAMS).format_help().split())
    current = getattr(PARAMS, section)
    docs = flat_docs(type(current))
    for key, typ in flat_fields(type(current)).items():  # a nested one's as --spark.master
        shown = cli._shown(flat_value(current, key))
        accepts = f" ({allowed(typ)})" if allowed(typ) else ""
        assert f"--{key} VALUE {docs[key]}{accepts} [{shown}]" in text, key


def test_a_nested_field_is_set_from_the_command_line_by_its_dotted_name():
    _, cfg, _ = cli.parse(
        "score",
        ["--params", str(PROJECT_ROOT / "params.yaml"), "--spark.master", "local[3]"],
    )
    assert cfg.spark.master == "local[3]"
    assert cfg.spark.driver_memory == PARAMS.score.spark.driver_memory
    assert cfg.engine == PARAMS.score.engine


def test_a_nested_deploy_field_is_set_by_its_dotted_name_and_an_unknown_one_refused():
    from steps.stage.coercion import override
    from steps.stage.errors import ConfigError

    _, cfg, _ = cli.parse(
        "deploy",
        ["--params", str(PROJECT_ROOT / "params.yaml"), "--analysis.duration", "7.5"],
    )
    assert cfg.analysis.duration == 7.5
    assert cfg.analysis.interval == PARAMS.deploy.analysis.interval
    assert cfg.namespace == PARAMS.deploy.namespace
    with pytest.raises(ConfigError, match=r"unknown parameter 'analysis\.nope'"):
        override(PARAMS.deploy, {"analysis.nope": "1"}, origin="deploy parameters")


@pytest.mark.slow
@pytest.mark.integration
def test_help_from_the_command_line_needs_no_params_file(tmp_path):
    """`--help` works anywhere; in the project it also shows params.yaml's values."""
    here = subprocess.run(
        [sys.executable, "-m", "steps.train", "--help"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert here.returncode == 0, here.stderr
    flat = " ".join(here.stdout.split())
    assert (
        "--C VALUE Inverse regularisation strength of each view's classifier. (over 0) [30.0]"
        in flat
    )
    assert flat.count("`train` entry point") == 1  # the module's docstring heads the help
    elsewhere = subprocess.run(
        [sys.executable, "-m", "steps.train", "--help"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert "[?]" in elsewhere.stdout


# --- a bad command line: one line, exit 1, nothing run -------------------------------------------


def entry_point_main(section: str, argv: list[str], capsys) -> tuple[int, list[str]]:
    """Run the section's entry point in this process, as `python -m steps.<section>` would."""
    module = importlib.import_module(f"steps.{section}")
    code = module.main(["--params", str(PROJECT_ROOT / "params.yaml"), *argv])
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("case", cases(), ids=lambda c: c.id)
def test_a_refused_flag_value_is_one_line_naming_key_value_and_what_is_allowed(
    case: Case, capsys, monkeypatch, tmp_path
):
    """Every stage refuses each declared choice and bound in its flags before it starts (the same
    words as params.yaml: tests/steps/stage/test_config.py); `mlflow run -P key=v` passes
    `--key v`."""
    monkeypatch.chdir(tmp_path)  # anything the stage wrote would land here
    code, err = entry_point_main(case.section, [f"--{case.key}", case.text], capsys)
    assert code == 1
    assert err == [
        f"error: {case.section}: {case.section} parameters: {case.key} must be"
        f" {allowed(case.typ)}, got {case.value!r}"
    ]
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_flag_lists_the_stage_s_keys_and_suggests_the_closest(capsys):
    code, err = entry_point_main("train", ["--val_spilt", "random"], capsys)
    known = sorted([*flat_fields(section_fields(Params)["train"]), "params"])
    assert code == 1
    assert err == [
        "error: train: train parameters: unknown parameter 'val_spilt' (did you mean"
        f" 'val_split'? known: {', '.join(known)})"
    ]
    # A stage's own flags are known keys too, and a flag is only taken by its full name.
    code, err = entry_point_main("deploy", ["--dry_rn", "true"], capsys)
    assert code == 1 and len(err) == 1
    assert "(did you mean 'dry_run'? known: " in err[0] and ", watch, " in err[0]
    code, err = entry_point_main("train", ["--val_spl", "random"], capsys)
    assert code == 1 and err[0].startswith("error: train: train parameters: unknown parameter")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--C"], "argument --C: expected one argument"),
        (["0.5"], "unexpected '0.5': give --KEY VALUE pairs"),
        (["--dry-run", "maybe"], "argument --dry-run/--dry_run: expected true or false"),
    ],
)
def test_any_other_command_line_mistake_is_one_line_and_exit_1(argv, message, capsys):
    section = "deploy" if "--dry-run" in argv else "train"
    code, err = entry_point_main(section, argv, capsys)
    assert code == 1
    assert len(err) == 1 and err[0].startswith(f"error: {section}: {section} parameters: {message}")

"""Every flag of every entry point has help: a one-line description from its config field's
docstring and the value params.yaml gives it."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from steps.stage import cli
from steps.stage.config import (
    Params,
    field_docs,
    flat_docs,
    flat_fields,
    flat_value,
    load_params,
    section_fields,
)
from steps.stage.paths import PROJECT_ROOT

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
    for key in flat_fields(type(current)):  # a nested section's fields as --spark.master
        shown = cli._shown(flat_value(current, key))
        assert f"--{key} VALUE {docs[key]} [{shown}]" in text, key


def test_a_nested_field_is_set_from_the_command_line_by_its_dotted_name():
    _, cfg, _ = cli.parse(
        "score",
        ["--params", str(PROJECT_ROOT / "params.yaml"), "--spark.master", "local[3]"],
    )
    assert cfg.spark.master == "local[3]"
    assert cfg.spark.driver_memory == PARAMS.score.spark.driver_memory
    assert cfg.engine == PARAMS.score.engine


def test_a_nested_deploy_field_is_set_by_its_dotted_name_and_an_unknown_one_refused():
    from steps.stage.config import override
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


def test_help_from_the_command_line_needs_no_params_file(tmp_path):
    """`--help` works anywhere; in the project it also shows params.yaml's values."""
    here = subprocess.run(
        [sys.executable, "-m", "steps.train", "--help"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert here.returncode == 0, here.stderr
    flat = " ".join(here.stdout.split())
    assert "--C VALUE Inverse regularisation strength of each view's classifier. [30.0]" in flat
    assert flat.count("`train` entry point") == 1  # the module's docstring heads the help
    elsewhere = subprocess.run(
        [sys.executable, "-m", "steps.train", "--help"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert "[?]" in elsewhere.stdout

import dataclasses
from pathlib import Path

import pytest
import yaml

from steps.stage.config import IngestConfig, load_params, override
from steps.stage.errors import ConfigError
from steps.stage.paths import PROJECT_ROOT

REPO_PARAMS = PROJECT_ROOT / "params.yaml"


def write_params(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load(REPO_PARAMS.read_text())
    mutate(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_repository_params_load_into_frozen_dataclasses():
    params = load_params(REPO_PARAMS)
    assert params.ingest.source.startswith("https://")
    assert 0 < params.ingest.test_size < 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.ingest.seed = 1  # type: ignore[misc]


def test_unknown_key_names_key_and_file(tmp_path):
    path = write_params(tmp_path, lambda raw: raw["ingest"].update(test_sise=0.3))
    with pytest.raises(ConfigError, match=r"params.yaml: unknown key 'ingest.test_sise'") as err:
        load_params(path)
    assert str(path) in str(err.value)


def test_unknown_section_is_an_error(tmp_path):
    path = write_params(tmp_path, lambda raw: raw.update(trian={"C": 1.0}))
    with pytest.raises(ConfigError, match="unknown key 'trian'"):
        load_params(path)


def test_missing_key_is_an_error(tmp_path):
    path = write_params(tmp_path, lambda raw: raw["ingest"].pop("seed"))
    with pytest.raises(ConfigError, match="missing key 'ingest.seed'"):
        load_params(path)


def test_mistyped_value_is_an_error(tmp_path):
    path = write_params(tmp_path, lambda raw: raw["ingest"].update(test_size="a fifth"))
    with pytest.raises(ConfigError, match="ingest.test_size must be a number, got 'a fifth'"):
        load_params(path)


def test_bool_is_not_a_number(tmp_path):
    path = write_params(tmp_path, lambda raw: raw["ingest"].update(seed=True))
    with pytest.raises(ConfigError, match="ingest.seed must be a whole number"):
        load_params(path)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="parameters file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("ingest: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)


def test_override_coerces_text_like_the_command_line():
    cfg = load_params(REPO_PARAMS).ingest
    new = override(cfg, {"test_size": "0.25", "seed": "7", "source": "data/x.csv"})
    assert (new.test_size, new.seed, new.source) == (0.25, 7, "data/x.csv")
    assert isinstance(new, IngestConfig) and cfg.seed == 0


def test_override_rejects_unknown_and_bad_values():
    cfg = load_params(REPO_PARAMS).ingest
    with pytest.raises(ConfigError, match="unknown parameter 'sed'"):
        override(cfg, {"sed": "1"})
    with pytest.raises(ConfigError, match="seed must be a whole number, got '1.5'"):
        override(cfg, {"seed": "1.5"})


def test_override_reaches_a_nested_section_by_its_dotted_name():
    cfg = load_params(REPO_PARAMS).score
    changed = override(cfg, {"spark.master": "local[2]", "spark.conf": "a=1,b=2", "engine": "x"})
    assert (changed.spark.master, changed.spark.conf, changed.engine) == (
        "local[2]",
        ("a=1", "b=2"),
        "x",
    )
    assert changed.spark.driver_memory == cfg.spark.driver_memory  # the rest stays
    with pytest.raises(ConfigError, match="unknown parameter 'spark.mastr'"):
        override(cfg, {"spark.mastr": "local"})
    with pytest.raises(ConfigError, match="unknown parameter 'spark' "):
        override(cfg, {"spark": "local"})  # a section is not a value
    with pytest.raises(ConfigError, match="spark.partitions must be a whole number, got 'all'"):
        override(cfg, {"spark.partitions": "all"})


def test_a_nested_section_has_its_keys_checked_like_any_other(tmp_path):
    raw = yaml.safe_load(REPO_PARAMS.read_text())
    raw["score"]["spark"]["masterr"] = "local"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="unknown key 'score.spark.masterr'"):
        load_params(path)

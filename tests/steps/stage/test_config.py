"""params.yaml -> frozen dataclasses: keys, types, and every declared choice and bound refused
alike through params.yaml (also what `dvc exp run -S` edits) and `override` (a stage's flags,
`mlflow run -P`, `main --check`), in one line naming the key, the value and what is allowed."""

import dataclasses
import typing
from pathlib import Path

import pytest
import yaml
from config_cases import BREAKERS, Case, cases, constrained_fields, wrongly_typed

from pyfunc.calibration import METHODS as CALIBRATION_METHODS
from pyfunc.classifier import CLASSIFIERS, VIEWS
from pyfunc.self_training import WEIGHTINGS
from steps.stage import config, schema
from steps.stage.coercion import override
from steps.stage.config import IngestConfig, Params, ValidateConfig, load_params
from steps.stage.errors import ConfigError
from steps.stage.paths import PROJECT_ROOT
from steps.stage.schema import allowed

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


def test_unknown_key_names_key_and_file_lists_the_section_and_suggests_the_closest(tmp_path):
    path = write_params(tmp_path, lambda raw: raw["ingest"].update(test_sise=0.3))
    with pytest.raises(ConfigError, match=r"params.yaml: unknown key 'ingest.test_sise'") as err:
        load_params(path)
    known = ", ".join(sorted(schema.section_fields(IngestConfig)))
    assert str(err.value) == (
        f"{path}: unknown key 'ingest.test_sise' (did you mean 'test_size'? known under ingest:"
        f" {known})"
    )


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
    with pytest.raises(ConfigError, match="unknown parameter 'sed' \\(did you mean 'seed'\\?"):
        override(cfg, {"sed": "1"})
    with pytest.raises(ConfigError, match="seed must be a whole number, got '1.5'"):
        override(cfg, {"seed": "1.5"})


def test_override_reaches_a_nested_section_by_its_dotted_name():
    cfg = load_params(REPO_PARAMS).score
    changed = override(
        cfg, {"spark.master": "local[2]", "spark.conf": "a=1,b=2", "engine": "spark"}
    )
    assert (changed.spark.master, changed.spark.conf, changed.engine) == (
        "local[2]",
        ("a=1", "b=2"),
        "spark",
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


# --- every declared choice and bound, through every door ----------------------------------------

CASES = cases()
SECTION_OF = {cls: name for name, cls in schema.section_fields(Params).items()}


def test_every_declaration_kind_has_a_bad_value_and_every_constrained_field_is_tried():
    """config_cases reads the declarations; a field that declares a bound none of its bad values
    breaks would go untested."""
    assert {type(m) for _, _, t in constrained_fields() for m in _marks(t)} <= set(BREAKERS)
    tried = {(c.section, c.key) for c in CASES}
    assert tried == {(s, k) for s, k, _ in constrained_fields()}
    assert len(tried) >= 60  # the declarations are really read (today: every bounded knob)


def _marks(typ):
    for arg in (typ, *typing.get_args(typ)):
        yield from getattr(arg, "__metadata__", ())
        if arg is not typ:
            yield from _marks(arg)


def test_the_repository_params_hold_to_every_declaration():
    params = load_params(REPO_PARAMS)
    for section, key, typ in constrained_fields():
        value = schema.flat_value(getattr(params, section), key)
        assert schema.allows(value, typ), f"{section}.{key}={value!r}: {allowed(typ)}"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_a_refused_value_is_one_line_and_the_same_through_params_yaml_and_override(
    case: Case, tmp_path
):
    def put(raw):
        section = raw[case.section]
        *parents, name = case.key.split(".")
        for parent in parents:
            section = section[parent]
        section[name] = case.yaml

    path = write_params(tmp_path, put)
    with pytest.raises(ConfigError) as from_file:
        load_params(path)
    defaults = getattr(load_params(REPO_PARAMS), case.section)
    origin = f"{case.section} parameters"
    with pytest.raises(ConfigError) as from_flags:
        override(defaults, {case.key: case.text}, origin=origin)

    file_line, flags_line = str(from_file.value), str(from_flags.value)
    assert "\n" not in file_line + flags_line
    assert file_line.startswith(f"{path}: {case.section}.{case.key} must be ")
    assert flags_line.startswith(f"{origin}: {case.key} must be ")
    why = flags_line.removeprefix(f"{origin}: {case.key} ")
    assert file_line == f"{path}: {case.section}.{case.key} {why}"  # the same words, every door
    assert allowed(case.typ) in why and why.endswith(f", got {case.value!r}"), why


@pytest.mark.parametrize("case", wrongly_typed(), ids=lambda c: c.id)
def test_a_value_of_the_wrong_type_names_the_key_and_the_value(case: Case):
    defaults = getattr(load_params(REPO_PARAMS), case.section)
    with pytest.raises(ConfigError) as refused:
        override(defaults, {case.key: case.value}, origin=f"{case.section} parameters")
    assert str(refused.value).startswith(f"{case.section} parameters: {case.key} must be ")
    assert str(refused.value).endswith(f", got {case.value!r}")


def test_every_problem_of_a_file_or_a_command_line_is_in_its_one_line(tmp_path):
    def spoil(raw):
        raw["train"].update(val_split="grupped", C=-1)
        raw["deploy"]["analysis"]["window"] = 0.5
        raw["ingest"]["seed"] = "zero"

    path = write_params(tmp_path, spoil)
    with pytest.raises(ConfigError) as every:
        load_params(path)
    assert str(every.value) == (
        f"{path}: ingest.seed must be a whole number, got 'zero';"
        " train.val_split must be grouped or random, got 'grupped';"
        " train.C must be over 0, got -1.0; deploy.analysis.window must be at least 1, got 0.5"
    )
    deploy = load_params(REPO_PARAMS).deploy
    changes = {"preview_replicas": "0", "analysis.interval": "0", "analysis.window": "0.5"}
    with pytest.raises(ConfigError) as flags:
        override(deploy, changes, origin="deploy parameters")
    assert str(flags.value) == (
        "deploy parameters: preview_replicas must be at least 1, got 0;"
        " analysis.interval must be over 0, got 0.0; analysis.window must be at least 1, got 0.5"
    )


def test_rules_across_fields_are_refused_through_both_doors(tmp_path):
    path = write_params(tmp_path, lambda raw: raw["validate"].update(min_review_chars=30_000))
    with pytest.raises(ConfigError) as from_file:
        load_params(path)
    why = "must be at most max_review_chars (20000), got 30000"
    assert str(from_file.value) == f"{path}: validate.min_review_chars {why}"
    defaults = load_params(REPO_PARAMS).validate
    with pytest.raises(ConfigError) as from_flags:
        override(defaults, {"max_review_chars": "5"}, origin="validate parameters")
    assert str(from_flags.value) == (
        "validate parameters: min_review_chars must be at most max_review_chars (5), got 10"
    )


def test_a_section_built_in_code_is_held_to_its_declarations_too():
    """dataclasses.replace (how tests and deploy adjust a section) cannot make a bad one either."""
    cfg = load_params(REPO_PARAMS).train
    with pytest.raises(ConfigError, match="val_split must be grouped or random, got 'movies'"):
        dataclasses.replace(cfg, val_split="movies")
    with pytest.raises(ConfigError, match=r"C must be over 0, got 'lots'"):
        dataclasses.replace(cfg, C="lots")
    with pytest.raises(ConfigError, match="min_review_chars must be at most max_review_chars"):
        dataclasses.replace(load_params(REPO_PARAMS).validate, max_review_chars=1)
    assert issubclass(ValidateConfig, schema.Section)
    assert all(issubclass(cls, schema.Section) for cls in SECTION_OF)


def test_an_empty_list_is_written_as_nothing_on_the_command_line():
    score = load_params(REPO_PARAMS).score
    assert override(score, {"spark.conf": ""}).spark.conf == ()
    with pytest.raises(
        ConfigError, match=r"views must be a list of nb, tfidf or nb_tfidf, non-empty"
    ):
        override(load_params(REPO_PARAMS).train, {"views": ""})


def test_the_recipe_choices_are_the_ones_the_model_accepts():
    """config.py and the model take the choices from one place (pyfunc/contract.py)."""
    assert typing.get_args(config.View) == VIEWS
    assert typing.get_args(config.Classifier) == CLASSIFIERS
    assert typing.get_args(config.Weighting) == WEIGHTINGS
    assert typing.get_args(config.Calibration) == ("best", *CALIBRATION_METHODS, "none")

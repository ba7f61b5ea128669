import pytest

from steps.main import route_overrides
from steps.stage.errors import ConfigError


def test_bare_keys_go_to_the_stage_that_owns_them():
    routed = route_overrides(["--source", "data/x.csv", "--test_size", "0.3"])
    assert routed == {"ingest": {"source": "data/x.csv", "test_size": "0.3"}}


def test_qualified_keys_pick_one_stage():
    assert route_overrides(["--ingest.seed", "3"]) == {"ingest": {"seed": "3"}}


def test_unknown_ambiguous_and_malformed_keys_are_errors():
    with pytest.raises(ConfigError, match="unknown parameter 'sourse'"):
        route_overrides(["--sourse", "x"])
    with pytest.raises(ConfigError, match="unknown parameter 'validate.source'"):
        route_overrides(["--validate.source", "x"])
    with pytest.raises(ConfigError, match="has no value"):
        route_overrides(["--source"])
    with pytest.raises(ConfigError, match="expected --KEY VALUE"):
        route_overrides(["source", "x"])

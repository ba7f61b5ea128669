"""Run Great Expectations suites (reviewed JSON under expectations/) on in-memory DataFrames.

GX runs in an ephemeral context: nothing is written except the Data Docs site, whose folder the
caller chooses, so no `gx/` project folder appears in the repository. GX is imported inside the
functions (the import takes seconds); `steps.validation.expectations` registers the custom
expectations the suites refer to.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from steps.stage.errors import StageError, one_line
from steps.stage.files import read_json

log = logging.getLogger(__name__)

DOCS_SITE = "local_site"
# Enough unexpected values for a readable report without copying whole splits into the JSON.
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 20}


@dataclass(frozen=True)
class Batch:
    """One DataFrame to validate against one suite; `name` labels it in the report (e.g. train)."""

    name: str
    frame: pd.DataFrame
    suite: Path


def load_suite_json(path: Path) -> dict:
    """The suite file as a dict, or a StageError naming the file."""
    path = Path(path)
    raw = read_json(path, "expectation suite", "check params.yaml validate.* and expectations/")
    if not isinstance(raw.get("expectations"), list):
        raise StageError(f"{path}: expected a JSON object with a list of 'expectations'")
    return raw


def run_suites(
    batches: Sequence[Batch],
    parameters: Mapping[str, Any],
    docs_dir: Path,
    run_name: str = "validate",
) -> list[dict]:
    """Validate each batch against its suite; return the GX results as JSON dicts, in order.

    `parameters` fills the suites' `{"$PARAMETER": ...}` bounds. The Data Docs site (index.html
    plus a page per suite and per result) is built into `docs_dir`.
    """
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    import steps.validation.expectations  # noqa: F401  (registers the custom expectations by name)

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        data_docs_sites={
            DOCS_SITE: {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(Path(docs_dir).resolve()),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        },
        progress_bars=ProgressBarsConfig(globally=False),
        analytics_enabled=False,
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    source = context.data_sources.add_pandas("imdb")
    suites: dict[Path, Any] = {}
    results = []
    for batch in batches:
        if batch.suite not in suites:
            suites[batch.suite] = context.suites.add(_build_suite(batch.suite))
        definition = source.add_dataframe_asset(batch.name).add_batch_definition_whole_dataframe(
            batch.name
        )
        validation = context.validation_definitions.add(
            gx.ValidationDefinition(name=batch.name, data=definition, suite=suites[batch.suite])
        )
        result = validation.run(
            batch_parameters={"dataframe": batch.frame},
            expectation_parameters=dict(parameters),
            result_format=RESULT_FORMAT,
            run_id=RunIdentifier(run_name=run_name),
        )
        log.info(
            "%s: %d of %d expectations met",
            batch.name,
            result.statistics["successful_expectations"],
            result.statistics["evaluated_expectations"],
        )
        results.append(result.to_json_dict())
    context.build_data_docs(site_names=[DOCS_SITE])
    _prune_unused_static(Path(docs_dir))
    return results


def _prune_unused_static(site: Path) -> None:
    """Drop the site's bundled assets no page refers to (4 MB of fonts and tutorial GIFs)."""
    pages = "\n".join(page.read_text(encoding="utf-8") for page in site.rglob("*.html"))
    static = site / "static"
    for path in sorted(static.rglob("*"), reverse=True):  # files before their folders
        if path.is_file() and path.name not in pages:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def _build_suite(path: Path):
    """An ExpectationSuite from its JSON file; any expectation GX rejects is a StageError.

    (`ExpectationSuite(**raw)` would log and silently drop an invalid expectation.)
    """
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    raw = load_suite_json(path)
    expectations = []
    for number, item in enumerate(raw["expectations"], start=1):
        try:
            expectations.append(ExpectationConfiguration(**item).to_domain_obj())
        except Exception as exc:  # GX raises several types for a bad expectation
            kind = item.get("type", "?") if isinstance(item, dict) else "?"
            message = one_line(exc)
            raise StageError(
                f"{path}: expectation #{number} ({kind}) is invalid: {message}"
            ) from None
    return gx.ExpectationSuite(
        name=raw.get("name") or Path(path).stem,
        expectations=expectations,
        meta=raw.get("meta"),
        notes=raw.get("notes"),
    )

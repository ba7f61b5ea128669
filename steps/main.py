"""`main` entry point: run every stage in order as child runs of one parent run.

`python -m steps.main [--params FILE] [--KEY VALUE ...]` where KEY is a params.yaml field, either
bare when only one stage has it (`--source`, `--C`) or qualified (`--train.seed`). Each override
goes to the stage that owns it. Caching is the stages' own business (ingest reuses a verified
download, validate a matching marker); main just runs them.

Before any stage starts, main checks what it can: the params file, the keys, and that no value it
would pass on carries a credential (MLflow would log it; steps/stage/chain.py). `--check` does only
that and exits (`make run` does it before `mlflow run` logs anything). The whole pipeline holds the
pipeline lock (steps/stage/lock.py): a second pipeline in the same checkout waits or refuses.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping

import mlflow
from mlflow.tracking import MlflowClient

from steps.stage import chain, cli, lock
from steps.stage.config import Params, TrainConfig, load_params, section_fields
from steps.stage.errors import ConfigError, CredentialRefused, StageError
from steps.stage.paths import PARAMS_FILE
from steps.stage.secrets import find_password, shown
from steps.tracking import registry, store

log = logging.getLogger(__name__)


def route_overrides(pairs: list[str]) -> dict[str, dict[str, str]]:
    """Turn `--KEY VALUE` pairs into {stage: {field: value}}; unknown or ambiguous keys fail."""
    owners: dict[str, list[str]] = {}
    for section, cls in section_fields(Params).items():
        for name in section_fields(cls):
            owners.setdefault(name, []).append(section)
    routed: dict[str, dict[str, str]] = {}
    if len(pairs) % 2:
        raise ConfigError(f"main parameters: {pairs[-1]!r} has no value")
    for flag, value in zip(pairs[::2], pairs[1::2], strict=True):
        if not flag.startswith("--"):
            raise ConfigError(f"main parameters: expected --KEY VALUE, got {flag!r}")
        key = flag[2:]
        section, _, name = key.rpartition(".")
        if section:
            if section not in owners.get(name, []):
                raise ConfigError(f"main parameters: unknown parameter {key!r}")
            sections = [section]
        else:
            sections = owners.get(name, [])
            if not sections:
                raise ConfigError(f"main parameters: unknown parameter {key!r}")
            if len(sections) > 1:
                choices = " or ".join(f"{s}.{name}" for s in sections)
                raise ConfigError(f"main parameters: {key!r} is ambiguous, use {choices}")
        for owner in sections:
            routed.setdefault(owner, {})[name] = value
    return routed


def check(params_file: str, overrides: dict[str, dict[str, str]]) -> Params:
    """What can be checked before any stage starts: the params file, the stages overridden,
    and that no value that would be passed on or logged carries a credential."""
    params = load_params(params_file)
    unknown_stages = set(overrides) - set(chain.PIPELINE)
    if unknown_stages:
        raise ConfigError(
            f"main parameters: {', '.join(sorted(unknown_stages))} is not a stage of main"
        )
    for stage in chain.PIPELINE:
        chain.refuse_credentials(stage, overrides.get(stage, {}))
    if found := find_password(params.ingest.source):
        raise CredentialRefused(
            f"{params_file}: ingest.source {shown(params.ingest.source)}: a password in the"
            f" source is refused ({found}): set the variable ingest.sql_password_env names"
        )
    return params


def run(params_file: str, overrides: dict[str, dict[str, str]]) -> dict[str, str]:
    """Run every stage of the pipeline in order under one parent run, then give the parent run
    the figures one row of a comparison needs; returns the child run id of each stage."""
    check(params_file, overrides)
    children = {}
    with lock.hold("main"), store.stage_run("main"):
        for stage in chain.PIPELINE:
            parameters = {"params": params_file, **overrides.get(stage, {})}
            children[stage] = chain.run_entry_point(stage, parameters)
        roll_up(children)
    log.info("pipeline finished: %s", " -> ".join(chain.PIPELINE))
    return children


# What the main run carries of its children: the recipe and data, validation and test figures,
# the behavioural pass rates, and what was registered and decided.
ROLLED_UP_METRICS = ("val_", "test_", "behavioural_", "train_seconds", "model_size_mb")
ROLLED_UP_TAGS = {
    "train": (store.DATA_TAG, store.SOURCE_TAG),
    "register": (store.REGISTERED_VERSION_TAG,),
    "promote": (registry.DECISION_TAG,),
}


def roll_up(children: Mapping[str, str], client: MlflowClient | None = None) -> None:
    """Copy the children's key params, metrics and tags onto the active (main) run."""
    client = client or MlflowClient()
    found = {stage: client.get_run(run_id) for stage, run_id in children.items()}
    recipe = section_fields(TrainConfig)
    params = {k: v for k, v in found["train"].data.params.items() if k in recipe}
    store.log_params(params)
    metrics = {
        k: v
        for stage in ("train", "evaluate")
        for k, v in found[stage].data.metrics.items()
        if k.startswith(ROLLED_UP_METRICS)
    }
    mlflow.log_metrics(metrics)
    tags = {
        key: found[stage].data.tags[key]
        for stage, keys in ROLLED_UP_TAGS.items()
        for key in keys
        if key in found[stage].data.tags
    }
    mlflow.set_tags(tags)


def main(argv: list[str] | None = None) -> int:
    cli.setup_logging()
    keys = "\n".join(
        f"  {stage}: {', '.join(section_fields(section_fields(Params)[stage]))}"
        for stage in chain.PIPELINE
    )
    parser = argparse.ArgumentParser(
        prog="python -m steps.main",
        description="Run the whole pipeline: " + " -> ".join(chain.PIPELINE),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Any other --KEY VALUE overrides params.yaml for the stage that owns KEY (a key"
        " two stages share as --STAGE.KEY); `python -m steps.<stage> --help` says what each"
        f" key does and its current value:\n{keys}",
    )
    parser.add_argument("--params", default=str(PARAMS_FILE), help="parameters file")
    parser.add_argument(
        "--check", action="store_true",
        help="only check the params file and the overrides (keys, no credentials), run nothing",
    )  # fmt: skip
    args, rest = parser.parse_known_args(argv)
    try:
        load_params(args.params)  # fail on a bad params file before any stage starts
        overrides = route_overrides(rest)
        if args.check:
            check(args.params, overrides)
            print(f"main: {args.params} and the overrides are fine")
            return 0
        store.configure()
        run(args.params, overrides)
    except StageError as exc:
        cli.report("main", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`main` entry point: run every stage in order as child runs of one parent run.

`python -m steps.main [--params FILE] [--KEY VALUE ...]` where KEY is a params.yaml field, either
bare when only one stage has it (`--source`, `--C`) or qualified (`--train.seed`). Each override
goes to the stage that owns it. Caching is the stages' own business (ingest reuses a verified
download, validate a matching marker); main just runs them.

Before any stage starts (and before the tracking store is touched), main checks everything a stage
would check of its parameters: the params file, each stage's overrides applied exactly as that
stage applies them (keys, types, choices, bounds), and that no value it would pass on carries a
credential (MLflow would log it; steps/stage/chain.py). `--check` does only that and exits (`make
run` does it before `mlflow run` logs anything). The whole pipeline holds the pipeline lock
(steps/stage/lock.py): a second pipeline in the same checkout waits or refuses.
At the end main prints each stage's wall and CPU seconds (the stage's process and all it started),
and logs them on the main run as `stage_seconds_<stage>` and `stage_cpu_seconds_<stage>`.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import resource
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass

import mlflow
from mlflow.tracking import MlflowClient

from steps.entry import cli
from steps.stage import chain, lock
from steps.stage.coercion import override, unknown_key
from steps.stage.config import Params, TrainConfig, load_params
from steps.stage.errors import ConfigError, CredentialRefused, StageError
from steps.stage.paths import PARAMS_FILE
from steps.stage.schema import flat_fields, section_fields
from steps.stage.secrets import find_password, shown
from steps.tracking import champion, registry, runs, store

log = logging.getLogger(__name__)


def route_overrides(pairs: list[str]) -> dict[str, dict[str, str]]:
    """Turn `--KEY VALUE` pairs into {stage: {field: value}}; unknown or ambiguous keys fail.

    KEY is a key of a pipeline stage's params.yaml section, bare when only one stage has it or
    qualified (`train.seed`); a nested section's keys carry their dots (`spark.master`)."""
    keys = {stage: flat_fields(section_fields(Params)[stage]) for stage in chain.PIPELINE}
    routed: dict[str, dict[str, str]] = {}
    # `--key=value` (make's P="key=value") is the pair `--key value`.
    pairs = [part for arg in pairs for part in _split_pair(arg)]
    if len(pairs) % 2:
        raise ConfigError(f"main parameters: {pairs[-1]!r} has no value")
    for flag, value in zip(pairs[::2], pairs[1::2], strict=True):
        if not flag.startswith("--"):
            raise ConfigError(f"main parameters: expected --KEY VALUE, got {flag!r}")
        key = flag[2:]
        section, _, name = key.partition(".")
        if section in keys:
            if name not in keys[section]:
                raise ConfigError(
                    f"main parameters: {unknown_key('parameter', key, keys[section], section)}"
                )
            routed.setdefault(section, {})[name] = value
            continue
        owners = [stage for stage in chain.PIPELINE if key in keys[stage]]
        if not owners:
            raise ConfigError(f"main parameters: {_unknown(key, keys)}")
        if len(owners) > 1:
            choices = " or ".join(f"{s}.{key}" for s in owners)
            raise ConfigError(f"main parameters: {key!r} is ambiguous, use {choices}")
        routed.setdefault(owners[0], {})[key] = value
    return routed


def _split_pair(arg: str) -> list[str]:
    if arg.startswith("--") and "=" in arg:
        return arg.split("=", 1)
    return [arg]


def _unknown(key: str, keys: Mapping[str, Mapping[str, object]]) -> str:
    """An unknown bare key: the known keys of the stage that has the closest one (else all)."""
    owner = {name: stage for stage in reversed(chain.PIPELINE) for name in keys[stage]}
    close = difflib.get_close_matches(key, owner, n=1)
    if close:
        return unknown_key("parameter", key, keys[owner[close[0]]], owner[close[0]])
    return unknown_key("parameter", key, owner)


def check(params_file: str, overrides: dict[str, dict[str, str]]) -> Params:
    """What each stage would refuse, before any stage starts: the params file, each stage's
    overrides applied as the stage applies them, and no value that would be passed on or logged
    carrying a credential."""
    params = load_params(params_file)
    unknown_stages = set(overrides) - set(chain.PIPELINE)
    if unknown_stages:
        raise ConfigError(
            f"main parameters: {', '.join(sorted(unknown_stages))} is not a stage of main"
        )
    refused = []
    for stage in chain.PIPELINE:
        chain.refuse_credentials(stage, overrides.get(stage, {}))
        try:  # the same call, with the same origin, as the stage's command line (entry/cli.py)
            override(getattr(params, stage), overrides.get(stage, {}), f"{stage} parameters")
        except ConfigError as exc:
            refused.append(str(exc))
    if refused:
        raise ConfigError("; ".join(refused))
    if found := find_password(params.ingest.source):
        raise CredentialRefused(
            f"{params_file}: ingest.source {shown(params.ingest.source)}: a password in the"
            f" source is refused ({found}): set the variable ingest.sql_password_env names"
        )
    return params


@dataclass(frozen=True)
class StageTime:
    """How long one stage of a pipeline run took: its child run, wall and CPU seconds."""

    stage: str
    run_id: str
    wall_seconds: float
    cpu_seconds: float  # user + system of the stage's process and every process it waited for


def run(params_file: str, overrides: dict[str, dict[str, str]]) -> list[StageTime]:
    """Run every stage of the pipeline in order under one parent run, then give the parent run
    the figures one row of a comparison needs and each stage's times; returns those times."""
    check(params_file, overrides)
    times = []
    with lock.hold("main"), store.stage_run("main"):
        for number, stage in enumerate(chain.PIPELINE, start=1):
            log.info("[%d/%d] %s", number, len(chain.PIPELINE), stage)
            parameters = {"params": params_file, **overrides.get(stage, {})}
            wall, cpu = time.perf_counter(), _children_cpu_seconds()
            run_id = chain.run_entry_point(stage, parameters)
            times.append(
                StageTime(stage, run_id, time.perf_counter() - wall, _children_cpu_seconds() - cpu)
            )
        roll_up({t.stage: t.run_id for t in times})
        mlflow.log_metrics(
            {
                f"stage_{kind}_{t.stage}": value
                for t in times
                for kind, value in (("seconds", t.wall_seconds), ("cpu_seconds", t.cpu_seconds))
            }
        )
    log.info("pipeline finished: %s", " -> ".join(chain.PIPELINE))
    return times


def _children_cpu_seconds() -> float:
    """CPU seconds of the child processes that ended and were waited for (the stages run as
    `mlflow run` subprocesses, so this is where their time shows)."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def time_table(times: list[StageTime]) -> str:
    """Each stage's wall and CPU seconds and their total, as a Markdown table."""
    rows = [(t.stage, t.wall_seconds, t.cpu_seconds) for t in times]
    rows.append(("total", sum(r[1] for r in rows), sum(r[2] for r in rows)))
    lines = ["| stage | wall s | CPU s |", "| --- | ---: | ---: |"]
    lines += [f"| {stage} | {wall:.1f} | {cpu:.1f} |" for stage, wall, cpu in rows]
    return "\n".join(lines)


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
        f"  {stage}: {', '.join(flat_fields(section_fields(Params)[stage]))}"
        for stage in chain.PIPELINE
    )
    parser = cli.ArgumentParser(
        origin="main parameters",
        prog="python -m steps.main",
        description="Run the whole pipeline: " + " -> ".join(chain.PIPELINE),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Any other --KEY VALUE overrides params.yaml for the stage that owns KEY (a key"
        " two stages share as --STAGE.KEY); `python -m steps.<stage> --help` says what each"
        f" key does, what it accepts and its current value:\n{keys}",
    )
    parser.add_argument("--params", default=str(PARAMS_FILE), help="parameters file")
    parser.add_argument(
        "--check", action="store_true",
        help="only check the params file and the overrides as each stage would, run nothing",
    )  # fmt: skip
    try:
        args, rest = parser.parse_known_args(argv)
        overrides = route_overrides(rest)
        check(args.params, overrides)  # before the tracking store is touched
        if args.check:
            print(f"main: {args.params} and the overrides are fine")
            return 0
        experiment_id = store.configure()
        times = run(args.params, overrides)
        params = load_params(args.params)
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"stage times (load average {load}):\n{time_table(times)}")
        print(f"runs: {runs.ui_link(mlflow.get_tracking_uri(), experiment_id)} (make ui)")
        # The last line says what serves, or the exact command that promotes by hand.
        print(champion.status(params.register.model_name))
    except StageError as exc:
        cli.report("main", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

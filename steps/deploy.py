"""`deploy` entry point: roll the registry's `champion` out to Kubernetes, blue/green.

    python -m steps.deploy [--dry-run] [--image IMAGE] [--force]   # reconcile once
    python -m steps.deploy --rollback                              # live Service back, at once
    python -m steps.deploy --watch [--max-iterations N]            # follow `champion`
    python -m steps.deploy --watch --heartbeat /tmp/heartbeat      # ... for a liveness probe

(`mlflow run . -e deploy -P dry_run=true`, `-P rollback=true`, `-P image=...` reach the same
flags.) The rollout package does the work: the pure planner (steps/rollout/plan.py), the
Kubernetes adapter (kube.py, slots.py), the image build (image.py), the smoke test (smoke.py)
and the executor (deployer.py), which reports what it does as events; this module shows them,
and runs the watch loop. See k8s/README.md for the runbook.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

from mlflow.tracking import MlflowClient

from steps.entry import cli
from steps.rollout.actions import ClusterState, Plan
from steps.rollout.deployer import Deployer, Event, Kind, Report
from steps.rollout.image import build_and_push
from steps.rollout.kube import Kube, NoKubeConfig
from steps.rollout.manifests import ManifestKube
from steps.rollout.plan import serving
from steps.stage.config import DeployConfig, Params
from steps.stage.errors import ConfigError, StageError, error_line
from steps.stage.paths import K8S_DIR
from steps.tracking import store

log = logging.getLogger(__name__)


def say(event: Event) -> None:
    """Show one of deploy's events: steps as log lines, a failed reconcile of the watch as an
    error line and warnings on stderr, the rest (plan, undo, done) on stdout."""
    match event.kind:
        case Kind.STEP:
            log.info("%s", event.text)
        case Kind.ERROR:
            print(error_line("deploy", event.text), file=sys.stderr, flush=True)
        case Kind.WARNING:
            print(f"warning: {event.text}", file=sys.stderr, flush=True)
        case _:
            print(event.text, flush=True)


def run(
    deployer: Deployer,
    *,
    dry_run: bool = False,
    rollback: bool = False,
    watch: bool = False,
    image: str | None = None,
    force: bool = False,
    max_iterations: int | None = None,
    report: Report = say,
) -> Plan | None:
    """Reconcile once (the default), roll back, or watch the champion alias; what happens goes
    to `report` as it happens.

    Returns the plan carried out (or only shown, with `dry_run`); None after a watch.
    """
    check_options(rollback=rollback, watch=watch, image=image)
    if rollback:
        return roll_back(deployer, dry_run=dry_run, report=report)
    if watch and not dry_run:
        error = watch_champion(deployer, max_iterations=max_iterations, image=image, report=report)
        if error is not None:
            raise StageError(f"the last reconcile failed ({error})")
        return None
    return reconcile(deployer, image=image, dry_run=dry_run, force=force, report=report)


def reconcile(
    deployer: Deployer,
    *,
    image: str | None = None,
    dry_run: bool = False,
    force: bool = False,
    report: Report = say,
) -> Plan:
    """Plan the champion's rollout, show the plan and (unless dry_run) carry it out."""
    plan, cluster = deployer.plan(image=image, force=force)
    return carry_out(deployer, plan, cluster, dry_run=dry_run, report=report)


def roll_back(deployer: Deployer, *, dry_run: bool = False, report: Report = say) -> Plan:
    """Switch the live Service back to the idle slot at once."""
    plan, cluster = deployer.rollback_plan()
    return carry_out(deployer, plan, cluster, dry_run=dry_run, report=report)


def carry_out(
    deployer: Deployer, plan: Plan, cluster: ClusterState, *, dry_run: bool, report: Report
) -> Plan:
    """Show the plan, run it (unless dry_run or empty), then say what serves."""
    report(Event(Kind.PLAN, plan.render()))
    if dry_run or not plan.actions:
        return plan
    after = deployer.execute(plan, cluster)
    report(Event(Kind.DONE, f"done: {serving(after)}"))
    return plan


def watch_champion(
    deployer: Deployer,
    *,
    max_iterations: int | None = None,
    image: str | None = None,
    report: Report = say,
) -> StageError | None:
    """Poll the registry; reconcile whenever `champion` names another version.

    A failed reconcile is reported and not retried until the champion moves again (or the
    watcher restarts). Returns the last reconcile's error, if it failed.
    """
    last: object = object()  # no champion seen yet
    error: StageError | None = None
    iteration = 0
    while True:
        iteration += 1
        try:
            champion = deployer.champion()
        except StageError as exc:
            report(Event(Kind.ERROR, str(exc)))
            champion = last  # registry unreachable: try again next time
        if champion != last:
            log.info("champion is %s: reconciling", champion)
            try:
                reconcile(deployer, image=image, report=report)
                error = None
            except StageError as exc:
                report(Event(Kind.ERROR, str(exc)))
                log.warning("champion %s not deployed; waiting for it to move", champion)
                error = exc
            last = champion
        if max_iterations and iteration >= max_iterations:
            return error
        deployer.sleep(deployer.cfg.watch_interval)


def heartbeat(path: Path, sleep: Callable[[float], None] = time.sleep) -> Callable[[float], None]:
    """A `sleep` that first touches `path`: the watcher sleeps between registry polls and while
    a rollout comes up, so the file's age tells a liveness probe whether the loop still runs."""
    path = Path(path)

    def beat_then_sleep(seconds: float) -> None:
        path.touch()
        sleep(seconds)

    path.touch()
    return beat_then_sleep


def check_options(*, rollback: bool, watch: bool, image: str | None) -> None:
    """Refuse combinations of what-to-do options that mean nothing."""
    if sum((rollback, watch)) > 1 or (rollback and image):
        raise ConfigError("deploy parameters: --rollback goes alone (no --watch, no --image)")
    if image is not None and not image.strip():
        raise ConfigError("deploy parameters: --image is empty")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("what to do (each also as `mlflow run -P name=value`)")
    cli.add_flag(group, "dry_run", "print the plan and touch nothing")
    cli.add_flag(group, "rollback", "switch the live Service back to the idle slot at once")
    cli.add_flag(group, "watch", "keep polling the registry and reconcile when `champion` moves")
    cli.add_flag(group, "force", "deploy the champion even if a rollback put it on hold")
    group.add_argument(
        "--image", default=None, help="deploy this image instead of building one (skips build)"
    )
    group.add_argument(
        "--max-iterations", "--max_iterations", dest="max_iterations", type=int, default=None,
        metavar="N", help="with --watch: stop after N registry polls",
    )  # fmt: skip
    group.add_argument(
        "--heartbeat", default=None, metavar="FILE",
        help="touch FILE at start and before every wait (k8s/deployer's liveness probe reads its"
        " age)",
    )  # fmt: skip


def _command(params: Params, cfg: DeployConfig, args: argparse.Namespace) -> None:
    check_options(rollback=args.rollback, watch=args.watch, image=args.image)  # before connecting
    kube = connect(cfg, dry_run=args.dry_run)
    sleep = heartbeat(Path(args.heartbeat)) if args.heartbeat else time.sleep
    builder = functools.partial(build_and_push, cfg=params.image)
    deployer = Deployer(
        cfg, params.register.model_name, kube, MlflowClient(), builder, sleep=sleep, report=say
    )
    log.info("cluster %s, namespace %s, model %s", kube.server, cfg.namespace, deployer.model_name)
    options = {
        "dry_run": args.dry_run, "rollback": args.rollback, "watch": args.watch,
        "image": args.image, "force": args.force, "max_iterations": args.max_iterations,
    }  # fmt: skip
    if args.dry_run:  # a plan that is only printed changes nothing worth a run
        run(deployer, **options)
        if isinstance(kube, ManifestKube):
            print(kube.assumptions(), flush=True)
        return
    with store.stage_run("deploy"):
        store.log_config(cfg)
        run(deployer, **options)


def connect(cfg: DeployConfig, dry_run: bool) -> Kube | ManifestKube:
    """The cluster; for a dry run without any Kubernetes configuration, the manifests in k8s/
    (what a first rollout would do, its assumptions printed under the plan)."""
    try:
        return Kube.connect(cfg.namespace, cfg.context, cfg.request_timeout)
    except NoKubeConfig as exc:
        if not dry_run:
            raise
        try:
            return ManifestKube(K8S_DIR, cfg.namespace, why=str(exc).split(":", 1)[0])
        except StageError as missing:
            raise NoKubeConfig(f"{exc}; and no manifests to plan from: {missing}") from None


def main(argv: list[str] | None = None) -> int:
    return cli.main("deploy", argv, _command, add_arguments)


if __name__ == "__main__":
    sys.exit(main())

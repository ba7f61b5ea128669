"""`deploy` entry point: roll the registry's `champion` out to Kubernetes, blue/green.

    python -m steps.deploy [--dry-run] [--image IMAGE] [--force]   # reconcile once
    python -m steps.deploy --rollback                              # live Service back, at once
    python -m steps.deploy --watch [--max-iterations N]            # follow `champion`

(`mlflow run . -e deploy -P dry_run=true`, `-P rollback=true`, `-P image=...` reach the same
flags.) One reconcile reads both Deployments and Services (steps/kube.py) and the registry,
asks the pure planner (steps/deploy_plan.py) for the ordered actions, prints them and runs
them: build and push the image, roll the idle slot, wait for it, smoke-test it through the
preview Service, switch the live Service, record the slots in the registry (aliases `blue` /
`green`, tag `deploy.live_slot`). Any failure stops there with one line naming the step; the
live Service is only ever patched after the idle slot passed its smoke test.

The smoke test goes through the API server's service proxy rather than a URL in params: it
needs no Ingress, port-forward or network route to the pods, it uses the credentials that
already authorise the deployment, and it reaches exactly the pods the preview Service selects.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import shlex
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from steps import cli, deploy_plan, registry, tracking
from steps.config import DeployConfig, Params
from steps.deploy_plan import (
    BuildImage,
    CheckReady,
    ClusterState,
    Plan,
    PlanError,
    PointPreview,
    Record,
    RegistryState,
    RollSlot,
    Slot,
    SmokeTest,
    SwitchLive,
    WaitReady,
)
from steps.errors import ConfigError, StageError
from steps.kube import Kube

log = logging.getLogger(__name__)

SLOT_LABEL = "slot"  # the label both Services select on; its value is a slot name
VERSION_LABEL = "model-version"  # on pods, for `kubectl get pods -L model-version`
VERSION_ANNOTATION = "imdb-sentiment/model-version"  # what a slot runs: deploy's record of it
MODEL_URI_ANNOTATION = "imdb-sentiment/model-uri"
WORKERS_ENV = "MLFLOW_MODELS_WORKERS"
LIVE_SLOT_TAG = "deploy.live_slot"
HELD_TAG = "deploy.rolled_back_version"
DOCKER = "docker"
OUTPUT_TAIL_LINES = 20  # of a failed build's output, kept to find the line that says why

Builder = Callable[[str, str], None]


def deployment_name(cfg: DeployConfig, slot: str) -> str:
    return f"{cfg.app}-{slot}"


def preview_service(cfg: DeployConfig) -> str:
    return f"{cfg.app}-preview"


def image_ref(cfg: DeployConfig, version: int) -> str:
    """The image `mlflow models build-docker` makes for a model version, with its registry."""
    repository = cfg.image_repository
    if cfg.image_registry:
        repository = f"{cfg.image_registry.rstrip('/')}/{repository}"
    return f"{repository}:{version}"


def model_uri(model_name: str, version: int) -> str:
    return f"models:/{model_name}/{version}"


# -- image ------------------------------------------------------------------------------------


def build_command(uri: str, image: str) -> list[str]:
    """`mlflow models build-docker` for one model version (the image serves on port 8080)."""
    return [
        sys.executable, "-m", "mlflow", "models", "build-docker",
        "-m", uri, "-n", image, "--env-manager", "local",
    ]  # fmt: skip


def build_and_push(uri: str, image: str) -> None:
    """Build the serving image of a model version with MLflow, then push it."""
    # The child resolves models:/ against the same store (configure() may not have set the env).
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow.get_tracking_uri()}
    _run(build_command(uri, image), env, "mlflow models build-docker")
    _run([DOCKER, "push", image], env, "docker push")


def _run(command: list[str], env: Mapping[str, str], what: str) -> None:
    """Run a command, echoing its output; raise with the line that says why it failed."""
    log.info("running %s", shlex.join(command))
    tail: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)
    try:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(env),
            text=True, errors="replace",
        )  # fmt: skip
    except FileNotFoundError:
        raise StageError(
            f"{what}: {command[0]!r} not found on PATH (building needs a Docker engine;"
            " --image IMAGE skips the build)"
        ) from None
    with process:
        for line in process.stdout:
            sys.stderr.write(f"  | {line}")
            if line.strip():
                tail.append(line.strip())
    if process.returncode:
        why = tail[-1] if tail else "no output"
        raise StageError(
            f"{what} exited with code {process.returncode}: {why}"
            " (is a Docker engine running? --image IMAGE skips the build)"
        )


# -- smoke test -------------------------------------------------------------------------------


def prediction_labels(predictions: Any, field: str) -> list[Any]:
    """The label of each prediction in a /invocations answer's `predictions`."""
    if isinstance(predictions, dict):  # column-oriented output ({"label": [...], ...})
        if field not in predictions:
            raise StageError(f"predictions have no {field!r} field (got {sorted(predictions)})")
        return list(predictions[field])
    labels = []
    for item in predictions:
        if isinstance(item, dict):
            if field not in item:
                raise StageError(
                    f"prediction has no {field!r} field (got {sorted(item)});"
                    " set deploy.label_field"
                )
            labels.append(item[field])
        else:
            labels.append(item)
    return labels


def in_process_predictions(uri: str, frame: Any) -> Any:
    """What the model says in-process, as the scoring server would put it in JSON."""
    from mlflow.pyfunc.scoring_server import predictions_to_json

    raw = mlflow.pyfunc.load_model(uri).predict(frame)
    buffer = io.StringIO()
    predictions_to_json(raw, buffer)
    return json.loads(buffer.getvalue())["predictions"]


# -- the deployer -----------------------------------------------------------------------------


class Deployer:
    """Reads state, plans and runs plans against one cluster namespace and one registry."""

    def __init__(
        self,
        cfg: DeployConfig,
        model_name: str,
        kube: Kube,
        client: MlflowClient,
        builder: Builder = build_and_push,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.model_name = model_name
        self.kube = kube
        self.client = client
        self.builder = builder
        self.sleep = sleep
        self.clock = clock
        self._plans_logged = 0

    # state

    def cluster(self) -> ClusterState:
        """Both slots and both Services, read from the API server."""
        slots = {}
        for slot in deploy_plan.SLOTS:
            name = deployment_name(self.cfg, slot)
            rollout = self.kube.deployment(name)
            if self.cfg.container not in rollout.images:
                raise StageError(
                    f"deployment {name} has no container {self.cfg.container!r}"
                    f" (has {', '.join(rollout.images) or 'none'}); check deploy.container"
                )
            slots[slot] = Slot(
                image=rollout.images[self.cfg.container],
                version=_version(rollout.annotations.get(VERSION_ANNOTATION), name),
                ready=rollout.ready,
            )
        live = self._selected_slot(self.cfg.app, required=True)
        preview = self._selected_slot(preview_service(self.cfg), required=False)
        return ClusterState(live=live, preview=preview, slots=slots)

    def registry(self) -> RegistryState:
        """The champion and what deploy last recorded on the registered model."""
        with self._registry("read registered model"):
            model = self.client.get_registered_model(self.model_name)
        aliases = {a: int(v) for a, v in (model.aliases or {}).items() if a in deploy_plan.SLOTS}
        held = model.tags.get(HELD_TAG)
        return RegistryState(
            champion=self.champion(),
            aliases=aliases,
            live_slot=model.tags.get(LIVE_SLOT_TAG),
            held=int(held) if held else None,
        )

    def champion(self) -> int | None:
        """The version the `champion` alias names, or None."""
        version = registry.version_by_alias(self.model_name, registry.CHAMPION_ALIAS, self.client)
        return int(version.version) if version else None

    # plans

    def plan(self, image: str | None = None, force: bool = False) -> tuple[Plan, ClusterState]:
        cluster, registry = self.cluster(), self.registry()
        target = image
        if target is None and registry.champion is not None:
            target = image_ref(self.cfg, registry.champion)
        try:
            plan = deploy_plan.plan_deploy(
                cluster, registry, target or "",
                build=image is None and self.cfg.build, pinned=image is not None, force=force,
            )  # fmt: skip
        except PlanError as exc:
            raise StageError(f"plan: {exc}") from None
        return plan, cluster

    def rollback_plan(self) -> tuple[Plan, ClusterState]:
        cluster = self.cluster()
        try:
            return deploy_plan.plan_rollback(cluster), cluster
        except PlanError as exc:
            raise StageError(f"plan: {exc}") from None

    def execute(self, plan: Plan, cluster: ClusterState) -> ClusterState:
        """Run a plan's actions in order; on failure say which step, why, and what still serves."""
        done = []
        for number, action in enumerate(plan.actions, 1):
            log.info(
                "step %d/%d [%s] %s", number, len(plan.actions), action.step, action.describe()
            )
            try:
                self._run(action)
            except StageError as exc:
                still = deploy_plan.serving(deploy_plan.predict(cluster, done))
                raise StageError(f"step {action.step} failed: {exc}; {still}") from None
            done.append(action)
        return deploy_plan.predict(cluster, done)

    def _run(self, action: deploy_plan.Action) -> None:
        match action:
            case BuildImage(version=version, image=image):
                self.builder(model_uri(self.model_name, version), image)
            case RollSlot():
                self.roll(action)
            case WaitReady(slot=slot):
                self.wait_ready(slot)
            case CheckReady(slot=slot):
                rollout = self.kube.rollout(deployment_name(self.cfg, slot))
                if not rollout.ready:
                    raise StageError(f"slot {slot} is not ready: {rollout.progress()}")
            case PointPreview(slot=slot):
                self.point_preview(slot)
            case SmokeTest(slot=slot, version=version):
                self.smoke_test(slot, version)
            case SwitchLive(from_slot=from_slot, to_slot=to_slot):
                self.switch_live(from_slot, to_slot)
            case Record():
                self.record(action)

    # actions

    def roll(self, action: RollSlot) -> None:
        """Point the slot's Deployment at the image, with the model version in its metadata."""
        name = deployment_name(self.cfg, action.slot)
        # Read just before patching: the build may have taken minutes (and the HPA may have
        # scaled the slot meanwhile); the patch carries this resourceVersion as its guard.
        current = self.kube.deployment(name)
        rolled = self.kube.patch_deployment(name, self.roll_patch(action, current.resource_version))
        log.info("%s: generation %d now runs %s", name, rolled.generation, action.image)

    def roll_patch(self, action: RollSlot, resource_version: str) -> dict[str, Any]:
        """The strategic merge patch that rolls a slot to a model version's image."""
        version = str(action.version)
        annotations = {
            VERSION_ANNOTATION: version,
            MODEL_URI_ANNOTATION: model_uri(self.model_name, action.version),
        }
        container = {
            "name": self.cfg.container,
            "image": action.image,
            "env": [{"name": WORKERS_ENV, "value": str(self.cfg.workers)}],
        }
        return {
            "metadata": {
                "resourceVersion": resource_version,
                "labels": {VERSION_LABEL: version},
                "annotations": annotations,
            },
            "spec": {
                "template": {
                    "metadata": {"labels": {VERSION_LABEL: version}, "annotations": annotations},
                    "spec": {"containers": [container]},
                }
            },
        }

    def wait_ready(self, slot: str) -> None:
        """Poll the rollout until it completes, stalls, or the timeout passes."""
        name = deployment_name(self.cfg, slot)
        deadline = self.clock() + self.cfg.rollout_timeout
        shown = None
        while True:
            rollout = self.kube.rollout(name)
            if rollout.ready:
                log.info("%s is ready: %s", name, rollout.progress())
                return
            if rollout.stalled:
                raise StageError(f"{name} stalled: {rollout.stalled} ({rollout.progress()})")
            if self.clock() >= deadline:
                raise StageError(
                    f"{name} not ready after {self.cfg.rollout_timeout:g}s: {rollout.progress()}"
                    f" (kubectl -n {self.cfg.namespace} describe deployment {name})"
                )
            if rollout.progress() != shown:
                shown = rollout.progress()
                log.info("%s: %s", name, shown)
            self.sleep(self.cfg.poll_interval)

    def point_preview(self, slot: str) -> None:
        service = preview_service(self.cfg)
        operations = [{"op": "add", "path": f"/spec/selector/{SLOT_LABEL}", "value": slot}]
        selector = self.kube.patch_service(service, operations)
        if selector.get(SLOT_LABEL) != slot:
            raise StageError(f"service {service} selects {selector} after the patch, not {slot}")

    def switch_live(self, from_slot: str, to_slot: str) -> None:
        """Switch the live Service, only if it still selects the slot the plan started from."""
        operations = [
            {"op": "test", "path": f"/spec/selector/{SLOT_LABEL}", "value": from_slot},
            {"op": "replace", "path": f"/spec/selector/{SLOT_LABEL}", "value": to_slot},
        ]
        selector = self.kube.patch_service(self.cfg.app, operations)
        if selector.get(SLOT_LABEL) != to_slot:
            raise StageError(f"service {self.cfg.app} selects {selector} after the patch")
        log.info("service %s now selects slot %s", self.cfg.app, to_slot)

    def smoke_test(self, slot: str, version: int) -> None:
        """Known reviews through the preview Service must get the labels the model gives here."""
        import pandas as pd

        frame = pd.DataFrame({self.cfg.text_column: list(self.cfg.smoke_reviews)})
        uri = model_uri(self.model_name, version)
        try:
            predictions = in_process_predictions(uri, frame)
        except Exception as exc:  # the model's own code may raise anything; say so in one line
            raise StageError(
                f"{uri} failed in-process: {type(exc).__name__}: {_one_line(exc)}"
            ) from None
        expected = prediction_labels(predictions, self.cfg.label_field)
        payload = {"dataframe_split": frame.to_dict(orient="split", index=False)}
        service = preview_service(self.cfg)
        status, body = self.kube.proxy_post(service, self.cfg.port_name, "invocations", payload)
        text = body.decode("utf-8", "replace")
        if status != 200:
            raise StageError(f"preview service {service} answered HTTP {status}: {text[:300]}")
        try:
            served = prediction_labels(json.loads(text)["predictions"], self.cfg.label_field)
        except (ValueError, KeyError, TypeError):
            raise StageError(f"preview service {service} answered {text[:300]!r}") from None
        if len(served) != len(expected):
            raise StageError(f"{len(served)} predictions for {len(expected)} smoke reviews")
        wrong = [i for i, (s, e) in enumerate(zip(served, expected, strict=True)) if s != e]
        if wrong:
            i = wrong[0]
            review = self.cfg.smoke_reviews[i]
            raise StageError(
                f"slot {slot} disagrees with model version {version} in-process on"
                f" {len(wrong)}/{len(expected)} smoke reviews, e.g. {review[:50]!r}:"
                f" served {served[i]!r}, expected {expected[i]!r}"
            )
        log.info("smoke test passed: %d reviews, labels %s", len(served), served)

    def record(self, action: Record) -> None:
        """Aliases `blue`/`green` name the version each slot runs; tags name the live slot."""
        name = self.model_name
        with self._registry("record the deployment"):
            model = self.client.get_registered_model(name)
            for slot, version in sorted(action.versions.items()):
                if version is not None:
                    self.client.set_registered_model_alias(name, slot, str(version))
                elif slot in (model.aliases or {}):
                    self.client.delete_registered_model_alias(name, slot)
            self.client.set_registered_model_tag(name, LIVE_SLOT_TAG, action.live)
            if action.held is not None:
                self.client.set_registered_model_tag(name, HELD_TAG, str(action.held))
            elif HELD_TAG in model.tags:
                self.client.delete_registered_model_tag(name, HELD_TAG)

    # entry points

    def reconcile(
        self, image: str | None = None, dry_run: bool = False, force: bool = False
    ) -> Plan:
        """Plan the champion's rollout, print the plan and (unless dry_run) run it."""
        plan, cluster = self.plan(image=image, force=force)
        return self._carry_out(plan, cluster, dry_run)

    def rollback(self, dry_run: bool = False) -> Plan:
        """Switch the live Service back to the idle slot at once."""
        plan, cluster = self.rollback_plan()
        return self._carry_out(plan, cluster, dry_run)

    def watch(
        self, max_iterations: int | None = None, image: str | None = None
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
                champion = self.champion()
            except StageError as exc:
                print(f"error: deploy: {exc}", file=sys.stderr)
                champion = last  # registry unreachable: try again next time
            if champion != last:
                log.info("champion is %s: reconciling", champion)
                try:
                    self.reconcile(image=image)
                    error = None
                except StageError as exc:
                    print(f"error: deploy: {exc}", file=sys.stderr)
                    log.warning("champion %s not deployed; waiting for it to move", champion)
                    error = exc
                last = champion
            if max_iterations and iteration >= max_iterations:
                return error
            self.sleep(self.cfg.watch_interval)

    def _carry_out(self, plan: Plan, cluster: ClusterState, dry_run: bool) -> Plan:
        print(plan.render(), flush=True)
        if dry_run or not plan.actions:
            return plan
        self._plans_logged += 1
        with _best_effort_logging():
            name = f"deploy/plan-{self._plans_logged:03d}-{plan.kind}.txt"
            mlflow.log_text(plan.render() + "\n", name)
        after = self.execute(plan, cluster)
        print(f"done: {deploy_plan.serving(after)}", flush=True)
        return plan

    def _selected_slot(self, service: str, required: bool) -> str | None:
        slot = self.kube.service_selector(service).get(SLOT_LABEL)
        if slot in deploy_plan.SLOTS:
            return slot
        if required:
            raise StageError(
                f"service {self.cfg.namespace}/{service} selects {SLOT_LABEL}={slot!r},"
                f" not one of {', '.join(deploy_plan.SLOTS)}; apply k8s/ first"
            )
        return None

    @contextmanager
    def _registry(self, what: str) -> Iterator[None]:
        try:
            yield
        except MlflowException as exc:
            raise StageError(f"registry: {what} {self.model_name}: {_one_line(exc)}") from None


def _version(text: str | None, where: str) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise StageError(
            f"deployment {where}: annotation {VERSION_ANNOTATION}={text!r} is not a version number"
        ) from None


@contextmanager
def _best_effort_logging() -> Iterator[None]:
    """Log to the active run if there is one; the deployment never fails over its own log."""
    if mlflow.active_run() is None:
        yield
        return
    try:
        yield
    except MlflowException as exc:
        log.warning("could not log the plan to MLflow: %s", _one_line(exc))


def _one_line(exc: object) -> str:
    return " ".join(str(exc).split())


# -- command line -----------------------------------------------------------------------------


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


def body(params: Params, cfg: DeployConfig, args: argparse.Namespace) -> None:
    if sum((args.rollback, args.watch)) > 1 or (args.rollback and args.image):
        raise ConfigError("deploy parameters: --rollback goes alone (no --watch, no --image)")
    if args.image is not None and not args.image.strip():
        raise ConfigError("deploy parameters: --image is empty")
    kube = Kube.connect(cfg.namespace, cfg.context, cfg.request_timeout)
    deployer = Deployer(cfg, params.register.model_name, kube, MlflowClient())
    log.info("cluster %s, namespace %s, model %s", kube.server, cfg.namespace, deployer.model_name)
    if args.dry_run:
        if args.rollback:
            deployer.rollback(dry_run=True)
        else:
            deployer.reconcile(image=args.image, dry_run=True, force=args.force)
        return
    with tracking.stage_run("deploy"):
        tracking.log_config(cfg, prefix="deploy.")
        if args.rollback:
            deployer.rollback()
        elif args.watch:
            error = deployer.watch(max_iterations=args.max_iterations, image=args.image)
            if error is not None:
                raise StageError(f"the last reconcile failed ({error})")
        else:
            deployer.reconcile(image=args.image, force=args.force)


def main(argv: list[str] | None = None) -> int:
    return cli.run("deploy", body, argv, add_arguments)


if __name__ == "__main__":
    sys.exit(main())

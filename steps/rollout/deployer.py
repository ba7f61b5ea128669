"""The executor: reads a cluster namespace and the registry, asks the planner (plan.py) for the
ordered actions, and carries them out.

One reconcile reads both Deployments and Services (kube.py) and the registry, plans, prints the
plan and runs it: build and push the image (image.py), roll the idle slot (to the digest the
registry gave the pushed tag, `repository:tag@sha256:...`), wait for it, smoke-test it through
the preview Service (smoke.py), replay the version's labelled sample through it (analysis.py),
scale it to the live slot's count, switch the live Service, record the slots in the registry
(aliases `blue` / `green`, tag `deploy.live_slot`), watch the new live slot in Prometheus and,
`scale_down_delay` seconds later, scale the old slot to zero. Any failure stops there with one
line naming the step; the live Service is only ever patched after the idle slot passed its smoke
test and analysis.

A failed analysis is undone here: before the switch, the idle slot goes back to the pod count it
was found at; after it, the live Service goes back to the previous slot (still running),
`champion` back to `previous`, and the version is held. Either way the version gets `analysis.*`
tags saying which check failed and its numbers.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from steps.measure import sample as samples
from steps.rollout import analysis
from steps.rollout import plan as planner
from steps.rollout.analysis import AnalysisFailed
from steps.rollout.kube import Kube
from steps.rollout.plan import (
    Analyse,
    BuildImage,
    CheckReady,
    ClusterState,
    Plan,
    PlanError,
    PointPreview,
    Policy,
    Record,
    RegistryState,
    RollSlot,
    ScaleDown,
    ScaleSlot,
    Slot,
    SmokeTest,
    SwitchLive,
    WaitReady,
    WatchLive,
)
from steps.rollout.smoke import smoke_test
from steps.stage.config import DeployConfig
from steps.stage.errors import ConfigError, StageError, error_line, one_line
from steps.tracking import cards, champion, registry

log = logging.getLogger(__name__)

SLOT_LABEL = "slot"  # the label both Services select on; its value is a slot name
VERSION_LABEL = "model-version"  # on pods, for `kubectl get pods -L model-version`
VERSION_ANNOTATION = "imdb-sentiment/model-version"  # what a slot runs: deploy's record of it
MODEL_URI_ANNOTATION = "imdb-sentiment/model-uri"
WORKERS_ENV = "MLFLOW_MODELS_WORKERS"
LIVE_SLOT_TAG = "deploy.live_slot"
HELD_TAG = "deploy.rolled_back_version"
ANALYSIS_TAG = registry.ANALYSIS_TAG_PREFIX  # analysis.<field> on the version analysed
TAG_TEXT_LIMIT = 4000  # a registry tag holds 5,000 characters

# (model URI, image tag) -> the pushed image pinned by digest (image.build_and_push with config).
Builder = Callable[[str, str], str]


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


def heartbeat(path: Path, sleep: Callable[[float], None] = time.sleep) -> Callable[[float], None]:
    """A `sleep` that first touches `path`: the watcher sleeps between registry polls and while
    a rollout comes up, so the file's age tells a liveness probe whether the loop still runs."""
    path = Path(path)

    def beat_then_sleep(seconds: float) -> None:
        path.touch()
        sleep(seconds)

    path.touch()
    return beat_then_sleep


class Deployer:
    """Reads state, plans and runs plans against one cluster namespace and one registry."""

    def __init__(
        self,
        cfg: DeployConfig,
        model_name: str,
        kube: Kube,
        client: MlflowClient,
        builder: Builder | None = None,
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
        self._pushed: dict[str, str] = {}  # tag -> tag@digest, from this deployer's builds
        self._said_no_prometheus = False
        self.prometheus_url = analysis.prometheus_url(cfg.analysis)

    # state

    def cluster_state(self) -> ClusterState:
        """Both slots and both Services, read from the API server."""
        slots = {}
        for slot in planner.SLOTS:
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
                replicas=rollout.desired,
            )
        live = self._selected_slot(self.cfg.app, required=True)
        preview = self._selected_slot(preview_service(self.cfg), required=False)
        return ClusterState(live=live, preview=preview, slots=slots)

    def registry_state(self) -> RegistryState:
        """The champion and what deploy last recorded on the registered model."""
        model = registry.registered_model(self.model_name, self.client)
        if model is None and getattr(self.kube, "assumed", None) is not None:
            self.kube.assumed.append(f"no {self.model_name!r} in the registry: champion version 1")
            return RegistryState(champion=1, aliases={}, live_slot=None, held=None)
        if model is None:
            raise StageError(
                f"no model named {self.model_name!r} in the registry: run register and promote"
            )
        aliases = {a: int(v) for a, v in (model.aliases or {}).items() if a in planner.SLOTS}
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

    def policy(self) -> Policy:
        """How a rollout is carried out, from deploy.* (the watch only with a Prometheus)."""
        bounds = self.cfg.analysis
        wrong = [
            f"{key} must be {rule}, got {value}"
            for key, value, rule, ok in (
                ("preview_replicas", self.cfg.preview_replicas, "at least 1",
                 self.cfg.preview_replicas >= 1),
                ("scale_down_delay", self.cfg.scale_down_delay, "null or at least 0",
                 self.cfg.scale_down_delay is None or self.cfg.scale_down_delay >= 0),
                ("analysis.duration", bounds.duration, "at least 0", bounds.duration >= 0),
                ("analysis.interval", bounds.interval, "over 0", bounds.interval > 0),
                ("analysis.window", bounds.window, "at least 1", bounds.window >= 1),
            )
            if not ok
        ]  # fmt: skip
        if wrong:
            raise ConfigError(f"deploy parameters: {'; '.join(wrong)}")
        watch = bounds.duration > 0 and bool(self.prometheus_url)
        if bounds.duration > 0 and not self.prometheus_url and not self._said_no_prometheus:
            self._said_no_prometheus = True
            log.warning(
                "no Prometheus configured (deploy.analysis.prometheus_url or $%s): no"
                " post-promotion analysis, only the checks before the switch",
                analysis.PROMETHEUS_URL_ENV,
            )
        return Policy(
            preview_replicas=self.cfg.preview_replicas,
            replay=bounds.replay,
            watch=watch,
            scale_down_delay=self.cfg.scale_down_delay,
        )

    def plan(self, image: str | None = None, force: bool = False) -> tuple[Plan, ClusterState]:
        cluster, recorded = self.cluster_state(), self.registry_state()
        target = image
        if target is None and recorded.champion is not None:
            target = image_ref(self.cfg, recorded.champion)
        try:
            plan = planner.plan_deploy(
                cluster, recorded, target or "",
                build=image is None and self.cfg.build, pinned=image is not None, force=force,
                policy=self.policy(),
            )  # fmt: skip
        except PlanError as exc:
            raise StageError(f"plan: {exc}") from None
        return plan, cluster

    def rollback_plan(self) -> tuple[Plan, ClusterState]:
        cluster = self.cluster_state()
        try:
            return planner.plan_rollback(cluster), cluster
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
            except AnalysisFailed as exc:
                undone = self._undo(action, exc, cluster)
                still = planner.serving(planner.predict(cluster, done + undone))
                raise StageError(f"step {action.step} failed: {exc}; {still}") from None
            except StageError as exc:
                still = planner.serving(planner.predict(cluster, done))
                raise StageError(f"step {action.step} failed: {exc}; {still}") from None
            done.append(action)
        return planner.predict(cluster, done)

    def _run(self, action: planner.Action) -> None:
        match action:
            case BuildImage(version=version, image=image):
                if self.builder is None:
                    raise StageError(
                        "no image builder here: give --image IMAGE (or deploy.build false)"
                    )
                uri = registry.model_uri(self.model_name, version)
                try:
                    self._pushed[image] = self.builder(uri, image)
                except StageError as exc:
                    raise StageError(f"{exc} (--image IMAGE skips the build)") from None
                log.info("pushed %s", self._pushed[image])
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
                smoke_test(
                    self.kube, self.cfg, preview_service(self.cfg), self.model_name, version, slot
                )
            case Analyse(slot=slot, version=version):
                self.analyse(version)
            case ScaleSlot():
                self.scale(action)
            case SwitchLive(from_slot=from_slot, to_slot=to_slot):
                self.switch_live(from_slot, to_slot)
            case Record():
                self.record(action)
            case WatchLive(slot=slot, version=version):
                self.watch_live(slot, version)
            case ScaleDown(slot=slot, delay=delay):
                self.scale_down(slot, delay)

    # actions

    def roll(self, action: RollSlot) -> None:
        """Point the slot's Deployment at the image, with the model version in its metadata."""
        name = deployment_name(self.cfg, action.slot)
        # The autoscaler's floor first, or it would lift the preview count straight back up.
        self.set_floor(action.slot, action.replicas)
        # Read just before patching: the build may have taken minutes (and the HPA may have
        # scaled the slot meanwhile); the patch carries this resourceVersion as its guard.
        current = self.kube.deployment(name)
        patch = self.roll_patch(action, current.resource_version)
        rolled = self.kube.patch_deployment(name, patch)
        image = patch["spec"]["template"]["spec"]["containers"][0]["image"]
        log.info("%s: generation %d now runs %s", name, rolled.generation, image)

    def roll_patch(self, action: RollSlot, resource_version: str) -> dict[str, Any]:
        """The strategic merge patch that rolls a slot to a model version's image: by digest
        when this deployer pushed it (the tag could be pushed over; the digest cannot)."""
        version = str(action.version)
        annotations = {
            VERSION_ANNOTATION: version,
            MODEL_URI_ANNOTATION: registry.model_uri(self.model_name, action.version),
        }
        container = {
            "name": self.cfg.container,
            "image": self._pushed.get(action.image, action.image),
            "env": [{"name": WORKERS_ENV, "value": str(self.cfg.workers)}],
        }
        return {
            "metadata": {
                "resourceVersion": resource_version,
                "labels": {VERSION_LABEL: version},
                "annotations": annotations,
            },
            "spec": {
                "replicas": action.replicas,
                "template": {
                    "metadata": {"labels": {VERSION_LABEL: version}, "annotations": annotations},
                    "spec": {"containers": [container]},
                },
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

    def set_floor(self, slot: str, replicas: int) -> None:
        """Set the slot's HorizontalPodAutoscaler's minReplicas (none there: nothing to do)."""
        name = deployment_name(self.cfg, slot)
        if self.kube.autoscaler_min(name) not in (None, replicas):
            self.kube.set_autoscaler_min(name, replicas)
            log.info("autoscaler %s: minReplicas %d", name, replicas)

    def scale(self, action: ScaleSlot) -> None:
        """Set a slot's pod count; the preview count lowers its autoscaler's floor to match,
        the serving count restores the floor the other slot's autoscaler has."""
        if action.preview:
            self.set_floor(action.slot, action.replicas)
        else:
            floor = self.kube.autoscaler_min(deployment_name(self.cfg, planner.other(action.slot)))
            if floor is not None:
                self.set_floor(action.slot, floor)
        name = deployment_name(self.cfg, action.slot)
        self.kube.patch_deployment(name, {"spec": {"replicas": action.replicas}})
        log.info("%s: %d replicas (%s)", name, action.replicas, action.why)

    def analyse(self, version: int) -> None:
        """Pre-promotion analysis: the version's labelled sample through the preview Service."""
        try:
            sample = self.sample(version)
        except StageError as exc:
            raise AnalysisFailed("sample", str(exc)) from None
        verdict = analysis.replay(
            self.kube, self.cfg, preview_service(self.cfg), self.model_name, version, sample
        )
        self.tag(version, "pre", "passed", verdict.figures)

    def watch_live(self, slot: str, version: int) -> None:
        """Post-promotion analysis of the live slot in Prometheus for deploy.analysis.duration."""
        try:
            expected = self.sample(version).positive_share
        except StageError as exc:
            log.warning("no evaluated positive share to compare with: %s", exc)
            expected = None
        prometheus = analysis.Prometheus(self.prometheus_url, self.cfg.request_timeout)
        log.info(
            "watching slot %s in Prometheus at %s for %gs",
            slot, analysis.shown_url(self.prometheus_url), self.cfg.analysis.duration,
        )  # fmt: skip
        verdict = analysis.watch_live(
            prometheus, self.cfg.analysis, slot, expected, self.sleep, self.clock
        )
        self.tag(version, "post", "passed", verdict.figures)

    def scale_down(self, slot: str, delay: float) -> None:
        """After `delay` s, scale the old slot to zero pods, unless it is live again by then.

        Its HorizontalPodAutoscaler keeps its floor: an HPA does not scale a target at zero.
        """
        log.info(
            "old slot %s goes to zero pods in %gs (until then a rollback is instant)", slot, delay
        )
        self.sleep(delay)
        if self._selected_slot(self.cfg.app, required=True) == slot:
            log.warning("slot %s is live again (a rollback?): left running", slot)
            return
        name = deployment_name(self.cfg, slot)
        self.kube.patch_deployment(name, {"spec": {"replicas": 0}})
        log.info("%s: scaled to zero pods", name)

    def sample(self, version: int) -> samples.Sample:
        """The analysis sample evaluation logged in the run that logged the version."""
        found = registry.get_version(self.model_name, version, self.client)
        if not found.run_id:
            raise StageError(f"{self.model_name} version {version} names no run")
        return samples.load(found.run_id, f"{self.model_name} version {version}")

    def tag(
        self, version: int, phase: str, outcome: str, figures: dict[str, float], why: str = ""
    ) -> None:
        """analysis.<phase> = outcome, analysis.<phase>.<figure> = value on the version (tags,
        for code and the UI's filters), and one line in its card's history."""
        tags: dict[str, Any] = {f"{ANALYSIS_TAG}{phase}": outcome}
        tags |= {f"{ANALYSIS_TAG}{phase}.{k}": v for k, v in figures.items()}
        registry.set_version_tags(self.model_name, version, tags, self.client)
        shown = ", ".join(f"{k} {registry.tag_value(v)}" for k, v in figures.items())
        line = f"deploy: {phase}-promotion analysis {outcome}" + (f" ({shown})" if shown else "")
        cards.add_history(self.model_name, version, line + (f": {why}" if why else ""), self.client)

    def _undo(self, action: planner.Action, failure: AnalysisFailed, cluster: ClusterState) -> list:
        """Tag why the analysis failed and undo what it judged; the actions that undid it."""
        match action:
            case Analyse(slot=slot, version=version):
                self.tag_failure(version, "pre", failure)
                found = cluster.slots[slot].replicas
                undo = ScaleSlot(slot, found, "as it was found before the failed analysis")
                print(f"analysis failed: no switch; slot {slot} back to {found} pods", flush=True)
                self.scale(undo)
                return [undo]
            case WatchLive(slot=slot, version=version, previous=previous):
                self.tag_failure(version, "post", failure)
                print(
                    f"post-promotion analysis failed: switching the live Service back to slot"
                    f" {previous}, champion back to previous",
                    flush=True,
                )
                self.switch_live(slot, previous)
                self.point_preview(slot)
                now = self.cluster_state()
                self.record(Record({s: v.version for s, v in now.slots.items()}, previous, version))
                try:
                    restored, _, _ = champion.roll_back(self.model_name, by="deploy")
                    log.info("champion is version %s again", restored)
                except StageError as exc:
                    print(f"warning: champion not moved back: {exc}", file=sys.stderr, flush=True)
                return [SwitchLive(slot, previous), PointPreview(slot)]
        return []

    def tag_failure(self, version: int, phase: str, failure: AnalysisFailed) -> None:
        """The failed check and why, besides `tag`'s figures."""
        registry.set_version_tags(
            self.model_name,
            version,
            {
                f"{ANALYSIS_TAG}{phase}.failed_check": failure.check,
                f"{ANALYSIS_TAG}{phase}.reason": str(failure)[:TAG_TEXT_LIMIT],
            },
            self.client,
        )
        self.tag(version, phase, "failed", failure.figures, why=str(failure))

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

    def record(self, action: Record) -> None:
        """Aliases `blue`/`green` name the version each slot runs; tags name the live slot."""
        name, client = self.model_name, self.client
        model = registry.registered_model(name, client)
        aliases, tags = (model.aliases or {}, model.tags or {}) if model else ({}, {})
        for slot, version in sorted(action.versions.items()):
            if version is not None:
                registry.set_alias(name, slot, version, client)
            elif slot in aliases:
                registry.delete_alias(name, slot, client)
        registry.set_model_tag(name, LIVE_SLOT_TAG, action.live, client)
        if action.held is not None:
            registry.set_model_tag(name, HELD_TAG, action.held, client)
        elif HELD_TAG in tags:
            registry.delete_model_tag(name, HELD_TAG, client)

    # what the entry point asks for

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
                print(error_line("deploy", exc), file=sys.stderr)
                champion = last  # registry unreachable: try again next time
            if champion != last:
                log.info("champion is %s: reconciling", champion)
                try:
                    self.reconcile(image=image)
                    error = None
                except StageError as exc:
                    print(error_line("deploy", exc), file=sys.stderr)
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
        print(f"done: {planner.serving(after)}", flush=True)
        return plan

    def _selected_slot(self, service: str, required: bool) -> str | None:
        slot = self.kube.service_selector(service).get(SLOT_LABEL)
        if slot in planner.SLOTS:
            return slot
        if required:
            raise StageError(
                f"service {self.cfg.namespace}/{service} selects {SLOT_LABEL}={slot!r},"
                f" not one of {', '.join(planner.SLOTS)}; apply k8s/ first"
            )
        return None


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
        log.warning("could not log the plan to MLflow: %s", one_line(exc))

"""The executor: reads a cluster namespace and the registry, asks the planner (plan.py) for the
ordered actions, and carries them out, saying what it does as events to whoever runs it (the
`deploy` entry point prints them). It decides; others act: the slots' Deployments, Services and
autoscalers change through slots.py (over the Kubernetes adapter, kube.py), deploy's record in
the registry (aliases `blue` / `green`, tags, card lines) through steps/tracking/deployments.py
and `champion` through steps/tracking/champion.py, the image through the builder it is given
(image.py), the checks through smoke.py and analysis.py.

A plan builds and pushes the image, rolls the idle slot (to the digest the registry gave the
pushed tag, `repository:tag@sha256:...`), waits for it, smoke-tests it through the preview
Service, replays the version's labelled sample through it, scales it to the live slot's count,
switches the live Service, records the slots in the registry, watches the new live slot in
Prometheus and, `scale_down_delay` seconds later, scales the old slot to zero. Any failure stops
there with one line naming the step; the live Service is only ever patched after the idle slot
passed its smoke test and analysis.

A failed analysis is undone here: before the switch, the idle slot goes back to the pod count it
was found at; after it, the live Service goes back to the previous slot (still running),
`champion` back to `previous`, and the version is held. Either way the version gets `analysis.*`
tags saying which check failed and its numbers.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from mlflow.tracking import MlflowClient

from steps.measure import sample as samples
from steps.rollout import analysis
from steps.rollout import plan as planner
from steps.rollout.actions import (
    SLOTS,
    Action,
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
    SmokeTest,
    SwitchLive,
    WaitReady,
    WatchLive,
)
from steps.rollout.analysis import AnalysisFailed
from steps.rollout.kube import Kube
from steps.rollout.replay import replay
from steps.rollout.slots import Slots, image_ref, preview_service
from steps.rollout.smoke import smoke_test
from steps.stage.config import DeployConfig
from steps.stage.errors import StageError, one_line
from steps.tracking import champion, deployments, registry

log = logging.getLogger(__name__)

# (model URI, image tag) -> the pushed image pinned by digest (image.build_and_push with config).
Builder = Callable[[str, str], str]


class Kind(enum.Enum):
    """What deploy tells its user; the entry point decides how each kind is shown."""

    PLAN = "plan"  # the plan, before anything is done
    STEP = "step"  # an action of the plan starts
    UNDO = "undo"  # a failed analysis is being undone
    WARNING = "warning"  # something could not be done; the deploy goes on
    DONE = "done"  # what serves once a plan has run
    ERROR = "error"  # a reconcile of the watch failed; the watch goes on


@dataclass(frozen=True)
class Event:
    """One thing deploy tells its user, in the words they read."""

    kind: Kind
    text: str


Report = Callable[[Event], None]


def log_event(event: Event) -> None:
    """The report of a deployer nobody listens to: its events as log lines."""
    level = logging.INFO if event.kind in (Kind.PLAN, Kind.STEP, Kind.DONE) else logging.WARNING
    log.log(level, "%s", event.text)


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
        report: Report = log_event,
    ) -> None:
        self.cfg = cfg
        self.model_name = model_name
        self.kube = kube
        self.client = client
        self.builder = builder
        self.sleep = sleep
        self.clock = clock
        self.report = report
        self.slots = Slots(kube, cfg, sleep, clock)
        self._plans_logged = 0
        self._pushed: dict[str, str] = {}  # tag -> tag@digest, from this deployer's builds
        self._said_no_prometheus = False
        self.prometheus_url = analysis.prometheus_url(cfg.analysis)

    # state

    def cluster_state(self) -> ClusterState:
        """Both slots and both Services, read from the API server."""
        return self.slots.state()

    def registry_state(self) -> RegistryState:
        """The champion and what deploy last recorded on the registered model."""
        recorded = deployments.recorded(self.model_name, SLOTS, self.client)
        if recorded is None and getattr(self.kube, "assumed", None) is not None:
            self.kube.assumed.append(f"no {self.model_name!r} in the registry: champion version 1")
            return RegistryState(champion=1, aliases={}, live_slot=None, held=None)
        if recorded is None:
            raise StageError(
                f"no model named {self.model_name!r} in the registry: run register and promote"
            )
        return RegistryState(
            champion=self.champion(),
            aliases=recorded.aliases,
            live_slot=recorded.live_slot,
            held=recorded.held,
        )

    def champion(self) -> int | None:
        """The version the `champion` alias names, or None."""
        return deployments.champion_version(self.model_name, self.client)

    # plans

    def policy(self) -> Policy:
        """How a rollout is carried out, from deploy.* (the watch only with a Prometheus)."""
        bounds = self.cfg.analysis
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
        """Run a plan's actions in order (the plan logged to the active run first); on failure
        say which step, why, and what still serves. Returns the state it leaves."""
        self._plans_logged += 1
        artifact = f"deploy/plan-{self._plans_logged:03d}-{plan.kind}.txt"
        deployments.log_plan(plan.render() + "\n", artifact)
        done = []
        for number, action in enumerate(plan.actions, 1):
            said = f"step {number}/{len(plan.actions)} [{action.step}] {action.describe()}"
            self.report(Event(Kind.STEP, said))
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

    def _run(self, action: Action) -> None:
        slots = self.slots
        match action:
            case BuildImage(version=version, image=image):
                self.build(version, image)
            case RollSlot(slot=slot, version=version, image=image, replicas=replicas):
                uri = registry.model_uri(self.model_name, version)
                tags = registry.get_version(self.model_name, version).tags
                # By digest when this deployer pushed it: the tag could be pushed over.
                slots.roll(
                    slot, version, self._pushed.get(image, image), uri, replicas,
                    tags.get(registry.ACCURACY_TAG),
                )  # fmt: skip
            case WaitReady(slot=slot):
                slots.wait_ready(slot)
            case CheckReady(slot=slot):
                slots.check_ready(slot)
            case PointPreview(slot=slot):
                slots.point_preview(slot)
            case SmokeTest(slot=slot, version=version):
                smoke_test(
                    self.kube, self.cfg, preview_service(self.cfg), self.model_name, version, slot
                )
            case Analyse(version=version):
                self.analyse(version)
            case ScaleSlot(slot=slot, replicas=replicas, why=why, preview=preview):
                slots.scale(slot, replicas, why, preview=preview)
            case SwitchLive(from_slot=from_slot, to_slot=to_slot):
                slots.switch_live(from_slot, to_slot)
            case Record(versions=versions, live=live, held=held):
                deployments.record_slots(self.model_name, versions, live, held, self.client)
            case WatchLive(slot=slot, version=version):
                self.watch_live(slot, version)
            case ScaleDown(slot=slot, delay=delay):
                self.scale_down(slot, delay)

    # the actions that are more than one call

    def build(self, version: int, image: str) -> None:
        """Build and push a version's image; remember the digest the registry gave it."""
        if self.builder is None:
            raise StageError("no image builder here: give --image IMAGE (or deploy.build false)")
        uri = registry.model_uri(self.model_name, version)
        try:
            self._pushed[image] = self.builder(uri, image)
        except StageError as exc:
            raise StageError(f"{exc} (--image IMAGE skips the build)") from None
        log.info("pushed %s", self._pushed[image])

    def analyse(self, version: int) -> None:
        """Pre-promotion analysis: the version's labelled sample through the preview Service."""
        try:
            sample = self.sample(version)
        except StageError as exc:
            raise AnalysisFailed("sample", str(exc)) from None
        verdict = replay(
            self.kube, self.cfg, preview_service(self.cfg), self.model_name, version, sample
        )
        deployments.record_analysis(
            self.model_name, version, "pre", "passed", verdict.figures, client=self.client
        )

    def watch_live(self, slot: str, version: int) -> None:
        """Post-promotion analysis of the live slot in Prometheus for deploy.analysis.duration."""
        try:
            sample = self.sample(version)
            expected, accuracy = sample.positive_share, sample.accuracy
        except StageError as exc:
            log.warning("no evaluated positive share or accuracy to compare with: %s", exc)
            expected = accuracy = None
        prometheus = analysis.Prometheus(self.prometheus_url, self.cfg.request_timeout)
        log.info(
            "watching slot %s in Prometheus at %s for %gs",
            slot, analysis.shown_url(self.prometheus_url), self.cfg.analysis.duration,
        )  # fmt: skip
        try:
            verdict = analysis.watch_live(
                prometheus, self.cfg.analysis, slot, expected, self.sleep, self.clock, accuracy
            )
        except AnalysisFailed:
            raise
        except Exception as exc:  # fail closed: a watch that broke did not pass
            raise AnalysisFailed(
                "watch", f"the watch of slot {slot} broke: {type(exc).__name__}: {one_line(exc)}"
            ) from None
        deployments.record_analysis(
            self.model_name, version, "post", "passed", verdict.figures, client=self.client
        )

    def scale_down(self, slot: str, delay: float) -> None:
        """After `delay` s, scale the old slot to zero pods, unless it is live again by then."""
        log.info(
            "old slot %s goes to zero pods in %gs (until then a rollback is instant)", slot, delay
        )
        self.sleep(delay)
        if self.slots.live() == slot:
            log.warning("slot %s is live again (a rollback?): left running", slot)
            return
        self.slots.scale_to_zero(slot)

    def sample(self, version: int) -> samples.Sample:
        """The analysis sample evaluation logged in the run that logged the version."""
        found = registry.get_version(self.model_name, version, self.client)
        if not found.run_id:
            raise StageError(f"{self.model_name} version {version} names no run")
        return samples.load(found.run_id, f"{self.model_name} version {version}")

    def _undo(self, action: Action, failure: AnalysisFailed, cluster: ClusterState) -> list:
        """Record why the analysis failed and undo what it judged; the actions that undid it."""
        name = self.model_name
        match action:
            case Analyse(slot=slot, version=version):
                self._record_failure(version, "pre", failure)
                found = cluster.slots[slot].replicas
                undo = ScaleSlot(slot, found, "as it was found before the failed analysis")
                said = f"analysis failed: no switch; slot {slot} back to {found} pods"
                self.report(Event(Kind.UNDO, said))
                self.slots.scale(undo.slot, undo.replicas, undo.why)
                return [undo]
            case WatchLive(slot=slot, version=version, previous=previous):
                self._record_failure(version, "post", failure)
                said = (
                    f"post-promotion analysis failed: switching the live Service back to slot"
                    f" {previous}, champion back to previous"
                )
                self.report(Event(Kind.UNDO, said))
                self.slots.switch_live(slot, previous)
                self.slots.point_preview(slot)
                now = self.cluster_state()
                versions = {s: v.version for s, v in now.slots.items()}
                deployments.record_slots(name, versions, previous, version, self.client)
                try:
                    restored, _, _ = champion.roll_back(name, by="deploy")
                    log.info("champion is version %s again", restored)
                except StageError as exc:
                    self.report(Event(Kind.WARNING, f"champion not moved back: {exc}"))
                return [SwitchLive(slot, previous), PointPreview(slot)]
        return []

    def _record_failure(self, version: int, phase: str, failure: AnalysisFailed) -> None:
        deployments.record_failed_analysis(
            self.model_name, version, phase, failure.check, str(failure), failure.figures,
            self.client,
        )  # fmt: skip

"""The blue/green planner: cluster state + registry aliases -> an ordered list of actions.

Pure: no I/O, no clock, no Kubernetes or MLflow objects. The executor (`deployer.py`) reads the
state, asks for a plan, prints it (`--dry-run` stops there) and executes the actions in order.

The order is the safety argument: every action that touches the live Service (`SwitchLive`)
comes after the idle slot has been rolled (at `preview_replicas` pods), waited for, smoke-tested,
analysed and scaled to the live slot's count, so a failure at any earlier step leaves the live
slot serving exactly what it served before. After the switch the live slot is watched
(`WatchLive`: Prometheus) and only then is the old slot scaled to zero (`ScaleDown`). `predict`
replays a prefix of a plan on the state, which is how the executor says what is still serving when a
step fails, and how the tests check that claim for every step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

SLOTS = ("blue", "green")


class PlanError(Exception):
    """The state allows no plan (no champion, nothing to roll back to...): one line for a person."""


@dataclass(frozen=True)
class Slot:
    """One Deployment as the planner sees it."""

    image: str
    version: int | None  # the model version its annotation records; None = never deployed
    ready: bool  # every desired replica updated and available
    replicas: int = 1  # spec.replicas: the pods it is asked to run (0 = scaled down)


@dataclass(frozen=True)
class ClusterState:
    """Which slot the live and preview Services select, and what each slot runs."""

    live: str  # the slot the live Service's selector names
    preview: str | None  # the slot the preview Service's selector names
    slots: Mapping[str, Slot]

    @property
    def idle(self) -> str:
        return other(self.live)


@dataclass(frozen=True)
class RegistryState:
    """What the Model Registry says: the champion and what deploy last recorded."""

    champion: int | None
    aliases: Mapping[str, int]  # "blue"/"green" -> version, as last recorded
    live_slot: str | None  # the registered model's deploy.live_slot tag
    held: int | None  # a version taken out of service by a rollback (not redeployed by itself)


# -- actions ---------------------------------------------------------------------------------
# Each has a `step` (the word an error message and the log use) and `describe()`.


@dataclass(frozen=True)
class BuildImage:
    version: int
    image: str
    step = "build"

    def describe(self) -> str:
        return f"build and push {self.image} from model version {self.version}"


@dataclass(frozen=True)
class RollSlot:
    slot: str
    version: int
    image: str
    by_digest: bool = False  # the image is built and pushed first: roll to the pushed digest
    replicas: int = 1  # the preview count it is rolled at
    step = "roll"

    def describe(self) -> str:
        digest = "@<digest of the push>" if self.by_digest else ""
        return (
            f"roll slot {self.slot} to {self.image}{digest} (model version {self.version}) at"
            f" {_pods(self.replicas)}"
        )


@dataclass(frozen=True)
class WaitReady:
    slot: str
    step = "wait"

    def describe(self) -> str:
        return f"wait until every replica of slot {self.slot} is updated and available"


@dataclass(frozen=True)
class CheckReady:
    slot: str
    step = "check"

    def describe(self) -> str:
        return f"check that slot {self.slot} is ready now (no waiting)"


@dataclass(frozen=True)
class PointPreview:
    slot: str
    step = "preview"

    def describe(self) -> str:
        return f"point the preview Service at slot {self.slot}"


@dataclass(frozen=True)
class SmokeTest:
    slot: str
    version: int
    step = "smoke-test"

    def describe(self) -> str:
        return (
            f"smoke-test slot {self.slot} through the preview Service: labels must match"
            f" model version {self.version} in-process"
        )


@dataclass(frozen=True)
class ScaleSlot:
    slot: str
    replicas: int
    why: str
    preview: bool = False  # the preview count (its autoscaler's floor follows), else serving
    step = "scale"

    def describe(self) -> str:
        return f"scale slot {self.slot} to {_pods(self.replicas)} ({self.why})"


@dataclass(frozen=True)
class Analyse:
    slot: str
    version: int
    step = "analysis"

    def describe(self) -> str:
        return (
            f"pre-promotion analysis of slot {self.slot}: replay version {self.version}'s"
            " labelled sample through the preview Service (labels as in-process, accuracy,"
            " p99 latency)"
        )


@dataclass(frozen=True)
class WatchLive:
    slot: str
    version: int
    previous: str  # the slot to switch back to on a breach
    step = "post-analysis"

    def describe(self) -> str:
        return (
            f"post-promotion analysis of slot {self.slot} in Prometheus (error ratio, p99"
            f" latency, positive share); on a breach switch back to slot {self.previous},"
            " champion back to previous"
        )


@dataclass(frozen=True)
class ScaleDown:
    slot: str
    delay: float
    step = "scale-down"

    def describe(self) -> str:
        return (
            f"after {self.delay:g}s, scale slot {self.slot} to zero pods (a rollback until then"
            " is instant)"
        )


@dataclass(frozen=True)
class SwitchLive:
    from_slot: str
    to_slot: str
    step = "switch"

    def describe(self) -> str:
        return f"switch the live Service from slot {self.from_slot} to slot {self.to_slot}"


@dataclass(frozen=True)
class Record:
    versions: Mapping[str, int | None]  # slot -> version it runs (None: remove the alias)
    live: str
    held: int | None
    step = "record"

    def describe(self) -> str:
        slots = ", ".join(f"{s}={_v(v)}" for s, v in sorted(self.versions.items()))
        held = f", hold version {self.held}" if self.held is not None else ""
        return f"record in the registry: aliases {slots}, live slot {self.live}{held}"


Action = (
    BuildImage
    | RollSlot
    | WaitReady
    | CheckReady
    | PointPreview
    | SmokeTest
    | Analyse
    | ScaleSlot
    | SwitchLive
    | Record
    | WatchLive
    | ScaleDown
)


@dataclass(frozen=True)
class Plan:
    kind: str  # first-deploy | promote | resume | rollback | noop | held
    reason: str
    actions: tuple[Action, ...]

    def render(self) -> str:
        lines = [f"plan: {self.kind}: {self.reason}"]
        lines += [f"  {i}. [{a.step}] {a.describe()}" for i, a in enumerate(self.actions, 1)]
        if not self.actions:
            lines.append("  (nothing to do)")
        return "\n".join(lines)


def other(slot: str) -> str:
    """The other slot."""
    if slot not in SLOTS:
        raise PlanError(f"unknown slot {slot!r} (expected one of {', '.join(SLOTS)})")
    return SLOTS[1 - SLOTS.index(slot)]


@dataclass(frozen=True)
class Policy:
    """How a rollout is carried out beyond its order (from params.yaml deploy.*)."""

    preview_replicas: int = 1  # pods of the idle slot while it is analysed
    replay: bool = False  # pre-promotion analysis: replay the version's labelled sample
    watch: bool = False  # post-promotion analysis in Prometheus
    scale_down_delay: float | None = None  # then the old slot goes to zero; None = never


def plan_deploy(
    cluster: ClusterState,
    registry: RegistryState,
    image: str,
    *,
    build: bool,
    pinned: bool = False,
    force: bool = False,
    policy: Policy = Policy(),
) -> Plan:
    """Plan the rollout of the registry's champion.

    `image` is the image the champion should run, built from it when `build`. A slot runs the
    champion when its recorded model version is the champion's; when the image is `pinned`
    (given explicitly) it must also run exactly that image. `force` deploys a champion even
    when a rollback has put it on hold.
    """
    champion = registry.champion
    if champion is None:
        raise PlanError(
            "the registered model has no 'champion' alias: promote a version first"
            " (or set the alias in the MLflow UI)"
        )
    live, idle = cluster.live, cluster.idle
    live_slot, idle_slot = cluster.slots[live], cluster.slots[idle]

    def runs_champion(slot: Slot) -> bool:
        return slot.version == champion and (not pinned or slot.image == image)

    if runs_champion(live_slot):
        actions = ()
        # A hold only matters while the champion names the held version: once the alias has
        # moved (e.g. back to the version now live), it is lifted.
        held = registry.held if registry.held == champion else None
        record = _record_if_stale(cluster, registry, held=held)
        if record:
            actions = (record,)
        return Plan("noop", f"live slot {live} already runs champion version {champion}", actions)

    if registry.held == champion and not force:
        return Plan(
            "held",
            f"champion version {champion} was rolled back and is on hold; move the champion"
            f" alias (or run with --force to deploy version {champion} again)",
            (),
        )

    actions: list[Action] = []
    pods = idle_slot.replicas
    if runs_champion(idle_slot):
        kind = "resume"
        reason = f"idle slot {idle} already runs champion version {champion}"
        if pods == 0:
            pods = policy.preview_replicas
            actions.append(
                ScaleSlot(idle, pods, "it was scaled down: the preview count first", preview=True)
            )
    else:
        kind = "first-deploy" if live_slot.version is None else "promote"
        was = f"version {live_slot.version}" if live_slot.version is not None else "no model"
        reason = f"champion is version {champion}; live slot {live} runs {was}"
        if build:
            actions.append(BuildImage(champion, image))
        pods = policy.preview_replicas
        actions.append(RollSlot(idle, champion, image, by_digest=build, replicas=pods))
    actions.append(WaitReady(idle))
    if cluster.preview != idle:
        actions.append(PointPreview(idle))
    actions.append(SmokeTest(idle, champion))
    if policy.replay:
        actions.append(Analyse(idle, champion))
    serving_pods = max(live_slot.replicas, 1)
    if pods != serving_pods:
        actions += [ScaleSlot(idle, serving_pods, f"slot {live}'s count"), WaitReady(idle)]
    actions += [SwitchLive(live, idle), PointPreview(live)]
    versions = {live: live_slot.version, idle: champion}
    actions.append(Record(versions, live=idle, held=None))
    if policy.watch:
        actions.append(WatchLive(idle, champion, previous=live))
    if policy.scale_down_delay is not None:
        actions.append(ScaleDown(live, policy.scale_down_delay))
    return Plan(kind, reason, tuple(actions))


def plan_rollback(cluster: ClusterState) -> Plan:
    """Plan a switch of the live Service back to the idle slot: at once while the idle slot
    runs, else after scaling it up to the live slot's count and waiting for it.

    The version taken out of service is put on hold, so `--watch` does not roll it out again
    while the champion alias still names it.
    """
    live, idle = cluster.live, cluster.idle
    live_slot, idle_slot = cluster.slots[live], cluster.slots[idle]
    if idle_slot.version is None:
        raise PlanError(f"nothing to roll back to: slot {idle} has never run a model version")
    reason = (
        f"live slot {live} (version {_v(live_slot.version)}) back to slot {idle}"
        f" (version {idle_slot.version})"
    )
    if idle_slot.replicas == 0:
        pods = max(live_slot.replicas, 1)
        reason += (
            f"; slot {idle} was scaled to zero after the last deploy, so it is scaled up to"
            f" {_pods(pods)} and waited for before the switch (not instant)"
        )
        first: tuple[Action, ...] = (
            ScaleSlot(idle, pods, f"slot {live}'s count"),
            WaitReady(idle),
        )
    else:
        first = (CheckReady(idle),)
    versions = {live: live_slot.version, idle: idle_slot.version}
    actions = (
        *first,
        SwitchLive(live, idle),
        PointPreview(live),
        Record(versions, live=idle, held=live_slot.version),
    )
    return Plan("rollback", reason, actions)


def predict(cluster: ClusterState, actions: Iterable[Action]) -> ClusterState:
    """The cluster state once `actions` have run (readiness after a roll is assumed)."""
    state = cluster
    for action in actions:
        match action:
            case RollSlot(slot=slot, version=version, image=image, replicas=replicas):
                state = _with_slot(state, slot, Slot(image, version, False, replicas))
            case ScaleSlot(slot=slot, replicas=replicas):
                changed = dataclasses.replace(state.slots[slot], replicas=replicas, ready=False)
                state = _with_slot(state, slot, changed)
            case ScaleDown(slot=slot) if slot != state.live:
                changed = dataclasses.replace(state.slots[slot], replicas=0, ready=True)
                state = _with_slot(state, slot, changed)
            case WaitReady(slot=slot):
                state = _with_slot(state, slot, dataclasses.replace(state.slots[slot], ready=True))
            case SwitchLive(to_slot=slot):
                state = dataclasses.replace(state, live=slot)
            case PointPreview(slot=slot):
                state = dataclasses.replace(state, preview=slot)
    return state


def serving(cluster: ClusterState) -> str:
    """One phrase: which slot is live and what it runs."""
    version = cluster.slots[cluster.live].version
    runs = f"version {version}" if version is not None else "no model version"
    return f"live slot {cluster.live} serves {runs}"


def _with_slot(state: ClusterState, name: str, slot: Slot) -> ClusterState:
    return dataclasses.replace(state, slots={**state.slots, name: slot})


def _pods(count: int) -> str:
    return f"{count} pod" if count == 1 else f"{count} pods"


def _record_if_stale(
    cluster: ClusterState, registry: RegistryState, held: int | None
) -> Record | None:
    versions = {slot: cluster.slots[slot].version for slot in SLOTS}
    recorded = {slot: registry.aliases.get(slot) for slot in SLOTS}
    if versions == recorded and registry.live_slot == cluster.live and registry.held == held:
        return None
    return Record(versions, live=cluster.live, held=held)


def _v(version: int | None) -> str:
    return "-" if version is None else str(version)

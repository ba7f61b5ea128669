"""The blue/green planner: cluster state + registry aliases -> an ordered list of actions.

Pure: no I/O, no clock, no Kubernetes or MLflow objects; the states and actions it works with are
in actions.py. The executor (`deployer.py`) reads the state and asks for a plan; the `deploy`
entry point prints it (`--dry-run` stops there) and has the executor carry it out in order.

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
from collections.abc import Iterable

from steps.rollout.actions import (
    BARE,
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
    Slot,
    SmokeTest,
    SwitchLive,
    WaitReady,
    WatchLive,
    pod_count,
    version_or_dash,
)


def plan_deploy(
    cluster: ClusterState,
    registry: RegistryState,
    image: str,
    *,
    build: bool,
    pinned: bool = False,
    force: bool = False,
    policy: Policy = BARE,
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
        f"live slot {live} (version {version_or_dash(live_slot.version)}) back to slot {idle}"
        f" (version {idle_slot.version})"
    )
    if idle_slot.replicas == 0:
        pods = max(live_slot.replicas, 1)
        reason += (
            f"; slot {idle} was scaled to zero after the last deploy, so it is scaled up to"
            f" {pod_count(pods)} and waited for before the switch (not instant)"
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


def _record_if_stale(
    cluster: ClusterState, registry: RegistryState, held: int | None
) -> Record | None:
    versions = {slot: cluster.slots[slot].version for slot in SLOTS}
    recorded = {slot: registry.aliases.get(slot) for slot in SLOTS}
    if versions == recorded and registry.live_slot == cluster.live and registry.held == held:
        return None
    return Record(versions, live=cluster.live, held=held)

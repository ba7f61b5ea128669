"""What a blue/green plan is made of: the states the planner reads (the cluster's slots and
Services, what the registry recorded), the policy it follows, and the actions it orders.

Each action is a frozen dataclass with a `step` (the word an error message and the log use) and
`describe()` (its line in the printed plan). Pure data: no I/O, as the planner (plan.py).
"""

from __future__ import annotations

from collections.abc import Mapping
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
            f" {pod_count(self.replicas)}"
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
        return f"scale slot {self.slot} to {pod_count(self.replicas)} ({self.why})"


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
        slots = ", ".join(f"{s}={version_or_dash(v)}" for s, v in sorted(self.versions.items()))
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


BARE = Policy()  # the order alone: no analysis, no scale-down


def pod_count(count: int) -> str:
    return f"{count} pod" if count == 1 else f"{count} pods"


def version_or_dash(version: int | None) -> str:
    return "-" if version is None else str(version)

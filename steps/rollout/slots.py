"""The blue/green side of the Kubernetes adapter: the objects of one namespace that a rollout
reads and changes, through `Kube` (kube.py) or, for a plan without a cluster, `ManifestKube`.

The names are the manifests' (k8s/): slot `<s>` is the Deployment `<app>-<s>` (and its
HorizontalPodAutoscaler of the same name), the live Service `<app>` and the preview Service
`<app>-preview` select one slot by its `slot` label, and a slot's Deployment records the model
version it runs in an annotation, deploy's own record of it. `Slots` reads them as the
planner's `ClusterState` and makes the changes the executor (deployer.py) decides on: roll,
wait, scale, point the preview Service, switch the live one. Nothing here decides anything.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from steps.rollout.actions import SLOTS, ClusterState, Slot, other
from steps.rollout.kube import Kube
from steps.stage.config import DeployConfig
from steps.stage.errors import StageError

log = logging.getLogger(__name__)

SLOT_LABEL = "slot"  # the label both Services select on; its value is a slot name
VERSION_LABEL = "model-version"  # on pods, for `kubectl get pods -L model-version`
VERSION_ANNOTATION = "imdb-sentiment/model-version"  # what a slot runs: deploy's record of it
# The version's evaluated test accuracy (registry tag), which the pods export as a series.
ACCURACY_ANNOTATION = "imdb-sentiment/evaluated-accuracy"
MODEL_URI_ANNOTATION = "imdb-sentiment/model-uri"
WORKERS_ENV = "MLFLOW_MODELS_WORKERS"


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


class Slots:
    """Both slots of one namespace and the Services that select them."""

    def __init__(
        self,
        kube: Kube,
        cfg: DeployConfig,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.cfg = cfg
        self.sleep = sleep
        self.clock = clock

    def state(self) -> ClusterState:
        """Both slots and both Services, read from the API server."""
        slots = {}
        for slot in SLOTS:
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
        live = self.live()
        preview = self._selected_slot(preview_service(self.cfg), required=False)
        return ClusterState(live=live, preview=preview, slots=slots)

    def live(self) -> str:
        """The slot the live Service selects."""
        return self._selected_slot(self.cfg.app, required=True)

    def roll(
        self, slot: str, version: int, image: str, model_uri: str, replicas: int,
        accuracy: str | None = None,
    ) -> None:  # fmt: skip
        """Point the slot's Deployment at the image, with the model version in its metadata."""
        name = deployment_name(self.cfg, slot)
        # The autoscaler's floor first, or it would lift the preview count straight back up.
        self.set_floor(slot, replicas)
        # Read just before patching: the build may have taken minutes (and the HPA may have
        # scaled the slot meanwhile); the patch carries this resourceVersion as its guard.
        current = self.kube.deployment(name)
        patch = self.roll_patch(
            version, image, model_uri, replicas, current.resource_version, accuracy
        )
        rolled = self.kube.patch_deployment(name, patch)
        log.info("%s: generation %d now runs %s", name, rolled.generation, image)

    def roll_patch(
        self, version: int, image: str, model_uri: str, replicas: int, resource_version: str,
        accuracy: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """The strategic merge patch that rolls a slot to a model version's image (and its
        evaluated accuracy, when the version has one, for the pods' series)."""
        annotations = {VERSION_ANNOTATION: str(version), MODEL_URI_ANNOTATION: model_uri}
        if accuracy is not None:
            annotations[ACCURACY_ANNOTATION] = str(accuracy)
        container = {
            "name": self.cfg.container,
            "image": image,
            "env": [{"name": WORKERS_ENV, "value": str(self.cfg.workers)}],
        }
        labels = {VERSION_LABEL: str(version)}
        return {
            "metadata": {
                "resourceVersion": resource_version,
                "labels": labels,
                "annotations": annotations,
            },
            "spec": {
                "replicas": replicas,
                "template": {
                    "metadata": {"labels": labels, "annotations": annotations},
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

    def check_ready(self, slot: str) -> None:
        """Raise unless the slot's rollout is complete now."""
        rollout = self.kube.rollout(deployment_name(self.cfg, slot))
        if not rollout.ready:
            raise StageError(f"slot {slot} is not ready: {rollout.progress()}")

    def set_floor(self, slot: str, replicas: int) -> None:
        """Set the slot's HorizontalPodAutoscaler's minReplicas (none there: nothing to do)."""
        name = deployment_name(self.cfg, slot)
        if self.kube.autoscaler_min(name) not in (None, replicas):
            self.kube.set_autoscaler_min(name, replicas)
            log.info("autoscaler %s: minReplicas %d", name, replicas)

    def scale(self, slot: str, replicas: int, why: str, preview: bool = False) -> None:
        """Set a slot's pod count; the preview count lowers its autoscaler's floor to match,
        the serving count restores the floor the other slot's autoscaler has."""
        if preview:
            self.set_floor(slot, replicas)
        else:
            floor = self.kube.autoscaler_min(deployment_name(self.cfg, other(slot)))
            if floor is not None:
                self.set_floor(slot, floor)
        name = deployment_name(self.cfg, slot)
        self.kube.patch_deployment(name, {"spec": {"replicas": replicas}})
        log.info("%s: %d replicas (%s)", name, replicas, why)

    def scale_to_zero(self, slot: str) -> None:
        """No pods for the slot. Its HorizontalPodAutoscaler keeps its floor: an HPA does not
        scale a target at zero."""
        name = deployment_name(self.cfg, slot)
        self.kube.patch_deployment(name, {"spec": {"replicas": 0}})
        log.info("%s: scaled to zero pods", name)

    def point_preview(self, slot: str) -> None:
        """Make the preview Service select `slot`."""
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

    def _selected_slot(self, service: str, required: bool) -> str | None:
        slot = self.kube.service_selector(service).get(SLOT_LABEL)
        if slot in SLOTS:
            return slot
        if required:
            raise StageError(
                f"service {self.cfg.namespace}/{service} selects {SLOT_LABEL}={slot!r},"
                f" not one of {', '.join(SLOTS)}; apply k8s/ first"
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

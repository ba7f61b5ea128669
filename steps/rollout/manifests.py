"""The cluster as the manifests in k8s/ declare it, for `make deploy-plan` where no cluster is
configured: a read-only stand-in for `Kube` (kube.py) that the executor plans against.

What it cannot know it assumes, and says so (`assumptions`): every resource of the
kustomization applied as written and settled, no model version deployed yet (the manifests
carry no `imdb-sentiment/model-version` annotation), each slot at its HorizontalPodAutoscaler's
`minReplicas` (the Deployments declare no replicas: the HPA owns the count). Anything that
would change the cluster is refused: this only ever feeds a printed plan.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from steps.rollout.kube import Rollout
from steps.stage.errors import StageError, one_line

KUSTOMIZATION = "kustomization.yaml"


def documents(directory: Path) -> list[dict[str, Any]]:
    """Every document of every resource the kustomization in `directory` lists, in order."""
    try:
        kustomization = yaml.safe_load((directory / KUSTOMIZATION).read_text(encoding="utf-8"))
        found = []
        for resource in kustomization["resources"]:
            text = (directory / resource).read_text(encoding="utf-8")
            found += [d for d in yaml.safe_load_all(text) if d]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise StageError(f"cannot read the manifests in {directory}/: {one_line(exc)}") from None
    return found


class ManifestKube:
    """`Kube`'s reads answered from the manifests; its writes refused."""

    def __init__(self, directory: Path, namespace: str, why: str) -> None:
        self.directory = Path(directory)
        self.namespace = namespace
        self.why = why
        self._objects: dict[tuple[str, str], dict[str, Any]] = {}
        for doc in documents(self.directory):
            meta = doc.get("metadata", {})
            if meta.get("namespace", namespace) == namespace:
                self._objects[(doc.get("kind", ""), meta.get("name", ""))] = doc
        self.assumed: list[str] = []

    @property
    def server(self) -> str:
        return f"none (the manifests in {self.directory}/)"

    def assumptions(self) -> str:
        """What the plan assumed, one line each, for the reader of the plan."""
        lines = [f"assumed: no cluster ({self.why})"]
        lines += [f"assumed: {line}" for line in dict.fromkeys(self.assumed)]
        return "\n".join(lines)

    def _get(self, kind: str, name: str) -> dict[str, Any]:
        try:
            return self._objects[(kind, name)]
        except KeyError:
            raise StageError(
                f"no {kind} {self.namespace}/{name} in {self.directory}/{KUSTOMIZATION}"
            ) from None

    def deployment(self, name: str) -> Rollout:
        spec = self._get("Deployment", name).get("spec", {})
        replicas = spec.get("replicas")
        if replicas is None:
            replicas = self.autoscaler_min(name) or 1
            self.assumed.append(
                f"each slot runs its autoscaler's minReplicas ({replicas}), settled and ready"
            )
        self.assumed.append("no model version deployed yet (a first rollout)")
        containers = spec.get("template", {}).get("spec", {}).get("containers", [])
        return Rollout(
            name=name, generation=1, resource_version="", annotations={},
            images={c["name"]: c.get("image", "") for c in containers},
            desired=replicas, observed_generation=1, replicas=replicas, updated=replicas,
            available=replicas, stalled=None,
        )  # fmt: skip

    rollout = deployment

    def service_selector(self, name: str) -> dict[str, str]:
        selector = dict(self._get("Service", name).get("spec", {}).get("selector") or {})
        self.assumed.append(f"service {name} selects {selector} as written")
        return selector

    def autoscaler_min(self, name: str) -> int | None:
        hpa = self._objects.get(("HorizontalPodAutoscaler", name))
        return None if hpa is None else int(hpa["spec"].get("minReplicas", 1))

    def __getattr__(self, name: str) -> Any:
        raise StageError(f"{name}: there is no cluster to change (a plan only: {self.why})")

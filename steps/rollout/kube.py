"""A thin adapter over the official `kubernetes` client: the handful of calls deploy makes.

Every call is one REST request in one namespace, with a timeout; every failure becomes a
`KubeError` whose one line names the call, the object and what the API server said. Nothing
here decides anything: the planner (`plan.py`) does, the executor (`deployer.py`) wires them.

Patches are explicit about their type: Deployments get a strategic merge patch (containers and
env are merged by name, as `kubectl set image` does) carrying the resourceVersion that was
read, so a concurrent change is a 409 instead of a silent overwrite; Services get a JSON patch
whose `test` operation makes the selector switch conditional on the slot it was planned from.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from steps.stage.errors import StageError, one_line
from steps.stage.secrets import shown

FIELD_MANAGER = "imdb-sentiment-deploy"  # shows in managedFields: who changed image and selector
STRATEGIC_MERGE = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class KubeError(StageError):
    """A Kubernetes API call failed (unreachable, unauthorised, not found, conflict...)."""


class NoKubeConfig(KubeError):
    """No Kubernetes configuration at all: no kubeconfig file, no in-cluster service account."""


@dataclass(frozen=True)
class Rollout:
    """A Deployment's spec and status, as much as deploy needs of them."""

    name: str
    generation: int
    resource_version: str
    annotations: Mapping[str, str]
    images: Mapping[str, str]  # container name -> image
    desired: int  # spec.replicas
    observed_generation: int
    replicas: int  # pods of any template
    updated: int  # pods of the current template
    available: int
    stalled: str | None  # the Progressing condition's message once the deadline has passed

    @property
    def ready(self) -> bool:
        """The rollout is complete: `kubectl rollout status` would say 'successfully rolled out'."""
        return (
            self.observed_generation >= self.generation
            and self.updated == self.desired
            and self.replicas == self.updated
            and self.available == self.desired
        )

    def progress(self) -> str:
        return (
            f"{self.updated}/{self.desired} updated, {self.available}/{self.desired} available,"
            f" {self.replicas} total (generation {self.observed_generation}/{self.generation})"
        )


class Kube:
    """The Kubernetes calls deploy makes, in one namespace."""

    def __init__(self, api_client: client.ApiClient, namespace: str, timeout: float) -> None:
        self.api_client = api_client
        self.namespace = namespace
        self.timeout = timeout
        self._apps = client.AppsV1Api(api_client)
        self._core = client.CoreV1Api(api_client)
        self._autoscaling = client.AutoscalingV2Api(api_client)

    @classmethod
    def connect(cls, namespace: str, context: str = "", timeout: float = 30.0) -> Kube:
        """Load credentials: in-cluster (in a pod, no context given) or kubeconfig ($KUBECONFIG).

        A kubeconfig that is not YAML, or YAML of the wrong shape, is one line naming the file
        (the client raises whatever its parser met: YAML errors, TypeError, AttributeError...).
        """
        where = "the in-cluster service account"
        config_file = ""
        try:
            if not context and os.environ.get("KUBERNETES_SERVICE_HOST"):
                configuration = client.Configuration()
                config.load_incluster_config(client_configuration=configuration)
                api_client = client.ApiClient(configuration)
            else:
                # Read $KUBECONFIG now: the client reads it once, when it is imported.
                config_file = os.environ.get("KUBECONFIG") or "~/.kube/config"
                where = f"kubeconfig {shown(config_file)}"
                api_client = config.new_client_from_config(
                    config_file=config_file, context=context or None, persist_config=False
                )
        except yaml.YAMLError as exc:
            raise KubeError(
                f"{where} is not valid YAML ({one_line(exc, 200)}): fix it or point KUBECONFIG at"
                " another file"
            ) from None
        except (TypeError, AttributeError, KeyError, ValueError) as exc:
            raise KubeError(
                f"{where} is not a kubeconfig the client can read ({type(exc).__name__}:"
                f" {one_line(exc, 200)}): check its clusters, contexts and users"
                " (kubectl config view)"
            ) from None
        except (ConfigException, OSError) as exc:
            if config_file and _present(config_file):
                # A kubeconfig that is there but unusable is a mistake to report, not "no
                # cluster" (a dry run would plan from the manifests as if there were none).
                raise KubeError(
                    f"{where} is not a usable kubeconfig ({one_line(exc, 200)}): fix it"
                    " (kubectl config view) or point KUBECONFIG at another file"
                ) from None
            raise NoKubeConfig(
                f"no usable Kubernetes configuration in {where} ({one_line(exc)}): set KUBECONFIG,"
                " create ~/.kube/config or run in a pod with a service account"
            ) from None
        return cls(api_client, namespace, timeout)

    @property
    def server(self) -> str:
        return self.api_client.configuration.host

    def deployment(self, name: str) -> Rollout:
        """GET the Deployment."""
        with self._call("read", "deployment", name):
            return _rollout(
                self._apps.read_namespaced_deployment(
                    name, self.namespace, _request_timeout=self.timeout
                )
            )

    def rollout(self, name: str) -> Rollout:
        """GET the Deployment's status subresource (what a rollout wait polls)."""
        with self._call("read status of", "deployment", name):
            return _rollout(
                self._apps.read_namespaced_deployment_status(
                    name, self.namespace, _request_timeout=self.timeout
                )
            )

    def patch_deployment(self, name: str, patch: Mapping[str, Any]) -> Rollout:
        """Strategic-merge-patch the Deployment; return it as the API server now has it."""
        with self._call("patch", "deployment", name):
            return _rollout(
                self._apps.patch_namespaced_deployment(
                    name,
                    self.namespace,
                    dict(patch),
                    field_manager=FIELD_MANAGER,
                    _content_type=STRATEGIC_MERGE,
                    _request_timeout=self.timeout,
                )
            )

    def service_selector(self, name: str) -> dict[str, str]:
        """GET the Service; return its selector."""
        with self._call("read", "service", name):
            service = self._core.read_namespaced_service(
                name, self.namespace, _request_timeout=self.timeout
            )
        return dict((service.spec and service.spec.selector) or {})

    def patch_service(self, name: str, operations: list[dict[str, Any]]) -> dict[str, str]:
        """JSON-patch the Service (RFC 6902 operations); return its new selector."""
        with self._call("patch", "service", name):
            service = self._json_patch(self._core.patch_namespaced_service, name, operations)
        return dict((service.spec and service.spec.selector) or {})

    def autoscaler_min(self, name: str) -> int | None:
        """GET the HorizontalPodAutoscaler; its minReplicas, or None if there is no such HPA."""
        with self._call("read", "horizontalpodautoscaler", name):
            try:
                hpa = self._autoscaling.read_namespaced_horizontal_pod_autoscaler(
                    name, self.namespace, _request_timeout=self.timeout
                )
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise
        return hpa.spec.min_replicas if hpa.spec.min_replicas is not None else 1

    def set_autoscaler_min(self, name: str, replicas: int) -> int:
        """JSON-patch the HorizontalPodAutoscaler's minReplicas; return it as now stored."""
        operations = [{"op": "replace", "path": "/spec/minReplicas", "value": replicas}]
        with self._call("patch", "horizontalpodautoscaler", name):
            hpa = self._json_patch(
                self._autoscaling.patch_namespaced_horizontal_pod_autoscaler, name, operations
            )
        return hpa.spec.min_replicas

    def _json_patch(self, patch: Any, name: str, operations: list[dict[str, Any]]) -> Any:
        """One of the client's patch_namespaced_* calls with a JSON patch, as this adapter's."""
        return patch(
            name,
            self.namespace,
            operations,
            field_manager=FIELD_MANAGER,
            _content_type=JSON_PATCH,
            _request_timeout=self.timeout,
        )

    def proxy_post(
        self, service: str, port: str, path: str, payload: Any, timeout: float | None = None
    ) -> tuple[int, bytes]:
        """POST JSON to a Service through the API server's service proxy; return status, body.

        The generated `connect_post_namespaced_service_proxy_with_path` takes no body, so the
        request is built with the same ApiClient (same host, TLS and credentials).
        """
        resource = (
            f"/api/v1/namespaces/{self.namespace}/services/{service}:{port}/proxy/"
            + path.lstrip("/")
        )
        with self._call("POST through the proxy of", "service", service):
            method, url, headers, body, _ = self.api_client.param_serialize(
                "POST",
                resource,
                header_params={"Content-Type": "application/json", "Accept": "application/json"},
                body=payload,
                auth_settings=["BearerToken"],
            )
            response = self.api_client.call_api(
                method, url, header_params=headers, body=body,
                _request_timeout=timeout or self.timeout,
            )  # fmt: skip
            response.read()
            return response.status, response.data or b""

    @contextmanager
    def _call(self, verb: str, kind: str, name: str) -> Iterator[None]:
        where = f"{verb} {kind} {self.namespace}/{name}"
        try:
            yield
        except ApiException as exc:
            raise KubeError(f"{where}: HTTP {exc.status} {_api_message(exc)}") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeError(
                f"{where}: cannot reach the Kubernetes API at {self.server} ({one_line(exc)})"
            ) from None


def _rollout(deployment: client.V1Deployment) -> Rollout:
    meta, spec, status = deployment.metadata, deployment.spec, deployment.status
    containers = spec.template.spec.containers if spec and spec.template.spec else []
    stalled = None
    for condition in (status and status.conditions) or []:
        if condition.type == "Progressing" and condition.reason == "ProgressDeadlineExceeded":
            stalled = condition.message or condition.reason
    return Rollout(
        name=meta.name,
        generation=meta.generation or 0,
        resource_version=meta.resource_version or "",
        annotations=dict(meta.annotations or {}),
        images={c.name: c.image for c in containers},
        desired=spec.replicas if spec.replicas is not None else 1,
        observed_generation=(status and status.observed_generation) or 0,
        replicas=(status and status.replicas) or 0,
        updated=(status and status.updated_replicas) or 0,
        available=(status and status.available_replicas) or 0,
        stalled=stalled,
    )


def _api_message(exc: ApiException) -> str:
    """The Status message the API server sent, else the HTTP reason."""
    try:
        message = json.loads(exc.body or "").get("message")
    except (ValueError, AttributeError):
        message = None
    return one_line(f"{exc.reason}: {message}" if message else str(exc.reason))


def _present(config_file: str) -> bool:
    """Whether any file of a KUBECONFIG (paths joined by the OS separator) is there at all."""
    return any(Path(p).expanduser().exists() for p in config_file.split(os.pathsep) if p)

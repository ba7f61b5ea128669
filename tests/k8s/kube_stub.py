"""A Kubernetes API server stand-in on 127.0.0.1 that speaks the real REST wire protocol.

No cluster can run here, so the adapter is driven through the real `kubernetes` client against
this server. It implements exactly the endpoints the adapter uses, with the API server's
semantics where they matter to deploy:

- apps/v1 Deployments: GET, GET .../status, PATCH with `application/strategic-merge-patch+json`
  (maps merged, `containers`/`env`/`ports`/`volumeMounts` merged by name; a `resourceVersion`
  in the patch is a precondition: 409 Conflict when stale); `generation` moves only when the
  spec changes, as in the API server.
- v1 Services: GET, PATCH with `application/json-patch+json` (RFC 6902 add/replace/remove/test;
  a failed `test` is 422, as the API server answers).
- autoscaling/v2 HorizontalPodAutoscalers: GET, PATCH with `application/json-patch+json`. No
  autoscaling happens: like an HPA whose target is at zero, they only hold their floor.
- the service proxy: POST /api/v1/namespaces/{ns}/services/{name}:{port}/proxy/{path} is
  forwarded to the pods the Service selects, which here are real `mlflow models serve`
  processes: `images` maps an image to the URL of the server that "runs" it.
- a toy Deployment controller: a rollout completes after `rollout_reads` status reads when its
  image has a server in `images`; otherwise the new pod never becomes ready (a bad image), and
  the old pods keep serving, as with maxUnavailable 0.

Every request is recorded (method, path, query, content type, parsed body) for the tests.
Unsupported content types are 415, unknown objects 404, a missing or wrong token 401.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
MERGE_KEYS = {"containers": "name", "env": "name", "ports": "name", "volumeMounts": "name",
              "volumes": "name", "initContainers": "name"}  # fmt: skip

DEPLOYMENT = re.compile(
    r"^/apis/apps/v1/namespaces/(?P<ns>[^/]+)/deployments/(?P<name>[^/]+)(?P<status>/status)?$"
)
AUTOSCALER = re.compile(
    r"^/apis/autoscaling/v2/namespaces/(?P<ns>[^/]+)/horizontalpodautoscalers/(?P<name>[^/]+)$"
)
SERVICE = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/services/(?P<name>[^/:]+)$")
PROXY = re.compile(
    r"^/api/v1/namespaces/(?P<ns>[^/]+)/services/(?P<name>[^/:]+)(?::(?P<port>[^/]+))?"
    r"/proxy/(?P<path>.*)$"
)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str | None
    body: Any  # parsed JSON, or None


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


class FakeCluster:
    """The objects the stub serves, and the toy controller that moves rollouts on."""

    def __init__(self, namespace: str, rollout_reads: int = 2) -> None:
        self.namespace = namespace
        self.rollout_reads = rollout_reads
        self.deployments: dict[str, dict] = {}
        self.services: dict[str, dict] = {}
        self.autoscalers: dict[str, dict] = {}
        self.images: dict[str, str] = {}  # image -> URL of a real model server
        self.requests: list[Request] = []
        self.lock = threading.RLock()
        self._resource_version = 100
        self._pending: dict[str, int] = {}  # deployment -> status reads left in its rollout

    # set-up

    def load(self, manifests: list[dict]) -> None:
        """Create the Deployments and Services of a manifest set, settled (rollouts complete)."""
        for doc in manifests:
            if doc["kind"] == "Deployment":
                obj = copy.deepcopy(doc)
                obj["metadata"].update(generation=1, resourceVersion=self._next_rv(), uid="u")
                obj["spec"].setdefault("replicas", 2)  # what the HPA's minReplicas would set
                obj["status"] = {}
                self._settle(obj, old_available=0)
                self.deployments[obj["metadata"]["name"]] = obj
            elif doc["kind"] in ("Service", "HorizontalPodAutoscaler"):
                obj = copy.deepcopy(doc)
                obj["metadata"]["resourceVersion"] = self._next_rv()
                store = self.services if doc["kind"] == "Service" else self.autoscalers
                store[obj["metadata"]["name"]] = obj

    def set_running(self, deployment: str, image: str, annotations: dict[str, str]) -> None:
        """Seed a Deployment as if an earlier rollout of `image` had completed."""
        with self.lock:
            obj = self.deployments[deployment]
            obj["metadata"].setdefault("annotations", {}).update(annotations)
            _container(obj)["image"] = image
            obj["metadata"]["generation"] += 1
            obj["metadata"]["resourceVersion"] = self._next_rv()
            self._settle(obj, old_available=0)

    def patches(self, kind: str | None = None) -> list[Request]:
        return [
            r for r in self.requests
            if r.method == "PATCH" and (kind is None or f"/{kind}/" in r.path)
        ]  # fmt: skip

    def selector(self, service: str) -> dict[str, str]:
        return dict(self.services[service]["spec"]["selector"])

    def replicas(self, deployment: str) -> int:
        return self.deployments[deployment]["spec"]["replicas"]

    def floor(self, autoscaler: str) -> int:
        return self.autoscalers[autoscaler]["spec"]["minReplicas"]

    def image(self, deployment: str) -> str:
        return self.deployments[deployment]["spec"]["template"]["spec"]["containers"][0]["image"]

    # the API

    def handle(self, method: str, path: str, query: dict, content_type: str | None, raw: bytes):
        """Return (status, content type, body bytes)."""
        body = json.loads(raw) if raw and content_type and "json" in content_type else None
        with self.lock:
            self.requests.append(Request(method, path, query, content_type, body))
        if match := PROXY.match(path):
            self._check_namespace(match["ns"])
            if method != "POST":
                raise ApiError(405, "MethodNotAllowed", f"{method} is not proxied by the stub")
            return self._proxy(match["name"], match["port"], match["path"], content_type, raw)
        with self.lock:
            if match := DEPLOYMENT.match(path):
                self._check_namespace(match["ns"])
                obj = self._get("deployments", self.deployments, match["name"], "apps")
                if method == "GET":
                    if match["status"]:
                        self._controller_tick(obj)
                    return _json(200, obj)
                if method == "PATCH" and not match["status"]:
                    return _json(200, self._patch_deployment(obj, content_type, body))
            elif match := SERVICE.match(path):
                self._check_namespace(match["ns"])
                obj = self._get("services", self.services, match["name"], "")
                if method == "GET":
                    return _json(200, obj)
                if method == "PATCH":
                    return _json(200, self._patch_service(obj, content_type, body))
            elif match := AUTOSCALER.match(path):
                self._check_namespace(match["ns"])
                name = match["name"]
                obj = self._get("horizontalpodautoscalers", self.autoscalers, name, "autoscaling")
                if method == "GET":
                    return _json(200, obj)
                if method == "PATCH":
                    if content_type != JSON_PATCH:
                        raise ApiError(415, "UnsupportedMediaType", f"expected {JSON_PATCH}")
                    patched = _json_patch(obj, body)
                    patched["metadata"]["resourceVersion"] = self._next_rv()
                    self.autoscalers[name] = patched
                    return _json(200, patched)
            else:
                raise ApiError(404, "NotFound", f"the stub does not serve {path}")
        raise ApiError(405, "MethodNotAllowed", f"{method} {path} is not supported by the stub")

    def _check_namespace(self, namespace: str) -> None:
        if namespace != self.namespace:
            raise ApiError(404, "NotFound", f'namespaces "{namespace}" not found')

    def _get(self, plural: str, store: dict, name: str, group: str) -> dict:
        if name not in store:
            resource = f"{plural}.{group}" if group else plural
            raise ApiError(404, "NotFound", f'{resource} "{name}" not found')
        return store[name]

    def _patch_deployment(self, obj: dict, content_type: str | None, patch: Any) -> dict:
        if content_type != STRATEGIC:
            raise ApiError(415, "UnsupportedMediaType", f"the stub expects {STRATEGIC} here")
        patch = copy.deepcopy(patch)
        expected_rv = patch.get("metadata", {}).pop("resourceVersion", None)
        if expected_rv is not None and expected_rv != obj["metadata"]["resourceVersion"]:
            raise ApiError(
                409, "Conflict",
                f'Operation cannot be fulfilled on deployments.apps "{obj["metadata"]["name"]}":'
                " the object has been modified; please apply your changes to the latest version"
                " and try again",
            )  # fmt: skip
        old_spec = copy.deepcopy(obj["spec"])
        old_available = obj["status"].get("availableReplicas", 0)
        _strategic_merge(obj, {k: v for k, v in patch.items() if k != "status"})
        obj["metadata"]["resourceVersion"] = self._next_rv()
        if obj["spec"] != old_spec:
            obj["metadata"]["generation"] += 1
            self._pending[obj["metadata"]["name"]] = self.rollout_reads
            obj["status"]["availableReplicas"] = old_available
        return obj

    def _patch_service(self, obj: dict, content_type: str | None, operations: Any) -> dict:
        if content_type != JSON_PATCH:
            raise ApiError(415, "UnsupportedMediaType", f"the stub expects {JSON_PATCH} here")
        patched = _json_patch(obj, operations)
        patched["metadata"]["resourceVersion"] = self._next_rv()
        self.services[obj["metadata"]["name"]] = patched
        return patched

    def _controller_tick(self, obj: dict) -> None:
        """The Deployment controller and kubelet, reduced to what a rollout wait can see."""
        name = obj["metadata"]["name"]
        if name not in self._pending:
            return
        self._pending[name] -= 1
        if self._pending[name] > 0:
            return
        del self._pending[name]
        self._settle(obj, old_available=obj["status"].get("availableReplicas", 0))

    def _settle(self, obj: dict, old_available: int) -> None:
        desired = obj["spec"]["replicas"]
        status = obj["status"]
        status["observedGeneration"] = obj["metadata"]["generation"]
        if self.healthy(obj):
            status.update(replicas=desired, updatedReplicas=desired, readyReplicas=desired,
                          availableReplicas=desired, unavailableReplicas=0)  # fmt: skip
        else:  # one surge pod that never gets ready; the old pods go on serving
            status.update(replicas=old_available + 1, updatedReplicas=1,
                          availableReplicas=old_available, readyReplicas=old_available,
                          unavailableReplicas=desired - old_available)  # fmt: skip

    def healthy(self, obj: dict) -> bool:
        return _container(obj)["image"] in self.images

    def _proxy(self, service: str, port: str | None, path: str, content_type, raw: bytes):
        with self.lock:
            svc = self._get("services", self.services, service, "")
            names = [p.get("name") for p in svc["spec"]["ports"]]
            if port is not None and port not in names:
                raise ApiError(
                    503, "ServiceUnavailable", f'no service port "{port}" found for service'
                    f' "{service}"'
                )  # fmt: skip
            selector = svc["spec"]["selector"]
            backends = [
                self.images[_container(d)["image"]]
                for d in self.deployments.values()
                if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
                and d["status"].get("availableReplicas", 0) > 0
                and self.healthy(d)
            ]
        if not backends:
            raise ApiError(
                503, "ServiceUnavailable", f'no endpoints available for service "{service}"'
            )
        request = urllib.request.Request(
            f"{backends[0]}/{path}", data=raw, method="POST",
            headers={"Content-Type": content_type or "application/json"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.headers.get("Content-Type"), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("Content-Type"), exc.read()

    def _next_rv(self) -> str:
        self._resource_version += 1
        return str(self._resource_version)


def _container(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]["containers"][0]


def _json(status: int, obj: dict) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(obj).encode()


def _strategic_merge(target: dict, patch: dict) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _strategic_merge(target[key], value)
        elif key in MERGE_KEYS and isinstance(value, list) and isinstance(target.get(key), list):
            merge_key = MERGE_KEYS[key]
            for item in value:
                existing = [t for t in target[key] if t.get(merge_key) == item.get(merge_key)]
                if existing:
                    _strategic_merge(existing[0], item)
                else:
                    target[key].append(copy.deepcopy(item))
        else:
            target[key] = copy.deepcopy(value)


def _json_patch(obj: dict, operations: Any) -> dict:
    if not isinstance(operations, list):
        raise ApiError(400, "BadRequest", "a JSON patch must be a list of operations")
    doc = copy.deepcopy(obj)
    for op in operations:
        *parents, last = [
            p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]
        ]
        node = doc
        for part in parents:
            if not isinstance(node, dict) or part not in node:
                raise ApiError(422, "Invalid", f"jsonpatch: path {op['path']} does not exist")
            node = node[part]
        kind = op["op"]
        if kind == "test":
            if node.get(last) != op["value"]:
                raise ApiError(
                    422, "Invalid",
                    f"the server rejected our request due to an error in our request: testing"
                    f" value {op['path']} failed: {node.get(last)!r} is not {op['value']!r}",
                )  # fmt: skip
        elif kind == "add":
            node[last] = op["value"]
        elif kind == "replace":
            if last not in node:
                raise ApiError(422, "Invalid", f"jsonpatch replace: missing key {op['path']}")
            node[last] = op["value"]
        elif kind == "remove":
            node.pop(last, None)
        else:
            raise ApiError(400, "BadRequest", f"unsupported JSON patch op {kind!r}")
    return doc


class _Handler(BaseHTTPRequestHandler):
    cluster: FakeCluster
    token: str

    def do_GET(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            if self.headers.get("Authorization") != f"Bearer {self.token}":
                raise ApiError(401, "Unauthorized", "Unauthorized")
            status, content_type, body = self.cluster.handle(
                self.command, url.path, parse_qs(url.query),
                self.headers.get("Content-Type"), raw,
            )  # fmt: skip
        except ApiError as exc:
            status, content_type = exc.code, "application/json"
            body = json.dumps({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": exc.message, "reason": exc.reason, "code": exc.code,
            }).encode()  # fmt: skip
        self.send_response(status, HTTPStatus(status).phrase)
        self.send_header("Content-Type", content_type or "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass


class StubApiServer:
    """The stub on a free 127.0.0.1 port, in a thread; `kubeconfig()` writes a file for it."""

    def __init__(self, cluster: FakeCluster, token: str) -> None:
        handler = type("Handler", (_Handler,), {"cluster": cluster, "token": token})
        self.cluster = cluster
        self.token = token
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(  # a short poll: shutdown() waits for it
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> StubApiServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)

    def kubeconfig(self, path: Path, namespace: str) -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "stub", "cluster": {"server": self.url}}],
            "users": [{"name": "deployer", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": "stub",
                    "context": {"cluster": "stub", "user": "deployer", "namespace": namespace},
                }
            ],
            "current-context": "stub",
        }
        path.write_text(yaml.safe_dump(config))
        return path

"""Run an image the way a Kubernetes pod spec says, on a real Docker engine; a real registry.

`run_args(deployment, ...)` turns a Deployment's pod template (read from k8s/*.yaml by the test)
into `docker run` flags, so the manifest and the container the tests run cannot drift apart:

| pod spec | docker run |
| --- | --- |
| securityContext runAsUser / runAsGroup / fsGroup | `--user uid:gid --group-add fsGroup` |
| runAsNonRoot, seccompProfile RuntimeDefault | checked (uid != 0); Docker's default profile |
| container securityContext readOnlyRootFilesystem | `--read-only` |
| allowPrivilegeEscalation: false | `--security-opt no-new-privileges` |
| capabilities drop / add | `--cap-drop` / `--cap-add` |
| emptyDir volume + volumeMount | `-v <new host folder>:<mountPath>`, the folder world-writable |
| env, envFrom secretRef | `-e NAME=value` (secret values given by the test) |
| resources limits memory / cpu | `--memory` (= `--memory-swap`: no swap, like a pod) / `--cpus` |
| resources requests memory / cpu | `--memory-reservation` / `--cpu-shares` (1 CPU = 1024) |
| ports containerPort | `-p 127.0.0.1:<free port>:<port>` (loopback only) |
| terminationGracePeriodSeconds | `--stop-timeout`, and `docker stop -t` |
| args | arguments after the image |

An emptyDir's host folder is made as the kubelet makes it: world-writable, and with fsGroup
group-owned and setgid. (`--tmpfs` does not emulate it: Docker copies the image folder's mode,
root-only, onto the tmpfs.) Fields that need no flag are listed (`NO_FLAG`); any other field
is an error, so a field added to the manifest is either translated here or the test fails.

`Registry` is Debian's docker-registry (the CNCF distribution registry) on a free 127.0.0.1 port
with its storage in a temp folder. Docker treats 127.0.0.0/8 registries as insecure (plain http)
by default, so pushing needs no daemon configuration.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from support import free_port

DOCKER = "docker"
REGISTRY_BINARY = "docker-registry"
TEST_LABEL = "imdb-sentiment.test"  # on every container the tests start (for cleaning up)
# Pod and container fields that need no docker flag, and why.
NO_FLAG = {
    "automountServiceAccountToken",  # false: no token; Docker mounts none anyway
    "enableServiceLinks",  # false: no service env vars; Docker adds none
    "serviceAccountName",  # API credentials in a cluster; the tests give a kubeconfig instead
    "name",  # the container's name (part of the docker container name)
    "image",  # the manifest's placeholder; the test runs the image it built
    "imagePullPolicy",  # the test's engine has the image
    "startupProbe",  # the wait for /ping uses its budget (startup_budget)
    "readinessProbe",
    "livenessProbe",
}
MEMORY_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
                "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}  # fmt: skip


class PodSpecError(Exception):
    """A field of the pod spec this translation does not know: translate it, or list it."""


REQUIRE_ENV = "IMDB_REQUIRE_DOCKER"  # set by .ci/run: a missing engine is then a failure


def require(problem: str | None) -> None:
    """Skip the test when something it needs (engine, registry, mmdebstrap) is missing, saying
    what and how to get it; fail instead where IMDB_REQUIRE_DOCKER is set (CI)."""
    if problem is None:
        return
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{problem}; {REQUIRE_ENV} is set, so this is an error")
    pytest.skip(problem)


@functools.cache
def engine_problem() -> str | None:
    """None when a Docker engine answers, else what is missing and how to get it (asked once)."""
    how = "start one with `sudo .ci/start-dockerd` (installs Debian's docker.io)"
    if shutil.which(DOCKER) is None:
        return f"no `docker` command on PATH: {how}"
    try:
        done = subprocess.run(
            [DOCKER, "version", "--format", "{{.Server.Version}}"],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return "the Docker engine did not answer `docker version` within 20 s"
    if done.returncode or not done.stdout.strip():
        lines = done.stderr.strip().splitlines() or ["no answer"]
        return f"no Docker engine answers ({lines[-1]}): {how}"
    return None


def memory_bytes(quantity: str | int) -> int:
    """A Kubernetes memory quantity ("2Gi", "512Mi", "1G", 1000) in bytes."""
    found = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]*)", str(quantity))
    if not found or found[2] not in MEMORY_UNITS:
        raise PodSpecError(f"memory quantity {quantity!r}")
    return int(float(found[1]) * MEMORY_UNITS[found[2]])


def cpus(quantity: str | int | float) -> float:
    """A Kubernetes CPU quantity ("2", "500m", 0.5) in CPUs."""
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _env_value(entry: dict, metadata: Mapping[str, Mapping[str, str]]) -> str:
    """A container env entry's value: as given, or read from a pod label or annotation
    (fieldRef) as the kubelet does (an absent one: empty); anything else is not emulated."""
    if "value" in entry:
        return str(entry["value"])
    field = entry.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath", "")
    found = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", field)
    if found is None:
        raise PodSpecError(
            f"env {entry['name']}: only values and pod label or annotation fieldRefs are emulated"
        )
    return str(metadata.get(found.group(1), {}).get(found.group(2), ""))


def pod_template(deployment: dict) -> tuple[dict, dict]:
    """(pod spec, its only container) of a Deployment."""
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return pod, container


def startup_budget(container: dict) -> float:
    """Seconds the kubelet gives a container to pass its startupProbe."""
    probe = container.get("startupProbe") or container.get("readinessProbe") or {}
    return probe.get("initialDelaySeconds", 0) + probe.get("periodSeconds", 10) * probe.get(
        "failureThreshold", 3
    )


@dataclass
class PodRun:
    """What `run_args` made: the flags, and the host folders standing in for emptyDirs."""

    args: list[str]
    name: str
    ports: dict[int, int]  # container port -> 127.0.0.1 port
    stop_timeout: int
    empty_dirs: dict[str, Path] = field(default_factory=dict)  # mount path -> host folder


def run_args(
    deployment: dict,
    image: str,
    volumes_root: Path,
    *,
    secrets: Mapping[str, Mapping[str, str]] | None = None,
    network: str | None = None,
    extra_env: Mapping[str, str] | None = None,
    extra_volumes: Mapping[Path, str] | None = None,
    args: list[str] | None = None,
) -> PodRun:
    """`docker run -d` arguments that run `image` as the Deployment's pod (see the module
    docstring). `network="host"` shares the host's network (and publishes no ports);
    `extra_volumes` (host folder -> path) stand in for what a cluster provides otherwise (a
    service account's credentials, a store reached over the network)."""
    pod, container = pod_template(deployment)
    flags: list[str] = []
    name = f"{container['name']}-{uuid.uuid4().hex[:8]}"
    pod_security = dict(pod.get("securityContext", {}))
    uid, gid = pod_security.pop("runAsUser", None), pod_security.pop("runAsGroup", None)
    if pod_security.pop("runAsNonRoot", False) and not uid:
        raise PodSpecError("runAsNonRoot without a non-zero runAsUser")
    if uid is not None:
        flags += ["--user", f"{uid}:{gid if gid is not None else uid}"]
    fs_group = pod_security.pop("fsGroup", None)
    if fs_group is not None:
        flags += ["--group-add", str(fs_group)]
    seccomp = pod_security.pop("seccompProfile", {"type": "RuntimeDefault"})
    if seccomp != {"type": "RuntimeDefault"}:
        raise PodSpecError(f"seccompProfile {seccomp}: only RuntimeDefault (Docker's default)")
    _no_more(pod_security, "pod securityContext")

    pod_rest = {k: v for k, v in pod.items() if k not in ("securityContext", "containers")}
    stop_timeout = int(pod_rest.pop("terminationGracePeriodSeconds", 30))
    flags += ["--stop-timeout", str(stop_timeout)]
    volumes = {v["name"]: v for v in pod_rest.pop("volumes", [])}
    _no_more({k: v for k, v in pod_rest.items() if k not in NO_FLAG}, "pod spec")

    rest = {k: v for k, v in container.items() if k not in NO_FLAG}
    security = dict(rest.pop("securityContext", {}))
    if security.pop("readOnlyRootFilesystem", False):
        flags.append("--read-only")
    if security.pop("allowPrivilegeEscalation", True) is False:
        flags += ["--security-opt", "no-new-privileges"]
    capabilities = security.pop("capabilities", {})
    flags += [f"--cap-drop={c}" for c in capabilities.pop("drop", [])]
    flags += [f"--cap-add={c}" for c in capabilities.pop("add", [])]
    _no_more(capabilities, "capabilities")
    _no_more(security, "container securityContext")

    empty_dirs = {}
    for mount in rest.pop("volumeMounts", []):
        volume = dict(volumes[mount["name"]])
        volume.pop("name")
        if set(volume) != {"emptyDir"}:
            raise PodSpecError(f"volume {mount['name']}: only emptyDir is emulated")
        host = volumes_root / mount["name"]
        host.mkdir(parents=True)
        # The kubelet makes an emptyDir world-writable, and with fsGroup group-owned and setgid.
        if fs_group is not None:
            with contextlib.suppress(PermissionError):  # not root: world-writable suffices
                os.chown(host, -1, fs_group)
        Path(host).chmod(0o2777 if fs_group is not None else 0o777)
        flags += ["-v", f"{host}:{mount['mountPath']}{':ro' if mount.get('readOnly') else ''}"]
        empty_dirs[mount["mountPath"]] = host

    for host, path in (extra_volumes or {}).items():
        flags += ["-v", f"{host}:{path}"]

    metadata = deployment["spec"]["template"].get("metadata", {})
    env = {e["name"]: _env_value(e, metadata) for e in rest.pop("env", [])}
    for source in rest.pop("envFrom", []):
        secret = source["secretRef"]["name"]
        if secrets is None or secret not in secrets:
            raise PodSpecError(f"envFrom secret {secret!r}: give its values")
        env.update(secrets[secret])
    env.update(extra_env or {})
    for key, value in env.items():
        flags += ["-e", f"{key}={value}"]

    resources = rest.pop("resources", {})
    limits, requests = resources.get("limits", {}), resources.get("requests", {})
    if "memory" in limits:
        memory = memory_bytes(limits["memory"])
        flags += ["--memory", str(memory), "--memory-swap", str(memory)]  # a pod has no swap
    if "cpu" in limits:
        flags += ["--cpus", f"{cpus(limits['cpu']):g}"]
    if "memory" in requests:
        flags += ["--memory-reservation", str(memory_bytes(requests["memory"]))]
    if "cpu" in requests:
        flags += ["--cpu-shares", str(max(2, round(cpus(requests["cpu"]) * 1024)))]

    ports = {}
    for port in rest.pop("ports", []):
        if network == "host":
            continue
        ports[port["containerPort"]] = free_port()
        flags += ["-p", f"127.0.0.1:{ports[port['containerPort']]}:{port['containerPort']}"]
    if network:
        flags += ["--network", network]
    manifest_args = rest.pop("args", [])
    _no_more(rest, f"container {container['name']}")

    command = ["run", "-d", "--name", name, "--label", f"{TEST_LABEL}=1", *flags, image]
    return PodRun(command + list(args if args is not None else manifest_args), name, ports,
                  stop_timeout, empty_dirs)  # fmt: skip


def _no_more(fields: Mapping, where: str) -> None:
    if fields:
        raise PodSpecError(f"{where}: no docker run translation for {sorted(fields)}")


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode:
        raise RuntimeError(f"docker {' '.join(args[:3])}: {done.stderr.strip()[-2000:]}")
    return done


@dataclass
class Container:
    """A container started with `run_args`."""

    run: PodRun
    id: str
    started_at: float  # time.perf_counter() just before `docker run`

    @property
    def name(self) -> str:
        return self.run.name

    def url(self, container_port: int = 8080) -> str:
        return f"http://127.0.0.1:{self.run.ports[container_port]}"

    def state(self) -> dict:
        return json.loads(docker("inspect", "--format", "{{json .State}}", self.id).stdout)

    def logs(self, tail: int = 60) -> str:
        done = docker("logs", "--tail", str(tail), self.id, check=False)
        return (done.stdout + done.stderr).strip()

    def wait_ready(self, budget: float, path: str = "/ping", port: int = 8080) -> float:
        """Poll GET path until 200; seconds since `docker run`. Bounded by `budget`."""
        deadline = self.started_at + budget
        while time.perf_counter() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url(port)}{path}", timeout=2) as response:
                    if response.status == 200:
                        return time.perf_counter() - self.started_at
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            state = self.state()
            if not state["Running"]:
                raise RuntimeError(
                    f"container exited with code {state['ExitCode']} before answering {path}:"
                    f"\n{self.logs()}"
                )
            time.sleep(0.2)
        raise RuntimeError(f"no 200 on {path} within {budget:.0f} s:\n{self.logs()}")

    def wait_exit(self, timeout: float) -> dict:
        """The final state, once the container has exited by itself (bounded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.state()
            if not state["Running"]:
                return state
            time.sleep(0.2)
        raise RuntimeError(f"container still running after {timeout:.0f} s:\n{self.logs()}")

    def stop(self) -> tuple[float, dict]:
        """`docker stop` with the pod's grace period; (seconds it took, final state)."""
        start = time.perf_counter()
        docker("stop", "-t", str(self.run.stop_timeout), self.id,
               timeout=self.run.stop_timeout + 60)  # fmt: skip
        return time.perf_counter() - start, self.state()

    def remove(self) -> None:
        docker("rm", "-f", "-v", self.id, check=False)

    def cgroup(self) -> CgroupMemory:
        return CgroupMemory.of(self.id)

    def cpu_seconds(self) -> float:
        """CPU time used by every process in the container so far (user + system)."""
        v1 = Path(f"/sys/fs/cgroup/cpuacct/docker/{self.id}/cpuacct.usage")
        if v1.is_file():
            return int(v1.read_text()) / 1e9
        memory = self.cgroup()
        stat = (memory.path / "cpu.stat").read_text().split()
        return int(stat[stat.index("usage_usec") + 1]) / 1e6


def start(run: PodRun) -> Container:
    started = time.perf_counter()
    done = docker(*run.args)
    return Container(run, done.stdout.strip(), started)


@contextlib.contextmanager
def running(run: PodRun) -> Iterator[Container]:
    container = start(run)
    try:
        yield container
    finally:
        container.remove()


@dataclass
class CgroupMemory:
    """The memory cgroup of a container (cgroup v1, as Debian 12's dockerd here, or v2)."""

    path: Path
    v2: bool

    @classmethod
    def of(cls, container_id: str) -> CgroupMemory:
        for path, v2 in (
            (Path(f"/sys/fs/cgroup/memory/docker/{container_id}"), False),
            (Path(f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope"), True),
            (Path(f"/sys/fs/cgroup/docker/{container_id}"), True),
        ):
            if path.is_dir():
                return cls(path, v2)
        raise RuntimeError(f"no memory cgroup found for container {container_id[:12]}")

    def _stat(self) -> dict[str, int]:
        lines = (self.path / "memory.stat").read_text().splitlines()
        return {k: int(v) for k, v in (line.split() for line in lines)}

    def rss(self) -> int:
        """Anonymous memory of every process in the container (what the OOM killer counts)."""
        stat = self._stat()
        return stat["anon"] if self.v2 else stat["total_rss"]

    def limit(self) -> int:
        name = "memory.max" if self.v2 else "memory.limit_in_bytes"
        return int((self.path / name).read_text().split()[0])

    def oom_kills(self) -> int:
        name = "memory.events" if self.v2 else "memory.oom_control"
        lines = (self.path / name).read_text().splitlines()
        values = {k: int(v) for k, v in (line.split() for line in lines)}
        return values.get("oom_kill", 0)


class PeakRss:
    """Sample a container's RSS every few milliseconds while the block runs; `.peak` in bytes."""

    def __init__(self, memory: CgroupMemory, interval: float = 0.02) -> None:
        self.memory, self.interval = memory, interval
        self.peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.is_set():
            with contextlib.suppress(OSError, KeyError):
                self.peak = max(self.peak, self.memory.rss())
            self._done.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=10)


# --- the registry ------------------------------------------------------------------------------


class Registry:
    """Debian's docker-registry on a free 127.0.0.1 port, storage in `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.log_path = root / "registry.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> Registry:
        config = {
            "version": 0.1,
            "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": str(self.root / "data")},
                        "delete": {"enabled": True}},
            "http": {"addr": self.host},
        }  # fmt: skip
        (self.root / "config.yml").write_text(yaml.safe_dump(config))
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [REGISTRY_BINARY, "serve", str(self.root / "config.yml")],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"docker-registry did not answer on {self.host} in {timeout:.0f} s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)

    def manifest_digest(self, repository: str, tag: str) -> str:
        """The digest the registry serves for repository:tag (its own Docker-Content-Digest).

        The Accept header matters: without it the registry converts to a schema-1 manifest,
        whose digest differs from what `docker push` reported.
        """
        request = urllib.request.Request(
            f"http://{self.host}/v2/{repository}/manifests/{tag}", method="HEAD",
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.headers["Docker-Content-Digest"]

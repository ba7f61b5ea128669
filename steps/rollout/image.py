"""The images: a model version's serving image, built by `mlflow models build-docker` and pushed
(pinned by the digest the registry gave it), and the deployer's image (k8s/deployer/Dockerfile).

Both start FROM python:<this Python>-slim, which the base-image rule provides first (pulled, or a
stand-in where Docker Hub is out of reach: base_image.py). The serving build runs MLflow's own CLI
in a child process with this interpreter, so the image holds the model exactly as the registry
has it, then adds a layer (k8s/serving-image/Dockerfile) with uvicorn's uvloop and httptools,
MLflow's nginx.conf with a bound on the request body (image.max_body_mb) and kept-alive upstream
connections, and time for busy uvicorn workers before their health check kills them.
The model's requirements are ranges; the layer pins its packages to the versions tested here, and a
version logged as pickles (which the image would refuse to load) is refused before any build.
`docker build` tags only a build that succeeded, and build-docker's own image gets a temporary
name, so a failed build leaves no tag behind (an earlier good image under the same tag stays as
it was).
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import re
import shutil
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from packaging.requirements import InvalidRequirement, Requirement

from steps.rollout import base_image, docker
from steps.stage.config import ImageConfig
from steps.stage.errors import StageError, one_line
from steps.stage.paths import PROJECT_ROOT
from steps.tracking import loading

log = logging.getLogger(__name__)

DEPLOYER_DOCKERFILE = PROJECT_ROOT / "k8s" / "deployer" / "Dockerfile"
CONSTRAINTS = "constraints.txt"  # written by constraints(), not a project file
COPY_LINE = re.compile(r"^COPY (.+) \S+$", re.M)
NOT_COPIED = shutil.ignore_patterns("__pycache__", "*.pyc")
# The layer on top of build-docker's image: uvicorn's fast loop and parser, nginx's body limit and
# upstream keepalive, uvicorn's health-check time.
SERVING_DIR = PROJECT_ROOT / "k8s" / "serving-image"
SERVER_PACKAGES = ("uvloop", "httptools")  # installed at this environment's versions


@dataclass(frozen=True)
class Built:
    """An image the engine now has under `ref`, and where its base came from."""

    ref: str
    base: base_image.BaseImage

    def describe(self) -> str:
        return f"built {self.ref} ({self.base.describe()})"


def build_command(uri: str, image: str) -> list[str]:
    """`mlflow models build-docker` for one model (the image serves on port 8080)."""
    return [
        sys.executable, "-m", "mlflow", "models", "build-docker",
        "-m", uri, "-n", image, "--env-manager", "local",
    ]  # fmt: skip


def build_serving_image(
    uri: str, image: str, cfg: ImageConfig, rootfs_cache: Path | None = None
) -> Built:
    """Build a model's serving image as `image`: base-image rule, then build-docker unchanged.

    Give a version's URI (models:/<name>/<version>), not an alias: an alias may move while the
    image builds, and the tag must name what is inside.
    """
    docker.check_engine()
    with tempfile.TemporaryDirectory(prefix="model.") as scratch:
        local = _download_model(uri, Path(scratch))
        if loading.is_pickled(local):  # the image refuses pickles (k8s/serving-image/Dockerfile)
            version = loading.registered_version(uri)
            raise StageError(loading.refusal(uri, version, where="in the serving image"))
        packages = [*SERVER_PACKAGES, *model_packages(local)]
        base = base_image.ensure(base_image.model_base_image(local), cfg, rootfs_cache)
    log.info("%s; building %s from %s", base.describe(), image, uri)
    # The child resolves models:/ against the same store (configure() may not have set the env).
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow.get_tracking_uri()}
    mlflow_image = with_tag_suffix(image, "build-docker")
    try:
        docker.run_echoed(build_command(uri, mlflow_image), "mlflow models build-docker", env)
        pins = " ".join(f"{p}=={importlib.metadata.version(p)}" for p in packages)
        docker.build(
            SERVING_DIR, image, MLFLOW_IMAGE=mlflow_image, MAX_BODY=f"{cfg.max_body_mb}m",
            SERVER_PACKAGES=pins,
        )  # fmt: skip
    finally:
        docker.untag(mlflow_image)  # its layers stay, under `image`
    return Built(image, base)


def model_packages(model_dir: Path) -> list[str]:
    """The packages the model's requirements.txt names (but mlflow, which MLflow pins itself),
    where this environment has a version in the model's range.

    The model states ranges (what its format needs); the image gets the versions tested here,
    as the deployer image does, rather than whatever is newest on the day it is built.
    """
    found = []
    path = Path(model_dir) / "requirements.txt"
    lines = path.read_text().splitlines() if path.is_file() else []
    for line in lines:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:  # -r/-c lines, comments, blanks
            continue
        try:
            here = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if requirement.name != "mlflow" and requirement.specifier.contains(here):
            found.append(requirement.name)
    return found


def with_tag_suffix(image: str, suffix: str) -> str:
    """repository:tag -> repository:tag-suffix (a temporary name beside the image's)."""
    repository, _, tag = image.rpartition(":")
    if not repository or "/" in tag:  # no tag given: Docker's default
        repository, tag = image, "latest"
    return f"{repository}:{tag}-{suffix}"


def build_and_push(uri: str, image: str, cfg: ImageConfig, rootfs_cache: Path | None = None) -> str:
    """Build a model version's serving image, push it; return it pinned: image@sha256:..."""
    build_serving_image(uri, image, cfg, rootfs_cache)
    return pinned(image, docker.push(image))


def pinned(image: str, digest: str) -> str:
    """`repository:tag@sha256:...`: Kubernetes pulls by the digest; the tag stays for people."""
    return f"{image.split('@', 1)[0]}@{digest}"


def build_deployer_image(tag: str, cfg: ImageConfig, rootfs_cache: Path | None = None) -> Built:
    """Build k8s/deployer/Dockerfile on python:<this Python>-slim, from a context holding what it
    copies and constraints.txt, which pins every package to the version this environment has."""
    docker.check_engine()
    base = base_image.ensure(base_image.python_slim(), cfg, rootfs_cache)
    python_version = base.ref.removeprefix("python:").removesuffix("-slim")
    with tempfile.TemporaryDirectory(prefix="deployer.") as scratch:
        context = Path(scratch)
        shutil.copyfile(DEPLOYER_DOCKERFILE, context / "Dockerfile")
        for source in copied_sources(DEPLOYER_DOCKERFILE):
            if source == CONSTRAINTS:
                (context / source).write_text(constraints())
            elif (PROJECT_ROOT / source).is_dir():
                shutil.copytree(PROJECT_ROOT / source, context / source, ignore=NOT_COPIED)
            else:
                shutil.copyfile(PROJECT_ROOT / source, context / source)
        docker.build(context, tag, PYTHON_VERSION=python_version)
    return Built(tag, base)


def copied_sources(dockerfile: Path) -> list[str]:
    """The sources of a Dockerfile's COPY lines (project paths, and constraints.txt)."""
    return [s for line in COPY_LINE.findall(dockerfile.read_text()) for s in line.split()]


def constraints() -> str:
    """`name==version` of every distribution in this environment but the project: the deployer
    image gets the versions the tests ran with, and pip has nothing to search for (left to
    itself, Debian's pip backtracks through hundreds of releases of dvc[s3]'s dependencies)."""
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["name"]
    pins = {
        f"{dist.metadata['Name']}=={dist.version}"
        for dist in importlib.metadata.distributions()
        if dist.metadata["Name"] and _normalized(dist.metadata["Name"]) != _normalized(project)
    }
    return "".join(f"{pin}\n" for pin in sorted(pins, key=str.lower))


def _normalized(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _download_model(uri: str, into: Path) -> Path:
    """The model's files (MLmodel, python_env.yaml...), or one line saying why not."""
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(into)))
    except (MlflowException, OSError) as exc:
        raise StageError(f"model {uri}: {one_line(exc, 300)}") from None
    loading.require_mlmodel(local, uri)
    return local

"""The base image rule: what `FROM` MLflow's Dockerfile asks for, and a stand-in where it cannot
be pulled.

`mlflow models build-docker --env-manager local` writes `FROM python:<the Python that saved the
model>-slim` (python:3.11.7-slim for a model saved from this project's venv) and Docker fetches it
from Docker Hub. `ensure` makes sure the engine has that image before a build:

1. present locally: used as it is (a local stand-in is first offered to `docker pull`, so the
   real image replaces it as soon as it can be pulled);
2. else `docker pull`, bounded by image.pull_timeout;
3. else a stand-in with the same name is built from Debian's packages: mmdebstrap makes a
   minimal root filesystem with Debian's Python, pip and venv, `docker import` loads it, and
   k8s/python-base/Dockerfile adds the CA trust and the settings python:*-slim has.

CA trust: a site whose egress re-signs TLS with its own CA (a TLS-inspecting proxy) breaks
`pip install` inside the build unless the image trusts that CA. The stand-in trusts the CA bundle
of the building host (or image.ca_bundle): pip, requests and Python's ssl are pointed at a
verbatim copy, and the certificates in it that no Debian ca-certificates package carries (the
site's own CAs; never roots Debian has since distrusted) join the system store. Verification is
never turned off.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import ssl
import tarfile
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mlflow.utils import PYTHON_VERSION

from steps.rollout import docker
from steps.stage.config import ImageConfig
from steps.stage.errors import StageError
from steps.stage.paths import PROJECT_ROOT

log = logging.getLogger(__name__)

DOCKERFILE_DIR = PROJECT_ROOT / "k8s" / "python-base"
STAND_IN_LABEL = "imdb-sentiment.stand-in-for"
# Debian's Python per release: the stand-in can only be a python:<major.minor>.x-slim of it.
SUITE_PYTHON = {"bookworm": "3.11", "trixie": "3.13"}
PACKAGES = ("python3", "python3-pip", "python3-venv", "python-is-python3", "ca-certificates",
            "netbase")  # fmt: skip
# What python:*-slim leaves out of a Debian system (docs, man pages, translations).
DPKG_EXCLUDES = ("/usr/share/man/*", "/usr/share/doc/*", "/usr/share/info/*",
                 "/usr/share/locale/*")  # fmt: skip
DPKG_INCLUDES = ("/usr/share/doc/*/copyright", "/usr/share/locale/locale.alias")
# Without it, bookworm's minbase pulls usrmerge and with it perl (48 MB more).
MERGED_USR_HOOKS = Path("/usr/share/mmdebstrap/hooks/merged-usr")
DEBIAN_CA_DIR = "usr/share/ca-certificates"  # where Debian's ca-certificates package puts them
PEM = re.compile(r"-----BEGIN CERTIFICATE-----\s+(.+?)\s+-----END CERTIFICATE-----", re.S)


@dataclass(frozen=True)
class BaseImage:
    """The base image a build starts FROM, and how the engine came to have it."""

    ref: str
    how: str  # present | pulled | stand-in present | built stand-in

    def describe(self) -> str:
        return f"base image {self.ref}: {self.how}"


def python_slim(version: str = PYTHON_VERSION) -> str:
    """The base MLflow writes for a model saved by Python `version` (default: this one)."""
    return f"python:{version}-slim"


def model_base_image(model_dir: Path) -> str:
    """The FROM line `mlflow models build-docker --env-manager local` writes for a local model.

    MLflow's own (private) decision, so the two cannot differ: python:<its Python>-slim, or
    ubuntu for Java flavours, which --env-manager local refuses (tests/k8s checks the FROM line
    of a real generated Dockerfile against this).
    """
    from mlflow.pyfunc.backend import PyFuncBackend

    return PyFuncBackend({}, env_manager="local")._get_base_image(
        str(model_dir), install_java=False
    )


def ensure(ref: str, cfg: ImageConfig, rootfs_cache: Path | None = None) -> BaseImage:
    """Make sure the engine has `ref`: present, pulled, or (when it cannot be pulled) a stand-in
    built from Debian's packages. `rootfs_cache` reuses one mmdebstrap tarball (tests)."""
    if docker.image_exists(ref):
        stand_in = docker.image_labels(ref).get(STAND_IN_LABEL)
        if not stand_in:
            return BaseImage(ref, "present")
        if docker.pull(ref, cfg.pull_timeout) is None:  # the real one replaces the stand-in
            return BaseImage(ref, "pulled (replaced the stand-in)")
        return BaseImage(ref, "stand-in present")
    why = docker.pull(ref, cfg.pull_timeout)
    if why is None:
        return BaseImage(ref, "pulled")
    log.warning("cannot pull %s (%s): building a stand-in from Debian's packages", ref, why)
    build_stand_in(ref, cfg, rootfs_cache=rootfs_cache)
    return BaseImage(ref, "built stand-in")


def build_stand_in(ref: str, cfg: ImageConfig, rootfs_cache: Path | None = None) -> None:
    """Build `ref` (python:<version>-slim) from Debian's packages; see the module docstring."""
    check_stand_in_possible(ref, cfg.debian_suite)
    bundle = ca_bundle(cfg.ca_bundle)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="base-image.") as scratch:
        work = Path(scratch)
        rootfs = rootfs_cache or work / f"rootfs-{cfg.debian_suite}.tar"
        if not rootfs.is_file():
            make_rootfs(rootfs, cfg.debian_suite, cfg.debian_mirror)
        context = work / "context"
        shutil.copytree(DOCKERFILE_DIR, context)
        shutil.copyfile(bundle, context / "ca-bundle.crt")
        site = site_certificates(bundle.read_text(), distro_certificates(rootfs))
        (context / "site-ca").mkdir()
        for number, pem in enumerate(site):
            (context / "site-ca" / f"site-{number}.crt").write_text(pem + "\n")
        log.info(
            "the stand-in trusts %s (%d certificates not in Debian's store)", bundle, len(site)
        )
        rootfs_tag = f"imdb-sentiment-rootfs:{cfg.debian_suite}-{os.getpid()}"
        docker.run_echoed([docker.DOCKER, "import", str(rootfs), rootfs_tag], "docker import")
        try:
            docker.build(context, ref, ROOTFS=rootfs_tag, STAND_IN_FOR=ref)
        finally:
            docker.untag(rootfs_tag)  # its layer stays, under the stand-in
    log.info("built the stand-in %s in %.0f s", ref, time.monotonic() - started)


def check_stand_in_possible(ref: str, suite: str) -> None:
    """Only python:<X.Y[.Z]>-slim of the suite's Python can be stood in for."""
    found = re.fullmatch(r"python:(\d+)\.(\d+)(?:\.\d+)?-slim", ref)
    if found is None:
        raise StageError(
            f"cannot pull {ref}, and a stand-in is only built for python:<version>-slim images"
        )
    if suite not in SUITE_PYTHON:
        raise StageError(
            f"image.debian_suite {suite!r}: known suites are {', '.join(SUITE_PYTHON)}"
        )
    wanted = f"{found[1]}.{found[2]}"
    if SUITE_PYTHON[suite] != wanted:
        raise StageError(
            f"cannot pull {ref}, and Debian {suite} has Python {SUITE_PYTHON[suite]}, not"
            f" {wanted}: set image.debian_suite to a release with Python {wanted}"
        )
    if shutil.which("mmdebstrap") is None:
        raise StageError(
            f"cannot pull {ref}, and building a stand-in needs mmdebstrap:"
            " apt-get install mmdebstrap (as root)"
        )


def ca_bundle(configured: str) -> Path:
    """The CA bundle the stand-in trusts: image.ca_bundle, else this host's default."""
    candidates = [configured] if configured else _default_bundles()
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            path = Path(candidate).resolve()
            if not PEM.search(path.read_text(errors="replace")):
                raise StageError(f"image.ca_bundle {candidate}: no PEM certificate in it")
            return path
    if configured:
        raise StageError(f"image.ca_bundle {configured}: no such file")
    raise StageError("no CA bundle found on this host: set image.ca_bundle to one (PEM)")


def _default_bundles() -> list[str]:
    paths = ssl.get_default_verify_paths()
    return [os.environ.get("SSL_CERT_FILE", ""), paths.cafile or "", paths.openssl_cafile]


def make_rootfs(out: Path, suite: str, mirror: str) -> None:
    """mmdebstrap a minimal Debian with Python into a tarball (about 150 MB, 40-150 s)."""
    log.info("mmdebstrap: Debian %s with Python from %s (a minute or two)", suite, mirror)
    mirror = mirror.rstrip("/")
    command = ["mmdebstrap", "--quiet", "--variant=minbase", "--format=tar",
               f"--include={','.join(PACKAGES)}",
               "--aptopt=APT::Install-Recommends \"false\""]  # fmt: skip
    if MERGED_USR_HOOKS.is_dir():
        command.append(f"--hook-dir={MERGED_USR_HOOKS}")
    command += [f"--dpkgopt=path-exclude={p}" for p in DPKG_EXCLUDES]
    command += [f"--dpkgopt=path-include={p}" for p in DPKG_INCLUDES]
    command += [
        suite, str(out),
        f"deb {mirror}/debian {suite} main",
        f"deb {mirror}/debian {suite}-updates main",
        f"deb {mirror}/debian-security {suite}-security main",
    ]  # fmt: skip
    partial = out.with_name(f".partial.{out.name}")
    command[command.index(str(out))] = str(partial)
    try:
        docker.run_echoed(command, "mmdebstrap")
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)


def distro_certificates(rootfs: Path) -> set[str]:
    """The certificates Debian ships, in the stand-in's rootfs and on this host."""
    known: set[str] = set()
    with tarfile.open(rootfs) as archive:
        for member in archive:
            name = member.name.removeprefix("./")
            if name.startswith(DEBIAN_CA_DIR) and name.endswith(".crt") and member.isfile():
                known |= pem_bodies(archive.extractfile(member).read().decode(errors="replace"))
    host = Path("/") / DEBIAN_CA_DIR
    if host.is_dir():
        for path in host.rglob("*.crt"):
            known |= pem_bodies(path.read_text(errors="replace"))
    return known


def pem_bodies(text: str) -> set[str]:
    """Each certificate's base64 body, whitespace removed (how two copies are compared)."""
    return {"".join(body.split()) for body in PEM.findall(text)}


def site_certificates(bundle: str, known: Iterable[str]) -> list[str]:
    """The certificates of a bundle that are not among `known` bodies (pem_bodies), as PEM.

    Against Debian's stores these are the site's own CAs. Subtracting the host's store as well
    as the image's keeps roots a newer ca-certificates has removed (distrusted) out of the image.
    """
    known = set(known)
    site, seen = [], set()
    for body in PEM.findall(bundle):
        key = "".join(body.split())
        if key not in known and key not in seen:
            seen.add(key)
            lines = [key[i : i + 64] for i in range(0, len(key), 64)]
            site.append(
                "\n".join(["-----BEGIN CERTIFICATE-----", *lines, "-----END CERTIFICATE-----"])
            )
    return site

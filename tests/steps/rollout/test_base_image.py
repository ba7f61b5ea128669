"""The base-image rule (steps/rollout/base_image.py): what is used when, the stand-in built from
Debian's packages, and the CA trust it carries.

The engine tests use a real Docker engine and Debian's docker-registry on 127.0.0.1; the stand-in
is built for real (mmdebstrap) under a tag no registry has, trusting a CA made by the test, and
checked inside a container against a TLS server on the host's loopback signed by that CA.
"""

from __future__ import annotations

import dataclasses
import datetime
import http.server
import io
import os
import shutil
import ssl
import sys
import tarfile
import threading
import zipfile
from pathlib import Path

import docker_pod
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from docker_pod import docker
from support import REPO_ROOT

from steps.rollout import base_image
from steps.stage.config import load_params
from steps.stage.errors import StageError

CFG = load_params(REPO_ROOT / "params.yaml").image
STAND_IN = "python:3.11.99-slim"  # a tag no registry has: the rule must build it
PROBE = "imdb-sentiment-test:tiny"  # a one-file image for the rule's other cases


# --- certificates ------------------------------------------------------------------------------


def make_ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return key, cert


def make_server_cert(ca_key, ca_cert, host: str) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )  # fmt: skip
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


# --- what the stand-in trusts: plain functions ----------------------------------------------------


def test_site_certificates_are_the_bundle_minus_what_debian_ships():
    _, ours = make_ca("our egress CA")
    _, debian = make_ca("a public root Debian ships")
    _, distrusted = make_ca("a root the host's older package still has")
    rewrapped = pem(debian).replace("\n", "\n\n")  # the same certificate, other line breaks
    bundle = pem(debian) + pem(ours) + pem(distrusted) + pem(ours)
    known = base_image.pem_bodies(rewrapped) | base_image.pem_bodies(pem(distrusted))

    site = base_image.site_certificates(bundle, known)

    assert [base_image.pem_bodies(p) for p in site] == [base_image.pem_bodies(pem(ours))]
    assert x509.load_pem_x509_certificate(site[0].encode()) == ours  # valid PEM, once


def test_the_host_bundle_is_the_default_and_a_given_one_must_hold_certificates(tmp_path):
    assert base_image.ca_bundle("").is_file()
    assert base_image.PEM.search(base_image.ca_bundle("").read_text())
    given = tmp_path / "site.pem"
    given.write_text(pem(make_ca("site")[1]))
    assert base_image.ca_bundle(str(given)) == given
    with pytest.raises(StageError, match=r"image.ca_bundle .*/nope.pem: no such file"):
        base_image.ca_bundle(str(tmp_path / "nope.pem"))
    (tmp_path / "empty.pem").write_text("not a certificate\n")
    with pytest.raises(StageError, match="no PEM certificate in it"):
        base_image.ca_bundle(str(tmp_path / "empty.pem"))


@pytest.mark.parametrize(
    ("ref", "suite", "message"),
    [
        ("python:3.12.1-slim", "bookworm", "Debian bookworm has Python 3.11, not 3.12: set image"),
        ("ubuntu:24.04", "bookworm", "only built for python:<version>-slim images"),
        ("python:3.11-slim", "buster", "image.debian_suite 'buster': known suites are"),
    ],
)
def test_a_stand_in_is_only_built_for_the_suites_python(ref, suite, message):
    with pytest.raises(StageError, match=message):
        base_image.check_stand_in_possible(ref, suite)


def test_without_mmdebstrap_the_error_says_how_to_get_it(monkeypatch):
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    with pytest.raises(StageError, match="needs mmdebstrap: apt-get install mmdebstrap"):
        base_image.check_stand_in_possible("python:3.11.7-slim", "bookworm")


def test_the_base_of_this_python_is_what_mlflow_writes():
    import platform

    assert base_image.python_slim() == f"python:{platform.python_version()}-slim"


# --- the rule on a real engine ----------------------------------------------------------------


def tiny_image(tag: str, tmp_path: Path, label: str | None = None) -> str:
    """A one-file image (docker import), labelled as a stand-in when `label` is given."""
    archive = tmp_path / "tiny.tar"
    with tarfile.open(archive, "w") as tar:
        data = f"{tag}\n".encode()
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    changes = ["--change", f"LABEL {base_image.STAND_IN_LABEL}={label}"] if label else []
    docker("import", *changes, str(archive), tag)
    return docker("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip()


@pytest.mark.docker
def test_an_image_that_is_there_is_used_as_it_is(tmp_path):
    tiny_image(PROBE, tmp_path)
    try:
        assert base_image.ensure(PROBE, CFG).how == "present"
    finally:
        docker("image", "rm", PROBE, check=False)


@pytest.mark.docker
def test_a_stand_in_that_is_there_is_kept_while_nothing_can_be_pulled(tmp_path):
    tiny_image(PROBE, tmp_path, label="test")
    try:  # there is no imdb-sentiment-test on any registry this engine can reach
        assert base_image.ensure(PROBE, CFG).how == "stand-in present"
    finally:
        docker("image", "rm", PROBE, check=False)


@pytest.mark.docker
def test_what_can_be_pulled_is_pulled_and_replaces_a_stand_in(tmp_path, docker_registry):
    remote = f"{docker_registry.host}/imdb-sentiment-test/base:1"
    real = tiny_image(remote, tmp_path)
    docker("push", remote)
    docker("image", "rm", remote)
    try:
        assert base_image.ensure(remote, CFG).how == "pulled"
        docker("image", "rm", remote)
        (tmp_path / "other").mkdir()
        stand_in = tiny_image(remote, tmp_path / "other", label="test")  # other content
        assert stand_in != real
        assert base_image.ensure(remote, CFG).how == "pulled (replaced the stand-in)"
        assert docker("image", "inspect", "--format", "{{.Id}}", remote).stdout.strip() == real
    finally:
        docker("image", "rm", remote, check=False)


# --- the stand-in, built for real --------------------------------------------------------------


def probe_wheel(folder: Path) -> Path:
    """A one-module wheel, written by hand: something pip can install without an index."""
    wheel = folder / "imdb_standin_probe-1.0-py3-none-any.whl"
    info = "imdb_standin_probe-1.0.dist-info"
    files = {
        "imdb_standin_probe.py": "ANSWER = 42\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: imdb-standin-probe\nVersion: 1.0\n",
        f"{info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
        archive.writestr(f"{info}/RECORD", "".join(f"{n},,\n" for n in [*files, f"{info}/RECORD"]))
    return wheel


class TlsServer:
    """An HTTPS server on 127.0.0.1 (name localhost) whose certificate the test CA signed."""

    def __init__(self, cert: bytes, key: bytes, folder: Path) -> None:
        (folder / "cert.pem").write_bytes(cert)
        (folder / "key.pem").write_bytes(key)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://localhost:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> TlsServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"trusted")

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.docker
@pytest.mark.slow  # mmdebstrap: one to three minutes (once per session, see rootfs_cache)
def test_stand_in_is_debian_python_that_pip_installs_into_and_trusts_a_given_ca(
    tmp_path, rootfs_cache
):
    if shutil.which("mmdebstrap") is None:
        docker_pod.require("mmdebstrap is not installed: apt-get install mmdebstrap")
    if os.geteuid() != 0:
        docker_pod.require("building a stand-in base (mmdebstrap's root mode) needs root")
    ca_key, ca_cert = make_ca("imdb-sentiment test egress CA")
    bundle = tmp_path / "bundle.pem"
    bundle.write_text(base_image.ca_bundle("").read_text() + pem(ca_cert))
    cfg = dataclasses.replace(CFG, ca_bundle=str(bundle))
    docker("image", "rm", STAND_IN, check=False)
    try:
        assert base_image.ensure(STAND_IN, cfg, rootfs_cache).how == "built stand-in"
        labels = docker("image", "inspect", "--format", "{{json .Config.Labels}}", STAND_IN)
        assert STAND_IN in labels.stdout

        wheel = probe_wheel(tmp_path)
        script = (
            "set -e; command -v python; command -v pip; python --version; "
            f"pip install --no-index /w/{wheel.name}; "
            "python -c 'import imdb_standin_probe; print(imdb_standin_probe.ANSWER)'"
        )
        done = docker("run", "--rm", "--network", "none", "-v", f"{tmp_path}:/w:ro", STAND_IN,
                      "sh", "-c", script)  # fmt: skip
        lines = done.stdout.split()
        assert "/usr/bin/python" in lines and "/usr/bin/pip" in lines
        assert "3.11." in done.stdout and lines[-1] == "42"

        cert, key = make_server_cert(ca_key, ca_cert, "localhost")
        check = (
            "import ssl, sys, urllib.request\n"
            "print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())\n"
            "system = ssl.create_default_context(cafile='/etc/ssl/certs/ca-certificates.crt')\n"
            "print(urllib.request.urlopen(sys.argv[1], timeout=10, context=system).read().decode())"
        )
        with TlsServer(cert, key, tmp_path) as server:
            done = docker("run", "--rm", "--network", "host", STAND_IN,
                          "python", "-c", check, server.url)  # fmt: skip
        # trusted through SSL_CERT_FILE (the bundle, verbatim) and through the system store
        assert done.stdout.split() == ["trusted", "trusted"]
        added = docker("run", "--rm", "--network", "none", STAND_IN, "sh", "-c",
                       "cat /usr/local/share/ca-certificates/*.crt").stdout  # fmt: skip
        assert base_image.pem_bodies(pem(ca_cert)) <= base_image.pem_bodies(added)
        debian = set()
        for path in Path("/usr/share/ca-certificates").rglob("*.crt"):
            debian |= base_image.pem_bodies(path.read_text())
        assert not base_image.pem_bodies(added) & debian  # no root re-added by hand
    finally:
        docker("image", "rm", STAND_IN, check=False)

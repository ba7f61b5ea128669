"""The serving image's nginx in front of MLflow (k8s/serving-image/nginx.conf): a POST without
one of MLflow's content types is 415 and an over-long body 413, before the server reads a byte.

The rule is tested twice: its regular expression against the family of Content-Type headers
(Python's `re` reads this PCRE subset alike), and, where an nginx binary is installed, the
rendered file run by a real nginx in front of a local HTTP server standing in for uvicorn (the
container test, tests/serving/test_container.py, checks the same in the image with Docker).
"""

from __future__ import annotations

import http.client
import http.server
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import pytest
from deploy_support import K8S_DIR
from support import free_port, unavailable

CONF = K8S_DIR / "serving-image" / "nginx.conf"
MAX_BODY_MB = 1  # rendered as the Dockerfile renders image.max_body_mb

# (method, Content-Type or None for no header, refused with 415)
CONTENT_TYPES = [
    ("POST", "application/json", False),
    ("POST", "application/json; charset=utf-8", False),  # MLflow judges the parameters
    ("POST", "application/json;charset=latin-1", False),  # ... and answers 415 itself
    ("POST", " text/csv", False),
    ("POST", "application/vnd.apache.parquet", False),
    ("POST", None, True),  # MLflow: a 500 (content_type.split on None)
    ("POST", "", True),
    ("POST", "text/plain", True),
    ("POST", "application/jsonx", True),
    ("POST", "application/json-seq", True),
    ("POST", "Application/JSON", True),  # MLflow compares exactly: its own 415 otherwise
    ("POST", "multipart/form-data; boundary=x", True),
    ("POST", "application/x-www-form-urlencoded", True),
    ("GET", None, False),  # /ping: no body to parse
    ("HEAD", None, False),
]
IDS = [f"{method}-{ctype!r}" for method, ctype, _ in CONTENT_TYPES]


def refused_type_pattern() -> re.Pattern:
    """The map's one regular expression (the key is "$request_method:$content_type")."""
    text = CONF.read_text()
    (block,) = re.findall(
        r'map "\$request_method:\$content_type" \$imdb_refused_type \{(.*?)\}', text, re.S
    )
    (regex,) = re.findall(r'"~(.*)" 1;', block)
    assert re.search(r"default 0;", block)
    return re.compile(regex)


@pytest.mark.parametrize(("method", "ctype", "refused"), CONTENT_TYPES, ids=IDS)
def test_the_content_type_rule_refuses_what_mlflow_cannot_parse(method, ctype, refused):
    key = f"{method}:{(ctype or '').strip(' ')}"  # nginx gives the header value trimmed
    assert bool(refused_type_pattern().search(key)) is refused


def test_the_invocations_location_applies_the_rule_and_the_body_limit():
    location = re.search(
        r"location ~ \^/\(ping\|invocations\) \{(.*?)\n    \}", CONF.read_text(), re.S
    )
    assert location, "the /ping|/invocations location of MLflow's nginx.conf"
    body = location.group(1)
    assert re.search(r"client_max_body_size @MAX_BODY@;", body)
    assert re.search(r"if \(\$imdb_refused_type\) \{ return 415 ", body)


class _Upstream(http.server.BaseHTTPRequestHandler):
    """Stands in for uvicorn: answers 200 and records what reached it."""

    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[tuple[str, str | None]]] = []

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).seen.append((self.command, self.headers.get("Content-Type")))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_HEAD = _answer

    def log_message(self, *args) -> None:
        pass


@contextmanager
def nginx_in_front(tmp_path: Path) -> Iterator[int]:
    """The rendered nginx.conf run by the real nginx on loopback ports: yields its port."""
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port = free_port()
    conf = (
        CONF.read_text()
        .replace("@MAX_BODY@", f"{MAX_BODY_MB}m")
        .replace("listen 8080", f"listen 127.0.0.1:{port}")
        .replace("127.0.0.1:8000", f"127.0.0.1:{upstream.server_address[1]}")
        .replace("/tmp/nginx.pid", str(tmp_path / "nginx.pid"))
        .replace("/var/log/nginx/", f"{tmp_path}/")
    )
    (tmp_path / "nginx.conf").write_text(conf)
    command = ["nginx", "-c", str(tmp_path / "nginx.conf"), "-e", str(tmp_path / "error.log")]
    process = subprocess.Popen(command, stderr=subprocess.PIPE)
    try:
        for _ in range(100):  # bounded: 10 s
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
                break
            except OSError:
                assert process.poll() is None, process.stderr.read().decode()
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)
        upstream.shutdown()
        upstream.server_close()


def _send(port: int, method: str, path: str, ctype: str | None, body: bytes) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        if ctype is not None:
            connection.putheader("Content-Type", ctype)
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.mark.integration
def test_a_real_nginx_refuses_before_the_server_reads_anything(tmp_path):
    if shutil.which("nginx") is None:
        unavailable("no nginx binary on this machine (apt-get install nginx-light)")
    _Upstream.seen = []
    with nginx_in_front(tmp_path) as port:
        for method, ctype, refused in CONTENT_TYPES:
            path = "/ping" if method != "POST" else "/invocations"
            body = b"" if method != "POST" else b'{"inputs": ["A great film."]}'
            status = _send(port, method, path, ctype, body)
            assert status == (415 if refused else 200), (method, ctype)
        too_long = b"x" * (MAX_BODY_MB * 1024 * 1024 + 1)
        assert _send(port, "POST", "/invocations", "application/json", too_long) == 413
        assert _send(port, "POST", "/invocations", None, too_long) in (413, 415)
    passed = [(m, c) for m, c, refused in CONTENT_TYPES if not refused]
    assert [(m, (c or "").strip() or None) for m, c in _Upstream.seen] == [
        (m, (c or "").strip() or None) for m, c in passed
    ]

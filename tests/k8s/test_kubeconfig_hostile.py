"""A kubeconfig that is there but broken is an error (exit 1, one line naming it), never a plan
"as if there were no cluster" from the manifests with exit 0; only a missing one means no
cluster. Real files, the official `kubernetes` client's own loader."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from steps import deploy

# deploy reads the registry: a tmp store, never the checkout's default one.
pytestmark = pytest.mark.usefixtures("tracking_uri")


def _a_folder(tmp: Path) -> Path:
    (tmp / "kubeconfig").mkdir()
    return tmp / "kubeconfig"


def _no_current_context(tmp: Path) -> Path:
    config = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
    }  # fmt: skip
    (tmp / "kubeconfig").write_text(yaml.safe_dump(config))
    return tmp / "kubeconfig"


def _current_context_missing(tmp: Path) -> Path:
    path = _no_current_context(tmp)
    config = yaml.safe_load(path.read_text()) | {"current-context": "gone"}
    path.write_text(yaml.safe_dump(config))
    return path


def _empty(tmp: Path) -> Path:
    (tmp / "kubeconfig").write_text("")
    return tmp / "kubeconfig"


def _not_yaml(tmp: Path) -> Path:
    (tmp / "kubeconfig").write_text("clusters: [unclosed\n  - : :\n")
    return tmp / "kubeconfig"


def _a_list(tmp: Path) -> Path:
    (tmp / "kubeconfig").write_text("- a\n- b\n")
    return tmp / "kubeconfig"


def _not_text(tmp: Path) -> Path:
    (tmp / "kubeconfig").write_bytes(b"\xff\xfe\x00binary\x00")
    return tmp / "kubeconfig"


BROKEN = {
    "a folder": _a_folder,
    "no current context": _no_current_context,
    "current context not in it": _current_context_missing,
    "empty": _empty,
    "not YAML": _not_yaml,
    "a YAML list": _a_list,
    "not text": _not_text,
}


@pytest.mark.parametrize("dry_run", [True, False], ids=["plan", "deploy"])
@pytest.mark.parametrize("case", BROKEN, ids=str)
def test_a_broken_kubeconfig_is_an_error_not_a_plan_without_a_cluster(
    case, dry_run, tmp_path, monkeypatch, capsys
):
    path = BROKEN[case](tmp_path)
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)

    code = deploy.main(["--dry-run"] if dry_run else [])

    out, err = capsys.readouterr()
    assert code == 1
    assert not out.startswith("plan:"), out
    lines = err.strip().splitlines()
    assert lines[-1].startswith(f"error: deploy: kubeconfig {path} "), lines[-1]
    assert "no usable Kubernetes configuration" not in lines[-1]
    assert not any("Traceback" in line for line in lines)


def test_a_missing_kubeconfig_still_plans_from_the_manifests(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "nothing-here"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    code = deploy.main(["--dry-run"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "assumed: no cluster (no usable Kubernetes configuration" in out

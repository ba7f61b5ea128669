"""Hints in the words of the interface the user called: make variables through `make`, `-P
key=value` through `mlflow run`, `--flags` through `python -m steps.<entry point>`.

Every hint an error or a summary gives goes through `setting` or `command`, so one line never
says `-P overwrite=true` to someone who typed `make score`. The Makefile exports IMDB_CALLER=make
(CALLER_ENV); `mlflow run` passes MLFLOW_RUN_ID to the entry point it starts; neither means
`python -m`. Every entry point records its caller in CALLER_ENV as it starts (`pass_down`,
from `cli.main`): MLflow deletes MLFLOW_RUN_ID once the run resumes, and the stages `main`
chains inherit main's caller (they run under `mlflow run`, but the user typed main's command).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

CALLER_ENV = "IMDB_CALLER"  # which interface the user called: one of CALLERS (the Makefile's)
MAKE, MLFLOW, PYTHON = "make", "mlflow", "python"
CALLERS = (MAKE, MLFLOW, PYTHON)

# The make target that runs an entry point, and the targets that run it with one flag set.
MAKE_TARGETS = {"main": "run"}
MAKE_FLAG_TARGETS = {
    ("promote", "rollback"): "rollback",
    ("deploy", "dry_run"): "deploy-plan",
    ("deploy", "rollback"): "deploy-rollback",
    ("image", "base_only"): "base-image",
    ("image", "deployer"): "deployer-image",
}
# The Makefile's variable for a params key (every target passes the ones its stage has); any
# other key goes through P="key=value ...", which every stage target passes on.
MAKE_VARIABLES = {
    "source": "SOURCE",
    "version": "VERSION",
    "input": "INPUT",
    "output": "OUTPUT",
    "overwrite": "OVERWRITE",
    "engine": "ENGINE",
    "batch": "BATCH",
    "metric": "METRIC",
    "image": "IMAGE",
}


def caller(environ: Mapping[str, str] | None = None) -> str:
    """make, mlflow or python: the interface the user called this entry point through."""
    environ = os.environ if environ is None else environ
    named = environ.get(CALLER_ENV, "")
    if named in CALLERS:
        return named
    return MLFLOW if environ.get("MLFLOW_RUN_ID") else PYTHON


def pass_down(environ: dict[str, str] | None = None) -> None:
    """Record this process's caller in the environment its child entry points inherit."""
    environ = os.environ if environ is None else environ
    environ[CALLER_ENV] = caller(environ)


def _text(value: object, *, make: bool = False) -> str:
    if isinstance(value, bool):
        return ("1" if value else "0") if make else str(value).lower()
    return str(value)


def setting(key: str, value: object, environ: Mapping[str, str] | None = None) -> str:
    """How to set one params key for one run: `OVERWRITE=1`, `-P overwrite=true`, `--overwrite
    true`."""
    how = caller(environ)
    if how == MAKE:
        if key in MAKE_VARIABLES:
            return f"{MAKE_VARIABLES[key]}={_text(value, make=True)}"
        return f'P="{key}={_text(value)}"'
    if how == MLFLOW:
        return f"-P {key}={_text(value)}"
    return f"--{key} {_text(value)}"


def command(
    entry_point: str, settings: Mapping[str, object] | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:  # fmt: skip
    """The whole command that runs `entry_point` with `settings`, in the caller's words: `make
    promote VERSION=3`, `mlflow run . -e promote -P version=3 --env-manager local`, `python -m
    steps.promote --version 3`. A boolean flag that has its own make target uses it (`make
    rollback`)."""
    settings = dict(settings or {})
    how = caller(environ)
    if how == MAKE:
        target = MAKE_TARGETS.get(entry_point, entry_point)
        for (point, flag), flag_target in MAKE_FLAG_TARGETS.items():
            if point == entry_point and settings.get(flag) is True:
                target = flag_target
                del settings[flag]
        given = [setting(k, v, environ) for k, v in settings.items()]
        return " ".join(["make", target, *given])
    if how == MLFLOW:
        given = [setting(k, v, environ) for k, v in settings.items()]
        return " ".join(["mlflow run . -e", entry_point, *given, "--env-manager local"])
    flags = {flag for point, flag in MAKE_FLAG_TARGETS if point == entry_point}
    given = [
        f"--{k}" if k in flags and v is True else setting(k, v, environ)
        for k, v in settings.items()
    ]
    return " ".join(["python -m", f"steps.{entry_point}", *given])

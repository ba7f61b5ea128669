"""The thin command-line layer every stage shares.

`python -m steps.<stage> [--params FILE] [--<field> VALUE ...]`: flags are generated from the
stage's config dataclass, so `mlflow run . -e train -P C=0.5` (which MLflow turns into
`--C 0.5`) and `dvc exp run -S train.C=0.5` (which edits params.yaml) reach the same field.
A `StageError` becomes one `error:` line on stderr and exit code 1, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import Any

from steps import tracking
from steps.config import BOOL_WORDS, Params, load_params, override, section_fields
from steps.errors import StageError
from steps.paths import PARAMS_FILE

log = logging.getLogger(__name__)

Body = Callable[[Params, Any, argparse.Namespace], None]
AddArguments = Callable[[argparse.ArgumentParser], None]

# Libraries that narrate at INFO what our own log lines already say.
_QUIET_LOGGERS = ("alembic", "great_expectations", "botocore", "urllib3", "numexpr", "git")


def setup_logging() -> None:
    """Plain timestamped log lines on stderr; chatty libraries turned down to warnings."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def add_flag(group: Any, name: str, help: str) -> None:
    """A stage action flag usable bare (`--dry-run`) or with a value, as `mlflow run -P
    dry_run=true` passes it (`--dry_run true`)."""
    options = dict.fromkeys((f"--{name.replace('_', '-')}", f"--{name}"))  # one if no "_"
    group.add_argument(
        *options, dest=name, type=_bool_value, nargs="?", const=True, default=False,
        metavar="BOOL", help=help,
    )  # fmt: skip


def _bool_value(text: str) -> bool:
    try:
        return BOOL_WORDS[text.lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}") from None


def parse(
    section: str, argv: list[str] | None, add_arguments: AddArguments | None = None
) -> tuple[Params, Any, argparse.Namespace]:
    """Parse a stage's flags; return all params, the stage's section with overrides, the args."""
    fields = section_fields(section_fields(Params)[section])
    parser = argparse.ArgumentParser(
        prog=f"python -m steps.{section}",
        description=f"Run the {section} stage. Defaults come from params.yaml ({section}: ...).",
    )
    parser.add_argument("--params", default=str(PARAMS_FILE), help="parameters file")
    group = parser.add_argument_group(f"overrides of params.yaml {section}.*")
    for name in fields:
        group.add_argument(f"--{name}", default=None, metavar="VALUE")
    if add_arguments:
        add_arguments(parser)
    args = parser.parse_args(argv)
    params = load_params(args.params)
    given = {name: getattr(args, name) for name in fields if getattr(args, name) is not None}
    cfg = override(getattr(params, section), given, origin=f"{section} parameters")
    return params, cfg, args


def run(
    section: str,
    body: Body,
    argv: list[str] | None = None,
    add_arguments: AddArguments | None = None,
) -> int:
    """Run one stage from the command line; return the process exit code."""
    setup_logging()
    try:
        params, cfg, args = parse(section, argv, add_arguments)
        tracking.configure()
        body(params, cfg, args)
    except StageError as exc:
        print(f"error: {section}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"error: {section}: interrupted", file=sys.stderr)
        return 130
    return 0

"""The thin command-line layer every entry point shares.

`python -m steps.<stage> [--params FILE] [--<field> VALUE ...]`: flags are generated from the
stage's config dataclass (help text from each field's docstring, default shown from params.yaml),
so `mlflow run . -e train -P C=0.5` (which MLflow turns into `--C 0.5`) and
`dvc exp run -S train.C=0.5` (which edits params.yaml) reach the same field.

Every entry point's `main(argv)` is `cli.main(<section>, argv, <command>)`: parse, set up logging
and tracking, run the command, and turn a `StageError` (or a tracking server that stopped
answering) into one `error: <stage>: ...` line on stderr and exit code 1, never a traceback.
A bad command line is such a line too (exit 1, as for a bad params.yaml: whichever door a bad
value came through, a caller sees the same kind of failure), not argparse's usage and exit 2: an
unknown flag lists the stage's keys and suggests the closest one, a refused value says what its
field allows. Every log line and error line goes through steps/stage/secrets.py: no credential
is shown.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap
from collections.abc import Callable
from typing import Any, NoReturn

from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR
from mlflow.exceptions import MlflowException

from steps.stage import hints, secrets
from steps.stage.coercion import BOOL_WORDS, mapping_text, override, unknown_key
from steps.stage.config import Params, load_params
from steps.stage.errors import ConfigError, CredentialRefused, StageError, error_line
from steps.stage.paths import PARAMS_FILE
from steps.stage.schema import allowed, flat_docs, flat_fields, flat_value, section_fields
from steps.tracking import failures, purge, store

log = logging.getLogger(__name__)

Command = Callable[[Params, Any, argparse.Namespace], None]
AddArguments = Callable[[argparse.ArgumentParser], None]

# Libraries that narrate at INFO what our own log lines already say.
_QUIET_LOGGERS = ("alembic", "great_expectations", "botocore", "urllib3", "numexpr", "git")
# Retries are summed up by the one error line that follows when they run out.
_SILENT_LOGGERS = ("urllib3.connectionpool",)


def setup_logging() -> None:
    """Plain timestamped log lines on stderr; chatty libraries turned down to warnings; no
    credential in any line (ours, MLflow's or another library's)."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not sys.stderr.isatty():
        # MLflow draws its artifact progress bars whatever stderr is: in a log file each is a
        # line of carriage returns. Ours (tqdm, disable=None) draw only on a terminal already.
        # Set in the environment, so the stages `main` starts inherit it.
        os.environ.setdefault(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name, "false")
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in _SILENT_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    # MLflow's logger has its own handler and does not propagate to the root one.
    for handler in logging.getLogger().handlers + logging.getLogger("mlflow").handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


class RedactingFilter(logging.Filter):
    """Rewrites each record's message with its credentials hidden (secrets.redact)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        hidden = secrets.redact(message)
        if hidden != message:
            record.msg, record.args = hidden, None
        return True


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose mistakes are ConfigErrors (one line, exit 1), and that takes a flag only by
    its full name: `--val_spli` is an unknown key here as in params.yaml and for `main`."""

    def __init__(self, *args: Any, origin: str = "command line", **kwargs: Any) -> None:
        super().__init__(*args, allow_abbrev=False, **kwargs)
        self.origin = origin

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{self.origin}: {message}")


def add_flag(group: Any, name: str, help: str) -> None:
    """A stage action flag usable bare (`--dry-run`) or with a value, as `mlflow run -P
    dry_run=true` passes it (`--dry_run true`)."""
    options = dict.fromkeys((f"--{name.replace('_', '-')}", f"--{name}"))  # one if no "_"
    group.add_argument(
        *options, dest=name, type=_bool_value, nargs="?", const=True, default=False,
        metavar="BOOL", help=help,
    )  # fmt: skip


def add_model_choice(parser: argparse.ArgumentParser) -> None:
    """--run_id / --model_uri: which trained model a stage works on (evaluate, register); also
    `mlflow run -P run_id=...`. Neither: the model train saved in models/."""
    group = parser.add_argument_group(
        "which trained model (default: the one train saved in models/)"
    )
    choice = group.add_mutually_exclusive_group()
    choice.add_argument(
        "--run_id", "--run-id", dest="run_id", default=None, metavar="RUN",
        help="the model this train run logged (make compare lists train runs with their ids)",
    )  # fmt: skip
    choice.add_argument(
        "--model_uri", "--model-uri", dest="model_uri", default=None, metavar="URI",
        help="a logged model: models:/<model id> (m-...) or runs:/<train run id>/<model name>",
    )  # fmt: skip


def _bool_value(text: str) -> bool:
    try:
        return BOOL_WORDS[text.lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}") from None


def parse(
    section: str,
    argv: list[str] | None,
    add_arguments: AddArguments | None = None,
    description: str | None = None,
    entry_point: str | None = None,
) -> tuple[Params, Any, argparse.Namespace]:
    """Parse a stage's flags; return all params, the stage's section with overrides, the args."""
    argv = sys.argv[1:] if argv is None else list(argv)
    origin = f"{section} parameters"
    pre = ArgumentParser(add_help=False, origin=origin)
    pre.add_argument("--params", default=str(PARAMS_FILE))
    params_file = pre.parse_known_args(argv)[0].params
    asking_help = any(a in ("-h", "--help") for a in argv)
    try:
        params = load_params(params_file)
    except ConfigError:
        if not asking_help:
            raise
        params = None  # --help still works where there is no readable params file
    parser = build_parser(section, params, add_arguments, description, entry_point)
    args, rest = parser.parse_known_args(argv)
    if rest:
        key = rest[0].removeprefix("--").partition("=")[0]
        if not rest[0].startswith("--") or not key:
            raise ConfigError(f"{origin}: unexpected {rest[0]!r}: give --KEY VALUE pairs")
        raise ConfigError(f"{origin}: {unknown_key('parameter', key, vars(args))}")
    cls = section_fields(Params)[section]
    given = {n: getattr(args, n) for n in flat_fields(cls) if getattr(args, n) is not None}
    cfg = override(getattr(params, section), given, origin=origin)
    return params, cfg, args


def build_parser(
    section: str,
    params: Params | None,
    add_arguments: AddArguments | None = None,
    description: str | None = None,
    entry_point: str | None = None,
) -> argparse.ArgumentParser:
    """The stage's parser: one flag per field of its params.yaml section (a nested section's
    fields as `--spark.master`), with help."""
    cls = section_fields(Params)[section]
    docs = flat_docs(cls)
    name = entry_point or section
    parser = ArgumentParser(
        origin=f"{section} parameters",
        prog=f"python -m steps.{name}",
        description=description,
        formatter_class=_HelpFormatter,
        epilog=f"Defaults come from params.yaml ({section}: ...); `mlflow run . -e {name}"
        " -P key=value` passes the same flags.",
    )
    parser.add_argument("--params", default=str(PARAMS_FILE), help="parameters file (%(default)s)")
    group = parser.add_argument_group(f"overrides of params.yaml {section}.*")
    current = getattr(params, section) if params is not None else None
    for name, typ in flat_fields(cls).items():
        shown = _shown(flat_value(current, name)) if current is not None else "?"
        accepts = f" ({accepted})" if (accepted := allowed(typ)) else ""
        group.add_argument(
            f"--{name}", default=None, metavar="VALUE", help=f"{docs[name]}{accepts} [{shown}]"
        )
    if add_arguments:
        add_arguments(parser)
    return parser


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The module docstring as written; flag help wrapped without breaking URLs or words."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(
            " ".join(text.split()), width, break_long_words=False, break_on_hyphens=False
        )


def _shown(value: Any) -> str:
    """A params.yaml value as it would be typed on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):  # tune.grid
        return mapping_text(value)
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value)) if len(str(value)) < 60 else f"{len(value)} values"
    text = str(value)
    return text if text else '""'


def report(name: str, error: StageError) -> None:
    """Print the one error line; a refused credential that `mlflow run` had already logged with
    this run gets that run deleted, and the line says so."""
    if isinstance(error, CredentialRefused) and (note := store.discard_run_with_credentials()):
        error = f"{error}; {note}"
    print(error_line(name, error), file=sys.stderr)


def main(
    section: str,
    argv: list[str] | None,
    command: Command,
    add_arguments: AddArguments | None = None,
    entry_point: str | None = None,
) -> int:
    """Run one entry point from the command line; return the process exit code.

    `section` is the params.yaml section whose keys become flags; `entry_point` names the entry
    point when it is not the section's own (default: the section).
    """
    name = entry_point or section
    setup_logging()
    # Under `mlflow run` the caller shows only in MLFLOW_RUN_ID, which MLflow deletes from the
    # environment when the stage resumes its run: recorded now, hints given later speak it.
    hints.pass_down()
    # The entry point's own docstring heads its --help (the command is defined in it).
    doc = getattr(sys.modules.get(command.__module__), "__doc__", None)
    try:
        params, cfg, args = parse(section, argv, add_arguments, doc and doc.strip(), name)
        store.configure()
        purge.refuse_logged_credentials()
        command(params, cfg, args)
    except StageError as exc:
        report(name, exc)
        return 1
    except MlflowException as exc:
        # The tracking server stopped answering mid-stage: one line, as configure() says it.
        reason = failures.unreachable_reason(exc)
        if reason is None:
            raise
        print(error_line(name, f"tracking server {reason}"), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"error: {name}: interrupted", file=sys.stderr)
        return 130
    return 0

"""The exception types a stage raises for problems a person must fix, and how any exception is
said in one line.

A `StageError`'s message is a single line naming what was wrong, where, and (when it helps) what
to do; the stage CLI prints it as `error: <stage>: <message>` and exits non-zero, without a
traceback.
"""

from __future__ import annotations

from steps.stage.secrets import shown


class StageError(Exception):
    """A problem with inputs, configuration or environment, explained in one line."""


class ConfigError(StageError):
    """params.yaml or a command-line parameter is wrong."""


class SourceError(StageError):
    """The data source cannot be read (missing, unreachable, unauthorised, malformed)."""


class CredentialRefused(SourceError):
    """A value that would be logged (a source, an entry-point parameter) carries a credential."""


class ValidationFailed(StageError):
    """The ingested data broke one or more expectations (each one described in `failures`)."""

    def __init__(self, message: str, failures: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.failures = tuple(failures)


def one_line(error: object, limit: int | None = None) -> str:
    """Any exception (or text) as one line: whitespace runs collapsed, at most `limit` characters.

    An exception with no message is named by its type, so the line is never empty.
    """
    text = " ".join(str(error).split())
    if not text and isinstance(error, BaseException):
        text = type(error).__name__
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


def error_line(name: str, error: object) -> str:
    """`error: <name>: <message>`, as every entry point prints it: one line, no credential."""
    return f"error: {name}: {shown(one_line(error))}"

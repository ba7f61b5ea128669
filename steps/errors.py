"""The one exception type a stage raises for problems a person must fix.

Its message is a single line naming what was wrong, where, and (when it helps) what to do;
the stage CLI prints it as `error: <message>` and exits non-zero, without a traceback.
"""


class StageError(Exception):
    """A problem with inputs, configuration or environment, explained in one line."""


class ConfigError(StageError):
    """params.yaml or a command-line parameter is wrong."""


class SourceError(StageError):
    """The data source cannot be read (missing, unreachable, unauthorised, malformed)."""


class ValidationFailed(StageError):
    """The ingested data broke one or more expectations (each one described in `failures`)."""

    def __init__(self, message: str, failures: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.failures = tuple(failures)

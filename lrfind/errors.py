"""Errors that reach the user as one line and exit code 2 (bad input), never a traceback."""


class LrfindError(Exception):
    """Bad input the user can fix. The message names the file (or option) and the fix.

    The CLI prints it on one line and exits with code 2.
    """


class DatasetError(LrfindError):
    """A dataset folder, image or caption that cannot be used."""


class ModelError(LrfindError):
    """A model path or file that cannot be loaded."""


class ConfigError(LrfindError):
    """An option, config file or combination of values that is impossible."""


class TrainingStopped(Exception):
    """A run stopped for a reason the caller should report (NaN loss, pruned, interrupted).

    Not a user error: callers decide what it means (a study marks the trial failed or pruned).
    """

    def __init__(self, reason: str, step: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.step = step


class DiskFullError(LrfindError):
    """The disk (or quota) filled up while writing `path`; nothing half-written was left behind."""

    def __init__(self, message: str, path=None):
        super().__init__(message)
        self.path = path


class LrfindWarning(UserWarning):
    """Something the user should know that does not stop the run; the CLI prints it on one line."""

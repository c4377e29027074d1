"""What is wrong with a dataset, file by file: collected in one pass, so that a user with five broken
files learns about all five at once instead of fixing them one run at a time. No torch, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lrfind.errors import DatasetError


@dataclass(frozen=True)
class Problem:
    """One problem of one file or folder. `fatal` problems stop training; the others are warnings.

    `message` is the whole one-line text (what an error or a log line shows); `problem` and `fix`
    are its two halves for the table of `lrfind dataset check`.
    """

    path: str
    problem: str
    fix: str
    fatal: bool
    message: str

    def __str__(self) -> str:
        return self.message

    @classmethod
    def warning(cls, path: Path | str, problem: str, fix: str) -> "Problem":
        return cls(str(path), problem, fix, False, f"{path}: {problem}: {fix}")

    @classmethod
    def from_error(cls, path: Path, err: DatasetError) -> "Problem":
        """A fatal problem from the one-line DatasetError raised while reading `path`.

        The messages read "<image|caption> PATH <problem>: <fix>"; the fix is the part after the
        last ": " (fixes are plain sentences; a reason in parentheses may hold a colon).
        """
        message = str(err)
        head, sep, fix = message.rpartition(": ")
        if not sep:
            head, fix = message, ""
        problem = head.split(str(path), 1)[1].strip() if str(path) in head else head
        return cls(str(path), problem, fix, True, message)


class DatasetProblems(DatasetError):
    """Files that cannot be trained (and the warnings found on the way), all of them.

    As a one-line error it names the first file and says how many more there are.
    """

    def __init__(self, problems: list[Problem], dataset: Path):
        self.problems = tuple(problems)
        self.dataset = dataset
        fatal = [p for p in self.problems if p.fatal]
        more = len(fatal) - 1
        suffix = f" (and {more} more file problem(s): `lrfind dataset check {dataset}` lists them all)" if more else ""
        super().__init__(fatal[0].message + suffix)

    @property
    def fatal(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.fatal)

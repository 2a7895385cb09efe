"""Errors users can act on.

Every error the platform raises for bad input is a ``Uda3dError`` (a ``ValueError``) whose message
is one line naming the file or option, what was found and what was expected. The CLI prints that
line and exits 2 without a traceback; library callers can catch ``ValueError``.
"""

from __future__ import annotations

from pathlib import Path


class Uda3dError(ValueError):
    """Base class for user-facing errors: one line, names the file or field."""


class DataError(Uda3dError):
    """A data file or folder is missing, corrupt or inconsistent."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ConfigError(Uda3dError):
    """A configuration value or CLI option is out of range or unknown."""

    def __init__(self, field: str, problem: str, source: str | None = None) -> None:
        self.field = field
        self.problem = problem
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{field}: {problem}")

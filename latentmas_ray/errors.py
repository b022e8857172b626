"""Errors a user can act on. Each names the thing that is wrong and what to do about it."""

from __future__ import annotations


class LatentMASError(Exception):
    """Base class: the CLI prints these as one clean line (no traceback) and exits 2."""


class ConfigError(LatentMASError):
    """A bad flag value, unknown task/method, or an inconsistent configuration."""


class DataError(LatentMASError):
    """A data or predictions file that is missing, unreadable or malformed.

    Carries the file and (1-based) line so the message can point at the exact row.
    """

    def __init__(self, message: str, path: str | None = None, line: int | None = None,
                 hint: str | None = None):
        self.path, self.line, self.hint, self.reason = path, line, hint, message
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        text = where + message
        if hint:
            text += f" ({hint})"
        super().__init__(text)

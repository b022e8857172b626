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


def exit_status(command, console) -> int:
    """Run `command()` the way every entry point does: its own exit status, a LatentMASError as
    one `error: ...` line and status 2 (no traceback), Ctrl-C as a note that nothing is lost."""
    try:
        return command()
    except LatentMASError as e:
        from rich.markup import escape   # the message is text: "latentmas-ray[wandb]" stays

        console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        console.print("interrupted; finished samples are saved, rerun the same command to resume")
        return 130

"""Progress bars for long work (rich), silent when output is not a terminal-like stream."""

from __future__ import annotations

import contextlib
import os
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)


@contextlib.contextmanager
def progress_bar(console: Console, label: str, total: int, completed: int = 0,
                 extra: Callable[[], str] | None = None) -> Iterator[Callable[[int], None]]:
    """Yields advance(n). total: the whole run's samples; completed: those already done (a
    resumed run's bar starts there; rate and ETA come from this session's advances).
    `extra()` supplies a live text field (e.g. running accuracy)."""
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
               TimeRemainingColumn(), TextColumn("{task.fields[extra]}")]
    with Progress(*columns, console=console, transient=False,
                  disable=total == completed) as progress:
        task = progress.add_task(label, total=total, completed=completed, rate="",
                                 extra=extra() if extra else "")

        def advance(n: int = 1) -> None:
            progress.advance(task, n)
            t = progress.tasks[task]
            speed = t.finished_speed or t.speed
            progress.update(task, rate=f"{speed:.2f}/s" if speed else "",
                            extra=extra() if extra else "")
        yield advance


def quiet_library_bars() -> None:
    """No library progress bars (transformers' tqdm "Loading weights" at each model load)
    between our own lines. Set before huggingface_hub is imported, which reads it once; a user
    who wants them sets HF_HUB_DISABLE_PROGRESS_BARS=0. Ray actors get it in their environment
    (actors/common.py ACTOR_ENV)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

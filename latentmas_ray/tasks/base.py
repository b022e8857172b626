"""The sample type every task produces, and the task description the registry holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["math", "choice", "code"]

@dataclass(frozen=True)
class Sample:
    """One benchmark problem, in the shape the prompts and the scorers need.

    id:       stable across runs and machines (derived from the file, never from row order
              after shuffling), unique within a task.
    question: the text the prompts insert; multiple-choice options are already lettered A-D.
    gold:     math: the answer string as written in the data ("18", "\\frac{1}{2}", "025");
              choice: one capital letter "A".."D";
              code: the JSON of a tasks.code_checks.CodeTests (inputs, and expected values or
              a reference solution; or a test script run after the candidate code).
    kind:     which scorer applies.
    entry_point: code tasks only, the function the tests call.
    position: its place in the loaded task (0-based, file order), set by load_task and stored
              with its rows, so a run's end orders a million rows by an integer, not by id;
              -1 for a sample made by hand. Not part of equality.
    """

    id: str
    task: str
    question: str
    gold: str
    kind: Kind
    entry_point: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    position: int = field(default=-1, compare=False)


@dataclass(frozen=True)
class Score:
    """How one completion scored."""

    correct: bool
    extracted: str | None   # what was read out of the completion (normalized), None if nothing
    error: str | None       # why nothing could be extracted / scoring failed, else None

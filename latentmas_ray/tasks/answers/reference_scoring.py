"""The reference's exact-match scoring (REFERENCE.md 6.2 / 6.3), `score_reference`: numbers
stay comparable with published ones, including the documented consequences ("18.0" != "18", a
box holding "1,000" reads as "1")."""

from __future__ import annotations

import re

from ..base import Score
from .latex_numbers import as_text

_REF_BOX = re.compile(r"\\boxed\{([^}]*)\}")
_REF_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")
_REF_INT_TASKS = ("aime2024", "aime2025")
_REF_CODE_TASKS = ("mbppplus", "humanevalplus")


def _ref_last_box(text: str) -> str | None:
    """`_REF_BOX.findall(text)[-1]` (or None) in linear time: the regex matches from an opener to
    the next "}", the next match starts after that "}", and once an opener has no "}" after it
    no later one has either."""
    pos, last = 0, None
    while True:
        i = text.find("\\boxed{", pos)
        if i < 0:
            return last
        j = text.find("}", i + 7)
        if j < 0:
            return last
        last, pos = text[i + 7:j], j + 1


def _ref_extract(text: str) -> str | None:
    inner = _ref_last_box(text)
    if inner is not None:
        m = _REF_NUMBER.search(inner)
        return m.group(0) if m else inner.strip()
    numbers = _REF_NUMBER.findall(text)
    return numbers[-1] if numbers else None


def score_reference(completion: str, gold: str, task: str) -> Score:
    """The reference's scoring, reproduced exactly (REFERENCE.md 6.2/6.3).

    Prediction: the last ``\\boxed{...}`` matched by ``\\\\boxed\\{([^}]*)\\}`` (no nested braces);
    inside it the first number, else the stripped content; without a box the last number of the
    text, else None; then strip().lower().
    Gold: strip().lower(); for gsm8k also the reference's number regex on it, so a gold written
    "2,125" becomes "2" exactly as the reference's ``####\\s*([-+]?\\d+(?:\\.\\d+)?)`` reads it
    (idempotent when the caller already passes the reference's gold).
    aime2024/aime2025: ``int(pred) == int(gold)``; an error (ValueError, None) is wrong.
    Every other non-code task (gsm8k, the multiple-choice tasks, anything unknown, as the
    reference's generic branch): ``pred == gold`` with both non-empty.
    Code tasks are not scored here (the reference runs them); they raise ValueError, which is a
    programming error, not a property of the completion.
    """
    if task in _REF_CODE_TASKS:
        raise ValueError(f"score_reference does not score code tasks ({task}); use the code scorer")
    try:
        raw = _ref_extract(as_text(completion))
        pred = raw.strip().lower() if raw is not None else None
        want = as_text(gold).strip().lower()
        if task == "gsm8k":
            m = _REF_NUMBER.match(want)
            want = m.group(0).strip().lower() if m else ""
        if pred is None:
            return Score(False, None, "no \\boxed{} and no number in the completion")
        if task in _REF_INT_TASKS:
            try:
                return Score(int(pred) == int(want), pred, None)
            except ValueError:
                return Score(False, pred, None)
        return Score(bool(pred) and bool(want) and pred == want, pred,
                     None if pred else "empty \\boxed{}")
    except Exception as e:  # pragma: no cover
        return Score(False, None, f"scoring failed: {type(e).__name__}: {e}")

"""Answer extraction and scoring for math and multiple-choice tasks, one module per kind.

Two modes:

standard (`score_math`, `score_choice`)
    The reference's intent (the final answer in ``\\boxed{}``, compared with the gold) without its
    string-matching blunders. Any completion (any string, even None) is scored without raising.
    Score.extracted is the normalized answer read from the completion (a canonical number such
    as "1000" or "0.5" when it is one, the cleaned LaTeX otherwise, a letter for choices) or None;
    Score.error says why nothing was read (or why the gold is unusable), else None: a readable
    but wrong answer has error None.

reference (`score_reference`)
    REFERENCE.md 6.2/6.3 reproduced exactly, so numbers stay comparable with published ones,
    including the documented consequences ("18.0" != "18", a box holding "1,000" reads as "1").

Modules:
    latex_numbers.py      boxes, LaTeX cleaning, reading and writing plain numbers
    math_answers.py       math extraction, math-verify (guarded), `score_math`, `normalize_gold_math`
    choice_answers.py     option-letter extraction, `score_choice`
    reference_scoring.py  the reference's exact-match mode, `score_reference`
"""

from __future__ import annotations

from ..base import Score
from .choice_answers import score_choice
from .latex_numbers import extract_boxed
from .math_answers import normalize_gold_math, score_math
from .reference_scoring import score_reference

__all__ = [
    "Score",
    "extract_boxed",
    "score_math",
    "score_choice",
    "score_reference",
    "normalize_gold_math",
]

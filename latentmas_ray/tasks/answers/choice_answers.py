"""Multiple-choice answers (ARC, GPQA, MedQA): the option letter, `score_choice`.

Choice extraction, in this order (letters A-D only; option text is never mapped to a letter):

1. The last box (latex_numbers.py). If there is a box, it decides: its content must be a single
   letter, optionally in parentheses/brackets, bold or ``\\text{}``, optionally prefixed by
   "Option"/"Choice", optionally followed by ".", ")", ":" or whitespace and the option text ("B",
   "(B)", "B.", "\\text{B}", "B) Paris", "b"). A box with a number, an option text, a letter
   outside A-D or several letters ("B, C") scores wrong.
2. The last phrase "answer is X" / "answer: X" / "correct option is X" / "final answer would be
   X" (also "(X)", "**X**"). A lowercase letter counts only when no word follows it ("the answer
   is b." but not "the answer is a dog").
3. The last bold letter: "**B**", "**(B)**", "**B.**", "**B) Paris**".
4. The last non-empty line being just a letter: "B", "(B)", "B.".
5. An answer that opens with an option: a first line "B. Paris", "B) Paris" or "(B) Paris"
   (small models often answer by repeating the chosen option), when it is the completion's
   only option line.
A capital letter anywhere else (the "A" in "A cat is ...", a letter inside a word) is never read.

Restated options are no answer. Small models (SmolLM2-135M above all) often repeat the options
instead of choosing: an "option line" is a line that opens with a label ("A. x", "A) x", "(A) x",
"A: x", "**A.** x", "- A) x"); with two or more of them, the completion restates the options,
and only rules 1-4 can pick one, read as a person reads them:
  "A. Sunlight\nB. Water\nC. Soil\nD. Air"                      no answer (was A by rule 5)
  "A) one\nB) two\nC) three\nD) four\nI think it is C"          no answer ("it is" is no rule)
  "A) one\nB) two\nC) three\nD) four\nThe answer is C"          C (rule 2)
  "A) one\nB) two\nC) three\nD) four\n\nC"                      C (rule 4)
  "**A.** one\n**B.** two\n**C.** three"                        no answer: bold labels of option
                                                                lines are not bold picks (rule 3)
  "**A.** one\n**B.** two\nSo: **B**"                            B (rule 3)
  "A) one\nB) two\nC) three\nD)"                                no answer: a last line that
                                  continues the list of labels (D after C) is no pick (rule 4)
"""

from __future__ import annotations

import re

from ..base import Score
from .latex_numbers import BROKEN_BOX, as_text, last_box, outer_braces_match

_CHOICE_WRAPPER = re.compile(
    r"\\(?:text|textbf|textit|textrm|textnormal|mathrm|mathbf|mbox|emph)\s*\{([^{}]*)\}")
# The regexes below never put two repeats that can match the same characters side by side, so
# they stay linear on adversarial input (no possessive quantifiers: Python 3.10 lacks them).
_BOX_LETTER = re.compile(
    r"(?:(?:option|choice|answer)[\s:]*)?(?:[(\[]\s*)?([A-Za-z])(?:\s*[)\]])?(?:([.:,)\s])(.*))?",
    re.S | re.I)
_SEVERAL = re.compile(r"\s*(?:,|/|&|and\b|or\b)\s*[(\[]?[A-Da-d](?![A-Za-z])", re.I)
_CHOICE_PHRASE = re.compile(
    r"(?<![A-Za-z])(?:answer|option|choice)[\s*_]*"
    r"(?:(?:is|would\s+be|will\s+be|should\s+be|must\s+be)(?![A-Za-z'])|:|=)[\s*_:]*"
    r"(?:(?:option|choice)[\s*_:]+)?(?:[(\[][\s*_]*)?([A-Da-d])(?![A-Za-z0-9])", re.I)
_WORD_FOLLOWS = re.compile(r"[\s*_)\]]*[A-Za-z]")
# Rule 5's opening option: "B. Paris", "B) Paris", "(B) Paris" ("A: 1. Measure..." is not one).
_OPENING_OPTION = re.compile(r"(?:\(([A-D])\)|([A-D])[.)])(?:\s|$)")
_BOLD_LETTER = re.compile(
    r"\*\*[ \t]*[(\[]?([A-D])[)\]]?[.:)]?[ \t]*\*\*|\*\*[ \t]*[(\[]?([A-D])[.:)\]][ \t][^*\n]{0,200}\*\*")
_LINE_LETTER = re.compile(r"[(\[]?\s*([A-D])(?:\s*[)\]])?\s*\.?")
# A line opening with an option's label ("B. Paris", "B) Paris", "(B) Paris", "**B.** Paris"):
# punctuation is required, so the article in "A cat is ..." is never read as a choice. Then
# that label alone, at any line's start (multiline), to blank out before looking for bold picks.
_OPTION_LINE = re.compile(r"[-*\u2022 \t]*(?:\*\*)?[ \t]*(?:\(([A-D])\)|([A-D])[.):])(?:\*\*)?(?:\s|$)")
_OPTION_LABEL = re.compile(r"^[-*\u2022 \t]*(?:\*\*[ \t]*(?:\([A-D]\)|[A-D][.):])[ \t]*\*\*|"
                           r"(?:\([A-D]\)|[A-D][.):]))(?=\s|$)", re.M)


def _clean_choice_text(s: str) -> str:
    for _ in range(4):
        new = _CHOICE_WRAPPER.sub(r"\1", s)
        if new == s:
            break
        s = new
    return s.replace("\\$", "").replace("$", "")


def _letter_in_box(box: str) -> tuple[str | None, str | None]:
    s = _clean_choice_text(box).replace("*", "").strip()
    for _ in range(8):
        if not (len(s) >= 2 and s[0] == "{" and s[-1] == "}" and outer_braces_match(s)):
            break
        s = s[1:-1].strip()
    if not s:
        return None, "empty \\boxed{}"
    m = _BOX_LETTER.fullmatch(s)
    if not m:
        return None, "the \\boxed{} holds no option letter"
    letter = m.group(1).upper()
    if letter not in "ABCD":
        return None, f"the \\boxed{{}} holds {m.group(1)!r}, not one of A-D"
    if _SEVERAL.match((m.group(2) or "") + (m.group(3) or "")):
        return None, "the \\boxed{} holds several letters"
    return letter, None


def _extract_choice(text: str) -> tuple[str | None, str | None]:
    if not text.strip():
        return None, "empty completion"
    box = last_box(text)
    if box is BROKEN_BOX:
        return None, "the last \\boxed{ is never closed"
    if isinstance(box, str):
        return _letter_in_box(box)
    plain = _clean_choice_text(text)
    found = None
    for m in _CHOICE_PHRASE.finditer(plain):
        letter = m.group(1)
        if letter.islower() and _WORD_FOLLOWS.match(plain, m.end(1), m.end(1) + 100):
            continue  # "the answer is a dog"
        found = letter.upper()
    if found:
        return found, None
    lines = [ln.strip() for ln in plain.splitlines() if ln.strip()]
    labels = [_option_letter(ln) for ln in lines]
    restated = sum(x is not None for x in labels) >= 2
    # The labels of restated option lines ("**A.** Sunlight") are not bold picks.
    for m in _BOLD_LETTER.finditer(_OPTION_LABEL.sub("", plain) if restated else plain):
        found = m.group(1) or m.group(2)
    if found:
        return found, None
    if lines:
        m = _LINE_LETTER.fullmatch(lines[-1])
        if m and not (restated and _continues_list(labels)):
            return m.group(1), None
        m = _OPENING_OPTION.match(lines[0])
        if m and not restated:
            return m.group(1) or m.group(2), None
    if restated:
        return None, "the completion restates the options without picking one"
    return None, "no \\boxed{} letter, answer phrase, bold letter or letter line found"


def _option_letter(line: str) -> str | None:
    """The label's letter when `line` opens like an option ("B. Paris", "**B)** Paris")."""
    m = _OPTION_LINE.match(line)
    return (m.group(1) or m.group(2)) if m else None


def _continues_list(labels: list) -> bool:
    """Is the last line the next label of the option lines just before it (C then D)?"""
    if len(labels) < 2 or labels[-1] is None or labels[-2] is None:
        return False
    return ord(labels[-1]) == ord(labels[-2]) + 1


def score_choice(completion: str, gold: str) -> Score:
    """Score a multiple-choice completion against the gold letter "A".."D"."""
    try:
        letter, err = _extract_choice(as_text(completion))
        want = as_text(gold).strip().upper()
        if letter is None:
            return Score(False, None, err)
        if want not in ("A", "B", "C", "D"):
            return Score(False, letter, f"gold answer {gold!r} is not one of A-D")
        return Score(letter == want, letter, None)
    except Exception as e:  # pragma: no cover
        return Score(False, None, f"scoring failed: {type(e).__name__}: {e}")

"""Free-form math answers (GSM8K, AIME): extraction, math-verify equivalence, `score_math`.

Math extraction, in this order (the first rule that applies decides):

1. The last ``\\boxed{...}`` / ``\\boxed {...}`` / ``\\fbox{...}`` (nested and escaped braces are
   handled). If the text has a box at all, the last one decides: an empty box or an unclosed one
   (``\\boxed{18`` at the end of a truncated output) extracts nothing and scores wrong; we never fall
   back to an earlier box or to a number elsewhere in the text.
2. Without any box, the last final-answer phrase: ``#### X``, ``the (final) answer is X``,
   ``Answer: X`` / ``Final answer: X`` (markdown bold around the phrase is fine). X is the math
   span right after the phrase (``$...$``, ``\\(...\\)``), else the LaTeX up to the end of the
   sentence, else the first number of that sentence. A last phrase whose sentence holds neither a
   digit nor LaTeX ("Answer: let us compute ...") is passed over for rule 3.
3. Otherwise the last number in the text (``1,234`` with valid thousands groups counts as one
   number; a minus sign counts only when it is not a hyphen between words or numbers).

Math comparison:

- The extracted text is cleaned and plain numbers are compared exactly as rationals
  (latex_numbers.py). A gold answer is read strictly (no "=" split, no unit words).
- Anything else goes to math-verify (symbolic/numeric equivalence, e.g. "\\sqrt{4}" == "2"),
  called WITHOUT its signal-based timeouts (``signal.alarm`` only works in the main thread, and it
  would cancel a caller's own SIGALRM): scoring is safe from worker threads and behaves the same in
  every thread. Instead, an expression that could make sympy run for minutes (towers of
  exponents, exponents or factorials of huge numbers, very long strings) is not handed to sympy
  and can only match by exact text. If math-verify fails or throws, the fallback is an exact
  comparison of the cleaned strings.
- ``integer=True`` (AIME): the gold must be an integer; the prediction must equal it as a number
  ("025" == "25" == "25.0"; "25.5" is wrong; an expression like "5^2" goes to math-verify).
- Cost: a plain-number answer takes ~20-40 us. The first math-verify call in a process pays its
  import (~0.4 s, sympy); later calls take ~0.1-15 ms (its LaTeX parses are cached).
"""

from __future__ import annotations

import re
import threading

from ..base import Score
from .latex_numbers import (BROKEN_BOX, WHITESPACE, as_text, canonical_number, clean_answer,
                            last_box, lenient_number, strict_number)

# ----------------------------------------------------------------------------------------------
# math-verify, guarded

_mv_lock = threading.Lock()
_mv = None  # (parse, verify, configs) once imported; False if unavailable


def _math_verify():
    global _mv
    if _mv is None:
        with _mv_lock:
            if _mv is None:
                try:
                    import math_verify.grader as _grader
                    import math_verify.parser as _parser
                    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
                    # We run without math-verify's signal timeouts on purpose (see the module
                    # docstring); silence its one-time "timeout is disabled" warning.
                    _parser.TIMEOUT_WARNING_SHOWN = True
                    _grader.TIMEOUT_WARNING_SHOWN = True
                    _mv = (parse, verify, [LatexExtractionConfig(), ExprExtractionConfig()])
                except Exception:
                    _mv = False
    return _mv


_MAX_SYMPY_CHARS = 200


def _exponent_groups(s: str):
    """The exponent texts of every ^ in s (a braced group or one token)."""
    i = s.find("^")
    while i != -1:
        j = i + 1
        while j < len(s) and s[j] == " ":
            j += 1
        if j < len(s) and s[j] == "{":
            depth, k = 0, j
            while k < len(s):
                if s[k] == "{":
                    depth += 1
                elif s[k] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                k += 1
            yield s[j + 1:k]
        else:
            m = re.match(r"\\[A-Za-z]+|\d+|.", s[j:], re.S)
            yield m.group(0) if m else ""
        i = s.find("^", i + 1)


def _safe_for_sympy(s: str) -> bool:
    """False for expressions that could make sympy evaluate for minutes (2^{2^{100}}, 10^8!)."""
    if not s or len(s) > _MAX_SYMPY_CHARS:
        return False
    if re.search(r"\d{41}", s):
        return False
    for exp in _exponent_groups(s):
        if "^" in exp or "**" in exp or re.search(r"\d{6}", exp) or "!" in exp:
            return False
    if "**" in s:  # python-style powers, which the expression parser also reads
        for m in re.finditer(r"\*\*\s*(\(?[^\s)]*)", s):
            if re.search(r"\d{6}", m.group(1)) or "*" in m.group(1):
                return False
    if "!" in s:
        if re.search(r"\d{5}", s) or re.search(r"[)}\]]\s*!", s) or "^" in s:
            return False
    return True


def _mv_equal(gold: str, pred: str) -> bool | None:
    """math-verify's verdict, or None when it could not be asked or could parse nothing."""
    if not (_safe_for_sympy(gold) and _safe_for_sympy(pred)):
        return None
    mv = _math_verify()
    if not mv:
        return None
    parse, verify, configs = mv
    try:
        g = parse("\\boxed{" + gold + "}", extraction_config=configs, parsing_timeout=None)
        p = parse("\\boxed{" + pred + "}", extraction_config=configs, parsing_timeout=None)
        if not g or not p:
            return None
        return bool(verify(g, p, timeout_seconds=None))
    except BaseException as e:  # math-verify's TimeoutException is a BaseException
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        return None


def _mv_parses(s: str) -> bool:
    if not _safe_for_sympy(s):
        return False
    mv = _math_verify()
    if not mv:
        return False
    parse, _verify, configs = mv
    try:
        from sympy import Basic, MatrixBase
        got = parse("\\boxed{" + s + "}", extraction_config=configs, parsing_timeout=None)
        return any(isinstance(x, (Basic, MatrixBase)) for x in got)
    except BaseException as e:
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        return False


# ----------------------------------------------------------------------------------------------
# math extraction

_ANSWER_PHRASE = re.compile(
    r"####|(?<![A-Za-z])answer[\s*_]*"
    r"(?:(?:is|would\s+be|will\s+be|should\s+be|must\s+be)(?![A-Za-z'])|:|=)\s*:?", re.I)
_MATH_SPAN = re.compile(
    r"\$\$([^$]{1,300}?)\$\$|\$([^$\n]{1,300})\$|\\\((.{1,300}?)\\\)|\\\[(.{1,300}?)\\\]", re.S)
_SENTENCE_END = re.compile(r"\.(?:\s|$)|,\s|;|\n")
_LAST_NUMBER = re.compile(
    r"(?:(?<![\w)\]}.,-])-)?(?<![\d.])(?:\d{1,3}(?:,\d{3}(?!\d))+|\d+)(?:\.\d+)?(?!\d)")
_FIRST_NUMBER_WITH_FRAC = re.compile(
    r"[-+]?\s*\\?\$?\s*(?:\d{1,3}(?:,\d{3}(?!\d))+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?")


def _phrase_candidate(text: str) -> str | None:
    last = None
    for last in _ANSWER_PHRASE.finditer(text):
        pass
    if last is None:
        return None
    span = text[last.end():last.end() + 400].lstrip(" \t*_:")
    m = _MATH_SPAN.match(span)
    if m:  # "$\frac{1}{2}$" or "$18$", but not the currency "$18 and then $5"
        inner = next(g for g in m.groups() if g is not None)
        if "\\" in inner or lenient_number(clean_answer(inner)) is not None:
            return inner
    end = _SENTENCE_END.search(span)
    sentence = span[:end.start()] if end else span
    sentence = sentence.strip().strip("*_").strip()
    if not sentence or not re.search(r"[\d\\]", sentence):
        return None  # "Answer: let us compute ..." -> fall through to the last number
    if "\\" in sentence:          # LaTeX such as \frac{1}{2}: keep it whole
        return sentence
    if lenient_number(clean_answer(sentence)) is not None:   # "18 dollars", "$18.00"
        return sentence
    m = _FIRST_NUMBER_WITH_FRAC.search(sentence)
    return m.group(0) if m else sentence


def _last_number(text: str) -> str | None:
    last = None
    for last in _LAST_NUMBER.finditer(text):
        pass
    return last.group(0) if last else None


def _extract_math(text: str) -> tuple[str | None, str | None]:
    """(candidate, error): the raw answer text by the rules in the module docstring."""
    if not text.strip():
        return None, "empty completion"
    box = last_box(text)
    if box is BROKEN_BOX:
        return None, "the last \\boxed{ is never closed"
    if isinstance(box, str):
        if not clean_answer(box):
            return None, "empty \\boxed{}"
        return box, None
    cand = _phrase_candidate(text)
    if cand is not None and clean_answer(cand):
        return cand, None
    cand = _last_number(text)
    if cand is not None:
        return cand, None
    return None, "no \\boxed{}, answer phrase or number found"


# ----------------------------------------------------------------------------------------------
# public math API

def normalize_gold_math(gold: str) -> str:
    """The canonical form of a math gold answer ("1,000" -> "1000", "025" -> "25", "\\frac12" ->
    "0.5", "\\frac13" -> "1/3"; other LaTeX cleaned, and accepted if math-verify parses it).
    Raises ValueError if it cannot be read as a math answer."""
    if not isinstance(gold, (str, int)) or isinstance(gold, bool):
        raise ValueError(f"gold answer must be a string, not {type(gold).__name__}")
    raw = str(gold).strip()
    if not raw:
        raise ValueError("empty gold answer")
    cleaned = clean_answer(raw)
    v = strict_number(cleaned)
    if v is not None:
        return canonical_number(v)
    if cleaned and _mv_parses(cleaned):
        return cleaned
    raise ValueError(f"cannot read {raw!r} as a number or a LaTeX expression")


def score_math(completion: str, gold: str, *, integer: bool = False) -> Score:
    """Score a free-form math completion against the gold answer (see the module docstring).
    integer=True for AIME: answers are integers, compared as numbers."""
    try:
        return _score_math(as_text(completion), as_text(gold), integer)
    except Exception as e:  # pragma: no cover - a last line of defence, never expected
        return Score(False, None, f"scoring failed: {type(e).__name__}: {e}")


def _score_math(text: str, gold: str, integer: bool) -> Score:
    cand, err = _extract_math(text)
    if cand is None:
        return Score(False, None, err)
    pred = clean_answer(cand)
    gold_clean = clean_answer(gold.strip())
    gold_v = strict_number(gold_clean)
    if integer and (gold_v is None or gold_v.denominator != 1):
        return Score(False, pred, f"gold answer {gold!r} is not an integer")
    if not gold_clean:
        return Score(False, pred, "empty gold answer")
    pred_v = lenient_number(pred)
    if pred_v is not None:
        extracted = canonical_number(pred_v)
        if gold_v is not None:
            return Score(pred_v == gold_v, extracted, None)
        verdict = _mv_equal(gold_clean, extracted)
        return Score(bool(verdict), extracted, None)
    # Not a plain number: symbolic comparison, then exact text.
    verdict = _mv_equal(gold_clean if gold_v is None else canonical_number(gold_v), pred)
    if verdict is None:
        verdict = WHITESPACE.sub("", pred) == WHITESPACE.sub("", gold_clean)
    return Score(bool(verdict), pred, None)

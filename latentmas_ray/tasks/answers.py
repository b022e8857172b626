"""Answer extraction and scoring for math and multiple-choice tasks.

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

- The extracted text is cleaned: ``$``/``\\$`` signs, ``\\text{}``-like wrappers, ``\\left``/``\\right``,
  spacing commands, ``\\dfrac``/``\\tfrac``, degree marks (``^\\circ``, ``°``) and percent signs
  (``\\%``, ``%``) are dropped. So "25\\%" equals a gold "25" (GSM8K asks for the number of
  percent); "0.25" does not.
- Plain numbers are compared exactly as rationals: "18" == "18.0" == "18.00" == "\\$18",
  "1,000" == "1{,}000" == "1\\,000" == "1000", "\\frac{1}{2}" == "\\dfrac12" == "1/2" == "0.5",
  "x = 18" (the part after the last "=") and "18 dollars" / "18 \\text{ cm}" (a number followed by
  words only) read as 18. A gold answer is read strictly (no "=" split, no unit words).
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

Choice extraction, in this order (letters A-D only; option text is never mapped to a letter):

1. The last box (as above). If there is a box, it decides: its content must be a single letter,
   optionally in parentheses/brackets, bold or ``\\text{}``, optionally prefixed by "Option"/
   "Choice", optionally followed by ".", ")", ":" or whitespace and the option text ("B",
   "(B)", "B.", "\\text{B}", "B) Paris", "b"). A box with a number, an option text, a letter
   outside A-D or several letters ("B, C") scores wrong.
2. The last phrase "answer is X" / "answer: X" / "correct option is X" / "final answer would be
   X" (also "(X)", "**X**"). A lowercase letter counts only when no word follows it ("the answer
   is b." but not "the answer is a dog").
3. The last bold letter: "**B**", "**(B)**", "**B.**", "**B) Paris**".
4. The last non-empty line being just a letter: "B", "(B)", "B.".
5. An answer that opens with an option: a first line "B. Paris", "B) Paris" or "(B) Paris"
   (small models often answer by repeating the chosen option).
A capital letter anywhere else (the "A" in "A cat is ...", a letter inside a word) is never read.
"""

from __future__ import annotations

import re
import threading
from fractions import Fraction

from .base import Score

__all__ = [
    "Score",
    "extract_boxed",
    "score_math",
    "score_choice",
    "score_reference",
    "normalize_gold_math",
]


# ----------------------------------------------------------------------------------------------
# boxes

_BOX_OPEN = re.compile(r"\\(?:boxed|fbox)\s*\{")
_NO_BOX, _BROKEN_BOX = object(), object()


def _last_box(text: str):
    """Content of the last box; `_NO_BOX` if there is none; `_BROKEN_BOX` if it never closes."""
    last = None
    for last in _BOX_OPEN.finditer(text):
        pass
    if last is None:
        return _NO_BOX
    depth, i, n = 1, last.end(), len(text)
    start = i
    while i < n:
        c = text[i]
        if c == "\\":          # an escaped char (\{, \}, \\) never opens or closes a group
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
        i += 1
    return _BROKEN_BOX


def extract_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\boxed {...}``, ``\\fbox{...}``), nested and
    escaped braces handled. None if there is no box or the last box is never closed."""
    try:
        box = _last_box(_as_text(text))
    except Exception:
        return None
    return box if isinstance(box, str) else None


def _as_text(x) -> str:
    if x is None:
        return ""
    return x if isinstance(x, str) else str(x)


# ----------------------------------------------------------------------------------------------
# cleaning and plain numbers

_SPACING = re.compile(r"\\[,;:! ]|\\quad\b|\\qquad\b|~")
_SIZING = re.compile(r"\\(?:left|right|bigl|bigr|Bigl|Bigr|big|Big|displaystyle|textstyle)(?![A-Za-z])")
_WRAPPER = re.compile(
    r"\\(?:text|textbf|textit|textrm|textsf|texttt|textnormal|emph|mathrm|mathbf|mathit|mathsf|"
    r"mathtt|mbox|hbox|operatorname|boxed|fbox)\s*\{([^{}]*)\}")
_DEGREE = re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|\\degree|°")
_WS = re.compile(r"\s+")


def _outer_braces_match(s: str) -> bool:
    depth = 0
    for i, c in enumerate(s):
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0 and i != len(s) - 1:
                return False
    return depth == 0


def _clean(s: str) -> str:
    """Strip presentation from an answer: $ signs, \\text{}, spacing, degrees, percent, ..."""
    s = s.replace("\u2212", "-").replace("\u2013", "-")
    s = _SPACING.sub(" ", s)
    s = _SIZING.sub("", s)
    s = re.sub(r"\\[dt]frac(?![A-Za-z])", r"\\frac", s)
    for _ in range(8):
        new = _WRAPPER.sub(r"\1", s)
        if new == s:
            break
        s = new
    s = s.replace("{,}", ",")
    s = _DEGREE.sub("", s)
    s = s.replace("\\%", "").replace("%", "")
    s = s.replace("\\$", "").replace("$", "")
    s = s.strip()
    for opener, closer in (("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(opener) and s.endswith(closer):
            s = s[2:-2].strip()
    for _ in range(8):
        if not (len(s) >= 2 and s[0] == "{" and s[-1] == "}" and _outer_braces_match(s)):
            break
        s = s[1:-1].strip()
    s = s.rstrip(" .;,")
    return _WS.sub(" ", s).strip()


_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d{1,3}(?: \d{3})+|\d+)(?:\.\d*)?|\.\d+"
_RE_NUMBER = re.compile(rf"([-+]?)\s*({_NUM})")
_RE_FRAC_BRACED = re.compile(rf"([-+]?)\s*\\frac\s*\{{\s*([-+]?)\s*({_NUM})\s*\}}\s*\{{\s*({_NUM})\s*\}}")
_RE_FRAC_SHORT = re.compile(r"([-+]?)\s*\\frac\s*(\d)\s*(\d)")
_RE_SLASH = re.compile(rf"([-+]?)\s*({_NUM})\s*/\s*({_NUM})")
_MAX_NUMBER_CHARS = 80      # longer digit strings are not read as numbers (str/int limits, sympy)


def _to_fraction(num: str) -> Fraction:
    num = num.replace(",", "").replace(" ", "")
    if num.endswith("."):
        num = num[:-1]
    return Fraction(num)


def _strict_number(s: str) -> Fraction | None:
    """A cleaned string that is exactly one number (integer, decimal, simple fraction)."""
    if not s or len(s) > _MAX_NUMBER_CHARS:
        return None
    m = _RE_NUMBER.fullmatch(s)
    if m:
        v = _to_fraction(m.group(2))
        return -v if m.group(1) == "-" else v
    for rx in (_RE_FRAC_BRACED, _RE_FRAC_SHORT, _RE_SLASH):
        m = rx.fullmatch(s)
        if m:
            groups = m.groups()
            sign = -1 if groups[0] == "-" else 1
            if rx is _RE_FRAC_BRACED:
                sign *= -1 if groups[1] == "-" else 1
                num, den = groups[2], groups[3]
            else:
                num, den = groups[1], groups[2]
            den_v = _to_fraction(den)
            if den_v == 0:
                return None
            return sign * _to_fraction(num) / den_v
    return None


# A number followed only by unit-like words: "18 dollars", "18cm", "18 km/h", "18 m^2", "(dollars)".
_RE_LEAD_NUMBER = re.compile(rf"([-+]?\s*(?:{_NUM}))(.*)", re.S)
_RE_UNIT_TAIL = re.compile(
    r"(?:\s+\(?[A-Za-z][A-Za-z.'/\- ]*\)?|[A-Za-z]{2}[A-Za-z.'/\- ]*)(?:\^\{?[23]\}?)?[A-Za-z.'/\- ]*")


_MAX_LENIENT_CHARS = 300


def _pred_number(s: str) -> Fraction | None:
    """A prediction read as a number, a bit more leniently than a gold answer."""
    if len(s) > _MAX_LENIENT_CHARS:
        return None
    v = _strict_number(s)
    if v is not None:
        return v
    for rel in ("=", "\\approx", "\\equiv"):
        if rel in s:
            rhs = s.rsplit(rel, 1)[1].strip()
            if rhs:
                s = rhs
    v = _strict_number(s)
    if v is not None:
        return v
    m = _RE_LEAD_NUMBER.fullmatch(s)
    if m and m.group(2) and len(m.group(2)) <= 60 and _RE_UNIT_TAIL.fullmatch(m.group(2)):
        return _strict_number(m.group(1))
    return None


def _canonical(v: Fraction) -> str:
    if v.denominator == 1:
        return str(v.numerator)
    d = v.denominator
    while d % 2 == 0:
        d //= 2
    while d % 5 == 0:
        d //= 5
    if d == 1:  # a finite decimal
        text = f"{float(v):.15g}"
        if Fraction(text) == v:
            return text
    return f"{v.numerator}/{v.denominator}"


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
        if "\\" in inner or _pred_number(_clean(inner)) is not None:
            return inner
    end = _SENTENCE_END.search(span)
    sentence = span[:end.start()] if end else span
    sentence = sentence.strip().strip("*_").strip()
    if not sentence or not re.search(r"[\d\\]", sentence):
        return None  # "Answer: let us compute ..." -> fall through to the last number
    if "\\" in sentence:          # LaTeX such as \frac{1}{2}: keep it whole
        return sentence
    if _pred_number(_clean(sentence)) is not None:   # "18 dollars", "$18.00"
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
    box = _last_box(text)
    if box is _BROKEN_BOX:
        return None, "the last \\boxed{ is never closed"
    if isinstance(box, str):
        if not _clean(box):
            return None, "empty \\boxed{}"
        return box, None
    cand = _phrase_candidate(text)
    if cand is not None and _clean(cand):
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
    cleaned = _clean(raw)
    v = _strict_number(cleaned)
    if v is not None:
        return _canonical(v)
    if cleaned and _mv_parses(cleaned):
        return cleaned
    raise ValueError(f"cannot read {raw!r} as a number or a LaTeX expression")


def score_math(completion: str, gold: str, *, integer: bool = False) -> Score:
    """Score a free-form math completion against the gold answer (see the module docstring).
    integer=True for AIME: answers are integers, compared as numbers."""
    try:
        return _score_math(_as_text(completion), _as_text(gold), integer)
    except Exception as e:  # pragma: no cover - a last line of defence, never expected
        return Score(False, None, f"scoring failed: {type(e).__name__}: {e}")


def _score_math(text: str, gold: str, integer: bool) -> Score:
    cand, err = _extract_math(text)
    if cand is None:
        return Score(False, None, err)
    pred = _clean(cand)
    gold_clean = _clean(gold.strip())
    gold_v = _strict_number(gold_clean)
    if integer and (gold_v is None or gold_v.denominator != 1):
        return Score(False, pred, f"gold answer {gold!r} is not an integer")
    if not gold_clean:
        return Score(False, pred, "empty gold answer")
    pred_v = _pred_number(pred)
    if pred_v is not None:
        extracted = _canonical(pred_v)
        if gold_v is not None:
            return Score(pred_v == gold_v, extracted, None)
        verdict = _mv_equal(gold_clean, extracted)
        return Score(bool(verdict), extracted, None)
    # Not a plain number: symbolic comparison, then exact text.
    verdict = _mv_equal(gold_clean if gold_v is None else _canonical(gold_v), pred)
    if verdict is None:
        verdict = _WS.sub("", pred) == _WS.sub("", gold_clean)
    return Score(bool(verdict), pred, None)


# ----------------------------------------------------------------------------------------------
# multiple choice

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
# "B. Paris" / "B) Paris" / "(B) Paris" opening the answer: punctuation is required, so the
# article in "A cat is ..." is never read as a choice.
_OPENING_OPTION = re.compile(r"(?:\(([A-D])\)|([A-D])[.)])(?:\s|$)")
_BOLD_LETTER = re.compile(
    r"\*\*[ \t]*[(\[]?([A-D])[)\]]?[.:)]?[ \t]*\*\*|\*\*[ \t]*[(\[]?([A-D])[.:)\]][ \t][^*\n]{0,200}\*\*")
_LINE_LETTER = re.compile(r"[(\[]?\s*([A-D])(?:\s*[)\]])?\s*\.?")


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
        if not (len(s) >= 2 and s[0] == "{" and s[-1] == "}" and _outer_braces_match(s)):
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
    box = _last_box(text)
    if box is _BROKEN_BOX:
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
    for m in _BOLD_LETTER.finditer(plain):
        found = m.group(1) or m.group(2)
    if found:
        return found, None
    lines = [ln.strip() for ln in plain.splitlines() if ln.strip()]
    if lines:
        m = _LINE_LETTER.fullmatch(lines[-1])
        if m:
            return m.group(1), None
        m = _OPENING_OPTION.match(lines[0])
        if m:
            return m.group(1) or m.group(2), None
    return None, "no \\boxed{} letter, answer phrase, bold letter or letter line found"


def score_choice(completion: str, gold: str) -> Score:
    """Score a multiple-choice completion against the gold letter "A".."D"."""
    try:
        letter, err = _extract_choice(_as_text(completion))
        want = _as_text(gold).strip().upper()
        if letter is None:
            return Score(False, None, err)
        if want not in ("A", "B", "C", "D"):
            return Score(False, letter, f"gold answer {gold!r} is not one of A-D")
        return Score(letter == want, letter, None)
    except Exception as e:  # pragma: no cover
        return Score(False, None, f"scoring failed: {type(e).__name__}: {e}")


# ----------------------------------------------------------------------------------------------
# the reference's exact semantics (REFERENCE.md 6.2 / 6.3)

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
        raw = _ref_extract(_as_text(completion))
        pred = raw.strip().lower() if raw is not None else None
        want = _as_text(gold).strip().lower()
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

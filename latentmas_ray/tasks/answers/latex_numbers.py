"""Boxes, LaTeX cleaning and plain numbers: the pieces every answer scorer reads text with.

Boxes: the last ``\\boxed{...}`` / ``\\boxed {...}`` / ``\\fbox{...}`` (nested and escaped braces
are handled); `last_box` tells "no box" (`NO_BOX`) from "a box never closed" (`BROKEN_BOX`).

Cleaning (`clean_answer`): ``$``/``\\$`` signs, ``\\text{}``-like wrappers, ``\\left``/``\\right``,
spacing commands, ``\\dfrac``/``\\tfrac``, degree marks (``^\\circ``, ``°``) and percent signs
(``\\%``, ``%``) are dropped. So "25\\%" equals a gold "25" (GSM8K asks for the number of
percent); "0.25" does not.

Plain numbers are compared exactly as rationals: "18" == "18.0" == "18.00" == "\\$18",
"1,000" == "1{,}000" == "1\\,000" == "1000", "\\frac{1}{2}" == "\\dfrac12" == "1/2" == "0.5".
`strict_number` reads a gold answer (exactly one number); `lenient_number` reads a prediction,
also "x = 18" (the part after the last "=") and "18 dollars" / "18 \\text{ cm}" (a number
followed by words only). `canonical_number` writes a value back ("1000", "0.5", "1/3").
"""

from __future__ import annotations

import re
from fractions import Fraction

# ----------------------------------------------------------------------------------------------
# boxes

_BOX_OPEN = re.compile(r"\\(?:boxed|fbox)\s*\{")
NO_BOX, BROKEN_BOX = object(), object()


def last_box(text: str):
    """Content of the last box; `NO_BOX` if there is none; `BROKEN_BOX` if it never closes."""
    last = None
    for last in _BOX_OPEN.finditer(text):
        pass
    if last is None:
        return NO_BOX
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
    return BROKEN_BOX


def extract_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\boxed {...}``, ``\\fbox{...}``), nested and
    escaped braces handled. None if there is no box or the last box is never closed."""
    try:
        box = last_box(as_text(text))
    except Exception:
        return None
    return box if isinstance(box, str) else None


def as_text(x) -> str:
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
WHITESPACE = re.compile(r"\s+")


def outer_braces_match(s: str) -> bool:
    depth = 0
    for i, c in enumerate(s):
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0 and i != len(s) - 1:
                return False
    return depth == 0


def clean_answer(s: str) -> str:
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
        if not (len(s) >= 2 and s[0] == "{" and s[-1] == "}" and outer_braces_match(s)):
            break
        s = s[1:-1].strip()
    s = s.rstrip(" .;,")
    return WHITESPACE.sub(" ", s).strip()


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


def strict_number(s: str) -> Fraction | None:
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


def lenient_number(s: str) -> Fraction | None:
    """A prediction read as a number, a bit more leniently than a gold answer."""
    if len(s) > _MAX_LENIENT_CHARS:
        return None
    v = strict_number(s)
    if v is not None:
        return v
    for rel in ("=", "\\approx", "\\equiv"):
        if rel in s:
            rhs = s.rsplit(rel, 1)[1].strip()
            if rhs:
                s = rhs
    v = strict_number(s)
    if v is not None:
        return v
    m = _RE_LEAD_NUMBER.fullmatch(s)
    if m and m.group(2) and len(m.group(2)) <= 60 and _RE_UNIT_TAIL.fullmatch(m.group(2)):
        return strict_number(m.group(1))
    return None


def canonical_number(v: Fraction) -> str:
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

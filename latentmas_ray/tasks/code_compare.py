"""EvalPlus's comparison of one result with its expected value, on decoded plain data.

A port of `unsafe_execute` in evalplus 0.3.1 (evalplus/eval/__init__.py) and its special
oracles (evalplus/eval/_special_oracle.py), rule for rule, in EvalPlus's order:

  1. exact = out == exp
  2. the task's special oracle, if any, rewrites `exact`:
       set            set(out) == set(exp)                       Mbpp/2, 7, 111, 140, 232, 249, 579, 769
       not_none       a bool result compared with exp, anything else as `out is not None`
                                                                  Mbpp/737, 787, 794
       any_output     True: any result that does not raise passes (Mbpp/164)
       or_zero        exact or out == 0                           Mbpp/295
       surface_area   exact or abs(out - _surface_Area(*inp)) <= atol   Mbpp/581
       digit_distance exact or out == _digit_distance_nums(*inp)  Mbpp/558
       poly_root      abs(_poly(*inp, out)) <= atol, and nothing else (HumanEval/32)
  3. atol = 1e-6 when atol == 0 and exp is floats (a float, or a NON-EMPTY list/tuple of floats)
  4. when not exact and atol != 0: type(out) == type(exp), the same length when exp is a
     list/tuple, then np.allclose(out, exp, rtol=1e-07, atol=atol); else exact must hold.
  Anything raising on the way fails the test, as it does in EvalPlus.

So `return []`, `return ()` or `return 0` fail a float-valued test (different type), and a
tuple of floats fails where a list is expected. Where we differ from EvalPlus, on purpose:
  * values are decoded plain data, never the program's objects (so a lying __eq__ plays no
    part, see latentmas_ray.sandbox); a result whose type is not an exact builtin type comes
    as harness.Typed (its type's name and its value), so step 4's type check still sees it;
  * a value too big to send (harness.Digest) compares by digest only, never with a tolerance;
  * HumanEval/32: EvalPlus 0.3.1 `continue`s past its bookkeeping after the root check, so
    it fails every solution; we keep the check itself.

`short(x)` is the bounded, never-raising repr used in failure messages.
"""

from __future__ import annotations

import math
import reprlib
import warnings

from ..sandbox.harness import Digest, Typed, digest

SPECIAL_MODES = ("set", "not_none", "any_output", "or_zero", "surface_area", "digit_distance",
                 "poly_root")


# ------------------------------------------------------------------------------------------
# EvalPlus's special oracles (evalplus/eval/_special_oracle.py), verbatim in behaviour

def surface_area(base_edge, height):
    """Mbpp/581: the "height" is the perpendicular distance from the base to the apex."""
    slant_height = math.sqrt((base_edge / 2) ** 2 + height**2)
    return round(base_edge**2 + 4 * (base_edge * slant_height) / 2)


def digit_distance_nums(num1, num2):
    """Mbpp/558: both numbers zero-padded to the same length first."""
    a, b = str(num1), str(num2)
    width = max(len(a), len(b))
    return sum(abs(int(x) - int(y)) for x, y in zip(a.zfill(width), b.zfill(width)))


def poly(xs, x) -> float:
    return sum([c * math.pow(x, k) for k, c in enumerate(xs)])


# ------------------------------------------------------------------------------------------
# The comparison

def is_floats(x) -> bool:
    """EvalPlus's is_floats: a float, or a non-empty list/tuple of floats."""
    if isinstance(x, float):
        return True
    if isinstance(x, (list, tuple)) and x:
        return all(isinstance(i, float) for i in x)
    return False


def _unwrap(x) -> tuple[object, str]:
    """(value, the name of its type as the program returned it)."""
    if type(x) is Typed:
        return x.value, x.type_name
    return x, type(x).__name__


def _equal(out, exp) -> bool:
    """out == exp on decoded values; a Digest (a value too big to send) compares by digest."""
    if type(out) is Digest or type(exp) is Digest:
        a = out.hex if type(out) is Digest else digest(out)
        b = exp.hex if type(exp) is Digest else digest(exp)
        return a == b
    return bool(out == exp)


def _allclose(out, exp, atol: float) -> bool:
    import numpy as np   # the scorer's own numpy on plain data: exactly EvalPlus's allclose
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return bool(np.allclose(out, exp, rtol=1e-07, atol=atol))


def _exact(out, exp, mode: str, atol: float, args: list) -> bool:
    """Steps 1-2: the exact match, as the task's special oracle rewrites it."""
    if mode == "set":
        if type(out) is Digest or type(exp) is Digest:
            return _equal(out, exp)
        return set(out) == set(exp)
    if mode == "not_none":
        want = exp if type(exp) is bool else exp is not None
        return out == want if type(out) is bool else want == (out is not None)
    exact = _equal(out, exp)
    if mode == "any_output":
        return True
    if mode == "or_zero":
        return exact or out == 0
    if mode == "surface_area":
        return exact or abs(out - surface_area(*args)) <= atol
    if mode == "digit_distance":
        return exact or out == digit_distance_nums(*args)
    return exact


def passes(out, exp, mode: str, atol: float, args: list) -> bool:
    """EvalPlus's verdict on one test; raises where EvalPlus's check would (the caller fails
    the test then). `out`/`exp` may be harness.Typed or harness.Digest."""
    out, out_type = _unwrap(out)
    exp, exp_type = _unwrap(exp)
    if mode == "poly_root":
        return abs(poly(*args, out)) <= atol
    exact = _exact(out, exp, mode, atol, args)
    if atol == 0 and is_floats(exp):
        atol = 1e-6   # EvalPlus enforces a tolerance for float results
    if not exact and atol != 0:
        if out_type != exp_type or type(out) is Digest or type(exp) is Digest:
            return False
        if isinstance(exp, (list, tuple)) and len(out) != len(exp):
            return False
        return _allclose(out, exp, atol)
    return exact


# ------------------------------------------------------------------------------------------
# A bounded repr that cannot fail

class _Short(reprlib.Repr):
    def __init__(self):
        super().__init__()
        self.maxlevel, self.maxstring, self.maxlong, self.maxother = 4, 120, 60, 80
        self.maxlist = self.maxtuple = self.maxdict = self.maxset = self.maxfrozenset = 8

    def repr_int(self, x, level):
        if x.bit_length() > 3000:   # repr() refuses past 4300 digits; never build such text
            return f"<an int of about {int(x.bit_length() * 0.30103)} digits>"
        return super().repr_int(x, level)

    def repr_Typed(self, x, level):
        return f"{x.type_name}({self.repr1(x.value, level)})"


_SHORT = _Short()


def short(x) -> str:
    """repr(x) cut to about 160 characters; never raises, whatever x is."""
    try:
        s = _SHORT.repr(x)
    except Exception:  # noqa: BLE001 - a value we cannot show is still a verdict
        s = f"<a {type(x).__name__}>"
    return s if len(s) <= 160 else s[:160] + "..."

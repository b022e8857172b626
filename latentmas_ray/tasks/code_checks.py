"""A code sample's tests as data, and the trusted comparison of a program's results with them.

A code Sample's `gold` is the JSON of a `CodeTests`:
  values  the EvalPlus way: call `entry` on each input, compare each result with the expected
          one. Expected values come from the file (HF `results = [...]`) or from running the
          reference solution in a sandbox of its own (native format, HF `ref_func` rows); they
          never enter the candidate's sandbox. The comparison below runs here, in the scorer,
          on values the harness sent as JSON and we decoded into objects of our own, so an
          object that lies in __eq__ cannot take part (see latentmas_ray.sandbox).
  hf      an HF test script, read as values (code_hf_tests.resolve) when first scored: reading
          its literals costs seconds per file, too slow for loading
  script  assert code run after the candidate (a pass = it ran to the end): only for rows whose
          tests are not in the EvalPlus shape, and for errata=False. Not forgery-proof.

Comparison modes (EvalPlus's per-task rules):
  plain      out == exp; else, when atol != 0 (or 1e-6 when atol == 0 and exp is floats),
             np.allclose(out, exp, rtol=1e-7, atol) for numbers and sequences of numbers
  set        set(out) == set(exp)
  not_none   matched or not: the harness sends True/False (identity) or "is not None"
  poly_root  HumanEval/32: abs(poly(xs, out)) <= atol; no expected values
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

from ..sandbox import NO_VALUE
from ..sandbox.harness import Digest, decode, digest, encode

MODES = ("plain", "set", "not_none", "poly_root")
TRANSFORM = {"plain": "value", "set": "iterable", "not_none": "truth", "poly_root": "value"}


@dataclass(frozen=True)
class CodeTests:
    kind: str                      # "values" | "hf" | "script"
    entry: str = ""                # the candidate's function under test
    inputs: str = ""               # harness.encode([args, ...]): real Python values
    count: int = 0                 # number of inputs
    mode: str = "plain"
    atol: float = 0.0
    expected: str | None = None    # harness.encode([value, ...]) when the file gives them
    reference: str | None = None   # else: a program defining `reference_entry`, run in a sandbox
    reference_entry: str = ""
    script: str = ""               # kinds "hf" and "script": the test code
    humaneval: bool = False        # kind "hf": a HumanEval+ script (check(candidate))

    def __post_init__(self):
        assert self.kind in ("values", "hf", "script"), self.kind
        assert self.mode in MODES, self.mode
        if self.kind == "values":
            assert self.entry and self.count > 0, (self.entry, self.count)
            assert self.mode == "poly_root" or (self.expected is None) != (self.reference is None), \
                "values tests need expected values or a reference program (not both)"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_gold(cls, gold: str) -> "CodeTests":
        """The CodeTests a code Sample's gold holds; a gold that is not one (a hand-made Sample
        whose gold is a test program) is that program as a script."""
        if gold.startswith("{"):
            try:
                return cls(**json.loads(gold))
            except (ValueError, TypeError):
                pass
        return cls("script", script=gold)


def values_tests(entry: str, inputs: list, mode: str, atol: float, *, expected: list | None = None,
                 reference: str | None = None, reference_entry: str = "") -> CodeTests:
    """CodeTests for `inputs` (a list of argument lists, real Python values)."""
    return CodeTests("values", entry, encode(inputs, cap=None), len(inputs), mode, atol,
                     None if expected is None else encode(expected, cap=None), reference,
                     reference_entry or entry)


# ------------------------------------------------------------------------------------------
# The comparison (trusted: runs in the scorer on decoded values)

def _short(x) -> str:
    s = repr(x)
    return s if len(s) <= 160 else s[:160] + "..."


def is_floats(x) -> bool:
    if type(x) is float:
        return True
    if type(x) in (list, tuple):
        return all(type(i) is float for i in x)
    return False


def _number(x) -> bool:
    return type(x) in (int, float, complex, bool)


def close(out, exp, tol: float) -> bool:
    """np.allclose(out, exp, rtol=1e-07, atol=tol) for numbers and (nested) sequences of them."""
    seq = (list, tuple)
    if type(exp) in seq or type(out) in seq:
        if type(exp) not in seq:
            return all(close(o, exp, tol) for o in out)
        if type(out) not in seq:
            return all(close(out, e, tol) for e in exp)
        return len(out) == len(exp) and all(close(o, e, tol) for o, e in zip(out, exp))
    if not _number(out) or not _number(exp):
        return False
    if out == exp:
        return True
    try:
        return abs(out - exp) <= tol + 1e-07 * abs(exp)
    except (OverflowError, TypeError):
        return False


def _same(out, exp) -> bool:
    """out == exp on decoded values; a Digest (a value too big to send) compares by digest."""
    if type(out) is Digest or type(exp) is Digest:
        try:
            a = out.hex if type(out) is Digest else digest(out)
            b = exp.hex if type(exp) is Digest else digest(exp)
        except TypeError:
            return False
        return a == b
    return out == exp


def poly(xs, x) -> float:
    return sum(c * math.pow(x, k) for k, c in enumerate(xs))


def check_one(out, exp, mode: str, atol: float, args: list) -> str | None:
    """Why `out` fails this test (EvalPlus semantics), or None when it passes."""
    if mode == "set":
        if type(out) is Digest or type(exp) is Digest:
            return None if _same(out, exp) else f"returned {_short(out)}, expected {_short(exp)} (as a set)"
        return None if set(out) == set(exp) else f"returned {_short(out)}, expected {_short(exp)} (as a set)"
    if mode == "not_none":
        want = exp if type(exp) is bool else exp is not None
        return None if out is want else f"returned {_short(out)}, expected a {'match' if want else 'non-match'}"
    if mode == "poly_root":
        if not _number(out) or type(out) is complex:
            return f"returned {_short(out)}, not a number"
        value = poly(args[0], out)
        return None if abs(value) <= atol else f"returned {_short(out)}, not a root (poly = {value!r})"
    tol = atol
    if _same(out, exp):
        return None
    if tol == 0 and is_floats(exp):
        tol = 1e-6
    if tol != 0 and type(out) is not Digest and type(exp) is not Digest and close(out, exp, tol):
        return None
    return f"returned {_short(out)}, expected {_short(exp)}" + (f" (atol {tol})" if tol else "")


def first_failure(tests: CodeTests, outputs: tuple, expected: tuple | None) -> str | None:
    """The first failing test as one line for a human, or None when every test passed.
    `outputs`: the candidate's decoded results (NO_VALUE where nothing came)."""
    exp = expected if expected is not None else (None,) * tests.count
    if len(outputs) != tests.count or len(exp) != tests.count:
        return f"got {len(outputs)} results for {tests.count} tests"
    inputs = None
    for i, (out, e) in enumerate(zip(outputs, exp)):
        if out is NO_VALUE:
            why = "sent no result"
        else:
            if inputs is None:
                inputs = decode(tests.inputs)
            try:
                why = check_one(out, e, tests.mode, tests.atol, inputs[i])
            except Exception as err:  # noqa: BLE001 - unhashable, overflow...: the test fails
                why = f"returned {_short(out)}, which cannot be compared ({type(err).__name__}: {err})"
        if why is not None:
            if inputs is None:
                inputs = decode(tests.inputs)
            return f"test {i + 1}/{tests.count}: {tests.entry}(*{_short(inputs[i])}) {why}"[:600]
    return None

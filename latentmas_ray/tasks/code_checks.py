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

Comparison modes: EvalPlus's rules and per-task special oracles, ported rule for rule in
code_compare.py (tests/test_evalplus_differential.py runs EvalPlus itself side by side):
  plain      out == exp; else, when atol != 0 (or 1e-6 when atol == 0 and exp is a float or a
             non-empty sequence of floats): the same type, the same length, np.allclose
  set        set(out) == set(exp)
  not_none   matched or not: the harness sends True/False (identity) or "is not None"
  poly_root  HumanEval/32: abs(poly(xs, out)) <= atol; no expected values
  any_output, or_zero, surface_area, digit_distance: Mbpp/164, 295, 581, 558's oracles
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from ..sandbox import NO_VALUE
from ..sandbox.harness import decode, encode
from .code_compare import SPECIAL_MODES, passes, short

MODES = ("plain",) + SPECIAL_MODES
# What the harness sends back per mode (harness.TRANSFORMS): sets as a list, regex tasks as
# matched-or-not; the other modes need the value itself.
TRANSFORM = {m: {"set": "iterable", "not_none": "truth"}.get(m, "value") for m in MODES}


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
# The comparison (trusted: runs in the scorer on decoded values; rules in code_compare.py)

def check_one(out, exp, mode: str, atol: float, args: list) -> str | None:
    """Why `out` fails this test (EvalPlus's rules), or None when it passes. Never raises."""
    try:
        if passes(out, exp, mode, atol, args):
            return None
    except Exception as err:  # noqa: BLE001 - unhashable, overflow, recursion...: the test fails
        return f"returned {short(out)}, which cannot be compared ({type(err).__name__})"
    if mode == "poly_root":
        return f"returned {short(out)}, not a root of the polynomial (atol {atol})"
    if mode == "not_none":
        want = exp if type(exp) is bool else exp is not None
        return f"returned {short(out)}, expected a {'match' if want else 'non-match'}"
    how = " (as a set)" if mode == "set" else f" (atol {atol})" if atol else ""
    return f"returned {short(out)}, expected {short(exp)}{how}"


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
            why = check_one(out, e, tests.mode, tests.atol, inputs[i])
        if why is not None:
            if inputs is None:
                inputs = decode(tests.inputs)
            return f"test {i + 1}/{tests.count}: {tests.entry}(*{short(inputs[i])}) {why}"[:600]
    return None

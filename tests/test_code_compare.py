"""EvalPlus's comparison rules on decoded values (code_compare.py), and a scorer that never
raises on a value (issue 23, Builds 1 and 3). EvalPlus itself runs side by side on real
programs in test_evalplus_differential.py; these are the rules one by one, fast."""

from __future__ import annotations

import math

import pytest

from latentmas_ray.sandbox.harness import Digest, Typed, decode, encode
from latentmas_ray.tasks.code_checks import first_failure, values_tests
from latentmas_ray.tasks.code_compare import digit_distance_nums, is_floats, passes, short, surface_area

NAN, INF = float("nan"), float("inf")

# (out, exp, mode, atol, args, EvalPlus's verdict, why)
RULES = [
    ([], 0.5, "plain", 0, [], False, "an empty list is not a float"),
    ([], [0.5, 1.0], "plain", 0, [], False, "length differs"),
    ((), [0.5], "plain", 0, [], False, "tuple where a list is expected"),
    ((0.5, 1.0), [0.5, 1.0], "plain", 0, [], False, "tuple of floats for a list of floats"),
    (0, 0.5, "plain", 0, [], False, "an int is not a float"),
    (None, [], "plain", 0, [], False, "None where [] is expected"),
    (0, [], "plain", 0, [], False, "0 where [] is expected"),
    ([], [], "plain", 0, [], True, "exact"),
    (1, 1.0, "plain", 0, [], True, "1 == 1.0 is an exact match in Python, and in EvalPlus"),
    (0.5 + 1e-7, 0.5, "plain", 0, [], True, "within the enforced 1e-6"),
    (0.5 + 1e-5, 0.5, "plain", 0, [], False, "past 1e-6"),
    ([0.5, 1.0 + 1e-9], [0.5, 1.0], "plain", 0, [], True, "list within tolerance"),
    ([1.0], [1.0, 1.0], "plain", 1e-4, [], False, "length differs"),
    ([[1.0]], [[1.0, 1.0]], "plain", 1e-4, [], True, "np.allclose broadcasts inner lists: EvalPlus passes it"),
    (5, 5.00001, "plain", 1e-4, [], False, "atol given, but int is not float"),
    (5.00001, 5.0, "plain", 1e-4, [], True, "atol given"),
    ([1, 2], [1.0, 2.5], "plain", 1e-4, [], False, "allclose on the values"),
    (Typed("numpy.float64", 0.5 + 1e-9), 0.5, "plain", 0, [], False, "numpy scalar: type differs"),
    (Typed("numpy.float64", 0.5), 0.5, "plain", 0, [], True, "numpy scalar equal: exact match"),
    (NAN, NAN, "plain", 0, [], False, "nan is not close to nan (equal_nan=False)"),
    (INF, INF, "plain", 0, [], True, "inf == inf"),
    ("0.5", 0.5, "plain", 0, [], False, "a string"),
    (10**5000, 0.5, "plain", 0, [], False, "a huge int"),
    ([10**5000], [0.5], "plain", 0, [], False, "a huge int in a list"),
    ([1, 2], (2, 1), "set", 0, [], True, "as a set"),
    ([1, 2], (2, 3), "set", 0, [], False, "as a set"),
    (True, True, "not_none", 0, [], True, "matched"),
    (False, True, "not_none", 0, [], False, "not matched"),
    (40, 41, "surface_area", 0, [3, 4], surface_area(3, 4) == 40, "Mbpp/581's oracle"),
    (surface_area(3, 4), -1, "surface_area", 0, [3, 4], True, "Mbpp/581's oracle"),
    (digit_distance_nums(123, 56), -1, "digit_distance", 0, [123, 56], True, "Mbpp/558's oracle"),
    (0, 7, "or_zero", 0, [], True, "Mbpp/295's oracle"),
    ("anything", 7, "any_output", 0, [], True, "Mbpp/164's oracle"),
    (1.0, None, "poly_root", 1e-4, [[-1.0, 1.0]], True, "a root of x - 1"),
    (2.0, None, "poly_root", 1e-4, [[-1.0, 1.0]], False, "not a root"),
]


@pytest.mark.parametrize("out,exp,mode,atol,args,verdict,why", RULES, ids=[r[-1] for r in RULES])
def test_evalplus_rules(out, exp, mode, atol, args, verdict, why):
    try:
        got = passes(out, exp, mode, atol, args)
    except Exception:  # noqa: BLE001 - EvalPlus fails a test whose check raises
        got = False
    assert got is verdict


def test_is_floats_needs_a_nonempty_sequence():
    assert is_floats(0.5) and is_floats([0.5]) and is_floats((0.5, 1.0))
    assert not is_floats([]) and not is_floats(()) and not is_floats([0.5, 1]) and not is_floats(1)


def _cyclic():
    a = []
    a.append(a)
    return a


def _deep(n):
    x = []
    for _ in range(n):
        x = [x]
    return x


ODD_VALUES = [10**5000, -10**5000, [10**5000] * 3, NAN, INF, -INF, "x" * 10**6, b"\x00" * 1000,
              _deep(5000), _cyclic(), {1: _cyclic()}, {(1, 2), (3,)}, frozenset(), 1 + 2j,
              Digest("ab" * 32), Typed("numpy.ndarray", [1.0, 2.0]), Typed("x", 10**5000), None,
              True, [NAN], (INF, -INF), {"k": [None, (1,)]}]
EXPECTED = [0.5, [0.5, 1.0], [], "s", 10**5000, [10**5000], None, (1, 2)]


@pytest.mark.parametrize("mode", ["plain", "set", "not_none", "poly_root", "surface_area",
                                  "digit_distance", "or_zero", "any_output"])
def test_first_failure_never_raises_and_is_short(mode):
    for exp in EXPECTED:
        tests = values_tests("f", [[[1.0, -1.0]]], mode, 0.0 if mode != "poly_root" else 1e-4,
                             expected=None if mode == "poly_root" else [exp],
                             reference=None if mode != "poly_root" else None)
        for out in ODD_VALUES:
            why = first_failure(tests, (out,), None if mode == "poly_root" else (exp,))
            assert why is None or (isinstance(why, str) and len(why) <= 600), (mode, exp, why)
            if mode in ("plain", "set") and exp in (0.5, [0.5, 1.0]):
                assert why is not None   # none of the odd values is a float answer


def test_short_is_bounded_and_never_raises():
    for x in ODD_VALUES:
        s = short(x)
        assert isinstance(s, str) and len(s) <= 163
    assert "5001 digits" in short(10**5000) or "digits" in short(10**5000)


def test_typed_survives_the_wire():
    text = '{"y":["numpy.float64",0.5]}'
    value = decode(text)
    assert type(value) is Typed and value.type_name == "numpy.float64" and value.value == 0.5
    assert decode(encode([1.5])) == [1.5] and math.isnan(decode(encode(NAN)))

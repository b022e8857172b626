"""Reading the Hugging Face "OriginFmt" test scripts of MBPP+/HumanEval+ as data.

Every row of both HF files has the EvalPlus shape:

    def assertion(out, exp, atol): ...            # one of three known bodies (the mode)
    inputs = [[...], ...]                          # a Python literal
    results = [...]                                # a Python literal (or ref_func computes them)
    for i, (inp, exp) in enumerate(zip(inputs, results)):
        assertion(<entry>(*inp), exp, <atol>)      # HumanEval+: inside def check(candidate)

`read_hf_tests` turns that into CodeTests (values mode), so the expected values stay with the
scorer and out of the candidate's sandbox; a script of any other shape gives None, and
`resolve` then runs it as a script. The literals are evaluated by a small walker over the AST
(constants, lists, tuples, dicts, sets, set(), inf, signed and complex numbers), never eval().
"""

from __future__ import annotations

import ast
import math
import re

from .code_checks import CodeTests, values_tests

_PLAIN = """def assertion(out, exp, atol):
    if atol == 0 and is_floats(exp):
        atol = 1e-6
    if out != exp and atol != 0:
        assert np.allclose(out, exp, rtol=1e-07, atol=atol)
    else:
        assert out == exp, f"out: {out}, exp: {exp}"
"""
_HE_PLAIN = """def assertion(out, exp, atol):
    exact_match = out == exp

    if atol == 0 and is_floats(exp):
        atol = 1e-6
    if not exact_match and atol != 0:
        assert np.allclose(out, exp, rtol=1e-07, atol=atol)
    else:
        assert exact_match
"""
_SET = _PLAIN.replace("        atol = 1e-6\n", "        atol = 1e-6\n    out = set(out)\n    exp = set(exp)\n")
_NOT_NONE_MARK = "        exact_match = exp == (out is not None)\n"
HE32_BROKEN = "assert _poly(*candidate(*inp), inp) <= 0.0001"
HE32_FIXED = "assert abs(_poly(*inp, candidate(*inp))) <= 0.0001"

_LOOP = re.compile(r"^\s*for i, \(inp, exp\) in enumerate\(zip\(inputs, results\)\):\n"
                   r"\s*assertion\((\w+)\(\*inp\), exp, ([-+0-9.e]+)\)\s*$", re.M)
_REF_LOOP = re.compile(r"^\s*for i, inp in enumerate\(inputs\):\n"
                       r"\s*assertion\((\w+)\(\*inp\), ref_func\(\*inp\), ([-+0-9.e]+)\)\s*$", re.M)
_HE32_LOOP = re.compile(r"^\s*for i, \(inp, exp\) in enumerate\(zip\(inputs, results\)\):\n"
                        r"\s*" + re.escape(HE32_FIXED) + r"\s*$", re.M)


class _NotLiteral(ValueError):
    pass


def literal(node: ast.AST):
    """The value of a literal expression (what the HF files write), without eval()."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        items = [literal(e) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items) if isinstance(node, ast.Tuple) else set(items)
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise _NotLiteral("**mapping")
        return {literal(k): literal(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = literal(node.operand)
        if type(v) not in (int, float, complex):
            raise _NotLiteral("sign of a non-number")
        return -v if isinstance(node.op, ast.USub) else +v
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
        a, b = literal(node.left), literal(node.right)   # complex numbers: 1 + 2j, -1 - 0j
        if type(a) not in (int, float) or type(b) is not complex:
            raise _NotLiteral("arithmetic other than a complex literal")
        return a + b if isinstance(node.op, ast.Add) else a - b
    if isinstance(node, ast.Name) and node.id == "inf":
        return math.inf
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "set" \
            and not node.args and not node.keywords:
        return set()
    raise _NotLiteral(type(node).__name__)


def _assigned(test: str, name: str):
    """The literal assigned by the one `name = ...` line of `test`; raises when not exactly one."""
    lines = [ln for ln in test.splitlines() if re.match(rf"\s*{name} = ", ln)]
    if len(lines) != 1:
        raise _NotLiteral(f"{len(lines)} '{name} =' lines")
    tree = ast.parse(lines[0].strip())
    return literal(tree.body[0].value)


def _mode(test: str) -> str | None:
    if _SET in test:
        return "set"
    if _NOT_NONE_MARK in test and "    assert exact_match\n" in test:
        return "not_none"   # only with the missing assert added (errata)
    if _PLAIN in test or _HE_PLAIN in test:
        return "plain"
    return None


def _as_args(inputs) -> list:
    if not isinstance(inputs, list) or not all(isinstance(a, (list, tuple)) for a in inputs) or not inputs:
        raise _NotLiteral("inputs is not a non-empty list of argument lists")
    return [list(a) for a in inputs]


def read_hf_tests(test: str, entry: str, *, humaneval: bool, oracle: str = "plain") -> CodeTests | None:
    """CodeTests (values mode) for an HF test script of the EvalPlus shape, else None.
    `entry`: the function the tests call (HumanEval+: `candidate` there). `oracle`: the task's
    EvalPlus mode, used where the script compares plainly (EvalPlus's own special oracles,
    Mbpp/558 and 581, are not in the HF scripts)."""
    called = "candidate" if humaneval else entry
    try:
        if _HE32_LOOP.search(test):   # HumanEval/32 (errata applied): roots, no expected values
            return values_tests(entry, _as_args(_assigned(test, "inputs")), "poly_root", 0.0001)
        mode = _mode(test)
        if mode is None:
            return None
        if mode == "plain" and oracle not in ("plain", "set", "not_none", "poly_root"):
            mode = oracle
        m = _LOOP.search(test)
        if m and m.group(1) == called:
            expected = _assigned(test, "results")
            inputs = _as_args(_assigned(test, "inputs"))
            if not isinstance(expected, list) or len(expected) != len(inputs):
                return None
            return values_tests(entry, inputs, mode, float(m.group(2)), expected=expected)
        m = _REF_LOOP.search(test)
        if m and m.group(1) == called:
            cut = test.index("def check(") if humaneval else re.search(r"^\s*inputs = ", test, re.M).start()
            reference = test[:cut]
            if "def ref_func(" not in reference:
                return None
            return values_tests(entry, _as_args(_assigned(test, "inputs")), mode, float(m.group(2)),
                                reference=reference, reference_entry="ref_func")
    except (_NotLiteral, SyntaxError, ValueError, TypeError, RecursionError, MemoryError):
        return None
    return None


def resolve(tests: CodeTests) -> CodeTests:
    """An "hf" CodeTests as values, or as the script it is when not of the EvalPlus shape."""
    if tests.kind != "hf":
        return tests
    read = read_hf_tests(tests.script, tests.entry, humaneval=tests.humaneval, oracle=tests.mode)
    if read is not None:
        return read
    # The reference does test.replace('candidate', entry_point) and then calls check(entry);
    # passing the function to check() is the same without rewriting the test text.
    script = f"{tests.script}\n\ncheck({tests.entry})\n" if tests.humaneval else tests.script
    return CodeTests("script", tests.entry, script=script)

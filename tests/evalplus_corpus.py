"""A corpus of programs for MBPP+ / HumanEval+ tasks, to score with EvalPlus and with us side by
side (tests/test_evalplus_differential.py): each task's canonical solution, plausible mutants
of it, and degenerate answers.

Mutants are of two kinds:
  * code mutants (AST rewrites of the canonical solution): off-by-one (the first integer
    constant in a function body + 1), flipped comparison (the first comparison operator);
  * result mutants: the canonical solution wrapped so that its result is changed the way
    models get it wrong: a tuple for a list, a list for a tuple, an int for a float, a float
    for an int, a set for a list, a dropped element, rounding to 2 places, a tiny (within any
    tolerance) and a small (past 1e-6) float error, None for an empty list, a numpy scalar for
    a float.
Degenerate answers ignore the input: `return []`, `return ()`, `return 0`, `return None`,
`return 10**5000`, `return float("nan")`, `return ""`, and one that raises.

Every program is a whole module defining the entry point, as EvalPlus's `solution` field is.
Nothing here attacks a sandbox (programs that lie in __eq__ are in test_forgery.py).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

DEGENERATE = {
    "return []": "[]", "return ()": "()", "return 0": "0", "return None": "None",
    "return 10**5000": "10**5000", "return nan": "float('nan')", "return ''": "''",
    "raises": "(_ for _ in ()).throw(ValueError('no'))",
}
# The four answers the acceptance names: each must fail every float-valued task.
FLOAT_TRAPS = ("return []", "return ()", "return 0", "return 10**5000")

RESULT_MUTANTS = {
    "tuple for list": "tuple(r) if type(r) is list else r",
    "list for tuple": "list(r) if type(r) is tuple else r",
    "int for float": "int(r) if type(r) is float and r == r and abs(r) != float('inf') else r",
    "float for int": "float(r) if type(r) is int else r",
    "set for list": "set(r) if type(r) is list and all(e.__hash__ for e in r) else r",
    "dropped element": "r[:-1] if type(r) in (list, tuple, str) and r else r",
    "rounding": "round(r, 2) if type(r) is float else "
                "type(r)(round(e, 2) if type(e) is float else e for e in r) if type(r) in (list, tuple) else r",
    "tiny float error": "r + 1e-9 if type(r) is float else r",
    "small float error": "r + 1e-4 * (abs(r) + 1) if type(r) is float else "
                         "type(r)(e + 1e-4 if type(e) is float else e for e in r) if type(r) in (list, tuple) else r",
    "None for []": "None if r == [] else r",
    "numpy scalar": "__import__('numpy').float64(r) if type(r) is float else r",
}


@dataclass(frozen=True)
class Program:
    task_id: str
    name: str       # "canonical", a mutant's or a degenerate answer's name
    code: str



class _OffByOne(ast.NodeTransformer):
    def __init__(self):
        self.done = False

    def visit_Constant(self, node):
        if not self.done and type(node.value) is int and not isinstance(node.value, bool):
            self.done = True
            return ast.copy_location(ast.Constant(node.value + 1), node)
        return node


_FLIP = {ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt, ast.Eq: ast.NotEq,
         ast.NotEq: ast.Eq}


class _FlipCompare(ast.NodeTransformer):
    def __init__(self):
        self.done = False

    def visit_Compare(self, node):
        self.generic_visit(node)
        if not self.done and type(node.ops[0]) in _FLIP:
            self.done = True
            node.ops = [_FLIP[type(node.ops[0])]()] + node.ops[1:]
        return node


def _code_mutant(canonical: str, entry: str, visitor) -> str | None:
    tree = ast.parse(canonical)
    for node in tree.body:   # only inside the functions: module-level constants stay
        if isinstance(node, ast.FunctionDef):
            visitor.visit(node)
            if visitor.done:
                break
    if not visitor.done:
        return None
    return ast.unparse(ast.fix_missing_locations(tree))


def code_mutants(canonical: str, entry: str) -> dict[str, str]:
    out = {}
    for name, visitor in (("off-by-one", _OffByOne()), ("flipped comparison", _FlipCompare())):
        code = _code_mutant(canonical, entry, visitor)
        if code is not None:
            out[name] = code
    return out


def result_mutant(canonical: str, entry: str, expr: str) -> str:
    return (f"{canonical}\n\n_canonical_{entry} = {entry}\n\n"
            f"def {entry}(*args, **kwargs):\n    r = _canonical_{entry}(*args, **kwargs)\n"
            f"    return {expr}\n")


def degenerate(entry: str, expr: str) -> str:
    return f"def {entry}(*args, **kwargs):\n    return {expr}\n"


def _applicable(expr_name: str, sample_out) -> bool:
    """Does a result mutant change this task's (first) result? Keeps the corpus free of
    programs identical in behaviour to the canonical one."""
    t = type(sample_out)
    seq = t in (list, tuple)
    has_float = t is float or (seq and any(type(e) is float for e in sample_out))
    return {
        "tuple for list": t is list, "list for tuple": t is tuple, "int for float": t is float,
        "float for int": t is int, "set for list": t is list, "dropped element": seq or t is str,
        "rounding": has_float, "tiny float error": t is float, "small float error": has_float,
        "None for []": t is list, "numpy scalar": t is float,
    }[expr_name]


def programs_for(task_id: str, canonical: str, entry: str, first_output, *, float_valued: bool,
                 rotation: int, extra: int) -> list[Program]:
    """The canonical solution; for a float-valued task the four FLOAT_TRAPS; then `extra`
    mutants or degenerate answers taken in turn (from `rotation` on) from those that apply."""
    out = [Program(task_id, "canonical", canonical)]
    if float_valued:
        out += [Program(task_id, n, degenerate(entry, DEGENERATE[n])) for n in FLOAT_TRAPS]
    pool = [(n, c) for n, c in code_mutants(canonical, entry).items()]
    pool += [(n, result_mutant(canonical, entry, e)) for n, e in RESULT_MUTANTS.items()
             if _applicable(n, first_output)]
    pool += [(n, degenerate(entry, e)) for n, e in DEGENERATE.items()
             if not (float_valued and n in FLOAT_TRAPS)]
    for k in range(min(extra, len(pool))):
        name, code = pool[(rotation + k) % len(pool)]
        out.append(Program(task_id, name, code))
    return out

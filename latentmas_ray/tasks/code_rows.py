"""MBPP+ and HumanEval+ rows -> Samples, in both file formats (see ../shared/datasets/SOURCES.md);
the format is detected per file from the first row's fields:

* EvalPlus native (`mbppplus.jsonl`, `humanevalplus.jsonl`): inputs (`base_input` +
  `plus_input`), a reference solution and `atol`, no expected outputs: the expected values come
  from running the reference solution on every input, in a sandbox of its own. JSON lost the
  tuples and complex numbers some MBPP+ inputs had; `MBPP_ARG_TYPES` restores them, per task.
* Hugging Face "OriginFmt" (`mbppplus_hf.jsonl`, `humanevalplus_hf.jsonl`, what the reference
  loads from the hub): the row's own `test` script, read as data when first scored
  (code_hf_tests.py); the expected values in it never enter the candidate's sandbox.

Both give a Sample whose gold is the JSON of a code_checks.CodeTests. Both formats give the same
ids ("Mbpp/2", "HumanEval/0") and the same prompts, except that the MBPP+ native file has no
`test_list`: its examples come from the `assertion` field, which differs from `test_list` in 23
of 378 rows, and its task text has no trailing source URL (18 rows).

Known upstream errors in the HF files, fixed by default (`errata=False` keeps them as shipped,
and then runs the row's script as it is):
* HumanEval/32: `assert _poly(*candidate(*inp), inp) <= 0.0001` unpacks a float, so every
  solution, the canonical one included, fails with a TypeError. We check
  `abs(_poly(*inp, candidate(*inp))) <= 0.0001`, the EvalPlus check for this task.
* Mbpp/737, Mbpp/787, Mbpp/794: their `assertion()` computes `exact_match` and never asserts it,
  so any function that does not raise passes. We add the missing `assert exact_match`.

Two MBPP+ rows (255, 599) need more than the default sandbox limits even for their canonical
solution; the parsers record the raised limits in meta["min_limits"] (see MIN_LIMITS).
"""

from __future__ import annotations

import re
from typing import Sequence

from ..errors import DataError
from .base import Sample
from .code_checks import CodeTests, values_tests
from .code_hf_tests import HE32_BROKEN, HE32_FIXED
from .files import BadRow, SkippedRow, field, parse_each

HEADER = ("Write a complete, self-contained Python script that solves the task below. "
          "Give the whole code in one markdown code block that starts with ```python "
          "and ends with ```.")
_EXAMPLES_INTRO = "Your code will be checked with tests like these:"

# Rows whose canonical solution alone needs more than the default limits (measured on a 2-core
# EPYC, bare Python: Mbpp/255 builds 1.66 M 77-tuples, 10.6 s and 2.2 GB resident; Mbpp/599
# sums range(1e8) eight times, 29 s). The native format also runs the reference solution, so
# about twice that. The reference's 10 s limit fails both even for the canonical solution.
MIN_LIMITS: dict[str, dict] = {
    "Mbpp/255": {"memory_mb": 4096, "wall_s": 90.0, "cpu_s": 90.0},
    "Mbpp/599": {"wall_s": 150.0, "cpu_s": 150.0},
}



# How to rebuild the Python types JSON flattened, per MBPP+ task number (only tasks whose
# inputs had them): one code per positional argument, a trailing "*" repeats the last code for
# the remaining arguments, arguments past the list stay as they are. Codes:
#   T tuple(x)   LT [tuple(e) for e in x]   TT tuple of tuples   Tm tuple(), inner lists -> tuples
#   D every list at any depth -> tuple   DT dict values -> tuples   c complex(x)   f float(x)   - as is
# Derived from the data (the HF copy of each task keeps the real types); tests/test_code_tasks.py
# checks that the converted native inputs contain every HF input of every task.
MBPP_ARG_TYPES: dict[int, str] = {
    **{t: "T*" for t in (2, 116, 132, 222, 261, 273, 394, 421, 424, 429, 470, 560, 579, 596,
                         616, 630, 726, 740, 744, 809)},
    **{t: "LT*" for t in (63, 64, 70, 94, 120, 237, 272, 299, 409, 473, 614, 780)},
    **{t: "LT,-" for t in (75, 413, 753)},
    **{t: "-,T" for t in (106, 750)},
    **{t: "T,-" for t in (250, 405, 446, 720, 763, 808)},
    **{t: "TT*" for t in (259, 445)},
    **{t: "D*" for t in (580, 615, 791)},
    278: "Tm", 722: "DT", 124: "f,c", 252: "c",
}
# How outputs compare (EvalPlus's per-task rules, evalplus/eval/_special_oracle.py; the HF
# copies of the set and not-None tasks show the same in their scripts):
MBPP_SET_OUTPUT = {2, 7, 111, 140, 232, 249, 579, 769}  # order does not matter: compare as sets
MBPP_NOT_NONE_OUTPUT = {737, 787, 794}                  # regex tasks: only "matched or not" counts
# EvalPlus's other MBPP oracles (code_compare.py); 164, 249 and 295 are not in MBPP+ v0.2.0.
MBPP_SPECIAL_OUTPUT = {164: "any_output", 295: "or_zero", 558: "digit_distance", 581: "surface_area"}


def mbpp_mode(n: int) -> str:
    """The comparison mode of MBPP+ task n (code_checks.MODES)."""
    if n in MBPP_SET_OUTPUT:
        return "set"
    if n in MBPP_NOT_NONE_OUTPUT:
        return "not_none"
    return MBPP_SPECIAL_OUTPUT.get(n, "plain")


def _deep_tuple(x):
    return tuple(_deep_tuple(e) for e in x) if isinstance(x, list) else x


_CONVERT = {
    "-": lambda x: x, "T": tuple, "LT": lambda x: [tuple(e) for e in x],
    "TT": lambda x: tuple(tuple(e) for e in x),
    "Tm": lambda x: tuple(tuple(e) if isinstance(e, list) else e for e in x),
    "D": _deep_tuple, "DT": lambda x: {k: tuple(v) for k, v in x.items()},
    "c": complex, "f": float,
}


def typed_args(args: list, arg_types: str) -> list:
    """One JSON argument list with its Python types restored (codes: see MBPP_ARG_TYPES)."""
    if not arg_types:
        return list(args)
    codes = arg_types.split(",")
    repeat = codes[-1].endswith("*")
    codes[-1] = codes[-1].rstrip("*")
    return [_CONVERT[codes[i] if i < len(codes) else (codes[-1] if repeat else "-")](a)
            for i, a in enumerate(args)]


_IDENT = re.compile(r"[A-Za-z_]\w*\Z")

_MBPP_NOT_NONE_BROKEN = "        exact_match = exp == (out is not None)\n"
_MBPP_NOT_NONE_FIXED = _MBPP_NOT_NONE_BROKEN + "    assert exact_match\n"


def _detect(rows: Sequence[tuple[int, dict]], path: str, task: str, hf_field: str) -> str:
    """'native' or 'hf', from the first row's fields (the whole file must be one format)."""
    for _, row in rows:
        if "base_input" in row or "plus_input" in row:
            return "native"
        if hf_field in row:
            return "hf"
        break
    first = sorted(rows[0][1])[:12] if rows else []
    raise DataError(f"cannot tell the {task} file format from the first row's fields {first}",
                    path, rows[0][0] if rows else None,
                    hint="expected the EvalPlus format (base_input, plus_input, canonical_solution) "
                         f"or the Hugging Face format ({hf_field}, test)")


def _inputs(row: dict) -> list:
    base = field(row, "base_input", list, nonempty=False)
    plus = row.get("plus_input", [])
    if plus == {} or plus is None:   # Mbpp/793 ships "plus_input": {} (no plus tests)
        plus = []
    if not isinstance(plus, list):
        raise BadRow(f"field 'plus_input' should be list, got {type(plus).__name__}")
    inputs = base + plus
    if not inputs:
        raise BadRow("fields 'base_input' and 'plus_input' are both empty: nothing to test")
    for k, args in enumerate(inputs):
        if not isinstance(args, list):
            raise BadRow(f"input {k + 1} should be a list of arguments, got {type(args).__name__}")
    return inputs


def _atol(row: dict) -> float:
    atol = row.get("atol", 0)
    if isinstance(atol, bool) or not isinstance(atol, (int, float)) or atol < 0:
        raise BadRow(f"field 'atol' should be a number >= 0, got {atol!r}")
    return atol


def _entry(row: dict) -> str:
    ep = field(row, "entry_point").strip()
    if not _IDENT.match(ep):
        raise BadRow(f"field 'entry_point' is not a Python name: {ep!r}")
    return ep


def _task_number(task_id: object, prefix: str) -> int:
    if isinstance(task_id, int) and not isinstance(task_id, bool):
        return task_id
    if isinstance(task_id, str):
        m = re.fullmatch(rf"(?:{prefix}/)?(\d+)", task_id.strip())
        if m:
            return int(m.group(1))
    raise BadRow(f"field 'task_id' should look like '{prefix}/<number>', got {task_id!r}")


def _mbpp_question(text: str, asserts: list[str]) -> str:
    q = f"{HEADER}\n\n{text.strip()}"
    if asserts:
        q += f"\n\n{_EXAMPLES_INTRO}\n" + "\n".join(a.strip() for a in asserts[:3])
    return q


def _parse_mbpp_native(line: int, row: dict) -> Sample:
    n = _task_number(field(row, "task_id", (str, int)), "Mbpp")
    prompt = field(row, "prompt")
    entry = _entry(row)
    solution = field(row, "canonical_solution")
    inputs, atol = _inputs(row), _atol(row)
    body = prompt.strip()
    if body.startswith('"""') and body.endswith('"""') and len(body) >= 6:
        body = body[3:-3]
    lines = body.strip("\n").splitlines()
    text = "\n".join(ln for ln in lines if not ln.lstrip().startswith("assert ")).strip()
    asserts = [ln.strip() for ln in str(row.get("assertion") or "").splitlines()
               if ln.strip().startswith("assert")]
    if not asserts:
        asserts = [ln.strip() for ln in lines if ln.lstrip().startswith("assert ")]
    if not text:
        raise BadRow("field 'prompt' holds no task description")
    mode = mbpp_mode(n)
    arg_types = MBPP_ARG_TYPES.get(n, "")
    gold = values_tests(entry, [typed_args(a, arg_types) for a in inputs], mode, atol,
                        reference=solution).to_json()
    meta = {"canonical_solution": solution, "format": "evalplus", "n_tests": len(inputs)}
    if f"Mbpp/{n}" in MIN_LIMITS:
        meta["min_limits"] = dict(MIN_LIMITS[f"Mbpp/{n}"])
    return Sample(id=f"Mbpp/{n}", task="mbppplus", question=_mbpp_question(text, asserts),
                  gold=gold, kind="code", entry_point=entry, meta=meta)


def _hf_gold(test: str, entry: str, *, humaneval: bool, mode: str = "plain") -> str:
    """The gold for an HF test script; read as values when first scored (code_hf_tests).
    `mode`: the task's EvalPlus oracle where its script cannot show it (Mbpp/558, 581)."""
    return CodeTests("hf", entry, script=test, humaneval=humaneval, mode=mode).to_json()


def _mbpp_hf_entry(code: str, test_list: list[str], test: str) -> str:
    defined = re.findall(r"^(?:async\s+)?def\s+([A-Za-z_]\w*)\s*\(", code, re.M)
    for name in re.findall(r"\b([A-Za-z_]\w*)\s*\(", test_list[0]):
        if name in defined:
            return name
    m = re.search(r"assertion\(\s*([A-Za-z_]\w*)\(\*inp\)", test)
    if m:
        return m.group(1)
    raise BadRow("cannot tell the function under test: no function defined in 'code' is called "
                 "in test_list[0]")


def _make_parse_mbpp_hf(errata: bool):
    def parse(line: int, row: dict) -> Sample:
        n = _task_number(field(row, "task_id", (int, str)), "Mbpp")
        code = field(row, "code")
        text = field(row, "prompt")
        test_list = field(row, "test_list", list)
        if not all(isinstance(t, str) for t in test_list):
            raise BadRow("field 'test_list' should be a list of strings")
        test = field(row, "test")
        entry = _mbpp_hf_entry(code, test_list, test)
        meta = {"canonical_solution": code, "format": "hf"}
        if f"Mbpp/{n}" in MIN_LIMITS:
            meta["min_limits"] = dict(MIN_LIMITS[f"Mbpp/{n}"])
        if errata and _MBPP_NOT_NONE_BROKEN in test and "assert exact_match" not in test:
            test = test.replace(_MBPP_NOT_NONE_BROKEN, _MBPP_NOT_NONE_FIXED, 1)
            meta["errata"] = "added the missing `assert exact_match` to assertion()"
        return Sample(id=f"Mbpp/{n}", task="mbppplus", question=_mbpp_question(text, test_list),
                      gold=_hf_gold(test, entry, humaneval=False, mode=mbpp_mode(n)), kind="code", entry_point=entry,
                      meta=meta)
    return parse


def _parse_he_native(line: int, row: dict) -> Sample:
    n = _task_number(field(row, "task_id"), "HumanEval")
    prompt = field(row, "prompt")
    entry = _entry(row)
    body = field(row, "canonical_solution")
    inputs, atol = _inputs(row), _atol(row)
    mode = "poly_root" if (n == 32 and entry == "find_zero") else "plain"
    gold = values_tests(entry, inputs, mode, atol,
                        reference=None if mode == "poly_root" else prompt + body).to_json()
    return Sample(id=f"HumanEval/{n}", task="humanevalplus", question=f"{HEADER}\n\n{prompt}",
                  gold=gold, kind="code", entry_point=entry,
                  meta={"canonical_solution": body, "prompt": prompt, "format": "evalplus",
                        "n_tests": len(inputs)})


def _make_parse_he_hf(errata: bool):
    def parse(line: int, row: dict) -> Sample:
        n = _task_number(field(row, "task_id"), "HumanEval")
        prompt = field(row, "prompt")
        entry = _entry(row)
        body = field(row, "canonical_solution")
        test = field(row, "test")
        if "def check(" not in test:
            raise BadRow("field 'test' defines no check(candidate) function")
        meta = {"canonical_solution": body, "prompt": prompt, "format": "hf"}
        if errata and HE32_BROKEN in test:
            test = test.replace(HE32_BROKEN, HE32_FIXED)
            meta["errata"] = "HumanEval/32 root check rewritten as abs(_poly(*inp, out)) <= 1e-4"
        gold = _hf_gold(test, entry, humaneval=True)
        return Sample(id=f"HumanEval/{n}", task="humanevalplus", question=f"{HEADER}\n\n{prompt}",
                      gold=gold, kind="code", entry_point=entry, meta=meta)
    return parse


def parse_mbppplus(rows: list[tuple[int, dict]], path: str, on_bad_row: str = "error", *,
                   errata: bool = True) -> tuple[list[Sample], list[SkippedRow]]:
    """MBPP+ rows (EvalPlus native or HF format) -> Samples; bad rows raise DataError naming
    the field, or with on_bad_row="skip" are returned as SkippedRow(path, line, reason)."""
    if not rows:
        return [], []
    fmt = _detect(rows, path, "MBPP+", "test_list")
    parse = _parse_mbpp_native if fmt == "native" else _make_parse_mbpp_hf(errata)
    return parse_each(rows, path, on_bad_row, parse)


def parse_humanevalplus(rows: list[tuple[int, dict]], path: str, on_bad_row: str = "error", *,
                        errata: bool = True) -> tuple[list[Sample], list[SkippedRow]]:
    """HumanEval+ rows (EvalPlus native or HF format) -> Samples; see parse_mbppplus."""
    if not rows:
        return [], []
    fmt = _detect(rows, path, "HumanEval+", "test")
    parse = _parse_he_native if fmt == "native" else _make_parse_he_hf(errata)
    return parse_each(rows, path, on_bad_row, parse)

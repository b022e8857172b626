"""MBPP+ and HumanEval+: rows -> Samples (both file formats), code extraction, sandboxed scoring.

Two file formats exist for each task (see ../shared/datasets/SOURCES.md) and both are accepted;
the format is detected per file from the first row's fields:

* EvalPlus native (`mbppplus.jsonl`, `humanevalplus.jsonl`): inputs (`base_input` +
  `plus_input`), a reference solution and `atol`, no expected outputs. We build the gold test
  program ourselves, the EvalPlus way: it runs the reference solution on every input inside
  the test program, in a namespace of its own (the candidate cannot redefine it), and compares
  the candidate's outputs with `atol` for floats. JSON lost the tuples and complex numbers
  some MBPP+ inputs had; `_MBPP_ARG_TYPES` restores them, per task.
* Hugging Face "OriginFmt" (`mbppplus_hf.jsonl`, `humanevalplus_hf.jsonl`, what the reference
  loads from the hub): the gold is the row's own `test` script (HumanEval+: plus
  `check(<entry_point>)`, as the reference does).

Both formats give the same ids ("Mbpp/2", "HumanEval/0") and the same prompts, except that
the MBPP+ native file has no `test_list`: its examples come from the `assertion` field, which
differs from `test_list` in 23 of 378 rows, and its task text has no trailing source URL
(18 rows).

Known upstream errors in the HF files, fixed by default (`errata=False` keeps them as shipped):
* HumanEval/32: `assert _poly(*candidate(*inp), inp) <= 0.0001` unpacks a float, so every
  solution, the canonical one included, fails with a TypeError. We check
  `abs(_poly(*inp, candidate(*inp))) <= 0.0001`, the EvalPlus check for this task.
* Mbpp/737, Mbpp/787, Mbpp/794: their `assertion()` computes `exact_match` and never asserts it,
  so any function that does not raise passes. We add the missing `assert exact_match`.

Two MBPP+ rows (255, 599) need more than the default sandbox limits even for their canonical
solution; `limits_for` raises the limits for them (see `_MIN_LIMITS`).
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import replace
from typing import Callable, Sequence

from ..errors import DataError
from .base import Sample, Score
from ..sandbox import ExecResult, SandboxLimits, run_program, run_programs
from .files import BadRow, SkippedRow, field, parse_each

NO_CODE_ERROR = "no ```python block in the completion"

_HEADER = ("Write a complete, self-contained Python script that solves the task below. "
           "Give the whole code in one markdown code block that starts with ```python "
           "and ends with ```.")
_EXAMPLES_INTRO = "Your code will be checked with tests like these:"


# ------------------------------------------------------------------------------------------
# Extracting code from a completion

_FENCE = re.compile(r"```[ \t]*([^\n`]*)\n(.*?)```", re.DOTALL)
_OPEN_PY_FENCE = re.compile(r"```[ \t]*(?:python3?|py)\b[^\n]*\n(.*)\Z", re.DOTALL | re.IGNORECASE)
_PY_TAGS = ("python", "python3", "py")


def _tidy(code: str) -> str:
    # Drop blank lines around the code and trailing spaces, never the first line's indentation:
    # a HumanEval+ answer may be an indented function body.
    return re.sub(r"\A(?:[ \t]*\n)+", "", code).rstrip()


def extract_code(completion: str) -> str | None:
    """The code a completion gives: the last ```python block (the tag is matched case-
    insensitively; python3 and py count too), else the last untagged ``` block, else a
    ```python block left open at the very end (generation cut at max_new_tokens), else None.

    Bare code without any fence is not guessed at (None, as in the reference): the prompt asks
    for a fenced block, and telling prose from code is error-prone.
    """
    if not isinstance(completion, str):
        return None
    python_block = plain_block = None
    last_end = 0
    for m in _FENCE.finditer(completion):
        tag = m.group(1).strip().split()[0].lower() if m.group(1).strip() else ""
        if tag in _PY_TAGS:
            python_block = m.group(2)
        elif tag == "":
            plain_block = m.group(2)
        last_end = m.end()
    for block in (python_block, plain_block):
        if block is not None and block.strip():
            return _tidy(block)
    m = _OPEN_PY_FENCE.search(completion, last_end)
    if m and m.group(1).strip():
        return _tidy(m.group(1))
    return None


# ------------------------------------------------------------------------------------------
# Scoring

def _defines(code: str, name: str) -> bool:
    """Does `code` bind `name` at module level (def, class, assignment, import)?"""
    try:
        tree = ast.parse(code)
    except Exception:  # noqa: BLE001 - SyntaxError, or deep nesting (RecursionError, MemoryError)
        return re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(name)}\s*\(", code, re.M) is not None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return True
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return True
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if any((a.asname or a.name.split(".")[0]) == name for a in node.names):
                return True
    return False


def build_program(code: str, sample: Sample) -> str:
    """The program the sandbox runs: the extracted code, then the gold tests.

    Like the reference, only the extracted block runs, not the prompt; one addition: when the
    block does not define the entry point but the task's prompt does (HumanEval+ answers that
    give only the function body), the prompt is put in front of it.
    """
    prompt = sample.meta.get("prompt") or ""
    ep = sample.entry_point
    if ep and prompt and not _defines(code, ep) and _defines(prompt, ep):
        code = prompt.rstrip("\n") + "\n" + code
    return code + "\n" + sample.gold


# Rows whose canonical solution alone needs more than the default limits (measured on a 2-core
# EPYC, bare Python: Mbpp/255 builds 1.66 M 77-tuples, 10.6 s and 2.2 GB resident; Mbpp/599
# sums range(1e8) eight times, 29 s). The native format also runs the reference solution, so
# about twice that. The reference's 10 s limit fails both even for the canonical solution.
_MIN_LIMITS: dict[str, dict] = {
    "Mbpp/255": {"memory_mb": 4096, "wall_s": 90.0, "cpu_s": 90.0},
    "Mbpp/599": {"wall_s": 150.0, "cpu_s": 150.0},
}


def limits_for(sample: Sample, limits: SandboxLimits) -> SandboxLimits:
    """`limits`, raised to the row's known minimum where its tests are that heavy."""
    need = sample.meta.get("min_limits") or {}
    raise_to = {k: max(getattr(limits, k), v) for k, v in need.items() if hasattr(limits, k)}
    return replace(limits, **raise_to) if raise_to else limits


def _score_from(res: ExecResult, code: str) -> Score:
    if res.passed:
        return Score(True, code, None)
    return Score(False, code, f"{res.status}: {res.detail}")


def _check_sample(sample: Sample) -> None:
    if sample.kind != "code":
        raise ValueError(f"sample {sample.id!r} is a {sample.kind} task, not code")


def score_code(completion: str, sample: Sample, limits: SandboxLimits = SandboxLimits()) -> Score:
    """Score one completion: extract its code, run it with the sample's tests in the sandbox."""
    _check_sample(sample)
    code = extract_code(completion)
    if code is None:
        return Score(False, None, NO_CODE_ERROR)
    return _score_from(run_program(build_program(code, sample), limits_for(sample, limits)), code)


def score_code_many(completions: Sequence[str], samples: Sequence[Sample],
                    limits: SandboxLimits = SandboxLimits(), workers: int | None = None,
                    progress: Callable[[int], None] | None = None) -> list[Score]:
    """Score many completions in parallel sandboxes; results in input order.
    progress(k) is called with the number of newly finished samples."""
    if len(completions) != len(samples):
        raise ValueError(f"{len(completions)} completions for {len(samples)} samples")
    out: list[Score | None] = [None] * len(samples)
    todo: list[tuple[int, str]] = []
    for i, (c, s) in enumerate(zip(completions, samples)):
        _check_sample(s)
        code = extract_code(c)
        if code is None:
            out[i] = Score(False, None, NO_CODE_ERROR)
            if progress is not None:
                progress(1)
        else:
            todo.append((i, code))
    results = run_programs([build_program(code, samples[i]) for i, code in todo],
                           [limits_for(samples[i], limits) for i, _ in todo],
                           workers=workers, progress=progress)
    for (i, code), res in zip(todo, results):
        out[i] = _score_from(res, code)
    return out  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------
# Gold test programs for the EvalPlus native format

# How to rebuild the Python types JSON flattened, per MBPP+ task number (only tasks whose
# inputs had them): one code per positional argument, a trailing "*" repeats the last code for
# the remaining arguments, arguments past the list stay as they are. Codes:
#   T tuple(x)   LT [tuple(e) for e in x]   TT tuple of tuples   Tm tuple(), inner lists -> tuples
#   D every list at any depth -> tuple   DT dict values -> tuples   c complex(x)   f float(x)   - as is
# Derived from the data (the HF copy of each task keeps the real types); tests/test_code_tasks.py
# checks that the converted native inputs contain every HF input of every task.
_MBPP_ARG_TYPES: dict[int, str] = {
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
# How outputs compare (EvalPlus's per-task rules; the HF copies of these tasks show the same):
_MBPP_SET_OUTPUT = {2, 7, 111, 140, 232, 579, 769}     # order does not matter: compare as sets
_MBPP_NOT_NONE_OUTPUT = {737, 787, 794}                 # regex tasks: only "matched or not" counts

# The helper every native gold program carries. Only `_lmr_plus_tests` is bound at module level;
# the reference solution runs in a namespace of its own.
_NATIVE_TEST_HELPER = r'''

# ---- tests: EvalPlus base + plus inputs; expected outputs come from the reference solution ----
def _lmr_plus_tests(entry, reference_src, inputs_json, arg_types, atol, mode):
    import copy, json, math

    def deep_tuple(x):
        return tuple(deep_tuple(e) for e in x) if isinstance(x, list) else x

    convert = {
        "-": lambda x: x, "T": tuple, "LT": lambda x: [tuple(e) for e in x],
        "TT": lambda x: tuple(tuple(e) for e in x),
        "Tm": lambda x: tuple(tuple(e) if isinstance(e, list) else e for e in x),
        "D": deep_tuple, "DT": lambda x: {k: tuple(v) for k, v in x.items()},
        "c": complex, "f": float,
    }

    def typed(args):
        if not arg_types:
            return list(args)
        codes = arg_types.split(",")
        repeat = codes[-1].endswith("*")
        codes[-1] = codes[-1].rstrip("*")
        return [convert[codes[i] if i < len(codes) else (codes[-1] if repeat else "-")](a)
                for i, a in enumerate(args)]

    def short(x):
        s = repr(x)
        return s if len(s) <= 160 else s[:160] + "..."

    def is_floats(x):
        if isinstance(x, float):
            return True
        if isinstance(x, (list, tuple)):
            return all(isinstance(i, float) for i in x)
        return False

    def close(out, exp, tol):
        # np.allclose(out, exp, rtol=1e-07, atol=tol) for numbers and sequences of numbers
        if isinstance(exp, (list, tuple)) or isinstance(out, (list, tuple)):
            if not isinstance(exp, (list, tuple)):
                return all(close(o, exp, tol) for o in out)
            if not isinstance(out, (list, tuple)):
                return all(close(out, e, tol) for e in exp)
            return len(out) == len(exp) and all(close(o, e, tol) for o, e in zip(out, exp))
        num = (int, float, complex)
        if not isinstance(out, num) or not isinstance(exp, num):
            return False
        if out == exp:
            return True
        try:
            return abs(out - exp) <= tol + 1e-07 * abs(exp)
        except (OverflowError, TypeError):
            return False

    reference_ns = {"__name__": "_lmr_reference"}
    exec(compile(reference_src, "<reference solution>", "exec", dont_inherit=True), reference_ns)
    reference = reference_ns[entry]
    candidate = globals().get(entry)
    if not callable(candidate):
        raise NameError(f"the code defines no function {entry!r}")
    inputs = [typed(a) for a in json.loads(inputs_json)]
    expected = [None] * len(inputs)
    if mode != "poly_root":
        expected = [reference(*copy.deepcopy(args)) for args in inputs]
    for i, (args, exp) in enumerate(zip(inputs, expected)):
        out = candidate(*copy.deepcopy(args))
        what = f"test {i + 1}/{len(inputs)}: {entry}(*{short(args)})"
        if mode == "set":
            assert set(out) == set(exp), f"{what} returned {short(out)}, expected {short(exp)} (as a set)"
        elif mode == "not_none":
            got = out if isinstance(out, bool) else out is not None
            want = exp if isinstance(exp, bool) else exp is not None
            assert got == want, f"{what} returned {short(out)}, expected a {'match' if want else 'non-match'}"
        elif mode == "poly_root":
            value = sum(c * math.pow(out, k) for k, c in enumerate(args[0]))
            assert abs(value) <= atol, f"{what} returned {short(out)}, not a root (poly = {value!r})"
        else:
            tol = atol
            exact = out == exp
            if tol == 0 and is_floats(exp):
                tol = 1e-6
            if not exact and tol != 0:
                assert close(out, exp, tol), f"{what} returned {short(out)}, expected {short(exp)} (atol {tol})"
            else:
                assert exact, f"{what} returned {short(out)}, expected {short(exp)}"
'''


def native_gold(entry: str, reference_src: str, inputs: list, atol: float, *,
                arg_types: str = "", mode: str = "plain") -> str:
    """The gold test program for an EvalPlus native row (appended after the candidate code)."""
    inputs_json = json.dumps(inputs)   # floats round-trip exactly; inf/nan as Infinity/NaN
    call = (f"_lmr_plus_tests({entry!r}, {reference_src!r}, {inputs_json!r}, {arg_types!r}, "
            f"{atol!r}, {mode!r})\n")
    return _NATIVE_TEST_HELPER + "\n" + call


# ------------------------------------------------------------------------------------------
# Row parsing

_IDENT = re.compile(r"[A-Za-z_]\w*\Z")

_HE32_BROKEN = "assert _poly(*candidate(*inp), inp) <= 0.0001"
_HE32_FIXED = "assert abs(_poly(*inp, candidate(*inp))) <= 0.0001"
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
    q = f"{_HEADER}\n\n{text.strip()}"
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
    mode = "set" if n in _MBPP_SET_OUTPUT else "not_none" if n in _MBPP_NOT_NONE_OUTPUT else "plain"
    gold = native_gold(entry, solution, inputs, atol, arg_types=_MBPP_ARG_TYPES.get(n, ""), mode=mode)
    meta = {"canonical_solution": solution, "format": "evalplus", "n_tests": len(inputs)}
    if f"Mbpp/{n}" in _MIN_LIMITS:
        meta["min_limits"] = dict(_MIN_LIMITS[f"Mbpp/{n}"])
    return Sample(id=f"Mbpp/{n}", task="mbppplus", question=_mbpp_question(text, asserts),
                  gold=gold, kind="code", entry_point=entry, meta=meta)


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
        if f"Mbpp/{n}" in _MIN_LIMITS:
            meta["min_limits"] = dict(_MIN_LIMITS[f"Mbpp/{n}"])
        if errata and _MBPP_NOT_NONE_BROKEN in test and "assert exact_match" not in test:
            test = test.replace(_MBPP_NOT_NONE_BROKEN, _MBPP_NOT_NONE_FIXED, 1)
            meta["errata"] = "added the missing `assert exact_match` to assertion()"
        return Sample(id=f"Mbpp/{n}", task="mbppplus", question=_mbpp_question(text, test_list),
                      gold=test, kind="code", entry_point=entry, meta=meta)
    return parse


def _parse_he_native(line: int, row: dict) -> Sample:
    n = _task_number(field(row, "task_id"), "HumanEval")
    prompt = field(row, "prompt")
    entry = _entry(row)
    body = field(row, "canonical_solution")
    inputs, atol = _inputs(row), _atol(row)
    mode = "poly_root" if (n == 32 and entry == "find_zero") else "plain"
    gold = native_gold(entry, prompt + body, inputs, atol, mode=mode)
    return Sample(id=f"HumanEval/{n}", task="humanevalplus", question=f"{_HEADER}\n\n{prompt}",
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
        if errata and _HE32_BROKEN in test:
            test = test.replace(_HE32_BROKEN, _HE32_FIXED)
            meta["errata"] = "HumanEval/32 root check rewritten as abs(_poly(*inp, out)) <= 1e-4"
        # The reference does test.replace('candidate', entry_point) and then calls check(entry);
        # passing the function to check() is the same without rewriting the test text.
        gold = f"{test}\n\ncheck({entry})\n"
        return Sample(id=f"HumanEval/{n}", task="humanevalplus", question=f"{_HEADER}\n\n{prompt}",
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

"""MBPP+ and HumanEval+ scoring: code extraction, the candidate program, sandboxed runs, and
the trusted comparison of their results (row parsing: code_rows.py).

A completion passes when its code, run in the sandbox, gives for every test input a value equal
(EvalPlus's rules, code_checks.py) to the expected one. Expected values come from the file or
from the reference solution run once per sample in a sandbox of its own (cached for the
process); the candidate's sandbox never holds them.
"""

from __future__ import annotations

import ast
import hashlib
import re
import threading
from functools import lru_cache
from dataclasses import replace
from typing import Callable, Sequence

from ..sandbox import DEFAULT_LEVEL, ExecResult, SandboxLimits, TestCalls, run_programs
from ..sandbox.harness import decode
from .base import Sample, Score
from .code_checks import TRANSFORM, CodeTests, first_failure
from .code_compare import short
from .code_hf_tests import resolve
from .code_rows import parse_humanevalplus, parse_mbppplus

__all__ = ["NO_CODE_ERROR", "build_program", "extract_code", "limits_for", "parse_humanevalplus",
           "parse_mbppplus", "score_code", "score_code_many", "code_tests_of"]

NO_CODE_ERROR = "no ```python block in the completion"

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
    """The program the sandbox runs: the extracted code (then, for script tests only, the
    test script; values tests are called by the harness after it).

    Like the reference, only the extracted block runs, not the prompt; one addition: when the
    block does not define the entry point but the task's prompt does (HumanEval+ answers that
    give only the function body), the prompt is put in front of it.
    """
    prompt = sample.meta.get("prompt") or ""
    ep = sample.entry_point
    if ep and prompt and not _defines(code, ep) and _defines(prompt, ep):
        code = prompt.rstrip("\n") + "\n" + code
    tests = code_tests_of(sample.gold)
    return code + "\n" + tests.script if tests.kind == "script" else code


def limits_for(sample: Sample, limits: SandboxLimits) -> SandboxLimits:
    """`limits`, raised to the row's known minimum where its tests are that heavy."""
    need = sample.meta.get("min_limits") or {}
    raise_to = {k: max(getattr(limits, k), v) for k, v in need.items() if hasattr(limits, k)}
    return replace(limits, **raise_to) if raise_to else limits


def _check_sample(sample: Sample) -> None:
    if sample.kind != "code":
        raise ValueError(f"sample {sample.id!r} is a {sample.kind} task, not code")



# ------------------------------------------------------------------------------------------
# Scoring

_REFERENCE_CACHE: dict[str, tuple] = {}   # key -> expected values (successes only)
_CACHE_LOCK = threading.Lock()
# A reference solution that fails (a timeout under load, most often) is run again before the
# failure is believed; a failure is never cached, so a later call tries again.
REFERENCE_TRIES = 3


@lru_cache(maxsize=4096)
def code_tests_of(gold: str) -> CodeTests:
    """A code Sample's tests, HF scripts read as values (cached: that reading is slow)."""
    return resolve(CodeTests.from_gold(gold))


def _reference_key(tests: CodeTests) -> str:
    text = "\0".join((tests.reference or "", tests.reference_entry, tests.inputs, tests.mode))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _calls(tests: CodeTests, entry: str) -> TestCalls:
    return TestCalls.encoded(entry, tests.inputs, tests.count, TRANSFORM[tests.mode])


def _expected_values(all_tests: Sequence[CodeTests], samples: Sequence[Sample], limits: SandboxLimits,
                     workers: int | None, level: str) -> list[tuple | str | None]:
    """Per sample: the expected values (tuple), why they could not be had (str), or None
    (script tests, HumanEval/32). Reference solutions run in sandboxes of their own."""
    todo: dict[str, tuple[CodeTests, Sample]] = {}
    with _CACHE_LOCK:
        for t, s in zip(all_tests, samples):
            if t.kind == "values" and t.reference is not None:
                key = _reference_key(t)
                if key not in _REFERENCE_CACHE:
                    todo.setdefault(key, (t, s))
    failed = _run_references(todo, limits, workers, level)
    out: list[tuple | str | None] = []
    for t in all_tests:
        if t.kind != "values" or t.mode == "poly_root":
            out.append(None)
        elif t.expected is not None:
            out.append(tuple(decode(t.expected)))
        else:
            key = _reference_key(t)
            with _CACHE_LOCK:
                out.append(_REFERENCE_CACHE[key] if key in _REFERENCE_CACHE else failed[key])
    return out


def _run_references(todo: dict[str, tuple[CodeTests, Sample]], limits: SandboxLimits,
                    workers: int | None, level: str) -> dict[str, str]:
    """Run the reference solutions in `todo` (key -> tests, sample), each up to REFERENCE_TRIES
    times until it passes; cache the expected values of those that passed. Returns, for each
    that never passed, one line naming the task and the last failure."""
    why: dict[str, str] = {}
    for _ in range(REFERENCE_TRIES):
        if not todo:
            break
        items = list(todo.items())
        results = run_programs([t.reference for _, (t, _) in items],
                               [limits_for(s, limits) for _, (_, s) in items], workers=workers,
                               tests=[_calls(t, t.reference_entry) for _, (t, _) in items], level=level)
        for (key, (_, s)), res in zip(items, results):
            if res.passed:
                with _CACHE_LOCK:
                    _REFERENCE_CACHE[key] = res.values
                del todo[key]
                why.pop(key, None)
            else:
                why[key] = (f"the reference solution of {s.id} failed {REFERENCE_TRIES} times, so this "
                            f"sample cannot be scored (last: {res.status}: {res.detail})")
    return why


def _score_from(res: ExecResult, code: str, tests: CodeTests, expected: tuple | str | None) -> Score:
    if tests.kind == "script":
        return Score(True, code, None) if res.passed else Score(False, code, f"{res.status}: {res.detail}")
    if isinstance(expected, str):
        return Score(False, code, f"error: {expected}")
    if not res.passed:
        where = ""
        if res.status == "failed" and res.last_test is not None and res.last_test < tests.count:
            args = decode(tests.inputs)[res.last_test]
            where = f"test {res.last_test + 1}/{tests.count}: {tests.entry}(*{short(args)}) raised "
        return Score(False, code, f"{res.status}: {where}{res.detail}")
    why = first_failure(tests, res.values, expected)
    return Score(True, code, None) if why is None else Score(False, code, f"failed: {why}")


def score_code(completion: str, sample: Sample, limits: SandboxLimits = SandboxLimits(),
               sandbox_level: str = DEFAULT_LEVEL) -> Score:
    """Score one completion: extract its code, run it on the sample's tests in the sandbox."""
    return score_code_many([completion], [sample], limits, workers=1, sandbox_level=sandbox_level)[0]


def score_code_many(completions: Sequence[str], samples: Sequence[Sample],
                    limits: SandboxLimits = SandboxLimits(), workers: int | None = None,
                    progress: Callable[[int], None] | None = None,
                    sandbox_level: str = DEFAULT_LEVEL) -> list[Score]:
    """Score many completions in parallel sandboxes; results in input order.
    progress(k) is called with the number of newly finished samples. Raises
    SandboxUnavailable, before any run, when this machine cannot give `sandbox_level`."""
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
    if not todo:
        return out  # type: ignore[return-value]
    tests = [code_tests_of(samples[i].gold) for i, _ in todo]
    expected = _expected_values(tests, [samples[i] for i, _ in todo], limits, workers, sandbox_level)
    results = run_programs([build_program(code, samples[i]) for i, code in todo],
                           [limits_for(samples[i], limits) for i, _ in todo], workers=workers,
                           progress=progress, level=sandbox_level,
                           tests=[_calls(t, t.entry) if t.kind == "values" else None for t in tests])
    for (i, code), t, exp, res in zip(todo, tests, expected, results):
        out[i] = _score_from(res, code, t, exp)
    return out  # type: ignore[return-value]

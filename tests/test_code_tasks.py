"""MBPP+ / HumanEval+: both file formats, code extraction, scoring real rows in the sandbox."""

from __future__ import annotations

import json
from math import inf, nan

import pytest

from latentmas_ray.errors import DataError
from latentmas_ray.sandbox import SandboxLimits
from latentmas_ray.sandbox.harness import decode, encode
from latentmas_ray.tasks.code_rows import MBPP_ARG_TYPES, typed_args
from latentmas_ray.tasks.code_tasks import (NO_CODE_ERROR, build_program, extract_code,
                                            parse_humanevalplus, parse_mbppplus, score_code,
                                            score_code_many, code_tests_of)
from latentmas_ray.tasks.files import read_rows

LIMITS = SandboxLimits(wall_s=30, cpu_s=30)
# A handful of rows covering every comparison mode and input conversion.
MBPP_IDS = ["Mbpp/2", "Mbpp/82", "Mbpp/124", "Mbpp/252", "Mbpp/278", "Mbpp/737", "Mbpp/793"]
HE_IDS = ["HumanEval/0", "HumanEval/2", "HumanEval/14", "HumanEval/32", "HumanEval/53"]


def load_code_files(folder):
    """{file name: (rows, {id: sample}, samples)} for the four code files in folder."""
    out = {}
    for name, parse in (("mbppplus.jsonl", parse_mbppplus), ("mbppplus_hf.jsonl", parse_mbppplus),
                        ("humanevalplus.jsonl", parse_humanevalplus),
                        ("humanevalplus_hf.jsonl", parse_humanevalplus)):
        path = folder / name
        rows, _ = read_rows(path)
        samples, skipped = parse(rows, str(path), "error")
        assert skipped == []
        out[name] = (rows, {s.id: s for s in samples}, samples)
    return out


@pytest.fixture(scope="module")
def loaded(datasets_dir):
    # the slices; tests/test_full_datasets.py loads the full files with load_code_files too
    return load_code_files(datasets_dir)


def fenced(code: str) -> str:
    return f"Sure.\n```python\n{code}\n```\nThat is all."


def canonical(sample) -> str:
    return fenced(sample.meta.get("prompt", "") + sample.meta["canonical_solution"])


# ------------------------------------------------------------------------------------------
# parsing

def test_both_formats_parse_to_the_same_ids_and_counts(loaded):
    # test_full_datasets.py::test_full_both_formats_parse_to_the_same_ids_and_counts: 378 / 164
    for native, hf, n in (("mbppplus.jsonl", "mbppplus_hf.jsonl", 16),
                          ("humanevalplus.jsonl", "humanevalplus_hf.jsonl", 11)):
        a, b = loaded[native][2], loaded[hf][2]
        assert len(a) == len(b) == n
        assert [s.id for s in a] == [s.id for s in b]
        assert [s.entry_point for s in a] == [s.entry_point for s in b]
        for s in a + b:
            assert s.kind == "code" and s.meta["canonical_solution"]
    assert loaded["mbppplus_hf.jsonl"][2][0].id == "Mbpp/2"
    assert loaded["humanevalplus.jsonl"][2][0].id == "HumanEval/0"


def test_questions(loaded):
    nat, hf = loaded["mbppplus.jsonl"][1]["Mbpp/2"], loaded["mbppplus_hf.jsonl"][1]["Mbpp/2"]
    for s in (nat, hf):
        assert "```python" in s.question
        assert "Write a function to find the shared elements from the given two lists." in s.question
        assert s.question.count("assert ") == 3
        assert "similar_elements((3, 4, 5, 6),(5, 7, 4, 10))" in s.question
    he = loaded["humanevalplus_hf.jsonl"][1]["HumanEval/0"]
    assert he.question.endswith(he.meta["prompt"]) and "```python" in he.question
    assert loaded["humanevalplus.jsonl"][1]["HumanEval/0"].question == he.question


def test_native_inputs_get_their_python_types_back(loaded):
    """Every input of every HF row (which keeps tuples, complex numbers...) appears among the
    native row's inputs as the harness hands them to the candidate."""
    nat_rows = {r["task_id"]: r for _, r in loaded["mbppplus.jsonl"][0]}
    for _, row in loaded["mbppplus_hf.jsonl"][0]:
        n = row["task_id"]
        nat = nat_rows[f"Mbpp/{n}"]
        plus = nat["plus_input"] if isinstance(nat["plus_input"], list) else []
        # what the candidate is given: the native gold's inputs, decoded as in the sandbox
        seen = decode(code_tests_of(loaded["mbppplus.jsonl"][1][f"Mbpp/{n}"].gold).inputs)
        assert seen == [typed_args(a, MBPP_ARG_TYPES.get(n, "")) for a in nat["base_input"] + plus]
        line = next(ln for ln in row["test"].splitlines() if ln.startswith("inputs = "))
        env = {"inf": inf, "nan": nan}
        exec(line, env)
        reprs = {repr(c) for c in seen}
        for inp in env["inputs"]:
            if repr(list(inp)) not in reprs:   # -0.0 vs 0.0 in complex reprs: compare values
                assert any(list(inp) == c and [type(x) for x in inp] == [type(x) for x in c]
                           for c in seen), (n, inp)


def test_detect_format_error(tmp_path):
    with pytest.raises(DataError, match="cannot tell the MBPP\\+ file format"):
        parse_mbppplus([(1, {"question": "x"})], "f.jsonl", "error")


GOOD_NATIVE_MBPP = {"task_id": "Mbpp/3", "prompt": '"""\nDo it.\nassert f(1) == 1\n"""\n',
                    "entry_point": "f", "canonical_solution": "def f(x):\n    return x\n",
                    "base_input": [[1]], "plus_input": [], "atol": 0}


@pytest.mark.parametrize("parse,bad,field_name", [
    (parse_mbppplus, {"task_id": 2, "code": "def f(): pass", "prompt": "p", "test_list": ["assert f()"]}, "test"),
    (parse_mbppplus, dict(GOOD_NATIVE_MBPP, task_id="Mbpp/4", atol="zero"), "atol"),
    (parse_mbppplus, dict(GOOD_NATIVE_MBPP, task_id="Mbpp/5", entry_point=None), "entry_point"),
    (parse_humanevalplus, {"task_id": "HumanEval/1", "prompt": "def f():\n", "entry_point": "f",
                           "canonical_solution": "  pass", "base_input": "oops", "atol": 0}, "base_input"),
    (parse_humanevalplus, {"task_id": "HumanEval/1", "prompt": "def f():\n", "entry_point": "f",
                           "canonical_solution": "  pass", "test": 3}, "test"),
])
def test_malformed_rows(parse, bad, field_name):
    rows = [(1, GOOD_NATIVE_MBPP), (2, bad)] if "base_input" in bad and parse is parse_mbppplus else [(2, bad)]
    with pytest.raises(DataError) as e:
        parse(rows, "data.jsonl", "error")
    assert repr(field_name) in str(e.value) and "data.jsonl:2:" in str(e.value)
    samples, skipped = parse(rows, "data.jsonl", "skip")
    assert len(samples) == len(rows) - 1
    assert len(skipped) == 1 and skipped[0].line == 2 and repr(field_name) in skipped[0].reason


def test_hf_mbpp_entry_point_comes_from_the_tests():
    row = {"task_id": 9, "code": "def helper(x):\n    return x\n\ndef main_fn(a):\n    return helper(a)\n",
           "prompt": "Do it.", "test_list": ["assert main_fn(1) == 1"], "test": "assert main_fn(2) == 2\n"}
    samples, _ = parse_mbppplus([(1, row)], "x.jsonl", "error")
    assert samples[0].entry_point == "main_fn" and samples[0].id == "Mbpp/9"


# ------------------------------------------------------------------------------------------
# extraction

@pytest.mark.parametrize("completion,expected", [
    ("```python\na = 1\n```\n```python\nb = 2\n```", "b = 2"),
    ("```Python\nx = 1\n```", "x = 1"),
    ("```py\nx = 1\n```", "x = 1"),
    ("text\n```\nplain = 1\n```\n", "plain = 1"),
    ("```python\nfirst = 1\n```\n```\nplain = 1\n```", "first = 1"),
    ("```python\n\n    return x + 1\n\n```", "    return x + 1"),
    ("thinking...\n```python\ndef f():\n    return 1", "def f():\n    return 1"),
    ("def f():\n    return 1\n", None),
    ("```bash\nls\n```", None),
    ("", None),
])
def test_extract_code(completion, expected):
    assert extract_code(completion) == expected


# ------------------------------------------------------------------------------------------
# scoring real rows

@pytest.mark.parametrize("file_a,file_b,ids", [
    ("mbppplus.jsonl", "mbppplus_hf.jsonl", MBPP_IDS),
    ("humanevalplus.jsonl", "humanevalplus_hf.jsonl", HE_IDS),
])
def test_canonical_solutions_pass_and_wrong_ones_fail(loaded, file_a, file_b, ids):
    samples = [loaded[f][1][i] for f in (file_a, file_b) for i in ids]
    wrong = [fenced(f"def {s.entry_point}(*args):\n    return None") for s in samples]
    scores = score_code_many([canonical(s) for s in samples] + wrong, samples + samples, LIMITS,
                             workers=2)
    n = len(samples)
    for s, sc in zip(samples, scores[:n]):
        assert sc.correct, (s.id, s.meta["format"], sc.error)
    for s, sc in zip(samples, scores[n:]):
        assert not sc.correct and sc.error.startswith("failed: "), (s.id, sc)


def test_a_wrong_answer_says_which_test_failed(loaded):
    s = loaded["mbppplus.jsonl"][1]["Mbpp/2"]
    sc = score_code(fenced("def similar_elements(a, b):\n    return (1,)"), s, LIMITS)
    assert not sc.correct
    assert "test 1/" in sc.error and "similar_elements" in sc.error and "expected" in sc.error


def test_humaneval_body_only_answer_gets_the_prompt(loaded):
    s = loaded["humanevalplus_hf.jsonl"][1]["HumanEval/0"]
    body = s.meta["canonical_solution"]
    assert build_program(extract_code(fenced(body)), s).startswith(s.meta["prompt"].rstrip("\n"))
    assert score_code(fenced(body), s, LIMITS).correct
    full = s.meta["prompt"] + body
    assert build_program(extract_code(fenced(full)), s).startswith(full.strip("\n"))


def test_no_code_block():
    from latentmas_ray.tasks.base import Sample
    s = Sample(id="Mbpp/1", task="mbppplus", question="q", gold="assert False", kind="code",
               entry_point="f")
    sc = score_code("def f(): return 1", s, LIMITS)
    assert (sc.correct, sc.extracted, sc.error) == (False, None, NO_CODE_ERROR)
    done = []
    assert score_code_many(["nothing here"], [s], LIMITS, progress=done.append)[0].error == NO_CODE_ERROR
    assert done == [1]


def test_candidate_cannot_replace_the_reference_solution(loaded):
    # The native gold runs the reference in its own namespace: a candidate that also redefines
    # names the reference uses (and returns garbage) must still fail.
    s = loaded["mbppplus.jsonl"][1]["Mbpp/2"]
    evil = ("def similar_elements(a, b):\n    return ()\n"
            "reference = similar_elements\nreference_ns = {'similar_elements': similar_elements}\n")
    assert not score_code(fenced(evil), s, LIMITS).correct


def test_hf_errata(datasets_dir):
    rows = {r["task_id"]: (line, r) for line, r in read_rows(datasets_dir / "humanevalplus_hf.jsonl")[0]}
    line, row = rows["HumanEval/32"]
    fixed, _ = parse_humanevalplus([(line, row)], "he.jsonl", "error")
    raw, _ = parse_humanevalplus([(line, row)], "he.jsonl", "error", errata=False)
    assert "errata" in fixed[0].meta and "errata" not in raw[0].meta
    completion = canonical(fixed[0])
    got = score_code_many([completion, completion], [fixed[0], raw[0]], LIMITS, workers=2)
    assert got[0].correct
    assert not got[1].correct and "TypeError" in got[1].error   # the upstream bug, as shipped

    mrows = {r["task_id"]: (line, r) for line, r in read_rows(datasets_dir / "mbppplus_hf.jsonl")[0]}
    line, row = mrows[737]
    fixed, _ = parse_mbppplus([(line, row)], "m.jsonl", "error")
    raw, _ = parse_mbppplus([(line, row)], "m.jsonl", "error", errata=False)
    always_match = fenced("def check_str(s):\n    return True")
    got = score_code_many([always_match, always_match], [fixed[0], raw[0]], LIMITS, workers=2)
    assert not got[0].correct and got[1].correct


def test_native_gold_is_plain_json_safe(loaded):
    # the tests travel as JSON (the gold, then the sandbox header); inf/nan survive
    s = loaded["mbppplus.jsonl"][1]["Mbpp/2"]
    t = code_tests_of(s.gold)
    assert (t.kind, t.entry, t.expected) == ("values", "similar_elements", None) and t.reference
    assert json.loads(json.dumps([inf]))[0] == inf
    assert decode(encode([inf, -inf])) == [inf, -inf] and decode(encode(nan)) != decode(encode(nan))


def test_heavy_rows_get_higher_limits(loaded):
    from latentmas_ray.tasks.code_tasks import limits_for
    base = SandboxLimits()
    for name in ("mbppplus.jsonl", "mbppplus_hf.jsonl"):
        heavy = limits_for(loaded[name][1]["Mbpp/255"], base)
        assert heavy.memory_mb >= 4096 and heavy.wall_s >= 90
        assert limits_for(loaded[name][1]["Mbpp/599"], base).wall_s >= 150
        assert limits_for(loaded[name][1]["Mbpp/2"], base) is base
    big = SandboxLimits(wall_s=500, memory_mb=8192)
    assert limits_for(loaded["mbppplus.jsonl"][1]["Mbpp/255"], big).wall_s == 500   # never lowered


def test_every_real_row_is_checked_by_values(loaded):
    # No row of the real files falls back to a test script (which a candidate could fool):
    # every one compares values outside the sandbox, expected from the file or the reference.
    for name in ("mbppplus.jsonl", "mbppplus_hf.jsonl", "humanevalplus.jsonl", "humanevalplus_hf.jsonl"):
        for s in loaded[name][2]:
            t = code_tests_of(s.gold)
            assert t.kind == "values", (name, s.id)
            assert (t.expected is not None) or (t.reference is not None) or t.mode == "poly_root"
            assert t.count == len(decode(t.inputs)) > 0


# ------------------------------------------------------------------------------------------
# a reference solution's failure is retried, never cached (issue 23, Build 6)

def _flaky_references(monkeypatch, fail_first: int):
    """code_tasks.run_programs, with the first `fail_first` runs of each reference program
    turned into timeouts (load on a busy machine); returns the count of reference runs."""
    import latentmas_ray.tasks.code_tasks as ct
    from latentmas_ray.sandbox import ExecResult
    real, runs = ct.run_programs, {"n": 0}

    def run_programs(programs, limits, workers=None, tests=None, progress=None, level="standard"):
        results = real(programs, limits, workers=workers, tests=tests, progress=progress, level=level)
        out = []
        for prog, res in zip(programs, results):
            if "def f(x):\n    return x" in prog and "rightanswer" not in prog:   # the reference
                runs["n"] += 1
                if runs["n"] <= fail_first:
                    res = ExecResult(False, "timeout", None, "", "", 30.0, "wall time limit (30 s) exceeded")
            out.append(res)
        return out

    monkeypatch.setattr(ct, "run_programs", run_programs)
    monkeypatch.setattr(ct, "_REFERENCE_CACHE", {})
    return runs


def _echo_sample(task_id: str):
    samples, _ = parse_mbppplus([(1, dict(GOOD_NATIVE_MBPP, task_id=task_id))], "data.jsonl", "error")
    return samples[0]


def test_a_reference_that_fails_once_is_retried(monkeypatch):
    runs = _flaky_references(monkeypatch, fail_first=1)
    s = _echo_sample("Mbpp/901")
    score = score_code(fenced("def f(x):\n    rightanswer = x\n    return rightanswer"), s, LIMITS)
    assert score.correct and runs["n"] == 2, (score, runs)


def test_a_reference_that_keeps_failing_is_one_clear_error_and_not_cached(monkeypatch):
    from latentmas_ray.tasks.code_tasks import REFERENCE_TRIES
    runs = _flaky_references(monkeypatch, fail_first=10**6)
    s = _echo_sample("Mbpp/902")
    good = fenced("def f(x):\n    rightanswer = x\n    return rightanswer")
    score = score_code(good, s, LIMITS)
    assert not score.correct and runs["n"] == REFERENCE_TRIES
    assert "Mbpp/902" in score.error and f"failed {REFERENCE_TRIES} times" in score.error
    assert "cannot be scored" in score.error
    score_code(good, s, LIMITS)   # not believed for the worker's life: tried again
    assert runs["n"] == 2 * REFERENCE_TRIES

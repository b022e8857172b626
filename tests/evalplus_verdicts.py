"""EvalPlus's side of tests/test_evalplus_differential.py, run as a process of its own.

Usage: MBPP_OVERRIDE_PATH=... HUMANEVAL_OVERRIDE_PATH=... python evalplus_verdicts.py \
           CANDIDATES_JSON OUT_JSON

A light process on purpose: EvalPlus's checker forks the process it runs in and then caps the
child's address space at 4 GiB (`reliability_guard`); forked from pytest, with torch already
mapped, the child starts near that cap and the heavier canonical solutions fail for want of
memory. EvalPlus's own code does all of it here: its loaders (offline: the override paths;
its downloader is replaced by one that raises), its ground truth (`trusted_exec`, the loop of
`get_groundtruth` without its pickle cache), its checker (`untrusted_check`, base inputs then
plus inputs, a program passing when both pass, as `evaluate` counts).

Writes [{"task_id", "name", "code", "float_valued", "evalplus_pass"}, ...].
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor


def _no_download(*args, **kwargs):
    raise RuntimeError(f"EvalPlus tried to download {args[:1]}: this run must be offline")


def _offline():
    import wget
    import evalplus.data.humaneval as he
    import evalplus.data.mbpp as mbpp
    import evalplus.data.utils as utils
    wget.download = _no_download
    for module in (utils, he, mbpp):
        module.make_cache = _no_download
    assert mbpp.MBPP_OVERRIDE_PATH and he.HUMANEVAL_OVERRIDE_PATH, "set both override paths"
    return {**mbpp.get_mbpp_plus(), **he.get_human_eval_plus()}


def ground_truth(problem: dict, part: str):
    from evalplus.eval._special_oracle import MBPP_OUTPUT_NOT_NONE_TASKS
    from evalplus.gen.util import trusted_exec
    not_none = problem["task_id"].startswith("Mbpp/") and problem["entry_point"] in MBPP_OUTPUT_NOT_NONE_TASKS
    return trusted_exec(problem["prompt"] + problem["canonical_solution"], problem[f"{part}_input"],
                        problem["entry_point"], record_time=True, output_not_none=not_none)


# EvalPlus's time limits per input are max(1 s, 4 x the canonical solution's time) by default
# (its --min-time-limit / --gt-time-limit-factor); on a loaded 2-core machine Mbpp/300's own
# canonical solution missed them. Time is not what the differential test compares (the corpus
# has no slow program), so the limits are its own knobs turned up.
MIN_TIME_LIMIT, GT_TIME_LIMIT_FACTOR = 4.0, 16.0


def evalplus_passes(code: str, problem: dict, oracle: dict) -> bool:
    from evalplus.eval import PASS, untrusted_check
    dataset = "mbpp" if problem["task_id"].startswith("Mbpp/") else "humaneval"
    for part in ("base", "plus"):
        status, _ = untrusted_check(
            dataset, code, problem[f"{part}_input"], problem["entry_point"],
            expected=oracle[part], atol=problem["atol"], ref_time=oracle[f"{part}_time"],
            fast_check=True,   # stops at the first failing input: the same verdict, sooner
            min_time_limit=MIN_TIME_LIMIT, gt_time_limit_factor=GT_TIME_LIMIT_FACTOR)
        if status != PASS:
            return False
    return True


def main(spec_path: str, out_path: str) -> None:
    from evalplus.eval import is_floats
    from evalplus_corpus import programs_for
    spec = json.load(open(spec_path))
    problems = _offline()
    oracles, programs, floats = {}, [], set()
    for k, tid in enumerate(spec["tasks"]):
        problem = problems[tid]
        oracle = {}
        oracle["base"], oracle["base_time"] = ground_truth(problem, "base")
        if tid in spec["slow"] and not (problem["atol"] or any(map(is_floats, oracle["base"]))):
            continue   # a slow task shown not float-valued by its base outputs: not needed
        oracle["plus"], oracle["plus_time"] = ground_truth(problem, "plus")
        outs = oracle["base"] + oracle["plus"]
        float_valued = problem["atol"] != 0 or any(map(is_floats, outs))
        if float_valued:
            floats.add(tid)
        elif tid in spec["slow"]:
            continue
        oracles[tid] = oracle
        code = problem["prompt"] + problem["canonical_solution"]
        programs += programs_for(tid, code, problem["entry_point"], outs[0] if outs else None,
                                 float_valued=float_valued, rotation=k, extra=spec["extra"])
    with ThreadPoolExecutor(spec.get("workers", 2)) as pool:
        verdicts = list(pool.map(lambda p: evalplus_passes(p.code, problems[p.task_id], oracles[p.task_id]),
                                 programs))
    json.dump([{"task_id": p.task_id, "name": p.name, "code": p.code, "float_valued": p.task_id in floats,
                "evalplus_pass": v} for p, v in zip(programs, verdicts)], open(out_path, "w"))


if __name__ == "__main__":
    main(*sys.argv[1:3])

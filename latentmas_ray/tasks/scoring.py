"""One entry point that scores completions for any task, in either scoring mode.

standard:  this project's scorers (math-verify equivalence, every common letter form, AIME as
           integers, code in the sandbox with the full plus tests).
reference: the reference implementation's exact string match (REFERENCE.md 6.2-6.3), so a
           published number can be compared like for like. Code is run the same way in both
           modes (the reference's intent: the tests pass), but always in the sandbox.
"""

from __future__ import annotations

from typing import Callable, Sequence

from .answers.choice_answers import score_choice
from .answers.math_answers import score_math
from .answers.reference_scoring import score_reference
from .base import Sample, Score


def score_one(sample: Sample, completion: str, mode: str = "standard") -> Score:
    """Score a math or multiple-choice completion (code goes through `score_samples`)."""
    if sample.kind == "code":
        return score_samples([sample], [completion], mode)[0]
    if mode == "reference":
        return score_reference(completion, sample.meta.get("reference_gold", sample.gold), sample.task)
    if sample.kind == "choice":
        return score_choice(completion, sample.gold)
    return score_math(completion, sample.gold, integer=bool(sample.meta.get("integer")))


def score_samples(samples: Sequence[Sample], completions: Sequence[str], mode: str = "standard",
                  *, workers: int | None = None, limits=None,
                  progress: Callable[[int], None] | None = None,
                  sandbox_level: str = "standard") -> list[Score]:
    """Score many completions; code samples run in parallel sandboxes, the rest inline.
    `progress(n)` is called with the number of newly finished samples. `sandbox_level`: the
    isolation code needs (sandbox.LEVELS); SandboxUnavailable when this machine lacks it."""
    assert len(samples) == len(completions), (len(samples), len(completions))
    out: list[Score | None] = [None] * len(samples)
    code_idx = [i for i, s in enumerate(samples) if s.kind == "code"]
    for i, (s, c) in enumerate(zip(samples, completions)):
        if s.kind != "code":
            out[i] = score_one(s, c, mode)
            if progress:
                progress(1)
    if code_idx:
        from ..sandbox import SandboxLimits
        from .code_tasks import score_code_many
        scores = score_code_many([completions[i] for i in code_idx], [samples[i] for i in code_idx],
                                 limits or SandboxLimits(), workers=workers,
                                 progress=(lambda n: progress(n)) if progress else None,
                                 sandbox_level=sandbox_level)
        for i, sc in zip(code_idx, scores):
            out[i] = sc
    return out  # type: ignore[return-value]

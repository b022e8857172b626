"""Scores of K completions per question: pass@k and maj@k, with bootstrap intervals over questions.

pass@k (Chen et al. 2021, "Evaluating Large Language Models Trained on Code", eq. 1): the
chance that at least one of k completions drawn without replacement from the n generated is
correct, estimated without bias from the c correct ones as

    pass@k = 1 - C(n - c, k) / C(n, k)          (1 when n - c < k)

and averaged over questions. Computed as a product (1 - k / j for j = n-c+1..n), which never
forms the huge binomials.

maj@k (self-consistency, Wang et al. 2022): the majority answer among the first k completions
(by sample_index) is judged. Votes are the extracted answers; a completion whose extraction
failed (no answer, or an error) casts no vote, so a failed extraction never counts for a valid
answer, and a question with no vote at all is wrong. Ties go to the answer voted first (lowest
sample_index), so a run always scores the same. The winning answer is correct when the first
completion that gave it was scored correct (equal extractions are scored equally).

Intervals: a percentile bootstrap over questions (the unit that was sampled), as the report's
accuracy intervals. Deterministic for a given seed.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Sequence

import numpy as np

RESAMPLES = 10_000
LEVEL = 0.95
SEED = 0


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one question with c correct out of n completions (1 <= k <= n)."""
    assert 0 <= c <= n and 1 <= k <= n, (n, c, k)
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def majority_vote(answers: Sequence[str | None]) -> int | None:
    """Index (into `answers`) of the majority answer's first vote; None when nobody voted.
    A None or blank answer is no vote. Ties: the answer voted first wins."""
    counts: dict[str, int] = {}
    first: dict[str, int] = {}
    for i, a in enumerate(answers):
        if a is None or not str(a).strip():
            continue
        key = str(a).strip()
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, i)
    if not counts:
        return None
    best = max(counts, key=lambda a: (counts[a], -first[a]))
    return first[best]


def maj_at_k(completions: Sequence[dict[str, Any]], k: int) -> bool:
    """maj@k of one question. completions: its rows in sample_index order, each with
    `extracted`, `correct` and `error`; the first k vote."""
    votes = [None if c.get("error") else c.get("extracted") for c in completions[:k]]
    winner = majority_vote(votes)
    return winner is not None and bool(completions[winner]["correct"])


def ks_for(n: int) -> list[int]:
    """The k reported for n completions: 1, 2, 4, ... below n, and n."""
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 2
    return ks + [n]


def bootstrap_ci(values: Sequence[float], *, resamples: int = RESAMPLES, level: float = LEVEL,
                 seed: int = SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over questions (a resample of the n questions
    drawn as multinomial counts over the distinct values: the same distribution, cheaper)."""
    x = np.asarray(values, dtype=float)
    assert x.size > 0, "bootstrap of an empty sample"
    distinct, counts = np.unique(x, return_counts=True)
    return bootstrap_counts_ci(distinct, counts, resamples=resamples, level=level, seed=seed)


def bootstrap_counts_ci(distinct: np.ndarray, counts: np.ndarray, *, resamples: int = RESAMPLES,
                        level: float = LEVEL, seed: int = SEED) -> tuple[float, float]:
    """`bootstrap_ci` of values given as sorted distinct values and how often each occurs."""
    n = int(counts.sum())
    draws = np.random.default_rng(seed).multinomial(n, counts / n, size=resamples)
    means = draws @ distinct / n
    tail = (1 - level) / 2
    lo, hi = np.quantile(means, [tail, 1 - tail])
    return float(lo), float(hi)


def scored(counts: dict[float, int], *, resamples: int = RESAMPLES, seed: int = SEED
           ) -> dict[str, Any]:
    """{"value": mean, "ci95": [lo, hi]} of per-question values held as {value: questions}
    (pass@k of K completions takes at most K + 1 values, maj@k two: memory stays a few
    numbers however many questions)."""
    distinct = np.array(sorted(counts), dtype=float)
    weights = np.array([counts[v] for v in sorted(counts)], dtype=np.int64)
    return {"value": float(distinct @ weights / weights.sum()),
            "ci95": list(bootstrap_counts_ci(distinct, weights, resamples=resamples, seed=seed))}


def by_question(rows: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Rows grouped by sample id, each group in sample_index order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["id"], []).append(r)
    for g in groups.values():
        g.sort(key=lambda r: r.get("sample_index") or 0)
    return groups


def question_scores(rows: Iterable[dict[str, Any]]) -> dict[str, dict[int, tuple[float, float]]]:
    """{"pass": {k: per-question values}, "maj": {k: ...}} over the questions that have all n
    completions (n = the most any question has); k as `ks_for(n)`."""
    groups = by_question(rows)
    if not groups:
        return {"pass": {}, "maj": {}}
    n = max(len(g) for g in groups.values())
    full = [g for g in groups.values() if len(g) == n]
    out: dict[str, dict[int, list[float]]] = {"pass": {}, "maj": {}}
    for k in ks_for(n):
        out["pass"][k] = [pass_at_k(n, sum(bool(r["correct"]) for r in g), k) for g in full]
        out["maj"][k] = [float(maj_at_k(g, k)) for g in full]
    return out


def completion_scores(rows: Sequence[dict[str, Any]], *, resamples: int = RESAMPLES,
                      seed: int = SEED) -> dict[str, Any]:
    """summary.json's K-completion section; {} for a run of one completion per question.

    {"completions_per_question": n, "questions": q,
     "pass_at_k": {"1": {"value": .., "ci95": [lo, hi]}, "2": ..., "<n>": ...},
     "maj_at_k": {...}}"""
    groups = by_question(rows)
    n = max((len(g) for g in groups.values()), default=0)
    if n <= 1:
        return {}
    scores = question_scores(rows)
    out: dict[str, Any] = {"completions_per_question": n,
                           "questions": len(scores["pass"][1]),
                           "questions_incomplete": sum(1 for g in groups.values() if len(g) < n)}
    for name in ("pass", "maj"):
        out[f"{name}_at_k"] = {str(k): scored(Counter(v), resamples=resamples, seed=seed)
                               for k, v in scores[name].items()}
    return out


class CompletionTally:
    """`completion_scores` fed table by table (batches of samples.parquet, whose rows are in
    the task's order: a question's K rows together, by sample_index), so a run of a million
    questions x K never becomes Python rows at once: memory is a few counts per k, however
    many questions (each question's value is counted, see `scored`)."""

    def __init__(self, k: int):
        self.k, self.ks = k, ks_for(k)
        self.values = {(name, kk): Counter() for name in ("pass", "maj") for kk in self.ks}
        self.questions = self.incomplete = self.longest = 0
        self.group: list[dict[str, Any]] = []

    def add(self, table) -> None:
        """A table with the COMPLETION columns (id, sample_index, correct, extracted, error)."""
        for r in table.to_pylist():
            if self.group and r["id"] != self.group[0]["id"]:
                self._close()
            self.group.append(r)

    def _close(self) -> None:
        g, self.group = sorted(self.group, key=lambda r: r.get("sample_index") or 0), []
        self.longest = max(self.longest, len(g))
        if len(g) != self.k:
            self.incomplete += 1
            return
        self.questions += 1
        c = sum(bool(r["correct"]) for r in g)
        for kk in self.ks:
            self.values["pass", kk][pass_at_k(self.k, c, kk)] += 1
            self.values["maj", kk][float(maj_at_k(g, kk))] += 1

    def result(self, *, resamples: int = RESAMPLES, seed: int = SEED) -> dict[str, Any] | None:
        """The same section as `completion_scores`; None when no question has all K rows
        (then K is not the most any question has: ask `completion_scores`)."""
        if self.group:
            self._close()
        if self.k <= 1 or self.longest != self.k:
            return None
        out: dict[str, Any] = {"completions_per_question": self.k, "questions": self.questions,
                               "questions_incomplete": self.incomplete}
        for name in ("pass", "maj"):
            out[f"{name}_at_k"] = {str(kk): scored(self.values[name, kk], resamples=resamples,
                                                   seed=seed)
                                   for kk in self.ks}
        return out

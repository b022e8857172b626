"""The statistics a method comparison needs, and nothing else: bootstrap intervals and McNemar.

Why these: benchmarks here are small (AIME has 30 problems, so one answer moves accuracy by 3.3
points), so a bare accuracy hides its noise. A percentile bootstrap makes no normality
assumption; when two runs answered the same questions, pairing them (paired bootstrap, exact
McNemar on the discordant pairs) removes the between-question variance and is far more
sensitive than comparing two independent intervals.

Every function is deterministic for a given seed, so a report is reproducible byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb
from typing import Mapping, Sequence

import numpy as np

RESAMPLES = 10_000
LEVEL = 0.95
SEED = 0


def bootstrap_mean_ci(values: Sequence[float], *, resamples: int = RESAMPLES, level: float = LEVEL,
                      seed: int = SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values`.

    A resample of n values is drawn as multinomial counts over the distinct values, which has
    exactly the distribution of drawing n indices with replacement but costs O(distinct values)
    per resample: accuracy data (0/1) needs two numbers per resample, not n.
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("bootstrap of an empty sample")
    distinct, counts = np.unique(x, return_counts=True)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(x.size, counts / x.size, size=resamples)
    means = draws @ distinct / x.size
    tail = (1 - level) / 2
    lo, hi = np.quantile(means, [tail, 1 - tail])
    return float(lo), float(hi)


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: a binomial(b + c, 1/2) test on the discordant pairs.

    Under "both methods are equally accurate" each question that exactly one run got right is
    equally likely to favour either run. Exact integer arithmetic, so large counts do not
    underflow to a wrong answer before the final division.
    """
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(comb(n, i) for i in range(k + 1))
    return min(1.0, 2 * tail / 2 ** n)


@dataclass(frozen=True)
class Paired:
    """Run A against run B on the questions both answered."""
    shared: int             # questions answered by both
    acc_a: float
    acc_b: float
    diff: float             # acc_b - acc_a
    ci: tuple[float, float]  # paired bootstrap interval of diff
    only_a: int             # A right, B wrong
    only_b: int             # B right, A wrong
    p_value: float          # exact McNemar
    alpha: float = 0.05

    @property
    def significant(self) -> bool:
        return self.p_value < self.alpha


def paired_compare(a: Mapping[str, bool], b: Mapping[str, bool], *, resamples: int = RESAMPLES,
                   level: float = LEVEL, seed: int = SEED, alpha: float = 0.05) -> Paired | None:
    """Compare two runs' per-question correctness on their shared ids (None when none are shared).

    The paired bootstrap resamples questions, keeping each question's pair of outcomes together,
    so the interval is that of the accuracy difference on the same questions.
    """
    ids = sorted(set(a) & set(b))
    if not ids:
        return None
    xa = np.array([bool(a[i]) for i in ids])
    xb = np.array([bool(b[i]) for i in ids])
    diff = xb.astype(float) - xa.astype(float)
    only_a = int(np.sum(xa & ~xb))
    only_b = int(np.sum(xb & ~xa))
    return Paired(shared=len(ids), acc_a=float(xa.mean()), acc_b=float(xb.mean()),
                  diff=float(diff.mean()),
                  ci=bootstrap_mean_ci(diff, resamples=resamples, level=level, seed=seed),
                  only_a=only_a, only_b=only_b, p_value=mcnemar_exact(only_a, only_b), alpha=alpha)

"""Honest selection of a sweep's best point: chosen on a dev split, reported on the test split.

    dev, test = split_ids(ids, seed, dev_fraction)   # by a seeded hash of each sample id
    sel = select(points, dev, test)                    # points: PointRows of each grid point

The split depends only on the sample id, the seed and the fraction, never on the order, the
point or the rerun, so every point is judged on the same questions and a rerun picks the same
split. The best point on dev is the most accurate, ties going to fewer generated tokens (then
to grid order); every point is then reported on test, where the choice was not made, with
bootstrap intervals, and the chosen point is compared (paired: same questions) with the
runner-up and with the baseline. When the chosen point's lead is not significant, `noise`
says so in plain words.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from .stats import Paired, bootstrap_mean_ci, paired_compare

SPLIT_SALT = "latentmas-ray dev/test split"


def dev_share(sample_id: str, seed: int) -> float:
    """A number in [0, 1) fixed by the sample id and the seed (sha256, not Python's hash)."""
    digest = hashlib.sha256(f"{SPLIT_SALT}\0{seed}\0{sample_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64


def split_ids(ids, seed: int, dev_fraction: float) -> tuple[set[str], set[str]]:
    """(dev ids, test ids): disjoint, together all of `ids`."""
    dev = {i for i in ids if dev_share(i, seed) < dev_fraction}
    return dev, set(ids) - dev


@dataclass
class PointRows:
    """A grid point's finished samples, one value per sample id (K completions averaged)."""
    key: str                                     # run id
    label: str
    method: str
    settings: list[dict] = field(default_factory=list)   # every grid setting mapped to it
    correct: dict[str, bool] = field(default_factory=dict)      # first completion, for pairing
    accuracy: dict[str, float] = field(default_factory=dict)    # mean over completions
    tokens: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_rows(cls, key, label, method, settings, rows) -> "PointRows":
        p = cls(key, label, method, list(settings))
        per: dict[str, list[dict]] = {}
        for r in rows:
            per.setdefault(r["id"], []).append(r)
        for sid, rs in per.items():
            p.correct[sid] = bool(min(rs, key=lambda r: r.get("sample_index") or 0)["correct"])
            p.accuracy[sid] = float(np.mean([bool(r["correct"]) for r in rs]))
            p.tokens[sid] = float(np.mean([r["generated_tokens"] or 0 for r in rs]))
            p.seconds[sid] = float(np.mean([r["seconds"] or 0.0 for r in rs]))
        return p


@dataclass(frozen=True)
class Stats:
    n: int
    accuracy: float
    acc_ci: tuple[float, float]
    tokens: float
    tokens_ci: tuple[float, float]
    seconds: float
    seconds_ci: tuple[float, float]


def stats_on(p: PointRows, ids: set[str], seed: int = 0) -> Stats | None:
    have = sorted(ids & set(p.accuracy))
    if not have:
        return None
    def both(d):
        x = [d[i] for i in have]
        return float(np.mean(x)), bootstrap_mean_ci(x, seed=seed)
    (acc, acc_ci), (tok, tok_ci), (sec, sec_ci) = both(p.accuracy), both(p.tokens), both(p.seconds)
    return Stats(len(have), acc, acc_ci, tok, tok_ci, sec, sec_ci)


@dataclass
class Selection:
    points: list[PointRows]                     # ranked on the selection split, best first
    dev: dict[str, Stats | None]
    test: dict[str, Stats | None]
    select_on: str                              # "dev" or "all"
    n_dev: int
    n_test: int
    vs_runner_up: Paired | None = None          # on test: A = runner-up, B = chosen
    vs_baseline: Paired | None = None           # on test: A = baseline, B = chosen
    dev_vs_runner_up: Paired | None = None      # on dev (where the choice was made)
    noise: str = ""

    @property
    def chosen(self) -> PointRows:
        return self.points[0]

    @property
    def runner_up(self) -> PointRows | None:
        return self.points[1] if len(self.points) > 1 else None

    @property
    def baseline(self) -> PointRows | None:
        return next((p for p in self.points[1:] if p.method == "baseline"), None)


def _restrict(d: dict[str, bool], ids: set[str]) -> dict[str, bool]:
    return {k: v for k, v in d.items() if k in ids}


def select(points: list[PointRows], dev: set[str], test: set[str], *, select_on: str = "dev",
           seed: int = 0) -> Selection:
    """Rank the points on dev (select_on "all": on every sample, and say it is optimistic),
    then report each on test with the chosen one compared against the runner-up and baseline."""
    if select_on == "all":
        dev = test = dev | test
    order = {p.key: i for i, p in enumerate(points)}
    dev_stats = {p.key: stats_on(p, dev, seed) for p in points}
    test_stats = {p.key: stats_on(p, test, seed) for p in points}
    ranked = sorted(points, key=lambda p: (-(dev_stats[p.key].accuracy if dev_stats[p.key] else -1),
                                           dev_stats[p.key].tokens if dev_stats[p.key] else 0,
                                           order[p.key]))
    sel = Selection(ranked, dev_stats, test_stats, select_on, len(dev), len(test))
    best = sel.chosen
    if sel.runner_up is not None:
        sel.vs_runner_up = paired_compare(_restrict(sel.runner_up.correct, test),
                                          _restrict(best.correct, test), seed=seed)
        sel.dev_vs_runner_up = paired_compare(_restrict(sel.runner_up.correct, dev),
                                              _restrict(best.correct, dev), seed=seed)
    if sel.baseline is not None:
        sel.vs_baseline = paired_compare(_restrict(sel.baseline.correct, test),
                                         _restrict(best.correct, test), seed=seed)
    sel.noise = noise_text(sel)
    return sel


def noise_text(sel: Selection) -> str:
    """One plain sentence on whether the choice stands out from the runner-up."""
    if sel.runner_up is None:
        return "Only one point: nothing to choose between."
    d, t = sel.dev_vs_runner_up, sel.vs_runner_up
    where = "dev" if sel.select_on == "dev" else "all samples"
    if d is None or not d.significant or t is None or not t.significant:
        parts = []
        if d is not None:
            parts.append(f"on {where} {d.only_b} vs {d.only_a} discordant questions, "
                         f"McNemar p = {d.p_value:.3g}")
        if t is not None and sel.select_on == "dev":
            parts.append(f"on test the difference is {100 * t.diff:+.1f} points, interval "
                         f"[{100 * t.ci[0]:+.1f}, {100 * t.ci[1]:+.1f}], p = {t.p_value:.3g}")
        return (f"The top two points ({sel.chosen.label}; {sel.runner_up.label}) are within "
                f"noise: {'; '.join(parts) or 'no shared questions'}. Treat the choice as a tie.")
    return (f"The chosen point beats the runner-up on {where} (p = {d.p_value:.3g}) and on test "
            f"({100 * t.diff:+.1f} points, p = {t.p_value:.3g}).")

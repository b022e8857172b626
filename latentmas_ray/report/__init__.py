"""Reports on finished (or still running) runs: what each method scored, at what cost, whether
the differences are real, and what the paper published for the same setting.

`build_report(runs)` computes everything once into a `Report`; `tables` renders it (markdown,
rich), `plots` draws it. Keeping the numbers apart from their rendering is what lets the tests
check the statistics and the golden markdown separately.

    from latentmas_ray.report import build_report, load_runs
    report = build_report(load_runs(["results/a", "results/b"]))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

from latentmas_ray.store.passk import completion_scores
from . import paper
from .load import Run, load_run, load_runs
from .stats import LEVEL, RESAMPLES, SEED, Paired, bootstrap_mean_ci, paired_compare

__all__ = ["Report", "RunStats", "Ratio", "Run", "build_report", "load_run", "load_runs"]


@dataclass(frozen=True)
class RunStats:
    accuracy: float
    ci: tuple[float, float]         # bootstrap interval of the accuracy
    correct: int
    gen_tokens: float               # mean generated tokens per sample (all agents)
    prompt_tokens: float            # mean prompt tokens per sample (all agents)
    seconds: float                  # mean wall seconds per sample
    by_role: dict[str, float]       # mean generated tokens per sample, by agent role
    errors: int                     # samples whose scoring recorded an error


@dataclass(frozen=True)
class Ratio:
    """LatentMAS against another method, as the paper defines the columns:
    token reduction = 1 - tok_latent / tok_other, speed-up = time_other / time_latent."""
    latent: Run
    other: Run
    d_acc: float                    # accuracy difference, latent - other (fraction)
    token_reduction: float | None
    speedup: float | None
    paper_token_reduction: float | None = None
    paper_speedup: float | None = None
    paper_d_acc: float | None = None  # percentage points


@dataclass
class Report:
    task: str
    runs: list[Run]
    stats: dict[str, RunStats]
    ratios: list[Ratio]
    pairs: list[tuple[Run, Run, Paired]]
    paper_rows: dict[str, paper.PaperRow] = field(default_factory=dict)  # run name -> row
    no_paper: list[tuple[Run, str]] = field(default_factory=list)       # run, why
    # run name -> pass@k / maj@k with intervals (passk.completion_scores), runs with K > 1 only
    sampling: dict[str, dict] = field(default_factory=dict)
    resamples: int = RESAMPLES
    level: float = LEVEL
    seed: int = SEED


def run_stats(run: Run, *, resamples: int = RESAMPLES, seed: int = SEED) -> RunStats:
    correct = [bool(r["correct"]) for r in run.rows]
    return RunStats(accuracy=run.accuracy,
                    ci=bootstrap_mean_ci(correct, resamples=resamples, seed=seed),
                    correct=sum(correct), gen_tokens=run.mean("generated_tokens"),
                    prompt_tokens=run.mean("prompt_tokens"), seconds=run.mean("seconds"),
                    by_role=run.tokens_by_role(),
                    errors=sum(1 for r in run.rows if r["error"]))


def _ratio(latent: Run, other: Run, stats: dict[str, RunStats]) -> Ratio:
    sl, so = stats[latent.name], stats[other.name]
    pm = paper.paper_model(latent.model_ref)
    pl = pm and paper.lookup(latent.task, pm, latent.method, latent.topology)
    po = pm and paper.lookup(other.task, pm, other.method, latent.topology)
    both = pl and po
    return Ratio(latent=latent, other=other, d_acc=sl.accuracy - so.accuracy,
                 token_reduction=1 - sl.gen_tokens / so.gen_tokens if so.gen_tokens else None,
                 speedup=so.seconds / sl.seconds if sl.seconds else None,
                 paper_token_reduction=1 - pl.tokens / po.tokens if both else None,
                 paper_speedup=po.time / pl.time if both else None,
                 paper_d_acc=round(pl.acc - po.acc, 1) if both else None)


def _ratios(runs: list[Run], stats: dict[str, RunStats]) -> list[Ratio]:
    """Each LatentMAS run against each TextMAS run of the same model and topology, and each
    baseline run of the same model (the baseline has no topology)."""
    out = []
    for lat in (r for r in runs if r.method == "latent_mas"):
        for other in runs:
            if other.model != lat.model:
                continue
            if other.method == "baseline" or (other.method == "text_mas"
                                              and other.topology == lat.topology):
                out.append(_ratio(lat, other, stats))
    return out


def _paper_matches(runs: list[Run]) -> tuple[dict[str, paper.PaperRow], list[tuple[Run, str]]]:
    rows, missing = {}, []
    for run in runs:
        pm = paper.paper_model(run.model_ref)
        row = pm and paper.lookup(run.task, pm, run.method, run.topology)
        if row:
            rows[run.name] = row
        elif pm is None:
            missing.append((run, f"model {run.model} is not in the paper, which reports "
                                 "Qwen3-4B, Qwen3-8B and Qwen3-14B"))
        else:
            missing.append((run, f"the paper has no {pm} {run.topology} numbers for "
                                 f"{paper.task_display(run.task)}"))
    return rows, missing


def build_report(runs: list[Run], *, resamples: int = RESAMPLES, seed: int = SEED) -> Report:
    """Every number the report shows, computed once (bootstraps seeded: same input, same text)."""
    stats = {r.name: run_stats(r, resamples=resamples, seed=seed) for r in runs}
    pairs = []
    for a, b in combinations(runs, 2):
        p = paired_compare(a.correct, b.correct, resamples=resamples, seed=seed)
        if p is not None:
            pairs.append((a, b, p))
    rows, missing = _paper_matches(runs)
    sampling = {r.name: sc for r in runs
                if (sc := completion_scores(r.rows, resamples=resamples, seed=seed))}
    return Report(task=runs[0].task, runs=runs, stats=stats, ratios=_ratios(runs, stats),
                  pairs=pairs, paper_rows=rows, no_paper=missing, resamples=resamples, seed=seed,
                  sampling=sampling)

"""A Report as tables: each table is built once as plain rows of text, then written as markdown
(the report file) or as rich tables (the terminal), so the two never disagree.

No timestamps and no absolute paths: the same runs give byte-identical markdown, which is what
lets a golden file test it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import Report, paper
from .load import METHOD_NAMES

ROLE_ORDER = ("single", "planner", "critic", "refiner", "judger")
PLOTS = (("accuracy_vs_tokens.png", "Accuracy against generated tokens per sample"),
         ("accuracy_vs_time.png", "Accuracy against wall time per sample"),
         ("tokens_by_agent.png", "Generated tokens per sample by agent role"))


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)


def pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}%"


def points(x: float) -> str:
    return f"{100 * x:+.1f}"


def _opt(x, fmt) -> str:
    return "-" if x is None else fmt(x)


def p_text(p: float) -> str:
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def _method(run) -> str:
    return METHOD_NAMES.get(run.method, run.method)


def _status(run) -> str:
    return "complete" if run.complete else f"in progress ({run.n} samples so far)"


def runs_table(rep: Report) -> Table:
    rows = [[r.name, r.model, _method(r), "-" if r.method == "baseline" else r.topology,
             str(r.latent_steps) if r.method == "latent_mas" else "-", str(r.n), _status(r)]
            for r in rep.runs]
    return Table("Runs", ["Run", "Model", "Method", "Topology", "Latent steps", "Samples",
                          "Status"], rows)


def results_table(rep: Report) -> Table:
    rows = []
    for r in rep.runs:
        s = rep.stats[r.name]
        rows.append([r.name, r.label, pct(s.accuracy), f"{pct(s.ci[0])} - {pct(s.ci[1])}",
                     f"{s.correct}/{r.n}", f"{s.gen_tokens:.1f}", f"{s.prompt_tokens:.1f}",
                     f"{s.seconds:.3f}", str(s.errors)])
    note = (f"Accuracy interval: {rep.level:.0%} percentile bootstrap over samples "
            f"({rep.resamples:,} resamples, seed {rep.seed}). Tokens: mean per sample, summed over "
            "agents (latent steps are not tokens). Seconds: mean wall time per sample (a batch's "
            "time is split evenly over its samples).")
    columns = ("Method: seq / hier = sequential / hierarchical agents, m = latent steps per "
               "agent. Correct: correct samples / samples. Errors: samples whose row records why "
               "they could not be right: no answer could be extracted, a program failed or "
               "crashed in its tests, or the sample could not be run (samples.parquet's `error` "
               "column says which); they count as wrong.")
    return Table("Accuracy and cost",
                 ["Run", "Method", "Accuracy", f"{rep.level:.0%} CI", "Correct",
                  "Generated tokens", "Prompt tokens", "Seconds", "Errors"], rows, [note, columns])


def headline_table(rep: Report) -> Table:
    """Accuracy and cost at a glance, narrow enough for an 80-column terminal (the demo's end)."""
    rows = []
    for r in rep.runs:
        s = rep.stats[r.name]
        rows.append([r.label, f"{pct(s.accuracy)} ({100 * s.ci[0]:.1f}-{100 * s.ci[1]:.1f})",
                     f"{s.gen_tokens:.1f}", f"{s.seconds:.2f}"])
    return Table(f"Accuracy and cost ({rep.runs[0].n} samples)" if len({r.n for r in rep.runs}) == 1
                 else "Accuracy and cost",
                 ["Method", f"Accuracy ({rep.level:.0%} CI)", "Generated tokens / sample",
                  "Seconds / sample"], rows)


def roles_table(rep: Report) -> Table:
    seen = {role for s in rep.stats.values() for role in s.by_role}
    roles = [r for r in ROLE_ORDER if r in seen] + sorted(seen - set(ROLE_ORDER))
    rows = []
    for r in rep.runs:
        s = rep.stats[r.name]
        rows.append([r.name] + [f"{s.by_role[x]:.1f}" if x in s.by_role else "-" for x in roles]
                    + [f"{s.gen_tokens:.1f}"])
    return Table("Generated tokens by agent role", ["Run"] + roles + ["Total"], rows,
                 ["Mean generated tokens per sample; single: the baseline's one agent; LatentMAS "
                  "agents before the judger think in latent vectors and generate no tokens."])


def ratios_table(rep: Report) -> Table:
    with_paper = any(x.paper_speedup is not None for x in rep.ratios)
    headers = ["LatentMAS run", "Against", "Accuracy (pp)", "Token reduction", "Speed-up"]
    if with_paper:
        headers += ["Paper: accuracy (pp)", "Paper: token reduction", "Paper: speed-up"]
    rows = []
    for x in rep.ratios:
        row = [x.latent.name, f"{x.other.name} ({_method(x.other)})", points(x.d_acc),
               _opt(x.token_reduction, pct), _opt(x.speedup, lambda v: f"x{v:.2f}")]
        if with_paper:
            row += [_opt(x.paper_d_acc, lambda v: f"{v:+.1f}"), _opt(x.paper_token_reduction, pct),
                    _opt(x.paper_speedup, lambda v: f"x{v:.2f}")]
        rows.append(row)
    notes = ["As in the paper: accuracy difference = LatentMAS - other; token reduction = "
             "1 - tokens(LatentMAS) / tokens(other); speed-up = time(other) / time(LatentMAS)."]
    if not rows:
        notes = ["No LatentMAS run has a TextMAS run (same model and topology) or a baseline run "
                 "(same model) to compare against."]
    return Table("LatentMAS against TextMAS and the baseline", headers, rows, notes)


def pairs_table(rep: Report) -> Table:
    rows = []
    for a, b, p in rep.pairs:
        rows.append([a.name, b.name, str(p.shared), pct(p.acc_a), pct(p.acc_b), points(p.diff),
                     f"{points(p.ci[0])} to {points(p.ci[1])}", str(p.only_a), str(p.only_b),
                     p_text(p.p_value), "yes" if p.significant else "no"])
    notes = ["On the samples both runs answered. B - A in percentage points, with a paired "
             f"bootstrap {rep.level:.0%} interval ({rep.resamples:,} resamples of the shared "
             "samples); McNemar: exact two-sided binomial test on the samples exactly one run got "
             "right; significant means p < 0.05."]
    if not rows:
        notes = ["No two runs share a sample, so there is no paired comparison."]
    return Table("Paired comparisons on shared samples",
                 ["Run A", "Run B", "Shared", "Accuracy A", "Accuracy B", "B - A (pp)",
                  f"{rep.level:.0%} CI (pp)", "Only A right", "Only B right", "McNemar p",
                  "Significant"], rows, notes)


def paper_table(rep: Report) -> Table:
    rows = []
    for r in rep.runs:
        row = rep.paper_rows.get(r.name)
        if row is None:
            continue
        s = rep.stats[r.name]
        rows.append([r.name, row.model, f"{row.table} ({row.setting})", _method(r),
                     pct(s.accuracy), f"{row.acc:.1f}%", f"{s.gen_tokens:.0f}", f"{row.tokens:g}",
                     f"{s.seconds:.3f}", f"{row.time:g}"])
    notes = []
    if rows:
        notes.append(f"Source: {paper.source_line()}. The paper's time is as published (unit "
                     "unstated, presumably seconds for a whole run): compare its ratios, not its "
                     "values, with ours.")
    by_reason: dict[str, list[str]] = {}
    for run, why in rep.no_paper:        # one line per reason, however many runs share it
        by_reason.setdefault(why, []).append(run.name)
    for why, names in by_reason.items():
        notes.append(f"No paper numbers for {', '.join(names)}: {why}.")
    return Table("The paper's numbers (arXiv 2511.20639, Tables 1-3)",
                 ["Run", "Paper model", "Paper table", "Method", "Accuracy", "Paper accuracy",
                  "Tokens", "Paper tokens", "Seconds per sample", "Paper time"], rows, notes)


def sampling_table(rep: Report) -> Table:
    """pass@k and maj@k of the runs that drew K > 1 completions per question."""
    rows = []
    for r in rep.runs:
        sc = rep.sampling.get(r.name)
        if not sc:
            continue
        for k in sc["pass_at_k"]:
            p, m = sc["pass_at_k"][k], sc["maj_at_k"][k]
            rows.append([r.name, k, pct(p["value"]), f"{pct(p['ci95'][0])} - {pct(p['ci95'][1])}",
                         pct(m["value"]), f"{pct(m['ci95'][0])} - {pct(m['ci95'][1])}",
                         f"{sc['questions']} x {sc['completions_per_question']}"])
    return Table("K completions per question: pass@k and maj@k",
                 ["Run", "k", "pass@k", f"{rep.level:.0%} CI", "maj@k", f"{rep.level:.0%} CI",
                  "Questions x K"], rows,
                 ["pass@k: the unbiased estimator of Chen et al. (2021) from the K completions; "
                  "maj@k: the majority of the first k extracted answers (a failed extraction casts "
                  "no vote; ties go to the answer given first). Intervals: percentile bootstrap "
                  f"over questions ({rep.resamples:,} resamples, seed {rep.seed}). Accuracy above "
                  "is over all completions (the mean pass@1)."])


def all_tables(rep: Report) -> list[Table]:
    extra = [sampling_table(rep)] if rep.sampling else []
    return [runs_table(rep), results_table(rep)] + extra + [roles_table(rep), ratios_table(rep),
                                                            pairs_table(rep), paper_table(rep)]


# --- markdown ------------------------------------------------------------------------------------
def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def table_markdown(t: Table) -> str:
    out = [f"## {t.title}", ""]
    if t.rows:
        out.append("| " + " | ".join(map(_cell, t.headers)) + " |")
        out.append("|" + "|".join("---" for _ in t.headers) + "|")
        out += ["| " + " | ".join(map(_cell, row)) + " |" for row in t.rows]
        out.append("")
    for note in t.notes:
        out += [note, ""]
    return "\n".join(out)


def progress_lines(rep: Report) -> list[str]:
    return [f"**In progress:** {r.name} has {r.n} samples so far; its numbers will change."
            for r in rep.runs if not r.complete]


def to_markdown(rep: Report, plots: list[str] | None = None) -> str:
    """The whole report file. `plots`: the PNG file names written beside it."""
    models = sorted({r.model for r in rep.runs})
    lines = [f"# Report: {paper.task_display(rep.task)} ({rep.task})", "",
             f"{len(rep.runs)} run{'s' if len(rep.runs) != 1 else ''} of {rep.task}, "
             f"model{'s' if len(models) != 1 else ''} {', '.join(models)}.", ""]
    for line in progress_lines(rep):
        lines += [line, ""]
    sandboxes = [f"{r.name}: {r.sandbox}" for r in rep.runs if r.sandbox]
    if sandboxes:
        lines += ["Code sandbox (--sandbox_level, what it enforced): " + "; ".join(sandboxes) + ".", ""]
    text = "\n".join(lines) + "\n" + "\n".join(table_markdown(t) for t in all_tables(rep))
    if plots:
        titles = dict(PLOTS)
        text += "\n## Plots\n\n" + "\n\n".join(f"![{titles.get(p, p)}]({p})" for p in plots) + "\n"
    return text


# --- terminal ------------------------------------------------------------------------------------
def print_rich(rep: Report, console, brief: bool = False) -> None:
    """The tables worth reading in a terminal; the runs list and role breakdown stay in the file.
    brief: accuracy and cost at a glance, and LatentMAS against the others (the demo's end)."""
    from rich.table import Table as RichTable

    for line in progress_lines(rep):
        console.print(line.replace("**", ""), highlight=False)
    if brief:
        tables = [headline_table(rep), ratios_table(rep)]
    else:
        tables = [results_table(rep), sampling_table(rep), ratios_table(rep), pairs_table(rep),
                  paper_table(rep)]
    for t in tables:
        if not t.rows:
            continue
        table = RichTable(title=t.title, title_justify="left")
        for i, h in enumerate(t.headers):
            table.add_column(h, justify="left" if i < 2 else "right", no_wrap=i < 2)
        for row in t.rows:
            table.add_row(*row)
        console.print(table)

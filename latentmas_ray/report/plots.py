"""The report's PNG figures: accuracy against cost (tokens, time), one point per run with its
bootstrap interval, and a stacked bar of generated tokens by agent role.

Built on matplotlib's object API (`Figure`, rendered by Agg) rather than pyplot, so nothing
global changes in the caller and no display is ever needed.
"""

from __future__ import annotations

from pathlib import Path

from latentmas_ray.store.atomic import atomic_open
from . import Report
from .tables import ROLE_ORDER

METHOD_COLOURS = {"baseline": "#7f7f7f", "text_mas": "#1f77b4", "latent_mas": "#d62728"}
TOPOLOGY_MARKERS = {"sequential": "o", "hierarchical": "s"}
ROLE_COLOURS = {"single": "#7f7f7f", "planner": "#2ca02c", "critic": "#ff7f0e",
                "refiner": "#9467bd", "judger": "#d62728"}


def labels(rep: Report) -> dict[str, str]:
    """A short, unique legend text per run: the method label (with the model when the report
    holds several models), else the folder name."""
    runs = rep.runs
    several_models = len({r.model for r in runs}) > 1
    out = {r.name: f"{r.label} ({r.model})" if several_models else r.label for r in runs}
    if len(set(out.values())) < len(runs):
        out = {r.name: r.name for r in runs}
    return out


def _figure(width: float = 7.0, height: float = 4.5):
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=100)
    return fig, fig.add_subplot()


# Under each figure: what the legend's short labels mean.
LEGEND_KEY = ("seq / hier: the agents' topology (sequential, hierarchical); m: latent steps per "
              "agent (LatentMAS)")


def _scatter(rep: Report, path: Path, x_of, xlabel: str, cost: str) -> None:
    fig, ax = _figure(height=5.0)
    names = labels(rep)
    models = sorted({r.model for r in rep.runs})
    for run in rep.runs:
        s = rep.stats[run.name]
        x, y = x_of(s), 100 * s.accuracy
        err = [[y - 100 * s.ci[0]], [100 * s.ci[1] - y]]
        colour = METHOD_COLOURS.get(run.method, "#17becf")
        # colour: method; shape: topology; filled for the first model, hollow for the others
        ax.errorbar([x], [y], yerr=err, fmt=TOPOLOGY_MARKERS.get(run.topology, "o"), capsize=4,
                    color=colour, markersize=7, label=names[run.name],
                    markerfacecolor=colour if run.model == models[0] else "white")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"accuracy, % ({rep.level:.0%} bootstrap interval)")
    ax.set_title(f"{rep.task}: accuracy against {cost}")
    ax.margins(x=0.1, y=0.1)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best", title="run (colour: method, shape: topology)",
              title_fontsize=8)
    _save(fig, path, LEGEND_KEY + f"; bars: the {rep.level:.0%} bootstrap interval")


def _tokens_by_agent(rep: Report, path: Path) -> None:
    fig, ax = _figure(max(5.0, 1.2 * len(rep.runs) + 3), 4.5)
    names = labels(rep)
    seen = {role for s in rep.stats.values() for role in s.by_role}
    roles = [r for r in ROLE_ORDER if r in seen] + sorted(seen - set(ROLE_ORDER))
    xs = list(range(len(rep.runs)))
    bottom = [0.0] * len(rep.runs)
    for role in roles:
        heights = [rep.stats[r.name].by_role.get(role, 0.0) for r in rep.runs]
        ax.bar(xs, heights, bottom=bottom, label=role, color=ROLE_COLOURS.get(role), width=0.6)
        bottom = [b + h for b, h in zip(bottom, heights)]
    ax.set_xticks(xs, [names[r.name] for r in rep.runs], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("generated tokens per sample (mean)")
    ax.set_title(f"{rep.task}: generated tokens by agent role")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, title="agent role", title_fontsize=8)
    _save(fig, path, LEGEND_KEY)


def _save(fig, path: Path, key: str = "") -> None:
    """Whole file or none: a reader never opens half a PNG. key: a line under the axes."""
    if key:
        fig.text(0.01, 0.01, key, fontsize=7, ha="left", va="bottom", wrap=True)
        fig.tight_layout(rect=(0, 0.05, 1, 1))
    else:
        fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")


def write_plots(rep: Report, folder: str | Path) -> list[str]:
    """Write the three PNGs into `folder`; returns their file names (in report order)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _scatter(rep, folder / "accuracy_vs_tokens.png", lambda s: s.gen_tokens,
             "generated tokens per sample (mean, all agents)", "generated tokens")
    _scatter(rep, folder / "accuracy_vs_time.png", lambda s: s.seconds,
             "wall time per sample, seconds (mean)", "time")
    _tokens_by_agent(rep, folder / "tokens_by_agent.png")
    return ["accuracy_vs_tokens.png", "accuracy_vs_time.png", "tokens_by_agent.png"]

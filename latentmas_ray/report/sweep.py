"""A sweep's report: the chosen setting, every point on test, and the curves the paper draws.

    write_sweep_report(folder, sel, axes, title) -> (markdown path, PNG names)

One PNG per grid axis (`curve-<axis>.png`): accuracy, generated tokens and seconds per sample
against the axis's values, one line per setting of the other axes, each shaded with its
bootstrap interval; all numbers on the test split (where the choice was not made). The
markdown holds the grid, the split, the chosen setting, the table of all points and the
paired comparisons, and links the figures. Rendering reuses the report's table and PNG code.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from latentmas_ray.store.atomic import atomic_open, atomic_write_text
from .selection import Selection, Stats
from .tables import Table, p_text, pct, table_markdown

PANELS = (("accuracy", "accuracy, %", 100.0), ("tokens", "generated tokens / sample", 1.0),
          ("seconds", "seconds / sample", 1.0))


def _interval(s: Stats | None, what: str) -> tuple[float, float, float] | None:
    if s is None:
        return None
    value, ci = {"accuracy": (s.accuracy, s.acc_ci), "tokens": (s.tokens, s.tokens_ci),
                 "seconds": (s.seconds, s.seconds_ci)}[what]
    return value, ci[0], ci[1]


def point_of(sel: Selection) -> dict[tuple, str]:
    """Every grid setting (its values in axis order) -> the key of the point that ran it."""
    return {tuple(s.values()): p.key for p in sel.points for s in p.settings}


def axis_curves(sel: Selection, axes: list, axis: int) -> list[tuple[str, list, list[str]]]:
    """For axis `axis`: (legend, x values, point keys) per setting of the other axes."""
    where = point_of(sel)
    others = [a for i, a in enumerate(axes) if i != axis]
    out, seen = [], set()
    for rest in itertools.product(*(v for _, v in others)):
        xs, keys = [], []
        for x in axes[axis][1]:
            values = list(rest)
            values.insert(axis, x)
            if tuple(values) in where:
                xs.append(x)
                keys.append(where[tuple(values)])
        if tuple(keys) in seen:     # the same runs again (a merged baseline): one line
            continue
        seen.add(tuple(keys))
        legend = " ".join(f"{n}={v}" for (n, _), v in zip(others, rest)) or axes[axis][0]
        if len(set(keys)) == 1:     # one run at every x (a merged baseline): its own label
            legend = next(p.label for p in sel.points if p.key == keys[0])
        out.append((legend, xs, keys))
    return out


def plot_axis(sel: Selection, axes: list, axis: int, path: Path) -> None:
    from matplotlib.figure import Figure

    name, values = axes[axis]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    pos = {repr(v): (v if numeric else i) for i, v in enumerate(values)}
    fig = Figure(figsize=(12, 3.8), dpi=100)
    for col, (what, ylabel, scale) in enumerate(PANELS):
        ax = fig.add_subplot(1, 3, col + 1)
        for legend, xs, keys in axis_curves(sel, axes, axis):
            pts = [(pos[repr(x)], iv) for x, k in zip(xs, keys)
                   if (iv := _interval(sel.test[k], what)) is not None]
            if not pts:
                continue
            x = [p for p, _ in pts]
            line, = ax.plot(x, [scale * v for _, (v, _, _) in pts], marker="o", label=legend)
            ax.fill_between(x, [scale * lo for _, (_, lo, _) in pts],
                            [scale * hi for _, (_, _, hi) in pts], alpha=0.2,
                            color=line.get_color())
        chosen = sel.chosen.settings[0].get(name)
        if repr(chosen) in pos:
            ax.axvline(pos[repr(chosen)], color="grey", linestyle=":", linewidth=1)
        ax.set_xticks([pos[repr(v)] for v in values], [str(v) for v in values])
        ax.set_xlabel(name)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if col == 0:
            ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"{name}: test split, shaded = 95% bootstrap interval, dotted = chosen")
    _save(fig, path)


def _save(fig, path: Path) -> None:
    """Whole file or none, as the run report's PNGs."""
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")


def _cell(s: Stats | None, what: str) -> str:
    iv = _interval(s, what)
    if iv is None:
        return "-"
    v, lo, hi = iv
    if what == "accuracy":
        return f"{pct(v)} [{pct(lo)}, {pct(hi)}]"
    return f"{v:.1f}" if what == "tokens" else f"{v:.3f}"


def points_table(sel: Selection) -> Table:
    rows = []
    for rank, p in enumerate(sel.points, 1):
        d, t = sel.dev[p.key], sel.test[p.key]
        rows.append([str(rank) + (" (chosen)" if rank == 1 else ""), p.label, p.key,
                     _cell(d, "accuracy"), _cell(t, "accuracy"), _cell(t, "tokens"),
                     _cell(t, "seconds"), str(t.n if t else 0)])
    split = "dev" if sel.select_on == "dev" else "all"
    return Table("All points (ranked on the selection split)",
                 ["Rank", "Setting", "Run", f"Accuracy ({split})", "Accuracy (test)",
                  "Gen. tokens (test)", "s / sample (test)", "Test samples"], rows,
                 [f"{len(p.settings)} grid settings map to {p.key} (the same run)"
                  for p in sel.points if len(p.settings) > 1])


def comparisons_table(sel: Selection) -> Table:
    rows = []
    for what, other, pair in (("runner-up", sel.runner_up, sel.vs_runner_up),
                              ("baseline", sel.baseline, sel.vs_baseline)):
        if other is None or pair is None:
            continue
        rows.append([f"chosen vs {what} ({other.label})", str(pair.shared),
                     f"{100 * pair.diff:+.1f}", f"[{100 * pair.ci[0]:+.1f}, {100 * pair.ci[1]:+.1f}]",
                     f"{pair.only_b} / {pair.only_a}", p_text(pair.p_value),
                     "yes" if pair.significant else "no"])
    return Table("The chosen point on test, paired", ["Comparison", "Questions", "Diff (points)",
                 "95% interval", "Only chosen / only other right", "McNemar p", "Significant"],
                 rows, [sel.noise])


def sweep_markdown(sel: Selection, axes: list, title: str, plots: list[str],
                   meta: dict[str, Any]) -> str:
    grid = "; ".join(f"{n} = {', '.join(map(str, v))}" for n, v in axes)
    how = (f"chosen on a dev split of {sel.n_dev} samples ({meta.get('dev_fraction')} of them, "
           f"seeded hash of the sample id, seed {meta.get('seed')}); every number below marked "
           f"test is on the other {sel.n_test} samples, where nothing was chosen"
           if sel.select_on == "dev" else
           "chosen on ALL samples and reported on the same samples: optimistic, not a held-out "
           "estimate (use --select_on dev)")
    lines = [f"# Sweep: {title}", "", f"Grid: {grid} ({len(sel.points)} distinct runs).", "",
             f"**Chosen setting: {sel.chosen.label}** (run {sel.chosen.key}), {how}.", "",
             sel.noise, ""]
    text = "\n".join(lines) + "\n" + table_markdown(points_table(sel)) + "\n" + \
        table_markdown(comparisons_table(sel))
    if plots:
        text += "\n## Curves\n\n" + "\n\n".join(f"![{p}]({p})" for p in plots) + "\n"
    return text


def write_sweep_report(folder: str | Path, sel: Selection, axes: list, title: str,
                       meta: dict[str, Any]) -> tuple[Path, list[str]]:
    folder = Path(folder)
    plots = []
    for i, (name, _) in enumerate(axes):
        plot_axis(sel, axes, i, folder / f"curve-{name}.png")
        plots.append(f"curve-{name}.png")
    path = folder / "report.md"
    atomic_write_text(path, sweep_markdown(sel, axes, title, plots, meta))
    return path, plots

"""`latentmas-ray report`: statistics against known answers, a golden markdown snapshot, plots
that load and are not blank, the paper's tables as data, and one clear error per bad input.

Set UPDATE_GOLDEN=1 to rewrite tests/golden/report.md after an intended change to the report.
"""

from __future__ import annotations

import argparse
import io
import json
import os
from math import comb, sqrt
from pathlib import Path

import numpy as np
import pytest

from latentmas_ray.commands.report import add_report_parser, run_report
from latentmas_ray.spec.config import MethodConfig, ModelConfig, RunConfig
from latentmas_ray.errors import ConfigError, DataError
from latentmas_ray.report import build_report, load_run, load_runs, paper
from latentmas_ray.report.stats import bootstrap_mean_ci, mcnemar_exact, paired_compare
from latentmas_ray.report.tables import to_markdown
from latentmas_ray.store.run_store import RunStore, summarize

GOLDEN = Path(__file__).parent / "golden" / "report.md"
ROLES = {"baseline": [("single", 100)],
         "text_mas": [("planner", 200), ("critic", 150), ("refiner", 120), ("judger", 80)],
         "latent_mas": [("planner", 0), ("critic", 0), ("refiner", 0), ("judger", 60)]}
SECONDS = {"baseline": 0.5, "text_mas": 2.0, "latent_mas": 0.8}


def _row(i: int, task: str, method: str, correct: bool, steps: int = 0) -> dict:
    agents = [{"role": role, "name": role.title(), "input_ids": [1, 2], "output_ids": [3] * tok,
               "prompt_tokens": 2, "generated_tokens": tok + (i % 3 if tok else 0),
               "latent_steps": steps if role != "judger" and tok == 0 else 0,
               "seconds": SECONDS[method] / len(ROLES[method])}
              for role, tok in ROLES[method]]
    return {"id": str(i), "task": task, "method": method, "prediction": f"p{i}", "gold": "1",
            "correct": correct, "extracted": "1", "error": None,
            "prompt_tokens": 2 * len(agents),
            "generated_tokens": sum(a["generated_tokens"] for a in agents),
            "latent_steps": sum(a["latent_steps"] for a in agents),
            "seconds": SECONDS[method], "agents": agents}


def make_run(folder: Path, method: str, correct, *, task="gsm8k", model="Qwen/Qwen3-14B",
             prompt="sequential", steps=0, finished=True, batch=10) -> Path:
    """A run folder as `latentmas-ray run` leaves it (finished=False: parts only, as mid-run)."""
    cfg = RunConfig(task=task, model=ModelConfig(name_or_path=model),
                    method=MethodConfig(method=method, prompt=prompt, latent_steps=steps))
    store = RunStore(folder)
    store.open(cfg.to_dict())
    rows = [_row(i, task, method, bool(c), steps) for i, c in enumerate(correct)]
    for k in range(0, len(rows), batch):
        store.append(rows[k:k + batch])
    if finished:
        table = store.consolidate(order=[r["id"] for r in rows])
        store.write_summary({"task": task, "method": method, "model": f"/models/{model}",
                             **summarize(table, 1.0)})
    return folder


@pytest.fixture
def runs(tmp_path) -> list[Path]:
    n = 40
    return [
        make_run(tmp_path / "gsm8k-baseline-Qwen3-14B", "baseline", [i % 3 != 0 for i in range(n)]),
        make_run(tmp_path / "gsm8k-text_mas-Qwen3-14B", "text_mas", [i % 4 != 0 for i in range(n)]),
        make_run(tmp_path / "gsm8k-latent_mas-Qwen3-14B", "latent_mas",
                 [i % 5 != 0 for i in range(n)], steps=10),
        make_run(tmp_path / "gsm8k-latent_mas-smollm2", "latent_mas",
                 [i % 2 == 0 for i in range(12)], model=None, steps=4, finished=False, batch=4),
    ]


# --- statistics ----------------------------------------------------------------------------------
def test_bootstrap_interval_matches_the_normal_approximation_for_large_n():
    n, p = 2000, 0.3
    values = [i < p * n for i in range(n)]
    lo, hi = bootstrap_mean_ci(values, seed=1)
    half = 1.96 * sqrt(p * (1 - p) / n)
    assert lo == pytest.approx(p - half, abs=0.003)
    assert hi == pytest.approx(p + half, abs=0.003)


def _binomial_quantile(n: int, p: float, q: float) -> float:
    """The exact q-quantile of Binomial(n, p) / n: the bootstrap distribution of 0/1 data's mean."""
    cdf = 0.0
    for k in range(n + 1):
        cdf += comb(n, k) * p ** k * (1 - p) ** (n - k)
        if cdf >= q:
            return k / n
    return 1.0


def test_bootstrap_interval_matches_the_exact_bootstrap_distribution_for_small_n():
    n = 30  # AIME-sized: one answer is 3.3 points
    values = [i < 18 for i in range(n)]
    lo, hi = bootstrap_mean_ci(values, seed=7)
    assert abs(lo - _binomial_quantile(n, 0.6, 0.025)) <= 1 / n + 1e-9
    assert abs(hi - _binomial_quantile(n, 0.6, 0.975)) <= 1 / n + 1e-9
    assert bootstrap_mean_ci(values, seed=7) == (lo, hi)      # seeded: reproducible


def test_bootstrap_agrees_with_a_plain_index_resampling_reference():
    rng = np.random.default_rng(3)
    values = rng.normal(10.0, 2.0, size=300)
    reference = values[np.random.default_rng(0).integers(0, 300, size=(10_000, 300))].mean(axis=1)
    ref_lo, ref_hi = np.quantile(reference, [0.025, 0.975])
    lo, hi = bootstrap_mean_ci(values)
    assert lo == pytest.approx(ref_lo, abs=0.03) and hi == pytest.approx(ref_hi, abs=0.03)


def test_mcnemar_equals_the_hand_computed_binomial_value():
    # 2 vs 8 discordant pairs: p = 2 * (C(10,0) + C(10,1) + C(10,2)) / 2^10 = 112 / 1024
    assert mcnemar_exact(2, 8) == pytest.approx(0.109375, abs=1e-15)
    assert mcnemar_exact(8, 2) == mcnemar_exact(2, 8)
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(0, 10) == pytest.approx(2 / 1024)
    assert 0 <= mcnemar_exact(900, 1400) < 1e-20       # big counts: no overflow, no nonsense


def test_paired_comparison_on_shared_ids():
    a = {str(i): i < 50 for i in range(100)}                     # 50 right
    b = {str(i): i < 50 or 50 <= i < 60 for i in range(100)}     # same, plus 10 more
    b["999"] = True                                               # not shared: ignored
    p = paired_compare(a, b)
    assert (p.shared, p.only_a, p.only_b) == (100, 0, 10)
    assert p.diff == pytest.approx(0.10)
    assert p.p_value == pytest.approx(2 / 1024) and p.significant
    half = 1.96 * sqrt(0.1 * 0.9 / 100)                          # sd of the 0/1 differences
    assert p.ci[0] == pytest.approx(0.1 - half, abs=0.015)
    assert p.ci[1] == pytest.approx(0.1 + half, abs=0.015)
    assert paired_compare({"x": True}, {"y": True}) is None


# --- the report ----------------------------------------------------------------------------------
def test_report_numbers_on_known_stores(runs):
    rep = build_report(load_runs(runs))
    by = {r.name: r for r in rep.runs}
    base, text, lat = (by[f"gsm8k-{m}-Qwen3-14B"] for m in ("baseline", "text_mas", "latent_mas"))
    assert rep.stats[base.name].accuracy == pytest.approx(26 / 40)
    assert rep.stats[lat.name].accuracy == pytest.approx(32 / 40)
    # planner: 200 + mean(i % 3) tokens
    assert rep.stats[text.name].by_role["planner"] == pytest.approx(200 + 39 / 40)
    assert rep.stats[lat.name].gen_tokens == pytest.approx(60 + 39 / 40)
    vs_text = next(x for x in rep.ratios if x.latent is lat and x.other is text)
    assert vs_text.token_reduction == pytest.approx(1 - (60 + 39 / 40) / (550 + 4 * 39 / 40))
    assert vs_text.speedup == pytest.approx(2.0 / 0.8)
    assert vs_text.paper_token_reduction == pytest.approx(1 - 644 / 3324)   # Table 1, 14B GSM8K
    pair = next(p for a, b, p in rep.pairs if a is base and b is lat)
    # baseline wrong on i%3==0, LatentMAS wrong on i%5==0, i < 40
    only_base = sum(1 for i in range(40) if i % 5 == 0 and i % 3 != 0)
    only_lat = sum(1 for i in range(40) if i % 3 == 0 and i % 5 != 0)
    assert (pair.only_a, pair.only_b) == (only_base, only_lat)
    n = only_base + only_lat
    assert pair.p_value == pytest.approx(
        2 * sum(comb(n, k) for k in range(min(only_base, only_lat) + 1)) / 2 ** n)
    assert rep.paper_rows[lat.name].acc == 95.2
    assert [r.name for r, _ in rep.no_paper] == ["gsm8k-latent_mas-smollm2"]


def _parser():
    parser = argparse.ArgumentParser(prog="latentmas-ray")
    add_report_parser(parser.add_subparsers(dest="command"))
    return parser


def _console():
    from rich.console import Console
    return Console(file=io.StringIO(), width=200)


def test_golden_markdown_plots_and_terminal(runs, tmp_path):
    out = tmp_path / "report"
    console = _console()
    args = _parser().parse_args(["report", *map(str, runs), "--output", str(out)])
    assert run_report(args, console) == 0
    text = (out / "report.md").read_text()
    assert str(tmp_path) not in text
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "report changed; UPDATE_GOLDEN=1 rewrites the snapshot"
    assert "in progress (12 samples so far)" in text
    assert text.count("not in the paper") == 1
    terminal = console.file.getvalue()
    assert "Accuracy and cost" in terminal and "In progress" in terminal

    from matplotlib.image import imread
    for name in ("accuracy_vs_tokens.png", "accuracy_vs_time.png", "tokens_by_agent.png"):
        img = imread(out / name)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100, name
        assert float(img.var()) > 0, name
        assert len(np.unique(img.reshape(-1, img.shape[-1]), axis=0)) > 2, name


def test_progress_of_a_run_still_being_written(tmp_path):
    folder = make_run(tmp_path / "live", "baseline", [True, False, True], finished=False, batch=2)
    run = load_run(folder)
    assert (run.n, run.complete) == (3, False)
    assert not (folder / "samples.parquet").exists() and not (folder / "summary.json").exists()
    RunStore(folder).append([_row(3, "gsm8k", "baseline", True)])   # the job goes on
    md = to_markdown(build_report([load_run(folder)]))
    assert "live has 4 samples so far" in md


def test_single_run_report_goes_into_the_run_folder(tmp_path):
    folder = make_run(tmp_path / "one", "latent_mas", [True, False] * 5, model="my/OtherModel")
    args = _parser().parse_args(["report", str(folder), "--no-plots"])
    assert run_report(args, _console()) == 0
    md = (folder / "report.md").read_text()
    assert "model OtherModel is not in the paper" in md and "Paper accuracy" not in md
    assert RunStore(folder).read().num_rows == 10                 # the store is untouched


# --- the paper's tables --------------------------------------------------------------------------
def test_paper_tables_are_complete_and_self_consistent():
    doc = paper.tables()
    assert "2511.20639" in doc["source"]["paper"] and "Tables 1-3" in doc["source"]["tables"]
    entries = doc["entries"]
    assert len(entries) == 2 * 6 * 3 * 3 + 2 * 3 * 2 * 3
    key = lambda e: (e["table"], e["setting"], e["task"], e["model"])  # noqa: E731
    for imp in doc["improvements"]:          # the published Improve columns check the values
        got = {e["method"]: e for e in entries if key(e) == key(imp)}
        lat, text = got["latent_mas"], got["text_mas"]
        assert imp["acc_points"] == pytest.approx(lat["acc"] - text["acc"], abs=0.051), imp
        assert imp["token_change_pct"] == pytest.approx(
            -100 * (1 - lat["tokens"] / text["tokens"]), abs=0.051), imp
        assert imp["speedup"] == pytest.approx(text["time"] / lat["time"], abs=0.051), imp
    singles = {(e["task"], e["model"]): e for e in entries
               if e["method"] == "single" and e["table"] == 1}
    for e in entries:
        if e["method"] == "single" and e["table"] == 2:
            assert e == {**singles[(e["task"], e["model"])], "table": 2, "setting": "hierarchical"}


def test_paper_model_matching_and_lookup():
    assert paper.paper_model("/data/hf/models--Qwen--Qwen3-14B/snapshots/abc") == "Qwen3-14B"
    assert paper.paper_model("qwen/qwen3-4b") == "Qwen3-4B"
    assert paper.paper_model("Qwen/Qwen3-8B-Base") == "Qwen3-8B"
    assert paper.paper_model("Qwen/Qwen3-0.6B") is None
    assert paper.paper_model("Qwen3-4B2") is None
    row = paper.lookup("aime2024", "Qwen3-14B", "latent_mas", "hierarchical")
    assert (row.table, row.acc, row.tokens, row.time) == (3, 73.3, 10230, 1089)
    assert paper.lookup("gsm8k", "Qwen3-8B", "baseline", "hierarchical").acc == 81.1
    assert paper.lookup("aime2024", "Qwen3-4B", "latent_mas", "sequential") is None


# --- bad input -----------------------------------------------------------------------------------
def test_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "notes").mkdir()
    with pytest.raises(DataError, match="not a run folder"):
        load_runs([tmp_path / "notes"])
    with pytest.raises(DataError, match="no such run folder"):
        load_runs([tmp_path / "missing"])


def test_runs_of_different_tasks_in_one_comparison(tmp_path):
    a = make_run(tmp_path / "a", "baseline", [True], task="gsm8k")
    b = make_run(tmp_path / "b", "baseline", [True], task="arc_easy")
    with pytest.raises(ConfigError, match=r"different tasks.*arc_easy: b; gsm8k: a"):
        load_runs([a, b])
    with pytest.raises(ConfigError, match="given twice"):
        load_runs([a, a])


def test_an_empty_store(tmp_path):
    RunStore(tmp_path / "empty").open(RunConfig(task="gsm8k").to_dict())
    with pytest.raises(DataError, match="no finished samples"):
        load_runs([tmp_path / "empty"])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    with pytest.raises(DataError, match="config.json is not readable JSON"):
        load_run(tmp_path / "bad")
    (tmp_path / "bad" / "config.json").write_text(json.dumps({"format": 1}))
    with pytest.raises(DataError, match="holds no run settings"):
        load_run(tmp_path / "bad")


def test_plots_have_distinct_titles_and_a_key_to_their_labels(runs, tmp_path, monkeypatch):
    """Each figure says what it plots, and the legend's short labels ("seq m=4") are explained
    on the figure itself."""
    import latentmas_ray.report.plots as plots

    seen = {}
    save = plots._save

    def recording(fig, path, key=""):
        save(fig, path, key)
        seen[path.name] = (fig.axes[0].get_title(), " ".join(t.get_text() for t in fig.texts),
                           fig.axes[0].get_legend().get_title().get_text())

    monkeypatch.setattr(plots, "_save", recording)
    rep = build_report(load_runs([str(r) for r in runs]))
    plots.write_plots(rep, tmp_path / "plots")
    titles = [title for title, _, _ in seen.values()]
    assert len(seen) == 3 and len(set(titles)) == 3, titles
    assert "generated tokens" in seen["accuracy_vs_tokens.png"][0]
    assert "time" in seen["accuracy_vs_time.png"][0]
    for name, (_, key, legend_title) in seen.items():
        assert "seq / hier" in key and "m: latent steps per agent" in key, name
        assert legend_title, name

"""The main job (`scripts/demo.sh` -> `latentmas-ray demo`): three methods on the same questions,
the comparison table at the end, and a second call that recomputes nothing."""

from __future__ import annotations

import io
import json
from pathlib import Path

from rich.console import Console

from latentmas_ray.cli import build_parser
from latentmas_ray.commands.demo import DEFAULTS, METHODS, demo_configs

REPO = Path(__file__).resolve().parents[1]


def run_demo(argv: list[str]) -> tuple[int, str]:
    """`latentmas-ray demo ARGV`: its exit status and terminal output (wide: no wrapping)."""
    buf = io.StringIO()
    return execute_with(build_parser().parse_args(["demo", *argv]), buf), buf.getvalue()


def execute_with(args, buf) -> int:
    from latentmas_ray.commands.demo import run_demo as run
    from latentmas_ray.errors import exit_status

    console = Console(file=buf, width=250)
    return exit_status(lambda: run(args, console), console)


def test_three_methods_then_the_comparison_and_a_second_call_recomputes_nothing(
        tiny_model_dir, tmp_path, monkeypatch):
    out = tmp_path / "demo"
    argv = ["--model_name", tiny_model_dir, "--dtype", "float32", "--device", "cpu",
            "--max_samples", "3", "--max_new_tokens", "6", "--output", str(out)]
    code, text = run_demo(argv)
    assert code == 0, text
    for m in METHODS:
        summary = json.loads((out / m / "summary.json").read_text())
        assert summary["method"] == m and summary["samples"] == 3
        config = json.loads((out / m / "config.json").read_text())["run"]
        assert config["method"]["latent_steps"] == DEFAULTS["latent_steps"]
        assert config["method"]["temperature"] == 0 and config["task"] == "arc_easy"
    # it ends with the comparison and the paths of what it wrote
    tail = text[text.index("baseline, TextMAS and LatentMAS on the same questions"):]
    assert "Accuracy and cost" in tail and "95% CI" in tail
    assert "LatentMAS against TextMAS and the baseline" in tail
    assert "Token reduction" in tail and "Speed-up" in tail
    assert "Paired comparisons" not in tail                       # brief: report.md has them
    for name in ("report.md", "accuracy_vs_tokens.png", "accuracy_vs_time.png",
                 "tokens_by_agent.png"):
        assert str(out / "report" / name) in tail and (out / "report" / name).is_file()
    assert "Paired comparisons" in (out / "report" / "report.md").read_text()

    # a second call: every sample is done, no model is even built
    import latentmas_ray.run.batch as ev

    def boom(*a, **k):
        raise AssertionError("the second call recomputed a sample")
    monkeypatch.setattr(ev.Evaluator, "__init__", boom)
    code, again = run_demo(argv)
    assert code == 0, again
    assert again.count("3 samples, 3 already done") == 3
    assert "LatentMAS against TextMAS and the baseline" in again


def test_flags_reach_all_three_runs_and_method_is_the_demos():
    args = build_parser().parse_args(["demo", "--max_samples", "20", "--method", "baseline",
                                      "--wandb", "p", "--output", "x/y"])
    folder, configs = demo_configs(args)
    assert folder == Path("x/y")
    assert [c.method.method for c in configs] == list(METHODS)
    assert [c.output for c in configs] == [f"x/y/{m}" for m in METHODS]
    assert all(c.max_samples == 20 and c.execution.wandb == "p" for c in configs)
    assert all(c.method.max_new_tokens == DEFAULTS["max_new_tokens"] for c in configs)


def test_demo_script_runs_the_demo_command():
    script = (REPO / "scripts" / "demo.sh").read_text()
    assert "bash scripts/install.sh\n" in script                # the base install, no test extra
    assert script.rstrip().endswith('latentmas-ray demo "$@"')


def test_bad_flag_is_one_line_before_any_run(tmp_path):
    buf = io.StringIO()
    args = build_parser().parse_args(["demo", "--latent_steps", "-1", "--output", str(tmp_path / "d")])
    assert execute_with(args, buf) == 2
    assert "--latent_steps must be >= 0" in buf.getvalue()
    assert not (tmp_path / "d").exists()


def test_the_demo_prints_no_library_progress_bars(tiny_model_dir, tmp_path):
    """transformers' tqdm bar ("Loading weights", one per model load) stays out of the demo's
    output; HF_HUB_DISABLE_PROGRESS_BARS=0 brings it back (so this test can see it)."""
    import os
    import subprocess
    import sys

    def demo(out, **env):
        base = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_PROGRESS_BARS"}
        p = subprocess.run([sys.executable, "-m", "latentmas_ray.cli", "demo", "--model_name",
                            tiny_model_dir, "--dtype", "float32", "--device", "cpu",
                            "--max_samples", "1", "--max_new_tokens", "2", "--method", "baseline",
                            "--output", str(tmp_path / out)], capture_output=True, text=True,
                           timeout=600, env={**base, **env, "PYTHONPATH": str(REPO)}, cwd=REPO)
        assert p.returncode == 0, p.stderr[-3000:]
        return p.stdout + p.stderr

    assert "Loading weights" not in demo("quiet")
    assert "Loading weights" in demo("bars", HF_HUB_DISABLE_PROGRESS_BARS="0")

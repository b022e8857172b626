"""`latentmas-ray inspect RUN_DIR`: what the latent thoughts of a LatentMAS run hold.

Reads the latent steps a run saved (`latentmas-ray run --method latent_mas --save_latents ...`,
side files parts/latents-*.pt), loads the run's model (embeddings, lm_head, tokenizer only are
used), and writes `inspect.md` (a logit-lens table of each latent step of the chosen samples,
per agent, and the means over all saved samples) and `latent_drift.png` into the output folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError

_DESCRIPTION = ("Look inside LatentMAS's latent thoughts: each latent step's nearest vocabulary "
                "tokens (logit lens through lm_head), its norm, its cosine to the input-embedding "
                "manifold and its drift across steps, per agent, from a run saved with "
                "--save_latents.")


def add_inspect_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("inspect", help="logit lens and drift of a LatentMAS run's latent steps",
                       description=_DESCRIPTION)
    p.add_argument("run", metavar="RUN_DIR", help="a run folder written with --save_latents")
    p.add_argument("--sample", action="append", default=None,
                   help="sample id to show step by step (repeatable; default: the first 2)")
    p.add_argument("--top", type=int, default=5, help="tokens shown per step (default 5)")
    p.add_argument("--output", default=None, help="folder for inspect.md and the PNG "
                   "(default: RUN_DIR/inspect)")
    p.add_argument("--no_plots", "--no-plots", dest="no_plots", action="store_true",
                   help="write inspect.md only")
    return p


def inspect_run(run_dir: str | Path, engine=None, *, samples: list[str] | None = None,
                top: int = 5, output: str | Path | None = None, plots: bool = True) -> dict:
    """Write inspect.md (+ latent_drift.png) for a run; returns {"markdown", "files", "steps"}.
    engine: an HFEngine already loaded (tests); default: the run's model."""
    from latentmas_ray.store.atomic import atomic_write_text
    from ..report.latents import (LatentLens, curves_markdown, drift_curves, steps_markdown,
                                  write_drift_png)
    from latentmas_ray.store.run_store import RunStore

    store = RunStore(run_dir)
    run_cfg = store.config()["run"]
    latents = store.latents()
    if not latents:
        raise ConfigError(f"{run_dir} holds no saved latent steps; run LatentMAS with "
                          "--save_latents (and --latent_steps > 0) into a new --output")
    if top < 1:
        raise ConfigError(f"--top must be >= 1, got {top}")
    missing = [s for s in samples or [] if s not in latents]
    if missing:
        raise ConfigError(f"no saved latents for sample(s) {', '.join(missing)} in {run_dir}")
    if engine is None:
        from latentmas_ray.spec.config import ModelConfig, from_dict
        from ..engines.hf import HFEngine
        from latentmas_ray.spec.models import resolve_model

        model_cfg = from_dict(ModelConfig, run_cfg.get("model", {}))
        engine = HFEngine.load(model_cfg, str(resolve_model(model_cfg.name_or_path)))
    lens = LatentLens(engine)
    chosen = samples or list(latents)[:2]
    steps = {sid: lens.sample(latents[sid], top) for sid in chosen}
    curves = drift_curves(lens, latents)
    out = Path(output) if output else Path(run_dir) / "inspect"
    out.mkdir(parents=True, exist_ok=True)
    files = []
    if plots:
        files.append(write_drift_png(curves, out / "latent_drift.png").name)
    method = run_cfg.get("method", {})
    md = [f"# Latent steps of {Path(run_dir).name}", "",
          f"{len(latents)} samples saved, m = {method.get('latent_steps')} latent steps per agent, "
          f"realignment {'on' if method.get('latent_space_realign') else 'off'}. h: the final "
          "normed hidden state a step produced; e: the vector fed back in (realign(h)).", ""]
    md += [steps_markdown(sid, s) for sid, s in steps.items()]
    md.append(curves_markdown(curves, len(latents)))
    if plots:
        md.append("![latent drift](latent_drift.png)\n")
    text = "\n".join(md)
    atomic_write_text(out / "inspect.md", text)
    return {"markdown": text, "files": ["inspect.md"] + files, "steps": steps, "output": out}


def run_inspect(args, console) -> int:
    result = inspect_run(args.run, samples=args.sample, top=args.top, output=args.output,
                         plots=not args.no_plots)
    console.print(result["markdown"], highlight=False, markup=False)
    console.print(f"wrote {', '.join(result['files'])} to {result['output']}", highlight=False)
    return 0

"""What LatentMAS's latent thoughts hold (`latentmas-ray inspect RUN_DIR`).

A run made with --save_latents keeps, per sample and latent agent, each latent step's hidden
state h (the final normed state the step produced, [m, D]) and the vector fed back in,
e = realign(h) ([m, D], in the input-embedding space). Per step we show:

- logit lens: the top tokens of softmax(lm_head(h)), what the model "would say" there;
- |h| and |e|: norms (the realignment rescales e to the mean input-embedding norm);
- manifold: the input-embedding rows nearest to e by cosine, and the best cosine, i.e. how
  close the fed vector is to a real token (1.0: e IS a token's embedding);
- drift: cosine between e and the previous step's e (how far a thought moves per step).

`drift_curves` averages |h|, the manifold cosine and the drift over every saved sample, per
agent and step; `write_drift_png` plots them. Nothing here runs the model: it needs only the
engine's input embeddings, lm_head and tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

ROLE_ORDER = ("planner", "critic", "refiner")


@dataclass
class StepView:
    role: str
    step: int                                   # 0-based latent step of the agent
    hidden_norm: float
    fed_norm: float
    lens: list[tuple[str, float]] = field(default_factory=list)      # (token, probability)
    nearest: list[tuple[str, float]] = field(default_factory=list)   # (token, cosine to e)
    nearest_ids: list[int] = field(default_factory=list)
    drift_cos: float | None = None              # cos(e_t, e_{t-1}); None at step 0

    @property
    def manifold_cos(self) -> float:
        return self.nearest[0][1] if self.nearest else float("nan")


class LatentLens:
    """The engine's vocabulary views: lm_head rows (logit lens) and unit input embeddings."""

    def __init__(self, engine):
        with torch.no_grad():
            self.head = engine.lm_head.weight.detach().float().cpu()                   # [V, D]
            emb = engine.model.get_input_embeddings().weight.detach().float().cpu()    # [V, D]
        self.unit_emb = emb / emb.norm(dim=-1, keepdim=True).clamp_min(1e-12)          # [V, D]
        self.tokenizer = engine.tokenizer

    def token(self, i: int) -> str:
        return self.tokenizer.decode([int(i)])

    def view(self, role: str, saved: dict[str, torch.Tensor], top: int = 5) -> list[StepView]:
        """One agent's steps. saved: {"hidden": [m, D], "fed": [m, D]}."""
        h, e = saved["hidden"].float(), saved["fed"].float()                     # [m, D]
        probs = (h @ self.head.T).softmax(dim=-1)                                # [m, V]
        unit_e = e / e.norm(dim=-1, keepdim=True).clamp_min(1e-12)               # [m, D]
        cos = unit_e @ self.unit_emb.T                                           # [m, V]
        p_top, p_ids = probs.topk(top, dim=-1)                                   # [m, top]
        c_top, c_ids = cos.topk(top, dim=-1)                                     # [m, top]
        steps = []
        for t in range(h.shape[0]):
            drift = float(unit_e[t] @ unit_e[t - 1]) if t > 0 else None
            steps.append(StepView(
                role, t, float(h[t].norm()), float(e[t].norm()),
                [(self.token(i), float(p)) for i, p in zip(p_ids[t].tolist(), p_top[t].tolist())],
                [(self.token(i), float(c)) for i, c in zip(c_ids[t].tolist(), c_top[t].tolist())],
                c_ids[t].tolist(), drift))
        return steps

    def sample(self, saved: dict[str, dict[str, torch.Tensor]], top: int = 5) -> list[StepView]:
        """Every latent agent of one sample, in agent order."""
        roles = [r for r in ROLE_ORDER if r in saved] + [r for r in saved if r not in ROLE_ORDER]
        return [s for r in roles for s in self.view(r, saved[r], top)]


def drift_curves(lens: LatentLens, latents: dict[str, Any]) -> dict[str, dict[str, list[float]]]:
    """Per agent: mean over samples of |h|, the manifold cosine and the drift, per step."""
    acc: dict[str, dict[str, list[list[float]]]] = {}
    for saved in latents.values():
        for s in lens.sample(saved, top=1):
            per = acc.setdefault(s.role, {"hidden_norm": [], "manifold_cos": [], "drift_cos": []})
            for key, value in (("hidden_norm", s.hidden_norm), ("manifold_cos", s.manifold_cos),
                               ("drift_cos", s.drift_cos)):
                while len(per[key]) <= s.step:
                    per[key].append([])
                if value is not None:
                    per[key][s.step].append(value)
    return {role: {k: [sum(v) / len(v) if v else float("nan") for v in steps]
                   for k, steps in per.items()} for role, per in acc.items()}


def write_drift_png(curves: dict[str, dict[str, list[float]]], path: str | Path) -> Path:
    """Three panels (|h|, manifold cosine, step-to-step cosine) against the step, a line per
    agent."""
    from matplotlib.figure import Figure

    from latentmas_ray.store.atomic import atomic_open

    fig = Figure(figsize=(11, 3.6), dpi=100)
    panels = (("hidden_norm", "|h| (final hidden state)"),
              ("manifold_cos", "max cosine of e to an input embedding"),
              ("drift_cos", "cosine of e to the previous step's e"))
    for n, (key, title) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, 3, n)
        for role, c in curves.items():
            ax.plot(range(1, len(c[key]) + 1), c[key], marker="o", label=role)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("latent step")
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
    return path


def _tok(t: str) -> str:
    return repr(t)[1:-1].replace("|", "\\|")


def steps_markdown(sample_id: str, steps: list[StepView]) -> str:
    lines = [f"### Sample {sample_id}", "",
             "| agent | step | \\|h\\| | \\|e\\| | logit lens of h (p) | nearest embeddings of e (cos) "
             "| cos to previous e |", "|---|---|---|---|---|---|---|"]
    for s in steps:
        lens = ", ".join(f"`{_tok(t)}` {p:.2f}" for t, p in s.lens)
        near = ", ".join(f"`{_tok(t)}` {c:.2f}" for t, c in s.nearest)
        drift = "" if s.drift_cos is None else f"{s.drift_cos:.3f}"
        lines.append(f"| {s.role} | {s.step + 1} | {s.hidden_norm:.1f} | {s.fed_norm:.2f} | {lens} "
                     f"| {near} | {drift} |")
    return "\n".join(lines) + "\n"


def curves_markdown(curves: dict[str, dict[str, list[float]]], n_samples: int) -> str:
    lines = [f"### Mean over {n_samples} samples", "",
             "| agent | step | \\|h\\| | max cos to embeddings | cos to previous |", "|---|---|---|---|---|"]
    for role, c in curves.items():
        for t in range(len(c["hidden_norm"])):
            d = c["drift_cos"][t]
            lines.append(f"| {role} | {t + 1} | {c['hidden_norm'][t]:.1f} | {c['manifold_cos'][t]:.3f} "
                         f"| {'' if d != d else f'{d:.3f}'} |")
    return "\n".join(lines) + "\n"

"""Lengths measured before any engine starts: on vLLM every prompt plus max_new_tokens must fit
--vllm_max_model_len (vLLM would otherwise reject the request, or stop the generation early);
the rule and its message are engines/vllm_fit.py's, this module measures the prompts.

    check_lengths(cfg, samples, model_path, prompts) -> longest prompt (positions)

Only the tokenizer is loaded. The prompts are the methods' own (same rendering and token ids):
baseline: its one prompt; TextMAS: each agent's prompt with an empty context (later agents'
prompts also hold earlier answers, unknown before the run: those are checked per request, and
one that cannot fit stops the run with the same kind of message); the hybrid judger: its input
embedding sequence (three latent agents' prompts + 3 x latent_steps vectors + its own prompt).
With --vllm_clip_max_new_tokens a sample whose prompt fits but not with max_new_tokens is
allowed: its budget is cut per request and recorded in its row (`max_new_tokens`).
"""

from __future__ import annotations

from typing import Sequence

from latentmas_ray.spec.config import RunConfig
from latentmas_ray.engines.text import TextSide
from latentmas_ray.engines.vllm_fit import check_prompt_lengths
from latentmas_ray.prompts import agent_messages, build_messages, team_for


class Tokenizer(TextSide):
    """The engines' render + tokenize on the model folder's tokenizer (no model loaded)."""

    def __init__(self, model_path: str):
        from transformers import AutoTokenizer
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_path), local_files_only=True)


def prompt_lengths(cfg: RunConfig, samples: Sequence, tok, prompts: dict[str, str] | None
                   ) -> dict[str, int]:
    """Each sample's longest vLLM input known before the run (positions)."""
    m = cfg.method
    if m.method == "baseline":
        return {s.id: len(tok.tokenize(tok.render(build_messages(
            "baseline", m.prompt, "single", s.kind, s.question, "", prompts)))) for s in samples}
    team = team_for(m)
    if m.method == "text_mas":
        return {s.id: max(len(tok.tokenize(tok.render(agent_messages(
            "text_mas", team, a, s.kind, s.question, "", prompts)))) for a in team.agents)
            for s in samples}
    from latentmas_ray.methods.latent_mas import judger_uses_memory, role_prompt_ids

    total = {s.id: 0 for s in samples}
    answerer = team.answerer.role
    roles = [a.role for a in team.agents] if judger_uses_memory(m) else [answerer]
    for role in roles:
        for s, ids in zip(samples, role_prompt_ids(tok, samples, role, m, prompts)):
            total[s.id] += len(ids) + (m.latent_steps if role != answerer else 0)
    return total


def check_lengths(cfg: RunConfig, samples: Sequence, model_path, prompts: dict[str, str] | None
                  ) -> int:
    """Measure every vLLM input known before the run and ask engines/vllm_fit.py whether it
    fits: ONE line naming the worst sample when not; returns the longest input. Nothing to
    measure without vLLM or without a length limit."""
    if cfg.engine_kind == "hf" or cfg.execution.vllm.max_model_len is None or not samples:
        return 0
    return check_prompt_lengths(cfg, prompt_lengths(cfg, samples, Tokenizer(str(model_path)),
                                                    prompts))

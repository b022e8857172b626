"""Role prompts: method x topology x role x task kind.

The texts are this project's own. They keep the reference's roles and instructions (plan,
critique, refine, judge; answers in \\boxed{}; A-D choices; python code blocks) so results are
comparable, but not its wording. Parity with the reference is about the algorithm given the
same prompt token ids, not about these strings.

A user can replace any text with a JSON file (`--prompt_file`): a mapping from keys such as
"latent_mas.sequential.planner" or "single.choice" to template strings with `{question}` and
`{context}` placeholders; see `load_prompt_file`.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ConfigError

SYSTEM = "You are a careful assistant that works with other agents to solve problems."
AGENT_ROLES = ("planner", "critic", "refiner", "judger")
KINDS = ("math", "choice", "code")

_NAMES = {
    "sequential": {"planner": "Planner", "critic": "Critic", "refiner": "Refiner", "judger": "Judger"},
    "hierarchical": {"planner": "Math Agent", "critic": "Science Agent", "refiner": "Code Agent",
                     "judger": "Summarizer"},
}

# The final-answer format each task kind demands, shared by every role that answers.
ANSWER_FORMAT = {
    "math": "Put the final answer, a number or expression only, inside \\boxed{{}}.",
    "choice": ("The final answer must be one of the letters A, B, C or D, written inside "
               "\\boxed{{}}, for example \\boxed{{C}}."),
    "code": ("Write the complete solution as one self-contained Python function in a single "
             "markdown block that starts with ```python and ends with ```."),
}

# --- LatentMAS: the planner, critic and refiner think in latent space; their "output" is the
# KV cache the next agent reads. So the prompts speak of information "in latent form".
_LATENT_SEQ = {
    "planner": (
        "You are the Planner. Read the question and lay out a short step-by-step plan to solve "
        "it, with a few bullet points per step. Do not give the final answer.\n\n"
        "Question: {question}"),
    "critic": (
        "Question: {question}\n\n"
        "You are the Critic. A plan for this question is available to you in latent form. "
        "Check it step by step. Reply with (1) the plan as you understood it and (2) your "
        "feedback on it, as:\nPlan: ...\nFeedback: ..."),
    "refiner": (
        "Question: {question}\n\n"
        "You are the Refiner. A plan and feedback on it are available to you in latent form. "
        "Using them and the question, write an improved plan that is correct and concise."),
    "judger": (
        "Question: {question}\n\n"
        "You have notes from other agents in latent form. They may contain mistakes or "
        "irrelevant content: use what helps and ignore the rest. Solve the question yourself, "
        "reasoning step by step. {answer_format}"),
}

_LATENT_HIER_ROLE = {
    "planner": "You are a mathematics expert.",
    "critic": "You are a science expert.",
    "refiner": "You are a programming expert.",
    "judger": ("You are the summarizer. Answers from three experts are available to you in "
               "latent form; use them and the question, and ignore what is wrong."),
}
_LATENT_HIER = "{role}\nSolve the question below, reasoning step by step. {answer_format}\n\nQuestion: {question}\n\nYour answer:"

# --- TextMAS: the same roles, but each agent reads the earlier agents' text.
_TEXT_SEQ = {
    "planner": (
        "You are the Planner in a team of agents (planner, critic, refiner, solver). Lay out a "
        "short step-by-step plan for the question, a few bullet points per step. Do not give "
        "the final answer.\n\nQuestion: {question}\n\nPlan:"),
    "critic": (
        "You are the Critic in a team of agents (planner, critic, refiner, solver).\n\n"
        "Question: {question}\n\nThe Planner wrote:\n{context}\n\n"
        "Check the plan step by step. Reply with (1) the plan and (2) your feedback, as:\n"
        "Plan: ...\nFeedback: ..."),
    "refiner": (
        "You are the Refiner in a team of agents (planner, critic, refiner, solver).\n\n"
        "Question: {question}\n\nThe plan and the Critic's feedback:\n{context}\n\n"
        "Write an improved plan that is correct and concise."),
    "judger": (
        "You are the Solver, the last agent in a team (planner, critic, refiner, solver).\n\n"
        "Question: {question}\n\nNotes from the other agents:\n{context}\n\n"
        "The notes may contain mistakes. Solve the question yourself, reasoning step by step. "
        "{answer_format}"),
}

_TEXT_HIER = {
    "expert": "{role}\nSolve the question below, reasoning step by step. {answer_format}\n\nQuestion: {question}\n\nYour answer:",
    "judger": (
        "You are the summarizer. Three experts answered the question below.\n\n"
        "Their answers:\n{context}\n\nQuestion: {question}\n\n"
        "Decide on the correct answer, reasoning step by step. {answer_format}"),
}

_SINGLE = (
    "Question: {question}\n\nSolve the question, reasoning step by step. {answer_format}")


def agent_name(topology: str, role: str) -> str:
    """Display name of a role, used in TextMAS context headers and traces."""
    if role == "single":
        return "Assistant"
    return _NAMES[topology][role]


def template_key(method: str, topology: str, role: str) -> str:
    return "single" if method == "baseline" else f"{method}.{topology}.{role}"


def _builtin_template(method: str, topology: str, role: str) -> str:
    if method == "baseline":
        return _SINGLE
    if method == "latent_mas":
        if topology == "sequential":
            return _LATENT_SEQ[role]
        return _LATENT_HIER.replace("{role}", _LATENT_HIER_ROLE[role])
    if method == "text_mas":
        if topology == "sequential":
            return _TEXT_SEQ[role]
        if role == "judger":
            return _TEXT_HIER["judger"]
        return _TEXT_HIER["expert"].replace("{role}", _LATENT_HIER_ROLE[role])
    raise ConfigError(f"unknown method {method!r} for prompts")


def build_messages(method: str, topology: str, role: str, kind: str, question: str,
                   context: str = "", overrides: dict[str, str] | None = None) -> list[dict]:
    """The [system, user] chat for one agent.

    overrides: user templates from `load_prompt_file`; the most specific key wins:
    "<method>.<topology>.<role>.<kind>", then "<method>.<topology>.<role>" (baseline: "single.<kind>",
    then "single"), then the built-in text.
    """
    if kind not in KINDS:
        raise ConfigError(f"unknown task kind {kind!r}; expected one of {KINDS}")
    if method != "baseline" and role not in AGENT_ROLES:
        raise ConfigError(f"unknown role {role!r}; expected one of {AGENT_ROLES}")
    key = template_key(method, topology, role)
    overrides = overrides or {}
    template = overrides.get(f"{key}.{kind}") or overrides.get(key) or _builtin_template(method, topology, role)
    system = overrides.get("system", SYSTEM)
    user = template.format(question=question, context=context,
                           answer_format=ANSWER_FORMAT[kind].format())
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def load_prompt_file(path: str | None) -> dict[str, str]:
    """Read user prompt templates (JSON object of key -> template). Unknown keys are an error,
    so a typo never silently falls back to the built-in text."""
    if not path:
        return {}
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"prompt file {path} does not exist") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"prompt file {path} is not readable JSON: {e}") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ConfigError(f"prompt file {path} must be a JSON object of key -> template string")
    known = {"system", "single"} | {f"single.{k}" for k in KINDS}
    for m in ("latent_mas", "text_mas"):
        for t in _NAMES:
            for r in AGENT_ROLES:
                known.add(f"{m}.{t}.{r}")
                known.update(f"{m}.{t}.{r}.{k}" for k in KINDS)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"prompt file {path}: unknown keys {unknown}; keys look like "
                          "'latent_mas.sequential.planner', 'text_mas.hierarchical.judger.code', "
                          "'single.choice' or 'system'")
    for key, template in data.items():
        try:
            template.format(question="q", context="c", answer_format="f")
        except (KeyError, IndexError, ValueError) as e:
            raise ConfigError(f"prompt file {path}: template {key!r} is not a valid format "
                              f"string ({e}); use {{question}}, {{context}}, {{answer_format}} "
                              "and double other braces") from None
    return data

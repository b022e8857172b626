"""Role prompts: method x topology x role x task kind.

The agents of a run are data (latentmas_ray/spec/agents.py): the two built-in topologies are the
agents files topologies/sequential.yaml and topologies/hierarchical.yaml, and `--agents FILE`
gives any other ordered list of agents (`team_for`). The last agent answers.

The texts are this project's own. They keep the reference's roles and instructions (plan,
critique, refine, judge; answers in \\boxed{}; A-D choices; python code blocks) so results are
comparable, but not its wording. Parity with the reference is about the algorithm given the
same prompt token ids, not about these strings.

A user can replace any text with a JSON file (`--prompt_file`): a mapping from keys such as
"latent_mas.sequential.planner" or "single.choice" to template strings with `{question}` and
`{context}` placeholders; see `load_prompt_file`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

from latentmas_ray.spec.agents import Agent, Team, load_agents_file, parse_agents
from ..errors import ConfigError

SYSTEM = "You are a careful assistant that works with other agents to solve problems."
AGENT_ROLES = ("planner", "critic", "refiner", "judger")
KINDS = ("math", "choice", "code")
# The built-in topologies (--prompt): agents files shipped with the package.
TOPOLOGY_FILES = {t: Path(__file__).with_name("topologies") / f"{t}.yaml"
                  for t in ("sequential", "hierarchical")}

# The final-answer format each task kind demands, shared by every role that answers.
ANSWER_FORMAT = {
    "math": "Put the final answer, a number or expression only, inside \\boxed{{}}.",
    "choice": ("The final answer must be one of the letters A, B, C or D, written inside "
               "\\boxed{{}}, for example \\boxed{{C}}."),
    "code": ("Write the complete solution as one self-contained Python function in a single "
             "markdown block that starts with ```python and ends with ```."),
}

_SINGLE = (
    "Question: {question}\n\nSolve the question, reasoning step by step. {answer_format}")


def builtin_team(topology: str) -> Team:
    """The built-in topology as a Team, read from its shipped file (topologies/<name>.yaml)."""
    if topology not in TOPOLOGY_FILES:
        raise ConfigError(f"unknown topology {topology!r}; expected one of {sorted(TOPOLOGY_FILES)}")
    return _builtin(topology)


@functools.lru_cache(maxsize=None)
def _builtin(topology: str) -> Team:
    team = load_agents_file(str(TOPOLOGY_FILES[topology]))
    assert team.roles == AGENT_ROLES, (topology, team.roles)
    return dataclasses.replace(team, topology=topology)


@functools.lru_cache(maxsize=64)
def _team_of(agents_json: str) -> Team:
    return parse_agents(json.loads(agents_json), "--agents")


def team_for(method_cfg) -> Team:
    """The run's agents: its --agents (stored in method_cfg.agents) or the built-in topology."""
    agents = getattr(method_cfg, "agents", None)
    if not agents:
        return builtin_team(method_cfg.prompt)
    return _team_of(json.dumps(agents, sort_keys=True))


def agent_name(topology: str, role: str) -> str:
    """Display name of a built-in role, used in TextMAS context headers and traces."""
    if role == "single":
        return "Assistant"
    return builtin_team(topology).agent(role).name


def template_key(method: str, topology: str, role: str) -> str:
    return "single" if method == "baseline" else f"{method}.{topology}.{role}"


def _builtin_template(method: str, topology: str, role: str) -> str:
    if method == "baseline":
        return _SINGLE
    if method not in ("latent_mas", "text_mas"):
        raise ConfigError(f"unknown method {method!r} for prompts")
    return builtin_team(topology).agent(role).template(method)


def _render(template: str, system: str, kind: str, question: str, context: str) -> list[dict]:
    user = template.format(question=question, context=context,
                           answer_format=ANSWER_FORMAT[kind].format())
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def agent_messages(method: str, team: Team, agent: Agent, kind: str, question: str,
                   context: str = "", overrides: dict[str, str] | None = None) -> list[dict]:
    """The [system, user] chat of one agent of `team`. A built-in topology goes through
    build_messages (so --prompt_file keys apply); a user's agents use their own texts."""
    if team.topology is not None:
        return build_messages(method, team.topology, agent.role, kind, question, context, overrides)
    if kind not in KINDS:
        raise ConfigError(f"unknown task kind {kind!r}; expected one of {KINDS}")
    return _render(agent.template(method), agent.system or SYSTEM, kind, question, context)


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
    return _render(template, overrides.get("system", SYSTEM), kind, question, context)


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
        for t in TOPOLOGY_FILES:
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

"""Agents as data: the ordered agents of a multi-agent run, read from a YAML or JSON file.

    agents:                      # or the list itself at the top of the file
      - role: planner            # unique; the store's per-agent trace records it
        name: Planner            # display name (TextMAS context headers, traces); default: role
        prompt: "... {question} ..."   # the user-message template; or one per method:
                                 #   {latent_mas: "...", text_mas: "..."}
        system: "..."            # optional system message (default: prompts.SYSTEM)
        model: /path/to/ckpt     # optional: this agent's own checkpoint (default: --model_name)
      - ...

The LAST agent answers (decodes the final text); the others think in latent space (LatentMAS)
or write text the later agents read as {context} (TextMAS). Placeholders: {question} (required),
{context} (TextMAS: the earlier agents' text; "" in LatentMAS) and {answer_format} (the task
kind's answer instruction); other braces are doubled. The two built-in topologies are files of
this form (latentmas_ray/prompts/topologies/).

`load_agents_file` validates a file before any model loads: one ConfigError line naming the file
and the agent. The validated agents travel in the run's config as plain data
(`MethodConfig.agents`, a list of dicts), so config.json reruns them and actors need no file.
This module is at the bottom of the core (it imports only errors), so config.py can use it.
"""

from __future__ import annotations

import json
import os
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latentmas_ray.errors import ConfigError

KEYS = ("role", "name", "prompt", "system", "model")
PROMPT_METHODS = ("latent_mas", "text_mas")
PLACEHOLDERS = ("question", "context", "answer_format")


@dataclass(frozen=True)
class Agent:
    role: str
    name: str
    prompt: str | dict[str, str]     # a template, or {method: template}
    system: str | None = None
    model: str | None = None         # None: the run's model

    def template(self, method: str) -> str:
        if isinstance(self.prompt, str):
            return self.prompt
        if method not in self.prompt:
            raise ConfigError(f"agent {self.role!r} has no prompt for {method} (its prompt keys: "
                              f"{sorted(self.prompt)}); add one or give a single prompt string")
        return self.prompt[method]

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "name": self.name, "prompt": self.prompt,
                "system": self.system, "model": self.model}


@dataclass(frozen=True)
class Team:
    """The agents of a run, in order; the last one answers. topology: the built-in topology
    this team is (its prompts then take --prompt_file overrides), None for a user's file."""

    agents: tuple[Agent, ...]
    topology: str | None = None

    @property
    def thinkers(self) -> tuple[Agent, ...]:
        return self.agents[:-1]

    @property
    def answerer(self) -> Agent:
        return self.agents[-1]

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(a.role for a in self.agents)

    def agent(self, role: str) -> Agent:
        for a in self.agents:
            if a.role == role:
                return a
        raise ConfigError(f"no agent with role {role!r}; the agents are {list(self.roles)}")

    def models(self) -> list[str]:
        """The distinct per-agent checkpoints, in agent order (the run's own model excluded)."""
        return list(dict.fromkeys(a.model for a in self.agents if a.model))


def _fields(template: str) -> list[str]:
    return [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]


def _check_template(template: Any, where: str) -> None:
    if not isinstance(template, str) or not template.strip():
        raise ConfigError(f"{where}: prompt must be a non-empty template string")
    try:
        names = _fields(template)
    except ValueError as e:
        raise ConfigError(f"{where}: prompt is not a valid template ({e}); double literal braces") from None
    unknown = sorted({n for n in names if n not in PLACEHOLDERS})
    if unknown:
        raise ConfigError(f"{where}: prompt uses unknown placeholders {unknown}; use {{question}}, "
                          "{context}, {answer_format} and double other braces")
    if "question" not in names:
        raise ConfigError(f"{where}: prompt has no {{question}} placeholder")


def _looks_like_folder(model: str) -> bool:
    """As models.resolve_model: a path (not a hub id such as Qwen/Qwen3-4B)."""
    return model.startswith((".", "/", "~")) or os.sep in model.strip("/").replace("/", "", 1)


def parse_agents(data: Any, source: str) -> Team:
    """Validated agents from a file's parsed content (or a config's stored list). source: what
    the messages name ("agents file x.yaml")."""
    if isinstance(data, dict) and set(data) == {"agents"}:
        data = data["agents"]
    if not isinstance(data, list) or not data:
        raise ConfigError(f"{source}: expected a non-empty list of agents (or a mapping "
                          "'agents: [...]')")
    agents, seen = [], set()
    for i, item in enumerate(data):
        label = item.get("role") if isinstance(item, dict) and isinstance(item.get("role"), str) else None
        where = f"{source}, agent {i + 1}" + (f" ({label})" if label else "")
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: expected a mapping with role and prompt, got {item!r}")
        unknown = sorted(set(item) - set(KEYS))
        if unknown:
            raise ConfigError(f"{where}: unknown keys {unknown}; an agent has {list(KEYS)}")
        role = item.get("role")
        if not isinstance(role, str) or not role.strip() or any(c.isspace() for c in role):
            raise ConfigError(f"{where}: role must be a non-empty word, got {role!r}")
        if role in seen:
            raise ConfigError(f"{where}: duplicate role {role!r}; roles must be unique")
        seen.add(role)
        if "prompt" not in item or item["prompt"] is None:
            raise ConfigError(f"{where}: no prompt")
        prompt = item["prompt"]
        if isinstance(prompt, dict):
            bad = sorted(set(prompt) - set(PROMPT_METHODS))
            if bad or not prompt:
                raise ConfigError(f"{where}: prompt keys must be among {list(PROMPT_METHODS)}, "
                                  f"got {sorted(prompt)}")
            for method, template in prompt.items():
                _check_template(template, f"{where} {method}")
            prompt = dict(prompt)
        else:
            _check_template(prompt, where)
        for key in ("name", "system", "model"):
            if item.get(key) is not None and not isinstance(item[key], str):
                raise ConfigError(f"{where}: {key} must be a string, got {item[key]!r}")
        model = item.get("model") or None
        if model is not None:
            folder = Path(model).expanduser()
            if _looks_like_folder(model) and not folder.is_dir():
                raise ConfigError(f"{where}: model folder {model} does not exist")
        agents.append(Agent(role, item.get("name") or role, prompt, item.get("system"), model))
    return Team(tuple(agents))


def read_agents_file(path: str) -> Any:
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"agents file {path} does not exist")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix == ".json":
            return json.loads(text)
        import yaml
        return yaml.safe_load(text)
    except Exception as e:  # noqa: BLE001 - any parse failure is one line naming the file
        raise ConfigError(f"agents file {path} does not parse: {type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}") from None


def load_agents_file(path: str) -> Team:
    """A validated Team from a YAML (or .json) file."""
    return parse_agents(read_agents_file(path), f"agents file {path}")


def resolve_agents(value: Any) -> list[dict[str, Any]] | None:
    """MethodConfig.agents as stored: a file path is read and validated, a stored list is
    validated again; both become the plain list of agent dicts (None stays None)."""
    if value is None:
        return None
    team = load_agents_file(value) if isinstance(value, str) else parse_agents(value, "--agents")
    return [a.to_dict() for a in team.agents]

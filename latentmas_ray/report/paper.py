"""The paper's published Tables 1-3 as data, and which of them a run can be set beside.

Shipped as JSON (`latentmas_ray/data/paper_tables.json`, with its source) so a report can show
"what the paper got" next to "what this run got" without anyone retyping numbers. A run matches
when its model names a paper model (Qwen3-4B/8B/14B, case-insensitive, in the model name or its
resolved path), the paper has its task for that model, and the topology (config method.prompt)
picks Table 1 (sequential) or 2 (hierarchical); Table 3 holds AIME24/25 and GPQA-D in both.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

# our method name -> the paper's column
PAPER_METHOD = {"baseline": "single", "text_mas": "text_mas", "latent_mas": "latent_mas"}
_MODEL = re.compile(r"qwen3-(4|8|14)b(?![0-9])", re.IGNORECASE)


@lru_cache(maxsize=1)
def tables() -> dict:
    """The whole JSON document: source, metric definitions, entries and published improvements."""
    text = resources.files("latentmas_ray").joinpath("data/paper_tables.json").read_text("utf-8")
    return json.loads(text)


def source_line() -> str:
    src = tables()["source"]
    return f"{src['paper']}, {src['tables'].split(' (')[0]}, via {src['via']}"


def paper_model(model_ref: str) -> str | None:
    """"Qwen3-14B" for any name or path that names it, else None."""
    m = _MODEL.search(model_ref or "")
    return f"Qwen3-{m.group(1)}B" if m else None


@dataclass(frozen=True)
class PaperRow:
    table: int
    setting: str
    task: str
    model: str
    method: str       # the paper's: single | text_mas | latent_mas
    acc: float        # percent
    tokens: float
    time: float       # as published; unit unstated (presumably seconds per whole run)


def lookup(task: str, model: str, method: str, setting: str) -> PaperRow | None:
    """The paper's numbers for one of our runs' (task, paper model, our method, topology)."""
    want = PAPER_METHOD.get(method)
    if want == "single":      # the baseline has no topology; Table 2 repeats Table 1's column
        setting = "sequential"
    for e in tables()["entries"]:
        if (e["task"], e["model"], e["method"], e["setting"]) == (task, model, want, setting):
            return PaperRow(**e)
    return None


def task_display(task: str) -> str:
    return tables()["task_names"].get(task, task)

"""Run folders -> tidy per-run data, with one clear error for each way a folder can be wrong.

It reads through `RunStore.read()`, which sees every finished batch (the part files) whether or
not the run has ended, so a report on a job that is still running shows its samples so far.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, DataError

EMBEDDED_MODEL = "SmolLM2-135M-Instruct"
METHOD_NAMES = {"baseline": "Baseline", "text_mas": "TextMAS", "latent_mas": "LatentMAS"}
METHOD_ORDER = ("baseline", "text_mas", "latent_mas")
_HINT = "pass a folder written by `latentmas-ray run`, such as results/<run-id>/"


@dataclass
class Run:
    """One run folder's settings and finished samples (rows in id order)."""
    path: Path
    name: str                       # folder name: what tables and plots call the run
    task: str
    method: str
    topology: str                   # method.prompt: sequential | hierarchical
    latent_steps: int
    model: str                      # display name
    model_ref: str                  # everything known about the model (name and resolved path)
    seed: int
    complete: bool                  # summary.json agrees with the samples on disk
    rows: list[dict] = field(repr=False, default_factory=list)
    sandbox: str = ""               # code runs: the sandbox level and what it enforced (summary.json)

    @property
    def n(self) -> int:
        return len(self.rows)

    @property
    def correct(self) -> dict[str, bool]:
        """Per sample id, its first completion's score (sample_index 0), so paired tests
        compare one answer per question whatever K each run drew."""
        return {r["id"]: bool(r["correct"]) for r in self.rows if not r.get("sample_index")}

    @property
    def accuracy(self) -> float:
        return sum(bool(r["correct"]) for r in self.rows) / self.n

    def mean(self, key: str) -> float:
        return sum(r[key] or 0 for r in self.rows) / self.n

    def tokens_by_role(self) -> dict[str, float]:
        """Mean generated tokens per sample for each agent role (a role a sample lacks adds 0),
        so the roles add up to the mean total."""
        sums: dict[str, float] = {}
        for r in self.rows:
            for a in r["agents"] or []:
                sums[a["role"]] = sums.get(a["role"], 0) + (a["generated_tokens"] or 0)
        return {role: s / self.n for role, s in sums.items()}

    @property
    def label(self) -> str:
        """Method and topology, e.g. "LatentMAS seq m=10", for legends."""
        text = METHOD_NAMES.get(self.method, self.method)
        if self.method != "baseline":
            text += f" {self.topology[:3]}"
        if self.method == "latent_mas":
            text += f" m={self.latent_steps}"
        return text


def _model_names(run_cfg: dict, summary: dict) -> tuple[str, str]:
    given = (run_cfg.get("model") or {}).get("name_or_path")
    resolved = summary.get("model") or ""
    if not given:
        return EMBEDDED_MODEL, f"{EMBEDDED_MODEL} {resolved}"
    # a hub id "Qwen/Qwen3-8B" or a folder ".../Qwen3-8B/": its last part names the model
    return Path(str(given).rstrip("/")).name or str(given), f"{given} {resolved}"


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{what} is not readable JSON ({type(e).__name__}: {e})",
                        str(path)) from None
    if not isinstance(data, dict):
        raise DataError(f"{what} should hold a JSON object", str(path))
    return data


def load_run(folder: str | Path) -> Run:
    """Read one run folder; DataError if it is not a run or has no finished sample yet."""
    from latentmas_ray.store.run_store import RunStore

    path = Path(folder)
    if not path.is_dir():
        raise DataError("no such run folder", str(path),
                        hint=_HINT)
    if not (path / "config.json").is_file():
        raise DataError("not a run folder (no config.json)", str(path),
                        hint=_HINT)
    record = _read_json(path / "config.json", "config.json")
    cfg = record.get("run")
    if not isinstance(cfg, dict) or "task" not in cfg or "method" not in cfg:
        raise DataError("config.json holds no run settings (expected {\"run\": {...}})",
                        str(path / "config.json"))
    has_summary = (path / "summary.json").is_file()
    summary = _read_json(path / "summary.json", "summary.json") if has_summary else {}
    try:
        table = RunStore(path).read()
    except Exception as e:  # a corrupt part: name it rather than show a pyarrow traceback
        raise DataError(f"cannot read the run's samples ({type(e).__name__}: {e})",
                        str(path)) from None
    rows = sorted(table.to_pylist(), key=lambda r: (_id_key(r["id"]), r.get("sample_index") or 0))
    if not rows:
        raise DataError("the run has no finished samples yet", str(path),
                        hint="report it once its first batch is written, or leave it out")
    method = cfg.get("method") or {}
    model, model_ref = _model_names(cfg, summary)
    complete = bool(summary) and summary.get("samples") == len(rows)
    return Run(path=path, name=path.resolve().name, task=str(cfg["task"]),
               method=str(method.get("method", "latent_mas")),
               topology=str(method.get("prompt", "sequential")),
               latent_steps=int(method.get("latent_steps", 0) or 0), model=model,
               model_ref=model_ref, seed=int(cfg.get("seed", 42)), complete=complete, rows=rows,
               sandbox=_sandbox_text(summary.get("sandbox")))


def _sandbox_text(caps) -> str:
    """'standard (PID namespace, ...)' from summary.json's "sandbox" (a code run's), else ''."""
    if not isinstance(caps, dict) or not caps.get("level"):
        return ""
    names = {"pid_namespace": "PID namespace", "net_namespace": "network namespace",
             "private_tmp_and_shm": "private /tmp and /dev/shm", "landlock": "Landlock",
             "unprivileged_uid": "unprivileged uid", "cgroup_memory": "cgroup memory limit",
             "cgroup_pids": "cgroup process limit"}
    on = [text for key, text in names.items() if caps.get(key) not in (None, False, "no")]
    return f"{caps['level']} ({', '.join(on) or 'rlimits only'})"


def _id_key(sid: str) -> tuple:
    """Natural order ("2" before "10"), so tables and bootstraps do not depend on file order."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", sid) if p)


def load_runs(folders: list[str | Path]) -> list[Run]:
    """Read several runs for one comparison: all of one task, each folder once.

    Mixing tasks is refused: accuracies, token counts and times of different benchmarks are not
    comparable, and a report would silently line them up.
    """
    if not folders:
        raise ConfigError("give at least one run folder")
    runs, seen = [], {}
    for folder in folders:
        run = load_run(folder)
        key = run.path.resolve()
        if key in seen:
            raise ConfigError(f"run folder {folder} is given twice")
        seen[key] = run
        runs.append(run)
    tasks = sorted({r.task for r in runs})
    if len(tasks) > 1:
        by_task = "; ".join(f"{t}: {', '.join(r.name for r in runs if r.task == t)}" for t in tasks)
        raise ConfigError(f"runs of different tasks cannot be compared in one report ({by_task}); "
                          "report each task separately")
    names = [r.name for r in runs]
    if len(set(names)) < len(names):
        raise ConfigError("two run folders share the name "
                          f"{next(n for n in names if names.count(n) > 1)!r}; rename one, "
                          "since the report names runs by folder")
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    return sorted(runs, key=lambda r: (r.model, order.get(r.method, 9), r.topology,
                                       r.latent_steps, r.name))

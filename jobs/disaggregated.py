"""The disaggregated placement (`--placement disaggregated`): every LatentMAS role is its own actor.

    latentmas-ray run --ray --placement disaggregated [--hop_payload kv|embeds|auto] ...

One replica = one pipeline of four role actors (actors/role_actor.py, a shell over the core's
latentmas_ray/methods/disaggregated.py): planner, critic, refiner, judger, each with its own
model copy, in its own placement-group bundle (the one placement group is SPREAD, so the roles
land on different nodes / GPUs where there are several). A batch is submitted as one chain,

    judger.judge_rows(refiner.step(critic.step(planner.step(batch))))

and its working memory moves role to role through the object store (never through the
driver), as KV tensors or as input embeddings to re-prefill (`--hop_payload`; `auto` measures
the link and the prefill speed once and applies methods/disaggregated.choose_payload). Every
actor runs its calls in order, so with several chains in flight each role works on a different
batch at the same time: per pipeline max(--max_in_flight, 5) batches are in flight, enough for
all four stages plus one waiting.

`DisaggregatedFactory` is this placement's replica factory (jobs/replicas.py); everything else
is the one driver's (jobs/driver.py): connecting, placing, the Scheduler, the store writes, the
progress and the fault rules. A chain whose role actor dies fails with RayActorError: the
pipeline is marked down, its batches are requeued, and it is pinged (the chained `ready()`)
until Ray has restarted the role, then gets work again. At the end the role actors' busy
fractions are printed and sent as the "role_stats" event.
"""

from __future__ import annotations

import os
from typing import Any

from jobs.replicas import ReplicaFactory
from latentmas_ray.prompts import AGENT_ROLES as ROLES
from latentmas_ray.prompts import team_for


def in_flight_per_pipeline(max_in_flight: int, roles: int = len(ROLES)) -> int:
    return max(max_in_flight, roles + 1)


def busy_fractions(stats: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per role of one pipeline: `steady`, its busy share of the window in which every role had
    started and none had finished its last call (the pipeline full), and `overall`, busy
    seconds over its own first-start..last-end span."""
    with_calls = [s for s in stats if s["calls"]]
    if not with_calls:
        return {}
    lo = max(s["calls"][0][0] for s in with_calls)
    hi = min(s["calls"][-1][1] for s in with_calls)
    out: dict[str, dict[str, float]] = {}
    for s in with_calls:
        span = s["calls"][-1][1] - s["calls"][0][0]
        busy = sum(max(0.0, min(b, hi) - max(a, lo)) for a, b in s["calls"])
        out[s["role"]] = {
            "steady": busy / (hi - lo) if hi > lo else float("nan"),
            "overall": s["busy_s"] / span if span > 0 else float("nan"),
            "busy_s": s["busy_s"], "calls": len(s["calls"]), "window_s": max(0.0, hi - lo)}
    return out


class DisaggregatedFactory(ReplicaFactory):
    """One replica = a RolePipeline of one role actor per agent (the built-in four, or the
    --agents file's), one bundle each."""

    unit = "pipelines"
    label = "disaggregated pipeline(s)"

    def __init__(self, cfg, model_path, prompts):
        self.roles = team_for(cfg.method).roles         # the run's agents, in order
        self.actors_per_replica = len(self.roles)
        super().__init__(cfg, model_path, prompts)
        self.payload, self.profile = "kv", {}

    def bundles(self) -> list[dict[str, float]]:
        return super().bundles() * len(self.roles)

    def in_flight(self, max_in_flight: int) -> int:
        return in_flight_per_pipeline(max_in_flight, len(self.roles))

    def start(self, pg, replica: int):
        from actors.common import remote_form
        from actors.role_actor import RolePipeline, RoleWorker

        actors, names = {}, {}
        for i, role in enumerate(self.roles):
            names[role] = f"latentmas-{os.getpid()}-p{replica}-{role}"
            actors[role] = remote_form(RoleWorker).options(**self.actor_options(
                pg, i, name=names[role],
            )).remote(self.cfg, self.model_path, self.prompts, role, self.actor_threads, "kv")
        return RolePipeline(actors, "kv", names)

    def kind(self) -> str:
        return f"{len(self.roles)} role actors ({super().kind()} each)"

    def describe(self, rid: int, info: dict[str, Any]) -> list[str]:
        return [f"  pipeline {rid} {role:8s}: {i.get('host')} node {(i.get('node_id') or '?')[:8]} "
                f"pid {i.get('pid')} {i.get('device')} gpus {i.get('gpu_ids')}"
                for role, i in info["roles"].items()]

    def after_ready(self, handles: list, console) -> dict[str, Any]:
        """Choose the hop payload (measured on pipeline 0 for `auto`) and set it everywhere."""
        self.payload, self.profile = _choose(handles[0], self.cfg, self.cfg.execution.hop_payload,
                                             console)
        for p in handles:
            p.payload = self.payload
        return {"payload": self.payload, "profile": self.profile}

    def ready_info(self, handle, info: dict[str, Any]) -> dict[str, Any]:
        return {**info, "names": dict(handle.names)}

    def adopt(self, handle) -> None:
        handle.payload = self.payload

    def after_run(self, handles: list, console, emit) -> None:
        _report_busy(handles, console, emit)


def _choose(pipe, cfg, hop_payload: str, console) -> tuple[str, dict[str, Any]]:
    """The payload to ship; for `auto`, measured on pipeline 0 (first -> second role's link)."""
    import ray

    from latentmas_ray.methods.disaggregated import choose_payload

    if hop_payload != "auto":
        return hop_payload, {}
    first, second = list(pipe.actors)[:2]
    profile = ray.get(pipe.actors[first].cost_profile.remote())
    nbytes = 16 << 20
    ray.get(pipe.actors[second].probe_receive.remote(pipe.actors[first].probe_send.remote(nbytes)))
    best = min((ray.get(pipe.actors[second].probe_receive.remote(
        pipe.actors[first].probe_send.remote(nbytes)))["ms"] for _ in range(2)))
    profile["bytes_per_ms"] = nbytes / max(best, 1e-6)
    choice = choose_payload(profile["kv"], profile["embeds"], profile["prefill_ms_per_pos"],
                            profile["bytes_per_ms"], cfg.method.memory)
    console.print(
        f"--hop_payload auto: per position KV {profile['kv']:,} B vs embeddings "
        f"{profile['embeds']:,} B; link {profile['bytes_per_ms'] / 1e3:.0f} MB/s, prefill "
        f"{profile['prefill_ms_per_pos']:.3f} ms/position -> {choice}", highlight=False)
    return choice, profile


def _report_busy(pipes, console, emit) -> None:
    import ray

    per_pipe = {}
    for i, p in enumerate(pipes):
        try:
            stats = ray.get([p.actors[r].stats.remote() for r in p.actors], timeout=30)
        except ray.exceptions.RayError:
            continue
        per_pipe[i] = {"stats": stats, "busy": busy_fractions(stats)}
        busy = per_pipe[i]["busy"]
        if busy:
            console.print(f"pipeline {i} busy (pipeline full / overall): " + ", ".join(
                f"{role} {b['steady']:.0%}/{b['overall']:.0%}" for role, b in busy.items()),
                highlight=False)
    emit("role_stats", per_pipe)

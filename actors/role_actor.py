"""One LatentMAS role as its own actor: the disaggregated placement (`--placement
disaggregated`, driver in jobs/disaggregated.py), a thin shell over the core's `LatentRole`
(latentmas_ray/methods/disaggregated.py: a role's step, the memory rebuild, the hop payloads
and their cost model).

The roles are the run's agents, one actor each, in order; the last one answers. Each actor
loads its agent's own checkpoint, if the agent names one, else the run's model. A batch flows
through the actors as one chain,

    judger.judge_rows(refiner.step(critic.step(planner.step(samples))))

and each role's payload travels through the object store (`ship` / `receive`, timed, so each
sample's Hop carries the put + get). `RoleWorker` is a plain class (without Ray the payload dicts
are handed on as they are); `remote_form(RoleWorker)` is its Ray form.
"""

from __future__ import annotations

import os
from typing import Any

from actors.common import ActorGroup, local_model_path, quiet_progress_bars, receive, ship, where


def ship_in_ray(data: Any):
    """`ship` inside Ray; the plain payload in one process (tests, benchmarks without Ray)."""
    import ray
    return ship(data) if ray.is_initialized() else data


class RoleWorker:
    """One role's HF engine and its `LatentRole`. `engine` (tests): an already loaded HFEngine."""

    def __init__(self, cfg, model_path: str | None, prompts: dict[str, str] | None, role: str,
                 torch_threads: int | None = None, payload: str = "kv", engine=None):
        import torch

        from latentmas_ray.methods.disaggregated import LatentRole
        from latentmas_ray.prompts import team_for

        if torch_threads:
            torch.set_num_threads(int(torch_threads))
        quiet_progress_bars()
        self.model_path = str(model_path)
        if engine is None:
            from latentmas_ray.engines.hf import HFEngine
            from latentmas_ray.spec.models import resolve_model
            own = team_for(cfg.method).agent(role).model
            self.model_path = str(resolve_model(own) if own else local_model_path(cfg, model_path))
            engine = HFEngine.load(cfg.model, self.model_path)
        self.cfg, self.role = cfg, role
        self.core = LatentRole(engine, cfg, role, prompts, payload, fetch=receive, send=ship_in_ray)

    def ready(self, partner: dict[str, Any] | None = None) -> dict[str, Any]:
        """Where this role runs. `partner` (the previous role's ready(), resolved by Ray) is
        merged in, so one chained call answers for a whole pipeline: {"roles": {role: info}}."""
        import torch

        info = {**where(), "device": str(self.core.engine.device), "engine": "hf",
                "role": self.role, "torch_threads": torch.get_num_threads(),
                "model_path": self.model_path, "batches": self.core.batches}
        roles = dict((partner or {}).get("roles", {}))
        roles[self.role] = info
        first = roles[next(r for r in self.core.roles if r in roles)]
        return {**first, "roles": roles}

    def stats(self) -> dict[str, Any]:
        return {**self.core.stats(), "pid": os.getpid()}

    def cost_profile(self, positions: int = 128, repeats: int = 2) -> dict[str, float]:
        return self.core.cost_profile(positions, repeats)

    def probe_send(self, nbytes: int):
        """A payload of `nbytes` shipped like a memory (to time this link with probe_receive)."""
        import torch
        return ship_in_ray({"probe": torch.zeros(max(1, nbytes // 4), dtype=torch.float32)})

    def probe_receive(self, box) -> dict[str, float]:
        payload, ms = receive(box)
        t = payload["probe"]
        return {"bytes": t.numel() * t.element_size(), "ms": ms}

    def step(self, samples_or_box, payload: str | None = None):
        """A thinking role: the samples (the first role) or the previous role's box in, this
        role's box out (the plain payload dict without Ray)."""
        return self.core.step(samples_or_box, payload)

    def judge(self, box) -> list:
        """The answering role: SampleResults, each with its hops."""
        return self.core.judge(box)

    def judge_rows(self, box) -> list[dict[str, Any]]:
        """Judge and score (cheap scorers: math, multiple choice): store rows."""
        from latentmas_ray.run.rows import rows_for

        results, samples = self.core.judge(box, with_samples=True)
        return rows_for(self.cfg, samples, results)

    def measure_hop(self, box) -> dict[str, Any]:
        return self.core.measure_hop(box)


class RolePipeline(ActorGroup):
    """One disaggregated replica: one role actor per agent in a chain (`actors` in agent
    order, the last one answers), an ActorGroup whose `run` / `generate` submit
    judger(refiner(critic(planner(samples)))). `payload` ("kv" | "embeds") travels with every
    call, so a role actor that Ray restarts needs no state."""

    def __init__(self, actors: dict[str, Any], payload: str = "kv",
                 names: dict[str, str] | None = None):
        a = dict(actors)
        *thinkers, last = list(a)
        self.thinkers, self.last = thinkers, last

        def ready():
            box = None
            for role in a:
                box = a[role].ready.remote(box) if box is not None else a[role].ready.remote()
            return box

        super().__init__(
            a, ready=ready,
            run=lambda samples: a[last].judge_rows.remote(self._latent(samples)),
            generate=lambda samples: a[last].judge.remote(self._latent(samples)))
        self.payload, self.names = payload, dict(names or {})

    def _latent(self, samples):
        a, p = self.actors, self.payload
        box = list(samples)
        for role in self.thinkers:
            box = a[role].step.remote(box, p)
        return box

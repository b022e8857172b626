"""What every replica actor needs, whatever its engine: where its model is on its own node,
where it landed (for the driver's log), Ray options and Ray forms, the driver-side handle of
a replica made of several actors, and timed transfers through the object store. Plain
functions; Ray is imported only where a function needs it."""

from __future__ import annotations

import functools
import os
import socket
import time
from pathlib import Path
from typing import Any

# Environment of every model actor: never reach a hub, no tokenizer thread pools fighting the
# torch threads, no library progress bars in `ray job logs` between the progress lines.
ACTOR_ENV = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
             "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def local_model_path(cfg, model_path: str | None) -> Path:
    """The driver resolved the model on its own node; a worker node may keep it elsewhere (the
    embedded model is converted into each node's cache on first use)."""
    from latentmas_ray.spec.models import resolve_model

    if model_path and Path(model_path).is_dir():
        return Path(model_path)
    return resolve_model(cfg.model.name_or_path)


def quiet_progress_bars() -> None:
    """"Loading weights" bars from every replica would garble the driver's progress bar."""
    try:
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()
    except Exception:  # noqa: BLE001
        pass


def where() -> dict[str, Any]:
    """pid, host, Ray node and GPUs of this process (node/GPUs only inside Ray)."""
    info: dict[str, Any] = {"pid": os.getpid(), "host": socket.gethostname(), "node_id": None,
                            "gpu_ids": []}
    try:
        import ray
        if ray.is_initialized():
            ctx = ray.get_runtime_context()
            info["node_id"] = ctx.get_node_id()
            info["gpu_ids"] = [str(g) for g in ray.get_gpu_ids()]
    except Exception:  # noqa: BLE001 - informative only
        pass
    return info


def actor_options(*, gpus: float = 0.0, cpus: float = 1.0, max_restarts: int = 3,
                  placement_group=None, bundle_index: int = -1, name: str | None = None,
                  env: dict[str, str] | None = None, max_concurrency: int = 1) -> dict[str, Any]:
    """Options for `SomeActor.options(...)`.

    max_restarts: Ray restarts a crashed replica (it reloads the model) up to this many times.
    max_task_retries=0: a batch in flight on a dying replica is NOT retried by Ray on the same
    replica (that would wait for the restart, which may never be placed when its node is
    gone); it fails at once and the driver hands it to a live replica.
    """
    opts: dict[str, Any] = {"num_cpus": cpus, "num_gpus": gpus, "max_restarts": max_restarts,
                            "max_task_retries": 0, "max_concurrency": max_concurrency,
                            "runtime_env": {"env_vars": {**ACTOR_ENV, **(env or {})}}}
    if name:
        opts["name"] = name
    if placement_group is not None:
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
        opts["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
            placement_group=placement_group, placement_group_bundle_index=bundle_index,
            placement_group_capture_child_tasks=False)
    return opts


@functools.cache
def remote_form(target, **options):
    """`ray.remote(target)` (a class or a function), made on first use and once, so importing
    an actor module needs no Ray. A class gets typed errors at its boundary (`typed_actor`)."""
    import ray
    if isinstance(target, type):
        target = typed_actor(target)
    return ray.remote(**options)(target) if options else ray.remote(target)


def typed_error(e: Exception) -> Exception:
    """What crosses the actor boundary: our own errors as they are (a ConfigError is the run's
    fault, a SampleError one sample's); a broken device or engine as a ReplicaFault; anything
    else as it is (the driver retries the batch elsewhere, see jobs/scheduler.py)."""
    from latentmas_ray.errors import LatentMASError, ReplicaFault, is_device_fault

    if isinstance(e, LatentMASError) or not is_device_fault(e):
        return e
    return ReplicaFault(f"{type(e).__name__}: {str(e).strip()[:500]}")


def raise_typed(e: Exception):
    typed = typed_error(e)
    if typed is e:
        raise e
    raise typed from e


def typed_actor(cls: type) -> type:
    """`cls` whose failures cross the actor boundary as types the driver acts on:

    - its constructor never raises: a failure is kept and raised by `ready()`, the driver's
      first call, as a ConfigError (the run's fault: stop) or a LoadFailure (this seat's
      fault: retried elsewhere). Ray would otherwise report only a dead actor and its text.
    - its public methods raise `typed_error(e)` (a device fault becomes a ReplicaFault)."""
    import inspect

    from latentmas_ray.errors import ConfigError, LoadFailure

    def init(self, *args, **kwargs):
        self._load_error = None
        try:
            cls.__init__(self, *args, **kwargs)
        except ConfigError as e:
            self._load_error = e
        except Exception as e:  # noqa: BLE001 - any other load failure is the seat's
            self._load_error = LoadFailure(f"{type(e).__name__}: {str(e).strip()[-500:]}")

    def wrap(name, fn):
        if inspect.isasyncgenfunction(fn):          # an async streaming method (vLLM actor)
            async def method(self, *args, **kwargs):
                try:
                    async for item in fn(self, *args, **kwargs):
                        yield item
                except Exception as e:  # noqa: BLE001
                    raise_typed(e)
        elif inspect.isgeneratorfunction(fn):       # a streaming method: typed as it yields
            def method(self, *args, **kwargs):
                try:
                    yield from fn(self, *args, **kwargs)
                except Exception as e:  # noqa: BLE001
                    raise_typed(e)
        elif inspect.iscoroutinefunction(fn):
            async def method(self, *args, **kwargs):
                if name == "ready" and self._load_error is not None:
                    raise self._load_error
                try:
                    return await fn(self, *args, **kwargs)
                except Exception as e:  # noqa: BLE001
                    raise_typed(e)
        else:
            def method(self, *args, **kwargs):
                if name == "ready" and self._load_error is not None:
                    raise self._load_error
                try:
                    return fn(self, *args, **kwargs)
                except Exception as e:  # noqa: BLE001
                    raise_typed(e)
        functools.update_wrapper(method, fn)
        return method

    body = {"__init__": init, "__module__": cls.__module__, "__qualname__": cls.__qualname__,
            "__doc__": cls.__doc__}
    for name, fn in inspect.getmembers(cls, inspect.isfunction):
        if not name.startswith("_") and not isinstance(inspect.getattr_static(cls, name),
                                                       staticmethod):
            body[name] = wrap(name, fn)
    return type(cls.__name__, (cls,), body)


def score_task():
    """The core's `score_rows` as a Ray task: 1 CPU (code runs in sandboxes on a CPU worker, so
    no GPU replica waits on tests); Ray retries it if its worker or node dies."""
    from latentmas_ray.run.rows import score_rows
    return remote_form(score_rows, num_cpus=1, max_retries=3)


class RemoteCall:
    """`replica.method.remote(...)`, the shape of an actor method, for a call that chains
    several actors' calls (the ObjectRef of one passed to the next) and returns ONE ref."""

    def __init__(self, fn):
        self.remote = fn


class ActorGroup:
    """Driver-side handle of one replica made of one or more actors. Quacks like an actor
    handle for the driver: `ready.remote()`, `run.remote(samples)` (store rows) and
    `generate.remote(samples)` (SampleResults) each return ONE ObjectRef; `run_stream`, where
    the replica has one (else None), returns an ObjectRefGenerator of store-row lists as
    samples finish; `kill()` stops every actor (ray.kill on this object would not), after
    `close()` (a list of refs) had up to CLOSE_S to shut its engines down (a vLLM EngineCore
    process must not outlive its actor)."""

    CLOSE_S = 30.0

    def __init__(self, actors: dict[str, Any], ready, run, generate, close=None,
                 run_stream=None):
        self.actors = dict(actors)
        self.ready, self.run, self.generate = RemoteCall(ready), RemoteCall(run), RemoteCall(generate)
        self.close = close
        self.run_stream = RemoteCall(run_stream) if run_stream is not None else None

    @classmethod
    def single(cls, name: str, actor, stream: bool = False) -> "ActorGroup":
        """One actor with `ready`, `run` and `generate` methods of its own; `stream`: and a
        generator method `run_stream` (called as a Ray streaming generator)."""
        run_stream = None
        if stream:
            run_stream = actor.run_stream.options(num_returns="streaming").remote
        return cls({name: actor}, actor.ready.remote, actor.run.remote, actor.generate.remote,
                   run_stream=run_stream)

    def kill(self, no_restart: bool = True, close: bool = True) -> None:
        """Stop every actor; `close=False` skips the clean close (a hung replica would not
        answer it)."""
        if close:
            close_all([self], self.CLOSE_S, kill=False)
        for h in self.actors.values():
            try:
                import ray
                ray.kill(h, no_restart=no_restart)
            except Exception:  # noqa: BLE001 - already gone
                pass

    def closing(self) -> list:
        """The refs of this replica's engine close calls (none without engines)."""
        if self.close is None:
            return []
        try:
            return list(self.close())
        except Exception:  # noqa: BLE001 - a dead actor has no engine left to close
            return []


def close_all(groups: list[ActorGroup], bound_s: float, kill: bool = True) -> None:
    """Close the engines of every replica in `groups` at once and wait at most `bound_s` for
    all of them together (not one after another), then kill their actors."""
    import ray

    refs = [r for g in groups for r in g.closing()]
    if refs:
        try:
            ray.wait(refs, num_returns=len(refs), timeout=bound_s)
        except Exception:  # noqa: BLE001 - dead actors: nothing left to close
            pass
    if kill:
        for g in groups:
            g.kill(close=False)


# ----- timed transfers ---------------------------------------------------------------------
# An actor that returns a big object lets Ray move it, but nobody can time that. `ship` puts
# the payload into the object store itself and returns a small box holding its reference (a
# reference nested in a list is NOT resolved by Ray when passed on), so the receiver can time
# `receive`: fetching it (from another node when it lives there) and deserialising it.

def ship(payload: Any) -> dict[str, Any]:
    """Put `payload` into the object store (timed); the box travels instead of the payload."""
    import ray

    t0 = time.perf_counter()
    ref = ray.put(payload)
    return {"ref": [ref], "put_ms": (time.perf_counter() - t0) * 1e3}


def receive(box: dict[str, Any] | Any) -> tuple[Any, float]:
    """(payload, put + get milliseconds). A plain (unboxed) payload passes through at 0 ms, so
    the same actor code runs in one process without Ray."""
    if not (isinstance(box, dict) and "ref" in box and "put_ms" in box):
        return box, 0.0
    import ray

    t0 = time.perf_counter()
    payload = ray.get(box["ref"][0])
    return payload, box["put_ms"] + (time.perf_counter() - t0) * 1e3

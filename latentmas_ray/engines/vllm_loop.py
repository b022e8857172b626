"""vLLM's async engine (AsyncLLM) on an event loop of its own, usable from any caller.

`EngineLoop` runs one asyncio loop in a daemon thread and builds the AsyncLLM on it, so its
output handler (the task that moves finished tokens from the EngineCore process to each
request's queue) lives there whatever the caller is: plain synchronous code (the methods'
batch form, the tests), another event loop (a Ray async actor, the in-process streaming
runner) or several threads. Every request is one `submit(prompt, params)`, a
`concurrent.futures.Future` of its token ids; `await asyncio.wrap_future(f)` awaits it from
any loop. Requests are independent: vLLM schedules them as they arrive (continuous batching),
so a caller keeps the engine full simply by having enough of them outstanding.

`Occupancy` is a vLLM stat logger: after every engine step it records (running, waiting)
from vLLM's own scheduler statistics, which `bench/bench_vllm.py` turns into occupancy
(mean running sequences / max_num_seqs while work is queued).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import threading
import time
from collections import deque
from typing import Any, Callable


class Occupancy:
    """(seconds, running, waiting) per engine step, newest last (bounded)."""

    def __init__(self, limit: int = 1_000_000):
        self.steps: deque[tuple[float, int, int]] = deque(maxlen=limit)

    def record(self, running: int, waiting: int) -> None:
        self.steps.append((time.perf_counter(), running, waiting))

    def clear(self) -> None:
        self.steps.clear()

    def summary(self, max_num_seqs: int, since: float = 0.0, until: float | None = None
                ) -> dict[str, float]:
        """Mean running / max_num_seqs over the steps in [since, until] (until None = all),
        and the same over the steps where requests were waiting (the engine had queued work)."""
        rows = [(r, w) for t, r, w in self.steps if t >= since and (until is None or t <= until)]
        queued = [r for r, w in rows if w > 0]
        mean = (lambda xs: sum(xs) / len(xs) / max_num_seqs if xs else 0.0)
        return {"steps": len(rows), "occupancy": mean([r for r, _ in rows]),
                "queued_steps": len(queued), "occupancy_queued": mean(queued),
                "max_running": max((r for r, _ in rows), default=0)}


def occupancy_logger_factory(occupancy: Occupancy):
    """A vLLM StatLoggerFactory whose loggers feed `occupancy` (vLLM calls it per engine)."""
    from vllm.v1.metrics.loggers import StatLoggerBase

    class OccupancyLogger(StatLoggerBase):
        def __init__(self, vllm_config, engine_index: int = 0):
            self.occupancy = occupancy

        def record(self, scheduler_stats, iteration_stats, mm_cache_stats=None, engine_idx=0):
            if scheduler_stats is not None:
                self.occupancy.record(int(scheduler_stats.num_running_reqs),
                                      int(scheduler_stats.num_waiting_reqs))

        def log_engine_initialized(self):
            pass

    return OccupancyLogger


class EngineLoop:
    """An AsyncLLM on its own event-loop thread. `build` (a zero-argument callable returning
    the AsyncLLM) runs on that thread; its exception is re-raised by the constructor."""

    def __init__(self, build: Callable[[], Any]):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="vllm-async-engine",
                                       daemon=True)
        self.thread.start()
        self.ids = itertools.count()
        self.pending = 0                  # requests in vLLM, not finished (loop thread only)
        self.last_submit = 0.0            # perf_counter() of the latest submit
        self.llm = None

        async def start():
            return build()
        try:
            self.llm = asyncio.run_coroutine_threadsafe(start(), self.loop).result()
        except BaseException:
            self.stop_loop()
            raise

    def submit(self, prompt, params) -> concurrent.futures.Future:
        """One request -> a Future of its RequestOutput's token ids (the final output)."""
        assert self.llm is not None, "the engine is closed"
        self.last_submit = time.perf_counter()
        return asyncio.run_coroutine_threadsafe(self.one(prompt, params), self.loop)

    async def one(self, prompt, params):
        final = None
        self.pending += 1
        try:
            async for out in self.llm.generate(prompt, params, f"r{next(self.ids)}"):
                final = out
        finally:
            self.pending -= 1
        assert final is not None and final.finished, "vLLM returned no final output"
        return final

    def call(self, coro_fn: Callable[[], Any], timeout: float | None = None):
        """Run `coro_fn()` (an AsyncLLM coroutine, e.g. reset_prefix_cache) on the loop, wait."""
        async def run():
            return await coro_fn()
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def close(self) -> None:
        """Shut the AsyncLLM down (its EngineCore process exits) and stop the thread."""
        llm, self.llm = self.llm, None
        if llm is not None:
            try:
                async def shut():
                    llm.shutdown()
                asyncio.run_coroutine_threadsafe(shut(), self.loop).result(60)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.stop_loop()

    def stop_loop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)

"""vLLM kept full: samples streamed into the engine, each its own chain of requests, no batch
barriers. The form every vLLM run takes, in this process and inside the vLLM Ray actor.

    StreamEvaluator(cfg, engine, prompts)     engine: a VLLMEngine (baseline, TextMAS) or a
                                              HybridEngine / its vLLM half (LatentMAS judger)
      await .generate(sample)                 one sample -> SampleResult (baseline: one request;
                                              TextMAS: four, each submitted the moment the
                                              previous agent's text is back)
      await .run(samples)                     those, concurrently -> scored store rows
      async for rows in .run_stream(samples)  the same rows, each sample's as it finishes
      async for rows in .judge_stream(batch)  the hybrid's, each sample's as its judger ends
      await .judge(latent_batch)              the hybrid: every judger submitted at once
    stream_in_process(cfg, engine, pending, prompts, on_rows)
                                              a whole run: `window` samples in flight, rows
                                              handed to on_rows as samples finish

vLLM's scheduler takes requests as they come (continuous batching): with more requests
outstanding than it can run (`window` = 2 x max_num_seqs) a finished sequence's slot is
refilled at the next step, so the engine runs full until the input is exhausted and a batch's
slowest sample holds nothing up. Greedy tokens are those of the batch forms (same prompts,
budgets and per-sample seeds; tests/test_vllm.py, tests/test_streaming.py).
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Callable, Sequence

from latentmas_ray.errors import SampleError
from latentmas_ray.spec.config import RunConfig
from latentmas_ray.run.rows import rows_for

# requests outstanding per max_num_seqs slot: 2 keeps vLLM's waiting queue non-empty, so a
# slot that frees is refilled at the next engine step
WINDOW_PER_SLOT = 2


class StreamEvaluator:
    def __init__(self, cfg: RunConfig, engine, prompts: dict[str, str] | None = None):
        from latentmas_ray.methods import baseline, text_mas

        kind = cfg.engine_kind
        assert kind in ("vllm", "hybrid"), f"streaming runs on vLLM, not {kind!r}"
        self.cfg, self.prompts, self.kind = cfg, prompts or {}, kind
        self.hf = getattr(engine, "hf", None)                    # the hybrid's HF engine
        self.vllm = getattr(engine, "vllm", engine)
        self.sample_fn = {"baseline": baseline.run_sample,
                          "text_mas": text_mas.run_sample}.get(cfg.method.method)

    @property
    def window(self) -> int:
        """Samples (TextMAS: chains) to keep outstanding so the engine stays full."""
        return max(WINDOW_PER_SLOT * self.vllm.max_num_seqs, 1)

    async def generate(self, sample):
        """The sample's SampleResult, or the SampleError it raised (e.g. a TextMAS chain that
        outgrew max_model_len): `score_rows` makes that its error row, the run goes on."""
        assert self.sample_fn is not None, f"{self.cfg.method.method} runs as the hybrid"
        try:
            return await self.sample_fn(self.vllm, sample, self.cfg.method, self.cfg.seed,
                                        prompts=self.prompts)
        except SampleError as e:
            return e

    @property
    def k(self) -> int:
        """Completions per sample: K > 1 decodes as vLLM's `n` in the batch forms (one request
        per sample with n children), not as per-sample chains."""
        return self.cfg.method.num_return_sequences

    async def generate_batch(self, samples: Sequence) -> list:
        """A batch's SampleResults (sample-major, K per sample)."""
        if self.k > 1:
            from latentmas_ray.methods import get_method
            return get_method(self.cfg.method.method)(self.vllm, list(samples), self.cfg.method,
                                                      self.cfg.seed, prompts=self.prompts)
        return list(await asyncio.gather(*(self.generate(s) for s in samples)))

    async def run(self, samples: Sequence) -> list[dict[str, Any]]:
        samples = list(samples)
        return rows_for(self.cfg, samples, await self.generate_batch(samples))

    async def run_stream(self, samples: Sequence) -> AsyncIterator[list[dict[str, Any]]]:
        """`run`, yielding each sample's scored rows the moment its request chain ends (the
        vLLM actor's streaming generator; each sample exactly once). K > 1 decodes as the
        batch form (vLLM's `n`), whose rows come at its end."""
        samples = list(samples)
        if self.k > 1:
            yield await self.run(samples)
            return

        async def one(s):
            return s, await self.generate(s)

        async for s, result in as_they_finish([one(s) for s in samples]):
            yield rows_for(self.cfg, [s], [result])

    async def judge_stream(self, batch, transfer_ms: float = 0.0
                           ) -> AsyncIterator[list[dict[str, Any]]]:
        """The hybrid's `judge` + rows, yielding each sample's scored rows as its judger ends
        (K > 1: the batch form's, at its end)."""
        from latentmas_ray.methods.hybrid import judge_sample

        if self.k > 1:
            yield rows_for(self.cfg, batch.samples, [r for r, _ in await self.judge(batch,
                                                                                 transfer_ms)])
            return

        async def one(i):
            return batch.samples[i], (await judge_sample(self.vllm, batch, i, self.cfg.method,
                                                         self.cfg.seed, transfer_ms))[0]

        async for s, result in as_they_finish([one(i) for i in range(len(batch.samples))]):
            yield rows_for(self.cfg, [s], [result])

    async def judge(self, batch, transfer_ms: float = 0.0) -> list[tuple[Any, Any]]:
        """Every judger of a LatentBatch submitted at once -> (SampleResult, HybridStats) each."""
        from latentmas_ray.methods.hybrid import judge_phase, judge_sample

        if self.k > 1:
            stats: dict = {}
            results = judge_phase(self.vllm, batch, self.cfg.method, self.cfg.seed, stats,
                                  transfer_ms)
            return [(r, stats.get(r.id)) for r in results]
        return list(await asyncio.gather(*(
            judge_sample(self.vllm, batch, i, self.cfg.method, self.cfg.seed, transfer_ms)
            for i in range(len(batch.samples)))))


async def as_they_finish(coros: list) -> AsyncIterator:
    """The coroutines' results in the order they finish; what is left is cancelled if the
    consumer stops early."""
    tasks = {asyncio.ensure_future(c) for c in coros}
    try:
        while tasks:
            done, tasks = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                yield t.result()          # an exception ends the stream here
    finally:
        for t in tasks:
            t.cancel()


class Window:
    """Tasks in flight, at most `size`; `drain` hands finished (sample, result) pairs on."""

    def __init__(self, size: int):
        self.size, self.tasks = size, set()

    def add(self, coro) -> None:
        self.tasks.add(asyncio.ensure_future(coro))

    @property
    def full(self) -> bool:
        return len(self.tasks) >= self.size

    async def drain(self, until_below: int) -> list:
        """Wait until fewer than `until_below` tasks remain; their results, in finishing order."""
        out = []
        while self.tasks and len(self.tasks) >= until_below:
            done, self.tasks = await asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED)
            out.extend(t.result() for t in done)      # an exception stops the run here
        return out

    def cancel(self) -> None:
        for t in self.tasks:
            t.cancel()


def stream_in_process(cfg: RunConfig, engine, pending: Sequence, prompts: dict[str, str] | None,
                      on_rows: Callable[[list[dict[str, Any]]], None]) -> None:
    """Run `pending` through `engine` with `window` samples in flight; on_rows receives the
    scored rows of every `cfg.batch_size` finished samples (the store's write unit)."""
    asyncio.run(stream(StreamEvaluator(cfg, engine, prompts), pending, on_rows))


async def stream(ev: StreamEvaluator, pending: Sequence, on_rows) -> None:
    """`stream_in_process` on a given StreamEvaluator, as a coroutine. `pending` is read as
    it is streamed (a task kept on disk stays there: tasks/sample_file.py)."""
    cfg, window = ev.cfg, Window(ev.window)
    buffered: list = []

    def take(pairs: list, final: bool = False) -> None:
        buffered.extend(pairs)
        while buffered and (len(buffered) >= cfg.batch_size or final):
            part, buffered[:] = buffered[:cfg.batch_size], buffered[cfg.batch_size:]
            on_rows(rows_for(cfg, [s for s, _ in part], [r for _, r in part]))

    async def one(sample):
        return sample, await ev.generate(sample)

    async def judged(sample, coro):
        return sample, (await coro)[0]

    try:
        if ev.kind == "vllm":
            for s in pending:
                take(await window.drain(until_below=window.size))
                window.add(one(s))
        else:       # the hybrid: HF latent batches in a worker thread, judgers streamed
            from latentmas_ray.methods.hybrid import judge_sample, latent_phase
            for i in range(0, len(pending), cfg.batch_size):
                take(await window.drain(until_below=window.size))
                batch = await asyncio.to_thread(latent_phase, ev.hf, pending[i:i + cfg.batch_size],
                                                cfg.method, cfg.seed, ev.prompts)
                for k, s in enumerate(batch.samples):
                    window.add(judged(s, judge_sample(ev.vllm, batch, k, cfg.method, cfg.seed)))
        take(await window.drain(until_below=1), final=True)
    finally:
        window.cancel()

"""What a run still has to evaluate: the task's samples its run folder does not hold yet (every
completion stored), read on demand. Used by the in-process run and the Ray driver alike."""

from __future__ import annotations

from typing import Sequence

from latentmas_ray.store.run_store import RunStore
from latentmas_ray.tasks.base import Sample
from latentmas_ray.tasks.sample_file import remaining


def pending_samples(samples: Sequence[Sample], store: RunStore) -> Sequence[Sample]:
    """The samples of `samples` (a loaded task's, in order) that `store` does not hold: found
    by their positions (two integer columns); by their ids in a folder whose rows are older
    than positions."""
    done = store.done_mask(len(samples))
    return remaining(samples, store.done_ids() if done is None else done)

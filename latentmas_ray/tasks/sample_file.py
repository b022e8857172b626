"""A task's samples kept on disk, not in memory: what lets one driver hold a million-sample run.

    samples = SampleFile(iterable_of_samples)   # written once, streamed from the iterable
    len(samples); samples[i]; samples[i:j]; for s in samples: ...

Each Sample is pickled one after another into an unnamed temporary file (deleted when the
object goes, even on a crash); memory holds 8 bytes of file offset per sample. A Python Sample
of a multiple-choice question costs ~2 KB in memory (its strings, its options list, the
dataclass), so a 1M-sample task held as a list is ~2 GB in the driver; here it is 8 MB plus
the page cache, which the kernel can drop. Reads use `os.pread` (no shared file position),
a run of consecutive samples in one read.

A SampleFile behaves as a read-only sequence: slicing returns a list of Samples, pickling it
(a sample list sent to a Ray task, a copy in a test) sends the samples themselves.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from array import array
from typing import Iterable, Iterator, Sequence, overload

from .base import Sample

READ_CHUNK = 256        # samples unpickled per read while iterating


class SampleFile(Sequence[Sample]):
    def __init__(self, samples: Iterable[Sample]):
        self._file = tempfile.TemporaryFile(prefix="latentmas-samples-")
        self._ends = array("q")          # end offset of sample i; sample i starts at end i-1
        end, chunk = 0, []
        for s in samples:
            blob = pickle.dumps(s, protocol=pickle.HIGHEST_PROTOCOL)
            chunk.append(blob)
            end += len(blob)
            self._ends.append(end)
            if len(chunk) >= 1024:
                self._file.write(b"".join(chunk))
                chunk = []
        self._file.write(b"".join(chunk))
        self._file.flush()
        self._fd = self._file.fileno()

    def __len__(self) -> int:
        return len(self._ends)

    def _span(self, start: int, stop: int) -> list[Sample]:
        """Samples start..stop-1 (0 <= start <= stop <= len), one read."""
        if start >= stop:
            return []
        first = self._ends[start - 1] if start else 0
        data = os.pread(self._fd, self._ends[stop - 1] - first, first)
        out, at = [], 0
        for i in range(start, stop):
            end = self._ends[i] - first
            out.append(pickle.loads(data[at:end]))
            at = end
        return out

    @overload
    def __getitem__(self, i: int) -> Sample: ...
    @overload
    def __getitem__(self, i: slice) -> list[Sample]: ...

    def __getitem__(self, i):
        n = len(self)
        if isinstance(i, slice):
            start, stop, step = i.indices(n)
            if step == 1:
                return self._span(start, max(start, stop))
            return [self._span(j, j + 1)[0] for j in range(start, stop, step)]
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"sample {i} of {n}")
        return self._span(i, i + 1)[0]

    def __iter__(self) -> Iterator[Sample]:
        for start in range(0, len(self), READ_CHUNK):
            yield from self._span(start, min(start + READ_CHUNK, len(self)))

    def __add__(self, other) -> list[Sample]:
        return list(self) + list(other)

    def __radd__(self, other) -> list[Sample]:
        return list(other) + list(self)

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and len(other) == len(self) and list(self) == list(other)

    __hash__ = None     # a sequence: unhashable, like a list

    def __reduce__(self):
        return (list, (list(self),))

    def __repr__(self) -> str:
        return f"SampleFile({len(self)} samples)"


class SampleSubset(Sequence[Sample]):
    """The samples of `samples` at `positions` (ascending task positions, e.g. those a run still
    has to evaluate), read on demand; memory: the positions (an int array)."""

    def __init__(self, samples: Sequence[Sample], positions: Sequence[int]):
        self.samples, self.positions = samples, positions

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i):
        if isinstance(i, slice):
            picked = [int(p) for p in self.positions[i]]
            if picked and picked[-1] - picked[0] == len(picked) - 1:   # consecutive: one read
                return list(self.samples[picked[0]:picked[-1] + 1])
            return [self.samples[p] for p in picked]
        return self.samples[int(self.positions[i])]

    def __iter__(self) -> Iterator[Sample]:
        for start in range(0, len(self), READ_CHUNK):
            yield from self[start:start + READ_CHUNK]

    def __reduce__(self):
        return (list, (list(self),))


def remaining(samples: Sequence[Sample], done) -> Sequence[Sample]:
    """The samples not done, in order, read on demand: `samples` itself when none is done (a
    fresh run reads nothing here), else a SampleSubset over the others' positions. `done`:
    a bool array over the positions (RunStore.done_mask), or a set of ids."""
    import numpy as np

    if isinstance(done, np.ndarray):
        if not done.any():
            return samples
        return SampleSubset(samples, np.flatnonzero(~done))
    if not done:
        return samples
    positions = np.fromiter((i for i, s in enumerate(samples) if s.id not in done), np.int64)
    return SampleSubset(samples, positions)

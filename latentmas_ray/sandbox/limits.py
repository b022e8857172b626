"""Per-program limits (SandboxLimits) and what one run gives back (ExecResult)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MB = 1024 * 1024
# A program that writes more than max(64 x output_bytes, 8 MiB) to stdout+stderr is killed:
# the scorer keeps only the tails anyway, and draining gigabytes would burn the wall clock.
OUTPUT_KILL_FACTOR = 64
OUTPUT_KILL_FLOOR = 8 * 1024 * 1024


@dataclass(frozen=True)
class SandboxLimits:
    """Per-program limits. cpu_s and memory_mb apply to each process (rlimits) and, where cgroups
    work, memory_mb and max_procs to the whole sandbox. output_bytes is how much of the end of
    stdout and of stderr is kept."""

    wall_s: float = 30.0
    cpu_s: float = 30.0
    memory_mb: int = 2048   # address space: numpy needs a few hundred MB of it just to import
    max_procs: int = 64
    file_size_mb: int = 16
    output_bytes: int = 65536

    def __post_init__(self):
        for name in ("wall_s", "cpu_s", "memory_mb", "max_procs", "file_size_mb", "output_bytes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or not math.isfinite(v):
                raise ValueError(f"SandboxLimits.{name} must be a positive number, got {v!r}")
        if self.memory_mb < 64:
            raise ValueError(f"SandboxLimits.memory_mb must be >= 64 (Python itself needs it), got {self.memory_mb}")


@dataclass(frozen=True)
class ExecResult:
    passed: bool
    status: str            # "passed" | "failed" | "timeout" | "error" (harness/sandbox) | "killed"
    returncode: int | None  # the program's exit code, -N if killed by signal N, None if unknown
    stdout: str            # the last output_bytes of stdout (a marker line says if cut)
    stderr: str
    seconds: float
    detail: str            # one line for a human: "AssertionError at line 12: assert f(1) == 2"

    # A test run (run_program(..., tests=...)) only: what the harness sent for each test input,
    # in order, decoded by the scorer (harness.Digest for a value too big to send whole;
    # output.NO_VALUE where nothing came). last_test: the index of the last test the harness started.
    values: tuple[Any, ...] = ()
    last_test: int | None = None


def flood_limit(limits: SandboxLimits) -> int:
    """Bytes of stdout+stderr after which a program is killed."""
    return max(limits.output_bytes * OUTPUT_KILL_FACTOR, OUTPUT_KILL_FLOOR)

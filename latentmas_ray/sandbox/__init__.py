"""Run an untrusted Python program (a model's code) in a jail, and get its test results as data.

Why: scoring MBPP+/HumanEval+ means executing whatever a model wrote, thousands of times, on
machines we care about (here and in CI we run as root). The reference ran it with exec() in a
forked process and nothing else. This package runs it inside the strongest isolation the
machine offers, detected at run time and reported by `sandbox_capabilities()`.

Modules, one job each:
  runner.py        the code that runs INSIDE the jail (standard library only): protocol, fork,
                   supervision, running the program, describing its failure
  confine.py       the restrictions the jail applies to itself (Landlock, capabilities and uid,
                   tmpfs, rlimits); standard library only, loaded by the runner by path
  harness.py       calls the program's entry point on test inputs and sends the results out
                   as plain data; its source is shipped into the jail, the scorer decodes with it
  limits.py        SandboxLimits, ExecResult
  capabilities.py  the plan (which layers work here), how it degrades, how it is reported
  cgroups.py       per-run cgroups, v1 or v2
  execute.py       spawning, the probe, run_program / run_programs
  output.py        the output pump, report lines, classifying how a run ended

What "passed" means (ExecResult.passed): the program, and with `tests` every call of its entry
point, ran to the end and raised nothing. Exit codes are not trusted (`sys.exit(0)` or
`os._exit(0)` before the tests looks like success). The runner gets a secret nonce on stdin
(read before any untrusted code runs) and writes it to a private pipe only after the whole
program completed; a pass counts only when that exact nonce arrives. A harness or sandbox
failure is "error", never "passed".

Whether the answers are RIGHT is not decided in the jail. With `tests` (TestCalls), the harness
converts each result to exact builtin types (checked with references captured before the
program loads: type(x) is int, never isinstance or __class__; a subclass of int/str/tuple/dict
is read with its base type's own methods) and sends it as JSON; the scorer decodes it into fresh
objects of its own and compares them with expected values that never enter the jail
(latentmas_ray.tasks.code_checks). So a program can at worst send values it chose: objects that
lie in __eq__/__hash__/__class__, patched builtins or harness functions, swallowed exceptions
and early exits cannot make wrong values compare equal, and a missing value fails its test.

Threat model. Defended: everything above, plus the isolation layers below. NOT defended:
  * a program that knows the right answers passes: it may read any file the machine lets it
    read (reads are not restricted), the benchmark files included; it can also write the
    nonce itself (it lives in the runner's memory), which is why the nonce only guards against
    early exits, and the values, not the nonce, decide correctness.
  * results too big to send (over harness.VALUE_CAP of JSON) are compared by a digest of their
    repr: exactly, so 1 vs 1.0 or dicts built in another order differ, and no float tolerance.
  * a program given the expected values in its own text (a "script" test: assert code run
    after the program, used only for rows whose tests are not in the EvalPlus shape, and for
    errata=False) can fake a pass as before; the real benchmark files never need it.
  * CPU for up to the limits, its scratch folder up to the tmpfs size (or, without a mount
    namespace, up to the file-size limit per file); RLIMIT_CPU and RLIMIT_AS are per process,
    only the cgroups limit the sum.
  * without namespaces, Landlock and root (only at --sandbox_level rlimits-only, asked for by
    name): reach the network, signal other processes of the same user (including the scorer),
    write wherever that user may, and leave behind a process that both escaped the session and
    cleared its environment.

Levels (--sandbox_level, capabilities.LEVELS): strict, standard (default), rlimits-only. The
sandbox fails closed: scoring refuses to start (SandboxUnavailable, one line naming what is
missing and the flag of the weaker level) when this machine cannot give the level asked for.

Layers, each used when it works here. The first run probes them: the full set runs a small
program (writes a file, imports numpy); a probe that fails is run again (PROBE_TRIES), then
layers are given up one at a time, in the order cgroups, scratch tmpfs, Landlock, uid switch,
capability drop, namespaces, until the probe passes, never below what the level needs
(capabilities.degraded; the reasons land in sandbox_capabilities()["notes"]). A plan chosen
after failed probes is probed again after RECHECK_S, not kept for the process:
  1. util-linux `unshare --pid --fork --kill-child --mount-proc --net --ipc` (as root directly,
     otherwise inside a new user namespace): a PID namespace, so when the runner (its init)
     exits the kernel kills every descendant, setsid/double-forked ones included, and nothing
     outside is visible or signalable; a network namespace with no interfaces; private
     size-capped tmpfs mounts on the scratch folder and on /tmp, /var/tmp and /dev/shm, so
     nothing the program writes anywhere outlives it (they vanish with the namespace).
  2. Landlock (kernel ABI >= 1): everything outside the scratch folder becomes read-only for
     the program (writes to /dev/null allowed); ABI >= 4 also denies TCP bind/connect; ABI >= 6
     forbids signalling processes outside the sandbox.
  3. As root: the program runs as uid/gid 65534 with every capability dropped except
     CAP_DAC_READ_SEARCH (so it can still read a Python installed under /root), which makes
     file permissions and RLIMIT_NPROC apply, plus no_new_privs.
  4. As root with cgroups (v1, or v2 where v1's controllers are not mounted): per-run limits
     on processes (pids.max = max_procs) and on the memory of all of them together
     (memory_mb); every process left in them is killed at the end.
  5. Always: own session, rlimits (address space, CPU, file size, open files, core, processes),
     a clean environment built from scratch, a fresh scratch cwd removed afterwards, stdin from
     /dev/null, a wall-clock limit enforced by the scorer, stdout/stderr read with a cap (a
     program writing far past the cap is killed), and a cleanup that kills the process group,
     the cgroup members and (without a PID namespace) every process carrying this run's
     environment token. Without a PID namespace the runner is also a child subreaper, so
     orphans reparent to it and are killed when the program ends.

`python -m latentmas_ray.sandbox` prints what this machine enforces.
"""

from .capabilities import DEFAULT_LEVEL, LEVELS, SandboxUnavailable
from .execute import TestCalls, run_program, run_programs, sandbox_capabilities
from .harness import Digest
from .limits import ExecResult, SandboxLimits
from .output import NO_VALUE

__all__ = ["DEFAULT_LEVEL", "LEVELS", "NO_VALUE", "Digest", "ExecResult", "SandboxLimits",
           "SandboxUnavailable", "TestCalls", "run_program", "run_programs", "sandbox_capabilities"]

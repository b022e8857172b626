"""Errors a user can act on. Each names the thing that is wrong and what to do about it."""

from __future__ import annotations


class LatentMASError(Exception):
    """Base class: the CLI prints these as one clean line (no traceback) and exits 2."""


class ConfigError(LatentMASError):
    """A bad flag value, unknown task/method, or an inconsistent configuration."""


class SampleError(LatentMASError):
    """One sample cannot be evaluated (e.g. a TextMAS chain that outgrows the engine's length):
    deterministic for that sample, so it becomes that sample's error row, never a stopped run."""


class ReplicaFault(LatentMASError):
    """The replica's device or engine broke (a CUDA error, a dead vLLM EngineCore, an NCCL
    failure): not the batch's fault. The batch goes elsewhere; the replica is replaced."""


class LoadFailure(LatentMASError):
    """A replica could not load on its seat (out of memory at engine start, a node without the
    model folder): that seat's fault, retried; the run stops only when no seat can load."""


class Stopped(LatentMASError):
    """A stop signal (SIGTERM from `ray job stop`, Ctrl-C) ended the run early; what finished
    is saved and the same command resumes."""


# Exception class names (anywhere in the class's MRO) that mean the device or the engine is
# broken, whatever the library raised them; and, for libraries that raise a bare RuntimeError,
# the prefixes of its message. Read once, at the actor boundary (actors/common.py).
FAULT_TYPES = frozenset({"AcceleratorError", "OutOfMemoryError", "EngineDeadError",
                         "DistBackendError", "CudaError"})
FAULT_MESSAGES = ("CUDA error", "device-side assert", "CUBLAS_STATUS", "cuDNN error",
                  "NCCL error", "EngineCore", "engine is dead")


def is_device_fault(e: BaseException) -> bool:
    """Whether an exception raised by torch / vLLM / NCCL says the device or engine broke."""
    if any(c.__name__ in FAULT_TYPES for c in type(e).__mro__):
        return True
    return isinstance(e, RuntimeError) and any(m in str(e) for m in FAULT_MESSAGES)


def typed_cause(e: BaseException) -> BaseException:
    """The exception an actor raised, from Ray's wrapper of it (RayTaskError keeps it as
    `cause`); `e` itself when it is not wrapped."""
    cause = getattr(e, "cause", None)
    return cause if isinstance(cause, BaseException) else e


class DataError(LatentMASError):
    """A data or predictions file that is missing, unreadable or malformed.

    Carries the file and (1-based) line so the message can point at the exact row.
    """

    def __init__(self, message: str, path: str | None = None, line: int | None = None,
                 hint: str | None = None):
        self.path, self.line, self.hint, self.reason = path, line, hint, message
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        text = where + message
        if hint:
            text += f" ({hint})"
        super().__init__(text)


def exit_status(command, console) -> int:
    """Run `command()` the way every entry point does: its own exit status, a LatentMASError as
    one `error: ...` line and status 2 (no traceback), Ctrl-C as a note that nothing is lost."""
    try:
        return command()
    except Stopped as e:        # a stop is not an error: what finished is saved
        console.print(f"stopped: {e}", highlight=False, soft_wrap=True)
        return 143
    except LatentMASError as e:
        from rich.markup import escape   # the message is text: "latentmas-ray[wandb]" stays

        console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        console.print("interrupted; finished samples are saved, rerun the same command to resume")
        return 130

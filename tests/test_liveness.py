"""A run that always ends, without Ray (issue 24): batch deadlines from measured batch times,
failures typed at the actor boundary, a sample's own error split off without retries, the
stop signal, the progress line's replica states."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

import pytest

from actors.common import typed_actor
from jobs.deadlines import FACTOR, Deadlines
from jobs.monitor import replica_states_text
from jobs.scheduler import Scheduler
from jobs.stop import StopSignal
from latentmas_ray.errors import (ConfigError, LoadFailure, ReplicaFault, SampleError,
                                  is_device_fault)


def test_deadline_is_a_multiple_of_the_slowest_recent_batch_of_its_size():
    d = Deadlines(floor_s=1.0, first_s=100.0)
    d.start(0, "a", 4, now=0.0)
    assert d.limit(4) == 100.0 and d.overdue(now=99.0) == {}      # nothing measured yet
    assert list(d.overdue(now=101.0)) == ["a"]
    d.finish(0, now=2.0)                                           # a 4-sample batch: 2 s
    assert d.limit(4) == FACTOR * 2.0 and d.limit(8) == FACTOR * 4.0   # other sizes scaled
    assert Deadlines(floor_s=30.0, first_s=1.0).limit(4) == 30.0        # the floor
    # two in flight on one replica: the second starts when the first ends
    d.start(1, "a", 4, now=10.0)
    d.start(2, "a", 4, now=10.0)
    d.finish(1, now=12.0)
    assert d.overdue(now=12.0 + FACTOR * 2.0 - 0.1) == {}
    assert list(d.overdue(now=12.0 + FACTOR * 2.0 + 0.1)) == ["a"]
    d.forget("a")
    assert d.overdue(now=1e9) == {}
    d.start(3, "b", 4, now=0.0)
    d.finish(3, now=50.0, measured=False)                          # a failure is not timed
    assert d.limit(4) == FACTOR * 2.0


class Fragile:
    """A stand-in actor class: its load and its batches fail as told."""

    def __init__(self, fail_load: Exception | None = None):
        if fail_load is not None:
            raise fail_load
        self.loaded = True

    def ready(self):
        return {"ok": True}

    def run(self, error: Exception | None = None):
        if error is not None:
            raise error
        return ["row"]


def test_failures_cross_the_actor_boundary_as_types():
    cls = typed_actor(Fragile)
    assert cls.__name__ == "Fragile" and cls().ready() == {"ok": True}
    with pytest.raises(ConfigError, match="bad flag"):      # the run's fault, as it is
        cls(ConfigError("bad flag")).ready()
    with pytest.raises(LoadFailure, match="OSError: no model folder on this node"):
        cls(OSError("no model folder on this node")).ready()
    ok = cls()
    with pytest.raises(ReplicaFault, match="CUDA error: an illegal memory access"):
        ok.run(RuntimeError("CUDA error: an illegal memory access was encountered"))

    class EngineDeadError(RuntimeError):     # vLLM's, by name
        pass
    with pytest.raises(ReplicaFault):
        ok.run(EngineDeadError("x"))
    with pytest.raises(SampleError):
        ok.run(SampleError("too long"))
    with pytest.raises(ValueError):          # anything else: as it is (retried elsewhere)
        ok.run(ValueError("a bug on one batch"))
    assert ok.run() == ["row"]
    assert not is_device_fault(ValueError("CUDA error"))


@dataclass(frozen=True)
class S:
    id: str


def test_a_sample_error_is_split_off_at_once_and_never_strikes_the_replica():
    sch = Scheduler([S(str(i)) for i in range(4)], 4, max_attempts=3, max_in_flight=1)
    sch.add_replica("a")
    ((t, batch),) = sch.assign()
    assert sch.failed(t, "too long", deterministic=True) == []     # split, not retried whole
    (t1, b1), = sch.assign()
    assert [s.id for s in b1] == ["0", "1"]
    assert sch.failed(t1, "too long", deterministic=True) == []
    (t2, b2), = sch.assign()
    assert [s.id for s in b2] == ["0"]
    assert [s.id for s in sch.failed(t2, "too long", deterministic=True)] == ["0"]
    assert sch.error_of("0") == "too long"
    assert sch.replicas["a"].fails_in_a_row == 0 and sch.unhealthy(1, 1) == []


def test_a_stop_signal_is_a_request_while_a_loop_listens_else_an_interrupt():
    before = signal.getsignal(signal.SIGTERM)   # SIG_DFL, or a handler an earlier ray.init left
    stop = StopSignal()
    with stop.installed():
        with stop.listen():
            os.kill(os.getpid(), signal.SIGTERM)
            assert stop.requested == "SIGTERM"
            with pytest.raises(KeyboardInterrupt):                # a second one: at once
                os.kill(os.getpid(), signal.SIGTERM)
    other = StopSignal()
    with other.installed(), pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
    with StopSignal().installed() as third:       # a library took SIGTERM over: taken back
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        third.reclaim()
        with third.listen():
            os.kill(os.getpid(), signal.SIGTERM)
        assert third.requested == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) == before      # each installed() restores it


def test_replica_states_in_the_progress_line():
    assert replica_states_text({"healthy": 3, "loading": 1, "hung": 1, "replaced": 2}) == \
        " (3 healthy, 1 loading, 1 hung, 2 replaced)"
    assert replica_states_text(None) == ""


def test_one_driver_per_run_folder(tmp_path):
    """A live holder (another process on this host) refuses a second driver in one line; a
    dead one's lock, or another host's without a heartbeat, is taken over with a note."""
    import json
    import socket
    import subprocess
    import sys
    import time

    from latentmas_ray.store.lock import RunLock

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        holder = RunLock(tmp_path)
        holder.me = {"host": socket.gethostname(), "pid": other.pid}   # as if `other` held it
        holder.acquire()
        with pytest.raises(ConfigError) as err:
            RunLock(tmp_path).acquire()
        msg = str(err.value)
        assert "\n" not in msg and f"in use by the driver pid {other.pid} on " in msg
    finally:
        other.kill()
        other.wait()
    with RunLock(tmp_path).held() as lock:          # the holder is gone: taken over
        assert lock.holder()["pid"] == os.getpid()
    assert not (tmp_path / "driver.lock").exists()   # released at the end
    (tmp_path / "driver.lock").write_text(json.dumps(
        {"host": "elsewhere", "pid": 1, "heartbeat": time.time() - 1000}))
    note = RunLock(tmp_path).acquire()
    assert note and "from pid 1 on elsewhere (no heartbeat for 1000 s)" in note
    (tmp_path / "driver.lock").write_text(json.dumps(
        {"host": "elsewhere", "pid": 1, "heartbeat": time.time()}))
    with pytest.raises(ConfigError, match="in use by the driver pid 1 on elsewhere"):
        RunLock(tmp_path).acquire()


def test_the_heartbeat_keeps_a_busy_driver_alive(tmp_path):
    import json
    import time

    from latentmas_ray.store.lock import RunLock

    with RunLock(tmp_path, beat_s=0.05).held() as lock:
        first = lock.holder()["heartbeat"]
        time.sleep(0.3)
        assert json.loads((tmp_path / "driver.lock").read_text())["heartbeat"] > first


def test_a_second_driver_on_a_live_run_folder_is_refused_before_it_runs(tmp_path, capsys):
    """`jobs.evaluate` on a folder whose lock a live process holds: exit 2, one line naming
    the holder, no sample run, the holder's lock untouched."""
    import json
    import socket
    import subprocess
    import sys
    import time

    from jobs.evaluate import main
    from tiny_model import build_tiny_model_dir

    out = tmp_path / "run"
    args = ["--model_name", build_tiny_model_dir(), "--task", "arc_easy", "--max_samples", "2",
            "--method", "baseline", "--max_new_tokens", "2", "--dtype", "float32",
            "--device", "cpu", "--output", str(out)]
    import jobs.evaluate as ev
    from latentmas_ray.spec.flags import build_run_config
    from latentmas_ray.store.run_store import RunStore

    RunStore(out).open(build_run_config(ev.build_parser().parse_args(args), ray=True).to_dict())
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / "driver.lock").write_text(json.dumps(
            {"host": socket.gethostname(), "pid": other.pid, "heartbeat": time.time()}))
        assert main(args) == 2
    finally:
        other.kill()
        other.wait()
    err = capsys.readouterr().err
    line = next(ln for ln in err.splitlines() if ln.startswith("error:"))
    assert f"is in use by the driver pid {other.pid} on {socket.gethostname()}" in line
    assert list((out / "parts").iterdir()) == []
    assert json.loads((out / "driver.lock").read_text())["pid"] == other.pid


def test_autoscale_resolves_gpu_replicas_from_the_spec_not_the_nodes_alive():
    from jobs.driver import wants_gpus
    from jobs.replicas import HFFactory
    from latentmas_ray.spec.config import ExecutionConfig, ModelConfig, RunConfig

    head_only = [{"CPU": 8.0}]                   # no GPU node up yet at submit time
    auto = RunConfig(execution=ExecutionConfig(ray=True, autoscale=True))
    assert wants_gpus(auto, head_only)
    factory = HFFactory(auto, None, {})
    factory.resolve(cluster_has_gpus=wants_gpus(auto, head_only), owned=False)
    assert factory.bundles() == [{"CPU": 1.0, "GPU": 1.0}]     # asks the autoscaler for a GPU
    cpu = RunConfig(model=ModelConfig(device="cpu"),
                    execution=ExecutionConfig(ray=True, autoscale=True))
    assert not wants_gpus(cpu, head_only)                      # told to run on CPUs
    fixed = RunConfig(execution=ExecutionConfig(ray=True))
    assert not wants_gpus(fixed, head_only) and wants_gpus(fixed, [{"CPU": 4.0, "GPU": 2.0}])


def test_a_stop_exits_143_with_a_stopped_line_not_an_error():
    import io

    from rich.console import Console

    from latentmas_ray.errors import Stopped, exit_status

    buf = io.StringIO()

    def stopped():
        raise Stopped("SIGTERM: 3 sample(s) not run; rerun the same command to resume")
    assert exit_status(stopped, Console(file=buf)) == 143
    assert buf.getvalue().startswith("stopped: SIGTERM") and "error" not in buf.getvalue()

"""A local multi-node Ray cluster on one machine, to try the distributed path without a cluster.

    python cluster/local_cluster.py start [--workers 2] [--gpus-per-worker 1] [--auth token]
    python cluster/local_cluster.py status
    python cluster/local_cluster.py stop

`start` runs a head (`ray start --head --block`, with the dashboard and job server on
127.0.0.1) and N worker nodes (`ray start --address ... --block`), each its own raylet, with
fake GPU resources (`--num-gpus`: Ray schedules on them; torch still sees no CUDA, so the
replicas run on CPU). Each node has its own Ray temp dir, as separate machines would. It prints
one line to paste, `export RAY_ADDRESS=http://127.0.0.1:<dashboard port> RAY_AUTH_MODE=token`,
after which `ray job submit / logs / stop / list` work as Ray prints them, and records the
process ids in --state-dir so `stop` ends exactly these processes (it never runs `ray stop`,
which would end every Ray on the machine) and removes what `start` created (the nodes' temp
dirs, the logs; `--keep-logs` keeps them).

The dashboard / job server listens on 127.0.0.1; the GCS port, as Ray does, on every interface,
so token authentication (Ray 2.60's default) stays on unless `--auth disabled`. With it on,
clients need `RAY_AUTH_MODE=token` (the token is in ~/.ray/auth_token).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

DEFAULT_STATE = Path(os.environ.get("TMPDIR", "/tmp")) / "latentmas-local-cluster"
HOST = "127.0.0.1"


def _ray_bin() -> str:
    here = Path(sys.executable).parent / "ray"
    found = str(here) if here.exists() else shutil.which("ray")
    if not found:
        raise SystemExit(f"error: no `ray` command beside {sys.executable} or on PATH; run this "
                         "script with the project's venv: .venv/bin/python cluster/local_cluster.py "
                         "start (or `. .venv/bin/activate` first)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False


def _env(auth: str) -> dict[str, str]:
    env = dict(os.environ)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env["RAY_AUTH_MODE"] = auth
    env.pop("RAY_ADDRESS", None)
    return env


def _ensure_token(env: dict[str, str]) -> None:
    """Token auth needs a token before the head starts: `ray start` does not make one. Use the
    one the environment names, else ~/.ray/auth_token, generating it on a fresh machine."""
    if env.get("RAY_AUTH_MODE") != "token" or env.get("RAY_AUTH_TOKEN") or env.get("RAY_AUTH_TOKEN_PATH"):
        return
    subprocess.run([_ray_bin(), "get-auth-token", "--generate"], env=env, check=True,
                   stdout=subprocess.DEVNULL)


def _spawn(cmd: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    f = open(log, "ab")
    # Own process group, so `stop` can end the whole tree of one node and nothing else.
    return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)


def _wait(pred, timeout: float, what: str, procs=()) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"{what}: `{' '.join(p.args)}` exited with {p.returncode}")
        time.sleep(0.3)
    raise RuntimeError(f"{what}: not ready after {timeout:g} s")


def _alive_nodes(address: str, auth: str) -> int:
    """Count alive nodes through the GCS (a short-lived driver connection)."""
    code = ("import ray,logging; ray.init(address=%r, logging_level=logging.ERROR); "
            "print(sum(1 for n in ray.nodes() if n['Alive'])); ray.shutdown()" % address)
    out = subprocess.run([sys.executable, "-c", code], env=_env(auth), capture_output=True,
                         text=True, timeout=60)
    try:
        return int(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return 0


def start(args) -> dict:
    state_dir = Path(args.state_dir)
    state_file = state_dir / "cluster.json"
    if state_file.exists():
        old = json.loads(state_file.read_text())
        if any(_pid_alive(p) for p in old["pids"]):
            raise SystemExit(f"a local cluster is already running ({old['address']}); "
                             f"run `{sys.argv[0]} stop --state-dir {state_dir}` first")
    state_dir.mkdir(parents=True, exist_ok=True)
    logs = state_dir / "logs"
    logs.mkdir(exist_ok=True)
    port = args.port or _free_port()
    dash = args.dashboard_port or _free_port()
    agent = _free_port()      # the head's dashboard agent: it runs submitted jobs
    env = _env(args.auth)
    _ensure_token(env)
    ray = _ray_bin()
    address = f"{HOST}:{port}"
    # Each node gets its own Ray temp dir, as on separate machines. Sharing one would let every
    # node's runtime-env agent unpack a job's working_dir into the same folder, deleting the
    # files under a running driver. Kept short: Ray's socket paths must fit in 107 bytes.
    temp_root = Path(tempfile.mkdtemp(prefix="lmr-", dir="/tmp"))
    t0 = time.time()
    head = _spawn([ray, "start", "--head", "--block", f"--node-ip-address={HOST}",
                   f"--temp-dir={temp_root / 'h'}",
                   f"--port={port}", f"--num-cpus={args.head_cpus}", "--num-gpus=0",
                   # code-scoring tasks need it (--scoring_resource): they run on the head
                   f"--resources={json.dumps({'scoring': args.head_cpus})}",
                   "--include-dashboard=true", f"--dashboard-host={HOST}",
                   f"--dashboard-port={dash}", f"--dashboard-agent-listen-port={agent}",
                   "--disable-usage-stats"], logs / "head.log", env)
    state = {"address": address, "dashboard": f"http://{HOST}:{dash}", "auth": args.auth,
             "pids": [head.pid], "workers": args.workers, "state_dir": str(state_dir),
             "temp_root": str(temp_root)}
    state_file.write_text(json.dumps(state, indent=2))   # written early: `stop` works on failure
    try:
        _wait(lambda: _port_open(port), args.timeout, "head GCS", [head])
        _wait(lambda: _dashboard_up(state["dashboard"]), args.timeout, "head dashboard", [head])
        # `ray job submit` fails ("No available agent") while the head's agent is starting,
        # which on a busy machine outlasts the job server's 10 s wait for it
        _wait(lambda: _port_open(agent), args.timeout, "head dashboard agent", [head])
        workers = []
        for i in range(args.workers):
            res = json.dumps({f"worker_{i}": 1})
            workers.append(_spawn([ray, "start", f"--address={address}", "--block",
                                   f"--node-ip-address={HOST}", f"--temp-dir={temp_root / f'w{i}'}", f"--num-cpus={args.cpus_per_worker}",
                                   f"--num-gpus={args.gpus_per_worker}", f"--resources={res}",
                                   "--disable-usage-stats"], logs / f"worker{i}.log", env))
            state["pids"].append(workers[-1].pid)
            state_file.write_text(json.dumps(state, indent=2))
        want = 1 + args.workers
        _wait(lambda: _alive_nodes(address, args.auth) >= want, args.timeout,
              f"{want} nodes", [head, *workers])
    except BaseException:
        stop(args)
        raise
    state["seconds_to_start"] = round(time.time() - t0, 1)
    state_file.write_text(json.dumps(state, indent=2))
    return state


def _dashboard_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/api/version", timeout=2) as r:
            return r.status == 200
    except urllib.error.HTTPError:       # 401 in token mode: the job server is answering
        return True
    except Exception:  # noqa: BLE001 - not up yet
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def stop(args) -> bool:
    state_file = Path(args.state_dir) / "cluster.json"
    if not state_file.exists():
        return False
    state = json.loads(state_file.read_text())
    pids = list(reversed(state["pids"]))            # workers first, the head last
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)            # `ray start --block` stops its node's processes
        except ProcessLookupError:
            pass
    end = time.time() + args.timeout
    while time.time() < end and any(_pid_alive(p) for p in pids):
        time.sleep(0.2)
    for pid in pids:
        if _pid_alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)      # its own process group (start_new_session)
            except (ProcessLookupError, PermissionError):
                pass
    for pid in pids:   # reap, when they are our children (a test that started and stops it)
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
    _forget_address(state["address"])
    state_file.unlink()
    if not args.keep_logs:      # everything `start` created: the nodes' temp dirs, the logs
        if state.get("temp_root"):
            shutil.rmtree(state["temp_root"], ignore_errors=True)
        shutil.rmtree(Path(args.state_dir) / "logs", ignore_errors=True)
        with contextlib.suppress(OSError):
            Path(args.state_dir).rmdir()            # only if nothing else was put there
    return True


def _forget_address(address: str) -> None:
    """`ray start` records its address in <ray temp>/ray_current_cluster; a later plain
    `ray.init()` would try to join the dead cluster. Remove it if it still names ours."""
    try:
        from ray._common.utils import get_ray_temp_dir  # type: ignore
    except Exception:  # noqa: BLE001
        try:
            from ray._private.utils import get_ray_temp_dir  # type: ignore
        except Exception:  # noqa: BLE001
            get_ray_temp_dir = lambda: os.path.join(os.environ.get("TMPDIR", "/tmp"), "ray")  # noqa: E731
    f = Path(get_ray_temp_dir()) / "ray_current_cluster"
    try:
        if f.read_text().strip() == address:
            f.unlink()
    except OSError:
        pass


@contextlib.contextmanager
def in_process_cluster(workers: int = 3, *, gpus_per_worker: float = 0):
    """The same shape inside one Python process, for tests and benchmarks: Ray's
    `cluster_utils.Cluster` with a 1-CPU head and `workers` 1-CPU worker nodes, each with its
    own resource `worker_<i>` (to pin an actor to it) and `gpus_per_worker` fake GPUs; this
    process is connected to it. Yields (cluster, worker nodes). No token auth (see README)."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    # the head offers the "scoring" resource, as cluster.yaml's head: code is scored there
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                      "resources": {"scoring": 1}})
    nodes = [c.add_node(num_cpus=1, num_gpus=gpus_per_worker, resources={f"worker_{i}": 1})
             for i in range(workers)]
    c.wait_for_nodes()
    ray.init(address=c.address, logging_level="error")
    try:
        yield c, nodes
    finally:
        ray.shutdown()
        c.shutdown()


def print_start(s: dict, args) -> None:
    """What to paste: one export line, after which `ray job submit / logs / stop / list` work
    exactly as Ray prints them (they read RAY_ADDRESS, the job server's URL, and need the auth
    mode), then the commands. On stderr, but for the export line on stdout, so
    `eval "$(python cluster/local_cluster.py start)"` also works."""
    auth = " RAY_AUTH_MODE=token" if s["auth"] == "token" else ""
    tok = "RAY_AUTH_MODE=token " if s["auth"] == "token" else ""
    err = sys.stderr
    print(f"Ray cluster up in {s['seconds_to_start']} s: head + {s['workers']} worker(s) with "
          f"{args.gpus_per_worker:g} fake GPU each; GCS {s['address']}, job server "
          f"{s['dashboard']}. Paste this line, then `ray job submit/logs/stop/list` work:", file=err)
    print(f"export RAY_ADDRESS={s['dashboard']}{auth}", flush=True)
    print(f"  submit: ray job submit --working-dir . -- python -m jobs.evaluate --replicas "
          f"{s['workers']} --output \"$PWD/results/NAME\" ...", file=err)
    print(f"  or a driver here: {tok}python -m jobs.evaluate --address {s['address']} "
          f"--replicas {s['workers']} ...", file=err)
    print(f"  stop:   python {sys.argv[0]} stop" + (f" --state-dir {args.state_dir}"
          if args.state_dir != str(DEFAULT_STATE) else ""), file=err)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=["start", "stop", "status"])
    p.add_argument("--workers", type=int, default=2, help="worker nodes (default 2)")
    p.add_argument("--gpus-per-worker", type=float, default=1, help="fake GPUs per worker (1)")
    p.add_argument("--cpus-per-worker", type=int, default=1, help="CPU slots per worker (1)")
    p.add_argument("--head-cpus", type=int, default=1,
                   help="CPU slots on the head (1: runs CPU scoring tasks; replicas go to workers "
                        "when they ask for GPUs)")
    p.add_argument("--port", type=int, default=0, help="GCS port (default: a free one)")
    p.add_argument("--dashboard-port", type=int, default=0, help="dashboard port (default: free)")
    p.add_argument("--auth", choices=["token", "disabled"], default="token",
                   help="Ray token authentication (default token, Ray's default)")
    p.add_argument("--state-dir", default=str(DEFAULT_STATE))
    p.add_argument("--timeout", type=float, default=90.0)
    p.add_argument("--keep-logs", action="store_true",
                   help="stop: keep the nodes' Ray temp dirs (session logs)")
    args = p.parse_args(argv)
    if args.command == "start":
        s = start(args)
        print_start(s, args)
        return 0
    if args.command == "stop":
        print("stopped" if stop(args) else "no local cluster recorded in " + args.state_dir)
        return 0
    f = Path(args.state_dir) / "cluster.json"
    if not f.exists():
        print("no local cluster recorded in " + args.state_dir)
        return 1
    s = json.loads(f.read_text())
    alive = [p for p in s["pids"] if _pid_alive(p)]
    print(json.dumps({**s, "alive_processes": len(alive)}, indent=2))
    return 0 if alive else 1


if __name__ == "__main__":
    sys.exit(main())

"""Reference benchmark: requests per second and latency of PySyncObj on 3 local nodes.

PySyncObj (https://github.com/bakwc/PySyncObj) is a Raft library in pure Python. This
script measures it in the way its own benchmark does (``benchmarks/testobj.py``): the node
processes themselves call a ``@replicated`` method with a callback, and a call counts when
its callback reports ``FAIL_REASON.SUCCESS``, i.e. when the entry is committed by a majority
and applied on the calling node. There is no separate client process and no client
protocol: the calls are issued inside the node processes, so these figures contain no
client round trip.

What runs:

- PySyncObj lives in its own virtual environment (default
  ``experiments/results/.venv-pysyncobj``, ``--venv DIR`` to change), created on first use
  with the python running this script, ``pysyncobj`` pinned to ``PYSYNCOBJ_VERSION``. The
  node processes run this file with that venv's python; the python that starts this script
  needs only the standard library and never gets pysyncobj installed.
- Three node processes on 127.0.0.1, ports chosen by the OS. Every point (payload size,
  concurrency) gets a fresh cluster: new processes in a new temporary working directory,
  removed afterwards. Measuring starts once all three nodes name the same leader and that
  node reports itself leader.
- ``SyncObjConf`` defaults, except ``bindAddress``, set to the node's own loopback
  address so that the nodes do not listen on all interfaces (PySyncObj unpickles what
  its peers send). The defaults keep the Raft log in memory (``journalFile=None``) and
  write nothing to disk, so there is no fsync anywhere. They also batch the log
  (``appendEntriesUseBatch=True``): the leader sends new entries to its followers with
  its heartbeat, every ``appendEntriesPeriod`` (0.1 s), not as soon as they arrive, so a
  single call waits for the next heartbeat and throughput grows with the number of calls
  outstanding.
- The replicated object keeps a count and the total bytes of the payloads it applied
  (trivial work, as in PySyncObj's benchmark, whose method only increments a counter).

How a point is measured (this differs from PySyncObj's benchmark, which is open loop: all
nodes issue a fixed number of calls per second, and a binary search looks for the highest
rate at which 90% of the calls succeed; its README reports about 15k requests/s on 3 nodes
for small requests and 5k/s for 20 KB ones). Here the loop is closed: only the leader
issues calls, C at once (C = ``--concurrency``, summed over the cluster, since the
followers issue none), all with the same random payload of ``size`` bytes (drawn once per
point; PySyncObj pickles it anew for every call and zlib-compresses every message, which
random bytes defeat), and each completion's callback issues the next call. After a warm-up
(1 s) it counts for ``--seconds`` the calls that complete: ``ok`` (callback reported
success) and ``failed`` (any other reason); ``rps`` is ok per second of that window and ``p50_ms`` /
``p99_ms`` are percentiles (nearest rank) of the successful calls' latency, from issue to
callback. Calls complete in bursts, one per heartbeat, so ``ok`` moves in steps of about C.
``elections`` is the number of Raft terms that began during the point (0: the same leader
throughout).

Usage (any Python 3.11; prints progress on stderr and one JSON object as the last stdout
line)::

    python experiments/pysyncobj_ref.py --sizes 1024,4096,16384 --concurrency 1,32 \\
        --seconds 5 --json-out experiments/results/pysyncobj.json

From another script: ``run(sizes, concurrencies, seconds, venv=None) -> dict``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import IO, Any

PYSYNCOBJ_VERSION = "0.3.17"
SCRIPT = Path(__file__).resolve()
DEFAULT_VENV = SCRIPT.parent / "results" / ".venv-pysyncobj"
NODES = 3
WARMUP_S = 1.0
START_TIMEOUT_S = 20.0  # one node process: start, import pysyncobj, bind its port
LEADER_TIMEOUT_S = 20.0  # the cluster: connect and elect a leader
DRAIN_TIMEOUT_S = 10.0  # after a point: wait for the calls still outstanding
REPLY_TIMEOUT_S = 10.0  # one status request


def log(msg: str) -> None:
    print(f"[pysyncobj_ref] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- venv


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def installed_version(python: Path) -> str | None:
    """The pysyncobj version installed for ``python``, or None."""
    if not python.exists():
        return None
    check = subprocess.run(
        [
            str(python),
            "-I",
            "-c",
            "import importlib.metadata as m, pysyncobj; print(m.version('pysyncobj'))",
        ],
        capture_output=True,
        text=True,
    )
    return check.stdout.strip() if check.returncode == 0 else None


def ensure_venv(venv: Path) -> tuple[Path, str]:
    """Create the PySyncObj venv once (venv + pip install); reuse it afterwards."""
    venv = venv.resolve()
    if venv == Path(sys.prefix).resolve():
        raise SystemExit(f"refusing to install pysyncobj into the running environment {venv}")
    python = venv_python(venv)
    version = installed_version(python)
    if version == PYSYNCOBJ_VERSION:
        return python, version
    if not python.exists():
        log(f"creating venv {venv}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, stdout=sys.stderr)
    log(f"installing pysyncobj=={PYSYNCOBJ_VERSION} into {venv}")
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--quiet",
            f"pysyncobj=={PYSYNCOBJ_VERSION}",
        ],
        check=True,
        stdout=sys.stderr,
    )
    version = installed_version(python)
    if version != PYSYNCOBJ_VERSION:
        raise SystemExit(f"venv {venv} has pysyncobj {version}, expected {PYSYNCOBJ_VERSION}")
    return python, version


# --------------------------------------------------------------------------- node process


def _sink_class() -> type:
    """The replicated object (pysyncobj is importable only in the node processes)."""
    from pysyncobj import SyncObj, SyncObjConf, replicated

    class Sink(SyncObj):  # type: ignore[misc]
        def __init__(self, self_addr: str, partners: list[str]) -> None:
            super().__init__(self_addr, partners, SyncObjConf(bindAddress=self_addr))
            self.count = 0
            self.total_bytes = 0

        @replicated  # type: ignore[misc]
        def put(self, payload: bytes) -> int:
            self.count += 1
            self.total_bytes += len(payload)
            return self.count

    return Sink


class ClosedLoop:
    """Keeps ``concurrency`` calls outstanding; each callback issues the next call.

    The callbacks run in PySyncObj's tick thread; ``running`` is cleared by the main thread.
    """

    def __init__(self, node: Any, payload: bytes, concurrency: int) -> None:
        self.node = node
        self.payload = payload
        self.outstanding = concurrency
        self.running = True
        self.drained = threading.Event()
        self.records: list[tuple[float, float, int]] = []  # (completed at, latency, reason)

    def issue(self) -> None:
        self.node.put(self.payload, callback=functools.partial(self._done, time.perf_counter()))

    def _done(self, issued: float, _result: object, reason: int) -> None:
        now = time.perf_counter()
        self.records.append((now, now - issued, reason))
        if self.running:
            self.issue()
        else:
            self.outstanding -= 1
            if self.outstanding <= 0:
                self.drained.set()


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None if empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def node_bench(node: Any, size: int, concurrency: int, warmup: float, seconds: float) -> dict:
    from pysyncobj import FAIL_REASON

    names = {v: k for k, v in vars(FAIL_REASON).items() if k.isupper()}
    loop = ClosedLoop(node, os.urandom(size), concurrency)
    for _ in range(concurrency):
        loop.issue()
    time.sleep(warmup)
    start = time.perf_counter()
    time.sleep(seconds)
    end = time.perf_counter()
    loop.running = False
    drained = loop.drained.wait(DRAIN_TIMEOUT_S)
    records = list(loop.records)
    window = [r for r in records if start <= r[0] < end]
    latencies = sorted(lat for _, lat, reason in window if reason == FAIL_REASON.SUCCESS)
    errors = Counter(names.get(reason, str(reason)) for _, _, reason in window)
    errors.pop("SUCCESS", None)
    errors_all = Counter(names.get(reason, str(reason)) for _, _, reason in records)
    errors_all.pop("SUCCESS", None)
    p50 = percentile(latencies, 0.50)
    p99 = percentile(latencies, 0.99)
    return {
        "window_s": end - start,
        "ok": len(latencies),
        "failed": len(window) - len(latencies),
        "errors": dict(errors),
        "errors_incl_warmup_and_drain": dict(errors_all),
        "completed_total": len(records),
        "p50_ms": None if p50 is None else p50 * 1e3,
        "p99_ms": None if p99 is None else p99 * 1e3,
        "drained": drained,
    }


def node_status(node: Any) -> dict:
    status: dict[str, Any] = {}
    for _ in range(20):  # getStatus reads the tick thread's sets and dicts
        try:
            status = node.getStatus()
            break
        except RuntimeError:
            time.sleep(0.01)
    leader = node._getLeader()
    return {
        "self": str(node.selfNode),
        "leader": None if leader is None else str(leader),
        "is_leader": bool(node._isLeader()),
        "term": status.get("raft_term", node.raftCurrentTerm),
        "has_quorum": status.get("has_quorum"),
        "commit_idx": status.get("commit_idx"),
        "last_applied": status.get("last_applied"),
        "count": node.count,
        "total_bytes": node.total_bytes,
    }


def node_main(self_addr: str, partners: list[str]) -> None:
    """One PySyncObj node; JSON requests on stdin, one JSON reply line each on stdout."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the nodes
    replies: IO[str] = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything else printed goes to stderr
    sys.stdout = sys.stderr
    code = 0
    try:
        import pysyncobj.version

        node = _sink_class()(self_addr, partners)
        node.waitBinded()
        replies.write(json.dumps({"ready": True, "version": pysyncobj.version.VERSION}) + "\n")
        for line in sys.stdin:
            request = json.loads(line)
            cmd = request["cmd"]
            if cmd == "quit":
                break
            if cmd == "status":
                reply = node_status(node)
            elif cmd == "bench":
                reply = node_bench(
                    node,
                    request["size"],
                    request["concurrency"],
                    request["warmup"],
                    request["seconds"],
                )
            else:
                reply = {"error": f"unknown command {cmd!r}"}
            replies.write(json.dumps(reply) + "\n")
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(OSError):
            replies.flush()
        os._exit(code)  # the tick thread is not a daemon; sockets close with the process


# --------------------------------------------------------------------------- cluster


def free_ports(n: int) -> list[int]:
    """n distinct ports that are free on 127.0.0.1 now (all held open until all are chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class NodeProc:
    """A node process and a line-based request/reply channel to it."""

    def __init__(self, python: Path, addr: str, partners: list[str], cwd: str) -> None:
        self.addr = addr
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        self.proc = subprocess.Popen(
            [str(python), "-I", str(SCRIPT), "--node", addr, "--partners", ",".join(partners)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=cwd,
            env=env,
            text=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def receive(self, timeout: float) -> dict:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"node {self.addr}: no reply within {timeout:.0f} s") from None
        if line is None:
            raise RuntimeError(f"node {self.addr} exited (code {self.proc.wait()})")
        return json.loads(line)

    def send(self, request: dict) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()

    def request(self, request: dict, timeout: float = REPLY_TIMEOUT_S) -> dict:
        self.send(request)
        return self.receive(timeout)

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                with contextlib.suppress(OSError):
                    self.send({"cmd": "quit"})
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=2.0)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for stream in (self.proc.stdin, self.proc.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()


class Cluster:
    """NODES fresh node processes in a fresh temporary directory; closed on every path.

    PySyncObj connects only from the node with the greater address (as a string) to the
    smaller one and retries a refused connection only after ``connectionRetryTime`` (5 s),
    so the nodes start one after another in ascending address order, each once the previous
    one has bound its port.
    """

    def __init__(self, python: Path, n: int = NODES) -> None:
        self.python = python
        self.n = n
        self.nodes: list[NodeProc] = []
        self.workdir: str | None = None
        self.version = ""

    def __enter__(self) -> Cluster:
        try:
            self.workdir = tempfile.mkdtemp(prefix="pysyncobj-ref-")
            addrs = sorted(f"127.0.0.1:{port}" for port in free_ports(self.n))
            for addr in addrs:
                partners = [a for a in addrs if a != addr]
                node = NodeProc(self.python, addr, partners, self.workdir)
                self.nodes.append(node)
                hello = node.receive(START_TIMEOUT_S)
                self.version = hello["version"]
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            for node in self.nodes:
                node.close()
        finally:
            # a second pass in case an interrupt cut the first one short
            for node in self.nodes:
                if node.proc.poll() is None:
                    node.proc.kill()
                    node.proc.wait()
            if self.workdir is not None:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def statuses(self) -> list[dict]:
        return [node.request({"cmd": "status"}) for node in self.nodes]

    def wait_leader(self, timeout: float = LEADER_TIMEOUT_S) -> tuple[NodeProc, list[dict]]:
        """The leader node, once every node names it and it reports itself leader."""
        deadline = time.monotonic() + timeout
        while True:
            statuses = self.statuses()
            named = {s["leader"] for s in statuses}
            if len(named) == 1 and None not in named:
                (leader,) = named
                for node, status in zip(self.nodes, statuses, strict=True):
                    if node.addr == leader and status["is_leader"]:
                        return node, statuses
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"no leader among the {self.n} PySyncObj nodes after {timeout:.0f} s: "
                    + json.dumps(statuses)
                )
            time.sleep(0.1)


# --------------------------------------------------------------------------- measurement


def _round(x: float | None, digits: int) -> float | None:
    return None if x is None else round(x, digits)


def measure_point(
    python: Path, size: int, concurrency: int, seconds: float, warmup: float
) -> tuple[dict, str]:
    with Cluster(python) as cluster:
        t0 = time.monotonic()
        leader, before = cluster.wait_leader()
        log(
            f"size={size} C={concurrency}: leader {leader.addr} after "
            f"{time.monotonic() - t0:.1f} s, measuring {warmup:g} s + {seconds:g} s"
        )
        request = {
            "cmd": "bench",
            "size": size,
            "concurrency": concurrency,
            "warmup": warmup,
            "seconds": seconds,
        }
        res = leader.request(request, timeout=warmup + seconds + DRAIN_TIMEOUT_S + 30.0)
        after = cluster.statuses()
        version = cluster.version
    term_before = max(s["term"] for s in before)
    elections = max(s["term"] for s in after) - term_before
    point = {
        "size": size,
        "concurrency": concurrency,
        "rps": round(res["ok"] / res["window_s"], 1),
        "p50_ms": _round(res["p50_ms"], 3),
        "p99_ms": _round(res["p99_ms"], 3),
        "ok": res["ok"],
        "failed": res["failed"],
        "elections": elections,
    }
    log(
        f"size={size} C={concurrency}: {point['rps']} rps, p50 {point['p50_ms']} ms, "
        f"p99 {point['p99_ms']} ms, ok {point['ok']}, failed {point['failed']}, "
        f"elections {elections}; applied per node {[s['count'] for s in after]} "
        f"of {res['completed_total']} completed"
    )
    if res["errors_incl_warmup_and_drain"]:
        log(f"  failures (warm-up, window and drain): {res['errors_incl_warmup_and_drain']}")
    if not res["drained"]:
        log(f"  warning: calls still outstanding {DRAIN_TIMEOUT_S:.0f} s after the window")
    return point, version


def measure(
    python: Path,
    version: str,
    sizes: list[int],
    concurrencies: list[int],
    seconds: float,
    warmup: float,
) -> dict:
    points: list[dict] = []
    for size in sizes:
        for concurrency in concurrencies:
            point, node_version = measure_point(python, size, concurrency, seconds, warmup)
            if node_version != version:
                raise RuntimeError(f"the nodes run pysyncobj {node_version}, not {version}")
            points.append(point)
    return {
        "system": "pysyncobj",
        "version": version,
        "fsync": False,
        "nodes": NODES,
        "settings": "SyncObjConf defaults (in-memory log, batched append entries)",
        "issuer": "leader node process, closed loop, callbacks",
        "cluster": "fresh per point",
        "warmup_s": warmup,
        "seconds": seconds,
        "points": points,
    }


# --------------------------------------------------------------------------- entry points


def run(
    sizes: list[int], concurrencies: list[int], seconds: float, venv: Path | None = None
) -> dict:
    """Run this script in a subprocess (progress on stderr) and return its JSON result."""
    cmd = [
        sys.executable,
        str(SCRIPT),
        "--sizes",
        ",".join(map(str, sizes)),
        "--concurrency",
        ",".join(map(str, concurrencies)),
        "--seconds",
        str(seconds),
    ]
    if venv is not None:
        cmd += ["--venv", str(venv)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        stdout, _ = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.terminate()  # the script stops its nodes on SIGTERM
            try:
                proc.wait(timeout=10.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"{SCRIPT.name} failed with exit code {proc.returncode}")
    lines = stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"{SCRIPT.name} printed no result")
    return json.loads(lines[-1])


def _int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--sizes", type=_int_list, default=[1024, 4096, 16384], help="payload bytes")
    p.add_argument("--concurrency", type=_int_list, default=[1, 32], help="calls outstanding")
    p.add_argument("--seconds", type=float, default=5.0, help="measured seconds per point")
    p.add_argument("--warmup", type=float, default=WARMUP_S, help="warm-up seconds per point")
    p.add_argument("--json-out", type=Path, default=None, help="also write the result here")
    p.add_argument("--venv", type=Path, default=None, help=f"default {DEFAULT_VENV}")
    p.add_argument("--node", default=None, help=argparse.SUPPRESS)  # internal: this node
    p.add_argument("--partners", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.node is not None:
        node_main(args.node, [a for a in args.partners.split(",") if a])
        return 0  # not reached

    signal.signal(signal.SIGTERM, _terminate)  # unwind, so that the nodes are stopped
    python, version = ensure_venv(args.venv or DEFAULT_VENV)
    log(f"pysyncobj {version}, {NODES} nodes, sizes {args.sizes}, concurrency {args.concurrency}")
    result = measure(python, version, args.sizes, args.concurrency, args.seconds, args.warmup)
    if args.json_out is not None:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)

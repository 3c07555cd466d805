"""A cluster of node processes on this machine, kept in one directory.

``DIR/cluster.toml`` describes the cluster; each node ``NAME`` runs as its own detached
process (``python -m graphrep.cli node --config DIR/cluster.toml --name NAME``) with
``DIR/NAME.pid`` and ``DIR/NAME.log`` beside its data in ``DIR/data/NAME``. Nodes listen
on 127.0.0.1 only, each with its HTTP endpoints (``/metrics``, ``/healthz``, ``/readyz``)
on a port of its own (:mod:`graphrep.net.metrics`). :func:`up`, :func:`stop`,
:func:`kill`, :func:`start`, :func:`down` and :func:`status` are what ``graphrep
cluster ...`` runs; :class:`LocalCluster` is the same as a context manager that takes
the whole cluster down on every way out (tests and demos use it, so no process outlives
them).

Every function raises :class:`~graphrep.errors.ClusterError` with one line saying what
is wrong when it cannot do its job (no cluster in DIR, a port in use, a node already
running or not running).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from graphrep.errors import ClusterError, GraphrepError
from graphrep.net.config import ClusterFile, NodeSpec
from graphrep.net.handshake import secrets_in
from graphrep.sansio import MS

__all__ = ["LocalCluster", "down", "health", "kill", "leader_of", "leader_row",
           "not_converged", "pid_of", "running", "start", "status", "stop", "up",
           "wait_for_leaders"]

CONFIG = "cluster.toml"

LIVE_PROTOCOL = {"max_inflight": 4, "snapshot_every": 16384,
                 "election_timeout_ns": (1000 * MS, 2000 * MS), "tick_ns": 50 * MS}
"""What :func:`up` writes into ``[protocol]`` unless told otherwise (the simulator's
defaults stay as they are):

* ``max_inflight = 4``: up to 4 Appends with entries in flight per follower; entries
  that arrive meanwhile leave together in the message the next acknowledgement releases.
  On 3 local processes (32-d, 3,000 writes at 32 outstanding) that took 861 writes/s to
  1,096, p50 35 ms to 26; one write at a time is unchanged (3.7 ms).
* ``snapshot_every = 16384`` committed entries (etcd snapshots every 10,000 or more):
  a snapshot serialises and stores the whole index, so at 100k x 128 taking one every
  2,048 entries cost half the write throughput (``experiments/live_bench.py``, 16
  outstanding: 288 writes/s and 1.4 ms of follower CPU per write, against 535 and 0.5).
  The price: up to 16k entries kept in the log and applied again on a restart.
* ``election_timeout_ms = [1000, 2000]`` (etcd's default election timeout is 1 s): a
  node's loop does one thing at a time, and a new leader first rebuilds its index from
  its snapshot and log (about 0.5 s at 100k x 128, or 4k deltas of 16 KB). With the
  simulator's 150-300 ms, followers timed out during that rebuild and elected another
  leader, which rebuilt in turn: on 3 local processes writing 16 KB deltas the shard
  went through 60 terms without a leader. A leader that dies is replaced in 1-2 s.
* ``tick_ms = 50``: a leader's heartbeat and retransmission period (20 heartbeats per
  shortest election timeout; etcd sends 10). At 10 ms an idle node spent 9-12% of a
  core on ticks and heartbeats; at 50 ms, 3%."""


def _config(directory: Path) -> ClusterFile:
    path = Path(directory) / CONFIG
    if not path.exists():
        raise ClusterError(f"no cluster in {directory} (no {CONFIG}); create one with "
                           f"`graphrep cluster up --dir {directory}`")
    return ClusterFile.load(path)


def pid_of(directory: Path, node: str) -> int | None:
    """The pid of ``node`` if its process is running (a stale pid file is ignored)."""
    path = Path(directory) / f"{node}.pid"
    try:
        pid = int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None
    if state == "Z" or b"node" not in cmdline or node.encode() not in cmdline:
        return None  # a zombie, or the pid was reused by another program
    return pid


def running(directory: Path) -> dict[str, int]:
    cfg = _config(directory)
    return {n: pid for n in sorted(cfg.nodes) if (pid := pid_of(directory, n)) is not None}


def _port_free(port: int) -> bool:
    """Whether a node could listen on ``port`` (as it does, with SO_REUSEADDR: a port
    whose old connections linger in TIME_WAIT after a kill is free)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(n: int) -> list[int]:
    """``n`` ports the OS reports free now (bound to port 0, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _spawn(directory: Path, node: str) -> int:
    directory = Path(directory)
    log = open(directory / f"{node}.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "graphrep.cli", "node", "--config",
             str(directory / CONFIG), "--name", node],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    finally:
        log.close()
    (directory / f"{node}.pid").write_text(f"{proc.pid}\n")
    _children[proc.pid] = proc
    return proc.pid


_children: dict[int, subprocess.Popen] = {}
"""Processes this process started: polled so that they do not linger as zombies."""


def _reap() -> None:
    for pid, proc in list(_children.items()):
        if proc.poll() is not None:
            del _children[pid]


def up(directory: str | Path, *, nodes: int = 3, shards: int = 1, port: int | None = None,
       dim: int = 32, replication: int | None = None, policy: str = "leader",
       concern: str = "majority", protocol: dict[str, Any] | None = None,
       wait: float = 120.0, tls: dict[str, Path] | None = None,
       metrics_port: int | None = None, regions: list[str] | None = None,
       delays: dict[str, dict[str, list[float]]] | None = None,
       prepare: Callable[[ClusterFile], None] | None = None) -> ClusterFile:
    """Write ``DIR/cluster.toml`` for ``nodes`` nodes (ports ``port, port+1, ...``, or
    ports the OS picks; their metrics endpoints on ``metrics_port, metrics_port+1, ...``,
    or ports the OS picks), start every node, and wait until every shard has a leader.
    ``regions`` are given to the nodes in turn (n1 the first, n2 the second...), every
    shard may live in all of them, and ``delays`` (``{"eu": {"us": [40, 2]}}``, ms) are
    the one-way delays between them. ``prepare(cfg)`` runs after the file is written
    and before any node starts (a benchmark seeds the nodes' stores there)."""
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / CONFIG).exists() and running(directory):
        raise ClusterError(f"a cluster is already running in {directory} (nodes "
                           f"{sorted(running(directory))}); `graphrep cluster down --dir "
                           f"{directory}` first")
    picked = _free_ports((0 if port else nodes) + (0 if metrics_port else nodes))
    ports = list(range(port, port + nodes)) if port else picked[:nodes]
    for p in ports:
        if not _port_free(p):
            raise ClusterError(f"port {p} on 127.0.0.1 is in use; choose another --port")
    http = (list(range(metrics_port, metrics_port + nodes)) if metrics_port
            else picked[-nodes:])
    for p in http:
        if p in ports:
            raise ClusterError(f"metrics port {p} is also a node's port; choose another "
                               "--metrics-port")
        if not _port_free(p):
            raise ClusterError(f"port {p} on 127.0.0.1 is in use; choose another "
                               "--metrics-port")
    names = [f"n{i + 1}" for i in range(nodes)]
    security = secrets_in(directory / "secrets")  # an earlier up's, or new ones
    regions = list(regions or ["local"])
    cfg = ClusterFile(
        cluster=f"graphrep-{os.urandom(4).hex()}",
        nodes={n: NodeSpec(n, f"127.0.0.1:{p}", regions[i % len(regions)],
                           metrics=f"127.0.0.1:{h}")
               for i, (n, p, h) in enumerate(zip(names, ports, http, strict=True))},
        shards={s: tuple(dict.fromkeys(regions)) for s in range(shards)}, dim=dim,
        data_dir=directory / "data", replication=replication or min(3, nodes),
        policy=policy, concern=concern, protocol={**LIVE_PROTOCOL, **(protocol or {})},
        security=security, tls=tls or {}, delays=delays or {})
    cfg.dump(directory / CONFIG)
    cfg = ClusterFile.load(directory / CONFIG)
    if prepare is not None:
        prepare(cfg)
    try:
        for n in names:
            _spawn(directory, n)
        wait_for_leaders(directory, timeout=wait)
    except BaseException:
        down(directory)
        raise
    return cfg


def tls_dir(directory: str | Path) -> dict[str, Path]:
    """The ``[tls]`` files in ``directory``: ``ca.pem``, ``node.pem``, ``node.key``."""
    directory = Path(directory).resolve()
    files = {"ca": directory / "ca.pem", "cert": directory / "node.pem",
             "key": directory / "node.key"}
    missing = [p.name for p in files.values() if not p.is_file()]
    if missing:
        raise ClusterError(f"{directory} has no {', '.join(missing)}: it holds the CA "
                           "(ca.pem), the nodes' certificate (node.pem) and its key "
                           "(node.key)")
    return files


def wait_for_leaders(directory: str | Path, timeout: float = 60.0,
                     nodes: list[str] | None = None) -> dict[str, Any]:
    """Wait until every shard has a leader that the other replicas follow (and, with
    ``nodes``, those nodes answer); returns the last status. Raises
    :class:`ClusterError` naming the node whose process died, or what was missing."""
    from graphrep.net.client import SyncClient

    directory = Path(directory)
    cfg = _config(directory)
    deadline = time.monotonic() + timeout
    missing = "no node answered"
    with SyncClient(cfg, timeout=2.0, attempt_timeout=0.5) as client:
        while time.monotonic() < deadline:
            for n in nodes or []:
                if pid_of(directory, n) is None:
                    raise ClusterError(f"node {n} exited; see {directory / (n + '.log')}:\n"
                                       + _tail(directory / f"{n}.log"))
            st = client.status(timeout=1.0, digest=False)
            missing = _leaderless(cfg, st, nodes)
            if not missing:
                return st
            time.sleep(0.1)
    raise ClusterError(f"the cluster in {directory} is not ready after {timeout:.0f} s: "
                       f"{missing}; see the node logs in {directory}")


def _leaderless(cfg: ClusterFile, st: dict[str, Any], nodes: list[str] | None) -> str:
    up_nodes = {n: s for n, s in st["nodes"].items() if s.get("up")}
    for n in nodes or sorted(cfg.nodes):
        if n not in up_nodes:
            return f"node {n} does not answer"
    for p in cfg.placement():
        leaders = {row["leader"] for n in p.replicas if n in up_nodes
                   for row in up_nodes[n]["shards"] if row["shard"] == p.shard}
        roles = [row["role"] for n in p.replicas if n in up_nodes
                 for row in up_nodes[n]["shards"] if row["shard"] == p.shard]
        if "leader" not in roles or "" in leaders or len(leaders) != 1:
            return f"shard {p.shard} has no leader yet"
    return ""


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _check_node(directory: Path, node: str) -> ClusterFile:
    cfg = _config(directory)
    if node not in cfg.nodes:
        raise ClusterError(f"no node {node!r} in {directory / CONFIG}; nodes: "
                           f"{sorted(cfg.nodes)}")
    return cfg


def stop(directory: str | Path, node: str, timeout: float = 10.0) -> None:
    """SIGTERM ``node`` and wait for it to exit (SIGKILL after ``timeout``)."""
    directory = Path(directory)
    _check_node(directory, node)
    pid = pid_of(directory, node)
    if pid is None:
        raise ClusterError(f"node {node} is not running")
    _signal_and_wait(pid, signal.SIGTERM, timeout)
    (directory / f"{node}.pid").unlink(missing_ok=True)


def kill(directory: str | Path, node: str) -> None:
    """SIGKILL ``node`` (no chance to finish anything)."""
    directory = Path(directory)
    _check_node(directory, node)
    pid = pid_of(directory, node)
    if pid is None:
        raise ClusterError(f"node {node} is not running")
    _signal_and_wait(pid, signal.SIGKILL, 5.0)
    (directory / f"{node}.pid").unlink(missing_ok=True)


def start(directory: str | Path, node: str, wait: float = 0.0) -> int:
    """Start ``node`` again (from its store); with ``wait``, until it answers and its
    shards have leaders."""
    directory = Path(directory).resolve()
    cfg = _check_node(directory, node)
    pid = pid_of(directory, node)
    if pid is not None:
        raise ClusterError(f"node {node} is already running (pid {pid})")
    spec = cfg.nodes[node]
    for what, address in (("port", spec.address), ("metrics port", spec.metrics)):
        if address:
            _, port = address.rsplit(":", 1)
            if not _port_free(int(port)):
                raise ClusterError(f"{what} {port} of node {node} is in use")
    pid = _spawn(directory, node)
    if wait:
        wait_for_leaders(directory, timeout=wait, nodes=[node])
    return pid


def down(directory: str | Path, timeout: float = 10.0) -> list[str]:
    """Stop every node of the cluster in ``directory`` (SIGTERM, then SIGKILL whichever
    has not exited ``timeout`` seconds later)."""
    directory = Path(directory)
    stopped = []
    pids = running(directory)
    for pid in pids.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for node, pid in pids.items():
        # one SIGTERM only: a second one, pending when the node's signal handler is
        # removed at the end of its graceful stop, would kill it before it closes its store
        _wait_or_kill(pid, max(deadline - time.monotonic(), 0.0))
        (directory / f"{node}.pid").unlink(missing_ok=True)
        stopped.append(node)
    _reap()
    return stopped


def _signal_and_wait(pid: int, sig: int, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    _wait_or_kill(pid, timeout)


def _wait_or_kill(pid: int, timeout: float) -> None:
    """Wait until ``pid`` has exited; SIGKILL it if it has not within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap()
        if not _alive(pid):
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    while _alive(pid):
        _reap()
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    proc = _children.get(pid)
    if proc is not None:
        return proc.poll() is None
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def leader_of(st: dict[str, Any], shard: int = 0) -> str | None:
    """The node a status (:meth:`Client.status <graphrep.net.client.Client.status>`)
    names as the leader of ``shard``, or None."""
    for name, s in sorted(st["nodes"].items()):
        for row in s.get("shards", []):
            if row["shard"] == shard and row["role"] == "leader":
                return name
    return None


def leader_row(st: dict[str, Any]) -> tuple[str, dict] | None:
    """Of a status of a one-shard cluster: the one node that answers as leader and its
    shard row, or None unless exactly one does."""
    rows = [(n, s["shards"][0]) for n, s in st["nodes"].items()
            if s.get("up") and s["shards"][0]["role"] == "leader"]
    return rows[0] if len(rows) == 1 else None


def not_converged(st: dict[str, Any]) -> str:
    """Why a status (with digests) of a one-shard cluster is not converged, or ""
    once every node answers, one leads, all have committed and applied what it
    committed, and their digests agree."""
    down = [n for n, s in st["nodes"].items() if not s.get("up")]
    if down:
        return f"{down} do not answer"
    leader = leader_row(st)
    if leader is None:
        return "no single leader"
    commit = leader[1]["commit"]
    rows = {n: s["shards"][0] for n, s in st["nodes"].items()}
    behind = {n: (r["commit"], r["applied"]) for n, r in rows.items()
              if r["commit"] != commit or r["applied"] != commit}
    if behind:
        return f"leader {leader[0]} committed {commit}; (commit, applied) elsewhere {behind}"
    if len({r["digest"] for r in rows.values()}) != 1:
        return f"digests differ: { {n: r['digest'][:12] for n, r in rows.items()} }"
    return ""


def health(spec: NodeSpec, timeout: float = 1.0) -> dict[str, Any]:
    """What node ``spec``'s HTTP endpoints say: ``metrics_url`` (None without a metrics
    address), ``healthy`` (``/healthz`` answered 200), ``ready`` (``/readyz`` answered
    200) and ``not_ready`` (why not, one line; ``""`` when ready). Without a metrics
    address, ``healthy`` and ``ready`` are None (unknown)."""
    out: dict[str, Any] = {"metrics_url": spec.metrics_url, "healthy": None,
                           "ready": None, "not_ready": ""}
    if not spec.metrics:
        out["not_ready"] = "no metrics address in the cluster file"
        return out
    base = f"http://{spec.metrics}"
    for path, key in (("/healthz", "healthy"), ("/readyz", "ready")):
        code, text = _get(base + path, timeout)
        out[key] = code == 200
        if code != 200:
            out["ready"] = False
            out["not_ready"] = text if code else f"no answer from {base}{path}: {text}"
            break
    return out


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""Opens URLs without the proxies the environment may name: the nodes are local."""


def _get(url: str, timeout: float) -> tuple[int, str]:
    """``(status, first line of the body)``, or ``(0, why)`` if nothing answered."""
    try:
        with _DIRECT.open(url, timeout=timeout) as reply:
            return reply.status, reply.read(512).decode(errors="replace").strip()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(512).decode(errors="replace").strip()
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(getattr(exc, "reason", exc))


def status(directory: str | Path, digest: bool = True) -> dict[str, Any]:
    """Per node: up or down, pid, its shards (role, term, commit, applied, lag in
    entries behind the shard's leader, digest), and what its HTTP endpoints say
    (:func:`health`: ``metrics_url``, ``healthy``, ``ready``, ``not_ready``)."""
    from graphrep.net.client import SyncClient

    directory = Path(directory)
    cfg = _config(directory)
    with SyncClient(cfg, timeout=2.0, attempt_timeout=1.0) as client:
        st = client.status(timeout=1.0, digest=digest)
    commit = {}
    for s in st["nodes"].values():
        for row in s.get("shards", []):
            if row["role"] == "leader":
                commit[row["shard"]] = max(commit.get(row["shard"], 0), row["commit"])
    for name, s in st["nodes"].items():
        s["pid"] = pid_of(directory, name)
        for row in s.get("shards", []):
            row["lag"] = max(commit.get(row["shard"], row["applied"]) - row["applied"], 0)
        if name in cfg.nodes:
            s.update(health(cfg.nodes[name]))
    return st


class LocalCluster:
    """``with LocalCluster(dir, nodes=3, ...) as cluster:``: :func:`up` on entry,
    :func:`down` on every exit (an exception or an interrupt included)."""

    def __init__(self, directory: str | Path, **kwargs: Any) -> None:
        self.dir = Path(directory).resolve()
        self.kwargs = kwargs
        self.cfg: ClusterFile | None = None

    def __enter__(self) -> LocalCluster:
        self.cfg = up(self.dir, **self.kwargs)
        return self

    def __exit__(self, *exc: Any) -> None:
        with contextlib.suppress(GraphrepError, OSError):
            down(self.dir)
        # the last resort: nothing this object started may outlive it
        for proc in list(_children.values()):
            if proc.poll() is None and str(self.dir) in " ".join(map(str, proc.args)):
                proc.kill()
                proc.wait()
        _reap()

    @property
    def config_path(self) -> Path:
        return self.dir / CONFIG

    def kill(self, node: str) -> None:
        kill(self.dir, node)

    def stop(self, node: str) -> None:
        stop(self.dir, node)

    def start(self, node: str, wait: float = 60.0) -> None:
        start(self.dir, node, wait=wait)

    def status(self) -> dict[str, Any]:
        return status(self.dir)

    def leader(self, shard: int = 0) -> str | None:
        return leader_of(status(self.dir, digest=False), shard)


"""``graphrep cluster ...`` as a user runs it (a subprocess per command): the lifecycle of
a local cluster, ``status --json``, and every refusal as one clear line on stderr with a
non-zero exit. Every cluster started here is taken down in a ``finally`` (and any node
process left over is killed)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from graphrep.net import ClusterFile, local

GRAPHREP = [sys.executable, "-m", "graphrep.cli"]


def graphrep(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([*GRAPHREP, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def refused(run: subprocess.CompletedProcess, *phrases: str) -> str:
    """``run`` failed with one line on stderr (``graphrep: error: ...``) that contains
    every phrase, and printed nothing on stdout; returns the line."""
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2, (run.returncode, run.stdout, run.stderr)
    assert len(lines) == 1 and lines[0].startswith("graphrep: error: "), run.stderr
    assert run.stdout == "", run.stdout
    for phrase in phrases:
        assert phrase in lines[0], (phrase, lines[0])
    return lines[0]


def _kill_leftovers(directory: Path) -> list[int]:
    """SIGKILL any node process whose command line names ``directory``'s cluster file."""
    config = str(directory.resolve() / local.CONFIG).encode()
    killed = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (config in (entry / "cmdline").read_bytes().split(b"\0")
                        and _running(int(entry.name))):
                    os.kill(int(entry.name), signal.SIGKILL)
                    killed.append(int(entry.name))
    return killed


@contextlib.contextmanager
def cluster_dir(directory: Path):
    """A directory for a cluster that is taken down on every way out."""
    try:
        yield directory
    finally:
        if (directory / local.CONFIG).exists():
            graphrep("cluster", "down", "--dir", directory, timeout=60)
        leftovers = _kill_leftovers(directory)
        assert not leftovers, f"node processes outlived `cluster down`: {leftovers}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One 3-node cluster for the tests of this module that need one running."""
    with cluster_dir(tmp_path_factory.mktemp("local") / "c") as directory:
        run = graphrep("cluster", "up", "--dir", directory, "--dim", "8")
        assert run.returncode == 0, run.stderr
        lines = run.stdout.splitlines()
        assert lines[0].startswith("cluster graphrep-") and lines[0].endswith(
            f"is up: {directory}/cluster.toml")
        assert [line.split()[0] for line in lines[1:]] == ["n1", "n2", "n3"]
        yield directory


# ---------------------------------------------------------------------- refusals


def test_status_without_a_cluster(tmp_path):
    refused(graphrep("cluster", "status", "--dir", tmp_path), f"no cluster in {tmp_path}",
            "graphrep cluster up --dir")
    refused(graphrep("cluster", "stop", "n1", "--dir", tmp_path / "nowhere"), "no cluster")
    refused(graphrep("load", "--dir", tmp_path, "--writes", "1"), "no cluster")
    assert list(tmp_path.iterdir()) == []  # nothing was created


def test_up_on_a_port_in_use(tmp_path):
    with socket.socket() as busy, cluster_dir(tmp_path / "c") as directory:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        if port > 65000 - 3:
            pytest.skip(f"the OS gave port {port}, above what --port takes")
        line = refused(graphrep("cluster", "up", "--dir", directory, "--port", port),
                       f"port {port} on 127.0.0.1 is in use", "--port")
        assert not (directory / local.CONFIG).exists(), line
        assert not list(directory.glob("*.pid"))


def test_up_when_already_running(cluster):
    refused(graphrep("cluster", "up", "--dir", cluster), "already running",
            f"graphrep cluster down --dir {cluster}")
    assert graphrep("cluster", "status", "--dir", cluster).returncode == 0  # still up


def test_start_a_running_node(cluster):
    pid = local.pid_of(cluster, "n1")
    refused(graphrep("cluster", "start", "n1", "--dir", cluster),
            f"node n1 is already running (pid {pid})")
    assert local.pid_of(cluster, "n1") == pid


def test_unknown_node(cluster):
    for action in ("stop", "kill", "start"):
        refused(graphrep("cluster", action, "n9", "--dir", cluster), "no node 'n9'",
                "['n1', 'n2', 'n3']")


def test_status_json(cluster):
    run = graphrep("cluster", "status", "--json", "--dir", cluster)
    assert run.returncode == 0, run.stderr
    assert len(run.stdout.strip().splitlines()) == 1
    st = json.loads(run.stdout)
    assert st["cluster"].startswith("graphrep-")
    assert sorted(st["nodes"]) == ["n1", "n2", "n3"]
    roles = []
    for name, node in st["nodes"].items():
        assert node["up"] is True and node["pid"] == local.pid_of(cluster, name)
        assert node["metrics_url"].startswith("http://127.0.0.1:")
        assert node["metrics_url"].endswith("/metrics")
        assert (node["healthy"], node["ready"], node["not_ready"]) == (True, True, "")
        (shard,) = node["shards"]
        assert {"shard", "role", "term", "commit", "applied", "lag", "digest"} <= set(shard)
        assert shard["shard"] == 0 and shard["lag"] >= 0 and len(shard["digest"]) == 64
        roles.append(shard["role"])
    assert sorted(roles) == ["follower", "follower", "leader"]


# ---------------------------------------------------------------------- the lifecycle


def _running(pid: int) -> bool:
    """Whether ``pid`` is a process that has not exited (a zombie has)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _status(directory: Path) -> tuple[int, dict]:
    run = graphrep("cluster", "status", "--json", "--dir", directory)
    return run.returncode, json.loads(run.stdout)


def test_kill_stop_start_load_and_down(cluster):
    run = graphrep("load", "--dir", cluster, "--writes", "60", "--deletes", "6")
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert (summary["acknowledged"], summary["failed"]) == (66, 0)

    run = graphrep("cluster", "kill", "n2", "--dir", cluster)
    assert (run.returncode, run.stdout) == (0, "kill: n2\n"), run.stderr
    code, st = _status(cluster)
    n2 = st["nodes"]["n2"]
    assert code == 1 and {k: n2[k] for k in ("name", "up", "pid", "healthy", "ready")} == {
        "name": "n2", "up": False, "pid": None, "healthy": False, "ready": False}
    address = ClusterFile.load(cluster / local.CONFIG).nodes["n2"].metrics
    assert n2["not_ready"].startswith(f"no answer from http://{address}/healthz")
    assert "shards" not in n2
    text = graphrep("cluster", "status", "--dir", cluster)
    assert text.returncode == 1 and any(line.split() == ["n2", "down", "no"]
                                        for line in text.stdout.splitlines())
    refused(graphrep("cluster", "kill", "n2", "--dir", cluster), "node n2 is not running")
    refused(graphrep("cluster", "stop", "n2", "--dir", cluster), "node n2 is not running")

    run = graphrep("cluster", "start", "n2", "--dir", cluster)
    assert (run.returncode, run.stdout) == (0, "start: n2\n"), run.stderr
    deadline = time.monotonic() + 60
    while True:  # it answers at once; it catches up with the 66 writes soon after
        code, st = _status(cluster)
        lags = {n: s["shards"][0]["lag"] for n, s in st["nodes"].items() if s["up"]}
        if code == 0 and set(lags.values()) == {0}:
            break
        assert time.monotonic() < deadline, st
        time.sleep(0.2)
    assert len({s["shards"][0]["digest"] for s in st["nodes"].values()}) == 1
    assert [s["shards"][0]["size"] for s in st["nodes"].values()] == [54] * 3  # 60 - 6

    run = graphrep("cluster", "stop", "n3", "--dir", cluster)
    assert (run.returncode, run.stdout) == (0, "stop: n3\n"), run.stderr
    assert (cluster / "n3.log").read_text().rstrip().endswith("n3: stopped")
    assert graphrep("cluster", "start", "n3", "--dir", cluster).returncode == 0


def test_down_then_status(cluster):
    """Last in this module: it takes the shared cluster down."""
    pids = local.running(cluster)
    assert sorted(pids) == ["n1", "n2", "n3"]
    run = graphrep("cluster", "down", "--dir", cluster)
    assert (run.returncode, run.stdout) == (0, "stopped n1, n2, n3\n"), run.stderr
    assert local.running(cluster) == {} and not list(cluster.glob("*.pid"))
    assert not any(_running(pid) for pid in pids.values())
    for n in pids:  # gracefully: each closed its store and said so
        assert (cluster / f"{n}.log").read_text().rstrip().endswith(f"{n}: stopped")
        assert sorted(p.name for p in (cluster / "data" / n).iterdir()) == ["store.sqlite3"]
    code, st = _status(cluster)
    assert code == 1 and all(not s["up"] for s in st["nodes"].values())
    run = graphrep("cluster", "down", "--dir", cluster)
    assert (run.returncode, run.stdout) == (0, "stopped nothing (no node was running)\n")

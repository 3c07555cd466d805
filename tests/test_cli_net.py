"""The live runtime's commands refuse what they cannot do with one line on stderr and a
non-zero exit, before doing any of it: ``graphrep load`` (no cluster, nobody answering,
a dataset of another dimension, more deletes than writes), ``graphrep node`` (no
cluster file, a name not in it) and the live ``graphrep demo``. No node is started
here (``tests/net/test_local.py`` runs clusters)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from graphrep.net.config import ClusterFile, NodeSpec

GRAPHREP = [sys.executable, "-m", "graphrep.cli"]


def graphrep(*args: object, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*GRAPHREP, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def one_line_error(run: subprocess.CompletedProcess, *phrases: str) -> str:
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2, (run.returncode, run.stdout, run.stderr)
    assert len(lines) == 1, run.stderr
    assert run.stdout == ""
    for phrase in phrases:
        assert phrase in lines[0], (phrase, lines[0])
    return lines[0]


@pytest.fixture
def silent_cluster(tmp_path: Path) -> Path:
    """A cluster file whose three nodes are not running (ports nobody listens on)."""
    socks = [socket.socket() for _ in range(3)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    ClusterFile(cluster="silent", dim=8, data_dir=tmp_path / "data",
                nodes={f"n{i + 1}": NodeSpec(f"n{i + 1}", f"127.0.0.1:{p}")
                       for i, p in enumerate(ports)},
                shards={0: ("local",)}).dump(tmp_path / "cluster.toml")
    return tmp_path


def test_load_without_a_cluster(tmp_path):
    one_line_error(graphrep("load", "--dir", tmp_path / "none", "--writes", "5"),
                   "graphrep: error: no cluster in")


def test_load_when_no_node_answers(silent_cluster):
    started = time.monotonic()
    one_line_error(graphrep("load", "--dir", silent_cluster, "--writes", "100"),
                   f"no node of the cluster in {silent_cluster} answers",
                   "graphrep cluster status")
    assert time.monotonic() - started < 30  # not 100 writes waiting out their timeout


def test_load_of_another_dimension(silent_cluster):
    one_line_error(graphrep("load", "--dir", silent_cluster, "--dataset", "fmnist"),
                   "--dataset fmnist has 784 dimensions; the cluster's index has 8")


def test_load_more_deletes_than_writes(silent_cluster):
    one_line_error(graphrep("load", "--dir", silent_cluster, "--writes", "5", "--deletes",
                            "6"), "--deletes 6 exceeds --writes 5")


def test_node_without_its_cluster_file(tmp_path):
    one_line_error(graphrep("node", "--config", tmp_path / "cluster.toml", "--name", "n1"),
                   "no cluster file at")


def test_node_not_in_the_cluster_file(silent_cluster):
    one_line_error(graphrep("node", "--config", silent_cluster / "cluster.toml", "--name",
                            "n9"), "node 'n9' is not in the cluster file",
                   "['n1', 'n2', 'n3']")
    assert not (silent_cluster / "data" / "n9").exists()


def test_live_demo_deletes_only_what_it_inserts(tmp_path):
    one_line_error(graphrep("demo", "--inserts", "30", "--deletes", "31", "--out", tmp_path),
                   "the live demo deletes vectors it inserts; at most --inserts 30")

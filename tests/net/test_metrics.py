"""Metrics and health endpoints of live nodes (``graphrep.net.metrics``).

* Unit level, sans IO: a node's ``ShardHost`` driven by hand through an election, a
  write left waiting and a change of term; its registry (with a stand-in driver)
  exposes the expected names with the values that state implies, parsed back from the
  exposition text; the readiness rule on stand-in replicas.
* The cluster file's ``metrics`` address (written, read back, refused when bad), and a
  metrics port in use: ``cluster start`` refuses it, a node process exits 2 saying so.
* One node in this process (real TCP, a real driver): bad HTTP input (garbage, an
  oversized head, a client that stalls, more connections than allowed) closes that
  connection only, within its deadline, while the node keeps taking writes.
* Three node processes (``LocalCluster``): ``/metrics`` scraped while a client writes,
  counters that move, follower lag back to 0 after the writes and after a follower's
  restart, ``/healthz`` and ``/readyz``, garbage to a node's port. Every process is
  taken down on every way out (``LocalCluster``'s exit).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from graphrep.errors import ClusterError, ConfigError
from graphrep.net import Client, ClusterFile, NodeSpec, SyncClient, build_node, local
from graphrep.net.local import LocalCluster
from graphrep.net.metrics import MetricsServer, NodeMetrics, ObservedHost
from graphrep.net.node import warm_up
from graphrep.net.store import SQLiteStore
from graphrep.net.transport import TCPTransport
from graphrep.protocol.config import ReplicaConfig
from graphrep.protocol.messages import Append, ClientWrite, RequestVote, VoteReply

DIM = 8

Samples = dict[str, dict[frozenset, float]]


@pytest.fixture(scope="module", autouse=True)
def _kernels() -> None:
    warm_up(DIM)  # compile (or load) the index kernels before any timeout matters


def vector(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)


def parse(text: str) -> Samples:
    """Sample name -> {labels: value}, from the Prometheus text format."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return out


def value(samples: Samples, name: str, default: float | None = None,
          **labels: str) -> float:
    """A sample's value (``default`` if given and the sample is absent)."""
    got = samples.get(name, {}).get(frozenset(labels.items()))
    if got is None:
        if default is None:
            raise KeyError((name, labels))
        return default
    return got


# ---------------------------------------------------------------------- sans IO


def stand_in_driver(host: Any, store: SQLiteStore) -> SimpleNamespace:
    """What the collector reads of a ``NodeDriver``, around a host driven by hand."""
    return SimpleNamespace(name="n1", cluster="graphrep-test", process=host, store=store,
                           links={}, clients={}, metrics={}, counters={})


NAMES = {
    "graphrep_node_info", "graphrep_ready", "graphrep_is_leader", "graphrep_has_leader",
    "graphrep_term", "graphrep_commit_position", "graphrep_applied_position",
    "graphrep_log_end_position", "graphrep_index_vectors", "graphrep_proposals_pending",
    "graphrep_leader_changes_seen_total", "graphrep_proposals_committed_total",
    "graphrep_proposals_failed_total", "graphrep_snapshots_taken_total",
    "graphrep_snapshots_installed_total", "graphrep_snapshot_sent_bytes_total",
    "graphrep_apply_failures_total", "graphrep_anti_entropy_mismatches_total",
    "graphrep_follower_regressions_total", "graphrep_protocol_errors_total",
    "graphrep_wal_fsync_duration_seconds_bucket", "graphrep_wal_fsync_duration_seconds_count",
    "graphrep_wal_fsync_duration_seconds_sum", "graphrep_store_rows_written_total",
    "graphrep_store_size_bytes", "graphrep_peers_connected", "graphrep_clients_connected",
    "graphrep_refused_hellos_total", "graphrep_refused_handshakes_total",
    "graphrep_abandoned_handshakes_total", "graphrep_tls_refused_total",
    "graphrep_denied_writes_total", "graphrep_busy_replies_total",
    "graphrep_busy_connections_total", "graphrep_expired_requests_total",
    "graphrep_residency_refused_total", "graphrep_handshakes_refused_by_peer_total",
    "graphrep_malformed_frames_total", "graphrep_connection_timeouts_total",
    "graphrep_dropped_sends_total", "graphrep_loop_stalls_total",
    "graphrep_loop_stall_max_seconds", "graphrep_http_requests_total",
    "graphrep_http_rejected_total", "process_cpu_seconds_total",
}
"""Every node exposes these (a leader adds graphrep_follower_lag_entries, a node with
peers graphrep_peer_*)."""


def test_a_hosts_registry_follows_an_election_a_failed_write_and_new_terms(tmp_path):
    host = ObservedHost("n1", {}, [ReplicaConfig(replicas=("n1", "n2", "n3"), dim=DIM,
                                                 shard=0)],
                        lambda shard: np.random.default_rng(shard))
    store = SQLiteStore(tmp_path / "store.sqlite3")
    metrics = NodeMetrics(stand_in_driver(host, store))
    r = host.replicas[0]

    def scrape() -> Samples:
        return parse(metrics.exposition()[0].decode())

    try:
        host.on_start(0)
        s = scrape()
        assert set(s) >= NAMES, NAMES - set(s)
        assert value(s, "graphrep_node_info", cluster="graphrep-test", node="n1") == 1
        assert value(s, "graphrep_has_leader", shard="0") == 0
        assert value(s, "graphrep_ready") == 0
        assert metrics.readiness() == "shard 0 knows no leader in term 0 (follower)"

        host.on_timer(10**12, (0, "tick"))  # no leader heard: stands in term 1
        assert r.role == "candidate" and r.term == 1
        host.on_decoded(10**12, "n2", VoteReply(0, 1, True))  # a majority: leads
        assert r.role == "leader" and r.end == 1  # its NOOP
        write = ClientWrite(0, 1, "insert", 7, vector(7).astype("<f4").tobytes(),
                            "majority")
        host.on_decoded(10**12, "c1", write)
        s = scrape()
        for name, want in (("graphrep_is_leader", 1), ("graphrep_has_leader", 1),
                           ("graphrep_term", 1), ("graphrep_log_end_position", 2),
                           ("graphrep_commit_position", 0), ("graphrep_index_vectors", 1),
                           ("graphrep_proposals_pending", 1),
                           ("graphrep_leader_changes_seen_total", 1)):
            assert value(s, name, shard="0") == want, name
        for follower in ("n2", "n3"):  # neither has acknowledged anything
            assert value(s, "graphrep_follower_lag_entries", shard="0",
                         follower=follower) == 2
        assert value(s, "graphrep_ready") == 1 and metrics.readiness() == ""

        # n3 leads term 2: the write waiting for its majority failed here
        host.on_decoded(10**12, "n3", Append(0, 2, "n3", 0, 0, [], 0))
        assert (r.role, r.term, r.leader) == ("follower", 2, "n3")
        s = scrape()
        assert value(s, "graphrep_proposals_failed_total", shard="0") == 1
        assert value(s, "graphrep_leader_changes_seen_total", shard="0") == 2
        assert value(s, "graphrep_is_leader", shard="0") == 0
        assert value(s, "graphrep_proposals_pending", shard="0") == 0
        assert "graphrep_follower_lag_entries" not in s  # only a leader reports it

        # n2 asks for votes in term 3: n3 is still named, but not this term's leader
        host.on_decoded(10**12, "n2", RequestVote(0, 3, "n2", 2, 1))
        assert (r.term, r.leader) == (3, "n3")
        s = scrape()
        assert value(s, "graphrep_has_leader", shard="0") == 0
        assert value(s, "graphrep_term", shard="0") == 3
        assert metrics.readiness() == "shard 0 knows no leader in term 3 (follower)"
        host.on_decoded(10**12, "n2", Append(0, 3, "n2", 0, 0, [], 0))
        s = scrape()
        assert value(s, "graphrep_has_leader", shard="0") == 1
        assert value(s, "graphrep_leader_changes_seen_total", shard="0") == 3
        assert value(s, "graphrep_proposals_failed_total", shard="0") == 1
        assert value(s, "graphrep_wal_fsync_duration_seconds_count") == 0
        metrics.fsync.observe(0.0003)  # what the store does after each commit
        s = scrape()
        assert value(s, "graphrep_wal_fsync_duration_seconds_bucket", le="0.00025") == 0
        assert value(s, "graphrep_wal_fsync_duration_seconds_bucket", le="0.0005") == 1
        metrics.stopping = True
        assert metrics.readiness() == "stopping"
    finally:
        store.close()


def test_the_readiness_rule(tmp_path):
    def replica(role: str, commit: int, applied: int, followers_apply: bool = True
                ) -> SimpleNamespace:
        return SimpleNamespace(role=role, leader="n2", term=4, commit=commit,
                               applied=applied,
                               applier=SimpleNamespace(followers_apply=followers_apply))

    store = SQLiteStore(tmp_path / "store.sqlite3")
    try:
        host = SimpleNamespace(replicas={0: replica("follower", 100, 36),
                                         1: replica("leader", 100, 100)})
        metrics = NodeMetrics(stand_in_driver(host, store))
        assert metrics.readiness() == ""  # 64 behind: ready
        host.replicas[0].applied = 35
        assert metrics.readiness() == ("shard 0 has applied 35 of 100 committed entries "
                                       "(65 behind, more than 64)")
        host.replicas[0].applier.followers_apply = False  # it never applies: not checked
        assert metrics.readiness() == ""
        host.replicas[1].leader = ""
        assert metrics.readiness() == "shard 1 knows no leader in term 4 (leader)"
        metrics.driver.process = None
        assert metrics.readiness() == "starting"
    finally:
        store.close()


# ---------------------------------------------------------------------- the cluster file


def cluster_file(data: Path, **metrics: str) -> ClusterFile:
    return ClusterFile(cluster="graphrep-metrics", data_dir=data, dim=DIM, replication=1,
                       nodes={n: NodeSpec(n, f"127.0.0.1:{7001 + i}", metrics=m)
                              for i, (n, m) in enumerate(sorted(metrics.items()))},
                       shards={0: ("local",)})


def test_the_metrics_address_in_the_cluster_file(tmp_path):
    cfg = cluster_file(tmp_path / "data", n1="127.0.0.1:9101", n2="")
    text = cfg.dump(tmp_path / "cluster.toml").read_text()
    assert 'n1 = { address = "127.0.0.1:7001", region = "local", metrics = "127.0.0.1:9101" }' \
        in text.splitlines()
    assert 'n2 = { address = "127.0.0.1:7002", region = "local" }' in text.splitlines()
    back = ClusterFile.load(tmp_path / "cluster.toml")
    assert back.nodes == cfg.nodes
    assert back.nodes["n1"].metrics_url == "http://127.0.0.1:9101/metrics"
    assert back.nodes["n2"].metrics_url is None
    with pytest.raises(ConfigError, match="host:port"):
        cluster_file(tmp_path, n1="9101")
    with pytest.raises(ConfigError, match=r"metrics on its own address 127\.0\.0\.1:7001"):
        cluster_file(tmp_path, n1="127.0.0.1:7001")


def test_a_metrics_port_in_use_stops_the_node_before_it_starts(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = ClusterFile(cluster="graphrep-metrics", data_dir=tmp_path / "data", dim=DIM,
                          replication=1, shards={0: ("local",)},
                          nodes={"n1": NodeSpec("n1", "127.0.0.1:0",
                                                metrics=f"127.0.0.1:{port}")})
        cfg.dump(tmp_path / local.CONFIG)
        with pytest.raises(ClusterError, match=f"metrics port {port} of node n1 is in use"):
            local.start(tmp_path, "n1")
        assert not (tmp_path / "n1.pid").exists()
        run = subprocess.run([sys.executable, "-m", "graphrep.cli", "node", "--config",
                              str(tmp_path / local.CONFIG), "--name", "n1"],
                             capture_output=True, text=True, timeout=120,
                             stdin=subprocess.DEVNULL)
    assert run.returncode == 2, run.stderr
    assert run.stderr.splitlines()[-1] == (f"graphrep node: n1: [Errno 98] cannot serve "
                                           f"metrics on 127.0.0.1:{port}: Address already "
                                           "in use")


# ---------------------------------------------------------------------- one node, in here


async def http(port: int, data: bytes, within: float = 3.0, eof: bool = False) -> bytes:
    """Send ``data`` to 127.0.0.1:``port`` and read until the server closes (a reset
    counts as closed); fails if it does not close within ``within`` seconds."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    got = bytearray()
    try:
        with trio.fail_after(within):
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                if data:
                    await stream.send_all(data)
                if eof:
                    await stream.send_eof()
                while chunk := await stream.receive_some(65536):
                    got += chunk
    finally:
        await stream.aclose()
    return bytes(got)


@contextlib.asynccontextmanager
async def one_node(tmp_path: Path, **server: Any
                   ) -> AsyncIterator[tuple[Any, MetricsServer, TCPTransport, ClusterFile]]:
    cfg = ClusterFile(cluster="graphrep-metrics", data_dir=tmp_path / "data", dim=DIM,
                      replication=1, nodes={"n1": NodeSpec("n1", "127.0.0.1:0")},
                      shards={0: ("local",)})
    tcp = TCPTransport({"n1": "127.0.0.1:0"})
    driver = build_node(cfg, "n1", transport=tcp)
    srv = MetricsServer(NodeMetrics(driver), "127.0.0.1:0", **server)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(srv.run)
            await nursery.start(driver.run)
            with trio.fail_after(10):
                while srv.metrics.readiness():
                    await trio.sleep(0.01)
            yield driver, srv, tcp, cfg
            nursery.cancel_scope.cancel()
    finally:
        driver.store.close()


@pytest.mark.trio
async def test_bad_http_closes_that_connection_only(tmp_path):
    async with one_node(tmp_path, timeout=0.5, max_request=1024, max_connections=4) as (
            driver, srv, tcp, cfg):
        def rejected(reason: str) -> float:
            return srv.metrics.registry.get_sample_value("graphrep_http_rejected_total",
                                                         {"reason": reason})

        async with Client(cfg, transport=tcp, timeout=5) as client:
            await client.insert(1, vector(1))
            # stalled connections: a request line never finished, and silence
            async with trio.open_nursery() as stalls:
                for data in (b"GET /metrics HTTP/1.1\r\nHost: x", b""):
                    stalls.start_soon(http, srv.port, data)
                started = trio.current_time()
                # meanwhile the node takes writes and the endpoint answers
                await client.insert(2, vector(2))
                assert (await http(srv.port, b"GET /healthz HTTP/1.1\r\n\r\n")).endswith(
                    b"\r\n\r\nok\n")
            assert 0.4 < trio.current_time() - started < 2.0  # closed at the deadline
            assert rejected("timeout") == 2

            garbage = await http(srv.port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n")
            assert garbage.startswith(b"HTTP/1.1 400 Bad Request\r\n")
            assert (await http(srv.port, b"\x00" * 4096)).startswith(b"HTTP/1.1 431 ")
            assert (await http(srv.port, b"GET /metrics HTTP/1.1\r\nAccept x\r\n\r\n")
                    ).startswith(b"HTTP/1.1 400 ")
            assert (await http(srv.port, b"DELETE / HTTP/1.1\r\n\r\n")).startswith(
                b"HTTP/1.1 405 ")
            assert (await http(srv.port, b"GET /metric", eof=True)).startswith(
                b"HTTP/1.1 400 ")  # cut short
            assert (await http(srv.port, b"GET /nope HTTP/1.0\r\n\r\n")).startswith(
                b"HTTP/1.1 404 ")
            assert (await http(srv.port, b"", eof=True)) == b""  # nothing asked
            assert rejected("malformed") == 3
            assert rejected("oversized") == 1
            assert rejected("method") == 1

            # more connections than allowed: the extra ones are closed at once
            async with trio.open_nursery() as stalls:
                for _ in range(4):
                    stalls.start_soon(http, srv.port, b"GET")
                await trio.sleep(0.1)
                assert await http(srv.port, b"GET /healthz HTTP/1.1\r\n\r\n", 0.3) == b""
            assert rejected("busy") >= 1

            head = await http(srv.port, b"HEAD /metrics HTTP/1.1\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n")
            reply = await http(srv.port, b"GET /metrics?x=1 HTTP/1.1\r\nAccept: */*\r\n\r\n")
            status, _, body = reply.partition(b"\r\n\r\n")
            assert b"Content-Type: text/plain; version=0.0.4" in status
            s = parse(body.decode())
            assert value(s, "graphrep_index_vectors", shard="0") == 2
            assert value(s, "graphrep_http_requests_total", path="other") == 1
            assert value(s, "graphrep_http_requests_total", path="/metrics") == 2
            await client.insert(3, vector(3))
            ids, _ = await client.search(vector(3), k=1)
            assert ids.tolist() == [3]
        assert driver.counters.get("frame_errors", 0) == 0


# ---------------------------------------------------------------------- node processes


def get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("metrics") / "c", nodes=3, dim=DIM) as c:
        yield c


def scraper(cluster: LocalCluster) -> Callable[[str], Samples]:
    assert cluster.cfg is not None
    urls = {n: s.metrics_url for n, s in cluster.cfg.nodes.items()}

    def scrape(node: str) -> Samples:
        code, text = get(urls[node])
        assert code == 200, text
        return parse(text)
    return scrape


def until(check: Callable[[], Any], within: float = 20.0) -> Any:
    deadline = time.monotonic() + within
    while not (got := check()):
        assert time.monotonic() < deadline, "not within the deadline"
        time.sleep(0.1)
    return got


def test_scraped_while_writing_counters_move_and_lag_returns_to_zero(cluster):
    scrape = scraper(cluster)
    leader = cluster.leader()
    followers = sorted(set(cluster.cfg.nodes) - {leader})
    for spec in cluster.cfg.nodes.values():
        base = f"http://{spec.metrics}"
        assert get(f"{base}/healthz") == (200, "ok\n")
        assert until(lambda base=base: get(f"{base}/readyz") == (200, "ok\n"), 10)

    def settled() -> dict[str, Samples]:
        now = {n: scrape(n) for n in cluster.cfg.nodes}
        lags = [value(now[leader], "graphrep_follower_lag_entries", shard="0", follower=f)
                for f in followers]
        positions = {(value(s, "graphrep_commit_position", shard="0"),
                      value(s, "graphrep_applied_position", shard="0"))
                     for s in now.values()}
        return now if lags == [0, 0] and len(positions) == 1 else {}

    # Ready does not wait for a follower to learn that the new leader's first entry
    # committed; start counting once every replica has it, or it counts as a write.
    before = until(settled)
    assert value(before[leader], "graphrep_is_leader", shard="0") == 1

    writes, errors = 300, []

    def write(first: int, n: int) -> None:
        try:
            with SyncClient(cluster.cfg, timeout=20) as client:
                for i in range(first, first + n):
                    client.insert(i, vector(i))
        except Exception as exc:  # reported by the test below
            errors.append(exc)

    writer = threading.Thread(target=write, args=(0, writes))
    writer.start()
    committed = []
    try:
        while writer.is_alive():
            s = scrape(leader)
            committed.append(value(s, "graphrep_proposals_committed_total", shard="0"))
            time.sleep(0.05)
    finally:
        writer.join(60)
    assert not errors, errors
    assert len(committed) >= 3 and committed == sorted(committed), committed
    assert committed[-1] > committed[0]

    after = until(settled)
    end = value(after[leader], "graphrep_log_end_position", shard="0")
    for node in cluster.cfg.nodes:
        b, a = before[node], after[node]
        assert value(a, "graphrep_commit_position", shard="0") == end
        assert value(a, "graphrep_index_vectors", shard="0") == writes
        grew = value(a, "graphrep_proposals_committed_total", shard="0") - value(
            b, "graphrep_proposals_committed_total", shard="0")
        assert grew == writes, (node, grew)
        assert (value(a, "graphrep_wal_fsync_duration_seconds_count")
                > value(b, "graphrep_wal_fsync_duration_seconds_count"))
        assert value(a, "graphrep_peers_connected") == 2
        for peer in set(cluster.cfg.nodes) - {node}:
            assert value(a, "graphrep_peer_connected", peer=peer) == 1
        assert value(a, "graphrep_malformed_frames_total") == 0
        assert value(a, "graphrep_proposals_failed_total", shard="0") == 0
    for f in followers:
        sent = value(after[leader], "graphrep_peer_sent_bytes_total", peer=f)
        assert sent - value(before[leader], "graphrep_peer_sent_bytes_total", peer=f) > (
            writes * DIM * 4)  # every vector went to every follower
    assert value(after[leader], "graphrep_store_rows_written_total") > value(
        before[leader], "graphrep_store_rows_written_total")
    # every insert's vector, logged once by the leader, by part
    logged = value(after[leader], "graphrep_logged_bytes_total", shard="0", part="vector")
    assert logged - value(before[leader], "graphrep_logged_bytes_total", shard="0",
                          part="vector", default=0) == writes * DIM * 4
    assert value(after[leader], "graphrep_logged_bytes_total", shard="0", part="edges") > 0
    # requests answered, by op and status; messages by type
    assert value(after[leader], "graphrep_client_request_duration_seconds_count",
                 op="insert", status="ok") >= writes
    for f in followers:
        assert value(after[f], "graphrep_message_bytes_total", direction="received",
                     type="Append") > writes * DIM * 4
        assert value(after[leader], "graphrep_follower_lag_seconds", shard="0",
                     follower=f) == 0
    assert value(after[leader], "graphrep_messages_total", direction="received",
                 type="AppendReply") > 0
    # every write's entry was acknowledged by each follower once, after its append
    lag_count = value(after[leader], "graphrep_replication_lag_seconds_count", shard="0") - \
        value(before[leader], "graphrep_replication_lag_seconds_count", shard="0", default=0)
    assert lag_count == writes * len(followers)
    lag_sum = value(after[leader], "graphrep_replication_lag_seconds_sum", shard="0") - \
        value(before[leader], "graphrep_replication_lag_seconds_sum", shard="0", default=0)
    assert 0 < lag_sum / lag_count < 5.0
    for f in followers:  # followers apply what is committed, timed per batch
        assert value(after[f], "graphrep_apply_duration_seconds_count") > value(
            before[f], "graphrep_apply_duration_seconds_count")

    # a follower stopped misses writes; restarted, it catches up and its lag is 0 again
    gone = followers[0]
    cluster.stop(gone)
    write(writes, 40)
    assert not errors, errors
    s = until(lambda: (s := scrape(leader)) and value(
        s, "graphrep_peer_connected", peer=gone) == 0 and s)
    assert value(s, "graphrep_follower_lag_entries", shard="0", follower=gone) >= 40
    assert value(s, "graphrep_follower_lag_seconds", shard="0", follower=gone) > 0
    assert value(s, "graphrep_follower_lag_entries", shard="0", follower=followers[1]) == 0
    cluster.start(gone)
    after = until(settled)
    assert value(after[gone], "graphrep_index_vectors", shard="0") == writes + 40
    assert value(after[gone], "graphrep_proposals_committed_total", shard="0") >= 40
    assert value(after[gone], "graphrep_commit_position", shard="0") == end + 40
    assert get(f"http://{cluster.cfg.nodes[gone].metrics}/readyz") == (200, "ok\n")


def test_garbage_to_a_node_process_closes_that_connection_only(cluster):
    leader = cluster.leader()
    spec = cluster.cfg.nodes[leader]
    host, port = spec.metrics.rsplit(":", 1)
    for data in (b"\xff\xfe garbage\r\n\r\n", b"A" * 20_000, b"GET / HTTP/9.9\r\n\r\n"):
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                sock.sendall(data)
            got = b""
            with contextlib.suppress(ConnectionResetError):
                while chunk := sock.recv(65536):
                    got += chunk
            assert got.startswith((b"HTTP/1.1 400 ", b"HTTP/1.1 431 ")), got[:80]
    assert get(f"http://{spec.metrics}/healthz") == (200, "ok\n")
    with SyncClient(cluster.cfg, timeout=20) as client:
        client.insert(10_000, vector(10_000))
    s = scraper(cluster)(leader)
    assert value(s, "graphrep_http_rejected_total", reason="malformed") == 2
    assert value(s, "graphrep_http_rejected_total", reason="oversized") == 1
    assert cluster.leader() == leader  # the node served on, and kept its leadership


def test_acknowledged_entries_are_timed_from_their_own_append():
    """``ObservedHost.acknowledged`` splits an acknowledged range into the runs of
    entries appended together, each timed from its own append; entries older than the
    kept append times count from the oldest kept."""
    import collections

    seen: list[tuple[int, float, int]] = []
    host = SimpleNamespace(
        appended={0: collections.deque([(10, 1_000), (13, 2_000), (20, 5_000)])},
        observe_lag=lambda shard, s, n: seen.append((shard, s, n)))
    ack = ObservedHost.acknowledged
    ack(host, 0, 11, 22, 9_000)  # 11-12 appended at 1000, 13-19 at 2000, 20-21 at 5000
    assert seen == [(0, 8e-6, 2), (0, 7e-6, 7), (0, 4e-6, 2)]
    seen.clear()
    ack(host, 0, 4, 12, 9_000)  # 4-9 are older than the kept times: count from 10's
    assert seen == [(0, 8e-6, 8)]
    seen.clear()
    ack(host, 0, 25, 25, 9_000)  # nothing new
    ack(host, 0, 21, 30, 6_000)
    assert seen == [(0, 1e-6, 9)]

"""The live driver running the replication protocol: three ``ShardHost`` nodes built by
:func:`graphrep.net.build_node`, each on its own SQLite store, written to by
:class:`graphrep.net.Client`.

* Over :class:`~graphrep.net.testing.MemoryTransport` under ``trio.testing.MockClock``:
  a leader is elected, writes replicate, the leader crashes (its driver cancelled:
  nothing graceful, unsynced writes lost), writes go on through a new leader, the old
  leader restarts from its store and catches up. The clock jumps with
  :func:`graphrep.net.testing.autojump`, which keeps it still while a store commits in
  its worker thread: with ``MockClock(autojump_threshold=0)`` virtual time would run on
  to the next timer, and the next, while SQLite writes, and elections would time out
  under a node waiting for its vote to be durable (no leader is ever elected).
* Over real TCP on 127.0.0.1 (ports chosen by the OS), through a
  :class:`~graphrep.net.testing.FaultyTransport`: a follower is cut off from its peers
  and restored while writes go on.

Every write a client had acknowledged must be on every node at the end (an insert
present, a delete absent), and the nodes' indexes must be equal (digests).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trio
import trio.testing

from graphrep.net import Client, ClusterFile, NodeSpec, SQLiteStore, build_node, status_of
from graphrep.net.driver import DriverConfig, NodeDriver
from graphrep.net.node import warm_up
from graphrep.net.testing import FaultyTransport, MemoryTransport, autojump
from graphrep.net.transport import TCPTransport, Transport
from graphrep.sansio import BaseProcess, SetTimer

NAMES = ("n1", "n2", "n3")
DIM = 8


@pytest.fixture
def cfg(tmp_path: Path) -> ClusterFile:
    return ClusterFile(cluster="graphrep-test", data_dir=tmp_path / "data", dim=DIM,
                       nodes={n: NodeSpec(n, "127.0.0.1:0") for n in NAMES},
                       shards={0: ("local",)})


class Cluster:
    """Nodes in one nursery, each in a cancel scope of its own: :meth:`crash` cancels a
    node's driver (a crash: what was not synced is lost) and closes its store;
    :meth:`start` builds a node again on its store file, which restarts it."""

    def __init__(self, cfg: ClusterFile, transport: Transport, nursery: trio.Nursery) -> None:
        self.cfg, self.transport, self.nursery = cfg, transport, nursery
        self.drivers: dict[str, NodeDriver] = {}
        self._stop: dict[str, tuple[trio.CancelScope, trio.Event]] = {}

    async def start(self, name: str) -> NodeDriver:
        store = SQLiteStore(self.cfg.node_dir(name) / "store.sqlite3")
        driver = build_node(self.cfg, name, transport=self.transport, store=store)
        scope, done = trio.CancelScope(), trio.Event()

        async def run(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            try:
                with scope:
                    await driver.run(task_status=task_status)
            finally:
                store.close()
                done.set()

        await self.nursery.start(run)
        self.drivers[name] = driver
        self._stop[name] = (scope, done)
        return driver

    async def crash(self, name: str) -> None:
        scope, done = self._stop.pop(name)
        del self.drivers[name]
        scope.cancel()
        await done.wait()

    def leader(self) -> str | None:
        """The node every running node names as the leader of shard 0, once it leads."""
        replicas = {n: d.process.replicas[0] for n, d in self.drivers.items()}
        leaders = [n for n, r in replicas.items() if r.role == "leader"]
        if len(leaders) != 1:
            return None
        top = replicas[leaders[0]]
        if all(r.leader == leaders[0] and r.term == top.term for r in replicas.values()):
            return leaders[0]
        return None

    async def wait_for_leader(self, timeout: float, other_than: str | None = None) -> str:
        with trio.fail_after(timeout):
            while (leader := self.leader()) is None or leader == other_than:
                await trio.sleep(0.05)
        return leader

    def converged(self) -> bool:
        """Every node's replica has applied all it committed, the same as the others."""
        reps = [d.process.replicas[0] for d in self.drivers.values()]
        return (len(reps) == len(NAMES) and len({r.commit for r in reps}) == 1
                and all(r.applied == r.commit for r in reps)
                and len({r.index.digest() for r in reps}) == 1)

    async def wait_converged(self, timeout: float) -> None:
        with trio.fail_after(timeout):
            while not self.converged():
                await trio.sleep(0.05)


async def write(client: Client, ids: range, rng: np.random.Generator,
                delete_every: int = 0) -> None:
    """Insert ``ids`` (and delete every ``delete_every``-th right after inserting it)."""
    for i in ids:
        await client.insert(i, rng.standard_normal(DIM).astype(np.float32))
        if delete_every and i % delete_every == 0:
            await client.delete(i)


def check_acknowledged(cluster: Cluster, history: list[dict]) -> int:
    """Every acknowledged write is on every node; returns how many ids must be present."""
    present: set[int] = set()
    deleted: set[int] = set()
    for row in history:
        if row["status"] != "ok":
            continue  # its fate is unknown: no promise to check
        if row["op"] == "insert":
            present.add(row["id"])
            deleted.discard(row["id"])
        else:
            deleted.add(row["id"])
            present.discard(row["id"])
    assert present
    for name, driver in cluster.drivers.items():
        replica = driver.process.replicas[0]
        ids = set(replica.index.ids().tolist())
        assert present <= ids, f"{name} misses acknowledged ids {sorted(present - ids)[:10]}"
        assert not deleted & ids, f"{name} has deleted ids {sorted(deleted & ids)[:10]}"
        status = status_of(driver)
        assert status["protocol_errors"] == 0 and replica.errors == 0, status
        assert not any(k.startswith("frame_error") for k in status["counters"]), status
    return len(present)


async def start_all(cfg: ClusterFile, transport: Transport, nursery: trio.Nursery,
                    clock: trio.testing.MockClock) -> tuple[Cluster, str]:
    """Every node of ``cfg`` started under ``clock`` (autojumping); the first leader."""
    nursery.start_soon(autojump, clock)
    cluster = Cluster(cfg, transport, nursery)
    for name in NAMES:
        await cluster.start(name)
    return cluster, await cluster.wait_for_leader(timeout=10)


@pytest.mark.trio
async def test_elect_replicate_fail_over_and_restart(cfg, mock_clock):
    rng = np.random.default_rng(1)
    transport = MemoryTransport()
    async with trio.open_nursery() as nursery:
        cluster, first = await start_all(cfg, transport, nursery, mock_clock)

        async with Client(cfg, transport=transport, history=True, seed=1) as client:
            await write(client, range(0, 60), rng, delete_every=7)
            await cluster.wait_converged(timeout=10)

            # the leader crashes: its driver is cancelled, its store closed unsynced
            crashed_at = trio.current_time()
            await cluster.crash(first)
            await write(client, range(60, 120), rng, delete_every=9)
            second = await cluster.wait_for_leader(timeout=10, other_than=first)
            assert second != first
            assert trio.current_time() - crashed_at < 10  # virtual seconds

            # the old leader restarts from its store (what it had synced: its log, so it
            # is not empty) and catches up; its peers dial it at once when it dials them,
            # so it hears from the leader before its election timeout: no new election
            term = cluster.drivers[second].process.replicas[0].term
            restarted = (await cluster.start(first)).process.replicas[0]
            assert restarted.end > 60 and restarted.term < term
            await write(client, range(120, 150), rng)
            await cluster.wait_converged(timeout=30)

        assert all(row["status"] == "ok" for row in client.history)
        assert check_acknowledged(cluster, client.history) >= 130
        assert cluster.leader() == second
        assert {d.process.replicas[0].term for d in cluster.drivers.values()} == {term}
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_tcp_cut_a_follower_off_and_restore_it(cfg):
    warm_up(DIM)  # compile the index kernels (or load them) before the clock matters
    rng = np.random.default_rng(2)
    tcp = TCPTransport({n: s.address for n, s in cfg.nodes.items()})
    faulty = FaultyTransport(tcp)
    with trio.fail_after(45):
        async with trio.open_nursery() as nursery:
            cluster = Cluster(cfg, faulty, nursery)
            for name in NAMES:
                await cluster.start(name)
            assert all(port > 0 for port in tcp.bound.values()) and len(tcp.bound) == 3
            leader = await cluster.wait_for_leader(timeout=15)

            async with Client(cfg, transport=faulty, history=True, seed=2) as client:
                await write(client, range(0, 40), rng, delete_every=5)
                follower = next(n for n in NAMES if n != leader)
                others = [n for n in NAMES if n != follower]
                for other in others:
                    await faulty.cut(follower, other)
                # the other two are a majority: writes go on (through whichever leads)
                await write(client, range(40, 100), rng, delete_every=6)
                cut_off = cluster.drivers[follower].process.replicas[0]
                assert cut_off.commit < max(d.process.replicas[0].commit
                                            for d in cluster.drivers.values())
                for other in others:
                    faulty.restore(follower, other)
                await write(client, range(100, 120), rng)
                await cluster.wait_converged(timeout=20)

            assert all(row["status"] == "ok" for row in client.history)
            assert check_acknowledged(cluster, client.history) >= 90
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_restarted_node_is_dialled_at_once_and_disturbs_no_one(cfg, mock_clock):
    transport = MemoryTransport()
    async with trio.open_nursery() as nursery:
        cluster, leader = await start_all(cfg, transport, nursery, mock_clock)
        term = cluster.drivers[leader].process.replicas[0].term
        follower = next(n for n in NAMES if n != leader)
        await cluster.crash(follower)
        await trio.sleep(5)  # the peers' links to it back off to their longest wait (1 s)

        # it dials its peers as it starts, and they dial it back at once: the leader is
        # heard before the restarted node's election timeout (150-300 ms), which would
        # otherwise depose it (no pre-vote)
        await cluster.start(follower)
        peers = [d for n, d in cluster.drivers.items() if n != follower]
        with trio.fail_after(0.05):
            while not all(d.links[follower].connected for d in peers):
                await trio.sleep(0.001)
        await trio.sleep(2)
        assert cluster.leader() == leader
        assert {d.process.replicas[0].term for d in cluster.drivers.values()} == {term}
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_crash_as_the_store_starts_a_commit_is_a_crash(tmp_path):
    # A sync is requested (as the node's loop does for a Sync) and the node is cancelled
    # in the same turn, so the store's committer wakes into a cancelled scope before its
    # worker thread took the commit: that must end the node as a crash does, not as a
    # failed commit (StoreError) would.
    store = SQLiteStore(tmp_path / "store.sqlite3")
    driver = NodeDriver("solo", lambda name, disk: BaseProcess(), store, MemoryTransport(),
                        cluster="solo", peers=[])
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(driver.run)
            await trio.testing.wait_all_tasks_blocked()
            store.put("k", 1)
            assert store.request_sync() == 1
            scope.cancel()
    assert scope.cancelled_caught
    store.close()
    assert SQLiteStore(tmp_path / "store.sqlite3").load() == {}


def recorded_deltas(cfg: ClusterFile, n: int, seed: int) -> tuple[list, str]:
    """``n`` inserts on an index of the shard's parameters, recorded as ``(id, delta
    bytes)``, and that index's digest."""
    index = cfg.replica_configs("n1")[0].index()
    rng = np.random.default_rng(seed)
    deltas = [(i, index.insert(i, rng.standard_normal(DIM).astype(np.float32)).to_bytes())
              for i in range(n)]
    return deltas, index.digest()


@pytest.mark.trio
async def test_recorded_deltas_pipelined_through_a_leader_crash(cfg, mock_clock):
    deltas, digest = recorded_deltas(cfg, 240, seed=3)
    transport = MemoryTransport()
    async with trio.open_nursery() as nursery:
        cluster, first = await start_all(cfg, transport, nursery, mock_clock)
        async with Client(cfg, transport=transport, history=True, seed=1) as client:
            acks = await client.write_deltas(deltas[:100], concern="majority", window=16)
            assert [a.pos for a in acks] == list(range(1, 101))  # in order, after the NOOP

            # the leader crashes while 16 are outstanding: the pipeline falls back to
            # the leader-finding path and resumes, in order, through the new leader
            async def crash_soon() -> None:
                while sum(row["status"] == "ok" for row in client.history) < 140:
                    await trio.sleep(0)
                await cluster.crash(first)

            nursery.start_soon(crash_soon)
            acks = await client.write_deltas(deltas[100:], concern="majority", window=16)
            assert len(acks) == 140 and len({a.pos for a in acks}) == 140
            assert cluster.leader() != first
            await cluster.start(first)
            await cluster.wait_converged(timeout=30)

        assert any(row["status"] == "failed" for row in client.history)  # it was hit
        for name, driver in cluster.drivers.items():
            replica = driver.process.replicas[0]
            assert replica.index.digest() == digest, name
            assert replica.errors == 0
        nursery.cancel_scope.cancel()


class _Slow(BaseProcess):
    """Sets a timer at start; its callback holds the loop for 30 ms."""

    def on_start(self, now: int) -> list:
        return [SetTimer("slow", 1_000_000)]

    def on_timer(self, now: int, name: Any) -> list:
        time.sleep(0.03)
        return []


@pytest.mark.trio
async def test_a_callback_that_holds_the_loop_is_counted_and_logged(tmp_path, caplog):
    store = SQLiteStore(tmp_path / "store.sqlite3")
    driver = NodeDriver("solo", lambda name, disk: _Slow(), store, MemoryTransport(),
                        cluster="solo", peers=[], config=DriverConfig(stall_warning=0.01))
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run)
        with trio.fail_after(5):
            while not driver.counters["loop_stalls"]:
                await trio.sleep(0.005)
        nursery.cancel_scope.cancel()
    store.close()
    assert driver.counters["loop_stalls"] == 1
    assert driver.counters["loop_stall_max_ms"] >= 30
    assert any("timer 'slow' held the loop" in r.getMessage() for r in caplog.records)

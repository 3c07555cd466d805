"""One suite of effect semantics, run against both drivers of a sans-IO process: the
simulator (:class:`graphrep.sim.engine.Simulation`) and the live trio driver
(:class:`graphrep.net.driver.NodeDriver` over :class:`~graphrep.net.testing.MemoryTransport`
with an :class:`~graphrep.net.store.SQLiteStore` per node).

Each scenario is a few :class:`Scripted` processes (effects to return on start, on a
timer's n-th firing, on a message) and a schedule of crashes and restarts. An adapter
per driver runs it and returns what every node saw, node by node; each test asserts that
both drivers saw the same thing, and that it is what :mod:`graphrep.sansio` promises. A
difference is a bug in one of the drivers.

Time. The trio runs that compare times use ``trio.testing.MockClock`` with
:func:`graphrep.net.testing.autojump` rather than ``MockClock(autojump_threshold=0)``:
the store commits in a worker thread, and trio's own autojump jumps the clock to the next
timer as soon as every task waits, which a task waiting for a thread does. A commit would
then take virtual time (as many timer periods as the loop can run through while SQLite
writes), and times would differ from the simulator's, where a ``Sync`` takes none. The
helper keeps the clock still while a thread runs, so timer times match the simulator's
to the nanosecond. The durability scenarios record no times, and run a third time with
trio's real clock ("trio-real"): there, nothing about the clock is faked, and the store
really takes milliseconds (a slow store takes tens) while messages fly.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio
import trio.testing

from graphrep import sansio as fx
from graphrep.errors import NetError, SimulationError
from graphrep.net.driver import NodeDriver
from graphrep.net.store import SQLiteStore
from graphrep.net.testing import MemoryTransport, autojump
from graphrep.sansio import MS, BaseProcess
from graphrep.sim.engine import SimConfig, Simulation
from graphrep.sim.network import LatencyModel, NetworkConfig

TIMED = ["sim", "trio"]
"""Drivers for scenarios whose times are compared (the trio one under a mock clock)."""
DURABLE = ["sim", "trio", "trio-real"]
"""Drivers for scenarios that record no times: the trio driver also with a real clock."""


# ---------------------------------------------------------------------- the processes

Probe = Callable[[str], dict]
"""``probe(node)``: what ``node`` has durably synced, now (its store, read apart)."""


def plain(disk: dict) -> list:
    """A disk as sorted items, without keys written as None. The simulator keeps such a
    key with the value None; the store deletes it (both mean ``disk.get(key) is None``,
    which is all a process may read into it)."""
    return sorted((k, v) for k, v in disk.items() if v is not None)


class Scripted(BaseProcess):
    """Returns the effects its script names and records what it sees in ``log[name]``.

    Script keys: ``"start"`` (the first boot), ``"restart"`` (every later one),
    ``("timer", name)`` or ``("timer", name, n)`` (the n-th firing in this incarnation;
    the more precise key wins), ``("msg", payload)``. Records: ``("start", boot, disk)``,
    ``("timer", name, now)`` (``now`` only when ``timed``), ``("msg", src, payload)``, and
    for a payload in ``probed`` ``("msg", src, payload, the sender's durable disk)``."""

    def __init__(self, name: str, disk: dict, log: dict[str, list], script: dict,
                 timed: bool, probe: Probe, probed: frozenset = frozenset()) -> None:
        self.name = name
        self.log = log[name]
        self.script = script
        self.timed = timed
        self.probe = probe
        self.probed = probed
        self.fires: Counter = Counter()
        self.boot = sum(1 for e in self.log if e[0] == "start") + 1
        self.log.append(("start", self.boot, plain(disk)))

    def on_start(self, now: int) -> list:
        return list(self.script.get("start" if self.boot == 1 else "restart", []))

    def on_timer(self, now: int, name: Hashable) -> list:
        self.fires[name] += 1
        self.log.append(("timer", name, now) if self.timed else ("timer", name))
        effects = self.script.get(("timer", name, self.fires[name]))
        if effects is None:
            effects = self.script.get(("timer", name), [])
        return list(effects)

    def on_message(self, now: int, src: str, payload: Any, size: int) -> list:
        payload = bytes(payload)
        if payload in self.probed:
            self.log.append(("msg", src, payload, plain(self.probe(src))))
        else:
            self.log.append(("msg", src, payload))
        return list(self.script.get(("msg", payload), []))


@dataclass
class Scenario:
    scripts: dict[str, dict]
    """node -> its script (every node runs a :class:`Scripted`)."""
    until_ms: int
    steps: list[tuple] = field(default_factory=list)
    """``(at_ms, "crash" | "restart", node)``, in time order, or ``(at_ms, "crash", node,
    entry)``: not before ``node`` logged ``entry`` (a real clock may be late for it)."""
    timed: bool = True
    probed: frozenset = frozenset()
    """Payloads whose receiver records what their sender had synced when they arrived."""
    commit_delay: float = 0.0
    """Trio: real seconds each commit sleeps in its worker thread (a slow disk)."""


@dataclass
class Outcome:
    logs: dict[str, list]
    failed: bool = False
    """The run stopped because a process returned something the driver refuses."""


# ---------------------------------------------------------------------- the simulator


def run_sim(sc: Scenario, tmp_path: Path) -> Outcome:
    logs: dict[str, list] = defaultdict(list)
    sim = Simulation(0, SimConfig(network=NetworkConfig(default=LatencyModel.constant(MS))))
    for node, script in sc.scripts.items():
        sim.add_node(node, lambda name, disk, s=script: Scripted(name, disk, logs, s, sc.timed,
                                                                 sim.disk, sc.probed))
    for at, action, node, *_ in sc.steps:
        sim.at(at * MS, lambda s, a=action, n=node: getattr(s, a)(n))
    try:
        sim.run_until(sc.until_ms * MS)
    except SimulationError:
        return Outcome(dict(logs), failed=True)
    return Outcome(dict(logs))


# ---------------------------------------------------------------------- the trio driver


class SlowStore(SQLiteStore):
    """A store whose commits take ``delay`` more seconds (a slow disk), in the thread."""

    delay = 0.0

    def _commit(self, batch: dict) -> None:
        time.sleep(self.delay)
        super()._commit(batch)


def read_durable(path: Path) -> dict:
    """What a store file holds committed, read through a connection of its own (the
    store's connection would also see a transaction in progress)."""
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT key, value FROM kv").fetchall()
    finally:
        db.close()

    def unpack(b: bytes) -> Any:
        return msgpack.unpackb(b, raw=False, use_list=False, strict_map_key=False)

    return {unpack(k): unpack(v) for k, v in rows}


class TrioNode:
    """One node of a trio scenario: a driver on a store file, which can crash (its
    driver cancelled: nothing graceful) and restart (a new driver on the same file)."""

    def __init__(self, name: str, factory: Callable, path: Path, transport: MemoryTransport,
                 peers: list[str], commit_delay: float) -> None:
        self.name, self.factory, self.path = name, factory, path
        self.transport, self.peers, self.commit_delay = transport, peers, commit_delay
        self.store: SQLiteStore | None = None
        self.scope: trio.CancelScope | None = None
        self.done = trio.Event()

    async def start(self, nursery: trio.Nursery) -> None:
        store = SlowStore(self.path)
        store.delay = self.commit_delay
        driver = NodeDriver(self.name, self.factory, store, self.transport,
                            cluster="conformance", peers=self.peers)
        scope, done = trio.CancelScope(), trio.Event()
        self.store, self.scope, self.done = store, scope, done

        async def run(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            try:
                with scope:
                    await driver.run(task_status=task_status)
            finally:
                done.set()

        await nursery.start(run)

    async def crash(self) -> None:
        assert self.store is not None and self.scope is not None
        # The simulator completes a fx.Sync at once; here a commit takes a while. Crash once
        # the syncs requested so far are done, so that what survives is decided by the
        # syncs, as in the simulator, not by how fast the disk is.
        await self.store.wait(self.store.requested)
        self.scope.cancel()
        await self.done.wait()
        self.store.close()


async def _trio_main(sc: Scenario, tmp_path: Path, logs: dict[str, list],
                     clock: trio.testing.MockClock | None) -> None:
    transport = MemoryTransport()
    names = sorted(sc.scripts)

    def probe(node: str) -> dict:
        return read_durable(tmp_path / f"{node}.sqlite3")

    nodes = {}
    for name in names:
        def factory(node: str, disk: dict, s: dict = sc.scripts[name]) -> Scripted:
            return Scripted(node, disk, logs, s, sc.timed, probe, sc.probed)

        nodes[name] = TrioNode(name, factory, tmp_path / f"{name}.sqlite3", transport, names,
                               sc.commit_delay)
    async with trio.open_nursery() as nursery:
        if clock is not None:
            nursery.start_soon(autojump, clock)
        t0 = trio.current_time()
        for node in nodes.values():
            await node.start(nursery)
        for at, action, name, *after in sc.steps:
            await trio.sleep_until(t0 + at / 1e3)
            while after and after[0] not in logs[name]:
                await trio.sleep(0.001)
            if action == "crash":
                await nodes[name].crash()
            else:
                await nodes[name].start(nursery)
        await trio.sleep_until(t0 + sc.until_ms / 1e3)
        nursery.cancel_scope.cancel()
    for node in nodes.values():
        if node.store is not None:
            node.store.close()


def run_trio(sc: Scenario, tmp_path: Path, realtime: bool = False) -> Outcome:
    logs: dict[str, list] = defaultdict(list)
    clock = None if realtime else trio.testing.MockClock()
    failed = False
    try:
        trio.run(_trio_main, sc, tmp_path, logs, clock, clock=clock)
    except* NetError:
        failed = True  # a process returned what the driver refuses: the node stopped
    return Outcome(dict(logs), failed)


def run(driver: str, sc: Scenario, tmp_path: Path) -> Outcome:
    if driver == "sim":
        return run_sim(sc, tmp_path)
    return run_trio(sc, tmp_path, realtime=driver == "trio-real")


def timers(outcome: Outcome, node: str = "a") -> list:
    return [e[1:] for e in outcome.logs[node] if e[0] == "timer"]


# ---------------------------------------------------------------------- timers


@pytest.mark.parametrize("driver", TIMED)
def test_setting_a_timer_again_replaces_it(driver, tmp_path):
    sc = Scenario({"a": {"start": [fx.SetTimer("t", 100 * MS), fx.SetTimer("t", 300 * MS),
                                   fx.SetTimer("u", 300 * MS), fx.SetTimer("u", 100 * MS)]}},
                  until_ms=1000)
    assert timers(run(driver, sc, tmp_path)) == [("u", 100 * MS), ("t", 300 * MS)]


@pytest.mark.parametrize("driver", TIMED)
def test_a_timer_replaced_in_its_own_callback_fires_again(driver, tmp_path):
    # a one-shot timer set again when it fires; a periodic one replaced by a one-shot
    sc = Scenario({"a": {"start": [fx.SetTimer("r", 100 * MS), fx.SetTimer("p", 70 * MS, True)],
                         ("timer", "r", 1): [fx.SetTimer("r", 250 * MS)],
                         ("timer", "p", 2): [fx.SetTimer("p", 45 * MS)]}},
                  until_ms=1000)
    assert timers(run(driver, sc, tmp_path)) == [
        ("p", 70 * MS), ("r", 100 * MS), ("p", 140 * MS), ("p", 185 * MS), ("r", 350 * MS)]


@pytest.mark.parametrize("driver", TIMED)
def test_periodic_timers_fire_every_period_until_cancelled(driver, tmp_path):
    sc = Scenario({"a": {"start": [fx.SetTimer("p", 100 * MS, True),
                                   fx.SetTimer("q", 130 * MS, True)],
                         ("timer", "p", 4): [fx.CancelTimer("p")]}},
                  until_ms=1000)
    got = timers(run(driver, sc, tmp_path))
    assert [t for name, t in got if name == "p"] == [100 * MS, 200 * MS, 300 * MS, 400 * MS]
    assert [t for name, t in got if name == "q"] == [130 * MS * i for i in range(1, 8)]
    assert got == sorted(got, key=lambda e: e[1])


@pytest.mark.parametrize("driver", TIMED)
def test_cancelling_an_unknown_or_fired_timer_does_nothing(driver, tmp_path):
    sc = Scenario({"a": {"start": [fx.CancelTimer("never"), fx.CancelTimer(("a", 1)),
                                   fx.SetTimer("x", 50 * MS)],
                         ("timer", "x"): [fx.CancelTimer("x"), fx.SetTimer("y", 10 * MS)]}},
                  until_ms=500)
    outcome = run(driver, sc, tmp_path)
    assert not outcome.failed
    assert timers(outcome) == [("x", 50 * MS), ("y", 60 * MS)]


@pytest.mark.parametrize("driver", TIMED)
def test_a_cancelled_timer_does_not_fire(driver, tmp_path):
    sc = Scenario({"a": {"start": [fx.SetTimer("c", 200 * MS), fx.SetTimer("d", 100 * MS),
                                   fx.SetTimer("e", 300 * MS, True), fx.CancelTimer("e"),
                                   fx.SetTimer("z", 0)],
                         ("timer", "d"): [fx.CancelTimer("c")]}},
                  until_ms=1000)
    assert timers(run(driver, sc, tmp_path)) == [("z", 0), ("d", 100 * MS)]


@pytest.mark.parametrize("driver", TIMED)
def test_every_effect_kind_is_taken(driver, tmp_path):
    sc = Scenario({"a": {"start": [fx.Metric("m", 1.0), fx.Log("hello"), fx.Busy(0), fx.Work(3, 2),
                                   ("b", b"as a tuple", 10), fx.SetTimer("done", 10 * MS)]},
                   "b": {}},
                  until_ms=100)
    outcome = run(driver, sc, tmp_path)
    assert not outcome.failed
    assert timers(outcome) == [("done", 10 * MS)]
    assert outcome.logs["b"][1:] == [("msg", "a", b"as a tuple")]


@pytest.mark.parametrize("driver", TIMED)
@pytest.mark.parametrize("bad", [object(), ("b", b"x"), fx.SetTimer("p", 0, True),
                                 fx.SetTimer("n", -1), fx.SetTimer([], MS)],
                         ids=["object", "short-tuple", "periodic-0", "negative", "unhashable"])
def test_a_malformed_effect_stops_the_run(driver, bad, tmp_path):
    sc = Scenario({"a": {"start": [fx.SetTimer("t", 10 * MS)], ("timer", "t"): [bad]}, "b": {}},
                  until_ms=100)
    outcome = run(driver, sc, tmp_path)
    assert outcome.failed
    assert timers(outcome) == [("t", 10 * MS)]


# ---------------------------------------------------------------------- messages


@pytest.mark.parametrize("driver", TIMED)
def test_messages_on_one_link_arrive_in_order_and_to_self(driver, tmp_path):
    sc = Scenario({"a": {"start": [fx.Send("b", b"%d" % i) for i in range(40)]
                         + [fx.Send("a", b"self")]},
                   "b": {("msg", b"39"): [fx.Send("a", b"done")]}},
                  until_ms=100)
    logs = run(driver, sc, tmp_path).logs
    assert logs["b"][1:] == [("msg", "a", b"%d" % i) for i in range(40)]
    assert logs["a"][1:] == [("msg", "a", b"self"), ("msg", "b", b"done")]


# ---------------------------------------------------------------------- durability


@pytest.mark.parametrize("driver", DURABLE)
@pytest.mark.parametrize("m1", [True, False], ids=["same-callback", "later-callback-only"])
def test_a_send_after_a_sync_leaves_once_the_sync_is_durable(driver, m1, tmp_path):
    # At 200 ms (the links are up) a sends m0, syncs k (a commit slowed to 50 ms) and
    # sends m1 (or not). m0 may leave at once; b answers it with a ping, which reaches a
    # while the commit runs, and a's pong (a later callback, no sync of its own) must
    # wait for the commit too: a's process believes k durable. Without m1, nothing held
    # before the pong makes it wait. b reads a's store file as m1 and pong arrive.
    # (Under the mock clock, virtual time stands still during the commit, so the overlap
    # has to happen at one instant: hence the ping is an answer to m0.)
    # The run lasts 1.5 s: with the real clock, on a loaded machine b had once received
    # nothing by 0.5 s.
    go = [fx.Send("b", b"m0"), fx.DurableWrite("k", 1), fx.Sync()]
    go += [fx.Send("b", b"m1")] if m1 else []
    sc = Scenario({"a": {"start": [fx.SetTimer("go", 200 * MS)], ("timer", "go"): go,
                         ("msg", b"ping"): [fx.Send("b", b"pong")]},
                   "b": {("msg", b"m0"): [fx.Send("a", b"ping")]}},
                  until_ms=1500, timed=False, probed=frozenset({b"m1", b"pong"}),
                  commit_delay=0.05)
    logs = run(driver, sc, tmp_path).logs
    assert logs["b"][1:] == [("msg", "a", b"m0")] \
        + ([("msg", "a", b"m1", [("k", 1)])] if m1 else []) \
        + [("msg", "a", b"pong", [("k", 1)])]
    assert logs["a"][1:] == [("timer", "go"), ("msg", "b", b"ping")]


@pytest.mark.parametrize("driver", DURABLE)
def test_a_crash_loses_unsynced_writes_and_a_restart_gets_the_synced_disk(driver, tmp_path):
    # boot 1 syncs a and b=1, then writes b=2 and c (unsynced), and d in a later callback;
    # boot 2 deletes a, writes e and syncs; boot 3 sees that. Timers die with a crash.
    sc = Scenario({"a": {"start": [fx.DurableWrite("a", 1), fx.DurableWrite("b", 1), fx.Sync(),
                                   fx.DurableWrite("b", 2), fx.DurableWrite("c", 3),
                                   fx.SetTimer("late", 10 * MS), fx.SetTimer("old", 500 * MS)],
                         ("timer", "late"): [fx.DurableWrite("d", 4)],
                         "restart": [fx.DurableWrite("a", None), fx.DurableWrite("e", (5, b"x")),
                                     fx.Sync(), fx.DurableWrite("f", 6)]}},
                  until_ms=700, timed=False,
                  steps=[(100, "crash", "a", ("timer", "late")), (200, "restart", "a"),
                         (300, "crash", "a"), (400, "restart", "a")])
    assert run(driver, sc, tmp_path).logs["a"] == [
        ("start", 1, []),
        ("timer", "late"),
        ("start", 2, [("a", 1), ("b", 1)]),
        ("start", 3, [("b", 1), ("e", (5, b"x"))]),
    ]


@pytest.mark.parametrize("driver", DURABLE)
def test_a_restarted_node_talks_to_its_peers_again(driver, tmp_path):
    # b pings a on every boot; a answers each ping with what b's boot said
    sc = Scenario({"a": {("msg", b"boot 1"): [fx.Send("b", b"hi 1")],
                         ("msg", b"boot 2"): [fx.Send("b", b"hi 2")]},
                   "b": {"start": [fx.Send("a", b"boot 1")],
                         "restart": [fx.Send("a", b"boot 2")]}},
                  until_ms=3000, timed=False,
                  steps=[(100, "crash", "b", ("msg", "a", b"hi 1")), (200, "restart", "b")])
    logs = run(driver, sc, tmp_path).logs
    assert logs["a"][1:] == [("msg", "b", b"boot 1"), ("msg", "b", b"boot 2")]
    assert logs["b"] == [("start", 1, []), ("msg", "a", b"hi 1"),
                         ("start", 2, []), ("msg", "a", b"hi 2")]

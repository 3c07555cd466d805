"""The ``Busy`` effect: a node occupied by modelled CPU time handles nothing else until
it is done; messages and timers wait in order, nothing is lost, and a crash ends it."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import pytest

from graphrep.errors import InvalidArgument, SimulationError
from graphrep.sansio import MS, BaseProcess, Busy, Send, SetTimer, Work
from graphrep.sim.engine import SimConfig, Simulation
from graphrep.sim.network import LatencyModel, NetworkConfig


class Worker(BaseProcess):
    """Each message costs ``cost`` ns of CPU; records when it handled what."""

    def __init__(self, cost: int) -> None:
        self.cost = cost
        self.seen: list[tuple[int, Any]] = []

    def on_message(self, now: int, src: str, payload: Any, size: int) -> list:
        self.seen.append((now, payload))
        return [Busy(self.cost)] if self.cost else []

    def on_timer(self, now: int, name: Hashable) -> list:
        self.seen.append((now, name))
        return []


class Sender(BaseProcess):
    def on_start(self, now: int) -> list:
        return [Send("w", i, 1) for i in range(4)] + [SetTimer("again", 1 * MS)]

    def on_timer(self, now: int, name: Hashable) -> list:
        return [Send("w", "late", 1)]


def _run(cost: int, crash_at: int | None = None) -> tuple[Simulation, Worker]:
    sim = Simulation(1, SimConfig(network=NetworkConfig(default=LatencyModel.constant(MS))))
    worker = Worker(cost)
    sim.add_node("w", lambda n, d: worker)
    sim.add_node("s", lambda n, d: Sender())
    if crash_at is not None:
        sim.at(crash_at, lambda s: s.crash("w"))
        sim.at(crash_at + 1, lambda s: s.restart("w"))
    sim.run_until(50 * MS)
    return sim, worker


def test_messages_wait_while_the_node_is_busy_and_keep_their_order():
    sim, w = _run(cost=3 * MS)
    assert [p for _, p in w.seen] == [0, 1, 2, 3, "late"]
    times = [t for t, _ in w.seen]
    assert times[:4] == [1 * MS, 4 * MS, 7 * MS, 10 * MS]  # one every 3 ms of CPU
    assert times[4] == 13 * MS  # sent at 1 ms, arrived at 2 ms, waited its turn
    assert sim.in_flight == 0 and sim.delivered == 5


def test_without_busy_everything_lands_at_once():
    _, w = _run(cost=0)
    assert [t for t, _ in w.seen] == [1 * MS] * 4 + [2 * MS]


def test_a_crash_ends_the_busy_spell():
    sim, w = _run(cost=10 * MS, crash_at=5 * MS)
    assert [p for _, p in w.seen] == [0]  # the rest waited, and the crash dropped them
    assert sim.dropped == 4 and sim.in_flight == 0


def test_a_malformed_busy_fails_the_run_with_a_clear_error():
    class Bad(BaseProcess):
        def on_start(self, now: int) -> list:
            return [Busy(-1)]

    sim = Simulation(1)
    sim.add_node("b", lambda n, d: Bad())
    with pytest.raises(SimulationError, match="ns must be an int >= 0"):
        sim.run_until(MS)


def test_work_is_priced_by_the_simulation_config():
    """A ``Work`` effect costs what ``SimConfig`` says: free by default, and then the node
    is busy for distances x ns_per_distance + entries x ns_per_entry."""
    class Timed(BaseProcess):
        def __init__(self) -> None:
            self.handled: list[int] = []

        def on_start(self, now: int) -> list:
            return [SetTimer("a", 1), SetTimer("b", 2)]

        def on_timer(self, now: int, name) -> list:
            self.handled.append(now)
            return [Work(distances=3, entries=2)] if name == "a" else []

    for cfg, b_at in ((SimConfig(), 2), (SimConfig(cpu_ns_per_distance=10,
                                                   cpu_ns_per_entry=100), 1 + 230)):
        sim = Simulation(0, cfg)
        sim.add_node("n", lambda name, disk: Timed())
        sim.run_until(1_000)
        assert sim.process("n").handled == [1, b_at]
    with pytest.raises(InvalidArgument):
        SimConfig(cpu_ns_per_entry=-1)

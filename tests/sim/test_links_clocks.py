"""Bandwidth queues, held links, per-link counters and skewed clocks."""

from __future__ import annotations

import pytest

from graphrep.errors import InvalidArgument, InvalidSchedule
from graphrep.sim.engine import SimConfig, Simulation
from graphrep.sim.network import LatencyModel, NetworkConfig
from graphrep.sim.process import MS, BaseProcess, Send, SetTimer


class Sink(BaseProcess):
    def __init__(self) -> None:
        self.got: list[tuple[int, object]] = []
        self.ticks: list[int] = []

    def on_message(self, now, src, payload, size):
        self.got.append((now, payload))

    def on_timer(self, now, name):
        self.ticks.append(now)


class Sender(Sink):
    def __init__(self, msgs: list[tuple[str, object, int]]) -> None:
        super().__init__()
        self.msgs = msgs

    def on_start(self, now):
        return [Send(to, p, size) for to, p, size in self.msgs]


def make(net: NetworkConfig, msgs) -> Simulation:
    sim = Simulation(0, SimConfig(network=net))
    sim.add_node("b", lambda n, d: Sink())
    sim.add_node("a", lambda n, d: Sender(msgs))
    return sim


def test_bandwidth_serializes_messages_one_after_another():
    # 1 Mbit/s: 1,000 bytes take 8 ms on the wire, then 1 ms of latency
    net = NetworkConfig(default=LatencyModel.constant(MS), bandwidth_bps=1_000_000)
    sim = make(net, [("b", i, 1000) for i in range(3)])
    sim.run_until(100 * MS)
    assert sim.process("b").got == [(9 * MS, 0), (17 * MS, 1), (25 * MS, 2)]


def test_bandwidth_per_region_pair_and_validation():
    net = NetworkConfig(default=LatencyModel.constant(0), bandwidth={("local", "local"): 8_000})
    sim = make(net, [("b", "x", 10)])   # 80 bits at 8 kbit/s: 10 ms
    sim.run_until(100 * MS)
    assert sim.process("b").got == [(10 * MS, "x")]
    with pytest.raises(InvalidArgument):
        NetworkConfig(bandwidth_bps=-1)


def test_link_stats_count_messages_and_bytes():
    sim = make(NetworkConfig(), [("b", 1, 10), ("b", 2, 20), ("a", 3, 5)])
    sim.run_until(10 * MS)
    assert sim.link_stats() == [
        {"src": "a", "dst": "a", "messages": 1, "bytes": 5},
        {"src": "a", "dst": "b", "messages": 2, "bytes": 30},
    ]


def test_held_link_keeps_messages_until_release():
    sim = make(NetworkConfig(default=LatencyModel.constant(MS)), [("b", i, 0) for i in range(3)])
    sim.hold("a", "b")
    sim.run_until(10 * MS)
    assert sim.process("b").got == [] and sim.in_flight == 3
    assert sim.quiesce(20 * MS) is False
    sim.release("a", "b")
    assert sim.quiesce(30 * MS) is True
    assert sim.process("b").got == [(20 * MS, 0), (20 * MS, 1), (20 * MS, 2)]
    sim.release("a", "b")  # no-op
    kinds = [r[1] for r in sim.trace.records]
    assert "hold" in kinds and "release" in kinds


class Ticker(Sink):
    def on_start(self, now):
        self.ticks.append(now)
        return [SetTimer("t", 10 * MS)]


def test_skewed_clock_shifts_readings_and_timer_delays():
    sim = Simulation(0)
    sim.add_node("fast", lambda n, d: Ticker())
    sim.set_clock("fast", offset_ns=5 * MS, drift_ppm=250_000)  # runs 25 % fast
    sim.run_until(20 * MS)
    proc = sim.process("fast")
    start, fired = proc.ticks
    assert start == 5 * MS
    # 10 ms on its clock is 8 ms of global time; it reads 8 * 1.25 + 5 there
    assert fired == 5 * MS + 10 * MS
    assert [r[0] for r in sim.trace.records if r[1] == "timer"] == [8 * MS]
    with pytest.raises(InvalidSchedule):
        sim.set_clock("fast", drift_ppm=-1_000_000)

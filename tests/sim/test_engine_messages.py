"""Simulation.send, messages_in_flight, drop/delay/duplicate_message and set_timer: a
driver's or a nemesis's handle on one message or timer, traced like everything else."""

from __future__ import annotations

from typing import Any

import pytest

from graphrep.errors import GraphrepError, InvalidArgument, InvalidSchedule
from graphrep.sim.engine import InFlight, SimConfig, Simulation
from graphrep.sim.network import LatencyModel, NetworkConfig
from graphrep.sim.process import MS, BaseProcess, Send


class Recorder(BaseProcess):
    """Records every message and timer; answers a b"ping" with a b"pong"."""

    def __init__(self) -> None:
        self.seen: list[tuple] = []

    def on_message(self, now: int, src: str, payload: Any, size: int):
        self.seen.append((now, "msg", src, payload, size))
        if payload == b"ping":
            return [Send(src, b"pong", 4)]
        return None

    def on_timer(self, now: int, name):
        self.seen.append((now, "timer", name))


def sim_of(*names: str, seed: int = 0, ns: int = MS, **net: Any) -> Simulation:
    config = NetworkConfig(default=LatencyModel.constant(ns), **net)
    sim = Simulation(seed, SimConfig(network=config))
    for n in names:
        sim.add_node(n, lambda name, disk: Recorder(), region="eu" if n != "far" else "us")
    sim.run_until(0)  # run the starts
    return sim


def msgs(sim: Simulation, node: str) -> list[tuple]:
    return [s for s in sim.process(node).seen if s[1] == "msg"]


def snapshot(sim: Simulation) -> tuple:
    return (sim.in_flight, sim.delivered, sim.dropped, len(sim.trace),
            sim.messages_in_flight(), sim.pending_oneshot_timers)


# ---------------------------------------------------------------------- send


def test_send_takes_the_link_latency_and_is_traced_like_a_process_send():
    sim = sim_of("a", "b", ns=3 * MS)
    sim.run_until(5 * MS)
    sim.send("a", "b", b"ping")
    assert sim.in_flight == 1
    assert sim.trace.records[-1] == (5 * MS, "send", "a", "b", b"ping", 4)  # size = len
    assert sim.messages_in_flight()[0][1:] == (8 * MS, "a", "b", 4, b"ping")
    assert sim.quiesce(100 * MS)
    assert msgs(sim, "b") == [(8 * MS, "msg", "a", b"ping", 4)]
    assert msgs(sim, "a") == [(11 * MS, "msg", "b", b"pong", 4)]  # b's reply came back
    assert sim.delivered == 2 and sim.in_flight == 0
    kinds = [r[1] for r in sim.trace.records if r[1] in ("send", "deliver")]
    assert kinds == ["send", "deliver", "send", "deliver"]
    assert {"src": "a", "dst": "b", "messages": 1, "bytes": 4} in sim.link_stats()


def test_send_with_an_explicit_size_counts_that_size():
    sim = sim_of("a", "b")
    sim.send("a", "b", ("hello", 1), size=1000)
    assert sim.trace.records[-1][5] == 1000
    sim.quiesce(10 * MS)
    assert msgs(sim, "b") == [(MS, "msg", "a", ("hello", 1), 1000)]
    assert sim.link_stats()[0]["bytes"] == 1000


def test_send_follows_the_region_latency():
    sim = sim_of("a", "far", regions={("eu", "us"): LatencyModel.constant(40 * MS)})
    sim.send("a", "far", b"x")
    sim.quiesce(100 * MS)
    assert msgs(sim, "far") == [(40 * MS, "msg", "a", b"x", 1)]


def test_send_goes_through_network_faults():
    sim = sim_of("a", "b")
    sim.set_network_faults(loss=1.0)
    sim.send("a", "b", b"x")
    assert sim.in_flight == 0 and sim.dropped == 1
    assert sim.trace.records[-1] == (0, "drop", "a", "b", b"x", "loss")
    sim.set_network_faults(loss=0.0, duplicate=1.0)
    sim.send("a", "b", b"y")
    assert sim.in_flight == 2 and sim.trace.count("duplicate") == 1
    sim.quiesce(100 * MS)
    assert [m[3] for m in msgs(sim, "b")] == [b"y", b"y"]


def test_send_to_a_partitioned_or_down_node_is_dropped_on_arrival():
    sim = sim_of("a", "b", "c")
    sim.partition([["a"], ["b"]])
    sim.crash("c")
    sim.send("a", "b", b"x")
    sim.send("a", "c", b"y")
    sim.quiesce(10 * MS)
    drops = [(r[3], r[5]) for r in sim.trace.records if r[1] == "drop"]
    assert drops == [("b", "partition"), ("c", "down")]
    assert sim.dropped == 2 and sim.in_flight == 0 and msgs(sim, "b") == []


@pytest.mark.parametrize("src,dst", [("zz", "b"), ("a", "zz"), ("", "b")])
def test_send_between_unknown_nodes_is_refused_and_changes_nothing(src, dst):
    sim = sim_of("a", "b")
    before = snapshot(sim)
    with pytest.raises(InvalidSchedule, match=r"unknown node '(zz)?'"):
        sim.send(src, dst, b"x")
    assert snapshot(sim) == before


def test_a_down_or_paused_sender_cannot_send():
    sim = sim_of("a", "b")
    sim.crash("a")
    before = snapshot(sim)
    with pytest.raises(InvalidSchedule, match="'a' is down"):
        sim.send("a", "b", b"x")
    assert snapshot(sim) == before
    sim.restart("a")
    sim.pause("b")
    with pytest.raises(InvalidSchedule, match="'b' is paused"):
        sim.send("b", "a", b"x")
    sim.send("a", "b", b"x")  # a restarted node can; a paused one can receive (later)
    assert sim.in_flight == 1


@pytest.mark.parametrize("size", [-1, 1.5, "4", [4]])
def test_a_bad_size_is_refused_and_changes_nothing(size):
    sim = sim_of("a", "b")
    before = snapshot(sim)
    with pytest.raises(InvalidArgument, match="size must be an int >= 0"):
        sim.send("a", "b", b"x", size=size)
    assert snapshot(sim) == before and sim.link_stats() == []


def test_send_from_a_scheduled_call_keeps_the_counters_consistent():
    sim = sim_of("a", "b")
    seen: list[int] = []
    sim.at(2 * MS, lambda s: s.send("a", "b", b"ping"))
    sim.at(2 * MS, lambda s: seen.append(s.in_flight))
    sim.run_until(50 * MS)
    assert seen == [1]
    assert sim.in_flight == 0 and sim.delivered == 2
    assert msgs(sim, "b")[0][0] == 3 * MS


# ---------------------------------------------------------------------- messages_in_flight


def test_messages_in_flight_are_sorted_by_delivery_time_then_key():
    sim = sim_of("a", "b", "far", regions={("eu", "us"): LatencyModel.constant(9 * MS)})
    sim.send("a", "far", b"slow")   # first key, arrives at 9 ms
    sim.send("a", "b", b"one")      # arrives at 1 ms
    sim.send("b", "a", b"two")      # arrives at 1 ms, later key
    found = sim.messages_in_flight()
    assert all(type(m) is InFlight for m in found)
    assert [m.payload for m in found] == [b"one", b"two", b"slow"]
    assert [m.deliver_at for m in found] == [MS, MS, 9 * MS]
    assert found[0].key < found[1].key and found[2].key < found[0].key  # time first
    assert [(m.src, m.dst, m.size) for m in found] == [("a", "b", 3), ("b", "a", 3),
                                                       ("a", "far", 4)]
    assert len(found) == sim.in_flight
    sim.run_until(MS)
    assert [m.payload for m in sim.messages_in_flight()] == [b"slow"]


def test_messages_in_flight_excludes_timers_and_held_messages():
    sim = sim_of("a", "b", "c")
    sim.set_timer("a", "t", 5 * MS)
    assert sim.messages_in_flight() == []
    sim.pause("b")
    sim.hold("a", "c")
    sim.send("a", "b", b"to-paused")
    sim.send("a", "c", b"on-held-link")
    assert len(sim.messages_in_flight()) == 2
    sim.run_until(2 * MS)
    assert sim.messages_in_flight() == [] and sim.in_flight == 2  # held, still counted
    sim.resume("b")
    sim.release("a", "c")
    assert [m.payload for m in sim.messages_in_flight()] == [b"to-paused", b"on-held-link"]
    sim.quiesce(20 * MS)
    assert sim.in_flight == 0 and sim.delivered == 2


# ---------------------------------------------------------------------- drop / delay / dup


def test_drop_message_loses_exactly_that_message():
    sim = sim_of("a", "b")
    for p in (b"m0", b"m1", b"m2"):
        sim.send("a", "b", p)
    key = sim.messages_in_flight()[1].key
    sim.drop_message(key)
    assert sim.in_flight == 2 and sim.dropped == 1
    assert sim.trace.records[-1] == (0, "drop", "a", "b", b"m1", "nemesis")
    assert [m.payload for m in sim.messages_in_flight()] == [b"m0", b"m2"]
    sim.quiesce(10 * MS)
    assert [m[3] for m in msgs(sim, "b")] == [b"m0", b"m2"]
    assert sim.in_flight == 0 and sim.delivered == 2 and sim.dropped == 1
    with pytest.raises(InvalidSchedule, match=f"no message with key {key}"):
        sim.drop_message(key)  # gone already


def test_delay_message_delivers_it_later_and_keeps_the_count():
    sim = sim_of("a", "b")
    sim.send("a", "b", b"late")
    sim.send("a", "b", b"on-time")
    first = sim.messages_in_flight()[0]
    sim.delay_message(first.key, 7 * MS)
    assert sim.in_flight == 2
    assert sim.trace.records[-1] == (0, "delay", "a", "b", b"late", 7 * MS)
    after = sim.messages_in_flight()
    assert [(m.payload, m.deliver_at) for m in after] == [(b"on-time", MS), (b"late", 8 * MS)]
    sim.quiesce(20 * MS)
    assert [(m[0], m[3]) for m in msgs(sim, "b")] == [(MS, b"on-time"), (8 * MS, b"late")]
    assert sim.in_flight == 0 and sim.delivered == 2 and sim.dropped == 0
    assert "delay" in {row["kind"] for row in sim.trace.rows()}


def test_duplicate_message_delivers_it_twice():
    sim = sim_of("a", "b")
    sim.send("a", "b", b"twice")
    (m,) = sim.messages_in_flight()
    sim.duplicate_message(m.key, 4 * MS)
    assert sim.in_flight == 2
    assert sim.trace.records[-1] == (0, "duplicate", "a", "b", b"twice", 4 * MS)
    assert [x.deliver_at for x in sim.messages_in_flight()] == [MS, 5 * MS]
    sim.quiesce(20 * MS)
    assert [(x[0], x[3]) for x in msgs(sim, "b")] == [(MS, b"twice"), (5 * MS, b"twice")]
    assert sim.in_flight == 0 and sim.delivered == 2


def test_nemesis_calls_from_a_scheduled_action_keep_the_counters_consistent():
    sim = sim_of("a", "b")
    for p in (b"m0", b"m1", b"m2"):
        sim.send("a", "b", p)

    def meddle(s: Simulation) -> None:
        m0, m1, m2 = s.messages_in_flight()
        s.drop_message(m0.key)
        s.duplicate_message(m1.key, MS)
        s.delay_message(m2.key, 3 * MS)

    sim.at(MS // 2, meddle)
    sim.run_until(50 * MS)
    assert sim.in_flight == 0 and sim.quiesce(60 * MS)
    assert [(x[0], x[3]) for x in msgs(sim, "b")] == [(MS, b"m1"), (2 * MS, b"m1"),
                                                     (4 * MS, b"m2")]
    assert sim.delivered == 3 and sim.dropped == 1


@pytest.mark.parametrize("action", ["drop", "delay", "duplicate"])
def test_an_unknown_key_is_refused_and_changes_nothing(action):
    sim = sim_of("a", "b")
    sim.send("a", "b", b"x")
    sim.set_timer("a", "t", 5 * MS)
    timer_key = max(ev.seq for ev in sim._host.heap)  # a timer's key is not a message's
    before = snapshot(sim)
    for key in (10**9, -1, timer_key):
        with pytest.raises(InvalidSchedule, match="no message with key"):
            if action == "drop":
                sim.drop_message(key)
            elif action == "delay":
                sim.delay_message(key, MS)
            else:
                sim.duplicate_message(key, MS)
        assert snapshot(sim) == before


def test_a_negative_delay_is_refused_and_changes_nothing():
    sim = sim_of("a", "b")
    sim.send("a", "b", b"x")
    (m,) = sim.messages_in_flight()
    before = snapshot(sim)
    with pytest.raises(InvalidSchedule, match="delay must be an int >= 0"):
        sim.delay_message(m.key, -1)
    with pytest.raises(InvalidSchedule, match="delay must be an int >= 0"):
        sim.duplicate_message(m.key, -1)
    assert snapshot(sim) == before


def test_a_message_delivered_already_cannot_be_touched():
    sim = sim_of("a", "b")
    sim.send("a", "b", b"x")
    (m,) = sim.messages_in_flight()
    sim.run_until(MS)
    assert msgs(sim, "b") != []
    with pytest.raises(InvalidSchedule):
        sim.duplicate_message(m.key)


# ---------------------------------------------------------------------- set_timer


def test_set_timer_fires_once():
    sim = sim_of("a", "b")
    sim.set_timer("a", "wake", 3 * MS)
    assert sim.pending_oneshot_timers == 1
    sim.run_until(50 * MS)
    assert sim.process("a").seen == [(3 * MS, "timer", "wake")]
    assert sim.process("b").seen == []
    assert sim.pending_oneshot_timers == 0
    assert [r for r in sim.trace.records if r[1] == "timer"] == [
        (3 * MS, "timer", "a", None, None, "wake")]


def test_set_timer_defaults_to_now_and_replaces_a_timer_of_the_same_name():
    sim = sim_of("a")
    sim.run_until(2 * MS)
    sim.set_timer("a", ("shard", 1), 5 * MS)
    sim.set_timer("a", ("shard", 1))  # replaces it: fires now, once
    assert sim.pending_oneshot_timers == 1
    sim.run_until(20 * MS)
    assert sim.process("a").seen == [(2 * MS, "timer", ("shard", 1))]


def test_set_timer_on_a_paused_node_fires_after_resume():
    sim = sim_of("a")
    sim.pause("a")
    sim.set_timer("a", "t", MS)
    sim.run_until(5 * MS)
    assert sim.process("a").seen == []
    sim.resume("a")
    sim.run_until(5 * MS)
    assert sim.process("a").seen == [(5 * MS, "timer", "t")]


def test_set_timer_refuses_a_down_or_unknown_node_and_a_bad_delay():
    sim = sim_of("a")
    sim.crash("a")
    before = snapshot(sim)
    with pytest.raises(InvalidSchedule, match="'a' is down"):
        sim.set_timer("a", "t", MS)
    with pytest.raises(InvalidSchedule, match="unknown node 'zz'"):
        sim.set_timer("zz", "t", MS)
    sim.restart("a")
    for bad in (-1, 1.5):
        with pytest.raises(InvalidArgument, match="delay must be an int >= 0"):
            sim.set_timer("a", "t", bad)
    assert sim.pending_oneshot_timers == before[-1] == 0
    sim.run_until(10 * MS)  # the simulation still runs
    assert sim.process("a").seen == []


def test_a_timer_set_before_a_crash_is_lost():
    sim = sim_of("a")
    sim.set_timer("a", "t", 5 * MS)
    sim.crash("a")
    assert sim.pending_oneshot_timers == 0
    sim.restart("a")
    sim.run_until(10 * MS)
    assert sim.process("a").seen == []


def test_an_unhashable_timer_name_is_refused_without_failing_the_simulation():
    sim = sim_of("a")
    with pytest.raises(GraphrepError):
        sim.set_timer("a", ["not", "hashable"], MS)
    sim.run_until(10 * MS)  # must still run


# ---------------------------------------------------------------------- determinism


def scripted_run(seed: int, meddle: bool = True) -> Simulation:
    config = NetworkConfig(default=LatencyModel.exponential(2 * MS, jitter_ns=MS))
    sim = Simulation(seed, SimConfig(network=config))
    for n in ("a", "b", "c"):
        sim.add_node(n, lambda name, disk: Recorder())
    for i in range(6):
        sim.send("a", "bc"[i % 2], b"ping")
    sim.set_timer("c", "t", 3 * MS)
    if meddle:
        found = sim.messages_in_flight()
        sim.drop_message(found[0].key)
        sim.duplicate_message(found[2].key, MS)
        sim.delay_message(found[4].key, 5 * MS)
    sim.run_until(3 * MS)
    if meddle:
        for m in sim.messages_in_flight()[:1]:
            sim.duplicate_message(m.key)
    sim.send("b", "c", b"late", size=10)
    sim.quiesce(100 * MS)
    return sim


def test_the_same_calls_give_the_same_trace():
    first, second = scripted_run(7), scripted_run(7)
    assert first.trace.hash() == second.trace.hash()
    assert first.trace.records == second.trace.records
    assert (first.delivered, first.dropped) == (second.delivered, second.dropped)
    # and the hash does see the nemesis calls
    assert scripted_run(7, meddle=False).trace.hash() != first.trace.hash()
    assert first.trace.count("drop") == 1 and first.trace.count("duplicate") == 2

"""Event order, run_until, quiesce, crash/restart, pause/resume and failing processes."""

from __future__ import annotations

from typing import Any

import pytest

from graphrep.errors import GraphrepError, InvalidSchedule, SimulationError
from graphrep.sim import process as fx
from graphrep.sim.engine import SimConfig, Simulation
from graphrep.sim.network import LatencyModel, NetworkConfig
from graphrep.sim.process import MS, BaseProcess


class Scripted(BaseProcess):
    """Returns pre-set effects on start and records every callback."""

    def __init__(self, start: list | None = None, on_timer: dict | None = None) -> None:
        self.start = start or []
        self.timer_effects = on_timer or {}
        self.seen: list[tuple] = []

    def on_start(self, now):
        self.seen.append((now, "start"))
        return self.start

    def on_message(self, now, src, payload, size):
        self.seen.append((now, "msg", src, payload, size))

    def on_timer(self, now, name):
        self.seen.append((now, "timer", name))
        return self.timer_effects.get(name)


def constant_sim(seed: int = 0, ns: int = MS) -> Simulation:
    return Simulation(seed, SimConfig(network=NetworkConfig(default=LatencyModel.constant(ns))))


def test_ties_run_in_insertion_order():
    sim = constant_sim()
    sim.add_node("b", lambda n, d: Scripted())
    sim.add_node("a", lambda n, d: Scripted(
        start=[fx.Send("b", i) for i in range(5)] + [fx.SetTimer(t, MS) for t in "xyz"]))
    sim.run_until(MS)
    assert [s[3] for s in sim.process("b").seen if s[1] == "msg"] == [0, 1, 2, 3, 4]
    assert [s[2] for s in sim.process("a").seen if s[1] == "timer"] == ["x", "y", "z"]
    kinds = [r[1] for r in sim.trace.records if r[0] == MS]
    assert kinds == ["deliver"] * 5 + ["timer"] * 3


def test_run_until_time_predicate_and_budget():
    sim = constant_sim()
    sim.add_node("a", lambda n, d: Scripted(start=[fx.SetTimer("tick", 10, periodic=True)]))
    assert sim.run_until(95) is True and sim.now == 95
    assert len([s for s in sim.process("a").seen if s[1] == "timer"]) == 9
    assert sim.run_until(lambda s: s.now >= 200) is True and sim.now == 200
    assert sim.run_until(10**9, max_events=3) is False and sim.now == 230
    with pytest.raises(InvalidSchedule):
        sim.run_until(5)  # the past


def test_quiesce_ignores_periodic_timers_but_waits_for_one_shots_and_messages():
    sim = constant_sim()
    sim.add_node("b", lambda n, d: Scripted())
    sim.add_node("a", lambda n, d: Scripted(start=[
        fx.SetTimer("beat", MS, periodic=True), fx.SetTimer("once", 50 * MS), fx.Send("b", "hi")]))
    assert sim.quiesce(max_time=10 * MS) is False       # "once" is still pending
    assert sim.pending_oneshot_timers == 1 and sim.in_flight == 0
    assert sim.quiesce(max_time=100 * MS) is True
    assert sim.now == 50 * MS and sim.pending_oneshot_timers == 0


def test_cancel_and_replace_timers():
    sim = constant_sim()
    sim.add_node("a", lambda n, d: Scripted(
        start=[fx.SetTimer("t", 10), fx.SetTimer("t", 30), fx.SetTimer("u", 20),
               fx.CancelTimer("u"), fx.CancelTimer("never-set")]))
    assert sim.quiesce(10**6) is True
    assert [s for s in sim.process("a").seen if s[1] == "timer"] == [(30, "timer", "t")]


class Store(BaseProcess):
    """Writes key=value on message ("put", k, v, sync?) and keeps a volatile counter."""

    def __init__(self, name: str, disk) -> None:
        self.booted_with = dict(disk)
        self.volatile = 0

    def on_start(self, now):
        return [fx.SetTimer("oneshot", 10**9)]

    def on_message(self, now, src, payload, size):
        _, key, value, sync = payload
        self.volatile += 1
        return [fx.DurableWrite(key, value)] + ([fx.Sync()] if sync else [])


class Client(BaseProcess):
    def __init__(self, msgs) -> None:
        self.msgs = msgs

    def on_start(self, now):
        return [fx.Send("s", m) for m in self.msgs]


def test_crash_loses_unsynced_writes_and_restart_rebuilds_from_disk():
    sim = constant_sim()
    sim.add_node("s", Store)
    sim.add_node("c", lambda n, d: Client([("put", "a", 1, True), ("put", "b", 2, False)]))
    sim.run_until(2 * MS)
    assert sim.process("s").volatile == 2 and sim.pending_oneshot_timers == 1
    sim.crash("s")
    assert sim.state("s") == "down" and sim.process("s") is None
    assert sim.pending_oneshot_timers == 0              # timers die with the process
    assert sim.disk("s") == {"a": 1}
    sim.crash("s")                                      # no-op
    sim.restart("s")
    assert sim.process("s").booted_with == {"a": 1} and sim.process("s").volatile == 0
    kinds = [r[1] for r in sim.trace.records]
    assert kinds.count("crash") == 1 and kinds.count("restart") == 1


def test_messages_to_a_down_node_are_dropped():
    sim = constant_sim()
    sim.add_node("s", Store)
    sim.add_node("c", lambda n, d: Client([("put", "a", 1, True)]))
    sim.run_until(MS // 2)
    sim.crash("s")
    sim.run_until(2 * MS)
    assert sim.disk("s") == {} and sim.in_flight == 0
    assert [r[5] for r in sim.trace.records if r[1] == "drop"] == ["down"]


def test_scheduled_faults_with_at():
    sim = constant_sim()
    sim.add_node("s", Store)
    sim.at(5 * MS, lambda s: s.crash("s"))
    sim.at(7 * MS, lambda s: s.restart("s"))
    sim.run_until(6 * MS)
    assert sim.state("s") == "down"
    sim.run_until(8 * MS)
    assert sim.state("s") == "up"
    with pytest.raises(InvalidSchedule):
        sim.at(-1, lambda s: None)


def test_pause_holds_events_and_resume_replays_them_in_order():
    sim = constant_sim()
    sim.add_node("b", lambda n, d: Scripted(start=[fx.SetTimer("t", 2 * MS)]))
    sim.add_node("a", lambda n, d: Scripted(start=[fx.Send("b", i) for i in range(3)]))
    sim.run_until(0)
    sim.pause("b")
    sim.run_until(5 * MS)
    assert [s for s in sim.process("b").seen if s[1] != "start"] == []
    assert sim.in_flight == 3 and sim.quiesce(4 * MS) is False
    sim.resume("b")
    assert sim.quiesce(10 * MS) is True
    seen = [s for s in sim.process("b").seen if s[1] != "start"]
    assert seen == [(5 * MS, "msg", "a", 0, 0), (5 * MS, "msg", "a", 1, 0),
                    (5 * MS, "msg", "a", 2, 0), (5 * MS, "timer", "t")]


def test_metrics_and_logs_are_collected_outside_the_trace():
    sim = constant_sim()
    sim.add_node("a", lambda n, d: Scripted(start=[fx.Metric("m", 2.5), fx.Log("hello")]))
    sim.run_until(1)
    assert sim.metrics == [(0, "a", "m", 2.5)] and sim.logs == [(0, "a", "hello")]
    assert [r[1] for r in sim.trace.records] == ["start"]


class Boom(BaseProcess):
    def on_message(self, now, src, payload, size):
        raise RuntimeError("kaboom")


def test_a_raising_process_stops_the_run_with_time_seed_and_event():
    sim = constant_sim(seed=1234, ns=3 * MS)
    sim.add_node("x", lambda n, d: Boom())
    sim.add_node("a", lambda n, d: Scripted(start=[fx.Send("x", "bad")]))
    with pytest.raises(SimulationError) as info:
        sim.run_until(10 * MS)
    msg = str(info.value)
    assert "kaboom" in msg and "3000000 ns" in msg and "seed 1234" in msg
    assert "deliver a->x" in msg
    assert info.value.time_ns == 3 * MS and info.value.seed == 1234
    assert info.value.trace is sim.trace and sim.trace.records[-1][1] == "deliver"
    assert isinstance(info.value.__cause__, RuntimeError)
    with pytest.raises(SimulationError):   # the run stays stopped
        sim.run_until(20 * MS)


@pytest.mark.parametrize("effect", [
    "not an effect", fx.Send("nobody", 1), fx.Send("a", 1, -5), fx.Send("a", 1, 1.5),
    fx.SetTimer("t", -1), fx.SetTimer("t", 0, periodic=True), fx.SetTimer("t", 1.0),
])
def test_malformed_effects_stop_the_run(effect: Any):
    sim = constant_sim(seed=5)
    sim.add_node("a", lambda n, d: Scripted(start=[effect]))
    with pytest.raises(SimulationError, match=r"malformed effect.*start a.*seed 5"):
        sim.run_until(MS)


def test_non_list_return_stops_the_run():
    sim = constant_sim()
    sim.add_node("a", lambda n, d: Scripted(start=fx.Send("a", 1)))  # type: ignore[arg-type]
    with pytest.raises(SimulationError, match="not a list"):
        sim.run_until(MS)


def test_unknown_nodes_and_duplicate_names():
    sim = constant_sim(seed=8)
    sim.add_node("a", lambda n, d: Scripted())
    with pytest.raises(GraphrepError):
        sim.add_node("a", lambda n, d: Scripted())
    for fault in (sim.crash, sim.restart, sim.pause, sim.resume):
        with pytest.raises(InvalidSchedule, match="seed 8"):
            fault("ghost")


def test_tracing_can_be_switched_off_without_changing_the_run():
    def run(trace: bool) -> list:
        net = NetworkConfig(default=LatencyModel.exponential(MS), loss=0.2)
        sim = Simulation(3, SimConfig(network=net, trace=trace))
        sim.add_node("b", lambda n, d: Scripted())
        sim.add_node("a", lambda n, d: Scripted(start=[fx.Send("b", i) for i in range(50)]))
        sim.run_until(100 * MS)
        return sim.process("b").seen

    assert run(True) == run(False)
    off = Simulation(3, SimConfig(trace=False))
    off.add_node("a", lambda n, d: Scripted())
    off.run_until(1)
    assert len(off.trace) == 0


def test_a_message_sent_into_a_partition_that_heals_before_it_lands_gets_through():
    sim = constant_sim(ns=10 * MS)
    sim.add_node("b", lambda n, d: Scripted())
    sim.add_node("a", lambda n, d: Scripted(start=[fx.Send("b", "x")]))
    sim.partition([["a"], ["b"]])
    sim.run_until(5 * MS)
    sim.heal()
    sim.run_until(20 * MS)
    assert [s[3] for s in sim.process("b").seen if s[1] == "msg"] == ["x"]


def test_a_plain_three_tuple_is_a_send_and_other_tuples_are_refused():
    sim = constant_sim(seed=6)
    sim.add_node("b", lambda n, d: Scripted())
    sim.add_node("a", lambda n, d: Scripted(start=[("b", "x", 7), fx.Send("b", "y", 7)]))
    sim.run_until(MS)
    assert [s[3:] for s in sim.process("b").seen if s[1] == "msg"] == [("x", 7), ("y", 7)]
    assert sim.link_stats() == [{"src": "a", "dst": "b", "messages": 2, "bytes": 14}]
    for bad in (("b", "x"), ("b", "x", 1, 2), ("ghost", "x", 0), ("b", "x", -1)):
        sim = constant_sim(seed=6)
        sim.add_node("b", lambda n, d: Scripted())
        sim.add_node("a", lambda n, d, bad=bad: Scripted(start=[bad]))
        with pytest.raises(SimulationError, match=r"malformed effect.*seed 6"):
            sim.run_until(MS)


def test_samples_record_in_flight_over_time_without_changing_the_run():
    def run(sample_ns: int) -> tuple[list, Simulation]:
        config = SimConfig(network=NetworkConfig(default=LatencyModel.constant(10 * MS)),
                           sample_ns=sample_ns)
        sim = Simulation(2, config)
        sim.add_node("b", lambda n, d: Scripted())
        sim.add_node("a", lambda n, d: Scripted(
            start=[fx.Send("b", 0), fx.SetTimer("later", 15 * MS)],
            on_timer={"later": [fx.Send("b", 1), fx.Send("b", 2)]}))
        sim.run_until(40 * MS)
        return sim.trace.records, sim

    records, sampled = run(5 * MS)
    assert records == run(0)[0]
    cols = sampled.samples()
    assert cols["time_ns"] == [5 * MS * i for i in range(1, 9)]
    # a sample at T sees every event before T: one message in flight until it lands at
    # 10 ms, two sent at 15 ms landing at 25 ms
    assert cols["in_flight"] == [1, 1, 0, 2, 2, 0, 0, 0]
    assert cols["delivered"] == [0, 0, 1, 1, 1, 3, 3, 3]
    assert run(0)[1].samples()["time_ns"] == []
    with pytest.raises(GraphrepError, match="sample_ns"):
        SimConfig(sample_ns=-1)


def test_metrics_come_out_as_columns():
    sim = constant_sim()
    sim.add_node("a", lambda n, d: Scripted(start=[fx.Metric("lag", 2.5), fx.Metric("lag", 3.0)]))
    sim.run_until(MS)
    assert sim.metric_columns() == {"time_ns": [0, 0], "node": ["a", "a"],
                                    "name": ["lag", "lag"], "value": [2.5, 3.0]}

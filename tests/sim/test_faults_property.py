"""Random fault schedules never break the engine's bookkeeping.

Ping-pong retries forever, so once every fault is undone (heal, resume, restart) the
run must finish and quiesce with nothing in flight and no timer pending, whatever
happened before. Counters going negative or a held event getting lost would show here.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from graphrep.sim.engine import SimConfig, Simulation
from graphrep.sim.network import LatencyModel, NetworkConfig

from .protocols import MS, Pinger, Ponger

NODES = ("ping", "pong")
faults = st.lists(
    st.tuples(st.integers(0, 200 * MS),
              st.sampled_from(["crash", "restart", "pause", "resume", "partition", "heal"]),
              st.sampled_from(NODES)),
    max_size=12,
)


@settings(max_examples=40)
@given(seed=st.integers(0, 2**16), schedule=faults, loss=st.floats(0, 0.3))
def test_any_schedule_then_repair_quiesces(seed, schedule, loss):
    net = NetworkConfig(default=LatencyModel.exponential(5 * MS), loss=loss, duplicate=0.1)
    sim = Simulation(seed, SimConfig(network=net))
    sim.add_node("pong", lambda n, d: Ponger())
    sim.add_node("ping", lambda n, d: Pinger("pong", 5))
    for time_ns, fault, node in sorted(schedule):
        if fault == "partition":
            sim.at(time_ns, lambda s: s.partition([["ping"], ["pong"]]))
        elif fault == "heal":
            sim.at(time_ns, lambda s: s.heal())
        else:
            sim.at(time_ns, lambda s, f=fault, n=node: getattr(s, f)(n))
    sim.run_until(250 * MS)
    assert sim.in_flight >= 0 and sim.pending_oneshot_timers >= 0
    sim.heal()
    for n in NODES:
        sim.resume(n)
        sim.restart(n)
    assert sim.quiesce(max_time=sim.now + 100_000 * MS) is True
    assert sim.process("ping").acked == 5
    assert sim.in_flight == 0 and sim.pending_oneshot_timers == 0

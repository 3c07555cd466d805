"""Example protocols running end to end under faults."""

from __future__ import annotations

from graphrep.sim.engine import SimConfig, Simulation
from graphrep.sim.network import LatencyModel, NetworkConfig

from .protocols import MS, Pinger, Ponger, faulty_gossip_run, gossip_factory


def test_ping_pong_completes_under_loss_and_duplication_then_quiesces():
    net = NetworkConfig(default=LatencyModel.exponential(5 * MS), loss=0.3, duplicate=0.2)
    sim = Simulation(11, SimConfig(network=net))
    sim.add_node("pong", lambda n, d: Ponger())
    sim.add_node("ping", lambda n, d: Pinger("pong", 20))
    assert sim.quiesce(max_time=60_000 * MS) is True
    assert sim.process("ping").acked == 20
    assert sim.trace.count("drop") > 0 and sim.trace.count("duplicate") > 0


def test_gossip_converges_after_partition_crash_and_heal():
    sim = faulty_gossip_run(7)
    everything = {f"vn{i}-{j}" for i in range(5) for j in range(3)}
    for name in sim.nodes:
        assert sim.process(name).values == everything
    assert sim.disk("n3")["values"] == everything   # synced, survives the next crash


def test_gossip_restarted_node_recovers_its_synced_values():
    sim = Simulation(2, SimConfig(network=NetworkConfig(default=LatencyModel.constant(MS))))
    names = ["a", "b"]
    sim.add_node("a", gossip_factory(names, {"a": ["x"]}))
    sim.add_node("b", gossip_factory(names, {}))
    sim.run_until(lambda s: "x" in s.process("b").values, max_events=1000)
    sim.partition([["a"], ["b"]])
    sim.crash("b")
    sim.restart("b")
    assert sim.process("b").values == {"x"}

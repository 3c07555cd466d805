"""Fault schedules as data: validation, application, seeded drawing, Hypothesis strategies."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from graphrep.errors import InvalidSchedule
from graphrep.sim.engine import SimConfig, Simulation
from graphrep.sim.nemesis import Fault, apply_schedule, draw_schedule, validate_schedule
from graphrep.sim.network import LatencyModel, NetworkConfig
from graphrep.sim.strategies import schedules

from .protocols import MS, gossip_factory

NAMES = ["a", "b", "c"]


def gossip_sim(seed: int) -> Simulation:
    net = NetworkConfig(default=LatencyModel.exponential(5 * MS))
    sim = Simulation(seed, SimConfig(network=net))
    for n in NAMES:
        sim.add_node(n, gossip_factory(NAMES, {n: [f"v{n}"]}))
    return sim


@pytest.mark.parametrize("fault,match", [
    (Fault(5, "crash", node="zz"), "unknown node 'zz'"),
    (Fault(-1, "heal"), "time must be"),
    (Fault(5, "loss", p=1.5), r"probability must be in \[0, 1\]"),
    (Fault(5, "duplicate", p=-0.1), "probability"),
    (Fault(5, "explode"), "unknown fault kind"),  # type: ignore[arg-type]
    (Fault(5, "partition", groups=(("a",), ("zz",))), "unknown node"),
    (Fault(5, "partition_one_way", groups=(("a",),)), "exactly"),
])
def test_bad_schedules_name_the_fault_time_and_seed(fault, match):
    with pytest.raises(InvalidSchedule, match=match) as info:
        validate_schedule([Fault(1, "heal"), fault], NAMES, seed=77)
    assert "seed 77" in str(info.value) and "schedule[1]" in str(info.value)


def test_applied_schedule_runs_at_its_times():
    sim = gossip_sim(1)
    apply_schedule(sim, [Fault(10 * MS, "crash", node="b"),
                         Fault(12 * MS, "partition", groups=(("a",), ("b", "c"))),
                         Fault(20 * MS, "restart", node="b"), Fault(30 * MS, "heal"),
                         Fault(31 * MS, "loss", p=0.2)])
    sim.run_until(15 * MS)
    assert sim.state("b") == "down"
    sim.run_until(40 * MS)
    assert sim.state("b") == "up" and sim.network.loss == 0.2
    kinds = [r[1] for r in sim.trace.records if r[1] in ("crash", "partition", "restart", "heal")]
    assert kinds == ["crash", "partition", "restart", "heal"]


def test_drawn_schedules_are_reproducible_valid_and_undo_every_fault():
    def draw(seed):
        return draw_schedule(np.random.default_rng(seed), NAMES, 1_000 * MS,
                             crash_rate=5, pause_rate=3, partition_rate=4)
    one = draw(3)
    assert one == draw(3) and one != draw(4)
    validate_schedule(one, NAMES, seed=3)
    assert [f.time_ns for f in one] == sorted(f.time_ns for f in one)
    kinds = [f.kind for f in one]
    assert kinds.count("crash") == kinds.count("restart")
    assert kinds.count("partition") == kinds.count("heal")


@settings(max_examples=30)
@given(schedule=schedules(NAMES, 200 * MS, max_faults=8))
def test_gossip_converges_after_any_generated_schedule_is_repaired(schedule):
    validate_schedule(schedule, NAMES, seed=0)
    sim = gossip_sim(5)
    apply_schedule(sim, schedule)
    sim.run_until(250 * MS)
    sim.heal()
    sim.set_network_faults(loss=0.0, duplicate=0.0)
    for n in NAMES:
        sim.resume(n)
        sim.restart(n)
    everything = {f"v{n}" for n in NAMES}
    done = sim.run_until(lambda s: all(s.process(n).values == everything for n in NAMES),
                         max_events=20_000)
    assert done, schedule

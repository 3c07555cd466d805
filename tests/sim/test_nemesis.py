"""Fault schedules as data: validation, application, seeded drawing, Hypothesis strategies."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from graphrep.errors import InvalidSchedule
from graphrep.sim.engine import SimConfig, Simulation
from graphrep.sim.nemesis import Fault, apply_schedule, draw_schedule, validate_schedule
from graphrep.sim.network import LatencyModel, NetworkConfig
from graphrep.sim.strategies import ALL_KINDS, schedules

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
    (Fault(5, "hold", node="a", peer="a"), "same peer"),
    (Fault(5, "release", node="a", peer="zz"), "unknown or same peer"),
    (Fault(5, "clock", node="a", drift_ppm=-1_000_000), "drift_ppm"),
    (Fault(5, "reorder", p=2.0), "probability"),
    (Fault(5, "partition_regions", groups=(("eu",), ("mars",))), "unknown region 'mars'"),
])
def test_bad_schedules_name_the_fault_time_and_seed(fault, match):
    with pytest.raises(InvalidSchedule, match=match) as info:
        validate_schedule([Fault(1, "heal"), fault], NAMES, seed=77, regions=["eu", "us"])
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


def test_region_hold_clock_and_reorder_faults_are_schedule_data():
    net = NetworkConfig(default=LatencyModel.constant(MS))
    sim = Simulation(2, SimConfig(network=net))
    for n, region in zip(NAMES, ["eu", "eu", "us"], strict=True):
        sim.add_node(n, gossip_factory(NAMES, {n: [f"v{n}"]}), region)
    apply_schedule(sim, [
        Fault(1 * MS, "partition_regions", groups=(("eu",), ("us",))),
        Fault(2 * MS, "hold", node="a", peer="b"),
        Fault(3 * MS, "clock", node="c", offset_ns=5 * MS, drift_ppm=1000),
        Fault(4 * MS, "reorder", p=0.25),
        Fault(8 * MS, "release", node="a", peer="b"),
        Fault(9 * MS, "heal")])
    sim.run_until(5 * MS)
    assert ("a", "c") in sim.network.blocked and ("a", "b") not in sim.network.blocked
    assert ("a", "b") in sim.network.held and sim.network.reorder == 0.25
    sim.run_until(10 * MS)
    assert not sim.network.blocked and not sim.network.held
    kinds = [r[1] for r in sim.trace.records
             if r[1] not in ("send", "deliver", "timer", "drop", "reorder")]
    assert kinds[-6:] == ["partition", "hold", "clock", "network", "release", "heal"]
    with pytest.raises(InvalidSchedule, match="unknown region"):
        apply_schedule(sim, [Fault(20 * MS, "partition_regions", groups=(("eu",), ("xx",)))])


def test_drawn_holds_are_released():
    one = draw_schedule(np.random.default_rng(1), NAMES, 1_000 * MS, hold_rate=6)
    kinds = [f.kind for f in one]
    assert kinds.count("hold") == kinds.count("release") > 0
    validate_schedule(one, NAMES, seed=1)


@settings(max_examples=30)
@given(schedule=schedules(NAMES, 200 * MS, max_faults=8, kinds=ALL_KINDS, regions=["local"]))
def test_gossip_converges_after_any_generated_schedule_is_repaired(schedule):
    validate_schedule(schedule, NAMES, seed=0)
    sim = gossip_sim(5)
    apply_schedule(sim, schedule)
    sim.run_until(250 * MS)
    sim.heal()
    sim.set_network_faults(loss=0.0, duplicate=0.0, reorder=0.0)
    for n in NAMES:
        sim.resume(n)
        sim.restart(n)
        for m in NAMES:
            if m != n:
                sim.release(n, m)
    everything = {f"v{n}" for n in NAMES}
    done = sim.run_until(lambda s: all(s.process(n).values == everything for n in NAMES),
                         max_events=20_000)
    assert done, schedule

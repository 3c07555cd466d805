"""Latency distributions, loss, duplication and partitions."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest

from graphrep.errors import InvalidArgument, InvalidSchedule
from graphrep.sim.engine import SimConfig, Simulation
from graphrep.sim.network import LatencyModel, NetworkConfig
from graphrep.sim.process import MS, BaseProcess, Send


class Sink(BaseProcess):
    def __init__(self) -> None:
        self.got: list[tuple[int, str, Any]] = []

    def on_message(self, now, src, payload, size):
        self.got.append((now, src, payload))


class Burst(Sink):
    """Sends ``n`` numbered messages to each of ``targets`` at start."""

    def __init__(self, targets: list[str], n: int) -> None:
        super().__init__()
        self.targets, self.n = targets, n

    def on_start(self, now):
        return [Send(t, i) for i in range(self.n) for t in self.targets]


def sim_with(net: NetworkConfig, layout: dict[str, str], n: int = 1, seed: int = 1,
             senders: tuple[str, ...] = ("a",)) -> Simulation:
    sim = Simulation(seed, SimConfig(network=net))
    names = list(layout)
    for name, region in layout.items():
        if name in senders:
            sim.add_node(name, lambda nm, d: Burst([x for x in names if x != nm], n), region)
        else:
            sim.add_node(name, lambda nm, d: Sink(), region)
    return sim


def test_constant_latency_per_region_pair():
    net = NetworkConfig(default=LatencyModel.constant(1 * MS),
                        regions={("eu", "us"): LatencyModel.constant(40 * MS)})
    sim = sim_with(net, {"a": "eu", "b": "eu", "c": "us"})
    sim.run_until(100 * MS)
    assert sim.process("b").got == [(1 * MS, "a", 0)]
    assert sim.process("c").got == [(40 * MS, "a", 0)]


@pytest.mark.parametrize("model,low,high", [
    (LatencyModel.uniform(2 * MS, 3 * MS), 2 * MS, 3 * MS),
    (LatencyModel.constant(5 * MS, jitter_ns=MS), 5 * MS, 6 * MS),
    (LatencyModel.exponential(10 * MS), 0, 10**12),
    (LatencyModel.lognormal(10 * MS, 0.5), 0, 10**12),
])
def test_distributions_stay_in_range(model, low, high):
    sim = sim_with(NetworkConfig(default=model), {"a": "r", "b": "r"}, n=300)
    sim.run_until(10**12)
    times = [t for t, _, _ in sim.process("b").got]
    assert len(times) == 300
    assert all(low <= t <= high for t in times)
    if model.kind == "exponential":
        assert 5 * MS < sum(times) / len(times) < 15 * MS


def test_bad_latency_and_probabilities_are_rejected():
    with pytest.raises(InvalidArgument):
        LatencyModel.uniform(5, 1)
    with pytest.raises(InvalidArgument):
        LatencyModel.constant(-1)
    with pytest.raises(InvalidArgument):
        LatencyModel("gaussian")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        NetworkConfig(loss=1.5)
    with pytest.raises(InvalidArgument):
        NetworkConfig(duplicate=-0.1)


def test_full_loss_and_full_duplication():
    lossy = sim_with(NetworkConfig(loss=1.0), {"a": "r", "b": "r"}, n=20)
    lossy.run_until(1000 * MS)
    assert lossy.process("b").got == [] and lossy.trace.count("drop") == 20
    dup = sim_with(NetworkConfig(duplicate=1.0), {"a": "r", "b": "r"}, n=20)
    dup.run_until(1000 * MS)
    assert sorted(p for _, _, p in dup.process("b").got) == sorted(list(range(20)) * 2)
    assert dup.trace.count("duplicate") == 20


def test_loss_does_not_change_the_latency_of_survivors():
    model = LatencyModel.exponential(10 * MS)
    clean = sim_with(NetworkConfig(default=model), {"a": "r", "b": "r"}, n=200)
    lossy = sim_with(NetworkConfig(default=model, loss=0.3), {"a": "r", "b": "r"}, n=200)
    clean.run_until(10**12)
    lossy.run_until(10**12)
    # the k-th message draws the k-th delay whether or not an earlier one was lost
    clean_delay = {p: t for t, _, p in clean.process("b").got}
    for t, _, p in lossy.process("b").got:
        assert clean_delay[p] == t
    assert 0 < len(lossy.process("b").got) < 200


def test_adding_a_node_does_not_change_other_links():
    model = LatencyModel.exponential(10 * MS)
    small = sim_with(NetworkConfig(default=model), {"a": "r", "b": "r"}, n=50)
    big = sim_with(NetworkConfig(default=model), {"a": "r", "z": "r", "b": "r"}, n=50)
    small.run_until(10**12)
    big.run_until(10**12)
    assert small.process("b").got == big.process("b").got


def layout3():
    return {"a": "eu", "b": "eu", "c": "us"}


def test_symmetric_partition_drops_both_ways_until_heal():
    sim = sim_with(NetworkConfig(), layout3(), senders=("a", "c"))
    sim.partition([["a"], ["c"]])
    sim.run_until(10 * MS)
    assert [s for _, s, _ in sim.process("b").got] == ["a", "c"]
    assert sim.process("a").got == [] and sim.process("c").got == []
    sim.heal()
    sim.process("a").targets = ["c"]
    sim.restart("a")  # no-op: a is up
    assert sim.state("a") == "up"


def test_one_way_partition():
    sim = sim_with(NetworkConfig(), layout3(), senders=("a", "c"))
    sim.partition_one_way(["a"], ["c"])
    sim.run_until(10 * MS)
    assert sim.process("c").got == []                       # a -> c cut
    assert [s for _, s, _ in sim.process("a").got] == ["c"]  # c -> a flows


def test_region_partition_cuts_messages_already_in_flight():
    net = NetworkConfig(default=LatencyModel.constant(10 * MS))
    sim = sim_with(net, layout3())
    sim.run_until(5 * MS)           # a's messages are on the wire
    sim.partition_regions([["eu"], ["us"]])
    sim.run_until(20 * MS)
    assert sim.process("b").got == [(10 * MS, "a", 0)]
    assert sim.process("c").got == []
    drops = [r for r in sim.trace.records if r[1] == "drop"]
    assert drops == [(10 * MS, "drop", "a", "c", 0, "partition")]


def test_partition_with_unknown_node_names_time_and_seed():
    sim = sim_with(NetworkConfig(), layout3(), seed=42)
    sim.run_until(3 * MS)
    with pytest.raises(InvalidSchedule, match=r"'zz'.*3000000 ns.*seed 42"):
        sim.partition([["a"], ["zz"]])


def test_reordering_lets_later_messages_overtake_and_touches_no_other_draw():
    def arrivals(reorder: float) -> list:
        net = NetworkConfig(default=LatencyModel.constant(MS), reorder=reorder,
                            reorder_delay=LatencyModel.uniform(0, 20 * MS))
        sim = sim_with(net, {"a": "x", "b": "x"}, n=200, seed=4)
        sim.run_until(100 * MS)
        return [p for _, _, p in sim.process("b").got]

    assert arrivals(0.0) == list(range(200))  # constant latency: FIFO
    mixed = arrivals(0.3)
    assert sorted(mixed) == list(range(200)) and mixed != list(range(200))
    inversions = sum(1 for i, j in pairwise(mixed) if i > j)
    assert inversions > 10
    with pytest.raises(InvalidArgument, match="reorder"):
        NetworkConfig(reorder=1.5)

"""Geo-region latency presets (graphrep.sim.regions): the numbers, the entries for a
run's config, the node layout, what they refuse, and the delays a simulation draws
from them."""

from __future__ import annotations

from typing import Any

import pytest

from graphrep.cluster import ClusterConfig
from graphrep.errors import InvalidArgument
from graphrep.sim.engine import SimConfig, Simulation
from graphrep.sim.network import LatencyModel, NetworkConfig
from graphrep.sim.process import MS, BaseProcess, Send
from graphrep.sim.regions import (
    INTRA_REGION,
    REGION_PRESET,
    known_regions,
    nodes_in_regions,
    region_latency,
)

ALL = ("eu", "us", "ap")


def test_the_preset_numbers():
    assert known_regions() == ("eu", "us", "ap")
    assert dict(REGION_PRESET) == {("eu", "us"): 40 * MS, ("ap", "us"): 90 * MS,
                                   ("ap", "eu"): 120 * MS}
    assert all(a < b for a, b in REGION_PRESET)  # one key per unordered pair
    assert LatencyModel.uniform(500_000, 2_000_000) == INTRA_REGION
    with pytest.raises(TypeError):
        REGION_PRESET[("eu", "us")] = 1  # type: ignore[index]


def test_region_latency_lists_every_ordered_pair_with_its_model():
    entries = region_latency(ALL)
    assert [(a, b) for a, b, _ in entries] == [
        ("eu", "eu"), ("eu", "us"), ("eu", "ap"), ("us", "eu"), ("us", "us"), ("us", "ap"),
        ("ap", "eu"), ("ap", "us"), ("ap", "ap")]
    models = {(a, b): m for a, b, m in entries}
    for r in ALL:
        assert models[(r, r)] == LatencyModel.uniform(500_000, 2_000_000)
    for (a, b), ms, jitter_ns in ((("eu", "us"), 40, 2_000_000), (("us", "ap"), 90, 4_500_000),
                                  (("eu", "ap"), 120, 6_000_000)):
        expected = LatencyModel.constant(ms * MS, jitter_ns=jitter_ns)
        assert models[(a, b)] == models[(b, a)] == expected
    # a subset, in the order given
    assert [(a, b) for a, b, _ in region_latency(["ap", "eu"])] == [
        ("ap", "ap"), ("ap", "eu"), ("eu", "ap"), ("eu", "eu")]
    assert region_latency(["us"]) == (("us", "us", INTRA_REGION),)


def test_a_network_config_finds_every_pair_both_ways():
    net = ClusterConfig(nodes=3, replica_regions=nodes_in_regions(ALL, 1),
                        region_latency=region_latency(ALL)).network()
    assert net.latency("ap", "eu") == net.latency("eu", "ap")
    assert net.latency("ap", "eu").expected_ns() == 123 * MS  # 120 ms + half the jitter
    assert net.latency("us", "eu").expected_ns() == 41 * MS
    assert net.latency("us", "us").expected_ns() == 1.25 * MS
    assert net.latency("eu", "local") == net.default  # pairs outside the preset


def test_nodes_in_regions_is_region_major():
    assert nodes_in_regions(ALL, 1) == ("eu", "us", "ap")
    assert nodes_in_regions(ALL, 3) == ("eu",) * 3 + ("us",) * 3 + ("ap",) * 3
    assert nodes_in_regions(("ap", "eu"), 2) == ("ap", "ap", "eu", "eu")
    cfg = ClusterConfig(nodes=6, replica_regions=nodes_in_regions(("us", "ap"), 3))
    assert [cfg.region(i) for i in range(6)] == ["us"] * 3 + ["ap"] * 3
    assert cfg.regions_in_use() == ("ap", "us")


@pytest.mark.parametrize("call,match", [
    (lambda: region_latency(["eu", "mars"]), r"unknown region\(s\) 'mars'; known regions: "
                                             r"eu, us, ap"),
    (lambda: nodes_in_regions(["EU"], 1), r"'EU'; known regions: eu, us, ap"),
    (lambda: region_latency(["eu", "us", "eu"]), r"'eu' given more than once"),
    (lambda: region_latency([]), r"at least one region; known regions: eu, us, ap"),
    (lambda: region_latency("eu,us"), r"sequence of region names"),
    (lambda: nodes_in_regions(ALL, 0), r"per_region must be an int >= 1"),
    (lambda: nodes_in_regions(ALL, True), r"per_region must be an int >= 1"),
])
def test_bad_regions_are_refused_naming_the_known_ones(call, match):
    with pytest.raises(InvalidArgument, match=match):
        call()


class Sink(BaseProcess):
    def __init__(self) -> None:
        self.got: list[tuple[int, str, Any]] = []

    def on_message(self, now, src, payload, size):
        self.got.append((now, src, payload))


class Burst(Sink):
    """Sends ``n`` numbered messages to every other node at start."""

    def __init__(self, targets: list[str], n: int) -> None:
        super().__init__()
        self.targets, self.n = targets, n

    def on_start(self, now):
        return [Send(t, i) for i in range(self.n) for t in self.targets]


def _delays(seed: int, n: int = 200) -> dict[str, list[int]]:
    """The delivery times of ``n`` messages from a node in eu to a node in each region."""
    net = NetworkConfig(regions={(a, b): m for a, b, m in region_latency(ALL)})
    sim = Simulation(seed, SimConfig(network=net))
    targets = ["eu2", "us1", "ap1"]
    sim.add_node("eu1", lambda nm, d: Burst(targets, n), "eu")
    for name in targets:
        sim.add_node(name, lambda nm, d: Sink(), name[:2])
    sim.run_until(10**12)
    return {name: [t for t, _, _ in sim.process(name).got] for name in targets}


def test_a_simulation_draws_its_delays_from_the_preset():
    got = _delays(seed=3)
    assert all(len(times) == 200 for times in got.values())
    assert all(500_000 <= t <= 2_000_000 for t in got["eu2"])
    assert all(40 * MS <= t <= 42 * MS for t in got["us1"])
    assert all(120 * MS <= t <= 126 * MS for t in got["ap1"])
    # the jitter spreads them: neither constant nor all at one end
    for times, low, spread in ((got["eu2"], 500_000, 1_500_000), (got["us1"], 40 * MS, 2 * MS),
                               (got["ap1"], 120 * MS, 6 * MS)):
        mean = sum(times) / len(times)
        assert low + 0.35 * spread < mean < low + 0.65 * spread
        assert len(set(times)) > 150


def test_the_same_seed_draws_the_same_delays():
    assert _delays(seed=5) == _delays(seed=5)
    assert _delays(seed=5) != _delays(seed=6)

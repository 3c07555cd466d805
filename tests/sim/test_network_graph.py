"""A topology given as a networkx graph: regions are nodes, edges carry latencies in ms."""

from __future__ import annotations

import networkx as nx
import pytest

from graphrep.errors import InvalidArgument
from graphrep.sim.engine import SimConfig, Simulation
from graphrep.sim.network import LatencyModel, NetworkConfig

from .protocols import MS, gossip_factory

LAYOUT = {"a": "eu", "b": "us", "c": "ap", "d": "eu", "e": "us"}


def run_hash(net: NetworkConfig, seed: int = 11) -> str:
    """The trace hash of a gossip run over ``LAYOUT`` under ``net``."""
    sim = Simulation(seed, SimConfig(network=net))
    names = list(LAYOUT)
    for name, region in LAYOUT.items():
        sim.add_node(name, gossip_factory(names, {name: [name]}), region)
    sim.run_until(300 * MS)
    return sim.trace.hash()


def world(order: int = 1) -> nx.Graph:
    edges = [("eu", "us", 40), ("us", "ap", 90.5), ("eu", "ap", 120), ("eu", "eu", 2)]
    g = nx.Graph()
    g.add_nodes_from(["ap", "eu", "us"][::order])
    for a, b, ms in edges[::order]:
        g.add_edge(*((a, b) if order > 0 else (b, a)), latency=ms)
    return g


def explicit(**options) -> NetworkConfig:
    return NetworkConfig(regions={("eu", "us"): LatencyModel.constant(40 * MS),
                                  ("ap", "us"): LatencyModel.constant(90_500_000),
                                  ("ap", "eu"): LatencyModel.constant(120 * MS),
                                  ("eu", "eu"): LatencyModel.constant(2 * MS)}, **options)


def test_every_pair_gets_the_latency_of_its_edge_both_ways():
    net = NetworkConfig.from_graph(world(), default=LatencyModel.constant(7 * MS))
    assert net.latency("us", "eu") == net.latency("eu", "us") == LatencyModel.constant(40 * MS)
    assert net.latency("ap", "us") == LatencyModel.constant(90_500_000)
    assert net.latency("eu", "eu") == LatencyModel.constant(2 * MS)
    assert net.latency("us", "us") == LatencyModel.constant(7 * MS)  # no edge: the default


@pytest.mark.parametrize("options", [
    {},
    {"default": LatencyModel.exponential(3 * MS), "loss": 0.1, "duplicate": 0.05},
])
def test_a_run_is_the_same_given_either_way(options):
    from_graph = run_hash(NetworkConfig.from_graph(world(), **options))
    assert from_graph == run_hash(explicit(**options))
    assert from_graph == run_hash(NetworkConfig.from_graph(world(order=-1), **options))
    assert from_graph != run_hash(NetworkConfig(**options))  # the topology matters


def test_a_directed_graph_gives_each_direction_its_own_latency():
    g = nx.DiGraph()
    g.add_edge("eu", "us", latency=40)
    g.add_edge("us", "eu", latency=LatencyModel.lognormal(60 * MS, 0.3))
    g.add_edge("eu", "ap", latency=120)  # one way only: looked up both ways
    net = NetworkConfig.from_graph(g)
    assert net.latency("eu", "us") == LatencyModel.constant(40 * MS)
    assert net.latency("us", "eu") == LatencyModel.lognormal(60 * MS, 0.3)
    assert net.latency("ap", "eu") == net.latency("eu", "ap") == LatencyModel.constant(120 * MS)


@pytest.mark.parametrize(("edge", "attrs"), [
    ((1, 2), {"latency": 5}),
    (("eu", "us"), {}),
    (("eu", "us"), {"latency": -1}),
    (("eu", "us"), {"latency": float("nan")}),
    (("eu", "us"), {"latency": "40ms"}),
    (("eu", "us"), {"latency": True}),
])
def test_bad_graphs_are_refused(edge, attrs):
    g = nx.Graph()
    g.add_edge(*edge, **attrs)
    with pytest.raises(InvalidArgument):
        NetworkConfig.from_graph(g)


def test_regions_come_from_the_graph_only():
    with pytest.raises(InvalidArgument):
        NetworkConfig.from_graph(world(), regions={})

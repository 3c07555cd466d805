"""Small example protocols (and one faulty scenario) that drive the simulator in tests.

They are written exactly as a protocol author would: subclasses of ``BaseProcess`` that
return effect lists and never touch the engine.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from graphrep.sim.engine import SimConfig, Simulation
from graphrep.sim.network import LatencyModel, NetworkConfig
from graphrep.sim.process import MS, BaseProcess, DurableWrite, Send, SetTimer, Sync


class Gossip(BaseProcess):
    """Broadcast by anti-entropy: every ``period`` push the whole known set to the next peer
    (round robin, so no randomness is needed). Known values are synced to disk, so a
    restarted node resumes from what it had."""

    def __init__(self, name: str, disk: Mapping[Hashable, Any], peers: list[str],
                 initial: list[str], period: int = 5 * MS) -> None:
        self.name = name
        self.peers = [p for p in peers if p != name]
        self.values: set[str] = set(disk.get("values", ())) | set(initial)
        self.period = period
        self.turn = 0

    def on_start(self, now: int) -> list:
        return [DurableWrite("values", frozenset(self.values)), Sync(),
                SetTimer("gossip", self.period, periodic=True)]

    def on_timer(self, now: int, name: Hashable) -> list:
        peer = self.peers[self.turn % len(self.peers)]
        self.turn += 1
        return [Send(peer, ("gossip", frozenset(self.values)), 8 * len(self.values))]

    def on_message(self, now: int, src: str, payload: Any, size: int) -> list:
        new = payload[1] - self.values
        if not new:
            return []
        self.values |= new
        return [DurableWrite("values", frozenset(self.values)), Sync()]


def gossip_factory(peers: list[str], initial: dict[str, list[str]]):
    """A factory for ``Simulation.add_node``."""
    def build(name: str, disk: Mapping[Hashable, Any]) -> Gossip:
        return Gossip(name, disk, peers, initial.get(name, []))
    return build


class Pinger(BaseProcess):
    """Sends ``count`` pings one at a time to ``peer``, retrying on a one-shot timer."""

    def __init__(self, peer: str, count: int, retry: int = 50 * MS) -> None:
        self.peer = peer
        self.count = count
        self.retry = retry
        self.acked = 0

    def _ping(self) -> list:
        return [Send(self.peer, ("ping", self.acked), 16), SetTimer("retry", self.retry)]

    def on_start(self, now: int) -> list:
        return self._ping()

    def on_timer(self, now: int, name: Hashable) -> list:
        return self._ping()

    def on_message(self, now: int, src: str, payload: Any, size: int) -> list:
        if payload != ("pong", self.acked):
            return []  # a stale or duplicated pong
        self.acked += 1
        if self.acked == self.count:
            from graphrep.sim.process import CancelTimer
            return [CancelTimer("retry")]
        return self._ping()


class Ponger(BaseProcess):
    def on_message(self, now: int, src: str, payload: Any, size: int) -> list:
        return [Send(src, ("pong", payload[1]), 16)]


def faulty_gossip_run(seed: int, digest_only: Any = None) -> Simulation:
    """Five gossip nodes in two regions under loss, duplication, a partition and a crash
    (``digest_only``: ``SimConfig.trace_digest_only``)."""
    net = NetworkConfig(
        default=LatencyModel.exponential(10 * MS, jitter_ns=1 * MS),
        regions={("eu", "us"): LatencyModel.lognormal(40 * MS, 0.3, jitter_ns=2 * MS)},
        loss=0.1, duplicate=0.05,
    )
    sim = Simulation(seed, SimConfig(network=net, trace_digest_only=digest_only))
    names = [f"n{i}" for i in range(5)]
    initial = {n: [f"v{n}-{j}" for j in range(3)] for n in names}
    for i, n in enumerate(names):
        sim.add_node(n, gossip_factory(names, initial), region="eu" if i < 3 else "us")
    sim.at(20 * MS, lambda s: s.partition([["n0", "n1"], ["n2", "n3", "n4"]]))
    sim.at(30 * MS, lambda s: s.crash("n3"))
    sim.at(60 * MS, lambda s: s.restart("n3"))
    sim.at(80 * MS, lambda s: s.heal())
    sim.run_until(300 * MS)
    return sim


def scenario_hash(seed: int) -> str:
    """The trace hash of :func:`faulty_gossip_run` (called from a subprocess by a test)."""
    return faulty_gossip_run(seed).trace.hash()

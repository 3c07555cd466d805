"""Pinned fingerprints: the event loop may get faster, but never change a run.

The constants below were computed with the engine as it was *before* its hot loop was
restructured for speed (the fast loop and the optional compiled module), so a
change that shifts any event, draw, counter or sample shows up here as a different
fingerprint. Each scenario mixes the fault-free fast path with every feature that
must send the loop down its general path: loss, duplication, reordering, bandwidth,
partitions (two-way and one-way), held links, paused and crashed nodes, skewed
clocks, sampling, predicates and event budgets, and switches them on and off
mid-run with scheduled calls.

The suite passes with either event loop, the plain-Python one and the optional
mypyc-compiled one (``make fast-sim``; ``GRAPHREP_SIM_PURE=1`` forces plain Python), and
where the compiled one is built a test runs the scenarios under both and compares.

If a fingerprint changes on purpose (a new determinism contract), recompute it with
``python -m tests.sim.test_engine_equivalence`` and say why in the commit.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import types
from collections.abc import Hashable, Mapping
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from typing import Any

import pytest

from graphrep.sim import _loop, engine, variant
from graphrep.sim.engine import SimConfig, Simulation
from graphrep.sim.network import LatencyModel, NetworkConfig
from graphrep.sim.process import BaseProcess, Log, Metric, Send, SetTimer
from graphrep.sim.trace import canonical_bytes

from .protocols import MS, Pinger, Ponger, faulty_gossip_run

ROOT = Path(__file__).resolve().parents[2]


class Relay(BaseProcess):
    """The benchmark's process: forwards every message to a random peer (plain tuples),
    with an occasional ``Send`` of another size, a metric and a periodic tick."""

    def __init__(self, name: str, peers: list[str], rng: Any, fanout: int = 3) -> None:
        self.name = name
        self.peers = [p for p in peers if p != name]
        self.rng = rng
        self.fanout = fanout
        self.got = 0
        self.ticks = 0

    def _peer(self) -> str:
        return self.peers[int(self.rng.integers(len(self.peers)))]

    def on_start(self, now: int) -> list:
        return [SetTimer("tick", 7 * MS, periodic=True)] + [
            (self._peer(), (self.name, i), 100) for i in range(self.fanout)]

    def on_message(self, now: int, src: str, payload: Any, size: int) -> list:
        self.got += 1
        if self.got % 7 == 0:
            return [Send(self._peer(), payload, 1500), Metric("got", float(self.got))]
        return [(self._peer(), payload, size)]

    def on_timer(self, now: int, name: Hashable) -> list:
        self.ticks += 1
        return [Log(f"tick {self.ticks} at {now}")]


def _fingerprint(sim: Simulation, extra: Any = None) -> str:
    """Trace hash plus everything else a run exposes, in one digest."""
    state = (
        sim.trace.hash(), sim.now, sim.events_processed, sim.delivered, sim.dropped,
        sim.in_flight, sim.pending_oneshot_timers, sim.samples(),
        [tuple(sorted(row.items())) for row in sim.link_stats()],
        sim.metrics, sim.logs, [sim.state(n) for n in sim.nodes], extra,
    )
    return hashlib.blake2b(canonical_bytes(state), digest_size=16).hexdigest()


def relay_run(seed: int, trace: bool = True, budget: int = 3000) -> Simulation:
    """The benchmark workload, small: five relays, one region, exponential latency."""
    config = SimConfig(network=NetworkConfig(default=LatencyModel.exponential(10 * MS)),
                       trace=trace)
    sim = Simulation(seed, config)
    names = [f"n{i}" for i in range(5)]

    def factory(name: str, disk: Mapping[Hashable, Any]) -> Relay:
        return Relay(name, names, sim.rng(f"relay:{name}"))

    for n in names:
        sim.add_node(n, factory)
    sim.run_until(2**62, max_events=budget)
    return sim


def everything_run(seed: int) -> tuple[Simulation, list]:
    """Relays in two regions plus a pinger/ponger pair, under every fault, switched on
    and off by scheduled calls, run in segments of every kind."""
    net = NetworkConfig(
        default=LatencyModel.exponential(5 * MS, jitter_ns=MS),
        regions={("eu", "us"): LatencyModel.lognormal(30 * MS, 0.4)},
        bandwidth={("eu", "us"): 50_000_000},
        reorder_delay=LatencyModel.uniform(0, 3 * MS),
    )
    sim = Simulation(seed, SimConfig(network=net, sample_ns=4 * MS))
    names = [f"r{i}" for i in range(5)]

    def factory(name: str, disk: Mapping[Hashable, Any]) -> Relay:
        return Relay(name, names, sim.rng(f"relay:{name}"), fanout=6)

    for i, n in enumerate(names):
        sim.add_node(n, factory, region="eu" if i < 3 else "us")
    sim.add_node("pong", lambda n, d: Ponger())
    sim.add_node("ping", lambda n, d: Pinger("pong", 40, retry=12 * MS))

    sim.at(10 * MS, lambda s: s.set_network_faults(loss=0.15, duplicate=0.2, reorder=0.2))
    sim.at(25 * MS, lambda s: s.set_network_faults(loss=0.0, duplicate=0.0, reorder=0.0))
    sim.at(30 * MS, lambda s: s.partition([["r0", "r1", "ping"], ["r2", "r3", "r4", "pong"]]))
    sim.at(38 * MS, lambda s: s.heal())
    sim.at(40 * MS, lambda s: s.partition_one_way(["r1"], ["r2", "r3"]))
    sim.at(45 * MS, lambda s: s.heal())
    sim.at(50 * MS, lambda s: s.pause("r2"))
    sim.at(57 * MS, lambda s: s.resume("r2"))
    sim.at(60 * MS, lambda s: s.hold("r0", "r4"))
    sim.at(68 * MS, lambda s: s.release("r0", "r4"))
    sim.at(70 * MS, lambda s: s.set_clock("r3", offset_ns=3 * MS, drift_ppm=2000))
    sim.at(80 * MS, lambda s: s.set_clock("r3"))
    sim.at(85 * MS, lambda s: s.crash("r4"))
    sim.at(92 * MS, lambda s: s.restart("r4"))
    sim.at(95 * MS, lambda s: s.crash("pong"))
    sim.at(99 * MS, lambda s: s.restart("pong"))

    checkpoints: list = []
    for target in (5 * MS, 33 * MS, 62 * MS):
        sim.run_until(target)
        checkpoints.append((sim.now, sim.events_processed, sim.in_flight))
    # a predicate sees ``now``, ``in_flight``, ``dropped`` and the processes, not yet
    # the loop's running ``events_processed``/``delivered`` (written back at the end)
    sim.run_until(lambda s: s.now >= 150 * MS
                  or (s.process("r0").got >= 150 and s.in_flight % 3 == 0))
    checkpoints.append((sim.now, sim.events_processed, sim.delivered))
    sim.run_until(10**12, max_events=777)
    checkpoints.append((sim.now, sim.events_processed))
    sim.pause("r1")
    sim.run_until(sim.now + 3 * MS)
    sim.resume("r1")
    sim.run_until(sim.now + 20 * MS)
    checkpoints.append((sim.now, sim.events_processed, sim.dropped))
    return sim, checkpoints


# Computed before the hot loop was restructured (see the module docstring).
PINNED = {
    "faulty_gossip_7": (
        "01cf47c889226c5bd7c2a2958bb19cc43d98870fed37beaaecb0d7a20dc463cc",
        "d5e054289bfa982dcea4017f4533b3aa"),
    "relay_11": (
        "335074455a9bdef8222e816b623667727571e6dd39626539de34f3e99ec27966",
        "c19d29991a1113e1efd63b056475330a"),
    "relay_11_untraced": (
        "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8",
        "a1641102baf0ce9445126542d4152009"),
    "everything_3": (
        "5d2592942db13a93bc2ca9f8bb4f47c895826e340ad9122fb50f0fb0d1b11e16",
        "514b711f55b751ca6913c8ce487cf445"),
    "everything_29": (
        "8072dea89b8991997c00902568e1634e9bfc679f8b8b5630ee5f2d312aa18837",
        "7cf7f576243327c5fa6fc2412adcb21a"),
}


def compute() -> dict[str, tuple[str, str]]:
    """Every scenario's (trace hash, fingerprint)."""
    out = {}
    gossip = faulty_gossip_run(7)
    out["faulty_gossip_7"] = (gossip.trace.hash(), _fingerprint(gossip))
    relay = relay_run(11)
    out["relay_11"] = (relay.trace.hash(), _fingerprint(relay))
    untraced = relay_run(11, trace=False)
    got = [untraced.process(n).got for n in untraced.nodes]  # type: ignore[union-attr]
    out["relay_11_untraced"] = (untraced.trace.hash(), _fingerprint(untraced, got))
    for seed in (3, 29):
        sim, checkpoints = everything_run(seed)
        out[f"everything_{seed}"] = (sim.trace.hash(), _fingerprint(sim, checkpoints))
    return out


@pytest.fixture(scope="module")
def computed() -> dict[str, tuple[str, str]]:
    return compute()


@pytest.mark.parametrize("name", sorted(PINNED))
def test_fingerprint_is_unchanged(computed, name):
    assert computed[name] == PINNED[name]


def test_the_scenarios_exercise_the_slow_paths():
    sim, _ = everything_run(3)
    kinds = {r[1] for r in sim.trace.records}
    assert {"drop", "duplicate", "reorder", "partition", "heal", "pause", "resume", "hold",
            "release", "clock", "crash", "restart", "network", "timer"} <= kinds
    assert sim.samples()["time_ns"] and sim.metrics and sim.logs


def _other_variant_fingerprints() -> dict[str, tuple[str, str]]:
    """``compute()`` in a fresh process running the plain-Python loop."""
    code = ("import json; from tests.sim.test_engine_equivalence import compute; "
            "from graphrep.sim.engine import LOOP_VARIANT; "
            "print(json.dumps([LOOP_VARIANT, compute()]))")
    env = dict(os.environ, **{engine.PURE_ENV: "1"})
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True)
    variant, result = json.loads(out.stdout.strip().splitlines()[-1])
    assert variant == "python"
    return {k: tuple(v) for k, v in result.items()}


@pytest.mark.skipif(engine.LOOP_VARIANT != "mypyc", reason="compiled loop not built")
def test_compiled_and_plain_python_loops_give_the_same_runs(computed):
    assert _other_variant_fingerprints() == computed


def test_a_stale_or_uncompiled_build_is_not_used(monkeypatch):
    """Only an extension built from the current ``_loop.py`` replaces it."""
    fake = types.ModuleType("graphrep.sim._loop_compiled")
    monkeypatch.setitem(sys.modules, "graphrep.sim._loop_compiled", fake)
    monkeypatch.delenv(variant.PURE_ENV, raising=False)
    fake.__file__ = "/nowhere/_loop_compiled.py"  # a source copy: not compiled code
    fake.SOURCE_DIGEST = variant.source_digest()  # type: ignore[attr-defined]
    assert variant.implementation() is _loop
    fake.__file__ = "/nowhere/_loop_compiled" + EXTENSION_SUFFIXES[0]
    assert variant.implementation() is fake
    fake.SOURCE_DIGEST = "0" * 64  # type: ignore[attr-defined]
    with pytest.warns(RuntimeWarning, match="another version"):
        assert variant.implementation() is _loop
    monkeypatch.setenv(variant.PURE_ENV, "1")
    fake.SOURCE_DIGEST = variant.source_digest()  # type: ignore[attr-defined]
    assert variant.implementation() is _loop


def test_the_engine_still_exports_what_moved_out_of_it():
    """``graphrep.sim.engine``'s names from before the loop's host and the choice of
    loop became modules of their own are the same objects as in those modules."""
    from graphrep.sim import host
    assert {"DOWN", "LOOP_VARIANT", "PAUSED", "PURE_ENV", "UP", "InFlight", "LoopHost",
            "SimConfig", "Simulation", "source_digest"} <= set(engine.__all__)
    assert all(hasattr(engine, name) for name in engine.__all__)
    assert engine.LoopHost is host.LoopHost
    assert (engine.PURE_ENV, engine.LOOP_VARIANT, engine.source_digest) == (
        variant.PURE_ENV, variant.LOOP_VARIANT, variant.source_digest)
    assert (engine.UP, engine.PAUSED, engine.DOWN) == (variant.UP, variant.PAUSED,
                                                        variant.DOWN)


if __name__ == "__main__":
    for key, value in compute().items():
        print(f'    "{key}": (\n        "{value[0]}",\n        "{value[1]}"),')

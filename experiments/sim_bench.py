"""How fast is graphrep.sim's event loop? The same workload on it, on SimPy and on bare heapq.

Why: the simulator is its own event loop rather than SimPy (or trio under a mock clock)
because the loop is the cost of every simulated message. This script checks that the
choice pays: the goal is at least 1.7x SimPy's callback style and 9x its idiomatic
process style, with a bare heapq loop as the ceiling.

The workload: 5 nodes, 10 messages in flight per node; every delivery sends one message
on to a random peer (one of the *other* nodes) with exponential latency of mean 10 ms;
count deliveries per wall-clock second until ``--deliveries`` (default 1,000,000) have
happened. Engines:

- ``graphrep``: ``graphrep.sim.engine.Simulation`` with tracing off, one sans-IO
  process per node, returning its send as a plain ``(to, payload, size)`` tuple (the
  spelling graphrep.sim.process documents for hot paths).
  The network draws the latency (``LatencyModel.exponential``); the process draws its
  peer from a random stream the simulator hands it (``sim.rng("bench:<node>")``), in
  numpy batches. The run stops with ``max_events`` (deliveries + the 5 ``on_start``
  events), so no per-event predicate is paid.
- ``graphrep_send``: the same with a ``Send(to, payload)`` object built per message.
- ``graphrep_pure``: ``graphrep`` with ``GRAPHREP_SIM_PURE=1``, run only where the
  optional compiled event loop is built (``make fast-sim``): the plain-Python loop,
  for comparison. Which loop each graphrep engine ran is reported as ``variant``
  (``"mypyc"`` or ``"python"``).
- ``simpy_callback``: SimPy, one ``env.timeout`` plus one callback per message.
- ``simpy_process``: idiomatic SimPy: a ``Store`` inbox and a receiving process per
  node, and one process per message in transit (timeout, then ``put``).
- ``bare_heapq``: a heap of ``(time, counter, node)`` tuples popped and pushed inline:
  the ceiling for any Python event loop.

Every engine draws its random numbers the same way (numpy batches of 1024, handed out
one at a time), uses integer nanoseconds, and times only the event loop, not imports or
set-up. Each engine runs in 3 fresh subprocesses (this script with ``--worker ENGINE``),
interleaved, and the median is reported. The last line of stdout is one JSON object:
deliveries/s per engine (median and samples) and the ratios of graphrep to the others;
it is also written to ``experiments/results/sim_bench.json``.

SimPy is a benchmark-only dependency: ``pip install -e '.[bench]'`` (or ``pip install
simpy``).

Usage::

    python experiments/sim_bench.py                     # 1,000,000 deliveries
    python experiments/sim_bench.py --deliveries 20000  # smoke run
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Hashable, Iterator, Mapping
from heapq import heappop, heappush
from pathlib import Path
from typing import Any

import numpy as np

NODES = 5
IN_FLIGHT_PER_NODE = 10
MEAN_LATENCY_NS = 10_000_000
BATCH = 1024
SEED = 7
REPEATS = 3
ENGINES = ("graphrep", "graphrep_send", "graphrep_pure", "simpy_callback", "simpy_process",
           "bare_heapq")
GRAPHREP_ENGINES = ("graphrep", "graphrep_send", "graphrep_pure")
SIMPY_ENGINES = ("simpy_callback", "simpy_process")
INSTALL_HINT = ("simpy is not installed; it is a benchmark-only dependency. Install it with\n"
                "    pip install -e '.[bench]'\n"
                "(from the repository root) or simply\n"
                "    pip install simpy")
RESULTS = Path(__file__).resolve().parent / "results" / "sim_bench.json"


def batched(draw: Callable[[], list]) -> Callable[[], Any]:
    """One value at a time out of batches produced by ``draw`` (a numpy call per batch);
    the per-value step stays in C, as in graphrep's links."""
    return itertools.chain.from_iterable(map(lambda _: draw(), itertools.repeat(None))).__next__


def peer_stream(gen: np.random.Generator, peers: list) -> Callable[[], Any]:
    """Uniformly random elements of ``peers``, drawn in batches."""
    table = list(peers)
    n = len(table)
    return batched(lambda: [table[i] for i in gen.integers(0, n, BATCH).tolist()])


def latency_stream(gen: np.random.Generator) -> Callable[[], int]:
    """Exponential delays (mean 10 ms) in integer ns, drawn in batches like graphrep's links."""
    return batched(lambda: np.rint(gen.exponential(float(MEAN_LATENCY_NS), BATCH))
                   .astype(np.int64).tolist())


# ---------------------------------------------------------------------------- engines


def run_graphrep(deliveries: int, named: bool = False) -> tuple[int, float]:
    """graphrep.sim with tracing off; returns (deliveries, seconds of the event loop).

    The process returns its send in the plain-tuple spelling ``(to, payload, size)``
    that graphrep.sim.process documents for hot paths; ``named=True`` builds a ``Send``
    per message instead (the ``graphrep_send`` engine), which costs a class call.
    """
    from graphrep.sim.engine import SimConfig, Simulation
    from graphrep.sim.network import LatencyModel, NetworkConfig
    from graphrep.sim.process import BaseProcess, Effects, Send

    names = [f"n{i}" for i in range(NODES)]
    config = SimConfig(network=NetworkConfig(default=LatencyModel.exponential(MEAN_LATENCY_NS)),
                       trace=False)
    sim = Simulation(SEED, config)

    class Relay(BaseProcess):
        """Starts 10 messages; forwards every message it receives to a random peer."""

        __slots__ = ("delivered", "next_peer")

        def __init__(self, next_peer: Callable[[], str]) -> None:
            self.next_peer = next_peer
            self.delivered = 0

        def on_start(self, now: int) -> Effects:
            return [Send(self.next_peer(), None) for _ in range(IN_FLIGHT_PER_NODE)]

        def on_message(self, now: int, src: str, payload: Any, size: int) -> Effects:
            self.delivered += 1
            return [(self.next_peer(), payload, 0)]

    class NamedRelay(Relay):
        """The same, spelling its send as a ``Send``."""

        __slots__ = ()

        def on_message(self, now: int, src: str, payload: Any, size: int) -> Effects:
            self.delivered += 1
            return [Send(self.next_peer(), payload)]

    def factory(name: str, disk: Mapping[Hashable, Any]) -> Relay:
        peers = [p for p in names if p != name]
        return (NamedRelay if named else Relay)(peer_stream(sim.rng(f"bench:{name}"), peers))

    for name in names:
        sim.add_node(name, factory)
    t0 = time.perf_counter()
    sim.run_until(2**62, max_events=deliveries + NODES)  # + the on_start events
    seconds = time.perf_counter() - t0
    done = sum(sim.process(n).delivered for n in names)  # type: ignore[union-attr]
    return done, seconds


def run_simpy_callback(deliveries: int) -> tuple[int, float]:
    """SimPy, one timeout + callback per message."""
    import simpy

    env = simpy.Environment()
    gen = np.random.default_rng(SEED)
    next_peer = [peer_stream(gen, [p for p in range(NODES) if p != i]) for i in range(NODES)]
    delay = latency_stream(gen)
    finished = env.event()
    count = 0

    def on_deliver(ev: simpy.events.Event) -> None:
        nonlocal count
        count += 1
        if count == deliveries:
            finished.succeed()
            return
        nxt = env.timeout(delay(), next_peer[ev.value]())
        nxt.callbacks.append(on_deliver)

    for node in range(NODES):
        for _ in range(IN_FLIGHT_PER_NODE):
            env.timeout(delay(), next_peer[node]()).callbacks.append(on_deliver)
    t0 = time.perf_counter()
    env.run(until=finished)
    return count, time.perf_counter() - t0


def run_simpy_process(deliveries: int) -> tuple[int, float]:
    """Idiomatic SimPy: a Store inbox and a receiver process per node, a process per message."""
    import simpy

    env = simpy.Environment()
    gen = np.random.default_rng(SEED)
    next_peer = [peer_stream(gen, [p for p in range(NODES) if p != i]) for i in range(NODES)]
    delay = latency_stream(gen)
    inboxes = [simpy.Store(env) for _ in range(NODES)]
    finished = env.event()
    count = 0

    def transit(dst: int, msg: Any) -> Iterator[simpy.events.Event]:
        yield env.timeout(delay())
        yield inboxes[dst].put(msg)

    def receiver(node: int) -> Iterator[simpy.events.Event]:
        nonlocal count
        inbox = inboxes[node]
        peer = next_peer[node]
        while True:
            msg = yield inbox.get()
            count += 1
            if count == deliveries:
                finished.succeed()
                return
            env.process(transit(peer(), msg))

    for node in range(NODES):
        env.process(receiver(node))
        for _ in range(IN_FLIGHT_PER_NODE):
            env.process(transit(next_peer[node](), None))
    t0 = time.perf_counter()
    env.run(until=finished)
    return count, time.perf_counter() - t0


def run_bare_heapq(deliveries: int) -> tuple[int, float]:
    """The ceiling: pop (time, counter, node), count it, push the next message."""
    gen = np.random.default_rng(SEED)
    next_peer = [peer_stream(gen, [p for p in range(NODES) if p != i]) for i in range(NODES)]
    delay = latency_stream(gen)
    counter = itertools.count().__next__
    heap: list[tuple[int, int, int]] = []
    for node in range(NODES):
        for _ in range(IN_FLIGHT_PER_NODE):
            heappush(heap, (delay(), counter(), next_peer[node]()))
    count = 0
    t0 = time.perf_counter()
    while count < deliveries:
        t, _, node = heappop(heap)
        count += 1
        heappush(heap, (t + delay(), counter(), next_peer[node]()))
    return count, time.perf_counter() - t0


RUNNERS: dict[str, Callable[[int], tuple[int, float]]] = {
    "graphrep": run_graphrep,
    "graphrep_send": lambda deliveries: run_graphrep(deliveries, named=True),
    "graphrep_pure": run_graphrep,  # the worker runs with GRAPHREP_SIM_PURE=1
    "simpy_callback": run_simpy_callback,
    "simpy_process": run_simpy_process,
    "bare_heapq": run_bare_heapq,
}


# ---------------------------------------------------------------------------- driver


def simpy_missing() -> bool:
    return importlib.util.find_spec("simpy") is None


def worker(engine: str, deliveries: int) -> None:
    """Run one engine once in this (fresh) process; print one JSON line."""
    if engine in SIMPY_ENGINES and simpy_missing():
        print(INSTALL_HINT, file=sys.stderr)
        sys.exit(2)
    done, seconds = RUNNERS[engine](deliveries)
    if done != deliveries:
        raise SystemExit(f"{engine}: {done} deliveries, expected {deliveries}")
    variant = None
    if engine in GRAPHREP_ENGINES:
        from graphrep.sim.engine import LOOP_VARIANT
        variant = LOOP_VARIANT
    print(json.dumps({"engine": engine, "deliveries": done, "seconds": seconds,
                      "rate": done / seconds, "variant": variant}))


def compiled_loop_built() -> bool:
    """Whether graphrep.sim runs its compiled event loop here (``make fast-sim``)."""
    from graphrep.sim.engine import LOOP_VARIANT
    return LOOP_VARIANT == "mypyc"


def measure(engine: str, deliveries: int) -> tuple[float, str | None]:
    """Deliveries/s of one fresh subprocess running ``engine``, and its loop variant."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", engine,
           "--deliveries", str(deliveries)]
    env = dict(os.environ)
    env.pop("GRAPHREP_SIM_PURE", None)
    if engine == "graphrep_pure":
        env["GRAPHREP_SIM_PURE"] = "1"
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    line = json.loads(out.stdout.strip().splitlines()[-1])
    return float(line["rate"]), line["variant"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=1_000_000,
                        help="deliveries per run (default 1,000,000; shrink for smoke runs)")
    parser.add_argument("--worker", choices=ENGINES,
                        help="internal: run one engine once and print its JSON line")
    args = parser.parse_args(argv)
    if args.deliveries < 1:
        parser.error("--deliveries must be >= 1")
    if args.worker:
        worker(args.worker, args.deliveries)
        return 0
    if simpy_missing():
        print(INSTALL_HINT, file=sys.stderr)
        return 2

    engines = [e for e in ENGINES if e != "graphrep_pure" or compiled_loop_built()]
    samples: dict[str, list[float]] = {e: [] for e in engines}
    variants: dict[str, str] = {}
    for rep in range(REPEATS):  # interleaved, so drift in machine load hits every engine
        for engine in engines:
            try:
                rate, variant = measure(engine, args.deliveries)
            except subprocess.CalledProcessError as exc:
                print(exc.stderr, file=sys.stderr)
                return 1
            samples[engine].append(rate)
            if variant is not None:
                variants[engine] = variant
            print(f"run {rep + 1}/{REPEATS} {engine:15s} {rate:12,.0f} deliveries/s",
                  flush=True)
    medians = {e: statistics.median(s) for e, s in samples.items()}
    print()
    for engine in engines:
        note = f" ({variants[engine]} loop)" if engine in variants else ""
        print(f"{engine:15s} median {medians[engine]:12,.0f} deliveries/s{note}")
    result = {
        "workload": {"nodes": NODES, "in_flight_per_node": IN_FLIGHT_PER_NODE,
                     "mean_latency_ns": MEAN_LATENCY_NS, "deliveries": args.deliveries,
                     "repeats": REPEATS, "python": sys.version.split()[0]},
        "variant": variants,
        "deliveries_per_s": {e: {"median": medians[e], "samples": samples[e]}
                             for e in engines},
        "ratios": {f"{a}/{e}": medians[a] / medians[e]
                   for a in GRAPHREP_ENGINES if a in medians
                   for e in engines if not e.startswith("graphrep")},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

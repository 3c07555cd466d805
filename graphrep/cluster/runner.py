"""Running a cluster: :func:`run_cluster`, the replicas it times, and the settle loop.

``run_cluster`` builds a :class:`~graphrep.sim.engine.Simulation` with a replica (or a
:class:`~graphrep.protocol.host.ShardHost`) per node and the client, schedules the
nemesis, runs the write phase, undoes every fault, runs until the cluster has settled
(every shard's replicas have applied their leader's whole log and the client holds no
unacknowledged write) or ``settle_ns`` passes, and returns the summary
(:mod:`graphrep.cluster.summary`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np

from graphrep.cluster.client import Client
from graphrep.cluster.config import ClusterConfig, Layout
from graphrep.cluster.summary import summarize
from graphrep.datasets import gmm_dataset, load_fashion_mnist, uniform_dataset
from graphrep.errors import InvalidArgument
from graphrep.protocol.hooks import ReplicaHooks
from graphrep.protocol.host import ShardHost
from graphrep.protocol.messages import is_snapshot_frame
from graphrep.protocol.replica import LEADER, Replica, ReplicaConfig, shard_settled
from graphrep.sansio import MS
from graphrep.sim.engine import SimConfig, Simulation
from graphrep.sim.nemesis import Fault, apply_schedule, draw_schedule

__all__ = ["REGION_PARTITION_PERCENT", "CpuHooks", "ReplicaNodes", "TimedReplica",
           "dataset", "region_partition", "run_cluster"]


def run_cluster(cfg: ClusterConfig, schedule: Sequence[Fault] | None = None,
                actions: Sequence[tuple[int, Callable[[Simulation], None]]] = (),
                min_settle_ns: int = 0, bootstrap: bytes | None = None,
                settled: Callable[[Simulation], None] | None = None) -> dict[str, Any]:
    """Run one cluster and return its summary (see :mod:`graphrep.cluster`).

    ``schedule`` replaces the named nemesis with explicit faults (plain data: a test or a
    Hypothesis strategy writes them; every fault is still undone before settling).
    ``actions`` are ``(time_ns, call)`` pairs run at those virtual times, for scenarios
    that reach into a replica (corrupting its index, say). ``min_settle_ns`` keeps the
    cluster running at least that long after the heal, so that periodic work such as
    anti-entropy gets its turn. ``settled`` is called with the simulation once the run
    has settled (or its settle time is up), before the summary: to read what the summary
    does not report.

    With ``cfg.initial`` > 0 every replica starts from the same index of ``initial``
    vectors (ids 0..initial-1; sharded, the shard's share of them), given as a bootstrap
    snapshot at log position 0, and the workload inserts the next ``writes`` ids.
    ``bootstrap`` passes that index's bytes (``VamanaIndex.to_bytes``) when the caller
    has built it already (the benchmark reuses one across runs; unsharded runs only);
    otherwise it is built here.

    The trace keeps snapshot chunks as their digests alone
    (``SimConfig.trace_digest_only``): nothing reads them back, and a run that installs
    snapshots would otherwise hold every chunk it ever sent.

    The summary times, per replica, its callbacks as a whole (``cpu_s``), its
    replication work (``apply_cpu_s``) and, as leader, its own inserts and deletes
    (``op_cpu_s``).
    """
    layout = Layout.of(cfg)
    if bootstrap is not None and layout.sharded:
        raise InvalidArgument("bootstrap holds one index; a sharded run builds one per "
                              "shard itself: leave bootstrap out")
    vectors, queries = dataset(cfg)
    sim = Simulation(cfg.seed, SimConfig(network=cfg.network(),
                                         cpu_ns_per_distance=cfg.cpu_ns_per_distance,
                                         cpu_ns_per_entry=cfg.cpu_ns_per_entry,
                                         trace_digest_only=is_snapshot_frame))
    nodes = ReplicaNodes(cfg, layout, sim, _initial_disk(cfg, layout, vectors, bootstrap))
    for i, n in enumerate(layout.names):
        sim.add_node(n, nodes, region=cfg.region(i))
    delete_order = sim.rng("workload").permutation(max(cfg.writes, 1))
    client = Client(cfg, layout.shards, vectors, delete_order, queries,
                    sim.rng("reads") if cfg.searches and cfg.read_preference == "any" else None)
    sim.add_node("client", lambda n, d: client, region=cfg.client_region)
    n_faults = _schedule_faults(cfg, sim, layout, schedule)
    for time_ns, call in actions:
        sim.at(time_ns, call)

    t_run = time.process_time()
    sim.run_until(cfg.write_phase_ns)
    heal_at = sim.now
    converged_at = _heal_and_settle(sim, layout, client, heal_at + cfg.settle_ns)
    sim_cpu = time.process_time() - t_run
    if min_settle_ns and sim.now < heal_at + min_settle_ns:
        sim.run_until(heal_at + min_settle_ns)
        if not _settled(sim, layout, client):
            converged_at = None
    if settled is not None:
        settled(sim)

    summary = summarize(cfg, sim, layout, client, vectors, queries, heal_at, converged_at)
    summary["faults"] = n_faults
    summary["cpu_s"] = {n: round(v, 3) for n, v in nodes.cpu.items()}
    summary["apply_cpu_s"] = {n: round(v, 3) for n, v in nodes.apply_cpu.items()}
    summary["op_cpu_s"] = {n: round(v, 3) for n, v in nodes.op_cpu.items()}
    summary["sim_cpu_s"] = round(sim_cpu, 3)  # the engine and every process, to convergence
    return summary


def _heal_and_settle(sim: Simulation, layout: Layout, client: Client,
                     deadline: int) -> int | None:
    """Undo every fault (heal, loss off, every node resumed and restarted), then run
    until the cluster has settled or virtual time ``deadline``; returns when it
    settled (None: it did not)."""
    sim.heal()
    sim.set_network_faults(loss=0.0)
    for n in layout.names:
        sim.resume(n)
        sim.restart(n)
    sim.run_until(lambda s: s.now >= deadline or _settled(s, layout, client))
    return sim.now if _settled(sim, layout, client) else None


def _settled(sim: Simulation, layout: Layout, client: Client) -> bool:
    """Every shard's live replicas have applied their leader's whole log, and the
    client has no write left to send or to see acknowledged."""
    return client.done and all(
        shard_settled([layout.replica(sim, n, s) for n in reps])
        for s, reps in layout.shards.items())


class ReplicaNodes:
    """The process factory of a run's replica nodes (``Simulation.add_node``).

    Builds a node's :class:`TimedReplica` (sharded: a
    :class:`~graphrep.protocol.host.ShardHost` of them, one per shard placed on it) from
    its synced disk over ``initial`` (the bootstrap snapshots), with a random stream of
    its own per incarnation: ``replica:<node>:<n>`` (sharded ``replica:<node>:<shard>:<n>``)
    for the n-th start of the node. ``cpu``, ``apply_cpu`` and ``op_cpu`` add up each
    node's CPU time (see :class:`TimedReplica`; building a replica counts in ``cpu``).
    """

    def __init__(self, cfg: ClusterConfig, layout: Layout, sim: Simulation,
                 initial: Mapping[Hashable, Any]) -> None:
        self.layout = layout
        self.sim = sim
        self.initial = dict(initial)
        self.configs = {s: cfg.replica_config(reps, s) for s, reps in layout.shards.items()}
        self.starts = dict.fromkeys(layout.names, 0)
        self.cpu = dict.fromkeys(layout.names, 0.0)
        self.apply_cpu = dict.fromkeys(layout.names, 0.0)
        self.op_cpu = dict.fromkeys(layout.names, 0.0)

    def replica(self, name: str, disk: Mapping[Hashable, Any], config: ReplicaConfig,
                rng: np.random.Generator) -> Replica:
        """One timed replica (what a ShardHost builds for each of its shards)."""
        return TimedReplica(name, disk, config, rng, self.cpu, self.apply_cpu, self.op_cpu)

    def __call__(self, name: str, disk: Mapping[Hashable, Any]) -> Replica | ShardHost:
        self.starts[name] += 1
        t0 = time.process_time()
        r: Replica | ShardHost
        if self.layout.sharded:
            held = [self.configs[s] for s, reps in self.layout.shards.items() if name in reps]
            r = ShardHost(name, {**self.initial, **disk}, held,
                          lambda s: self.sim.rng(f"replica:{name}:{s}:{self.starts[name]}"),
                          replica=self.replica)
        else:
            r = self.replica(name, {**self.initial, **disk}, self.configs[0],
                             self.sim.rng(f"replica:{name}:{self.starts[name]}"))
        self.cpu[name] += time.process_time() - t0
        return r


def _initial_disk(cfg: ClusterConfig, layout: Layout, vectors: np.ndarray,
                  bootstrap: bytes | None) -> dict[Hashable, Any]:
    """What every replica's disk starts with: with ``cfg.initial``, the snapshot of an
    index of the first ``initial`` vectors at log position 0 (sharded, one per shard, of
    the shard's share of them); else nothing."""
    if not cfg.initial:
        return {}
    if not layout.sharded:
        if bootstrap is None:
            index = cfg.replica_config(layout.names).index()
            index.build(vectors[: cfg.initial], np.arange(cfg.initial))
            bootstrap = index.to_bytes()
        return {"snapshot": (0, 0, bootstrap)}
    disk: dict[Hashable, Any] = {}
    for s in layout.shards:
        ids = np.arange(s, cfg.initial, cfg.shards)
        index = cfg.replica_config(layout.shards[s], s).index()
        index.build(vectors[ids], ids)
        disk[(s, "snapshot")] = (0, 0, index.to_bytes())
    return disk


class _Clock:
    """Adds the CPU time (``time.process_time``) spent inside it to ``bucket[name]``;
    one per kind is enough because a replica never nests hooks of one kind."""

    __slots__ = ("bucket", "name", "t0")

    def __init__(self, bucket: dict[str, float], name: str) -> None:
        self.bucket, self.name, self.t0 = bucket, name, 0.0

    def __enter__(self) -> None:
        self.t0 = time.process_time()

    def __exit__(self, *exc: object) -> None:
        self.bucket[self.name] += time.process_time() - self.t0


class CpuHooks(ReplicaHooks):
    """Replica hooks that time a node: every callback in ``cpu``; of it, replication work
    (applying the log, re-indexing, installing snapshots) also in ``apply_cpu``, and the
    leader's own inserts and deletes (what a bare index would do too) in ``op_cpu``.
    Measuring reads the clock but changes nothing in the run."""

    def __init__(self, name: str, cpu: dict[str, float], apply_cpu: dict[str, float],
                 op_cpu: dict[str, float]) -> None:
        self._callback = _Clock(cpu, name)
        self._apply = _Clock(apply_cpu, name)
        self._op = _Clock(op_cpu, name)

    def callback(self) -> _Clock:
        return self._callback

    def apply(self) -> _Clock:
        return self._apply

    def op(self) -> _Clock:
        return self._op


class TimedReplica(Replica):
    """A :class:`~graphrep.protocol.replica.Replica` built with :class:`CpuHooks` (the
    class only fills in the hooks argument; tests subclass it to plant a broken
    behaviour in a run)."""

    def __init__(self, name: str, disk: Mapping[Hashable, Any], config: ReplicaConfig,
                 rng: np.random.Generator, cpu: dict[str, float],
                 apply_cpu: dict[str, float], op_cpu: dict[str, float]) -> None:
        super().__init__(name, disk, config, rng,
                         hooks=CpuHooks(name, cpu, apply_cpu, op_cpu))


def dataset(cfg: ClusterConfig) -> tuple[np.ndarray, np.ndarray]:
    """The run's vectors (ids ``0 .. initial + writes - 1``) and queries, as contiguous
    float32 arrays, from ``cfg.dataset`` (what :func:`run_cluster` runs on)."""
    n_base = cfg.initial + cfg.writes
    if cfg.dataset == "fmnist":
        vectors, queries = load_fashion_mnist()
    elif cfg.dataset == "uniform":
        vectors, queries = uniform_dataset(max(n_base, 1), max(cfg.queries, 1), cfg.dim,
                                           seed=cfg.seed)
    else:
        vectors, queries = gmm_dataset(max(n_base, 1), max(cfg.queries, 1), cfg.dim,
                                       n_clusters=16 if n_base < 20_000 else 100,
                                       seed=cfg.seed)
    return (np.ascontiguousarray(vectors[:n_base], dtype=np.float32),
            np.ascontiguousarray(queries[: cfg.queries], dtype=np.float32))


def _schedule_faults(cfg: ClusterConfig, sim: Simulation, layout: Layout,
                     schedule: Sequence[Fault] | None) -> int:
    """Put the run's faults on the simulation's schedule: ``schedule`` if given, else
    those of ``cfg.nemesis`` over the write phase (from 300 ms on; ``region-partition``:
    see :func:`region_partition`); returns how many."""
    if schedule is not None:
        apply_schedule(sim, list(schedule))
        return len(schedule)
    start, end = 300 * MS, cfg.write_phase_ns
    if cfg.nemesis == "leader-kill":
        return _leader_kills(sim, layout, start, end)
    if cfg.nemesis == "region-partition":
        cut = region_partition(cfg, sim.rng("nemesis"), start, end)
        apply_schedule(sim, cut)
        return len(cut)
    drawn = _draw_nemesis(cfg, sim, list(layout.names), start, end)
    apply_schedule(sim, drawn)
    return len(drawn)


def _draw_nemesis(cfg: ClusterConfig, sim: Simulation, names: list[str], start: int,
                  end: int) -> list[Fault]:
    """The faults of ``cfg.nemesis`` (not ``leader-kill``) in ``[start, end]``, drawn
    from the ``nemesis`` random stream."""
    rng = sim.rng("nemesis")
    span = end - start
    kind = cfg.nemesis
    faults: list[Fault] = []
    if kind in ("partitions", "mixed"):
        faults += draw_schedule(rng, names, span, partition_rate=8.0, mean_fault_ns=100 * MS)
    if kind in ("crashes", "mixed"):
        faults += draw_schedule(rng, names, span, crash_rate=8.0, mean_fault_ns=100 * MS)
    if kind in ("loss", "mixed"):
        faults += [Fault(0, "loss", p=0.2), Fault(span, "loss", p=0.0)]
    faults = [replace(f, time_ns=f.time_ns + start) for f in faults
              if f.time_ns <= span]
    return sorted(faults, key=lambda f: f.time_ns)


REGION_PARTITION_PERCENT = (20, 70)
"""When the ``region-partition`` nemesis cuts its region off and when it heals it, in
percent of the faults' part of the write phase (see :func:`region_partition`)."""


def region_partition(cfg: ClusterConfig, rng: np.random.Generator, start: int,
                     end: int) -> list[Fault]:
    """The faults of the ``region-partition`` nemesis over ``[start, end]`` (a run's are
    300 ms to the end of its write phase, as for the other nemeses): one of the
    replicas' regions, drawn with ``rng`` among :meth:`~ClusterConfig.regions_in_use`
    (sorted by name), is cut off from all the others, both ways, from 20% to 70% of the
    way (:data:`REGION_PARTITION_PERCENT`), then healed.

    Two faults: a ``partition_regions`` whose groups are ``((cut,), (the others...))``,
    and a ``heal``. A node outside these regions (the client, in a region of its own)
    keeps all its links; a client in one of them goes with its region. A run passes its
    ``nemesis`` stream, so the seed decides the region. Raises :class:`InvalidArgument`
    with fewer than two regions in use.
    """
    regions = cfg.regions_in_use()
    if len(regions) < 2:
        raise InvalidArgument(f"nemesis 'region-partition' cuts one region off the others, "
                              f"but the replicas are all in {regions[0]!r}: give "
                              f"replica_regions in at least two regions")
    cut = regions[int(rng.integers(len(regions)))]
    others = tuple(r for r in regions if r != cut)
    first, last = REGION_PARTITION_PERCENT
    span = end - start
    return [Fault(start + span * first // 100, "partition_regions", groups=((cut,), others)),
            Fault(start + span * last // 100, "heal")]


def _leader_kills(sim: Simulation, layout: Layout, start: int, end: int) -> int:
    """Every 300 ms of the write phase crash the node that leads a shard (the shards
    take turns); restart it 200 ms later. Returns how many kills were scheduled."""
    shards = sorted(layout.shards)

    def kill(s: Simulation, shard: int) -> None:
        for n in layout.shards[shard]:
            p = layout.replica(s, n, shard)
            if p is not None and p.role == LEADER:
                s.crash(n)
                s.at(s.now + 200 * MS, lambda s2, n=n: s2.restart(n))
                return

    t = start + 300 * MS
    kills = 0
    while t < end:
        sim.at(t, partial(kill, shard=shards[kills % len(shards)]))
        t += 300 * MS
        kills += 1
    return kills

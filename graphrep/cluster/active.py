"""Active-active runs: writers in every region at once, measured.

:func:`run_active` builds a :class:`~graphrep.sim.engine.Simulation` of ``regions``
(the latency presets of :mod:`graphrep.sim.regions`), ``nodes_per_region`` replica
nodes in each (``eu0, eu1, ...``) and ``writers_per_region`` writer processes in each,
runs the writes, optionally cuts one region off for part of the write phase
(``nemesis="region-partition"``), heals, runs until nothing is left to ship or run
(or ``settle_ns`` passes) and returns a JSON-able summary.

Policies:

* ``crdt``: one replica group per region (the ``leader`` protocol inside it, write
  concern ``majority`` of the region), all of them holding the shard; a write is
  acknowledged by its own region; committed entries are pulled by the other regions'
  leaders (:mod:`graphrep.protocol.regions`) and merged (:mod:`graphrep.protocol.crdt`).
  ``allowed`` restricts the shard to some regions (residency): a group in a region not
  allowed holds only the writes made there and ships nothing in or out.
* ``lww`` and ``ordered``: the same groups and shipping, with the baselines' merges
  (:mod:`graphrep.protocol.lww`: full records, last writer wins per node;
  :mod:`graphrep.protocol.ordered`: every write run everywhere in timestamp order).
* ``leader``: one group stretched across every region (one leader for all), writers
  everywhere sending to it: every write pays the round trip to the leader's region and
  to a majority. The latency baseline.

Writers (processes ``w<region><k>``): each sends ``writes`` operations, one every
``write_interval_ns`` from ``start_ns`` on, to every replica of its target group (only
the leader takes a write), and sends an unacknowledged write again every
``retry_ns``. Writer ``g`` (in region-major order) inserts ids ``g * writes + j``; with
``deletes`` > 0 it also deletes that many of its own ids, spread over its writes, each a
few operations after the insert.

Data: a Gaussian mixture of ``8 * len(regions)`` clusters; region ``k`` owns clusters
``8k .. 8k + 7``. A write draws its cluster among all clusters with probability
``overlap`` and among its own region's otherwise: ``overlap = 0`` gives regions disjoint
parts of the space, ``1`` the same clusters. Queries come from all clusters.

The summary (measured, nothing asserted):

* per-region write latency p50/p99 (ms, first send to acknowledgement), and when each
  insert became searchable in its writer's region and everywhere (``visible_ms``);
* ``quiet_ms``: when, after the last write, nothing was left to ship or run (``None``:
  not within ``settle_ns``); ``converged``/``convergence_ms``: quiet with every
  replica's digest equal (``digests_equal``);
* acknowledged writes missing from a replica (``lost``), writes of other regions held
  in a region not allowed the shard (``residency_violations``), edges ``lww`` dropped
  because they named a node not there (``dangling_edges``);
* recall@10 of each replica against exact neighbours of the live vectors, and of one
  writer that inserted every surviving vector in id order with no replication (a
  :class:`~graphrep.ann.pools.PoolGraph` for ``crdt``, a Vamana index otherwise), and
  the unreachable live nodes of each (for ``crdt``, ``orphans``: live nodes its entry
  points alone do not reach, which queries find from rescue points, and ``garbage``:
  what its dead still hold, :meth:`~graphrep.ann.pools.PoolGraph.garbage`);
* bytes on the wire per insert (all, and between regions), and replica CPU: a leader's
  own insert against applying one replicated entry, and every replica's callbacks per
  write (for ``ordered`` the write's own insert runs in the apply, so only this total
  compares).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from graphrep.cluster.runner import TimedReplica
from graphrep.datasets import ground_truth, recall_at_k
from graphrep.errors import InvalidArgument
from graphrep.protocol.messages import ClientWrite, WriteReply, decode, encode
from graphrep.protocol.replica import LEADER, Replica, ReplicaConfig, shard_settled
from graphrep.sansio import MS, Send, SetTimer
from graphrep.sim.engine import SimConfig, Simulation
from graphrep.sim.network import NetworkConfig
from graphrep.sim.regions import INTRA_REGION, known_regions, region_latency

__all__ = ["ACTIVE_POLICIES", "ActiveConfig", "Writer", "active_lines", "run_active"]

ACTIVE_POLICIES = ("crdt", "lww", "ordered", "leader")
"""``crdt``: a group per region, writes merged across regions; ``lww``: a group per
region, full records merged last-writer-wins per node; ``ordered``: a group per region,
every write run everywhere in one timestamp order; ``leader``: one group stretched across
the regions."""
_CLUSTERS_PER_REGION = 8


@dataclass(frozen=True)
class ActiveConfig:
    """One active-active run; every field is part of what the seed reproduces."""

    regions: tuple[str, ...] = ("eu", "us", "ap")
    """Regions of :mod:`graphrep.sim.regions` (their preset latencies)."""
    nodes_per_region: int = 3
    writers_per_region: int = 1
    writes: int = 200
    """Operations per writer (inserts, and ``deletes`` of them deletes)."""
    deletes: int = 0
    """Deletes per writer, of its own ids, spread over its writes."""
    overlap: float = 0.0
    """Probability that a write draws from every region's clusters, not its own."""
    policy: str = "crdt"
    nemesis: str = "none"
    """``none`` or ``region-partition``: ``cut`` is cut off from 20% to 70% of the way
    through the write phase."""
    cut: str = ""
    """The region the partition cuts off (default: the first of ``regions``)."""
    allowed: tuple[str, ...] = ()
    """Regions allowed to hold the shard (residency; empty: all of them). ``crdt`` only."""
    dim: int = 16
    R: int = 16
    L: int = 48
    queries: int = 100
    seed: int = 7
    start_ns: int = 500 * MS
    """When the writers start (the groups elect their first leaders before)."""
    write_interval_ns: int = 5 * MS
    retry_ns: int = 1000 * MS
    settle_ns: int = 30_000 * MS
    replica: Mapping[str, Any] = field(default_factory=dict)
    """Other ``ReplicaConfig`` settings of every replica (``ship_ticks``, ``pool``...)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "regions", tuple(self.regions))
        object.__setattr__(self, "allowed", tuple(self.allowed))
        object.__setattr__(self, "replica", dict(self.replica))
        unknown = [r for r in self.regions if r not in known_regions()]
        if not self.regions or unknown or len(set(self.regions)) != len(self.regions):
            raise InvalidArgument(f"regions must name known regions ({known_regions()}) once "
                                  f"each, got {self.regions!r}")
        if self.policy not in ACTIVE_POLICIES:
            raise InvalidArgument(f"unknown active-active policy {self.policy!r}; choose "
                                  f"from {ACTIVE_POLICIES}")
        if self.nemesis not in ("none", "region-partition"):
            raise InvalidArgument(f"nemesis is 'none' or 'region-partition', got "
                                  f"{self.nemesis!r}")
        if self.nemesis == "region-partition" and len(self.regions) < 2:
            raise InvalidArgument("a region partition needs two regions or more")
        if self.cut and self.cut not in self.regions:
            raise InvalidArgument(f"cut {self.cut!r} is not one of the regions {self.regions}")
        if any(r not in self.regions for r in self.allowed):
            raise InvalidArgument(f"allowed regions {self.allowed} must be among "
                                  f"{self.regions}")
        if self.allowed and self.policy == "leader":
            raise InvalidArgument("allowed (residency) applies to a group per region: a "
                                  "stretched 'leader' group spans every region")
        for name in ("nodes_per_region", "writers_per_region", "writes", "dim", "R", "L",
                     "queries"):
            v = getattr(self, name)
            if type(v) is not int or v < 1:
                raise InvalidArgument(f"{name} must be an int >= 1, got {v!r}")
        if type(self.deletes) is not int or not 0 <= self.deletes <= self.writes // 2:
            raise InvalidArgument(f"deletes must be an int in [0, writes // 2 = "
                                  f"{self.writes // 2}], got {self.deletes!r}")
        if not 0.0 <= float(self.overlap) <= 1.0:
            raise InvalidArgument(f"overlap is a probability in [0, 1], got {self.overlap!r}")

    @property
    def cut_region(self) -> str:
        return self.cut or self.regions[0]

    def group(self, region: str) -> tuple[str, ...]:
        return tuple(f"{region}{i}" for i in range(self.nodes_per_region))

    def replica_configs(self) -> dict[str, ReplicaConfig]:
        """Every replica node's ``ReplicaConfig``."""
        base = {"R": self.R, "L": self.L, "dim": self.dim, "index_seed": self.seed,
                **self.replica}
        if self.policy == "leader":
            everyone = tuple(n for r in self.regions for n in self.group(r))
            c = ReplicaConfig(replicas=everyone, policy="leader", **base)
            return dict.fromkeys(everyone, c)
        allowed = self.allowed or self.regions
        shard_regions = tuple(sorted((r, self.group(r)) for r in allowed))
        out = {}
        for r in self.regions:
            g = self.group(r)
            c = ReplicaConfig(replicas=g, policy=self.policy, region=r,
                              regions=shard_regions if r in allowed else ((r, g),), **base)
            out.update(dict.fromkeys(g, c))
        return out


class Writer:
    """A writer process: ``ops`` (``(op, id, vector bytes)``) sent one every ``interval``
    from ``start`` on to every node of ``targets``; an unacknowledged one again every
    ``retry``. ``sent`` / ``acked`` map an op's index to virtual times."""

    def __init__(self, ops: list[tuple[str, int, bytes]], targets: tuple[str, ...],
                 start: int, interval: int, retry: int) -> None:
        self.ops, self.targets = ops, targets
        self.start, self.interval, self.retry = start, interval, retry
        self.sent: dict[int, int] = {}
        self.acked: dict[int, int] = {}

    @property
    def done(self) -> bool:
        return len(self.acked) == len(self.ops)

    def _send(self, i: int) -> list:
        op, id_, vec = self.ops[i]
        b = encode(ClientWrite(0, i, op, id_, vec, "majority"))
        return [Send(n, b, len(b)) for n in self.targets]

    def on_start(self, now: int) -> list:
        return [SetTimer("begin", max(self.start - now, 1))]

    def on_message(self, now: int, src: str, payload: bytes, size: int) -> list:
        m = decode(payload)
        if type(m) is WriteReply and m.status == "ok" and m.req not in self.acked:
            self.acked[m.req] = now
        return []

    def on_timer(self, now: int, name: str) -> list:
        if name == "begin":
            return [SetTimer("write", self.interval, periodic=True),
                    SetTimer("retry", self.retry, periodic=True)]
        if name == "write":
            i = len(self.sent)
            if i >= len(self.ops):
                return []
            self.sent[i] = now
            return self._send(i)
        out: list = []
        for i in sorted(self.sent):
            if i not in self.acked and now - self.sent[i] >= self.retry:
                out += self._send(i)
        return out


def _workload(cfg: ActiveConfig) -> tuple[list[list[tuple[str, int, bytes]]], np.ndarray,
                                          dict[int, np.ndarray]]:
    """Each writer's operations (region-major), the query vectors, and every inserted
    id's vector."""
    rng = np.random.default_rng([cfg.seed, 41])
    n_clusters = _CLUSTERS_PER_REGION * len(cfg.regions)
    centres = rng.standard_normal((n_clusters, cfg.dim)) * 3.0
    sigmas = rng.uniform(0.5, 1.5, size=n_clusters)

    def draw(clusters: np.ndarray) -> np.ndarray:
        noise = rng.standard_normal((len(clusters), cfg.dim))
        return (centres[clusters] + noise * sigmas[clusters, None]).astype(np.float32)

    writers: list[list[tuple[str, int, bytes]]] = []
    vectors: dict[int, np.ndarray] = {}
    n_ins = cfg.writes - cfg.deletes
    every = n_ins // cfg.deletes if cfg.deletes else 0
    for k, _region in enumerate(cfg.regions):
        own = np.arange(k * _CLUSTERS_PER_REGION, (k + 1) * _CLUSTERS_PER_REGION)
        for w in range(cfg.writers_per_region):
            g = k * cfg.writers_per_region + w
            shared = rng.random(n_ins) < cfg.overlap
            clusters = np.where(shared, rng.integers(0, n_clusters, n_ins),
                                own[rng.integers(0, len(own), n_ins)])
            vecs = draw(clusters)
            ops: list[tuple[str, int, bytes]] = []
            dels = 0
            for j in range(n_ins):
                id_ = g * cfg.writes + j
                vectors[id_] = vecs[j]
                ops.append(("insert", id_, vecs[j].tobytes()))
                # the id inserted two operations before (j >= 2: one of this writer's)
                if every and j >= 2 and j % every == every - 1 and dels < cfg.deletes:
                    ops.append(("delete", g * cfg.writes + j - 2, b""))
                    dels += 1
            writers.append(ops)
    queries = draw(rng.integers(0, n_clusters, cfg.queries))
    return writers, queries, vectors


def run_active(cfg: ActiveConfig) -> dict[str, Any]:
    """Run ``cfg`` and return its summary (see the module docstring)."""
    t0 = time.process_time()
    lat = {(a, b): m for a, b, m in region_latency(cfg.regions)}
    sim = Simulation(cfg.seed, SimConfig(network=NetworkConfig(default=INTRA_REGION,
                                                               regions=lat)))
    configs = cfg.replica_configs()
    cpu = dict.fromkeys(configs, 0.0)
    apply_cpu = dict.fromkeys(configs, 0.0)
    op_cpu = dict.fromkeys(configs, 0.0)

    def replica(name: str, disk: Mapping) -> Replica:
        return TimedReplica(name, disk, configs[name], sim.rng(f"replica:{name}"), cpu,
                            apply_cpu, op_cpu)

    region_of = {n: r for r in cfg.regions for n in cfg.group(r)}
    for n, r in region_of.items():
        sim.add_node(n, replica, region=r)
    ops, queries, vectors = _workload(cfg)
    writers: dict[str, Writer] = {}
    for k, r in enumerate(cfg.regions):
        targets = tuple(configs) if cfg.policy == "leader" else cfg.group(r)
        for w in range(cfg.writers_per_region):
            name = f"w{r}{w}"
            writers[name] = Writer(ops[k * cfg.writers_per_region + w], targets,
                                   cfg.start_ns, cfg.write_interval_ns, cfg.retry_ns)
            sim.add_node(name, lambda n, d, p=writers[name]: p, region=r)
            region_of[name] = r
    write_end = cfg.start_ns + cfg.write_interval_ns * (cfg.writes + 1)
    if cfg.nemesis == "region-partition":
        span = write_end - cfg.start_ns
        cut = cfg.cut_region
        others = [r for r in cfg.regions if r != cut]
        sim.at(cfg.start_ns + span // 5, lambda s: s.partition_regions([[cut], others]))
        sim.at(cfg.start_ns + span * 7 // 10, lambda s: s.heal())
    seen = Visibility(cfg, writers, region_of)
    while sim.now < write_end:
        sim.run_until(min(sim.now + VISIBILITY_STEP_NS, write_end))
        seen.look(sim)
    quiet_at = None
    while sim.now < write_end + cfg.settle_ns:
        sim.run_until(sim.now + VISIBILITY_STEP_NS)
        seen.look(sim)
        if all(w.done for w in writers.values()) and _quiet(sim, cfg):
            quiet_at = sim.now
            break
    # converged: quiet with equal digests (merging the same entries gave the same graph)
    converged_at = quiet_at if quiet_at is not None and _digests_agree(sim, cfg) else None
    sim_cpu = time.process_time() - t0
    s = _summary(cfg, sim, writers, region_of, queries, vectors, write_end, converged_at,
                 {"cpu": cpu, "apply": apply_cpu, "op": op_cpu}, sim_cpu)
    s["visible_ms"] = seen.percentiles()
    s["quiet_ms"] = None if quiet_at is None else (quiet_at - write_end) / MS
    return s


VISIBILITY_STEP_NS = 5 * MS
"""How often a run looks which inserts are searchable where (the resolution of
``visible_ms``)."""


class Visibility:
    """When each insert became searchable: first on a replica of its writer's region
    (``local``), then on every replica of a region holding the shard (``all``), in
    virtual time from the writer's first send, looked at every
    :data:`VISIBILITY_STEP_NS`. A write acknowledged is not yet visible under
    ``ordered`` (it waits for every region) nor, across regions, under ``crdt``."""

    def __init__(self, cfg: ActiveConfig, writers: Mapping[str, Writer],
                 region_of: Mapping[str, str]) -> None:
        allowed = cfg.allowed or cfg.regions
        self.everywhere = [n for r in allowed for n in cfg.group(r)]
        self.todo: list[tuple[Writer, int, int, tuple[str, ...]]] = [
            (w, i, op[1], cfg.group(region_of[name]))
            for name, w in writers.items() for i, op in enumerate(w.ops) if op[0] == "insert"]
        self.local: list[float] = []
        self.all: list[float] = []
        self._local_done: set[tuple[int, int]] = set()

    def look(self, sim: Simulation) -> None:
        reps = {n: sim.process(n) for n in self.everywhere}
        keep = []
        for w, i, id_, home in self.todo:
            if i not in w.sent:
                keep.append((w, i, id_, home))
                continue
            key = (id(w), i)
            if key not in self._local_done and any(
                    (p := sim.process(n)) is not None and id_ in p.index for n in home):
                self._local_done.add(key)
                self.local.append((sim.now - w.sent[i]) / MS)
            if key in self._local_done and all(
                    p is not None and id_ in p.index for p in reps.values()):
                self.all.append((sim.now - w.sent[i]) / MS)
                continue
            keep.append((w, i, id_, home))
        self.todo = keep

    def percentiles(self) -> dict[str, Any]:
        return {"local_p50": _pct(self.local, 50), "local_p99": _pct(self.local, 99),
                "all_p50": _pct(self.all, 50), "all_p99": _pct(self.all, 99),
                "never_all": len(self.todo)}


def _replicas(sim: Simulation, cfg: ActiveConfig) -> dict[str, Replica]:
    return {n: sim.process(n) for r in cfg.regions for n in cfg.group(r)}


def _groups(cfg: ActiveConfig) -> list[tuple[str, ...]]:
    if cfg.policy == "leader":
        return [tuple(n for r in cfg.regions for n in cfg.group(r))]
    return [cfg.group(r) for r in cfg.regions]


def _quiet(sim: Simulation, cfg: ActiveConfig) -> bool:
    """Every group settled, and every allowed region's replicas merged the same entries
    (the same version vector) and have nothing waiting: nothing more will happen."""
    reps = _replicas(sim, cfg)
    if not all(shard_settled([reps[n] for n in g]) for g in _groups(cfg)):
        return False
    if cfg.policy == "leader":
        return True
    allowed = cfg.allowed or cfg.regions
    sharing = [reps[n] for r in allowed for n in cfg.group(r)]
    if len({tuple(r.applier.version_vector()) for r in sharing}) != 1:
        return False
    return not any(getattr(r.index, "waiting", None) for r in reps.values())


def _digests_agree(sim: Simulation, cfg: ActiveConfig) -> bool:
    """Every allowed region's replicas hold the same digest (a region not allowed the
    shard: its group's own)."""
    reps = _replicas(sim, cfg)
    allowed = cfg.allowed or cfg.regions
    return all(len({reps[n].index.digest() for n in g}) == 1
               for g in [tuple(n for r in allowed for n in cfg.group(r))] +
               [cfg.group(r) for r in cfg.regions if r not in allowed])


def _pct(xs: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(xs, q)), 2) if len(xs) else None


def _summary(cfg: ActiveConfig, sim: Simulation, writers: dict[str, Writer],
             region_of: dict[str, str], queries: np.ndarray, vectors: dict[int, np.ndarray],
             write_end: int, converged_at: int | None, clocks: dict[str, dict[str, float]],
             sim_cpu: float) -> dict[str, Any]:
    reps = _replicas(sim, cfg)
    latency: dict[str, dict[str, Any]] = {}
    acked_ids: set[int] = set()
    deleted: set[int] = set()
    for name, w in writers.items():
        r = region_of[name]
        waits = [(w.acked[i] - w.sent[i]) / MS for i in sorted(w.acked)]
        d = latency.setdefault(r, {"waits": []})
        d["waits"] += waits
        for i in w.acked:
            op, id_, _ = w.ops[i]
            (acked_ids if op == "insert" else deleted).add(id_)
    per_region = {r: {"acked": len(d["waits"]), "p50_ms": _pct(d["waits"], 50),
                      "p99_ms": _pct(d["waits"], 99)} for r, d in sorted(latency.items())}
    allowed = cfg.allowed or cfg.regions
    sharing = [n for r in allowed for n in cfg.group(r)]
    live = sorted(acked_ids - deleted)
    # acknowledged writes missing from a replica that shares the shard
    lost = {n: int(sum(1 for i in live if i not in reps[n].index)
                   + sum(1 for i in deleted if i in reps[n].index)) for n in sharing}
    if not live:
        raise InvalidArgument("no write survived (every insert deleted or none "
                              "acknowledged): nothing to measure; write more than you delete")
    k = min(10, len(live))  # recall@k on fewer than ten live vectors
    truth, _ = ground_truth(np.stack([vectors[i] for i in live]), queries, k,
                            ids=np.asarray(live, dtype=np.int64))
    recall = {}
    unreachable = {}
    orphans = {}
    garbage: dict[str, dict[str, int]] = {}
    for n in sharing:
        ids, _ = reps[n].index.search(queries, k=10, L=cfg.L)
        recall[n] = round(recall_at_k(ids, truth, truth.shape[1]), 4)
        unreachable[n] = int(reps[n].index.unreachable_count())
        graph = getattr(reps[n].index, "reads", None)
        if hasattr(graph, "orphan_count"):
            orphans[n] = int(graph.orphan_count())
            garbage[n] = graph.garbage()
    single, single_unreachable = _single_writer(cfg, live, vectors, queries, truth)
    links = sim.link_stats()
    region_node = {**region_of}
    total = sum(x["bytes"] for x in links if x["src"] in reps and x["dst"] in reps)
    cross = sum(x["bytes"] for x in links if x["src"] in reps and x["dst"] in reps
                and region_node[x["src"]] != region_node[x["dst"]])
    inserts = len(acked_ids)
    own_ins = sum(r.applier.op_distances for r in reps.values() if r.role == LEADER)
    op_s = sum(clocks["op"].values())
    apply_s = sum(clocks["apply"].values())
    applied = sum(r.applied for r in reps.values())
    local_ops = sum(len(w.acked) for w in writers.values())
    apply_entries = max(applied - local_ops, 1)  # no-ops of elections included
    digests = {n: reps[n].index.digest().hex()[:16] for n in reps}
    # residency: a replica in a region not allowed the shard holds no other region's write
    per_writer = cfg.writes
    outside = {n: int(sum(1 for i in reps[n].index.ids().tolist()
                          if cfg.regions[i // per_writer // cfg.writers_per_region] != r))
               for r in cfg.regions if r not in allowed for n in cfg.group(r)}
    return {
        "config": {k: v for k, v in asdict(ActiveConfig()).items()
                   if asdict(cfg)[k] != v} | {"policy": cfg.policy},
        "converged": converged_at is not None,
        "convergence_ms": None if converged_at is None else (converged_at - write_end) / MS,
        "digests_equal": len({digests[n] for n in sharing}) == 1,
        "digests": digests,
        "writes_acknowledged": local_ops,
        "writes_sent": sum(len(w.sent) for w in writers.values()),
        "lost": lost,
        "residency_violations": sum(outside.values()),
        "dangling_edges": {n: int(getattr(reps[n].index, "dangling", 0)) for n in sharing},
        "latency": per_region,
        "recall_at_10": recall,
        "recall_single_writer": single,
        "unreachable": unreachable,
        "orphans": orphans,
        "garbage": garbage,
        "unreachable_single_writer": single_unreachable,
        "bytes_per_insert": round(total / max(inserts, 1), 1),
        "cross_region_bytes_per_insert": round(cross / max(inserts, 1), 1),
        "leader_distances_per_write": round(own_ins / max(local_ops, 1), 1),
        "op_cpu_us_per_write": round(op_s / max(local_ops, 1) * 1e6, 1),
        "apply_cpu_us_per_entry": round(apply_s / apply_entries * 1e6, 1),
        "replica_cpu_us_per_write": round((op_s + apply_s) / max(local_ops, 1) * 1e6, 1),
        "apply_to_insert_cpu": round((apply_s / apply_entries) / max(op_s / max(local_ops, 1),
                                                                    1e-12), 3),
        "sim_cpu_s": round(sim_cpu, 2),
        "trace_hash": sim.trace.hash(),
    }


def _single_writer(cfg: ActiveConfig, live: list[int], vectors: dict[int, np.ndarray],
                   queries: np.ndarray, truth: np.ndarray) -> tuple[float, int]:
    """Recall@10 and unreachable nodes of the same index built by one writer inserting
    the live vectors in id order (no replication, no merging): the reference the
    replicas are held to."""
    if cfg.policy != "crdt":
        index = ReplicaConfig(replicas=("x",), dim=cfg.dim, R=cfg.R, L=cfg.L,
                              index_seed=cfg.seed).index()
        index.build(np.stack([vectors[i] for i in live]), np.asarray(live))
        ids, _ = index.search(queries, k=10, L=cfg.L)
        return round(recall_at_k(ids, truth, truth.shape[1]), 4), int(index.unreachable_count())
    from graphrep.ann.pools import PoolGraph
    from graphrep.protocol.crdt import write

    g = PoolGraph(cfg.dim, R=cfg.R, L=cfg.L, pool=int(cfg.replica.get("pool", 0)))
    for seq, i in enumerate(live, 1):
        write(g, 0, seq, seq << 22, "insert", i, vectors[i].tobytes())
    ids, _ = g.search(queries, k=10, L=cfg.L)
    return round(recall_at_k(ids, truth, truth.shape[1]), 4), g.unreachable_count()


def active_lines(s: Mapping[str, Any]) -> list[str]:
    """The summary as a few human-readable lines."""
    lat = ", ".join(f"{r} p50 {d['p50_ms']} ms p99 {d['p99_ms']}"
                    for r, d in s["latency"].items())
    rec = list(s["recall_at_10"].values())
    return [
        f"policy {s['config']['policy']}, converged {s['converged']} "
        f"(after the last write: {s['convergence_ms']} ms), digests equal "
        f"{s['digests_equal']}",
        f"writes              {s['writes_acknowledged']} acknowledged of "
        f"{s['writes_sent']} sent; lost per replica max {max(s['lost'].values())}",
        f"write latency       {lat}",
        f"recall@10           min {min(rec):.4f} max {max(rec):.4f}; one writer "
        f"{s['recall_single_writer']:.4f}; unreachable max {max(s['unreachable'].values())} "
        f"(one writer {s['unreachable_single_writer']}); orphans max "
        f"{max(s['orphans'].values(), default=0)}",
        f"visible             in its region p50 {s['visible_ms']['local_p50']} ms p99 "
        f"{s['visible_ms']['local_p99']}; everywhere p50 {s['visible_ms']['all_p50']} ms p99 "
        f"{s['visible_ms']['all_p99']}",
        f"bytes per insert    {s['bytes_per_insert']} (between regions "
        f"{s['cross_region_bytes_per_insert']})",
        f"replica CPU         insert {s['op_cpu_us_per_write']} us, apply one entry "
        f"{s['apply_cpu_us_per_entry']} us (ratio {s['apply_to_insert_cpu']}); every "
        f"replica, per write {s['replica_cpu_us_per_write']} us",
        f"trace hash          {s['trace_hash']}",
    ]

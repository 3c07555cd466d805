"""A simulated replicated index: replicas, a client workload, a nemesis and the checker.

``run_cluster(ClusterConfig(...))`` builds a :class:`~graphrep.sim.engine.Simulation`
with one :class:`~graphrep.protocol.replica.Replica` per node and one client process,
runs the workload under the named nemesis, undoes every fault, runs until the cluster
has converged (or a bound), and returns the JSON-able summary the ``graphrep sim`` CLI
prints. The checker asserts nothing: it measures (convergence, lost acknowledged
writes, lag, recall, top-k agreement) and the tests assert on the summary.

Phases, in virtual time: the client issues writes at a fixed rate, with at most
``max_outstanding`` unacknowledged; faults happen during the write phase only; then
every fault is undone (heal, restart, loss off) and the run continues until every
replica has applied the leader's whole log and the client holds no unacknowledged
write, or ``settle_ns`` passes.

Searches (``searches`` > 0): the client also sends ``searches`` k-NN searches (k=10, the
run's query vectors in turn), evenly spread over the write phase (the virtual time
before the faults are undone, ``write_phase_ns``): one every ``write_phase_ns //
(searches + 1)``. Where a search goes is the ``read_preference``: ``leader`` (the
replica the client believes leads), ``nearest`` (the replica with the lowest expected
one-way latency from the client's region, ties broken in ring order from the client's
*home* replica ``r{seed % nodes}``; with every node in one region, as by default, that
is always the home replica) or ``any`` (a replica drawn from the ``reads`` random
stream, which no other component draws from). Each search carries a session token for
read-your-writes: a write acknowledged at log position ``p`` means entries ``[0, p]``
exist, so the token is ``p + 1`` for the highest acknowledged ``p`` and the replica must
have applied that many entries. A ``stale`` reply is retried once at the leader (the
replier's hint, else the client's belief); a search is never retried on silence, so one
sent to a crashed or cut-off replica stays ``unanswered``. The checker counts an ``ok``
reply whose applied position is below the token it carried as a read-your-writes
violation (zero for a correct replica).

Shards (``shards`` > 1, or ``replication`` below ``nodes``): id ``i`` lives in shard
``i % shards``; :func:`~graphrep.protocol.placement.place` puts ``replication`` replicas
of each shard on the nodes, and every node runs a
:class:`~graphrep.protocol.host.ShardHost` holding one replica (and one index) per shard
placed on it. The client sends each write to the replica it believes leads the write's
shard and follows that shard's redirects. The checker looks at each shard on its own:
``digests`` and ``recall_at_10`` are keyed ``node@shard``, ``converged`` means each
shard's replicas agree, a lost write is looked for on its own shard's replicas, and
``recall_at_10_merged`` is the recall of a scatter-gather search (each shard's first
replica searched, results merged by distance) against the whole data set. Client
searches (``searches``) need an unsharded run: the client has no scatter-gather path.

Data (``dataset``): ``gmm`` (a Gaussian mixture, the default), ``uniform`` (the unit
cube) or ``fmnist`` (Fashion-MNIST, 784 dimensions: ``dim`` must be 784; the first
``initial + writes`` training images and the first ``queries`` test images).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np

from graphrep.datasets import (
    gmm_dataset,
    ground_truth,
    load_fashion_mnist,
    recall_at_k,
    uniform_dataset,
)
from graphrep.errors import InvalidArgument
from graphrep.protocol.host import ShardHost
from graphrep.protocol.messages import ClientSearch, ClientWrite, SearchReply, WriteReply
from graphrep.protocol.messages import decode as decode_message
from graphrep.protocol.messages import encode as encode_message
from graphrep.protocol.placement import place
from graphrep.protocol.replica import LEADER, Replica, ReplicaConfig, shard_settled
from graphrep.sansio import BaseProcess, Send, SetTimer
from graphrep.sim.engine import SimConfig, Simulation
from graphrep.sim.nemesis import Fault, apply_schedule, draw_schedule
from graphrep.sim.network import LatencyModel, NetworkConfig

__all__ = ["DATASETS", "NEMESES", "POLICIES", "READ_PREFERENCES", "ClusterConfig",
           "run_cluster"]

MS = 1_000_000
NEMESES = ("none", "partitions", "crashes", "loss", "leader-kill", "mixed")
POLICIES = ("leader", "replay", "snapshot")
CONCERNS = ("one", "majority", "all")
READ_PREFERENCES = ("leader", "nearest", "any")
DATASETS = ("gmm", "uniform", "fmnist")
FMNIST_DIM, FMNIST_BASE, FMNIST_QUERIES = 784, 60_000, 10_000
SEARCH_K = 10


@dataclass(frozen=True)
class ClusterConfig:
    """One simulated cluster run; every field is part of what the seed reproduces."""

    policy: str = "leader"
    nodes: int = 3
    writes: int = 500
    deletes: int = 50
    dim: int = 16
    initial: int = 0
    queries: int = 100
    concern: str = "majority"
    seed: int = 7
    nemesis: str = "none"
    write_interval_ns: int = 2 * MS
    max_outstanding: int = 16
    client_timeout_ns: int = 200 * MS
    latency: LatencyModel = field(default_factory=lambda: LatencyModel.exponential(2 * MS))
    duplicate: float = 0.0
    """Probability that the network delivers a message twice (throughout the run)."""
    reorder: float = 0.0
    """Probability that a message is held back so that later ones overtake it."""
    settle_ns: int = 60_000 * MS
    snapshot_every: int = 2048
    log_keep: int = 512
    apply_batch: int = 1
    max_inflight: int = 0
    """Append messages with entries in flight per follower (0: no limit); see
    :class:`~graphrep.protocol.replica.ReplicaConfig`."""
    anti_entropy_ticks: int = 50
    snapshot_ticks: int = 100
    R: int = 16
    L: int = 48
    search_L: int = 0
    """Beam width of the recall and agreement queries (0: ``L``)."""
    dataset: str = "gmm"
    """``gmm``, ``uniform`` or ``fmnist`` (see the module docstring)."""
    cpu_ns_per_distance: int = 0
    """CPU cost model (0: off; the ``Work`` effects the replicas report, priced by the
    simulator: ``SimConfig.cpu_ns_per_distance``): virtual ns per distance
    computation, so that lag includes the CPU time of inserts and of replay's re-runs."""
    cpu_ns_per_entry: int = 0
    """CPU cost model: virtual ns a follower spends applying one log entry."""
    sync: str = "always"
    """The replicas' sync policy: ``always`` or ``tick`` (group commit)."""
    searches: int = 0
    """Client searches spread over the write phase (see the module docstring)."""
    read_preference: str = "leader"
    """Where searches go: ``leader``, ``nearest`` or ``any``."""
    shards: int = 1
    """Shards of the index: id ``i`` lives in shard ``i % shards``. With more than one,
    every node is a :class:`~graphrep.protocol.host.ShardHost` holding one replica (and
    one index) per shard placed on it."""
    replication: int = 0
    """Replicas per shard, placed by :func:`~graphrep.protocol.placement.place` (0: every
    node holds every shard)."""
    replica_regions: tuple[str, ...] = ()
    """Region of each node r0, r1, ... (empty: all in ``local``)."""
    client_region: str = "local"
    region_latency: tuple[tuple[str, str, LatencyModel], ...] = ()
    """``(region, region, model)`` latencies between regions; other pairs use ``latency``."""

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise InvalidArgument(f"unknown policy {self.policy!r}; choose from {POLICIES}")
        if self.nemesis not in NEMESES:
            raise InvalidArgument(f"unknown nemesis {self.nemesis!r}; choose from {NEMESES}")
        if self.concern not in CONCERNS:
            raise InvalidArgument(f"unknown write concern {self.concern!r}; choose from "
                                  f"{CONCERNS}")
        if self.sync not in ("always", "tick"):
            raise InvalidArgument(f"unknown sync policy {self.sync!r}; choose always or tick")
        for name in ("cpu_ns_per_distance", "cpu_ns_per_entry"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise InvalidArgument(f"{name} must be an int >= 0 (virtual ns), got {v!r}")
        if not (isinstance(self.nodes, int) and 1 <= self.nodes <= 15):
            raise InvalidArgument(f"nodes must be an int in [1, 15], got {self.nodes!r}")
        for name in ("writes", "deletes", "queries", "initial", "searches"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise InvalidArgument(f"{name} must be an int >= 0, got {v!r}")
        if not (isinstance(self.shards, int) and 1 <= self.shards <= 64):
            raise InvalidArgument(f"shards must be an int in [1, 64], got {self.shards!r}")
        if not (isinstance(self.replication, int) and 0 <= self.replication <= self.nodes):
            raise InvalidArgument(f"replication must be an int in [0, nodes={self.nodes}] "
                                  f"(0: every node holds every shard), got "
                                  f"{self.replication!r}")
        if self.searches and self.sharded:
            raise InvalidArgument("client searches (searches > 0) run on one shard only: a "
                                  "sharded search needs a scatter-gather client, which this "
                                  "runner does not have; the summary's recall and agreement "
                                  "cover every shard without it")
        if self.deletes > self.writes:
            raise InvalidArgument(f"deletes ({self.deletes}) cannot exceed writes "
                                  f"({self.writes}): only written ids are deleted")
        if self.read_preference not in READ_PREFERENCES:
            raise InvalidArgument(f"unknown read preference {self.read_preference!r}; choose "
                                  f"from {READ_PREFERENCES}")
        if self.searches and not self.queries:
            raise InvalidArgument("searches use the run's query vectors: set queries >= 1")
        if self.dataset not in DATASETS:
            raise InvalidArgument(f"unknown dataset {self.dataset!r}; choose from {DATASETS}")
        if self.dataset == "fmnist":
            if self.dim != FMNIST_DIM:
                raise InvalidArgument(f"dataset 'fmnist' has {FMNIST_DIM} dimensions, got "
                                      f"dim={self.dim}: pass dim={FMNIST_DIM} (the CLI does "
                                      f"when --dim is omitted)")
            if self.initial + self.writes > FMNIST_BASE or self.queries > FMNIST_QUERIES:
                raise InvalidArgument(f"fmnist has {FMNIST_BASE} base and {FMNIST_QUERIES} "
                                      f"query vectors; got initial + writes = "
                                      f"{self.initial + self.writes}, queries = {self.queries}")
        object.__setattr__(self, "replica_regions", tuple(self.replica_regions))
        object.__setattr__(self, "region_latency",
                           tuple(tuple(t) for t in self.region_latency))
        if self.replica_regions and len(self.replica_regions) != self.nodes:
            raise InvalidArgument(f"replica_regions names {len(self.replica_regions)} "
                                  f"regions for {self.nodes} nodes: give one per replica "
                                  f"or none")
        for region in (*self.replica_regions, self.client_region):
            if not isinstance(region, str) or not region:
                raise InvalidArgument(f"a region is a non-empty str, got {region!r}")
        for t in self.region_latency:
            if len(t) != 3 or not all(isinstance(r, str) and r for r in t[:2]) \
                    or not isinstance(t[2], LatencyModel):
                raise InvalidArgument(f"region_latency entries are (region, region, "
                                      f"LatencyModel), got {t!r}")

    @property
    def sharded(self) -> bool:
        """Whether nodes host shards (ShardHost) rather than being one shard's replicas."""
        return self.shards > 1 or self.replication not in (0, self.nodes)

    @property
    def write_phase_ns(self) -> int:
        """Virtual time of the write phase: writes and faults; then faults are undone."""
        return self.write_interval_ns * (self.writes + self.deletes + 10) + 500 * MS

    def region(self, replica: int) -> str:
        """The region of replica ``r{replica}``."""
        return self.replica_regions[replica] if self.replica_regions else "local"


@dataclass(frozen=True)
class Layout:
    """Which node holds a replica of which shard.

    ``shards`` maps shard -> its replicas' node names. Unsharded (``sharded`` False),
    the nodes are the one shard's replicas themselves; sharded, each node is a
    :class:`~graphrep.protocol.host.ShardHost` and a replica is ``host.replicas[shard]``.
    """

    names: tuple[str, ...]
    shards: Mapping[int, tuple[str, ...]]
    sharded: bool

    @classmethod
    def of(cls, cfg: ClusterConfig) -> Layout:
        names = tuple(f"r{i}" for i in range(cfg.nodes))
        if not cfg.sharded:
            return cls(names, {0: names}, False)
        regions = {n: cfg.region(i) for i, n in enumerate(names)}
        everywhere = tuple(sorted(set(regions.values())))
        placed = place(regions, {s: everywhere for s in range(cfg.shards)},
                       cfg.replication or cfg.nodes)
        return cls(names, {p.shard: p.replicas for p in placed}, True)

    def slots(self) -> list[tuple[str, int]]:
        """Every (node, shard) replica, by shard, then node."""
        return [(n, s) for s in sorted(self.shards) for n in self.shards[s]]

    def replica(self, sim: Simulation, node: str, shard: int) -> Replica | None:
        """The live replica of ``shard`` on ``node`` (None while the node is down)."""
        p = sim.process(node)
        if p is None or not self.sharded:
            return p
        return p.replicas.get(shard)

    def label(self, node: str, shard: int) -> str:
        """A replica's name in the summary: the node, or ``node@shard`` when sharded."""
        return f"{node}@{shard}" if self.sharded else node

    def metric(self, name: str, shard: int) -> str:
        """The name a replica's metric has in the run (a ShardHost appends ``@shard``)."""
        return f"{name}@{shard}" if self.sharded else name


class Client(BaseProcess):
    """The workload: inserts ids 0..writes-1 and deletes ``deletes`` acknowledged ids,
    one write every ``write_interval_ns``, to the replica it believes leads; follows
    ``not_leader`` hints and retries after ``client_timeout_ns`` at the next replica.
    Every write is retried until acknowledged (ids make retries idempotent).

    With ``cfg.searches`` it also sends searches carrying its session token (see the
    module docstring); ``queries`` are their vectors and ``rng`` draws the replica of
    each search under read preference ``any``."""

    def __init__(self, cfg: ClusterConfig, shards: Mapping[int, Sequence[str]],
                 vectors: np.ndarray, delete_order: np.ndarray,
                 queries: np.ndarray | None = None,
                 rng: np.random.Generator | None = None) -> None:
        self.cfg = cfg
        # per shard: its replicas, and the one the client believes leads it
        self.shard_replicas = {s: list(r) for s, r in shards.items()}
        self.targets = {s: r[0] for s, r in self.shard_replicas.items()}
        self.replicas = self.shard_replicas[0]  # where searches go (one shard only)
        self.vectors = vectors
        self.plan: list[tuple[str, int]] = self._plan(delete_order)
        self.next_op = 0
        # req -> [op, id, sent_at, first_sent, attempt]
        self.outstanding: dict[int, list] = {}
        self.acked: list[dict] = []
        self.acked_inserts: set[int] = set()  # membership tests only, never iterated
        self.errors: list[dict] = []
        # searches
        self.queries = queries
        self.rng = rng
        self.nearest = _nearest(cfg, self.replicas)
        self.session = 0  # read-your-writes token: highest acknowledged position + 1
        # search number -> [attempt, token, first_sent]
        self.searching: dict[int, list[int]] = {}
        self.search_counts = {"sent": 0, "ok": 0, "stale": 0, "retried": 0, "errors": 0}
        self.search_latency_ms: list[float] = []
        self.ryw_violations = 0

    def _plan(self, delete_order: np.ndarray) -> list[tuple[str, int]]:
        """Inserts in id order; a delete of an earlier id after every few inserts."""
        cfg = self.cfg
        plan: list[tuple[str, int]] = []
        dels = [cfg.initial + int(i) for i in delete_order[: cfg.deletes]]
        every = max(1, cfg.writes // max(cfg.deletes, 1))
        pending_dels = sorted(dels)
        for i in range(cfg.initial, cfg.initial + cfg.writes):
            plan.append(("insert", i))
            if (i + 1) % every == 0 and pending_dels and pending_dels[0] < i - 8:
                plan.append(("delete", pending_dels.pop(0)))
        plan.extend(("delete", d) for d in pending_dels)
        return plan

    @property
    def done(self) -> bool:
        return self.next_op >= len(self.plan) and not self.outstanding

    @property
    def search_interval_ns(self) -> int:
        return max(1, self.cfg.write_phase_ns // (self.cfg.searches + 1))

    def on_start(self, now: int) -> list:
        out: list = [SetTimer("write", self.cfg.write_interval_ns, periodic=True),
                     SetTimer("retry", self.cfg.client_timeout_ns // 4, periodic=True)]
        if self.cfg.searches:
            out.append(SetTimer("search", self.search_interval_ns))
        return out

    def shard_of(self, id_: int) -> int:
        return id_ % self.cfg.shards

    def _send(self, req: int, now: int) -> Send:
        """(Re)send a write to its shard's believed leader. The wire request id carries
        the attempt number, so that a redirect answering an older attempt (duplicated or
        late) starts no new chain."""
        entry = self.outstanding[req]
        op, id_ = entry[:2]
        entry[2] = now
        entry[4] += 1
        vec = self.vectors[id_].astype("<f4").tobytes() if op == "insert" else b""
        wire = (req << 16) | (entry[4] & 0xFFFF)
        shard = self.shard_of(id_)
        data = encode_message(ClientWrite(shard, wire, op, id_, vec, self.cfg.concern))
        return Send(self.targets[shard], data, len(data))

    def on_timer(self, now: int, name: Hashable) -> list:
        out: list = []
        if name == "write":
            if self.next_op < len(self.plan) and len(self.outstanding) < self.cfg.max_outstanding:
                op, id_ = self.plan[self.next_op]
                if op == "delete" and id_ not in self.acked_inserts:
                    # the insert is not acknowledged yet: delete later
                    self.plan.append(self.plan.pop(self.next_op))
                    return out
                req = self.next_op
                self.next_op += 1
                self.outstanding[req] = [op, id_, now, now, 0]
                out.append(self._send(req, now))
        elif name == "search":
            out.append(self._search(now))
            if self.search_counts["sent"] < self.cfg.searches:
                out.append(SetTimer("search", self.search_interval_ns))
        else:
            for req in sorted(self.outstanding):
                if now - self.outstanding[req][2] >= self.cfg.client_timeout_ns:
                    shard = self.shard_of(self.outstanding[req][1])
                    self.targets[shard] = self._after(shard, self.targets[shard])
                    out.append(self._send(req, now))
        return out

    def _after(self, shard: int, name: str) -> str:
        """The replica of ``shard`` after ``name``, in ring order."""
        ring = self.shard_replicas[shard]
        return ring[(ring.index(name) + 1) % len(ring)] if name in ring else ring[0]

    def _search(self, now: int) -> Send:
        """Send the next search where the read preference says."""
        no = self.search_counts["sent"]
        self.search_counts["sent"] += 1
        self.searching[no] = [0, self.session, now]
        pref = self.cfg.read_preference
        if pref == "leader":
            to = self.targets[0]
        elif pref == "nearest":
            to = self.nearest
        else:
            assert self.rng is not None
            to = self.replicas[int(self.rng.integers(len(self.replicas)))]
        return self._send_search(no, to)

    def _send_search(self, no: int, to: str) -> Send:
        """(Re)send search ``no``; like writes, the wire id carries the attempt."""
        attempt, token, _ = self.searching[no]
        assert self.queries is not None
        q = self.queries[no % len(self.queries)].astype("<f4").tobytes()
        data = encode_message(ClientSearch(0, (no << 16) | attempt, q, SEARCH_K, token))
        return Send(to, data, len(data))

    def _on_search_reply(self, now: int, msg: SearchReply) -> list:
        no = msg.req >> 16
        entry = self.searching.get(no)
        if entry is None or (msg.req & 0xFFFF) != entry[0]:
            return []  # a duplicate, or the answer to an attempt already retried
        counts = self.search_counts
        if msg.status == "stale":
            counts["stale"] += 1
            if entry[0] == 0:  # retry once, at the leader
                entry[0] = 1
                counts["retried"] += 1
                to = msg.leader if msg.leader in self.replicas else self.targets[0]
                return [self._send_search(no, to)]
            del self.searching[no]
            return []
        del self.searching[no]
        if msg.status == "ok":
            counts["ok"] += 1
            self.search_latency_ms.append((now - entry[2]) / MS)
            if msg.seq < entry[1]:
                self.ryw_violations += 1  # answered from a state before our own writes
        else:
            counts["errors"] += 1
        return []

    def search_summary(self) -> dict[str, Any]:
        """The searches' part of the run summary."""
        return {"searches": {**self.search_counts, "unanswered": len(self.searching)},
                "read_your_writes_violations": self.ryw_violations,
                "search_latency_ms": _percentiles(self.search_latency_ms)}

    def on_message(self, now: int, src: str, payload: Any, size: int) -> list:
        msg = decode_message(payload)
        if isinstance(msg, SearchReply):
            return self._on_search_reply(now, msg)
        if not isinstance(msg, WriteReply):
            return []
        entry = self.outstanding.get(msg.req >> 16)
        if entry is None:
            return []  # a duplicate reply
        req = msg.req >> 16
        shard = self.shard_of(entry[1])
        if msg.status == "ok":
            del self.outstanding[req]
            if shard == 0:  # the token of searches, which go to shard 0
                self.session = max(self.session, msg.seq + 1)
            self.acked.append({"op": entry[0], "id": entry[1], "shard": shard,
                               "term": msg.term, "seq": msg.seq,
                               "latency_ns": now - entry[3], "at": now})
            if entry[0] == "insert":
                self.acked_inserts.add(entry[1])
            return []
        if msg.status == "error":
            del self.outstanding[req]
            self.errors.append({"op": entry[0], "id": entry[1], "error": msg.error})
            return []
        if (msg.req & 0xFFFF) != (entry[4] & 0xFFFF):
            return []  # answers an older attempt
        ring = self.shard_replicas[shard]
        self.targets[shard] = msg.leader if msg.leader in ring else self._after(shard, src)
        if not msg.leader:
            return []  # no leader known yet: the retry timer tries again
        return [self._send(req, now)]


def _expected_ns(model: LatencyModel) -> float:
    """The mean one-way delay of ``model``."""
    if model.kind == "uniform":
        base = (model.low_ns + model.high_ns) / 2
    elif model.kind == "lognormal":
        base = model.mean_ns * float(np.exp(model.sigma ** 2 / 2))
    else:
        base = float(model.mean_ns)
    return base + model.jitter_ns / 2


def _nearest(cfg: ClusterConfig, replicas: list[str]) -> str:
    """The replica with the lowest expected latency from the client; ties go to the
    first in ring order from the client's home replica ``r{seed % nodes}``."""
    home = cfg.seed % len(replicas)
    net = _network(cfg)

    def key(i: int) -> tuple[float, int]:
        model = net.latency(cfg.client_region, cfg.region(i))
        return _expected_ns(model), (i - home) % len(replicas)

    return replicas[min(range(len(replicas)), key=key)]


def _network(cfg: ClusterConfig) -> NetworkConfig:
    return NetworkConfig(default=cfg.latency, duplicate=cfg.duplicate, reorder=cfg.reorder,
                         regions={(a, b): m for a, b, m in cfg.region_latency})


def _dataset(cfg: ClusterConfig, n_base: int) -> tuple[np.ndarray, np.ndarray]:
    """Base vectors (ids 0..n_base-1) and queries of ``cfg.dataset``."""
    if cfg.dataset == "fmnist":
        base, queries = load_fashion_mnist()
        return base[:n_base], queries[: cfg.queries]
    if cfg.dataset == "uniform":
        return uniform_dataset(max(n_base, 1), max(cfg.queries, 1), cfg.dim, seed=cfg.seed)
    return gmm_dataset(max(n_base, 1), max(cfg.queries, 1), cfg.dim,
                       n_clusters=16 if n_base < 20_000 else 100, seed=cfg.seed)


def _schedule(cfg: ClusterConfig, sim: Simulation, names: list[str], start: int,
              end: int) -> list[Fault]:
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


def run_cluster(cfg: ClusterConfig, schedule: Sequence[Fault] | None = None,
                actions: Sequence[tuple[int, Callable[[Simulation], None]]] = (),
                min_settle_ns: int = 0, bootstrap: bytes | None = None) -> dict[str, Any]:
    """Run one cluster and return its summary (see the module docstring).

    ``schedule`` replaces the named nemesis with explicit faults (plain data: a test or a
    Hypothesis strategy writes them; every fault is still undone before settling).
    ``actions`` are ``(time_ns, call)`` pairs run at those virtual times, for scenarios
    that reach into a replica (corrupting its index, say). ``min_settle_ns`` keeps the
    cluster running at least that long after the heal, so that periodic work such as
    anti-entropy gets its turn.

    With ``cfg.initial`` > 0 every replica starts from the same index of ``initial``
    vectors (ids 0..initial-1; sharded, the shard's share of them), given as a bootstrap
    snapshot at log position 0, and the workload inserts the next ``writes`` ids.
    ``bootstrap`` passes that index's bytes (``VamanaIndex.to_bytes``) when the caller
    has built it already (the benchmark reuses one across runs; unsharded runs only);
    otherwise it is built here.

    The summary times, per replica, its callbacks as a whole (``cpu_s``), its
    replication work (``apply_cpu_s``) and, as leader, its own inserts and deletes
    (``op_cpu_s``).
    """
    layout = Layout.of(cfg)
    names = list(layout.names)
    if bootstrap is not None and layout.sharded:
        raise InvalidArgument("bootstrap holds one index; a sharded run builds one per "
                              "shard itself: leave bootstrap out")
    n_base = cfg.initial + cfg.writes
    vectors, queries = _dataset(cfg, n_base)
    vectors = np.ascontiguousarray(vectors[:n_base], dtype=np.float32)
    queries = np.ascontiguousarray(queries[: cfg.queries], dtype=np.float32)
    rcfg = ReplicaConfig(replicas=tuple(names), dim=cfg.dim, R=cfg.R, L=cfg.L,
                         index_seed=cfg.seed, policy=cfg.policy,
                         snapshot_every=cfg.snapshot_every, log_keep=cfg.log_keep,
                         apply_batch=cfg.apply_batch, max_inflight=cfg.max_inflight,
                         anti_entropy_ticks=cfg.anti_entropy_ticks,
                         snapshot_ticks=cfg.snapshot_ticks, sync=cfg.sync)
    shard_cfgs = {s: replace(rcfg, replicas=reps, shard=s) for s, reps in layout.shards.items()}
    net = _network(cfg)
    sim = Simulation(cfg.seed, SimConfig(network=net,
                                         cpu_ns_per_distance=cfg.cpu_ns_per_distance,
                                         cpu_ns_per_entry=cfg.cpu_ns_per_entry))
    restarts = {n: 0 for n in names}
    base: dict[Hashable, Any] = {}
    if cfg.initial and not layout.sharded:
        if bootstrap is None:
            index = rcfg.index()
            index.build(vectors[: cfg.initial], np.arange(cfg.initial))
            bootstrap = index.to_bytes()
        base = {"snapshot": (0, 0, bootstrap)}
    elif cfg.initial:
        for s in layout.shards:
            ids = np.arange(s, cfg.initial, cfg.shards)
            index = rcfg.index()
            index.build(vectors[ids], ids)
            base[(s, "snapshot")] = (0, 0, index.to_bytes())
    cpu = {n: 0.0 for n in names}
    apply_cpu = {n: 0.0 for n in names}
    op_cpu = {n: 0.0 for n in names}

    def timed_replica(name: str, disk: Mapping[Hashable, Any], config: ReplicaConfig,
                      rng: np.random.Generator) -> Replica:
        return TimedReplica(name, disk, config, rng, cpu, apply_cpu, op_cpu)

    def replica_factory(name: str, disk: Mapping[Hashable, Any]) -> Replica | ShardHost:
        restarts[name] += 1
        t0 = time.process_time()
        r: Replica | ShardHost
        if layout.sharded:
            held = [shard_cfgs[s] for s, reps in layout.shards.items() if name in reps]
            r = ShardHost(name, {**base, **disk}, held,
                          lambda s: sim.rng(f"replica:{name}:{s}:{restarts[name]}"),
                          replica=timed_replica)
        else:
            r = timed_replica(name, {**base, **disk}, rcfg,
                              sim.rng(f"replica:{name}:{restarts[name]}"))
        cpu[name] += time.process_time() - t0
        return r

    for i, n in enumerate(names):
        sim.add_node(n, replica_factory, region=cfg.region(i))
    delete_order = sim.rng("workload").permutation(max(cfg.writes, 1))
    client = Client(cfg, layout.shards, vectors, delete_order, queries,
                    sim.rng("reads") if cfg.searches and cfg.read_preference == "any" else None)
    sim.add_node("client", lambda n, d: client, region=cfg.client_region)

    write_end = cfg.write_phase_ns
    fault_start = 300 * MS
    if schedule is not None:
        apply_schedule(sim, list(schedule))
        n_faults = len(schedule)
    elif cfg.nemesis == "leader-kill":
        n_faults = _leader_kills(sim, layout, fault_start, write_end)
    else:
        drawn = _schedule(cfg, sim, names, fault_start, write_end)
        apply_schedule(sim, drawn)
        n_faults = len(drawn)
    for time_ns, call in actions:
        sim.at(time_ns, call)
    t_run = time.process_time()
    sim.run_until(write_end)
    # undo every fault, then let the cluster converge
    heal_at = sim.now
    sim.heal()
    sim.set_network_faults(loss=0.0)
    for n in names:
        sim.resume(n)
        sim.restart(n)
    deadline = heal_at + cfg.settle_ns
    sim.run_until(lambda s: s.now >= deadline or _settled(s, layout, client))
    converged_at = sim.now if _settled(sim, layout, client) else None
    sim_cpu = time.process_time() - t_run
    if min_settle_ns and sim.now < heal_at + min_settle_ns:
        sim.run_until(heal_at + min_settle_ns)
        if not _settled(sim, layout, client):
            converged_at = None
    summary = _summary(cfg, sim, layout, client, vectors, queries, heal_at, converged_at)
    summary["faults"] = n_faults
    summary["cpu_s"] = {n: round(v, 3) for n, v in cpu.items()}
    summary["apply_cpu_s"] = {n: round(v, 3) for n, v in apply_cpu.items()}
    summary["op_cpu_s"] = {n: round(v, 3) for n, v in op_cpu.items()}
    summary["sim_cpu_s"] = round(sim_cpu, 3)  # the engine and every process, to convergence
    return summary


def _timed(method: Callable[..., Any], bucket: str) -> Callable[..., Any]:
    """``method`` adding its CPU time (``time.process_time``) to ``self.<bucket>[name]``."""
    def timed(self: TimedReplica, *args: Any) -> Any:
        t0 = time.process_time()
        try:
            return method(self, *args)
        finally:
            getattr(self, bucket)[self.name] += time.process_time() - t0

    timed.__name__ = method.__name__
    return timed


class TimedReplica(Replica):
    """A replica whose callbacks' CPU time (``time.process_time``) adds up per node in
    the dict ``cpu``; of it, the replica's replication work (applying the log,
    installing snapshots) also in ``apply_cpu``, and the leader's inserts and deletes on
    its own index (the work a bare index would do too) in ``op_cpu``. Measuring reads
    the clock but changes nothing in the run."""

    def __init__(self, name: str, disk: Mapping[Hashable, Any], config: ReplicaConfig,
                 rng: np.random.Generator, cpu: dict[str, float],
                 apply_cpu: dict[str, float], op_cpu: dict[str, float]) -> None:
        self.cpu, self.apply_cpu, self.op_cpu = cpu, apply_cpu, op_cpu
        super().__init__(name, disk, config, rng)

    on_start = _timed(Replica.on_start, "cpu")
    on_message = _timed(Replica.on_message, "cpu")
    on_timer = _timed(Replica.on_timer, "cpu")
    _apply_to = _timed(Replica._apply_to, "apply_cpu")
    _replay_bulk = _timed(Replica._replay_bulk, "apply_cpu")
    _install = _timed(Replica._install, "apply_cpu")
    _execute = _timed(Replica._execute, "op_cpu")


def _settled(sim: Simulation, layout: Layout, client: Client) -> bool:
    return client.done and all(
        shard_settled([layout.replica(sim, n, s) for n in reps])
        for s, reps in layout.shards.items())


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0}
    a = np.asarray(values, dtype=np.float64)
    return {f"p{q}": float(np.percentile(a, q)) for q in (50, 95, 99)}


def _summary(cfg: ClusterConfig, sim: Simulation, layout: Layout, client: Client,
             vectors: np.ndarray, queries: np.ndarray, heal_at: int,
             converged_at: int | None) -> dict[str, Any]:
    reps = {(n, s): layout.replica(sim, n, s) for n, s in layout.slots()}
    digests = {layout.label(n, s): (r.index.digest().hex()[:16] if r is not None else None)
               for (n, s), r in reps.items()}
    converged = converged_at is not None and all(
        len({digests[layout.label(n, s)] for n in layout.shards[s]}) == 1
        for s in layout.shards)
    lost_writes, lost = _lost_writes(client.acked, layout, reps)
    inserts = sum(1 for a in client.acked if a["op"] == "insert")
    # replication traffic: bytes between replicas, by part
    replica_set = set(layout.names)
    repl_bytes = sum(row["bytes"] for row in sim.link_stats()
                     if row["src"] in replica_set and row["dst"] in replica_set)
    metrics = sim.metric_columns()
    vec_b = _metric_sum(metrics, "entry_bytes_vector")
    edge_b = _metric_sum(metrics, "entry_bytes_edges")
    followers = max(len(layout.shards[0]) - 1, 0)
    per = max(inserts, 1)
    # entries counted once per follower (a retransmission counts as metadata); snapshot
    # chunks and anti-entropy repairs as sent
    parts = {"vector": vec_b * followers / per, "edges": edge_b * followers / per,
             "snapshot": _metric_sum(metrics, "snapshot_bytes") / per,
             "repair": _metric_sum(metrics, "repair_bytes") / per}
    parts["metadata"] = max(repl_bytes / per - sum(parts.values()), 0.0)
    parts["total"] = repl_bytes / per
    recall, agreement, merged = _search_quality(cfg, layout, reps, vectors, queries)
    dist = _metric_sum(metrics, "replica_distance_computations")
    summary = {
        "policy": cfg.policy, "seed": cfg.seed, "nemesis": cfg.nemesis,
        "converged": converged, "digests": digests,
        "acked_writes": len(client.acked), "failed_writes": len(client.errors),
        "unacked_writes": len(client.outstanding) + len(client.plan) - client.next_op,
        "lost_writes": lost_writes, "lost_write_replicas": len(lost),
        "lost_examples": lost[:5],
        "bytes_per_insert": parts,
        "replica_distance_computations_per_insert": dist / per,
        "write_latency_ms": _percentiles([a["latency_ns"] / MS for a in client.acked]),
        "lag_ms": _lag(sim, layout),
        "converge_ms_after_heal": (converged_at - heal_at) / MS if converged_at else None,
        "recall_at_10": recall, "topk_agreement": agreement,
        **client.search_summary(),
        "protocol_errors": int(_metric_count(metrics, "protocol_errors")),
        "elections": int(_metric_count(metrics, "leader_elected")),
        **{name: _metric_sum(metrics, name) for name in (
            "snapshots", "snapshot_installs", "snapshot_bytes", "anti_entropy_mismatches",
            "repaired_records", "repair_bytes", "apply_failures", "repair_failures",
            "damaged_entries", "damaged_snapshots", "follower_regressions")},
        "virtual_duration_ms": sim.now / MS, "events": sim.events_processed,
        "delivered": sim.delivered, "dropped": sim.dropped,
        "trace_hash": sim.trace.hash(), "config": _jsonable(asdict(cfg)),
    }
    if layout.sharded:
        summary["shards"] = {str(s): list(r) for s, r in layout.shards.items()}
        summary["recall_at_10_merged"] = merged
    return summary


def _lost_writes(acked: Sequence[Mapping[str, Any]], layout: Layout,
                 reps: Mapping[tuple[str, int], Any]) -> tuple[int, list[dict[str, Any]]]:
    """Acknowledged writes not in effect on some live replica of the write's shard (an
    insert absent, unless a later acknowledged delete removed it; a delete's id still
    present): how many distinct writes, and every (write, replica) pair missing, as the
    write's record plus ``replica`` (one write may be missing from several replicas)."""
    pairs: list[dict[str, Any]] = []
    writes = 0
    deleted = {a["id"] for a in acked if a["op"] == "delete"}
    for a in acked:
        missing = 0
        for n in layout.shards[a["shard"]]:
            r = reps[(n, a["shard"])]
            if r is None:
                continue
            present = a["id"] in r.index and not r.index.is_deleted(a["id"])
            if (a["op"] == "insert" and a["id"] not in deleted and not present) or \
                    (a["op"] == "delete" and present):
                pairs.append({"replica": layout.label(n, a["shard"]), **a})
                missing += 1
        writes += missing > 0
    return writes, pairs


def _search_quality(cfg: ClusterConfig, layout: Layout, reps: Mapping[tuple[str, int], Any],
                    vectors: np.ndarray, queries: np.ndarray,
                    ) -> tuple[dict[str, float], float, float | None]:
    """Recall@10 of every replica against exact ground truth of its shard's live set
    (recall@n for a shard with n < 10 live vectors);
    the share of (shard, query) pairs on which all of a shard's replicas return the
    same top 10; and, sharded, the recall of a scatter-gather search (every shard's
    first live replica searched, results merged by distance) against the whole set."""
    recall: dict[str, float] = {}
    same: list[bool] = []
    gathered: list[tuple[np.ndarray, np.ndarray]] = []  # each shard's first replica
    all_live: list[np.ndarray] = []
    if not len(queries):
        return recall, 0.0, None
    for s in sorted(layout.shards):
        up = [(n, reps[(n, s)]) for n in layout.shards[s] if reps[(n, s)] is not None]
        some = next((r for _, r in up if len(r.index)), None)
        if some is None:
            continue
        live = some.index.ids()
        all_live.append(live)
        gt, _ = ground_truth(vectors[live], queries, min(10, len(live)), ids=live)
        results = [r.index.search(queries, k=10, L=cfg.search_L or cfg.L) for _, r in up]
        gathered.append(results[0])
        for (n, _), (ids, _) in zip(up, results, strict=True):
            recall[layout.label(n, s)] = recall_at_k(ids, gt, gt.shape[1])
        first = results[0][0]
        same += [all(np.array_equal(ids[i], first[i]) for ids, _ in results)
                 for i in range(len(queries))]
    agreement = float(np.mean(same)) if same else 0.0
    merged = None
    if layout.sharded and all_live:
        live = np.concatenate(all_live)
        gt, _ = ground_truth(vectors[live], queries, min(10, len(live)), ids=live)
        ids = np.concatenate([g[0] for g in gathered], axis=1)
        dists = np.concatenate([g[1] for g in gathered], axis=1)
        order = np.argsort(dists, axis=1, kind="stable")[:, :10]
        merged = recall_at_k(np.take_along_axis(ids, order, axis=1), gt, gt.shape[1])
    return recall, agreement, merged


def _metric_count(metrics: dict[str, list], name: str) -> float:
    """How many ``name`` metrics (a shard's ``name@shard`` included) the run emitted."""
    return float(sum(1 for k in metrics["name"] if k == name or k.startswith(name + "@")))


def _metric_sum(metrics: dict[str, list], name: str) -> float:
    """The sum of the ``name`` metrics (a shard's ``name@shard`` included)."""
    return float(sum(v for k, v in zip(metrics["name"], metrics["value"], strict=True)
                     if k == name or k.startswith(name + "@")))


def _lag(sim: Simulation, layout: Layout) -> dict[str, float]:
    """Replication lag: for each acknowledged write, from the leader's append (the
    client's ack time for ``one``, else the write's ack) to each follower applying it.
    Measured from the ``appended`` and ``applied`` metrics the replicas emit (per shard:
    positions are a shard's own)."""
    appended: dict[int, dict[int, int]] = {s: {} for s in layout.shards}
    applied = {s: {n: [] for n in reps} for s, reps in layout.shards.items()}
    names = {layout.metric(k, s): (k, s) for s in layout.shards for k in ("appended", "applied")}
    for t, node, name, value in sim.metrics:  # in time order
        kind, s = names.get(name, ("", -1))
        if kind == "appended":
            appended[s].setdefault(int(value), t)
        elif kind == "applied" and node in applied[s]:
            applied[s][node].append((t, int(value)))
    lags = []
    for s, reps in layout.shards.items():
        times = {n: [t for t, _ in applied[s][n]] for n in reps}
        for pos, t0 in appended[s].items():
            for n in reps:
                seen = applied[s][n]
                for i in range(bisect_left(times[n], t0), len(seen)):
                    if seen[i][1] > pos:
                        lags.append((seen[i][0] - t0) / MS)
                        break
    return _percentiles(lags)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, int | float | str | bool) or obj is None:
        return obj
    return repr(obj)

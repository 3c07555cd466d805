"""What a simulated cluster run is: :class:`ClusterConfig`, and :class:`Layout`, where
each shard's replicas live.

A run's replicas are configured once, by a mapping of
:class:`~graphrep.protocol.replica.ReplicaConfig` field names to values
(``ClusterConfig.replica``): the cluster does not repeat the replica's settings as
fields of its own. Unset settings take :data:`REPLICA_DEFAULTS` (where the cluster's
small simulated data sets want other values than the protocol's), then
``ReplicaConfig``'s own defaults. The fields that say who the replicas are
(``replicas``, ``shard``) and what they index (``dim``, ``index_seed``) come from
the run itself and cannot be set there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from graphrep.errors import InvalidArgument, ProtocolError
from graphrep.protocol.config import CONCERNS, ReplicaConfig
from graphrep.protocol.placement import place
from graphrep.protocol.replica import Replica
from graphrep.sansio import MS
from graphrep.sim.engine import Simulation
from graphrep.sim.network import LatencyModel, NetworkConfig

__all__ = ["DATASETS", "FMNIST_BASE", "FMNIST_DIM", "FMNIST_QUERIES", "NEMESES",
           "READ_PREFERENCES", "REPLICA_DEFAULTS", "RUN_SETS", "SEARCH_K", "ClusterConfig",
           "Layout"]

NEMESES = ("none", "partitions", "crashes", "loss", "leader-kill", "mixed",
           "region-partition")
"""The named fault schedules of a run's write phase (see ``graphrep.cluster.runner``).
``region-partition`` cuts one region of the replicas off the others, so it needs
``replica_regions`` in at least two regions."""
READ_PREFERENCES = ("leader", "nearest", "any")
DATASETS = ("gmm", "uniform", "fmnist")
FMNIST_DIM, FMNIST_BASE, FMNIST_QUERIES = 784, 60_000, 10_000
SEARCH_K = 10
"""The k of the run's recall and of the client's searches."""

REPLICA_DEFAULTS: Mapping[str, Any] = MappingProxyType({"R": 16, "L": 48})
"""The replica settings in which a cluster run differs from ``ReplicaConfig``'s
defaults: a smaller graph, for the small simulated data sets."""

RUN_SETS = ("replicas", "shard", "dim", "index_seed")
"""``ReplicaConfig`` fields the run fills in itself: the shard's replica names and
number, ``ClusterConfig.dim`` and ``ClusterConfig.seed``."""

_REPLICA_FIELDS = {f.name: f for f in dataclasses.fields(ReplicaConfig)}


def _replica_default(name: str) -> Any:
    """The value a replica setting has when the run does not set it."""
    return REPLICA_DEFAULTS.get(name, _REPLICA_FIELDS[name].default)


@dataclass(frozen=True)
class ClusterConfig:
    """One simulated cluster run; every field is part of what the seed reproduces.

    ``replica`` maps ``ReplicaConfig`` field names (``policy``, ``R``, ``L``, ``sync``,
    ``max_inflight``, ``apply_batch``, ``snapshot_every``, ``log_keep``,
    ``anti_entropy_ticks``, ``snapshot_ticks``, ...) to the values every replica of the
    run gets; see the module docstring for the rest. :meth:`setting` reads one,
    :meth:`with_replica` changes some.
    """

    nodes: int = 3
    """Nodes ``r0, r1, ...``: the replicas of the one shard, or hosts of shards."""
    writes: int = 500
    """Inserts the client makes (ids ``initial`` on)."""
    deletes: int = 50
    """Deletes of inserted ids, spread among the inserts (at most ``writes``)."""
    dim: int = 16
    """Vector dimension."""
    initial: int = 0
    """Vectors every replica starts with, as a bootstrap snapshot (see ``run_cluster``)."""
    queries: int = 100
    """Query vectors of the recall and agreement checks (and of the client's searches)."""
    concern: str = "majority"
    """The client's write concern: ``one``, ``majority`` or ``all``."""
    seed: int = 7
    """Decides the data, the index and every random stream of the run."""
    nemesis: str = "none"
    """The faults of the write phase: one of :data:`NEMESES` (``region-partition`` needs
    ``replica_regions`` in at least two regions)."""
    write_interval_ns: int = 2 * MS
    """Virtual time between two of the client's writes."""
    max_outstanding: int = 16
    """Writes the client keeps sent and unacknowledged, at most."""
    client_timeout_ns: int = 200 * MS
    """Time without a reply after which the client sends a write again, to the next
    replica."""
    latency: LatencyModel = field(default_factory=lambda: LatencyModel.exponential(2 * MS))
    """One-way delay of every link (region pairs in ``region_latency`` aside)."""
    duplicate: float = 0.0
    """Probability that the network delivers a message twice (throughout the run)."""
    reorder: float = 0.0
    """Probability that a message is held back so that later ones overtake it."""
    settle_ns: int = 60_000 * MS
    """How long after the heal the run may take to settle."""
    search_L: int = 0
    """Beam width of the recall and agreement queries (0: the replicas' ``L``)."""
    dataset: str = "gmm"
    """``gmm``, ``uniform`` or ``fmnist`` (see :mod:`graphrep.cluster`)."""
    cpu_ns_per_distance: int = 0
    """CPU cost model (0: off; the ``Work`` effects the replicas report, priced by the
    simulator: ``SimConfig.cpu_ns_per_distance``): virtual ns per distance
    computation, so that lag includes the CPU time of inserts and of replay's re-runs."""
    cpu_ns_per_entry: int = 0
    """CPU cost model: virtual ns a follower spends applying one log entry."""
    searches: int = 0
    """Client searches spread over the write phase (see :mod:`graphrep.cluster`)."""
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
    replica: Mapping[str, Any] = field(default_factory=dict)
    """``ReplicaConfig`` settings of every replica (see the module docstring). Stored in
    a canonical form, by name: every :data:`REPLICA_DEFAULTS` setting, and the others
    that differ from ``ReplicaConfig``'s defaults; so two configs whose replicas run
    alike compare equal (and the summary's ``config`` shows what is not the default)."""

    def __post_init__(self) -> None:
        self._check_replica()
        if self.nemesis not in NEMESES:
            raise InvalidArgument(f"unknown nemesis {self.nemesis!r}; choose from {NEMESES}")
        if self.concern not in CONCERNS:
            raise InvalidArgument(f"unknown write concern {self.concern!r}; choose from "
                                  f"{CONCERNS}")
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
        self._check_dataset()
        self._check_regions()

    def _check_replica(self) -> None:
        """Refuse settings ``ReplicaConfig`` does not have or the run sets itself, and
        values ``ReplicaConfig`` refuses; store the settings in their canonical form."""
        if not isinstance(self.replica, Mapping):
            raise InvalidArgument(f"replica must be a mapping of ReplicaConfig settings, got "
                                  f"{self.replica!r}")
        unknown = sorted(k for k in self.replica if k not in _REPLICA_FIELDS)
        if unknown:
            allowed = ", ".join(k for k in _REPLICA_FIELDS if k not in RUN_SETS)
            raise InvalidArgument(f"unknown replica setting(s) {', '.join(map(repr, unknown))};"
                                  f" ReplicaConfig has {allowed}")
        owned = sorted(k for k in self.replica if k in RUN_SETS)
        if owned:
            raise InvalidArgument(f"replica setting(s) {', '.join(map(repr, owned))} come from "
                                  "the run (its replica names, shard, dim and seed): set dim "
                                  "and seed on ClusterConfig and leave these out")
        given = {**REPLICA_DEFAULTS, **self.replica}
        object.__setattr__(self, "replica", {
            k: given[k] for k in sorted(given)
            if k in REPLICA_DEFAULTS or given[k] != _REPLICA_FIELDS[k].default})
        try:
            self.replica_config(tuple(f"r{i}" for i in range(max(self.nodes, 1))))
        except (ProtocolError, TypeError) as exc:
            raise InvalidArgument(f"bad replica settings {dict(self.replica)!r}: {exc}") from None

    def _check_dataset(self) -> None:
        if self.dataset not in DATASETS:
            raise InvalidArgument(f"unknown dataset {self.dataset!r}; choose from {DATASETS}")
        if self.dataset != "fmnist":
            return
        if self.dim != FMNIST_DIM:
            raise InvalidArgument(f"dataset 'fmnist' has {FMNIST_DIM} dimensions, got "
                                  f"dim={self.dim}: pass dim={FMNIST_DIM} (the CLI does "
                                  f"when --dim is omitted)")
        if self.initial + self.writes > FMNIST_BASE or self.queries > FMNIST_QUERIES:
            raise InvalidArgument(f"fmnist has {FMNIST_BASE} base and {FMNIST_QUERIES} "
                                  f"query vectors; got initial + writes = "
                                  f"{self.initial + self.writes}, queries = {self.queries}")

    def _check_regions(self) -> None:
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
        if self.nemesis == "region-partition" and len(self.regions_in_use()) < 2:
            raise InvalidArgument(f"nemesis 'region-partition' cuts one region off the "
                                  f"others, but the replicas are all in "
                                  f"{self.regions_in_use()[0]!r}: give replica_regions in "
                                  f"at least two regions (graphrep.sim.regions."
                                  f"nodes_in_regions)")

    # ------------------------------------------------------------------ replicas

    def setting(self, name: str) -> Any:
        """The value of the replica setting ``name`` in this run (set, or its default)."""
        if name not in _REPLICA_FIELDS or name in RUN_SETS:
            raise InvalidArgument(f"{name!r} is not a replica setting; see ReplicaConfig")
        return self.replica[name] if name in self.replica else _replica_default(name)

    @property
    def policy(self) -> str:
        """The replicas' replication policy (the ``policy`` replica setting)."""
        return self.setting("policy")

    def with_replica(self, **settings: Any) -> ClusterConfig:
        """This config with some replica settings changed."""
        return dataclasses.replace(self, replica={**self.replica, **settings})

    def replica_config(self, replicas: tuple[str, ...], shard: int = 0) -> ReplicaConfig:
        """The ``ReplicaConfig`` of the replicas ``replicas`` of ``shard`` in this run."""
        return ReplicaConfig(replicas=replicas, shard=shard, dim=self.dim,
                             index_seed=self.seed, **self.replica)

    # ------------------------------------------------------------------ the run

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

    def regions_in_use(self) -> tuple[str, ...]:
        """The distinct regions of the nodes, sorted by name."""
        return tuple(sorted({self.region(i) for i in range(self.nodes)}))

    def network(self) -> NetworkConfig:
        """The simulated network: ``latency`` (and ``region_latency``), duplication and
        reordering; loss comes from the nemesis."""
        return NetworkConfig(default=self.latency, duplicate=self.duplicate,
                             reorder=self.reorder,
                             regions={(a, b): m for a, b, m in self.region_latency})


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
        p: Any = sim.process(node)
        if p is None or not self.sharded:
            return p
        return p.replicas.get(shard)

    def label(self, node: str, shard: int) -> str:
        """A replica's name in the summary: the node, or ``node@shard`` when sharded."""
        return f"{node}@{shard}" if self.sharded else node

    def metric(self, name: str, shard: int) -> str:
        """The name a replica's metric has in the run (a ShardHost appends ``@shard``)."""
        return f"{name}@{shard}" if self.sharded else name

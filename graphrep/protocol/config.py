"""What every replica of a shard agrees on: :class:`ReplicaConfig`, and the named choices
in it as ``StrEnum`` s (:class:`Policy`, :class:`Concern`, :class:`SyncPolicy`).

The enums are defined here once; the tuples :data:`POLICIES`, :data:`CONCERNS` and
:data:`SYNC_POLICIES` (their values, plain ``str``) are derived from them for code that
lists or validates choices. A ``StrEnum`` member equals its value (``Policy.LEADER ==
"leader"``), so either spelling can be passed and compared. A config stores the plain
``str`` value whichever was given, because configs go into msgpack, JSON and reprs that
must not change with the spelling.

Membership is tested against the tuples, never the enum: in Python 3.11
``"x" in Policy`` raises ``TypeError`` for a string that is not a member.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from graphrep.errors import ProtocolError
from graphrep.sansio import MS

if TYPE_CHECKING:
    from graphrep.ann import VamanaIndex

__all__ = ["CANDIDATE", "CONCERNS", "FOLLOWER", "LEADER", "POLICIES", "SYNC_POLICIES",
           "Concern", "Policy", "ReplicaConfig", "SyncPolicy"]

FOLLOWER, CANDIDATE, LEADER = "follower", "candidate", "leader"
"""A replica's role (plain strings: they appear in reports and reprs)."""


class Policy(StrEnum):
    """How a shard replicates its index (each has an applier:
    :mod:`graphrep.protocol.appliers`)."""

    LEADER = "leader"
    """The leader ships edge deltas; followers apply them without distance computations."""
    REPLAY = "replay"
    """The log carries client operations and every replica runs each one (the baseline of
    today's vector databases)."""
    SNAPSHOT = "snapshot"
    """The leader ships its whole index every ``snapshot_ticks``."""
    CRDT = "crdt"
    """Active-active: every region's group accepts writes; entries carry candidate
    additions to a :class:`~graphrep.ann.pools.PoolGraph`, whose merge is order-free, and
    are shipped between regions asynchronously (:mod:`graphrep.protocol.crdt`)."""
    LWW = "lww"
    """Active-active baseline: entries ship the full records a write changed, and each
    node keeps the record with the largest timestamp (:mod:`graphrep.protocol.lww`)."""
    ORDERED = "ordered"
    """Active-active baseline: every replica of every region runs every write on its own
    index in one global timestamp order, once no earlier write can still arrive
    (:mod:`graphrep.protocol.ordered`)."""


class Concern(StrEnum):
    """When a write is acknowledged to its client."""

    ONE = "one"
    """Once the leader holds it durably."""
    MAJORITY = "majority"
    """Once it is committed (a majority holds it durably)."""
    ALL = "all"
    """Once it is committed and every replica holds it durably."""


class SyncPolicy(StrEnum):
    """When appended log records are made durable."""

    ALWAYS = "always"
    """Every append is synced before anything that depends on it is sent."""
    TICK = "tick"
    """Group commit: one sync per tick for all appends since the last one."""


POLICIES: tuple[str, ...] = tuple(p.value for p in Policy)
CONCERNS: tuple[str, ...] = tuple(c.value for c in Concern)
SYNC_POLICIES: tuple[str, ...] = tuple(s.value for s in SyncPolicy)


@dataclass(frozen=True)
class ReplicaConfig:
    """What every replica of a shard agrees on. Times in virtual nanoseconds.

    ``policy`` and ``sync`` accept a member of :class:`Policy` / :class:`SyncPolicy` or its
    value; the config stores the plain ``str``."""

    replicas: tuple[str, ...]
    dim: int
    shard: int = 0
    policy: str = Policy.LEADER.value
    metric: str = "l2"
    R: int = 32
    L: int = 64
    alpha: float = 1.2
    tick_ns: int = 10 * MS
    """Heartbeat and retransmission check period of a leader, election check of others."""
    election_timeout_ns: tuple[int, int] = (150 * MS, 300 * MS)
    retransmit_ns: int = 50 * MS
    window: int = 256
    """Entries a leader sends to a follower beyond where its log is known to reach (what
    it acknowledged, or the end it reported)."""
    max_batch: int = 64
    """Entries per Append message."""
    max_inflight: int = 0
    """Append messages with entries a leader keeps in flight to one follower (0: no
    limit, one message per write). At the limit, new entries wait and leave together in
    the message the next acknowledgement releases, as etcd's raft does with its
    ``MaxInflightMsgs``: fewer, larger messages under load, at up to a round trip more
    latency for the entries that waited."""
    apply_batch: int = 1
    """A follower applies committed entries once this many are waiting, and at every
    tick: larger batches make one kernel call apply many deltas (cheaper per delta) at
    the price of up to one tick of extra lag."""
    snapshot_every: int = 2048
    """Committed entries between snapshots (0: never snapshot or compact)."""
    log_keep: int = 512
    """Entries kept before the latest snapshot, for followers slightly behind."""
    snapshot_chunk: int = 256 * 1024
    snapshot_ticks: int = 100
    """Under the ``snapshot`` policy: ticks between the leader's full-index snapshots."""
    anti_entropy_ticks: int = 50
    """Ticks between anti-entropy rounds of a quiet leader (0: off)."""
    tree_leaves: int = 256
    search_L: int = 64
    index_seed: int = 0
    verify_snapshots: bool = True
    """Under ``leader``: before persisting a snapshot, check the index against one
    rebuilt from the previous snapshot and the log (see
    :meth:`~graphrep.protocol.snapshots.Snapshots.check_index`)."""
    sync: str = SyncPolicy.ALWAYS.value
    """When appended log records are made durable: ``always`` syncs every append before
    anything that depends on it is sent; ``tick`` (group commit) syncs once per tick, so
    many appends share one sync, and acknowledgements (a client's ``one``, a follower's
    reply to its leader) wait for the sync: fewer syncs, up to a tick more latency."""

    region: str = ""
    """This group's region (active-active policies: one group per region holds the shard)."""
    regions: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """Active-active policies: every region allowed to hold the shard, with the replicas
    of its group, sorted by region; this group is the entry of ``region``. A region's
    index in this tuple is its tie-break in timestamps. Entries are shipped only to these
    groups (data residency)."""
    ship_ticks: int = 5
    """Active-active: ticks between a leader's pulls from each other region."""
    ship_batch: int = 256
    """Active-active: entries per shipment at most."""
    pool: int = 0
    """``crdt``: candidates each node keeps (0: ``3 * R``)."""

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ProtocolError(f"unknown policy {self.policy!r}; choose from {POLICIES}")
        if type(self.max_inflight) is not int or self.max_inflight < 0:
            raise ProtocolError(f"max_inflight must be an int >= 0 (0: no limit), got "
                                f"{self.max_inflight!r}")
        if self.sync not in SYNC_POLICIES:
            raise ProtocolError(f"unknown sync policy {self.sync!r}; choose from "
                                f"{SYNC_POLICIES}")
        self._check_regions()
        for name in ("policy", "sync"):  # a member given: store its plain value
            value = getattr(self, name)
            if isinstance(value, StrEnum):
                object.__setattr__(self, name, value.value)

    def _check_regions(self) -> None:
        regions = tuple((str(r), tuple(g)) for r, g in self.regions)
        object.__setattr__(self, "regions", regions)
        names = [r for r, _ in regions]
        if names != sorted(set(names)):
            raise ProtocolError(f"regions must be sorted by name, each once, got {names}")
        if regions and dict(regions).get(self.region) != tuple(self.replicas):
            raise ProtocolError(f"this group's region {self.region!r} must be among regions "
                                f"{names} with the group's replicas {self.replicas}")
        for name in ("ship_ticks", "ship_batch"):
            v = getattr(self, name)
            if type(v) is not int or v < 1:
                raise ProtocolError(f"{name} must be an int >= 1, got {v!r}")
        if type(self.pool) is not int or self.pool < 0:
            raise ProtocolError(f"pool must be an int >= 0, got {self.pool!r}")

    @property
    def region_index(self) -> int:
        """This group's region's index in ``regions`` (0 without regions)."""
        names = [r for r, _ in self.regions]
        return names.index(self.region) if self.region in names else 0

    def index(self) -> VamanaIndex:
        """An empty index of this shard's parameters."""
        from graphrep.ann import VamanaIndex  # here: the choices above load no index

        return VamanaIndex(self.dim, self.metric, R=self.R, L=self.L, alpha=self.alpha,
                           seed=self.index_seed)

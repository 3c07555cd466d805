"""The ``crdt`` policy: active-active replication of a graph index whose merge is
order-free.

Every region's group accepts writes for the shard and commits them in its own log (Raft
within the region, as under ``leader``); committed entries are then shipped to the other
regions (:mod:`.regions`), whose leaders append them to their logs. So each region's log
holds every region's writes, in an order of its own; what makes the regions converge is
that applying an entry is a *merge* into a state that does not depend on the order:

* the index is a :class:`~graphrep.ann.pools.PoolGraph`: neighbour lists are canonical
  prunes of grow-only, canonically capped candidate pools;
* an insert of ``id`` with timestamp ``ts`` (:mod:`.hlc`) adds the incarnation ``(id,
  ts)`` and ships, besides its vector, the candidate additions it caused: its pool (what
  a search of the writer's state found) and the members of its list that take it back;
  a remote region merges them by set union and re-prunes only the lists they touch
  (distance work over candidate sets, never a search);
* per id the vector is a last-writer-wins register by timestamp: the incarnation with
  the largest timestamp is the value;
* a delete is a tombstone ``(id, ts)``: it kills every incarnation of ``id`` with a
  smaller timestamp, whenever that one arrives, so a write older than the delete never
  resurrects the id, while an insert with a newer timestamp does (it is a new
  incarnation). The deleting writer also ships repair additions: each node whose list
  held the deleted node is offered a few of that node's neighbours, as a Vamana
  consolidation would do;
* an entry names its origin region and its sequence number there; the version vector
  (entries merged per origin, always a prefix) is what a region pulls by. An insert
  or delete also carries its writer's version vector;
* links: a leader that merges a remote insert knows from that vector which of its own
  region's inserts the writer had not seen (and which, written before the insert
  arrived, had not seen it). It offers the nearest :data:`LINK_K` of them (a scan, no
  search, up to :data:`LINK_SCAN` of them) and the remote node to each other, where the
  offer would enter a pool, and logs those offers as a ``LINK`` entry of its own region,
  shipped and merged like any write (so every copy merges the same offers). Without
  them, nodes written near each other in two regions during a partition never meet;
* the graph has one entry point per origin region (``PoolGraph(origin_bits=8)``: the
  region is a timestamp's low byte), so what a cut-off region wrote stays reachable.

Timestamps come from each leader's hybrid logical clock, which observes every entry it
merges, so a write that follows another it has seen gets the larger timestamp.

Read-your-writes holds per session within a region, as under ``leader`` (the session
token is a position in the region's log). A session that moves to another region
carries a token of the old region's log, which means nothing there: it reads that
region's state, which holds its writes only once they have been shipped.

Not done here: tombstones and the pool entries of dead incarnations are kept forever
(collecting them needs a cut that every region has passed, agreed through the log).
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgpack
import numpy as np

from graphrep.ann.pools import PoolGraph
from graphrep.errors import DamagedEntry, InvalidArgument, InvalidVector, MalformedMessage
from graphrep.protocol.appliers import Applier, register_applier
from graphrep.protocol.config import Policy, ReplicaConfig
from graphrep.protocol.entries import DELETE, INSERT, LINK, decode_entry, encode_entry
from graphrep.protocol.hlc import HLC, REGION_BITS
from graphrep.protocol.log import Log
from graphrep.protocol.messages import MERGE, Entry, vector_of

__all__ = ["CrdtApplier", "CrdtState", "merge", "write"]

_REPAIR_PER_IN_NEIGHBOUR = 4
"""A delete offers each node that listed the deleted one this many of its neighbours."""
LINK_K = 4
"""A remote insert is linked with this many of the local inserts it never saw (each way
where the offer would enter the other's pool)."""
LINK_SCAN = 512
"""Up to this many unseen local inserts are scanned for a remote insert's links; beyond,
(after a long partition) a search of the merged state finds them."""
_FORMAT = "graphrep.crdt/2"


def write(graph: PoolGraph, region: int, seq: int, ts: int, op: str, id_: int,
          vector: bytes, vv: list[int] | tuple[int, ...] = ()) -> bytes:
    """Make a local write (``insert`` with ``vector``'s float32 bytes, or ``delete``) in
    ``graph``: find its candidate additions from the current state, merge them, and
    return the entry body that carries them to every other copy. ``vv``: the writer's
    version vector (what it has merged of each region), carried in the entry."""
    g = graph
    if op == "insert":
        vec = np.frombuffer(vector, dtype="<f4")
        pool = g.candidates_for(vec) if g.entry_id >= 0 else []
        g.add(id_, ts, vec)
        g.offer([(id_, ts)] * len(pool), pool)
        back = g.list_of(id_, ts)
        g.offer(back, [(id_, ts)] * len(back))
        return encode_entry(region, seq, ts, INSERT, id_, vector, pool, back, vv)
    a: list[tuple[int, int]] = []
    b: list[tuple[int, int]] = []
    ver = g.version(id_)
    if ver is not None and id_ in g:
        out = g.list_of(id_, ver)[:_REPAIR_PER_IN_NEIGHBOUR]
        for t in g.in_neighbors(id_, ver):
            for c in out:
                if c != t:
                    a.append(t)
                    b.append(c)
    g.tombstone(id_, ts)
    g.offer(a, b)
    return encode_entry(region, seq, ts, DELETE, id_, b"", a, b, vv)


def merge(graph: PoolGraph, entry: tuple) -> None:
    """Merge a decoded entry (:func:`~.entries.decode_entry`) into ``graph``. Merges
    commute and are idempotent: any order of any entries, repeated or not, gives the
    same graph as any other."""
    _origin, _seq, ts, kind, id_, vec, a, b = entry[:8]
    if kind == LINK:
        graph.offer(a, b)
    elif kind == INSERT:
        graph.add(id_, ts, np.frombuffer(vec, dtype="<f4"))
        me = np.array([[id_, ts]], dtype=np.int64)
        graph.offer(me.repeat(len(a), axis=0), a)
        graph.offer(b, me.repeat(len(b), axis=0))
    else:
        graph.tombstone(id_, ts)
        graph.offer(a, b)


class CrdtState:
    """What a ``crdt`` replica holds: the pool graph, the version vector, and where each
    origin's entries sit in this replica's log (to ship them). Reads go to the graph."""

    def __init__(self, config: ReplicaConfig, graph: PoolGraph | None = None) -> None:
        self.graph = graph or PoolGraph(config.dim, R=config.R, L=config.L,
                                        alpha=config.alpha, pool=config.pool,
                                        origin_bits=REGION_BITS)
        n = max(len(config.regions), 1)
        self.vv = [0] * n
        """Entries merged per origin region (a prefix of each region's writes)."""
        self.where: list[dict[int, int]] = [{} for _ in range(n)]
        """Per origin: seq -> this log's position of that entry."""
        self.keys: list[dict[int, tuple[int, int]]] = [{} for _ in range(n)]
        """Per origin: seq -> the incarnation ``(id, ts)`` its insert wrote (inserts only):
        which inserts a region's entry had not seen, from its version vector."""
        self.max_ts = 0
        self.dim = config.dim

    # reads (what clients, the checker and the recovery use of an index)
    def search(self, queries: Any, k: int = 10, L: int | None = None) -> Any:
        return self.graph.search(queries, k=k, L=L)

    def __len__(self) -> int:
        return len(self.graph)

    def __contains__(self, id_: object) -> bool:
        return id_ in self.graph

    def ids(self, include_deleted: bool = False) -> np.ndarray:
        return self.graph.ids(include_deleted)

    def is_deleted(self, id_: int) -> bool:
        return self.graph.is_deleted(id_)

    def unreachable_count(self) -> int:
        return self.graph.unreachable_count()

    def graph_problems(self) -> list[str]:
        return self.graph.graph_problems()

    @property
    def distance_computations(self) -> int:
        return self.graph.distance_computations

    @property
    def entry_id(self) -> int:
        return self.graph.entry_id

    @property
    def seq(self) -> int:
        return sum(self.vv)

    def digest(self) -> bytes:
        """The graph's digest with the version vector: equal on two replicas that merged
        the same entries (in whatever order)."""
        import hashlib

        return hashlib.blake2b(self.graph.digest() + msgpack.packb(self.vv),
                               digest_size=32).digest()

    def to_bytes(self) -> bytes:
        return msgpack.packb([_FORMAT, self.graph.to_bytes(), self.vv,
                              [sorted(w.items()) for w in self.where], self.max_ts,
                              [sorted((q, list(k)) for q, k in w.items()) for w in self.keys]],
                             use_bin_type=True)

    @classmethod
    def from_bytes(cls, config: ReplicaConfig, data: bytes) -> CrdtState:
        from graphrep.errors import CorruptIndexFile

        try:
            fmt, graph, vv, where, max_ts, keys = msgpack.unpackb(data, raw=False)
            if fmt != _FORMAT:
                raise CorruptIndexFile(f"not a crdt state (format {fmt!r})")
        except CorruptIndexFile:
            raise
        except Exception as exc:
            raise CorruptIndexFile(f"crdt state bytes do not load ({type(exc).__name__})"
                                   ) from None
        s = cls(config, PoolGraph.from_bytes(graph))
        if len(vv) != len(s.vv):
            raise CorruptIndexFile(f"crdt state for {len(vv)} regions, the shard has "
                                   f"{len(s.vv)}")
        s.vv = [int(x) for x in vv]
        s.where = [{int(k): int(v) for k, v in w} for w in where]
        s.keys = [{int(q): (int(k[0]), int(k[1])) for q, k in w} for w in keys]
        s.max_ts = int(max_ts)
        return s


@register_applier
class CrdtApplier(Applier):
    """``crdt`` (see the module docstring): entries are ``MERGE`` entries whose bodies
    :func:`~.entries.encode_entry` makes; applying one merges it. A leader that is deposed with
    entries overwritten rebuilds from its snapshot and log, as under ``leader``."""

    policy = Policy.CRDT.value
    anti_entropy = False
    rebuild_when_elected = True
    active_active: ClassVar[bool] = True

    def __init__(self, config: ReplicaConfig) -> None:
        super().__init__(config)
        self.region = config.region_index
        self.hlc = HLC(self.region)
        self.now = 0
        self._pending: tuple | None = None  # the entry the last execute made
        self._links: list[tuple[tuple[int, int], tuple[int, int]]] = []

    def new_index(self) -> CrdtState:  # type: ignore[override]
        return CrdtState(self.config)

    @property
    def state(self) -> CrdtState:
        return self.index  # type: ignore[return-value]

    # ------------------------------------------------------------------ local writes
    def clock(self, now: int) -> None:
        self.now = now

    def execute(self, op: str, id_: int, vector: bytes) -> Any:
        """A local write: a timestamp from the clock, the candidate additions from a search
        of this state; merged here at once (the leader's state reflects its log). Returns
        the entry body."""
        if op == "delta":
            raise InvalidArgument("policy 'crdt' logs candidate additions, not deltas: "
                                  "write with insert or delete")
        st = self.state
        g = st.graph
        before = g.distance_computations
        ts = self.hlc.tick(self.now)
        seq = st.vv[self.region] + 1
        if op == "insert":
            vec = vector_of(vector, self.config.dim)
            if not np.isfinite(vec).all():
                raise InvalidVector("the vector contains NaN or inf: send finite floats")
        body = write(g, self.region, seq, ts, op, id_, bytes(vector), st.vv)
        if op == "insert":
            st.keys[self.region][seq] = (id_, ts)
        st.vv[self.region] = seq
        st.max_ts = max(st.max_ts, ts)
        self.op_distances += g.distance_computations - before
        self._pending = (self.region, seq)
        return body

    def entry_for(self, term: int, op: str, id_: int, vector: bytes, delta: Any) -> Entry:
        tally = self.logged_bytes
        tally["op"] = tally.get("op", 0) + len(delta)
        return (term, MERGE, delta)

    def executed(self, op: str, id_: int, pos: int) -> None:
        super().executed(op, id_, pos)
        if self._pending is not None:
            origin, seq = self._pending
            self.state.where[origin][seq] = pos
            self._pending = None

    # ------------------------------------------------------------------ merging
    def check_remote(self, body: bytes) -> tuple[int, int]:
        """(origin, seq) of a shipped entry body, fully checked; raises
        ``MalformedMessage`` for a damaged or foreign body."""
        f = decode_entry(body, self.config.dim, len(self.config.regions))
        return f[0], f[1]

    def merge_remote(self, body: bytes, pos: int) -> None:
        """A leader appended a shipped entry at ``pos``: merge it now. A remote insert
        that had not seen some of this region's inserts is linked with the nearest of
        them (:meth:`take_links` logs the links as this region's entry)."""
        before = self.state.distance_computations
        origin, _seq, ts, kind, id_, vec, _a, _b, vv = self.apply_merge(body, pos)
        self.applied = pos + 1
        if kind == INSERT and origin != self.region and vv:
            self._link(id_, ts, vec, vv[self.region])
        self.work += self.state.distance_computations - before

    def _link(self, id_: int, ts: int, vec: bytes, have: int) -> None:
        """Pairs linking the remote insert ``(id_, ts)`` with the nearest live inserts of
        this region after the ``have``-th, which its writer had not seen (and which had
        not seen it: they were written before it arrived here)."""
        st = self.state
        g = st.graph
        lo, hi = have + 1, st.vv[self.region]
        if lo > hi or not g.is_live(id_, ts):
            return
        x = np.frombuffer(vec, dtype="<f4")
        if hi - lo + 1 > LINK_SCAN:
            near = g.candidates_for(x)[: LINK_K + 1]
        else:
            own = st.keys[self.region]
            near = g.nearest_among(x, [own[q] for q in range(lo, hi + 1) if q in own],
                                   LINK_K + 1)
        x_key = (id_, ts)
        for c in near:
            if g.would_take(x_key, c):
                self._links.append((x_key, c))
            if g.would_take(c, x_key):
                self._links.append((c, x_key))

    def take_links(self) -> bytes | None:
        """The ``LINK`` entry of the links found since the last call, merged here (the
        caller logs it as this region's next write), or None if there are none."""
        if not self._links:
            return None
        st = self.state
        pairs = sorted(set(self._links))  # (target, candidate)
        self._links = []
        a = [t for t, _ in pairs]
        b = [c for _, c in pairs]
        ts = self.hlc.tick(self.now)
        seq = st.vv[self.region] + 1
        body = encode_entry(self.region, seq, ts, LINK, 0, b"", a, b)
        before = st.distance_computations
        st.graph.offer(a, b)
        self.work += st.distance_computations - before
        st.vv[self.region] = seq
        st.max_ts = max(st.max_ts, ts)
        self._pending = (self.region, seq)
        return body

    def linked(self, pos: int) -> None:
        """The entry :meth:`take_links` returned is logged at ``pos``."""
        self.applied = pos + 1
        if self._pending is not None:
            origin, seq = self._pending
            self.state.where[origin][seq] = pos
            self._pending = None

    def apply_merge(self, body: bytes, pos: int) -> tuple:
        """Merge the entry ``body`` at log position ``pos``; returns it decoded."""
        st = self.state
        try:
            f = decode_entry(body, self.config.dim, len(self.config.regions))
            origin, seq, ts, kind, id_ = f[:5]
        except MalformedMessage as exc:
            raise DamagedEntry(f"crdt entry at {pos}: {exc}") from None
        if seq != st.vv[origin] + 1:
            raise DamagedEntry(f"crdt entry at {pos} is write {seq} of region {origin}, "
                               f"which has {st.vv[origin]} merged: entries of a region are "
                               "merged in order")
        merge(st.graph, f)
        if origin == self.region and kind != LINK:
            (self.id_pos if kind == INSERT else self.deleted_pos)[id_] = pos
        if kind == INSERT:
            st.keys[origin][seq] = (id_, ts)
        st.vv[origin] = seq
        st.where[origin][seq] = pos
        st.max_ts = max(st.max_ts, ts)
        self.hlc.observe(ts)
        return f

    # ------------------------------------------------------------------ shipping
    def version_vector(self) -> list[int]:
        return list(self.state.vv)

    def shippable(self, log: Log, end: int, vv: list[int], limit: int) -> list[bytes]:
        """The bodies of the entries below log position ``end`` that a region holding
        ``vv`` lacks, in this log's order (each after what it was computed from), at most
        ``limit``; stops early at an entry compacted out of the log (which compaction
        avoids for the regions it has heard from: :meth:`.regions.Shipping.keep_from`)."""
        st = self.state
        wanted: list[int] = []
        for origin, have in enumerate(vv):
            w = st.where[origin]
            for seq in range(have + 1, st.vv[origin] + 1):
                pos = w.get(seq)
                if pos is None or pos >= end:
                    break
                wanted.append(pos)
        wanted.sort()
        out = []
        for pos in wanted[:limit]:
            if pos < log.start:
                break
            out.append(log.entry(pos)[2])
        return out

    def first_needed(self, vv: list[int]) -> int:
        """The log position of the first entry a region holding ``vv`` lacks (a large
        number if it lacks none this log holds)."""
        st = self.state
        out = 1 << 62
        for origin, have in enumerate(vv):
            pos = st.where[origin].get(have + 1)
            if pos is not None and pos < out:
                out = pos
        return out

    # ------------------------------------------------------------------ rebuilding
    def reset(self) -> None:
        super().reset()
        self.hlc = HLC(self.region)

    def load(self, data: bytes) -> CrdtState:  # type: ignore[override]
        return CrdtState.from_bytes(self.config, data)

    def adopt(self, index: Any, end: int) -> None:
        super().adopt(index, end)
        self.hlc = HLC(self.region)
        self.hlc.observe(index.max_ts)

    def snapshot_bytes(self) -> bytes:
        return self.state.to_bytes()

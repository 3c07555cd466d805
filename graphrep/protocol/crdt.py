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
  region is a timestamp's low byte), so what a cut-off region wrote stays reachable;
  a node that prunes left with no in-edge from what those reach is found by queries
  from the graph's rescue points, which are a function of the state as well.

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

from typing import Any

import numpy as np

from graphrep.ann.pools import PoolGraph
from graphrep.errors import InvalidArgument, InvalidVector, UnknownId
from graphrep.protocol.activeactive import RegionApplier, RegionState
from graphrep.protocol.appliers import register_applier
from graphrep.protocol.config import Policy, ReplicaConfig
from graphrep.protocol.entries import DELETE, INSERT, LINK, encode_entry
from graphrep.protocol.hlc import REGION_BITS
from graphrep.protocol.messages import vector_of

__all__ = ["CrdtApplier", "CrdtState", "merge", "write"]

_REPAIR_PER_IN_NEIGHBOUR = 4
"""A delete offers each node that listed the deleted one this many of its neighbours."""
LINK_K = 4
"""A remote insert is linked with this many of the local inserts it never saw (each way
where the offer would enter the other's pool)."""
LINK_SCAN = 512
"""Up to this many unseen local inserts are scanned for a remote insert's links; beyond,
(after a long partition) a search of the merged state finds them."""


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


class CrdtState(RegionState):
    """What a ``crdt`` replica holds: the pool graph (``graph``, where reads go) and the
    shipping bookkeeping of :class:`~.activeactive.RegionState`."""

    FORMAT = "graphrep.crdt/3"

    def __init__(self, config: ReplicaConfig, graph: PoolGraph | None = None) -> None:
        # not ``graph or ...``: a graph whose every node is dead has length 0
        super().__init__(config, graph if graph is not None else PoolGraph(
            config.dim, R=config.R, L=config.L, alpha=config.alpha, pool=config.pool,
            origin_bits=REGION_BITS))

    @property
    def graph(self) -> PoolGraph:
        return self.reads  # type: ignore[no-any-return]

    @classmethod
    def load_reads(cls, data: bytes) -> PoolGraph:
        return PoolGraph.from_bytes(data)


@register_applier
class CrdtApplier(RegionApplier):
    """``crdt`` (see the module docstring): applying an entry merges its candidate
    additions into the pool graph; a leader merging another region's insert links it
    with the local inserts it never saw (:meth:`take_links`)."""

    policy = Policy.CRDT.value
    state_class = CrdtState

    def __init__(self, config: ReplicaConfig) -> None:
        super().__init__(config)
        self._links: list[tuple[tuple[int, int], tuple[int, int]]] = []

    def execute(self, op: str, id_: int, vector: bytes) -> Any:
        """A local write: a timestamp from the clock, the candidate additions from a search
        of this state; merged here at once (the leader's state reflects its log). Returns
        the entry body."""
        if op == "delta":
            raise InvalidArgument("policy 'crdt' logs candidate additions, not deltas: "
                                  "write with insert or delete")
        if op == "insert":
            vec = vector_of(vector, self.config.dim)
            if not np.isfinite(vec).all():
                raise InvalidVector("the vector contains NaN or inf: send finite floats")
        st = self.state
        if op == "delete" and id_ not in st.graph:
            # a region deletes what it holds: a delete of an id whose insert has not
            # arrived would be overtaken by that insert (a newer timestamp) when it does
            raise UnknownId(f"delete: id {id_} is not live in this region; delete an id "
                            "after its insert is acknowledged here")
        before = st.distance_computations
        seq, ts = self.next_local()
        body = write(st.graph, self.region, seq, ts, op, id_, bytes(vector), st.vv)
        self.wrote(seq, ts, INSERT if op == "insert" else DELETE, id_)
        self.op_distances += st.distance_computations - before
        return body

    def merge_into(self, entry: tuple, pos: int) -> None:
        merge(self.state.graph, entry)

    def after_remote(self, entry: tuple) -> None:
        """A remote insert that had not seen some of this region's inserts is linked with
        the nearest of them."""
        origin, _seq, ts, kind, id_, vec, _a, _b, vv = entry
        if kind == INSERT and origin != self.region and vv:
            self._link(id_, ts, vec, vv[self.region])

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
        seq, ts = self.next_local()
        body = encode_entry(self.region, seq, ts, LINK, 0, b"", a, b)
        before = st.distance_computations
        st.graph.offer(a, b)
        self.work += st.distance_computations - before
        self.wrote(seq, ts, LINK, 0)
        return body

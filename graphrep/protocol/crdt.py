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

Garbage: a delete, or an insert that supersedes an older incarnation, leaves dead
incarnations behind (and the delete a tombstone). A region forgets them
(:meth:`~graphrep.ann.pools.PoolGraph.forget`) once every region has passed the write
that killed them, a cut computed from the version vectors the entries carry
(:class:`Collector`): after it, no entry that names them can still arrive. The cut is a
function of the entries merged, so every replica of every region forgets the same
things once it holds the same entries, and the digests stay equal. A region that writes
nothing would hold every other region's garbage back; its leader logs an empty ``LINK``
entry carrying its version vector (a *mark*) when a delete or an update (an insert of an
id already here) it merged waits for it and it has written nothing for
:data:`MARK_ROUNDS` shipping rounds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from graphrep.ann.pools import PoolGraph
from graphrep.ann.validation import check_finite
from graphrep.errors import InvalidArgument, InvalidVector, UnknownId
from graphrep.protocol.activeactive import RegionApplier, RegionState
from graphrep.protocol.appliers import register_applier
from graphrep.protocol.config import Policy, ReplicaConfig
from graphrep.protocol.entries import DELETE, INSERT, LINK, encode_entry
from graphrep.protocol.hlc import REGION_BITS
from graphrep.protocol.messages import vector_of

__all__ = ["Collector", "CrdtApplier", "CrdtState", "merge", "write"]

_REPAIR_PER_IN_NEIGHBOUR = 4
"""A delete offers each node that listed the deleted one this many of its neighbours."""
LINK_K = 1
"""A remote insert is linked with this many of the local inserts it never saw (each way
where the offer would enter the other's pool). More links lowered recall: ten seeds of
500 writes a region, overlapping, one region cut off for half of them, recall@10 of the
worst replica against one writer applying every write (1,000 queries, mean gap): 0.0115
with 5 links, 0.013 with 9 and 0.031 with 17, -0.013 with this one."""
LINK_SCAN = 512
"""Up to this many unseen local inserts are scanned for a remote insert's links; beyond,
(after a long partition) a search of the merged state finds them."""
MARK_ROUNDS = 2
"""A leader that merged a delete or an update which waits for this region to pass it, and
that has logged nothing for this many shipping rounds, logs a mark (see the module
docstring)."""

Held = Callable[[int, int], bool]
"""``held(id, ts)``: whether an incarnation of ``id`` older than ``ts`` may still be held
(:meth:`~graphrep.ann.pools.PoolGraph.holds_past`)."""


class Collector:
    """Which killed incarnations every region has passed, so they may be forgotten.

    An insert or a delete of ``id`` at timestamp ``ts`` kills the incarnations of ``id``
    older than ``ts``. A region that has merged it never names them again (a write names
    live nodes only, and the clock puts the region's later writes above ``ts``, so an
    older incarnation of ``id`` was written before). What a region wrote before it merged
    the killer may name them and may still be on its way here. So the killed may be
    forgotten once, for every region, the entries it wrote up to the point it had merged
    the killer are merged here.

    Every entry carrying a version vector says that of its writer, and the entries of a
    region arrive in order: ``heard[q]`` is the largest vector of region ``q``'s entries
    merged here. The killer ``seq`` of region ``r`` is past the cut when
    ``heard[q][r] >= seq`` for every ``q`` other than ``r`` (``r``'s own earlier entries
    precede it). This is a function of the set of entries merged, nothing else: replicas
    holding the same entries forget the same things.
    """

    def __init__(self, regions: int) -> None:
        self.heard = [[0] * regions for _ in range(regions)]
        self.waiting: list[deque[tuple[int, int, int, int]]] = [deque()
                                                                 for _ in range(regions)]
        """Per origin: ``(seq, kind, id, ts)`` of its inserts and deletes merged here and
        not past the cut yet, in ``seq`` order."""

    def merged(self, origin: int, seq: int, kind: int, id_: int, ts: int,
               vv: list[int] | tuple[int, ...]) -> list[tuple[int, int]]:
        """The entry ``seq`` of region ``origin`` (kind, id, timestamp, the vector it
        carries) is merged: the ``(id, ts)`` of the killers now past the cut, whose
        victims the caller forgets, in the order they passed."""
        if kind in (INSERT, DELETE):
            self.waiting[origin].append((seq, kind, id_, ts))
        if vv:
            row = self.heard[origin]
            for k, x in enumerate(vv):
                if x > row[k]:
                    row[k] = x
        out: list[tuple[int, int]] = []
        for r in range(len(self.heard)):
            w = self.waiting[r]
            if not w:
                continue
            cut = self.cut(r)
            while w and w[0][0] <= cut:
                _, _, i, t = w.popleft()
                out.append((i, t))
        return out

    def cut(self, origin: int) -> int:
        """How many of ``origin``'s writes every other region has said it merged."""
        n = len(self.heard)
        return min((self.heard[q][origin] for q in range(n) if q != origin),
                   default=1 << 62)

    def waits_for(self, region: int, held: Held | None = None) -> bool:
        """Whether a killer merged here that holds something waits for an entry of
        ``region`` that says it has merged it: a delete, or an insert for which
        ``held(id, ts)`` says an older incarnation of its id may still be here (an
        update). Most inserts kill nothing and need no such entry."""
        row = self.heard[region]
        for r, w in enumerate(self.waiting):
            if r == region:
                continue
            for seq, kind, i, t in reversed(w):
                if seq <= row[r]:
                    break
                if kind == DELETE or (held is not None and held(i, t)):
                    return True
        return False

    def killers_waiting(self, held: Held | None = None) -> list[tuple[int, int, int, int]]:
        """The killers merged here not past the cut yet that hold something, ``(seq, kind,
        id, ts)``: every delete, and the inserts for which ``held(id, ts)`` (see
        :meth:`waits_for`)."""
        return [x for w in self.waiting for x in w
                if x[1] == DELETE or (held is not None and held(x[2], x[3]))]

    def to_list(self) -> list:
        return [self.heard, [[list(x) for x in w] for w in self.waiting]]

    @classmethod
    def from_list(cls, data: list) -> Collector:
        heard, waiting = data
        c = cls(len(heard))
        if len(waiting) != len(heard) or any(len(row) != len(heard) for row in heard):
            raise ValueError("collector rows do not match the regions")
        c.heard = [[int(x) for x in row] for row in heard]
        c.waiting = [deque((int(a), int(b), int(i), int(t)) for a, b, i, t in w)
                     for w in waiting]
        return c


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
            if not g.is_live(*t):
                continue  # a dead node's list: offers to it change nothing
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
        graph.offer_around((id_, ts), a, b)
    else:
        graph.tombstone(id_, ts)
        graph.offer(a, b)


class CrdtState(RegionState):
    """What a ``crdt`` replica holds: the pool graph (``graph``, where reads go) and the
    shipping bookkeeping of :class:`~.activeactive.RegionState`."""

    FORMAT = "graphrep.crdt/4"

    def __init__(self, config: ReplicaConfig, graph: PoolGraph | None = None) -> None:
        # not ``graph or ...``: a graph whose every node is dead has length 0
        super().__init__(config, graph if graph is not None else PoolGraph(
            config.dim, R=config.R, L=config.L, alpha=config.alpha, pool=config.pool,
            origin_bits=REGION_BITS))
        self.collector = Collector(len(self.vv))
        self.region = config.region_index

    @property
    def waiting(self) -> list[tuple[int, int, int, int]]:
        """The deletes and updates merged here whose victims are not forgotten yet (they
        wait for the cut): something will still happen (a mark, a collection)."""
        return self.collector.killers_waiting(self.graph.holds_past)

    def same_vector(self, id_: int, vector: np.ndarray) -> bool | None:
        """Whether the id's newest incarnation here (live or not) has ``vector``; None if
        there is none. The pool graph stores vectors as written (no normalisation)."""
        g = self.graph
        v = g.version(id_)
        if v is None:
            return None
        check_finite(vector, "vector")
        return bool(np.array_equal(g.vector(id_, v), vector))

    def collect(self, origin: int, seq: int, kind: int, id_: int, ts: int,
                vv: list[int] | tuple[int, ...]) -> None:
        """Entry ``seq`` of ``origin`` is merged: forget what is now past the cut, and the
        keys of this region's inserts that every other region has said it merged (an
        entry written after that has seen them: no link will name them)."""
        for i, t in self.collector.merged(origin, seq, kind, id_, ts, vv):
            self.graph.forget(i, t)
        own = self.keys[self.region]
        cut = self.collector.cut(self.region)
        while own:
            first = next(iter(own))
            if first > cut:
                break
            del own[first]

    def extra(self) -> list:
        return self.collector.to_list()

    def restore(self, extra: list) -> None:
        self.collector = Collector.from_list(extra)

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
        self._rounds = 0  # shipping rounds seen (on_round)
        self._said = 0  # the round of this region's last entry with a version vector

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
        vv = list(st.vv)
        body = write(st.graph, self.region, seq, ts, op, id_, bytes(vector), vv)
        kind = INSERT if op == "insert" else DELETE
        self.wrote(seq, ts, kind, id_)
        st.collect(self.region, seq, kind, id_, ts, vv)
        self._said = self._rounds
        self.op_distances += st.distance_computations - before
        return body

    def merge_into(self, entry: tuple, pos: int) -> None:
        merge(self.state.graph, entry)
        origin, seq, ts, kind, id_ = entry[:5]
        self.state.collect(origin, seq, kind, id_, ts, entry[8])

    def on_round(self) -> None:
        self._rounds += 1

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
        x_key = (id_, ts)
        if hi - lo + 1 > LINK_SCAN:  # (the search finds the remote insert itself first)
            near = [c for c in g.candidates_for(x) if c != x_key][:LINK_K]
        else:
            own = st.keys[self.region]
            near = g.nearest_among(x, [own[q] for q in range(lo, hi + 1) if q in own],
                                   LINK_K)
        for c in near:
            if g.would_take(x_key, c):
                self._links.append((x_key, c))
            if g.would_take(c, x_key):
                self._links.append((c, x_key))

    def take_links(self) -> bytes | None:
        """The ``LINK`` entry of the links found since the last call, merged here (the
        caller logs it as this region's next write); or a mark, an empty one (see the
        module docstring); or None. Either carries this region's version vector."""
        st = self.state
        g = st.graph
        # a link names live nodes only: one may have died since it was found (a delete
        # merged later in the same shipment), and what this region writes after merging
        # a death must not name the dead (Collector)
        pairs = sorted(p for p in set(self._links) if g.is_live(*p[0]) and g.is_live(*p[1]))
        self._links = []
        if not pairs and (self._rounds - self._said < MARK_ROUNDS
                          or not st.collector.waits_for(self.region, st.graph.holds_past)):
            return None
        a = [t for t, _ in pairs]
        b = [c for _, c in pairs]
        seq, ts = self.next_local()
        vv = list(st.vv)
        body = encode_entry(self.region, seq, ts, LINK, 0, b"", a, b, vv)
        before = st.distance_computations
        g.offer(a, b)
        self.work += st.distance_computations - before
        self.wrote(seq, ts, LINK, 0)
        st.collect(self.region, seq, LINK, 0, ts, vv)
        self._said = self._rounds
        return body

"""The ``ordered`` policy: active-active by a global timestamp order (the sequencer
baseline against :mod:`.crdt`).

Every region's group accepts writes and commits them in its own log, and entries are
shipped between regions as under ``crdt`` (:mod:`.regions`): the same entry format
(:func:`~.entries.encode_entry`, with no candidate additions), the same version vectors
and pulls. What differs is the apply: every replica of every region runs every write on
a :class:`~graphrep.ann.VamanaIndex` itself, in one global order, the writes'
timestamps (:mod:`.hlc`; unique, the region is their last byte). A write can run only
once no write with a smaller timestamp can still arrive: a region's entries arrive in
its order, with growing timestamps, so the *watermark*, the smallest over regions of the
last timestamp merged from each, bounds every write still to come. Writes wait in a
buffer until the watermark passes them.

So the regions converge bit for bit (the same inserts in the same order on the same
deterministic index), at the price the comparison is about: a full insert per write in
every replica of every region, and a write becomes visible, even in its own region,
only after every region has been heard from past it (the slowest region sets the pace).
A write is still acknowledged by its own region's majority.

A region that has nothing to write would hold everyone's watermark back: its leader logs
a *tick* (an entry with no write, kind ``LINK`` with no pairs) when it holds writes of
other regions newer than its own last entry, which are waiting for it.

Per id: ids are not reused (the index refuses a second insert of an id); an insert of
an id already written, or a delete of an id not live, is skipped (counted in
``skipped``) in the global order, the same on every replica.
"""

from __future__ import annotations

import bisect
from typing import Any

import numpy as np

from graphrep.ann import VamanaIndex
from graphrep.errors import InvalidArgument, InvalidVector, UnknownId
from graphrep.protocol.activeactive import IndexRegionState, RegionApplier
from graphrep.protocol.appliers import register_applier
from graphrep.protocol.config import Policy, ReplicaConfig
from graphrep.protocol.entries import DELETE, INSERT, LINK, encode_entry
from graphrep.protocol.messages import vector_of

__all__ = ["OrderedApplier", "OrderedState"]


def _written(index: VamanaIndex, id_: int) -> bool:
    """Whether ``id_`` was ever inserted in ``index`` (live or deleted)."""
    try:
        index.is_deleted(id_)
    except UnknownId:
        return False
    return True


class OrderedState(IndexRegionState):
    """What an ``ordered`` replica holds: the index of the writes run so far (``index``,
    where reads go), the writes waiting for the watermark, and the shipping bookkeeping
    of :class:`~.activeactive.RegionState`."""

    FORMAT = "graphrep.ordered/2"

    def __init__(self, config: ReplicaConfig, index: VamanaIndex | None = None) -> None:
        super().__init__(config, index)
        self.last_ts = [0] * len(self.vv)
        """Per origin, the timestamp of its last entry merged here."""
        self.waiting: list[tuple[int, int, int, bytes]] = []
        """Writes not run yet, ``(ts, kind, id, vector)``, sorted by timestamp."""
        self.ran = 0
        self.skipped = 0

    @property
    def watermark(self) -> int:
        """No write with a timestamp at or below this can still arrive."""
        return min(self.last_ts)

    def queue(self, origin: int, ts: int, kind: int, id_: int, vec: bytes) -> None:
        """Note an entry of ``origin`` (in its order) and queue its write (a tick, kind
        ``LINK``, only moves the origin's clock)."""
        if kind != LINK:
            bisect.insort(self.waiting, (ts, kind, id_, vec))  # timestamps are unique
        self.last_ts[origin] = max(self.last_ts[origin], ts)

    def run_ready(self) -> int:
        """Run the waiting writes the watermark has passed, in timestamp order; returns
        how many ran."""
        mark = self.watermark
        k = 0
        while k < len(self.waiting) and self.waiting[k][0] <= mark:
            _ts, kind, id_, vec = self.waiting[k]
            if kind == INSERT:
                if id_ in self.index or _written(self.index, id_):
                    self.skipped += 1
                else:
                    self.index.insert(id_, np.frombuffer(vec, dtype="<f4"))
            elif id_ in self.index:
                self.index.delete(id_)
            else:
                self.skipped += 1
            k += 1
        del self.waiting[:k]
        self.ran += k
        return k

    def extra(self) -> list:
        return [self.last_ts, [list(w) for w in self.waiting], self.ran, self.skipped]

    def restore(self, extra: list) -> None:
        last_ts, waiting, ran, skipped = extra
        self.last_ts = [int(x) for x in last_ts]
        self.waiting = [(int(t), int(k), int(i), bytes(v)) for t, k, i, v in waiting]
        self.ran, self.skipped = int(ran), int(skipped)


@register_applier
class OrderedApplier(RegionApplier):
    """``ordered`` (see the module docstring): every write queued, and run on a
    :class:`~graphrep.ann.VamanaIndex` in timestamp order once the watermark passes it."""

    policy = Policy.ORDERED.value
    state_class = OrderedState

    def execute(self, op: str, id_: int, vector: bytes) -> Any:
        """A local write: a timestamp from the clock, queued; run when the watermark
        passes it. Returns the entry body."""
        if op == "delta":
            raise InvalidArgument("policy 'ordered' logs operations, not deltas: write "
                                  "with insert or delete")
        kind = INSERT if op == "insert" else DELETE
        if kind == INSERT:
            vec = vector_of(vector, self.config.dim)
            if not np.isfinite(vec).all():
                raise InvalidVector("the vector contains NaN or inf: send finite floats")
        st = self.state
        if kind == DELETE and id_ not in st.index and not any(
                w[1] == INSERT and w[2] == id_ for w in st.waiting):
            # as under crdt: a region deletes only ids it has seen inserted, or a retried
            # insert would run after the delete and bring the id back
            raise UnknownId(f"delete: id {id_} is not inserted in this region; delete an "
                            "id after its insert is acknowledged here")
        before = st.distance_computations
        seq, ts = self.next_local()
        payload = bytes(vector) if kind == INSERT else b""
        body = encode_entry(self.region, seq, ts, kind, id_, payload, [], [], st.vv)
        self.wrote(seq, ts, kind, id_)
        st.queue(self.region, ts, kind, id_, payload)
        st.run_ready()
        self.op_distances += st.distance_computations - before
        return body

    def merge_into(self, entry: tuple, pos: int) -> None:
        origin, _seq, ts, kind, id_, vec = entry[:6]
        self.state.queue(origin, ts, kind, id_, vec)
        self.state.run_ready()

    def take_links(self) -> bytes | None:
        """A tick (an entry with no write) if writes of other regions newer than this
        region's last entry wait for it; else None."""
        st = self.state
        mine = st.last_ts[self.region]
        if not any(ts > mine for ts, *_ in st.waiting):
            return None
        seq, ts = self.next_local()
        body = encode_entry(self.region, seq, ts, LINK, 0, b"", [], [])
        before = st.distance_computations
        self.wrote(seq, ts, LINK, 0)
        st.queue(self.region, ts, LINK, 0, b"")
        st.run_ready()
        self.work += st.distance_computations - before
        return body

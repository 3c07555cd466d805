"""The ``lww`` policy: active-active by last-writer-wins on neighbour lists (the naive
baseline against :mod:`.crdt`).

Every region's group accepts writes and commits them in its own log, and entries are
shipped between regions as under ``crdt`` (:mod:`.regions`). A local write runs on the
leader's :class:`~graphrep.ann.VamanaIndex` (a full insert, as under ``leader``) and
ships the full records it changed (each node's flags, vector and neighbour list:
:meth:`~graphrep.ann.VamanaIndex.export_records`) with the write's timestamp. A
replica that merges an entry keeps, per node, the record with the largest timestamp
(a last-writer-wins register per node): an older record than the one it holds is
dropped. What that loses is the point of the baseline:

* a list that names a node this replica does not hold would leave a *dangling* edge:
  it is dropped and counted in ``dangling`` (with entries shipped in a shipper's log
  order, as :mod:`.regions` does, every node a list names arrives first, so this stays
  0; it guards other shippings);
* two regions that changed one node's list concurrently keep only the later list, and
  the other region's new node loses its in-edge from it: nodes become unreachable;
* which edges were dropped depends on the arrival order, so regions end with different
  graphs (different digests) even when they merged the same entries.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graphrep.ann import VamanaIndex
from graphrep.ann.records import RecordSet
from graphrep.errors import DamagedEntry, InvalidArgument
from graphrep.protocol.activeactive import IndexRegionState, RegionApplier
from graphrep.protocol.appliers import register_applier
from graphrep.protocol.config import Policy, ReplicaConfig
from graphrep.protocol.entries import DELETE, INSERT, RECORDS, encode_entry

__all__ = ["LwwApplier", "LwwState"]


class LwwState(IndexRegionState):
    """What an ``lww`` replica holds: its index (``index``, where reads go), each node's
    record timestamp, and the shipping bookkeeping of
    :class:`~.activeactive.RegionState`."""

    FORMAT = "graphrep.lww/2"

    def __init__(self, config: ReplicaConfig, index: VamanaIndex | None = None) -> None:
        super().__init__(config, index)
        self.stamp: dict[int, int] = {}
        """Per node id, the timestamp of the record it holds."""
        self.dangling = 0
        """Edges dropped because they named a node not here."""
        self.stale = 0
        """Records dropped because this replica held a newer one."""
        self.known: set[int] = set(self.index.ids(include_deleted=True).tolist())
        """Every id this index stores (live or deleted): the edges it can keep."""

    def stamp_records(self, records: RecordSet, ts: int) -> None:
        for i in records.ids.tolist():
            self.stamp[int(i)] = ts

    def take(self, records: RecordSet, ts: int) -> None:
        """Write over this index the records newer than the ones held, minus the edges
        to nodes not here."""
        newer = np.asarray([ts > self.stamp.get(int(i), -1) for i in records.ids.tolist()],
                           dtype=bool)
        self.stale += int((~newer).sum())
        if not newer.any():
            return
        ids = records.ids[newer]
        here = self.known
        here.update(ids.tolist())
        counts, nbrs = [], []
        for k in np.flatnonzero(newer).tolist():
            lst = records.neighbours_of(k)
            keep = [int(x) for x in lst.tolist() if int(x) in here]
            self.dangling += len(lst) - len(keep)
            counts.append(len(keep))
            nbrs += keep
        rs = RecordSet(records.dim, ids, records.flags[newer], records.vectors[newer],
                       np.asarray(counts, dtype=np.int32), np.asarray(nbrs, dtype=np.int64))
        entry = int(ids.min()) if self.index.entry_id < 0 else None
        self.index.overwrite_records(rs, entry_id=entry)
        self.stamp_records(rs, ts)

    def extra(self) -> list:
        return [sorted(self.stamp.items()), self.dangling, self.stale]

    def restore(self, extra: list) -> None:
        stamp, dangling, stale = extra
        self.stamp = {int(k): int(v) for k, v in stamp}
        self.dangling, self.stale = int(dangling), int(stale)


@register_applier
class LwwApplier(RegionApplier):
    """``lww`` (see the module docstring): entries of full records, merged
    last-writer-wins per node."""

    policy = Policy.LWW.value
    state_class = LwwState

    def execute(self, op: str, id_: int, vector: bytes) -> Any:
        """A local write on the leader's index; returns the entry body: the records it
        changed, stamped with the write's timestamp."""
        if op == "delta":
            raise InvalidArgument("policy 'lww' ships records, not deltas: write with "
                                  "insert or delete")
        st = self.state
        before = st.distance_computations
        if op == "insert":
            delta = st.index.insert(id_, np.frombuffer(vector, dtype="<f4"))
            st.known.add(int(id_))
        else:
            delta = st.index.delete(id_)
        seq, ts = self.next_local()
        records = st.index.export_records(np.unique(delta.ids))
        st.stamp_records(records, ts)
        body = encode_entry(self.region, seq, ts, RECORDS, id_, records.to_bytes(), [], [],
                            st.vv)
        self.wrote(seq, ts, INSERT if op == "insert" else DELETE, id_)
        self.op_distances += st.distance_computations - before
        return body

    def merge_into(self, entry: tuple, pos: int) -> None:
        origin, _seq, ts, kind, id_, payload = entry[:6]
        if kind != RECORDS:
            raise DamagedEntry(f"lww entry at {pos} of kind {kind}: lww entries carry records")
        rs = RecordSet.from_bytes(payload)
        self.state.take(rs, ts)
        if origin == self.region:  # which op of the id this region's entry was
            mine = rs.flags[rs.ids == id_]
            (self.deleted_pos if mine.size and mine[0] == 2 else self.id_pos)[id_] = pos

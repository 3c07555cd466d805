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

import hashlib
from typing import Any, ClassVar

import msgpack
import numpy as np

from graphrep.ann import VamanaIndex
from graphrep.ann.records import RecordSet
from graphrep.errors import CorruptIndexFile, DamagedEntry, InvalidArgument, MalformedMessage
from graphrep.protocol.appliers import register_applier
from graphrep.protocol.config import Policy, ReplicaConfig
from graphrep.protocol.crdt import CrdtApplier
from graphrep.protocol.entries import RECORDS, decode_entry, encode_entry

__all__ = ["LwwApplier", "LwwState"]

_FORMAT = "graphrep.lww/1"


class LwwState:
    """What an ``lww`` replica holds: its index, each node's record timestamp, and the
    version vector and log positions for shipping (as :class:`~.crdt.CrdtState`)."""

    def __init__(self, config: ReplicaConfig, index: VamanaIndex | None = None) -> None:
        self.index = index if index is not None else config.index()
        n = max(len(config.regions), 1)
        self.vv = [0] * n
        self.where: list[dict[int, int]] = [{} for _ in range(n)]
        self.keys: list[dict[int, tuple[int, int]]] = [{} for _ in range(n)]
        self.stamp: dict[int, int] = {}
        """Per node id, the timestamp of the record it holds."""
        self.dangling = 0
        """Edges dropped because they named a node not here."""
        self.stale = 0
        """Records dropped because this replica held a newer one."""
        self.max_ts = 0
        self.known: set[int] = set()
        """Every id this index stores (live or deleted): the edges it can keep."""

    # reads
    def search(self, queries: Any, k: int = 10, L: int | None = None) -> Any:
        return self.index.search(queries, k=k, L=L)

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, id_: object) -> bool:
        return id_ in self.index

    def ids(self, include_deleted: bool = False) -> np.ndarray:
        return self.index.ids(include_deleted)

    def is_deleted(self, id_: int) -> bool:
        return self.index.is_deleted(id_)

    def unreachable_count(self) -> int:
        return self.index.unreachable_count()

    def graph_problems(self) -> list[str]:
        return self.index.graph_problems()

    @property
    def distance_computations(self) -> int:
        return self.index.distance_computations

    @property
    def entry_id(self) -> int:
        return self.index.entry_id

    @property
    def seq(self) -> int:
        return sum(self.vv)

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

    def digest(self) -> bytes:
        return hashlib.blake2b(self.index.digest() + msgpack.packb(self.vv),
                               digest_size=32).digest()

    def to_bytes(self) -> bytes:
        return msgpack.packb([_FORMAT, self.index.to_bytes(), self.vv,
                              [sorted(w.items()) for w in self.where],
                              sorted(self.stamp.items()), self.dangling, self.stale,
                              self.max_ts], use_bin_type=True)

    @classmethod
    def from_bytes(cls, config: ReplicaConfig, data: bytes) -> LwwState:
        try:
            f = msgpack.unpackb(data, raw=False)
            if f[0] != _FORMAT:
                raise CorruptIndexFile(f"not an lww state (format {f[0]!r})")
            _, index, vv, where, stamp, dangling, stale, max_ts = f
            s = cls(config, VamanaIndex.from_bytes(index))
            if len(vv) != len(s.vv):
                raise CorruptIndexFile(f"lww state for {len(vv)} regions, the shard has "
                                       f"{len(s.vv)}")
            s.vv = [int(x) for x in vv]
            s.where = [{int(k): int(v) for k, v in w} for w in where]
            s.stamp = {int(k): int(v) for k, v in stamp}
            s.dangling, s.stale, s.max_ts = int(dangling), int(stale), int(max_ts)
            s.known = set(s.index.ids(include_deleted=True).tolist())
        except CorruptIndexFile:
            raise
        except Exception as exc:
            raise CorruptIndexFile(f"lww state bytes do not load ({type(exc).__name__})"
                                   ) from None
        return s


@register_applier
class LwwApplier(CrdtApplier):
    """``lww`` (see the module docstring): :class:`~.crdt.CrdtApplier`'s shipping and
    bookkeeping, with entries of full records merged last-writer-wins per node."""

    policy = Policy.LWW.value
    active_active: ClassVar[bool] = True

    def new_index(self) -> LwwState:  # type: ignore[override]
        return LwwState(self.config)

    @property
    def lww(self) -> LwwState:
        return self.index  # type: ignore[return-value]

    def execute(self, op: str, id_: int, vector: bytes) -> Any:
        """A local write on the leader's index; returns the entry body: the records it
        changed, stamped with the write's timestamp."""
        if op == "delta":
            raise InvalidArgument("policy 'lww' ships records, not deltas: write with "
                                  "insert or delete")
        st = self.lww
        before = st.distance_computations
        if op == "insert":
            delta = st.index.insert(id_, np.frombuffer(vector, dtype="<f4"))
            st.known.add(int(id_))
        else:
            delta = st.index.delete(id_)
        ts = self.hlc.tick(self.now)
        seq = st.vv[self.region] + 1
        records = st.index.export_records(np.unique(delta.ids))
        st.stamp_records(records, ts)
        body = encode_entry(self.region, seq, ts, RECORDS, id_, records.to_bytes(), [], [],
                            st.vv)
        if op == "insert":
            st.keys[self.region][seq] = (id_, ts)
        st.vv[self.region] = seq
        st.max_ts = max(st.max_ts, ts)
        self.op_distances += st.distance_computations - before
        self._pending = (self.region, seq)
        return body

    def apply_merge(self, body: bytes, pos: int) -> tuple:
        st = self.lww
        try:
            f = decode_entry(body, self.config.dim, len(self.config.regions))
        except MalformedMessage as exc:
            raise DamagedEntry(f"lww entry at {pos}: {exc}") from None
        origin, seq, ts, kind, id_, payload = f[:6]
        if seq != st.vv[origin] + 1:
            raise DamagedEntry(f"lww entry at {pos} is write {seq} of region {origin}, "
                               f"which has {st.vv[origin]} merged: entries of a region are "
                               "merged in order")
        if kind != RECORDS:
            raise DamagedEntry(f"lww entry at {pos} of kind {kind}: lww entries carry records")
        rs = RecordSet.from_bytes(payload)
        st.take(rs, ts)
        if origin == self.region:
            mine = rs.flags[rs.ids == id_]
            (self.deleted_pos if mine.size and mine[0] == 2 else self.id_pos)[id_] = pos
        st.vv[origin] = seq
        st.where[origin][seq] = pos
        st.max_ts = max(st.max_ts, ts)
        self.hlc.observe(ts)
        return f

    def merge_remote(self, body: bytes, pos: int) -> None:
        before = self.lww.distance_computations
        self.apply_merge(body, pos)
        self.applied = pos + 1
        self.work += self.lww.distance_computations - before

    def take_links(self) -> bytes | None:
        return None

    def load(self, data: bytes) -> LwwState:  # type: ignore[override]
        return LwwState.from_bytes(self.config, data)


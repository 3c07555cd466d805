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

import hashlib
from typing import Any, ClassVar

import msgpack
import numpy as np

from graphrep.ann import VamanaIndex
from graphrep.errors import (
    CorruptIndexFile,
    DamagedEntry,
    InvalidArgument,
    InvalidVector,
    MalformedMessage,
    UnknownId,
)
from graphrep.protocol.appliers import register_applier
from graphrep.protocol.config import Policy, ReplicaConfig
from graphrep.protocol.crdt import CrdtApplier
from graphrep.protocol.entries import DELETE, INSERT, LINK, decode_entry, encode_entry
from graphrep.protocol.messages import vector_of

__all__ = ["OrderedApplier", "OrderedState"]

_FORMAT = "graphrep.ordered/1"


def _written(index: VamanaIndex, id_: int) -> bool:
    """Whether ``id_`` was ever inserted in ``index`` (live or deleted)."""
    try:
        index.is_deleted(id_)
    except UnknownId:
        return False
    return True


class OrderedState:
    """What an ``ordered`` replica holds: the index of the writes run so far, the writes
    waiting for the watermark, and the version vector and log positions for shipping
    (as :class:`~.crdt.CrdtState`)."""

    def __init__(self, config: ReplicaConfig, index: VamanaIndex | None = None) -> None:
        self.index = index if index is not None else config.index()
        n = max(len(config.regions), 1)
        self.vv = [0] * n
        self.where: list[dict[int, int]] = [{} for _ in range(n)]
        self.keys: list[dict[int, tuple[int, int]]] = [{} for _ in range(n)]
        self.last_ts = [0] * n
        """Per origin, the timestamp of its last entry merged here."""
        self.waiting: list[tuple[int, int, int, bytes]] = []
        """Writes not run yet, ``(ts, kind, id, vector)``, sorted by timestamp."""
        self.ran = 0
        self.skipped = 0
        self.max_ts = 0

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

    @property
    def watermark(self) -> int:
        """No write with a timestamp at or below this can still arrive."""
        return min(self.last_ts)

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

    def take(self, origin: int, seq: int, ts: int, kind: int, id_: int, vec: bytes) -> None:
        """Note an entry of ``origin`` (in its order) and queue its write."""
        if kind != LINK:
            self.waiting.append((ts, kind, id_, vec))
            self.waiting.sort(key=lambda w: w[0])
        if kind == INSERT:
            self.keys[origin][seq] = (id_, ts)
        self.vv[origin] = seq
        self.last_ts[origin] = max(self.last_ts[origin], ts)
        self.max_ts = max(self.max_ts, ts)

    def digest(self) -> bytes:
        """The index's digest with the version vector and the writes still waiting."""
        return hashlib.blake2b(self.index.digest() + msgpack.packb(
            [self.vv, [list(w) for w in self.waiting]]), digest_size=32).digest()

    def to_bytes(self) -> bytes:
        return msgpack.packb([_FORMAT, self.index.to_bytes(), self.vv,
                              [sorted(w.items()) for w in self.where],
                              [sorted((q, list(k)) for q, k in w.items()) for w in self.keys],
                              self.last_ts, [list(w) for w in self.waiting], self.ran,
                              self.skipped, self.max_ts], use_bin_type=True)

    @classmethod
    def from_bytes(cls, config: ReplicaConfig, data: bytes) -> OrderedState:
        try:
            f = msgpack.unpackb(data, raw=False)
            if f[0] != _FORMAT:
                raise CorruptIndexFile(f"not an ordered state (format {f[0]!r})")
            _, index, vv, where, keys, last_ts, waiting, ran, skipped, max_ts = f
            s = cls(config, VamanaIndex.from_bytes(index))
            if len(vv) != len(s.vv):
                raise CorruptIndexFile(f"ordered state for {len(vv)} regions, the shard has "
                                       f"{len(s.vv)}")
            s.vv = [int(x) for x in vv]
            s.where = [{int(k): int(v) for k, v in w} for w in where]
            s.keys = [{int(q): (int(k[0]), int(k[1])) for q, k in w} for w in keys]
            s.last_ts = [int(x) for x in last_ts]
            s.waiting = [(int(t), int(k), int(i), bytes(v)) for t, k, i, v in waiting]
            s.ran, s.skipped, s.max_ts = int(ran), int(skipped), int(max_ts)
        except CorruptIndexFile:
            raise
        except Exception as exc:
            raise CorruptIndexFile(f"ordered state bytes do not load ({type(exc).__name__})"
                                   ) from None
        return s


@register_applier
class OrderedApplier(CrdtApplier):
    """``ordered`` (see the module docstring): :class:`~.crdt.CrdtApplier`'s entries,
    shipping and bookkeeping, with every write run in timestamp order on a
    :class:`~graphrep.ann.VamanaIndex` instead of merged."""

    policy = Policy.ORDERED.value
    active_active: ClassVar[bool] = True

    def new_index(self) -> OrderedState:  # type: ignore[override]
        return OrderedState(self.config)

    @property
    def ordered(self) -> OrderedState:
        return self.index  # type: ignore[return-value]

    def execute(self, op: str, id_: int, vector: bytes) -> Any:
        """A local write: a timestamp from the clock, queued; run when the watermark
        passes it. Returns the entry body."""
        if op == "delta":
            raise InvalidArgument("policy 'ordered' logs operations, not deltas: write "
                                  "with insert or delete")
        st = self.ordered
        kind = INSERT if op == "insert" else DELETE
        if kind == INSERT:
            vec = vector_of(vector, self.config.dim)
            if not np.isfinite(vec).all():
                raise InvalidVector("the vector contains NaN or inf: send finite floats")
        before = st.distance_computations
        ts = self.hlc.tick(self.now)
        seq = st.vv[self.region] + 1
        body = encode_entry(self.region, seq, ts, kind, id_,
                            bytes(vector) if kind == INSERT else b"", [], [], st.vv)
        st.take(self.region, seq, ts, kind, id_, bytes(vector) if kind == INSERT else b"")
        st.run_ready()
        self.op_distances += st.distance_computations - before
        self._pending = (self.region, seq)
        return body

    def apply_merge(self, body: bytes, pos: int) -> tuple:
        st = self.ordered
        try:
            f = decode_entry(body, self.config.dim, len(self.config.regions))
        except MalformedMessage as exc:
            raise DamagedEntry(f"ordered entry at {pos}: {exc}") from None
        origin, seq, ts, kind, id_, vec = f[:6]
        if seq != st.vv[origin] + 1:
            raise DamagedEntry(f"ordered entry at {pos} is write {seq} of region {origin}, "
                               f"which has {st.vv[origin]} merged: entries of a region are "
                               "merged in order")
        if origin == self.region and kind != LINK:
            (self.id_pos if kind == INSERT else self.deleted_pos)[id_] = pos
        st.take(origin, seq, ts, kind, id_, vec)
        st.where[origin][seq] = pos
        st.run_ready()
        self.hlc.observe(ts)
        return f

    def merge_remote(self, body: bytes, pos: int) -> None:
        before = self.ordered.distance_computations
        self.apply_merge(body, pos)
        self.applied = pos + 1
        self.work += self.ordered.distance_computations - before

    def take_links(self) -> bytes | None:
        """A tick (an entry with no write) if writes of other regions newer than this
        region's last entry wait for it; else None."""
        st = self.ordered
        mine = st.last_ts[self.region]
        if not any(ts > mine for ts, *_ in st.waiting):
            return None
        ts = self.hlc.tick(self.now)
        seq = st.vv[self.region] + 1
        body = encode_entry(self.region, seq, ts, LINK, 0, b"", [], [])
        before = st.distance_computations
        st.take(self.region, seq, ts, LINK, 0, b"")
        st.run_ready()
        self.work += st.distance_computations - before
        self._pending = (self.region, seq)
        return body

    def load(self, data: bytes) -> OrderedState:  # type: ignore[override]
        return OrderedState.from_bytes(self.config, data)

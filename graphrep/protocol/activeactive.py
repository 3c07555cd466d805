"""What every active-active policy (``crdt``, ``lww``, ``ordered``) shares: the state's
bookkeeping for shipping between regions, and the applier around it.

Each region's group logs its own writes and the entries it merges from other regions
(:mod:`.regions`). An entry names its origin region and its sequence number there
(:func:`~.entries.encode_entry`); a replica merges each origin's entries in order.

* :class:`RegionState` holds, besides the index the policy keeps (``reads``, where reads
  go): the version vector (entries merged per origin, always a prefix), where each
  origin's entries sit in this replica's log (to ship them), the incarnation each insert
  wrote (to find what a remote write had not seen), and the largest timestamp seen.
* :class:`RegionApplier` stamps local writes with the hybrid logical clock
  (:mod:`.hlc`), checks and orders merged entries, keeps the bookkeeping, and answers
  the shipping questions (what a region lacks, what the log must keep). A policy gives
  its state class, :meth:`RegionApplier.execute` and :meth:`RegionApplier.merge_into`.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterator
from typing import Any, ClassVar

import msgpack
import numpy as np

from graphrep.ann import VamanaIndex
from graphrep.errors import CorruptIndexFile, DamagedEntry, MalformedMessage
from graphrep.protocol.appliers import Applier, index_holds
from graphrep.protocol.config import ReplicaConfig
from graphrep.protocol.entries import DELETE, INSERT, decode_entry
from graphrep.protocol.hlc import HLC
from graphrep.protocol.log import Log
from graphrep.protocol.messages import MERGE, Entry

__all__ = ["IndexRegionState", "Positions", "RegionApplier", "RegionState"]

DECODED_KEPT = 4096
"""Entries an applier keeps decoded between checking and merging them, at most (oldest
dropped first; a dropped one is decoded again when merged)."""


class Positions:
    """Where one origin region's entries sit in this replica's log: entry ``seq`` at a
    log position, for the ``seq`` from :attr:`first` on.

    An origin's entries are merged (and this region's written) in ``seq`` order, and
    each is logged after the one before, so this is an array of increasing positions:
    :meth:`add` appends, :meth:`trim` drops the front once the log no longer holds it.
    Shipping reads only what the log holds, so after each compaction this holds one
    position per entry still in the log, not one per entry ever merged."""

    __slots__ = ("_pos", "_skip", "first")

    def __init__(self, pairs: Any = ()) -> None:
        self.first = 1
        """The ``seq`` of the first position held."""
        self._pos = array("q")
        self._skip = 0  # positions before this index are dropped (compacted lazily)
        for seq, pos in pairs:
            self.add(int(seq), int(pos))

    def __len__(self) -> int:
        return len(self._pos) - self._skip

    def add(self, seq: int, pos: int) -> None:
        """Entry ``seq`` is at ``pos``: the entry after the last one held (any ``seq``
        when none is held)."""
        n = len(self)
        if n == 0:
            self.first = seq
            self._pos = array("q")
            self._skip = 0
        elif seq != self.first + n or pos <= self._pos[-1]:
            raise ValueError(f"entry {seq} at {pos} does not follow entry "
                             f"{self.first + n - 1} at {self._pos[-1]}: an origin's "
                             "entries are logged in order")
        self._pos.append(pos)

    def get(self, seq: int) -> int | None:
        """The log position of entry ``seq``, or None if not held."""
        k = seq - self.first
        if 0 <= k < len(self):
            return self._pos[self._skip + k]
        return None

    def trim(self, start: int) -> None:
        """Drop the entries logged before position ``start``."""
        pos, k = self._pos, self._skip
        while k < len(pos) and pos[k] < start:
            k += 1
        self.first += k - self._skip
        self._skip = k
        if k > 1024 and 2 * k > len(pos):
            self._pos = pos[k:]
            self._skip = 0

    def items(self) -> Iterator[tuple[int, int]]:
        """``(seq, position)`` of every entry held, in order."""
        for k in range(self._skip, len(self._pos)):
            yield self.first + k - self._skip, self._pos[k]


class RegionState:
    """An active-active replica's state: the policy's index (``reads``) and the
    shipping bookkeeping (see the module docstring). Reads (search, ids, membership,
    health) go to ``reads``. Subclasses name their ``FORMAT`` and how their index loads
    (:meth:`load_reads`), and may add fields of their own to the digest and the bytes
    (:meth:`extra` / :meth:`restore`)."""

    FORMAT: ClassVar[str] = ""

    def __init__(self, config: ReplicaConfig, reads: Any) -> None:
        self.reads = reads
        n = max(len(config.regions), 1)
        self.vv = [0] * n
        """Entries merged per origin region (a prefix of each region's writes)."""
        self.where: list[Positions] = [Positions() for _ in range(n)]
        """Per origin: seq -> this log's position of that entry (those the log holds,
        once it has been compacted)."""
        self.keys: list[dict[int, tuple[int, int]]] = [{} for _ in range(n)]
        """Per origin: seq -> the incarnation ``(id, ts)`` its insert wrote, for this
        region's own inserts only: which of them another region's entry had not seen, from
        its version vector (``crdt`` drops those every region has seen)."""
        self.max_ts = 0

    def same_vector(self, id_: int, vector: np.ndarray) -> bool | None:
        """Whether the policy's index holds ``vector`` (float32, as a client sent it) for
        ``id_``; None if it holds none (see :meth:`.appliers.Applier.not_a_retry`)."""
        return index_holds(self.reads, id_, vector)

    # reads (what clients, the checker and the recovery use of an index)
    def search(self, queries: Any, k: int = 10, L: int | None = None) -> Any:
        return self.reads.search(queries, k=k, L=L)

    def __len__(self) -> int:
        return len(self.reads)

    def __contains__(self, id_: object) -> bool:
        return id_ in self.reads

    def ids(self, include_deleted: bool = False) -> np.ndarray:
        return self.reads.ids(include_deleted)

    def is_deleted(self, id_: int) -> bool:
        return self.reads.is_deleted(id_)

    def unreachable_count(self) -> int:
        return self.reads.unreachable_count()

    def graph_problems(self) -> list[str]:
        return self.reads.graph_problems()

    @property
    def distance_computations(self) -> int:
        return self.reads.distance_computations

    @property
    def entry_id(self) -> int:
        return self.reads.entry_id

    @property
    def seq(self) -> int:
        return sum(self.vv)

    # what a subclass adds
    def extra(self) -> list:
        """The subclass's own fields, as msgpack-able data (in the digest and the bytes)."""
        return []

    def restore(self, extra: list) -> None:
        """Set the subclass's own fields from :meth:`extra`'s data."""

    @classmethod
    def load_reads(cls, data: bytes) -> Any:
        raise NotImplementedError

    # digest and bytes
    def digest(self) -> bytes:
        """The index's digest with the version vector (and the subclass's fields): equal
        on two replicas that merged the same entries."""
        return hashlib.blake2b(self.reads.digest() + msgpack.packb([self.vv, self.extra()]),
                               digest_size=32).digest()

    def to_bytes(self) -> bytes:
        return msgpack.packb([self.FORMAT, self.reads.to_bytes(), self.vv,
                              [list(w.items()) for w in self.where], self.max_ts,
                              [sorted((q, list(k)) for q, k in w.items()) for w in self.keys],
                              self.extra()], use_bin_type=True)

    @classmethod
    def from_bytes(cls, config: ReplicaConfig, data: bytes) -> RegionState:
        """Read :meth:`to_bytes`; damaged or foreign bytes raise :class:`CorruptIndexFile`."""
        try:
            fmt, reads, vv, where, max_ts, keys, extra = msgpack.unpackb(data, raw=False)
            if fmt != cls.FORMAT:
                raise CorruptIndexFile(f"not a {cls.FORMAT} state (format {fmt!r})")
            s = cls(config, cls.load_reads(reads))
            if len(vv) != len(s.vv):
                raise CorruptIndexFile(f"state for {len(vv)} regions, the shard has "
                                       f"{len(s.vv)}")
            s.vv = [int(x) for x in vv]
            s.where = [Positions(w) for w in where]
            s.keys = [{int(q): (int(k[0]), int(k[1])) for q, k in w} for w in keys]
            s.max_ts = int(max_ts)
            s.restore(extra)
        except CorruptIndexFile:
            raise
        except Exception as exc:  # any decoding failure: the bytes are not ours
            raise CorruptIndexFile(f"{cls.FORMAT} state bytes do not load "
                                   f"({type(exc).__name__})") from None
        return s


class IndexRegionState(RegionState):
    """A region state whose reads go to a :class:`~graphrep.ann.VamanaIndex` (``index``;
    a new one of the config's settings unless given): ``lww``'s and ``ordered``'s."""

    def __init__(self, config: ReplicaConfig, index: VamanaIndex | None = None) -> None:
        super().__init__(config, index if index is not None else config.index())

    @property
    def index(self) -> VamanaIndex:
        return self.reads  # type: ignore[no-any-return]

    @classmethod
    def load_reads(cls, data: bytes) -> VamanaIndex:
        return VamanaIndex.from_bytes(data)


class RegionApplier(Applier):
    """The applier of an active-active policy (see the module docstring); entries are
    ``MERGE`` entries. A leader that is deposed with entries overwritten rebuilds from its
    snapshot and log, as under ``leader``. Not registered itself: a policy subclasses it
    with ``policy``, ``state_class``, :meth:`execute` and :meth:`merge_into`."""

    anti_entropy = False
    rebuild_when_elected = True
    active_active: ClassVar[bool] = True
    state_class: ClassVar[type[RegionState]] = RegionState

    def __init__(self, config: ReplicaConfig) -> None:
        super().__init__(config)
        self.region = config.region_index
        self.hlc = HLC(self.region)
        self.now = 0
        self._pending: tuple | None = None  # the entry the last local write made
        self._decoded: dict[bytes, tuple] = {}
        """Bodies checked (decoded in full) and not merged yet: a merge takes its entry from
        here instead of decoding it a second time."""

    def new_index(self) -> RegionState:  # type: ignore[override]
        return self.state_class(self.config)  # type: ignore[call-arg]

    @property
    def state(self) -> Any:
        return self.index

    # ------------------------------------------------------------------ local writes
    def clock(self, now: int) -> None:
        self.now = now

    def next_local(self) -> tuple[int, int]:
        """``(seq, ts)`` of this region's next entry."""
        return self.state.vv[self.region] + 1, self.hlc.tick(self.now)

    def wrote(self, seq: int, ts: int, kind: int, id_: int) -> None:
        """This region's entry ``seq`` (kind ``kind`` of ``id_``) is made and merged here;
        :meth:`executed` or :meth:`linked` learns where it is logged."""
        st = self.state
        if kind == INSERT:
            st.keys[self.region][seq] = (id_, ts)
        st.vv[self.region] = seq
        st.max_ts = max(st.max_ts, ts)
        self._pending = (self.region, seq)

    def entry_for(self, term: int, op: str, id_: int, vector: bytes, delta: Any) -> Entry:
        tally = self.logged_bytes
        tally["op"] = tally.get("op", 0) + len(delta)
        return (term, MERGE, delta)

    def executed(self, op: str, id_: int, pos: int) -> None:
        super().executed(op, id_, pos)
        self._logged(pos)

    def linked(self, pos: int) -> None:
        """The entry :meth:`take_links` returned is logged at ``pos``."""
        self.applied = pos + 1
        self._logged(pos)

    def _logged(self, pos: int) -> None:
        if self._pending is not None:
            origin, seq = self._pending
            self.state.where[origin].add(seq, pos)
            self._pending = None

    # ------------------------------------------------------------------ merging
    def _decode(self, body: bytes) -> tuple:
        """``body`` decoded and checked in full (:func:`~.entries.decode_entry`, with the
        shard's dimension and regions), kept for :meth:`apply_merge`; raises
        ``MalformedMessage``."""
        f = self._decoded.get(body)
        if f is None:
            f = decode_entry(body, self.config.dim, len(self.config.regions))
            if len(self._decoded) >= DECODED_KEPT:
                del self._decoded[next(iter(self._decoded))]
            self._decoded[body] = f
        return f

    def check_remote(self, body: bytes) -> tuple[int, int]:
        """(origin, seq) of a shipped entry body, fully checked; raises
        ``MalformedMessage`` for a damaged or foreign body."""
        f = self._decode(body)
        return f[0], f[1]

    def check_entry(self, entry: Entry, dim: int) -> None:
        """As :func:`~.entries.check_entry`; a ``MERGE`` entry is checked against the
        shard's regions too, and kept decoded for its merge."""
        term, kind, body = entry
        if kind != MERGE:
            super().check_entry(entry, dim)
            return
        try:
            self._decode(body)
        except MalformedMessage as exc:
            raise DamagedEntry(f"MERGE entry of term {term}: {exc}") from None

    def merge_remote(self, body: bytes, pos: int) -> None:
        """A leader appended a shipped entry at ``pos``: merge it now."""
        before = self.state.distance_computations
        f = self.apply_merge(body, pos)
        self.applied = pos + 1
        self.after_remote(f)
        self.work += self.state.distance_computations - before

    def on_round(self) -> None:
        """A shipping round began (a leader's, every ``ship_ticks`` ticks); nothing by
        default."""

    def after_remote(self, entry: tuple) -> None:
        """What the leader does after merging a shipped entry (nothing by default)."""

    def apply_merge(self, body: bytes, pos: int) -> tuple:
        """Merge the entry ``body`` at log position ``pos`` (each origin's entries in
        order); returns it decoded."""
        st = self.state
        f = self._decoded.pop(body, None)
        if f is None:
            try:
                f = decode_entry(body, self.config.dim, len(self.config.regions))
            except MalformedMessage as exc:
                raise DamagedEntry(f"{self.policy} entry at {pos}: {exc}") from None
        origin, seq, ts, kind, id_ = f[:5]
        if seq != st.vv[origin] + 1:
            raise DamagedEntry(f"{self.policy} entry at {pos} is write {seq} of region "
                               f"{origin}, which has {st.vv[origin]} merged: entries of a "
                               "region are merged in order")
        self.merge_into(f, pos)
        if origin == self.region and kind in (INSERT, DELETE):
            (self.id_pos if kind == INSERT else self.deleted_pos)[id_] = pos
        if kind == INSERT and origin == self.region:
            st.keys[origin][seq] = (id_, ts)
        st.vv[origin] = seq
        st.where[origin].add(seq, pos)
        st.max_ts = max(st.max_ts, ts)
        self.hlc.observe(ts)
        return f

    def merge_into(self, entry: tuple, pos: int) -> None:
        """Apply the decoded ``entry`` (logged at ``pos``) to the policy's index."""
        raise NotImplementedError

    # ------------------------------------------------------------------ shipping
    def same_vector(self, id_: int, vector: np.ndarray) -> bool | None:
        return self.state.same_vector(id_, vector)

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
            w = st.where[origin]
            if have + 1 < w.first:
                return 0  # it lacks entries compacted away: the log keeps all it has
            pos = w.get(have + 1)
            if pos is not None and pos < out:
                out = pos
        return out

    def compacted(self, start: int) -> None:
        """The log now starts at ``start``: forget where the entries before it were."""
        for w in self.state.where:
            w.trim(start)

    # ------------------------------------------------------------------ rebuilding
    def reset(self) -> None:
        super().reset()
        self.hlc = HLC(self.region)

    def load(self, data: bytes) -> RegionState:  # type: ignore[override]
        return self.state_class.from_bytes(self.config, data)

    def adopt(self, index: Any, end: int) -> None:
        super().adopt(index, end)
        self.hlc = HLC(self.region)
        self.hlc.observe(index.max_ts)

    def snapshot_bytes(self) -> bytes:
        return self.state.to_bytes()

"""Appliers: what a replication policy does with the log. The consensus core
(:class:`~graphrep.protocol.replica.Replica`) stores, replicates and commits entries
without looking inside them; an :class:`Applier` owns the index and gives the entries
their meaning.

An applier decides, for its policy:

* what a client write becomes in the log (:meth:`Applier.entry_for`): an edge delta
  (``leader``) or the operation itself (``replay``, ``snapshot``);
* whether a client may write a delta computed elsewhere (``accepts_deltas``, the
  ``delta`` op: a recorded run replayed through the protocol; see
  :meth:`Applier.delta_op`);
* how entries apply to the index (:meth:`Applier.apply_to`): runs of deltas are decoded
  and applied by one kernel call each (``VamanaIndex.apply_bytes``), operations are run;
* how the index is rebuilt from a snapshot (:meth:`Applier.load`, :meth:`Applier.adopt`)
  and, for ``replay``, re-indexed in bulk from the log (:meth:`Applier.bulk_load`);
* the per-id bookkeeping that makes a client's retry idempotent: ``id_pos`` and
  ``deleted_pos`` map an id to the log position of its insert / delete (for a write
  that came in a snapshot, the snapshot's last position: its prefix holds the write);
* the policy's flags: whether followers apply the log (``followers_apply``), whether
  anti-entropy compares graphs (``anti_entropy``), whether a new leader rebuilds its
  index from its durable state (``rebuild_when_elected``), whether its index is checked
  against the log before it is saved as a snapshot (``checks_snapshots``: see
  :meth:`.snapshots.Snapshots.check_index`), and the snapshot schedule
  (``snapshot_schedule``).

Policies are registered by name (:func:`register_applier`, :func:`applier_class`); a new
policy is a new applier class, not a branch in the core. An entry applies the same way
under every policy (a delta is applied, an operation is run, a NOOP is skipped): the
policy decides what its leader writes and when its replicas apply, not what an entry
means.

Invariants: ``applied`` is the number of log positions the index reflects (everything
before it, nothing after it), and applying never skips: when the index refuses an entry,
``applied`` is that entry's position, everything before it is applied and noted, and
the error propagates.
"""

from __future__ import annotations

from enum import StrEnum
from importlib import import_module
from typing import ClassVar

import msgpack
import numpy as np

from graphrep.ann import EdgeDelta, VamanaIndex
from graphrep.ann.delta import DeltaBatch, decode_many
from graphrep.ann.validation import as_one_vector
from graphrep.errors import DamagedEntry, DeltaError, GraphrepError, InvalidArgument
from graphrep.protocol.config import Policy, ReplicaConfig
from graphrep.protocol.entries import check_entry
from graphrep.protocol.log import Log
from graphrep.protocol.messages import DELTA, MERGE, OP, Entry, vector_of

__all__ = ["APPLIERS", "Applier", "DeltaApplier", "ReplayApplier", "SnapshotApplier",
           "SnapshotSchedule", "applier_class", "register_applier"]


class SnapshotSchedule(StrEnum):
    """When a policy's replicas snapshot their index."""

    COMPACTION = "compaction"
    """Every ``snapshot_every`` committed entries, keeping ``log_keep`` entries before it
    for followers slightly behind; a follower that needs compacted entries is sent it."""
    PERIODIC = "periodic"
    """The leader, every ``snapshot_ticks`` ticks, and ships it to every follower."""


def index_holds(index: VamanaIndex, id_: int, vector: np.ndarray) -> bool | None:
    """Whether ``index`` holds ``vector`` (as a client sent it: normalised here for a
    cosine index, as the index stores it) for ``id_``, live or deleted and not yet
    consolidated; None if it holds no vector for ``id_``."""
    try:
        held = index.vector(id_)
    except GraphrepError:
        return None
    return bool(np.array_equal(as_one_vector(vector, index.dim, index.metric, "vector"),
                               held))


class Applier:
    """``Applier(config)``: an empty index of the shard's parameters, nothing applied.
    Subclasses set :attr:`policy`, the flags, and :meth:`entry_for`."""

    policy: ClassVar[str] = ""
    followers_apply: ClassVar[bool] = True
    anti_entropy: ClassVar[bool] = True
    rebuild_when_elected: ClassVar[bool] = False
    checks_snapshots: ClassVar[bool] = False
    snapshot_schedule: ClassVar[SnapshotSchedule] = SnapshotSchedule.COMPACTION
    accepts_deltas: ClassVar[bool] = False
    active_active: ClassVar[bool] = False
    """Every region's group accepts writes and ships committed entries to the others
    (:mod:`.regions`); the applier then provides ``version_vector``, ``shippable``,
    ``check_remote`` and ``merge_remote``."""

    def __init__(self, config: ReplicaConfig) -> None:
        self.config = config
        self.index: VamanaIndex = self.new_index()
        self.applied = 0
        self.id_pos: dict[int, int] = {}
        self.deleted_pos: dict[int, int] = {}
        self.work = 0
        """Distance computations spent applying the log, not reported yet."""
        self.op_distances = 0
        """Distance computations of the leader's own writes, not reported yet."""
        self.logged_bytes: dict[str, int] = {}
        """Bytes of the entries this replica logged as leader, by part (``vector``,
        ``edges``, ``metadata`` of the deltas it computed; ``given`` for deltas clients
        wrote, not split; ``op`` for operations): a tally for observers (a live node's
        metrics), which the protocol never reads."""

    def new_index(self) -> VamanaIndex:
        """An empty index of the shard's parameters."""
        return self.config.index()

    def clock(self, now: int) -> None:
        """The node's clock at the write about to be executed (policies that timestamp
        writes read it; the others ignore it)."""

    def check_entry(self, entry: Entry, dim: int) -> None:
        """Raise :class:`~graphrep.errors.DamagedEntry` unless ``entry`` is sound
        (:func:`~.entries.check_entry`): what a follower checks of every entry an Append
        brings, before it reaches the log."""
        check_entry(entry, dim)

    # ------------------------------------------------------------------ the leader's writes

    def known(self, op: str, id_: int) -> int | None:
        """The log position of an ``insert`` / ``delete`` of ``id_`` already written (a
        client's retry), or None."""
        return (self.id_pos if op == "insert" else self.deleted_pos).get(id_)

    def not_a_retry(self, op: str, id_: int, vector: bytes) -> str | None:
        """For a client's write that :meth:`known` names as written already: why it is not
        a retry of that write, or None. A retried insert carries the vector it was
        written with; an insert of a written id with another vector is a different write,
        which a shard refuses (ids are written once) rather than acknowledging a write
        that changes nothing. Where the index no longer holds the id's vector (it was
        consolidated away, or an ``ordered`` write has not run yet) it cannot tell, and
        takes the write for a retry."""
        if op != "insert":
            return None
        try:
            same = self.same_vector(id_, vector_of(vector, self.config.dim))
        except GraphrepError as exc:
            return f"id {id_} is written already, and this insert is not a retry of it: {exc}"
        if same is not False:
            return None
        return (f"id {id_} is already inserted with another vector; ids are never reused "
                "(to change a vector, delete the id and insert the vector under a new id)")

    def same_vector(self, id_: int, vector: np.ndarray) -> bool | None:
        """Whether the index holds ``vector`` (float32, as a client sent it) for ``id_``;
        None if it holds no vector for it. Raises ``InvalidVector`` for a vector the
        index would refuse."""
        return index_holds(self.index, id_, vector)

    def delta_op(self, id_: int, body: bytes) -> str:
        """For a client's ``delta`` write (``body``: an edge delta's bytes, computed
        against this shard's index as it stands, e.g. recorded from a run of the same
        parameters): the op, ``insert`` or ``delete``, it carries for ``id_``. Raises a
        ``GraphrepError`` (nothing changes) if the policy does not log deltas, if the
        bytes are not a sound delta, or if the delta does not insert or delete ``id_``."""
        if not self.accepts_deltas:
            raise InvalidArgument(f"policy {self.policy!r} logs operations, not deltas: "
                                  "write with insert or delete")
        try:
            delta = EdgeDelta.from_bytes(body)
        except DeltaError as exc:
            raise DeltaError(f"the delta write's bytes are not a delta: {exc}") from None
        ids = delta.ids.tolist()
        if delta.op == "insert" and delta.n_new == 1 and ids[0] == id_:
            return "insert"
        if delta.op == "delete" and any(i == id_ and f == 2 for i, f in
                                        zip(ids, delta.flags.tolist(), strict=True)):
            return "delete"
        raise InvalidArgument(f"the delta (op {delta.op!r}, seq {delta.seq}) does not insert "
                              f"or delete id {id_}: send the id the delta writes")

    def execute(self, op: str, id_: int, vector: bytes) -> EdgeDelta | None:
        """Run a client's insert or delete on the leader's own index, or apply its
        ``delta`` (``vector`` holds its bytes; checked by :meth:`delta_op` first; returns
        None). Raises a ``GraphrepError`` for a write the index refuses, which changes
        nothing."""
        if op == "delta":
            self.index.apply_bytes([vector])
            return None
        if op == "insert":
            delta = self.index.insert(id_, vector_of(vector, self.index.dim))
        else:
            delta = self.index.delete(id_)
        self.op_distances += self.index.last_op["distance_computations"]
        return delta

    def entry_for(self, term: int, op: str, id_: int, vector: bytes,
                  delta: EdgeDelta | None) -> Entry:
        """The log entry for a write the leader executed (``delta`` is what it changed)."""
        raise NotImplementedError

    def executed(self, op: str, id_: int, pos: int) -> None:
        """The leader's write, executed on its index, is logged at ``pos``."""
        self.applied = pos + 1
        (self.id_pos if op == "insert" else self.deleted_pos)[id_] = pos

    def caught_up(self, end: int) -> None:
        """The index reflects the log up to ``end`` already (entries with nothing to
        apply, such as a new leader's NOOP)."""
        self.applied = end

    # ------------------------------------------------------------------ applying the log

    def apply_to(self, log: Log, end: int) -> None:
        """Apply the log entries [applied, end): runs of deltas in one kernel call each,
        operations by running them. If the index refuses an entry, ``applied`` is that
        entry's position (everything before it is applied and noted) and the error
        propagates."""
        if end <= self.applied:
            return
        before = self.index.distance_computations
        blobs: list[bytes] = []  # delta bytes not applied yet, and their log positions
        where: list[int] = []
        try:
            for pos in range(self.applied, end):
                _, kind, body = log.entry(pos)
                if kind == DELTA:
                    blobs.append(body)
                    where.append(pos)
                    continue
                if blobs:
                    self.apply_deltas(blobs, where)
                    blobs, where = [], []
                if kind == OP:
                    self.applied = pos
                    self.apply_op(body, pos)
                elif kind == MERGE:
                    self.applied = pos
                    self.apply_merge(body, pos)
            if blobs:
                self.apply_deltas(blobs, where)
            self.applied = end
        finally:
            self.work += self.index.distance_computations - before

    def apply_op(self, body: bytes, pos: int) -> None:
        """Run an ``OP`` entry's operation (its body was checked on arrival)."""
        op, id_, vec = msgpack.unpackb(body)
        if op == "insert":
            self.index.insert(id_, np.frombuffer(vec, dtype="<f4"))
            self.id_pos[id_] = pos
        else:
            self.index.delete(id_)
            self.deleted_pos[id_] = pos

    def apply_merge(self, body: bytes, pos: int) -> None:
        """Merge a ``MERGE`` entry (active-active policies only)."""
        raise DamagedEntry(f"a MERGE entry at {pos} under policy {self.policy!r}, which "
                           "does not write them")

    def merge_remote(self, body: bytes, pos: int) -> None:
        """Merge an entry shipped from another region that the leader just appended at
        ``pos`` (active-active policies only)."""
        raise DamagedEntry(f"a shipped entry at {pos} under policy {self.policy!r}, which "
                           "is not active-active")

    def take_links(self) -> bytes | None:
        """An active-active leader's links after merging shipped entries, as an entry
        body to log, or None (nothing for the other policies)."""
        return None

    def linked(self, pos: int) -> None:
        """The body :meth:`take_links` returned is logged at ``pos``."""

    def apply_deltas(self, blobs: list[bytes], where: list[int]) -> None:
        """Apply the deltas ``blobs`` (at log positions ``where``) straight from their
        bytes, decoded and applied by one kernel call, then note which position
        inserted or deleted each id. If one is refused, the ones before it stay applied
        (and noted), ``applied`` is its position and the error propagates."""
        seq0 = self.index.seq
        try:
            batch = self.index.apply_bytes(blobs)
        except GraphrepError:
            # some checks cover the whole batch before anything changes, so the delta
            # at fault may lie past the applied prefix: go on one at a time to find it
            done = self.index.seq - seq0
            if done:
                self._note_deltas(decode_many(blobs[:done]), where[:done])
            for k in range(done, len(blobs)):
                self.applied = where[k]
                self._note_deltas(self.index.apply_bytes([blobs[k]]), [where[k]])
            return
        self._note_deltas(batch, where)

    def _note_deltas(self, batch: DeltaBatch, where: list[int]) -> None:
        off = batch.off.tolist()
        for k, (op, pos) in enumerate(zip(batch.ops(), where, strict=True)):
            if op == "insert" and off[k + 1][2] > off[k][2]:
                self.id_pos[int(batch.ids[off[k][0]])] = pos
            elif op == "delete":
                d: EdgeDelta = batch.delta(k)
                for i, f in zip(d.ids.tolist(), d.flags.tolist(), strict=True):
                    if f == 2:
                        self.deleted_pos.setdefault(i, pos)

    # ------------------------------------------------------------------ rebuilding

    def reset(self) -> None:
        """An empty index, nothing applied, no ids noted."""
        self.id_pos.clear()
        self.deleted_pos.clear()
        self.index = self.new_index()
        self.applied = 0

    def load(self, data: bytes) -> VamanaIndex:
        """The index a snapshot's bytes hold (raises ``GraphrepError`` if they do not
        load); nothing changes until :meth:`adopt`."""
        return VamanaIndex.from_bytes(data)

    def adopt(self, index: VamanaIndex, end: int) -> None:
        """Take ``index``, the state after the log entries [0, end), as this replica's.
        Every id in it was inserted, and every tombstone deleted, somewhere in that
        prefix: both are noted at ``end - 1`` (a retry is then acknowledged as the
        snapshot's last entry)."""
        self.index = index
        self.applied = end
        self.id_pos.clear()
        self.deleted_pos.clear()
        every = index.ids(include_deleted=True).tolist()
        self.id_pos.update(dict.fromkeys(every, end - 1))
        live = set(index.ids().tolist())
        self.deleted_pos.update(dict.fromkeys([i for i in every if i not in live], end - 1))

    def bulk_load(self, log: Log, end: int) -> None:
        """Build the index in bulk from the log up to ``end`` when a replica recovers
        (if the policy does that). By default nothing: entries apply one by one."""

    def compacted(self, start: int) -> None:
        """The log now starts at ``start`` (its entries before it are dropped): a policy
        that keeps log positions drops those before it."""

    def snapshot_bytes(self) -> bytes:
        """The index as a snapshot's bytes."""
        return self.index.to_bytes()


def _op_entry(term: int, op: str, id_: int, vector: bytes) -> Entry:
    """The entry of a write shipped as the operation itself: msgpack ``[op, id,
    vector]``."""
    return (term, OP, msgpack.packb([op, id_, vector], use_bin_type=True))


def _tally_op(applier: Applier, entry: Entry) -> Entry:
    applier.logged_bytes["op"] = applier.logged_bytes.get("op", 0) + len(entry[2])
    return entry


APPLIERS: dict[str, type[Applier]] = {}
"""Policy name -> its applier class (see :func:`register_applier`)."""


def register_applier(cls: type[Applier]) -> type[Applier]:
    """Register ``cls`` for its ``policy`` (usable as a class decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, Applier)) or not cls.policy:
        raise InvalidArgument(f"register an Applier subclass with a policy name, got {cls!r}")
    APPLIERS[cls.policy] = cls
    return cls


_ACTIVE_ACTIVE_MODULES = {"crdt": "graphrep.protocol.crdt", "lww": "graphrep.protocol.lww",
                          "ordered": "graphrep.protocol.ordered"}
"""The active-active policies live in modules of their own (which import this one) and
register when first asked for."""


def applier_class(policy: str) -> type[Applier]:
    """The applier registered for ``policy``."""
    if policy not in APPLIERS and policy in _ACTIVE_ACTIVE_MODULES:
        import_module(_ACTIVE_ACTIVE_MODULES[policy])
    try:
        return APPLIERS[policy]
    except KeyError:
        raise InvalidArgument(f"no applier for policy {policy!r}; registered: "
                              f"{', '.join(APPLIERS)}") from None


@register_applier
class DeltaApplier(Applier):
    """``leader``: the leader ships the edge delta of each write; followers apply it
    without a single distance computation, so their graphs equal the leader's.

    A new leader rebuilds its index from its durable snapshot and log: every delta and
    every repair it sends is computed against that index, so it must not carry damage
    from memory (it costs applies, no distance computation). Snapshots are checked
    against the log before they are saved, and anti-entropy compares graphs."""

    policy = Policy.LEADER.value
    rebuild_when_elected = True
    checks_snapshots = True
    accepts_deltas = True

    def entry_for(self, term: int, op: str, id_: int, vector: bytes,
                  delta: EdgeDelta | None) -> Entry:
        tally = self.logged_bytes
        if delta is None:  # a delta write: logged as sent, the bytes the leader applied
            tally["given"] = tally.get("given", 0) + len(vector)
            return (term, DELTA, bytes(vector))
        body = delta.to_bytes()
        for part, n in delta.size_by_part().items():  # known from the encoding: free
            if part != "total":
                tally[part] = tally.get(part, 0) + n
        return (term, DELTA, body)


@register_applier
class ReplayApplier(Applier):
    """``replay`` (the baseline: what Qdrant, Weaviate and Milvus do): the log carries
    the client operations and every replica runs each insert itself. Replicas own their
    graphs, which drift apart: anti-entropy comparing graphs would "repair" the very
    drift the baseline exists to measure (vector databases compare objects), so it is
    off."""

    policy = Policy.REPLAY.value
    anti_entropy = False

    def entry_for(self, term: int, op: str, id_: int, vector: bytes,
                  delta: EdgeDelta | None) -> Entry:
        return _tally_op(self, _op_entry(term, op, id_, vector))

    def bulk_load(self, log: Log, end: int) -> None:
        """A replica recovering without a snapshot builds its index in bulk from the
        vectors in its log, as a vector database re-indexes a segment after a restart:
        the graph it gets is a different graph from the one sequential inserts gave the
        others. If the build refuses the vectors, nothing changes (the entries are then
        applied one by one, which finds the entry at fault)."""
        if log.snap is not None:
            return
        live: dict[int, bytes] = {}
        ins: dict[int, int] = {}
        dels: dict[int, int] = {}
        for pos in range(max(self.applied, log.start), end):
            _, kind, body = log.entry(pos)
            if kind != OP:
                continue
            op, id_, vec = msgpack.unpackb(body)
            if op == "insert":
                live[id_] = vec
                ins[id_] = pos
            else:
                live.pop(id_, None)
                dels[id_] = pos
        if len(live) <= 1:
            return
        ids = sorted(live)
        X = np.stack([np.frombuffer(live[i], dtype="<f4") for i in ids])
        index = self.config.index()
        try:
            index.build(X, ids)
        except GraphrepError:
            return
        self.index = index
        self.id_pos.update(ins)
        self.deleted_pos.update(dels)
        self.applied = end
        self.work += index.distance_computations


@register_applier
class SnapshotApplier(Applier):
    """``snapshot`` (a baseline): the log carries the operations, only the leader runs
    them, and every ``snapshot_ticks`` it ships its whole index; a follower's index is
    whatever snapshot it was last sent (it stores the log, for failover, but never
    applies it). A new leader rebuilds its index from its durable snapshot and log, so
    that a graph damaged while following is not shipped as every replica's snapshot."""

    policy = Policy.SNAPSHOT.value
    followers_apply = False
    rebuild_when_elected = True
    snapshot_schedule = SnapshotSchedule.PERIODIC

    def entry_for(self, term: int, op: str, id_: int, vector: bytes,
                  delta: EdgeDelta | None) -> Entry:
        return _tally_op(self, _op_entry(term, op, id_, vector))


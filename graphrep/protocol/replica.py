"""A replica of one shard: a sans-IO state machine for the ``leader`` and ``replay`` policies.

Under ``leader`` the leader runs every write on its ``VamanaIndex`` and appends the
resulting edge delta to a replicated log; followers apply the log in order, so their
graphs equal the leader's without a single distance computation. Under ``replay`` (the
baseline: what Qdrant, Weaviate and Milvus do) the log carries the client operations
and every replica runs each insert itself. Log replication, commit and failover follow
Raft, because its guarantees are exactly the ones a replicated index needs:

* **Terms fence deposed leaders.** Every message carries the sender's term; a replica
  rejects anything from an older term, so a partitioned old leader's late deltas are
  refused, and a replica that sees a newer term steps down.
* **Election restriction.** A replica votes only for a candidate whose log is at least
  as up to date (last term, then length) as its own, so every elected leader holds
  every committed entry: no write acknowledged at ``majority`` is lost by failover.
* **Commit.** An entry is committed once a majority stores it durably and an entry of
  the leader's current term is among them. A new leader appends a ``NOOP`` entry to
  commit what its predecessors left.

Why a term-based election rather than leases from a membership service: it needs no
other component and no clock agreement (the simulator skews clocks), and the terms it
produces are the fencing tokens the protocol needs anyway.

Followers apply only committed entries, so a follower's index never has to be undone.
The leader applies its whole log (it must: a delta is computed on the index state
before it); if it is deposed with entries that the new leader overwrites, it rebuilds
its index from its snapshot and committed log, which costs applies, not distance
computations.

Durability: the log, the term, the vote and snapshots are written with
``DurableWrite`` and made durable with ``Sync`` before any message or acknowledgement
that depends on them is sent. A restarted replica rebuilds its index from its durable
snapshot and log (up to the last commit position it recorded) and catches up.

Log compaction and snapshots: once ``snapshot_every`` entries are committed past the
last snapshot, a replica whose index holds exactly the committed state saves it
(``VamanaIndex.to_bytes``) and drops log entries older than ``log_keep`` before it. A
follower that needs entries the leader no longer holds receives the snapshot in
chunks, resumably (the follower reports how much it holds), then the log tail.

Anti-entropy: every ``anti_entropy_ticks`` ticks a quiet leader (everything
committed) sends each caught-up follower the root of a hash tree over its node records
(:mod:`graphrep.protocol.merkle`); a follower whose root differs returns its leaf
digests, and the leader sends the records of the differing leaves, which the follower
overwrites. That finds and repairs a replica whose state was corrupted or rolled back
behind the protocol's back, shipping only the differing records.

Timers are periodic ticks (a follower checks how long it has not heard from a leader;
a leader sends heartbeats, retransmits and runs anti-entropy): the simulator's
``quiesce`` ignores periodic timers, so a quiet cluster is recognisable. A heartbeat is
an Append without entries anchored at what the follower has acknowledged, so entries
still in flight do not look like a gap; what is lost is resent when a follower has made
no progress for ``retransmit_ns``.

Flow control (``max_inflight`` > 0): at most that many Appends with entries are in
flight to a follower; entries appended meanwhile leave together in the message that the
next acknowledgement releases.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import msgpack
import numpy as np

from graphrep.ann import EdgeDelta, VamanaIndex
from graphrep.ann.delta import DeltaBatch, decode_many
from graphrep.ann.records import RecordSet
from graphrep.errors import DamagedEntry, GraphrepError, ProtocolError
from graphrep.protocol.config import (
    CANDIDATE,
    CONCERNS,
    FOLLOWER,
    LEADER,
    POLICIES,
    ReplicaConfig,
)
from graphrep.protocol.entries import check_entry, wal_entry, wal_record
from graphrep.protocol.hooks import NO_HOOKS, ReplicaHooks
from graphrep.protocol.merkle import MerkleTree, ids_in_leaves
from graphrep.protocol.messages import (
    DELTA,
    NOOP,
    OP,
    Append,
    AppendReply,
    ClientSearch,
    ClientWrite,
    Entry,
    Repair,
    RequestVote,
    SearchReply,
    Snapshot,
    SnapshotReply,
    TreeLeaves,
    TreeRoot,
    VoteReply,
    WriteReply,
    decode,
    encode,
)
from graphrep.sansio import DurableWrite, Metric, Send, SetTimer, Sync, Work

__all__ = ["CANDIDATE", "FOLLOWER", "LEADER", "POLICIES", "Replica", "ReplicaConfig",
           "wal_entry", "wal_record"]

class Replica:
    """One replica of one shard (see the module docstring). Built by the driver as
    ``Replica(name, disk, config, rng)``; ``rng`` (a numpy Generator from the driver)
    draws election timeouts, the only randomness the protocol needs. ``hooks`` measure
    its work (:class:`~graphrep.protocol.hooks.ReplicaHooks`)."""

    def __init__(self, name: str, disk: Mapping[Hashable, Any], config: ReplicaConfig,
                 rng: np.random.Generator, *, hooks: ReplicaHooks | None = None) -> None:
        if name not in config.replicas:
            raise ProtocolError(f"replica {name!r} is not in the shard's set {config.replicas}")
        self.hooks = hooks or NO_HOOKS
        self.name = name
        self.config = config
        self.peers = [r for r in config.replicas if r != name]
        self.majority = len(config.replicas) // 2 + 1
        self.rng = rng
        # durable state, recovered from the disk
        self.term: int = int(disk.get("term", 0))
        self.voted_for: str | None = disk.get("voted_for")
        self.snap: tuple[int, int, bytes] | None = disk.get("snapshot")
        self.log_start: int = int(disk.get("log_start", 0))
        self.start_term: int = int(disk.get("start_term", 0))  # term of entry log_start-1
        self.log: list[Entry] = []
        self.wal_damaged = 0  # records whose checksum failed at recovery (the log ends there)
        while (record := disk.get(("log", self.log_start + len(self.log)))) is not None:
            entry = wal_entry(record)
            if entry is not None:
                try:
                    check_entry(entry, config.dim)
                except ProtocolError:
                    entry = None
            if entry is None:
                self.wal_damaged += 1
                break
            self.log.append(entry)
        self.synced_end = self.end  # log positions on disk (all of them, after recovery)
        # log records behind a damaged one: erased with the first log write, so that
        # rewriting the damaged position cannot bring them back
        self._stale_tail = sorted(
            k[1] for k in disk if isinstance(k, tuple) and len(k) == 2 and k[0] == "log"
            and isinstance(k[1], int) and k[1] > self.end) if self.wal_damaged else []
        self.verified: tuple[int, int] = (-1, 0)  # (term, end) confirmed by that term's leader
        self.commit = min(max(int(disk.get("commit", 0)), self.snap_end), self.end)
        # volatile state
        self.role = FOLLOWER
        self.leader: str = ""
        self.index = config.index()
        self.applied = 0  # log entries reflected in the index
        self._op_distances = 0  # distance computations of the leader's own writes, and
        self._entries_applied = 0  # a follower's applied entries, not reported yet (Work)
        # id -> log position of its insert / delete; for a write that came in a snapshot,
        # the snapshot's last position (its prefix holds the write: see _entry_holding)
        self.id_pos: dict[int, int] = {}
        self.deleted_pos: dict[int, int] = {}
        self.next: dict[str, int] = {}
        self.match: dict[str, int] = {}
        self.progress_at: dict[str, int] = {}
        self.snap_offset: dict[str, int] = {}
        self.inflight: dict[str, list[int]] = {}  # ends of unacknowledged Appends, sent order
        self.below_match: dict[str, int] = {}  # gap reports below match in a row
        self.incoming: tuple[int, int, int, bytearray] | None = None  # snapshot being received
        self.early: dict[int, Append] = {}  # appends that arrived before a gap, by prev_end
        self.snapshot_due: set[str] = set()  # followers owed the latest full snapshot
        self.snapshot_wanted = False  # under ``snapshot``: a periodic snapshot is due
        self.votes: set[str] = set()
        self.pending: list[tuple[int, int, str, int, str]] = []  # (pos, term, client, req,
        # concern): writes waiting for their concern
        self.heard_at = 0
        self.timeout = 0
        self.ticks = 0
        self.tree: tuple[int, MerkleTree] | None = None
        self.compare_due: set[str] = set()  # followers owed an anti-entropy comparison
        self.errors = 0  # messages rejected as malformed / unsupported
        self.rebuilds = 0
        self._work = 0  # distance computations spent applying the log, not yet reported
        # effects that repair what recovery found damaged (erase records, lower the
        # commit position): emitted by on_start, or by the callback that found the damage
        self._disk_fixes: list = []
        self._handlers = {
            ClientWrite: self._on_write, ClientSearch: self._on_search,
            Append: self._on_append, AppendReply: self._on_append_reply,
            RequestVote: self._on_request_vote, VoteReply: self._on_vote,
            Snapshot: self._on_snapshot, SnapshotReply: self._on_snapshot_reply,
            TreeRoot: self._on_tree_root, TreeLeaves: self._on_tree_leaves,
            Repair: self._on_repair, WriteReply: self._ignore, SearchReply: self._ignore,
        }
        """Message type -> bound handler, built once (a subclass's override of a handler
        method is bound here)."""
        self._rebuild(count=False)

    # ------------------------------------------------------------------ log positions

    @property
    def end(self) -> int:
        """Log positions ever appended (the next entry's position)."""
        return self.log_start + len(self.log)

    @property
    def snap_end(self) -> int:
        return self.snap[0] if self.snap is not None else 0

    def term_at(self, pos: int) -> int | None:
        """Term of the entry at ``pos``; 0 before the log; None if compacted away or not
        appended yet."""
        if pos < 0:
            return 0
        if pos >= self.end:
            return None
        if pos >= self.log_start:
            return self.log[pos - self.log_start][0]
        if pos == self.log_start - 1:
            return self.start_term
        return None

    # ------------------------------------------------------------------ sans-IO entry points

    def on_start(self, now: int) -> list:
        with self.hooks.callback():
            self.heard_at = now
            self.timeout = self._draw_timeout()
            out: list = [SetTimer("tick", self.config.tick_ns, periodic=True)]
            self._fix_disk(out)
            self._report_work(out)
            return out

    def on_timer(self, now: int, name: Hashable) -> list:
        with self.hooks.callback():
            return self._tick(now, name)

    def _tick(self, now: int, name: Hashable) -> list:
        out: list = []
        if name == "anti_entropy":  # an operator's "compare now" (a one-shot timer)
            if self.role == LEADER:
                self._start_anti_entropy(out)
            return out
        self.ticks += 1
        if self.role == LEADER:
            for p in self.peers:
                stalled = now - self.progress_at[p] >= self.config.retransmit_ns
                if self.next[p] < self.log_start or p in self.snapshot_due:
                    # a snapshot in transfer moves on replies; resend a chunk only when
                    # the last one seems lost (it is large: no resend every tick)
                    if stalled:
                        self.progress_at[p] = now
                        self._send_append(p, out)
                    continue
                if self.match[p] < self.end and stalled:
                    self.next[p] = self.match[p]  # resend what was not acknowledged
                    self.progress_at[p] = now
                    self.inflight[p] = []
                self._send_append(p, out, heartbeat=True)
            every = self.config.anti_entropy_ticks
            if every and self.ticks % every == 0:
                self._start_anti_entropy(out)
        elif now - self.heard_at >= self.timeout:
            self._start_election(now, out)
        if self.config.sync == "tick":
            self._sync_tick(out)
        self._catch_up(out)  # what a batching follower left for the tick
        self._maybe_snapshot(out)
        self._report_work(out)
        return out

    def on_message(self, now: int, src: str, payload: Any, size: int) -> list:
        with self.hooks.callback():
            try:
                msg = decode(payload)
                if msg.shard != self.config.shard:
                    raise ProtocolError(f"message for shard {msg.shard}, this is shard "
                                        f"{self.config.shard}")
            except ProtocolError as exc:
                self.errors += 1
                return protocol_error_effects(exc)
            return self._dispatch(now, src, msg)

    def on_decoded(self, now: int, src: str, msg: Any) -> list:
        """Handle a message already decoded and checked to be for this shard (a host of
        several shards decodes once and hands each message to its shard's replica)."""
        with self.hooks.callback():
            return self._dispatch(now, src, msg)

    def _dispatch(self, now: int, src: str, msg: Any) -> list:
        out: list = []
        try:
            self._handlers[type(msg)](now, src, msg, out)
        except ProtocolError as exc:  # refused before the handler changed anything
            self.errors += 1
            return protocol_error_effects(exc)
        self._report_work(out)
        return out

    def _report_work(self, out: list) -> None:
        """The work this callback did, as a ``Work`` effect (a driver decides what it
        costs), and the distance computations spent applying the log (replica CPU: zero
        under ``leader``, every insert's search under ``replay``) as a metric that
        survives crashes."""
        if self._work:
            out.append(Metric("replica_distance_computations", float(self._work)))
        if self._work or self._op_distances or self._entries_applied:
            out.append(Work(self._work + self._op_distances, self._entries_applied))
            self._work = self._op_distances = self._entries_applied = 0

    # ------------------------------------------------------------------ clients

    def _on_write(self, now: int, src: str, m: ClientWrite, out: list) -> None:
        if self.role != LEADER:
            self._reply(out, src, m.req, "not_leader")
            return
        if m.concern not in CONCERNS or m.op not in ("insert", "delete"):
            self._reply(out, src, m.req, "error", error=f"bad op {m.op!r} or concern "
                        f"{m.concern!r}: op is insert|delete, concern one|majority|all")
            return
        known = (self.id_pos if m.op == "insert" else self.deleted_pos).get(m.id)
        if known is not None:  # a retry of a write that is already in the log
            term, pos = self._entry_holding(known)
            self._ack_when_ready(out, term, pos, src, m.req, m.concern)
            return
        try:
            delta = self._execute(m.op, m.id, m.vector)
        except GraphrepError as exc:
            self._reply(out, src, m.req, "error", error=f"{type(exc).__name__}: {exc}")
            return
        self._op_distances += self.index.last_op["distance_computations"]
        if self.config.policy != "leader":
            body = msgpack.packb([m.op, m.id, m.vector], use_bin_type=True)
            entry: Entry = (self.term, OP, body)
            out.append(Metric("entry_bytes_vector", float(len(m.vector))))
        else:
            entry = (self.term, DELTA, delta.to_bytes())
            parts = delta.size_by_part()
            out.append(Metric("entry_bytes_vector", float(parts["vector"])))
            out.append(Metric("entry_bytes_edges", float(parts["edges"])))
        pos = self._append_local(entry, out)
        self.applied = self.end
        (self.id_pos if m.op == "insert" else self.deleted_pos)[m.id] = pos
        out.append(Metric("appended", float(pos)))
        if not self.peers:  # a shard of one: its own durable copy is the majority
            self._advance_commit(out)
        self._ack_when_ready(out, self.term, pos, src, m.req, m.concern)
        for p in self.peers:
            self._send_append(p, out)

    def _execute(self, op: str, id_: int, vector: bytes) -> EdgeDelta:
        """Run a client's insert or delete on the leader's index, under the ``op`` hook."""
        with self.hooks.op():
            if op == "insert":
                return self.index.insert(id_, np.frombuffer(vector, dtype="<f4"))
            return self.index.delete(id_)

    def _on_search(self, now: int, src: str, m: ClientSearch, out: list) -> None:
        self._catch_up(out)
        status, ids = "ok", b""
        if self.applied < m.min_seq:
            status = "stale"
        elif len(self.index):
            try:
                q = np.frombuffer(m.vector, dtype="<f4")
                found, _ = self.index.search(q, k=m.k, L=max(self.config.search_L, m.k))
                ids = np.asarray(found, dtype="<i8").tobytes()
            except GraphrepError as exc:
                status, ids = "error", str(exc).encode()
        self._send(out, src, SearchReply(self.config.shard, m.req, status, ids, self.applied,
                                         self.leader))

    def _reply(self, out: list, client: str, req: int, status: str, term: int | None = None,
               pos: int = -1, error: str = "") -> None:
        """A client's write reply. An ``ok`` names the (term, position) of a log entry
        whose prefix holds the write (see ``_entry_holding``); other replies name this
        replica's term and position -1."""
        self._send(out, client, WriteReply(
            self.config.shard, req, status, self.term if term is None else term, pos,
            self.leader if status == "not_leader" else self.name, error))

    def _entry_holding(self, pos: int) -> tuple[int, int]:
        """The (term, position) an acknowledgement of the write at log position ``pos``
        names: that entry itself while the log holds it, else (compacted away, or the
        write came in a snapshot) the snapshot's last entry, whose prefix holds the write.
        Either way a pair every replica that stores the entry holds, never a guess."""
        term = self.term_at(pos)
        if term is not None or self.snap is None:
            return (term or 0), pos  # (compaction follows a snapshot: never None here)
        return self.snap[1], self.snap[0] - 1

    def _ack_when_ready(self, out: list, term: int, pos: int, client: str, req: int,
                        concern: str) -> None:
        """Acknowledge the write held by entry (term, pos) once ``concern`` holds for it;
        the term is recorded now, so a reply sent after compaction still names it."""
        if self._satisfied(pos, concern):
            self._reply(out, client, req, "ok", term, pos)
        else:
            self.pending.append((pos, term, client, req, concern))

    def _satisfied(self, pos: int, concern: str) -> bool:
        if concern == "one":
            return pos < self._durable_end()
        if concern == "majority":
            return pos < self.commit
        return (all(self.match[p] > pos for p in self.peers) and pos < self.commit
                and pos < self._durable_end())

    def _flush_pending(self, out: list) -> None:
        keep = []
        for pos, term, client, req, concern in self.pending:
            if self._satisfied(pos, concern):
                self._reply(out, client, req, "ok", term, pos)
            else:
                keep.append((pos, term, client, req, concern))
        self.pending = keep

    # ------------------------------------------------------------------ log replication

    def _scrub_stale(self, out: list) -> None:
        for q in self._stale_tail:
            out.append(DurableWrite(("log", q), None))
        self._stale_tail = []

    def _append_local(self, entry: Entry, out: list) -> int:
        if self._stale_tail:
            self._scrub_stale(out)
        pos = self.end
        self.log.append(entry)
        out.append(DurableWrite(("log", pos), wal_record(entry)))
        if self.config.sync == "always":
            self._sync(out)
        return pos

    def _verify(self, end: int) -> None:
        """The log prefix [0, end) is known to equal the current leader's."""
        if self.verified[0] != self.term or end > self.verified[1]:
            self.verified = (self.term, end)

    def _sync(self, out: list) -> None:
        """Make every log record written so far durable."""
        out.append(Sync())
        self.synced_end = self.end

    def _durable_end(self) -> int:
        """Log positions this replica may claim to hold durably: what write concerns and
        the leader's commit count (under ``sync="tick"`` the tail may not be synced)."""
        return min(self.synced_end, self.end)

    def _sync_tick(self, out: list) -> None:
        """Group commit (``sync="tick"``): sync the appended records, then send what was
        waiting for them (a follower's acknowledgement, client acknowledgements)."""
        if self.synced_end >= self.end:
            return
        self._sync(out)
        if self.role == LEADER:
            self._advance_commit(out)
        elif self.leader and self.verified[0] == self.term:
            # claim only the prefix this leader has confirmed: entries past it may be a
            # deposed leader's, which this leader has not overwritten yet
            self._send(out, self.leader, AppendReply(
                self.config.shard, self.term, True, min(self._durable_end(), self.verified[1])))

    def _send_append(self, peer: str, out: list, heartbeat: bool = False) -> None:
        nxt = self.next[peer]
        inflight = self.inflight[peer]
        if nxt < self.log_start or peer in self.snapshot_due:
            inflight.clear()  # the snapshot supersedes the Appends in flight
            self._send_snapshot_chunk(peer, out)
            return
        if self.config.max_inflight and len(inflight) >= self.config.max_inflight:
            stop = nxt  # full: what is new waits for an acknowledgement
        else:
            stop = min(self.end, nxt + self.config.max_batch,
                       self.match[peer] + self.config.window)
        if stop <= nxt:
            if heartbeat:
                # anchored at what the follower has acknowledged, not at ``next``: with
                # entries still in flight (or overtaken by this message) a heartbeat at
                # ``next`` would look like a gap, and the reply would rewind ``next``
                # and resend them all. A follower that lost acknowledged entries (a
                # damaged disk) still reports the gap.
                at = self.match[peer] if self.match[peer] >= self.log_start else nxt
                self._send(out, peer, Append(self.config.shard, self.term, self.name, at,
                                             self.term_at(at - 1) or 0, [], self.commit))
            return
        if self.config.max_inflight:
            inflight.append(stop)
        entries = self.log[nxt - self.log_start : stop - self.log_start]
        prev_term = self.term_at(nxt - 1)
        self._send(out, peer, Append(self.config.shard, self.term, self.name, nxt,
                                     prev_term or 0, list(entries), self.commit))
        self.next[peer] = stop

    def _hear_leader(self, now: int, src: str, term: int, out: list) -> bool:
        """A leader's Append or Snapshot: False if its term is stale (the caller refuses
        it); else follow ``src`` in that term and reset the election clock."""
        if term < self.term:
            return False
        self._see_term(term, out)
        if self.role != FOLLOWER:
            self._become_follower()
        self.leader = src
        self.heard_at = now
        return True

    def _from_follower(self, src: str, term: int, out: list) -> bool:
        """Whether a follower's reply is for this leader's current term (a newer term
        makes this replica step down instead)."""
        if term > self.term:
            self._see_term(term, out)
            return False
        return self.role == LEADER and term == self.term and src in self.match

    def _check_append(self, m: Append) -> None:
        """Refuse (raise a ``ProtocolError``) an Append that no correct leader sends, before
        anything changes: an entry whose body is damaged (``check_entry``), entry terms
        that decrease or exceed the leader's, or an entry that contradicts one this
        replica knows is committed. The leader's retransmission sends the entries again."""
        if m.prev_end < 0 or m.commit < 0:
            raise ProtocolError(f"Append from {m.leader} names log position {m.prev_end} and "
                                f"commit {m.commit}: positions are never negative")
        last = m.prev_term
        for entry in m.entries:
            check_entry(entry, self.config.dim)
            if not last <= entry[0] <= m.term:
                raise DamagedEntry(f"Append of term {m.term} carries an entry of term "
                                   f"{entry[0]} after one of term {last}: entry terms never "
                                   "decrease and never exceed the leader's")
            last = entry[0]
        if m.prev_end > self.end or self.term_at(m.prev_end - 1) not in (None, m.prev_term):
            return  # a gap or a conflict at prev_end: answered without touching the log
        stop = min(self.commit, self.end, m.prev_end + len(m.entries))
        for pos in range(max(m.prev_end, self.log_start), stop):
            if self.term_at(pos) != m.entries[pos - m.prev_end][0]:
                raise ProtocolError(f"Append from {m.leader} (term {m.term}) contradicts "
                                    f"committed entry {pos}: refused")

    def _on_append(self, now: int, src: str, m: Append, out: list) -> None:
        if m.term >= self.term:
            self._check_append(m)
        if not self._hear_leader(now, src, m.term, out):
            self._send(out, src, AppendReply(self.config.shard, self.term, False, -1))
            return
        if m.prev_end > self.end:
            if m.entries and len(self.early) < self.config.window:
                # most likely overtaken by a later message (the network reorders): keep
                # it until the missing entries arrive. If they were lost, the leader's
                # retransmission timer resends them, since nothing past them is acked.
                self.early[m.prev_end] = m
                return
            # a heartbeat past our end, or too much held back: ask for the missing range
            self._send(out, src, AppendReply(self.config.shard, self.term, False, self.end))
            return
        mine = self.term_at(m.prev_end - 1)
        if mine is not None and mine != m.prev_term:
            # a conflict: our entry there came from a deposed leader; back up one term
            back = m.prev_end - 1
            while back > max(self.commit, self.log_start) and self.term_at(back - 1) == mine:
                back -= 1
            self._send(out, src, AppendReply(self.config.shard, self.term, False, back))
            return
        pos = m.prev_end
        for entry in m.entries:
            if pos < self.log_start:  # compacted here: committed, hence identical
                pos += 1
                continue
            if pos < self.end:
                if self.term_at(pos) == entry[0]:
                    pos += 1
                    continue  # a duplicate: same position, same term, same entry
                self._truncate(pos, out)
            self._append_local(tuple(entry), out)  # type: ignore[arg-type]
            pos += 1
        end = m.prev_end + len(m.entries)
        self._verify(end)
        # commit up to what this leader has confirmed of our log (a heartbeat, anchored
        # at our last acknowledgement, confirms no more than that; earlier appends may
        # have confirmed more)
        known = self.verified[1]
        if m.commit > self.commit and min(m.commit, known) > self.commit:
            self.commit = min(m.commit, known)
            out.append(DurableWrite("commit", self.commit))
            if self.config.sync == "always":
                self._sync(out)
            if self.commit - self.applied >= self.config.apply_batch:
                self._catch_up(out)  # (under snapshot: a no-op)
        # acknowledge only what is durable here (under sync="tick" the tick sends the rest)
        self._send(out, src, AppendReply(self.config.shard, self.term, True,
                                         min(end, self._durable_end())))
        held = self.early.pop(self.end, None)
        if held is not None and held.term == self.term:
            try:  # the gap it waited on is filled
                self._check_append(held)
            except ProtocolError as exc:
                self.errors += 1
                out.extend(protocol_error_effects(exc))
                return
            self._on_append(now, src, held, out)

    def _on_append_reply(self, now: int, src: str, m: AppendReply, out: list) -> None:
        if not self._from_follower(src, m.term, out):
            return
        if m.ok and m.end > self.end:
            raise ProtocolError(f"{src} acknowledges log position {m.end} but this leader's "
                                f"log ends at {self.end}: refused")
        inflight = self.inflight[src]
        regressed = not m.ok and 0 <= m.end < self.match[src]
        self.below_match[src] = self.below_match.get(src, 0) + 1 if regressed else 0
        if m.ok:
            if m.end > self.match[src]:
                self.match[src] = m.end
                self.progress_at[src] = now
            while inflight and inflight[0] <= m.end:
                inflight.pop(0)
            self.next[src] = max(self.next[src], self.match[src])
            self._advance_commit(out)
            if self.compare_due:
                self._compare_if_due(src, out)
        elif self.match[src] <= m.end < self.next[src]:
            # a gap or conflict: resend from there. A reply below what the follower has
            # already acknowledged, or at or beyond what was sent, is stale (a duplicate
            # or a reordered delivery) and rewinding for it would resend for nothing.
            self.next[src] = m.end
            inflight.clear()
        elif regressed and self.below_match[src] >= 2:
            # the follower lost entries it had acknowledged (it cut a damaged entry, or a
            # disk lost its tail): two gap reports below ``match`` with no acknowledgement
            # between them (one could be a stale, reordered reply) make the leader believe
            # it and resend from the follower's end (a snapshot if compacted)
            self.match[src] = self.next[src] = m.end
            self.below_match[src] = 0
            inflight.clear()
            out.append(Metric("follower_regressions", 1.0))
        else:
            return
        self._send_append(src, out)

    def _durable_ends(self) -> list[int]:
        """How far each replica (this leader included) holds the log durably, highest
        first."""
        return sorted([self._durable_end()] + [self.match[p] for p in self.peers],
                      reverse=True)

    def _quorum_end(self) -> int:
        """The log end a majority (this leader included) holds durably."""
        return self._durable_ends()[self.majority - 1]

    def _advance_commit(self, out: list) -> None:
        candidate = self._quorum_end()
        if candidate > self.commit and self.term_at(candidate - 1) == self.term:
            self.commit = candidate
            out.append(DurableWrite("commit", self.commit))
        self._flush_pending(out)

    def _truncate(self, pos: int, out: list) -> None:
        """Drop entries from ``pos`` on (they came from a deposed leader). Committed
        entries are never dropped; an index that applied dropped entries is rebuilt."""
        if pos < self.commit:
            raise ProtocolError(f"refusing to truncate committed entries at {pos} "
                                f"(commit {self.commit})")
        for p in range(pos, self.end):
            out.append(DurableWrite(("log", p), None))
        del self.log[pos - self.log_start :]
        self.verified = (self.verified[0], min(self.verified[1], pos))
        self.synced_end = min(self.synced_end, pos)
        if self.applied > pos:
            self._rebuild()
            self._fix_disk(out)

    # ------------------------------------------------------------------ applying

    def _rebuild(self, count: bool = True, end: int | None = None) -> None:
        """The index from the snapshot and the committed log, up to ``end`` if given (at
        start, and after a deposed leader's applied entries were overwritten or an index
        refused an entry). Never raises: a snapshot that does not load is dropped with
        the log that builds on it, and an entry the rebuilt index refuses is damaged, so
        the log is cut there (``_cut_log``); the leader sends the rest again."""
        if count:
            self.rebuilds += 1
        self.id_pos.clear()
        self.deleted_pos.clear()
        self.index = self.config.index()
        self.applied = 0
        if self.snap is not None:
            try:
                self.index = VamanaIndex.from_bytes(self.snap[2])
            except GraphrepError:
                self._lose_snapshot()
            else:
                self.applied = self.snap[0]
                self._note_snapshot_ids(self.snap[0])
        if self.config.policy == "snapshot" and self.role != LEADER:
            return  # its index is whatever snapshot it was last sent
        target = min(self.commit, self.end) if end is None else min(end, self.end)
        if self.config.policy == "replay" and target > self.applied:
            self._replay_bulk(target)
        try:
            self._apply_to(target)
        except GraphrepError:
            self._cut_log(self.applied)

    def _lose_snapshot(self) -> None:
        """The durable snapshot does not load (a damaged disk): start over as an empty
        replica (term and vote kept) that the leader sends a snapshot."""
        first = self.log_start
        for q in range(first, self.end):
            self._disk_fixes.append(DurableWrite(("log", q), None))
        self.snap, self.log, self.log_start, self.start_term = None, [], 0, 0
        self.commit = self.synced_end = 0
        self.verified = (-1, 0)
        self._disk_fixes += [DurableWrite("snapshot", None), DurableWrite("log_start", 0),
                             DurableWrite("start_term", 0), DurableWrite("commit", 0),
                             Metric("damaged_snapshots", 1.0)]

    def _cut_log(self, pos: int) -> None:
        """The entry at ``pos`` does not apply to the state the snapshot and the entries
        before it give: it is damaged. Treat it as a torn log tail: erase it and what
        follows, move the commit position back to it, and let the leader send them again
        (it does so once this follower reports the gap; see ``_on_append_reply``)."""
        for q in range(pos, self.end):
            self._disk_fixes.append(DurableWrite(("log", q), None))
        del self.log[max(pos - self.log_start, 0):]
        self.synced_end = min(self.synced_end, pos)
        self.verified = (self.verified[0], min(self.verified[1], pos))
        if self.commit > pos:
            self.commit = pos
            self._disk_fixes.append(DurableWrite("commit", pos))
        self._disk_fixes.append(Metric("damaged_entries", 1.0))

    def _fix_disk(self, out: list) -> None:
        """Emit what ``_lose_snapshot`` and ``_cut_log`` decided."""
        if self._disk_fixes:
            out.extend(self._disk_fixes)
            self._disk_fixes = []

    def _note_snapshot_ids(self, end: int) -> None:
        """Every id in a snapshot ending at ``end`` was inserted, and the tombstones
        deleted, somewhere in its prefix: note ``end - 1`` for them (a retry is then
        acknowledged as the snapshot's last entry; see ``_entry_holding``)."""
        every = self.index.ids(include_deleted=True).tolist()
        self.id_pos.update(dict.fromkeys(every, end - 1))
        live = set(self.index.ids().tolist())
        self.deleted_pos.update(dict.fromkeys([i for i in every if i not in live], end - 1))

    def _apply_to(self, end: int) -> None:
        """Apply log entries [applied, end) to the index: runs of deltas in one kernel
        call each; under ``replay``, operations by running them. If the index refuses an
        entry, ``applied`` is that entry's position (everything before it is applied and
        noted) and the error propagates. Under the ``apply`` hook."""
        with self.hooks.apply():
            if end <= self.applied:
                return
            before = self.index.distance_computations
            blobs: list[bytes] = []  # delta bytes not applied yet, and their log positions
            where: list[int] = []
            try:
                for pos in range(self.applied, end):
                    _, kind, body = self.log[pos - self.log_start]
                    if kind == DELTA:
                        blobs.append(body)
                        where.append(pos)
                        continue
                    if blobs:
                        self._apply_deltas(blobs, where)
                        blobs, where = [], []
                    if kind == OP:
                        self.applied = pos
                        self._apply_op(body, pos)
                if blobs:
                    self._apply_deltas(blobs, where)
                self.applied = end
            finally:
                self._work += self.index.distance_computations - before

    def _apply_op(self, body: bytes, pos: int) -> None:
        """Run a ``replay`` entry's operation (its body was checked on arrival)."""
        op, id_, vec = msgpack.unpackb(body)
        if op == "insert":
            self.index.insert(id_, np.frombuffer(vec, dtype="<f4"))
            self.id_pos[id_] = pos
        else:
            self.index.delete(id_)
            self.deleted_pos[id_] = pos

    def _apply_deltas(self, blobs: list[bytes], where: list[int]) -> None:
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

    def _replay_bulk(self, end: int) -> None:
        """A ``replay`` replica recovering builds its index in bulk from the vectors in
        its log, as a vector database re-indexes a segment after a restart: the graph it
        gets is a different graph from the one sequential inserts gave the others. If the
        build refuses the vectors, the entries are applied one by one instead (which
        finds the entry at fault). Under the ``apply`` hook."""
        with self.hooks.apply():
            if self.snap is not None:
                return
            live: dict[int, bytes] = {}
            ins: dict[int, int] = {}
            dels: dict[int, int] = {}
            for pos in range(max(self.applied, self.log_start), end):
                _, kind, body = self.log[pos - self.log_start]
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
            self._work += self.index.distance_computations

    def _catch_up(self, out: list) -> None:
        """Apply every committed entry not applied yet (a follower's read path).
        Under ``snapshot`` followers only store the log: their index changes only when
        a snapshot arrives."""
        if self.config.policy == "snapshot":
            return
        if self.role != LEADER and self.applied < self.commit:
            before = self.applied
            self._apply_safely(self.commit, out)
            self._entries_applied += max(self.applied - before, 0)
            out.append(Metric("applied", float(self.applied)))

    def _apply_safely(self, end: int, out: list) -> None:
        """Apply; an index that refuses a committed delta was damaged behind the
        protocol's back: rebuild it from the snapshot and log, and say so."""
        try:
            self._apply_to(end)
        except GraphrepError:
            out.append(Metric("apply_failures", 1.0))
            self._rebuild(end=end)
            self._fix_disk(out)

    # ------------------------------------------------------------------ snapshots

    def _maybe_snapshot(self, out: list) -> None:
        if self.config.policy == "snapshot":
            # the baseline: the leader ships its whole index every snapshot_ticks, at the
            # first tick from then on at which its index holds committed entries only
            if self.role != LEADER:
                return
            if self.ticks % self.config.snapshot_ticks == 0:
                self.snapshot_wanted = True
            if not self.snapshot_wanted:
                return
            if self.commit <= self.snap_end:
                self.snapshot_wanted = False  # nothing new since the last one
                return
            if self.applied != self.commit:
                return  # uncommitted state in the index: try again at the next tick
            self.snapshot_wanted = False
            keep = 0  # every follower then needs the snapshot
        else:
            if self.applied != self.commit or self.commit <= self.snap_end:
                return  # a leader ahead of its commit holds uncommitted state: not a snapshot
            every = self.config.snapshot_every
            if not every or self.commit - self.snap_end < every:
                return
            keep = self.config.log_keep
        end = self.commit
        if self.config.policy == "leader" and self.config.verify_snapshots:
            self._check_against_log(out)
        term = self.term_at(end - 1) or 0
        self.snap = (end, term, self.index.to_bytes())
        out.append(DurableWrite("snapshot", self.snap))
        start = max(self.log_start, end - keep)
        self._compact(start, out)
        if self.config.policy == "snapshot":
            self.snapshot_due = set(self.peers)
            for p in self.peers:
                self.snap_offset[p] = 0
        self._sync(out)
        out.append(Metric("snapshots", 1.0))

    def _check_against_log(self, out: list) -> None:
        """Before persisting the index as a snapshot, rebuild the same state from the
        previous snapshot and the log and compare digests: an index damaged in memory
        (behind the protocol's back) is replaced, never persisted. Costs one apply per
        entry of the snapshot window; ``verify_snapshots=False`` skips it."""
        index, applied = self.index, self.applied
        self.index = VamanaIndex.from_bytes(self.snap[2]) if self.snap else self.config.index()
        self.applied = self.snap_end
        try:
            self._apply_to(self.commit)
            fresh: VamanaIndex | None = self.index
        except GraphrepError:
            fresh = None
        self.index, self.applied = index, applied
        if fresh is not None and fresh.digest() != index.digest():
            self.index, self.tree = fresh, None
            out.append(Metric("index_damage_repaired", 1.0))

    def _compact(self, start: int, out: list) -> None:
        if start <= self.log_start:
            return
        self.start_term = self.term_at(start - 1) or 0
        for p in range(self.log_start, start):
            out.append(DurableWrite(("log", p), None))
        del self.log[: start - self.log_start]
        self.log_start = start
        out.append(DurableWrite("log_start", start))
        out.append(DurableWrite("start_term", self.start_term))

    def _send_snapshot_chunk(self, peer: str, out: list) -> None:
        if self.snap is None:  # cannot happen: the log is compacted only after a snapshot
            raise ProtocolError("log compacted without a snapshot")
        end, term, data = self.snap
        off = self.snap_offset.get(peer, 0)
        chunk = data[off : off + self.config.snapshot_chunk]
        self._send(out, peer, Snapshot(self.config.shard, self.term, self.name, end, term, off,
                                       len(data), chunk))
        out.append(Metric("snapshot_bytes", float(len(chunk))))

    def _on_snapshot(self, now: int, src: str, m: Snapshot, out: list) -> None:
        if not self._hear_leader(now, src, m.term, out):
            self._send(out, src, SnapshotReply(self.config.shard, self.term, m.end, 0))
            return
        if m.end <= min(self.applied, self.commit):
            # nothing new in it. (Committed, not just applied: a deposed leader has
            # applied entries of its own that no longer count.)
            if self._durable_end() < m.end:
                self._sync(out)  # it says "I hold all of it": make that true on disk
            self._verify(m.end)
            self._send(out, src, SnapshotReply(self.config.shard, self.term, m.end, m.total))
            return
        inc = self.incoming
        if inc is None or inc[:3] != (m.end, m.last_term, m.total):
            inc = self.incoming = (m.end, m.last_term, m.total, bytearray())
        buf = inc[3]
        if m.offset == len(buf):
            buf += m.data
        if len(buf) >= m.total:
            if self._install(m.end, m.last_term, bytes(buf), out):
                self._catch_up(out)  # the committed entries after the snapshot
                out.append(Metric("applied", float(self.applied)))
            self._verify(m.end)
            self.incoming = None
            self._send(out, src, SnapshotReply(self.config.shard, self.term, m.end, m.total))
            return
        self._send(out, src, SnapshotReply(self.config.shard, self.term, m.end, len(buf)))

    def _install(self, end: int, term: int, data: bytes, out: list) -> bool:
        """Replace the log and the index by a leader's snapshot, under the ``apply`` hook;
        whether it loaded (a snapshot that does not load changes nothing)."""
        with self.hooks.apply():
            try:
                index = VamanaIndex.from_bytes(data)
            except GraphrepError:
                out.append(Metric("bad_snapshots", 1.0))
                return False
            self._scrub_stale(out)
            keep_tail = end <= self.end and self.term_at(end - 1) == term
            tail = self.log[end - self.log_start :] if keep_tail and end >= self.log_start \
                else []
            for p in range(self.log_start, self.end):
                out.append(DurableWrite(("log", p), None))
            self.log = list(tail)
            for i, entry in enumerate(self.log):
                out.append(DurableWrite(("log", end + i), wal_record(entry)))
            self.log_start, self.start_term = end, term
            self.snap = (end, term, data)
            self.commit = max(self.commit, end)
            self.index = index
            self.applied = end
            self.id_pos.clear()
            self.deleted_pos.clear()
            self._note_snapshot_ids(end)
            out.extend([DurableWrite("snapshot", self.snap), DurableWrite("log_start", end),
                        DurableWrite("start_term", term), DurableWrite("commit", self.commit),
                        Sync(), Metric("snapshot_installs", 1.0)])
            self.synced_end = self.end
            return True

    def _on_snapshot_reply(self, now: int, src: str, m: SnapshotReply, out: list) -> None:
        if not self._from_follower(src, m.term, out):
            return
        if self.snap is None or m.end != self.snap[0]:
            self.snap_offset[src] = 0  # a snapshot we no longer hold: start the new one
        elif m.offset >= len(self.snap[2]):
            self.snap_offset[src] = 0
            self.snapshot_due.discard(src)
            self.match[src] = max(self.match[src], m.end)
            self.next[src] = max(self.next[src], self.match[src])
            self.progress_at[src] = now
            self._advance_commit(out)
        else:
            self.snap_offset[src] = m.offset
            self.progress_at[src] = now
        self._send_append(src, out)

    # ------------------------------------------------------------------ anti-entropy

    def _my_tree(self) -> MerkleTree:
        if self.tree is None or self.tree[0] != self.applied:
            ids, hashes = self.index.record_hashes()
            self.tree = (self.applied, MerkleTree.build(ids, hashes, self.config.tree_leaves))
        return self.tree[1]

    def _start_anti_entropy(self, out: list) -> None:
        if self.config.policy == "replay":
            # replay replicas own their graphs: comparing graphs would "repair" the very
            # drift the baseline exists to measure (vector databases compare objects)
            return
        if self.commit != self.end or self.applied != self.end:
            return  # compare only committed state the followers can also hold
        self.tree = None  # the index may have changed in place (a repair, a test)
        tree = self._my_tree()
        for p in self.peers:
            if self.match[p] == self.end:
                self._send(out, p, TreeRoot(self.config.shard, self.term, self.end, tree.root,
                                            self.index.entry_id))
        # a follower not caught up yet is compared as soon as it is (see _on_append_reply)
        self.compare_due = {p for p in self.peers if self.match[p] != self.end}

    def _compare_if_due(self, peer: str, out: list) -> None:
        if peer in self.compare_due and self.match[peer] == self.end == self.commit \
                == self.applied:
            self.compare_due.discard(peer)
            self.tree = None
            self._send(out, peer, TreeRoot(self.config.shard, self.term, self.end,
                                           self._my_tree().root, self.index.entry_id))

    def _on_tree_root(self, now: int, src: str, m: TreeRoot, out: list) -> None:
        self._catch_up(out)
        if m.term != self.term or self.role != FOLLOWER or self.applied != m.end:
            return
        self.tree = None
        tree = self._my_tree()
        if tree.root != m.root or self.index.entry_id != m.entry:
            self._send(out, src, TreeLeaves(self.config.shard, self.term, m.end,
                                            list(tree.leaf_hashes)))
            out.append(Metric("anti_entropy_mismatches", 1.0))

    def _on_tree_leaves(self, now: int, src: str, m: TreeLeaves, out: list) -> None:
        if m.term != self.term or self.role != LEADER or m.end != self.end \
                or self.applied != self.end:
            return
        mine = self._my_tree().leaf_hashes
        if len(m.leaves) != len(mine):
            return
        leaves = self._differing_leaves(mine, m.leaves)
        ids = ids_in_leaves(self.index.ids(include_deleted=True), leaves, len(mine))
        records = self.index.export_records(ids)
        data = records.to_bytes()
        self._send(out, src, Repair(self.config.shard, self.term, m.end, leaves, data,
                                    self.index.entry_id, self.index.seq))
        out.append(Metric("repair_bytes", float(len(data))))

    @staticmethod
    def _differing_leaves(mine: list[bytes], theirs: list[bytes]) -> list[int]:
        """Indices of the leaves whose digests differ (what anti-entropy repairs)."""
        return [i for i, (a, b) in enumerate(zip(mine, theirs, strict=True)) if a != b]

    def _on_repair(self, now: int, src: str, m: Repair, out: list) -> None:
        if m.term != self.term or self.role != FOLLOWER or self.applied != m.end:
            return
        try:
            records = RecordSet.from_bytes(m.records)
            theirs = set(records.ids.tolist())
            here = ids_in_leaves(self.index.ids(include_deleted=True), m.leaves,
                                 self.config.tree_leaves)
            drop = [i for i in here.tolist() if i not in theirs]
            self.index.overwrite_records(records, drop, entry_id=m.entry, seq=m.seq)
        except GraphrepError:
            out.append(Metric("repair_failures", 1.0))
            self._rebuild()
            self._fix_disk(out)
            return
        self.tree = None
        out.append(Metric("repaired_records", float(len(records.ids) + len(drop))))

    # ------------------------------------------------------------------ elections

    def _draw_timeout(self) -> int:
        lo, hi = self.config.election_timeout_ns
        return int(self.rng.integers(lo, hi + 1))

    def _see_term(self, term: int, out: list) -> None:
        """A newer term: adopt it (durably) and step down."""
        if term > self.term:
            self.term = term
            self.voted_for = None
            out.append(DurableWrite("term", term))
            out.append(DurableWrite("voted_for", None))
            self._sync(out)
            self._become_follower()

    def _become_follower(self) -> None:
        self.early.clear()
        self.compare_due = set()
        if self.role == LEADER:
            self.pending = []  # clients retry; their writes may or may not survive
        self.role = FOLLOWER
        self.votes = set()

    def _start_election(self, now: int, out: list) -> None:
        self.role = CANDIDATE
        self.term += 1
        self.voted_for = self.name
        self.votes = {self.name}
        self.leader = ""
        self.heard_at = now
        self.timeout = self._draw_timeout()
        out.extend([DurableWrite("term", self.term), DurableWrite("voted_for", self.name)])
        self._sync(out)
        last_term = self.term_at(self.end - 1) or 0
        for p in self.peers:
            self._send(out, p, RequestVote(self.config.shard, self.term, self.name,
                                           self.end, last_term))
        if len(self.votes) >= self.majority:  # a shard of one
            self._become_leader(now, out)

    def _on_request_vote(self, now: int, src: str, m: RequestVote, out: list) -> None:
        self._see_term(m.term, out)
        if self.role == LEADER:
            granted = False
        else:
            last_term = self.term_at(self.end - 1) or 0
            up_to_date = (m.last_term, m.last_end) >= (last_term, self.end)
            granted = (m.term == self.term and self.voted_for in (None, m.candidate)
                       and up_to_date)
        if granted:
            if self.role != FOLLOWER:
                self._become_follower()
            self.voted_for = m.candidate
            self.heard_at = now
            out.append(DurableWrite("voted_for", m.candidate))
            self._sync(out)
        self._send(out, src, VoteReply(self.config.shard, self.term, granted))

    def _on_vote(self, now: int, src: str, m: VoteReply, out: list) -> None:
        if m.term > self.term:
            self._see_term(m.term, out)
            return
        if self.role != CANDIDATE or m.term != self.term or not m.granted:
            return
        self.votes.add(src)
        if len(self.votes) >= self.majority:
            self._become_leader(now, out)

    def _become_leader(self, now: int, out: list) -> None:
        self.role = LEADER
        self.leader = self.name
        if self.config.policy == "leader":
            # every delta and every repair is computed against the leader's index:
            # derive it from the durable snapshot and log, not from memory that may
            # have been damaged while following (costs applies, no distance computation)
            self._rebuild(count=False)
        try:
            self._apply_to(self.end)  # the leader's index reflects its whole log
        except GraphrepError:
            self._cut_log(self.applied)  # an uncommitted entry that does not apply
        self._fix_disk(out)
        for p in self.peers:
            self.next[p] = self.end
            self.match[p] = 0
            self.progress_at[p] = now
            self.snap_offset[p] = 0
            self.inflight[p] = []
            self.below_match[p] = 0
        self._append_local((self.term, NOOP, b""), out)
        self.applied = self.end
        out.append(Metric("leader_elected", float(self.term)))
        for p in self.peers:
            self._send_append(p, out)
        self._advance_commit(out)

    # ------------------------------------------------------------------ helpers

    def _send(self, out: list, to: str, msg: Any) -> None:
        data = encode(msg)
        out.append(Send(to, data, len(data)))

    def _ignore(self, now: int, src: str, m: Any, out: list) -> None:
        """A reply meant for a client: nothing to do."""


def shard_settled(replicas: Sequence[Replica | None]) -> bool:
    """Whether a shard's replicas are quiet and agree on their log: all up, exactly one
    leader, and every replica has stored, committed and applied the leader's whole log."""
    if any(r is None for r in replicas):
        return False
    leaders = [r for r in replicas if r is not None and r.role == LEADER]
    if len(leaders) != 1:
        return False
    end = leaders[0].end
    return all(r is not None and r.end == end and r.commit == end and r.applied == end
               for r in replicas)


def protocol_error_effects(exc: ProtocolError) -> list:
    """What a node returns for a message it refuses: counted, by kind; nothing else."""
    return [Metric("protocol_errors", 1.0), Metric(f"protocol_error:{type(exc).__name__}", 1.0)]

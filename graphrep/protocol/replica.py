"""A replica of one shard: the consensus core, a sans-IO state machine.

The core stores, replicates and commits log entries and hands committed entries to its
applier (:mod:`.appliers`), which owns the index and is the only part that looks inside
an entry. Replication, commit and failover follow Raft, whose guarantees are exactly
the ones a replicated index needs: terms fence deposed leaders (:mod:`.terms`); the
election restriction makes every elected leader hold every committed entry
(:mod:`.elections`), so no write acknowledged at ``majority`` is lost by failover; an
entry is committed once a majority stores it durably and an entry of the leader's term
is among them (:meth:`.progress.Tracker.quorum_end`), and a new leader appends a
``NOOP`` to commit what its predecessors left.

Followers apply only committed entries, so a follower's index never has to be undone.
The leader's index reflects its whole log (it must: a delta is computed on the index
state before it); if it is deposed with entries that the new leader overwrites, it
rebuilds its index from its snapshot and committed log, which costs applies, not
distance computations. The log, the term, the vote and snapshots are made durable
before any message or acknowledgement that depends on them is sent (:mod:`.log`); a
restarted replica rebuilds its index from its durable snapshot and log (up to the last
commit position it recorded) and catches up.

Timers are periodic ticks (a follower checks how long it has not heard from a leader;
a leader sends heartbeats, retransmits, runs anti-entropy and takes snapshots): the
simulator's ``quiesce`` ignores periodic timers, so a quiet cluster is recognisable. A
heartbeat is an Append without entries anchored at what the follower has acknowledged,
so entries still in flight do not look like a gap; what is lost is resent when a
follower has made no progress for ``retransmit_ns``, and a follower that went quiet is
probed, one batch at a time, until it makes progress again (:mod:`.progress`).

Collaborators, built from :class:`~.seams.Seams`: the log, the term and vote, the
followers' progress, the applier, snapshots (:mod:`.snapshots`), anti-entropy
(:mod:`.antientropy`) and the client side (:mod:`.clients`); and elections
(:mod:`.elections`) and recovery from damage (:mod:`.recovery`). Measurement goes
through :mod:`.hooks`; the core reaches the applier's work through four methods only
(``_execute``, ``_apply_to``, ``_replay_bulk``, ``_install``), each under its hook.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from graphrep.ann import EdgeDelta, VamanaIndex
from graphrep.errors import GraphrepError, ProtocolError
from graphrep.protocol.appliers import Applier
from graphrep.protocol.config import (
    CANDIDATE,
    CONCERNS,
    FOLLOWER,
    LEADER,
    POLICIES,
    ReplicaConfig,
    SyncPolicy,
)
from graphrep.protocol.elections import Elections
from graphrep.protocol.entries import wal_entry, wal_record
from graphrep.protocol.hooks import NO_HOOKS, ReplicaHooks
from graphrep.protocol.log import CONFLICT, GAP
from graphrep.protocol.merkle import MerkleTree
from graphrep.protocol.messages import (
    NOOP,
    Append,
    AppendReply,
    ClientSearch,
    ClientWrite,
    Pull,
    Repair,
    RequestVote,
    SearchReply,
    Ship,
    Snapshot,
    SnapshotReply,
    TreeLeaves,
    TreeRoot,
    VoteReply,
    WriteReply,
    decode,
    encode,
)
from graphrep.protocol.progress import Refusal
from graphrep.protocol.recovery import Recovery
from graphrep.protocol.regions import Shipping
from graphrep.protocol.seams import DEFAULT_SEAMS, Seams
from graphrep.sansio import DurableWrite, Metric, Send, SetTimer, Work

__all__ = ["CANDIDATE", "FOLLOWER", "LEADER", "POLICIES", "Replica", "ReplicaConfig",
           "protocol_error_effects", "shard_settled", "wal_entry", "wal_record"]

_WRITE_OPS = ("insert", "delete", "delta")
"""A client write's ops: ``delta`` is an insert or delete given as its edge delta (see
:meth:`~graphrep.protocol.appliers.Applier.delta_op`)."""


class Replica:
    """One replica of one shard (see the module docstring). Built by the driver as
    ``Replica(name, disk, config, rng)``; ``rng`` (a numpy Generator from the driver)
    draws election timeouts, the only randomness the protocol needs. ``hooks`` measure
    (:class:`~.hooks.ReplicaHooks`); ``seams`` replace collaborators
    (:class:`~.seams.Seams`)."""

    def __init__(self, name: str, disk: Mapping[Hashable, Any], config: ReplicaConfig,
                 rng: np.random.Generator, *, hooks: ReplicaHooks | None = None,
                 seams: Seams | None = None) -> None:
        if name not in config.replicas:
            raise ProtocolError(f"replica {name!r} is not in the shard's set {config.replicas}")
        seams = seams or DEFAULT_SEAMS
        self.name = name
        self.config = config
        self.peers = [r for r in config.replicas if r != name]
        self.majority = len(config.replicas) // 2 + 1
        self.rng = rng
        self.hooks = hooks or NO_HOOKS
        # durable state, recovered from the disk
        self.terms = seams.terms(disk)
        self.log = seams.log(disk, config)
        self.verified: tuple[int, int] = (-1, 0)  # (term, end) confirmed by that term's leader
        self.commit = min(max(int(disk.get("commit", 0)), self.log.snap_end), self.log.end)
        # volatile state
        self.role = FOLLOWER
        self.leader: str = ""
        self.applier = seams.applier(config.policy)(config)
        self.tracker = seams.tracker(self.peers, self.majority, seams.progress)
        self.snapshots = seams.snapshots(self)
        self.anti_entropy = seams.anti_entropy(self)
        self.clients = seams.clients(self)
        self.elections = Elections(self)
        self.recovery = Recovery(self)
        self.shipping = Shipping(self)
        self.early: dict[int, Append] = {}  # appends that arrived before a gap, by prev_end
        self.ticks = 0
        self.errors = 0  # messages rejected as malformed / unsupported
        self._entries_applied = 0  # a follower's applied entries, not reported yet (Work)
        self._handlers = {
            ClientWrite: self._on_write, ClientSearch: self._on_search,
            Append: self._on_append, AppendReply: self._on_append_reply,
            RequestVote: self.elections.on_request_vote, VoteReply: self.elections.on_vote,
            Snapshot: self.snapshots.on_snapshot, SnapshotReply: self.snapshots.on_reply,
            TreeRoot: self.anti_entropy.on_tree_root,
            TreeLeaves: self.anti_entropy.on_tree_leaves, Repair: self.anti_entropy.on_repair,
            WriteReply: self._ignore, SearchReply: self._ignore,
            Pull: self.shipping.on_pull, Ship: self.shipping.on_ship,
        }
        """Message type -> bound handler, built once (a subclass's override of a handler
        method is bound here)."""
        self.recovery.rebuild_index(count=False)

    # ------------------------------------------------------------------ state, read-only

    @property
    def term(self) -> int:
        return self.terms.term

    @property
    def end(self) -> int:
        """Log positions ever appended (the next entry's position)."""
        return self.log.end

    @property
    def log_start(self) -> int:
        return self.log.start

    def term_at(self, pos: int) -> int | None:
        """Term of the entry at ``pos`` (see :meth:`.log.Log.term_at`)."""
        return self.log.term_at(pos)

    @property
    def applied(self) -> int:
        """Log entries reflected in the index."""
        return self.applier.applied

    @property
    def index(self) -> VamanaIndex:
        """The applier's index."""
        return self.applier.index

    @index.setter
    def index(self, index: VamanaIndex) -> None:  # a test damaging or restoring it
        self.applier.index = index

    @property
    def id_pos(self) -> dict[int, int]:
        """Id -> log position of its insert (the applier's bookkeeping)."""
        return self.applier.id_pos

    @property
    def deleted_pos(self) -> dict[int, int]:
        """Id -> log position of its delete (the applier's bookkeeping)."""
        return self.applier.deleted_pos

    @property
    def tree(self) -> tuple[int, MerkleTree] | None:
        """Anti-entropy's cached hash tree (set it to None after changing the index)."""
        return self.anti_entropy.tree

    @tree.setter
    def tree(self, tree: tuple[int, MerkleTree] | None) -> None:
        self.anti_entropy.tree = tree

    # ------------------------------------------------------------------ sans-IO entry points

    def on_start(self, now: int) -> list:
        with self.hooks.callback():
            self.elections.restart_clock(now)
            out: list = [SetTimer("tick", self.config.tick_ns, periodic=True)]
            self.recovery.fix_disk(out)
            self._report_work(out)
            return out

    def on_timer(self, now: int, name: Hashable) -> list:
        with self.hooks.callback():
            return self._tick(now, name)

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

    def _tick(self, now: int, name: Hashable) -> list:
        out: list = []
        if name == "anti_entropy":  # an operator's "compare now" (a one-shot timer)
            if self.role == LEADER:
                self.anti_entropy.start(out)
            return out
        self.ticks += 1
        if self.role == LEADER:
            for p in self.peers:
                pr = self.tracker[p]
                if self.snapshots.needed_by(p):
                    # a snapshot in transfer moves on replies; resend a chunk only when
                    # the last one seems lost (it is large: no resend every tick)
                    if pr.snapshot_stalled(now, self.config.retransmit_ns):
                        pr.retry_snapshot(now)
                        self.send_append(p, out)
                    continue
                if pr.match < self.log.end and pr.stalled(now, self.config.retransmit_ns):
                    pr.retransmit(now)
                self.send_append(p, out, heartbeat=True)
            every = self.config.anti_entropy_ticks
            if every and self.ticks % every == 0:
                self.anti_entropy.start(out)
            self.shipping.tick(out)
        elif self.elections.due(now):
            self.elections.stand(now, out)
        if self.config.sync == SyncPolicy.TICK:
            self._sync_tick(out)
        self.catch_up(out)  # what a batching follower left for the tick
        self.snapshots.maybe_take(out)
        self._report_work(out)
        return out

    def _report_work(self, out: list) -> None:
        """The work this callback did, as a ``Work`` effect (a driver decides what it
        costs), and the distance computations spent applying the log (replica CPU: zero
        under ``leader``, every insert's search under ``replay``) as a metric that
        survives crashes."""
        a = self.applier
        if a.work:
            out.append(Metric("replica_distance_computations", float(a.work)))
        if a.work or a.op_distances or self._entries_applied:
            out.append(Work(a.work + a.op_distances, self._entries_applied))
            a.work = a.op_distances = self._entries_applied = 0

    def send(self, out: list, to: str, msg: Any) -> None:
        """Send ``msg`` (encoded for the wire) to ``to``."""
        data = encode(msg)
        out.append(Send(to, data, len(data)))

    def _ignore(self, now: int, src: str, m: Any, out: list) -> None:
        """A reply meant for a client: nothing to do."""

    # ------------------------------------------------------------------ clients

    def _on_write(self, now: int, src: str, m: ClientWrite, out: list) -> None:
        """A client's write: run it on the leader's index, log the applier's entry for
        it, acknowledge it when its concern holds, send it to the followers."""
        clients = self.clients
        if self.role != LEADER:
            clients.reply(out, src, m.req, "not_leader")
            return
        if m.concern not in CONCERNS or m.op not in _WRITE_OPS:
            clients.reply(out, src, m.req, "error", error=f"bad op {m.op!r} or concern "
                          f"{m.concern!r}: op is insert|delete|delta, concern "
                          "one|majority|all")
            return
        op = m.op
        if op == "delta":  # the write given as its delta: which op of which id it is
            try:
                op = self.applier.delta_op(m.id, m.vector)
            except GraphrepError as exc:
                clients.reply(out, src, m.req, "error", error=f"{type(exc).__name__}: {exc}")
                return
        known = self.applier.known(op, m.id)
        if known is not None:  # a retry of a write that is already in the log
            why = self.applier.not_a_retry(m.op, m.id, m.vector)
            if why is not None:  # the same id, another write: refused, nothing changes
                clients.reply(out, src, m.req, "error", error=f"DuplicateId: {why}")
                return
            term, pos = clients.entry_holding(known)
            clients.ack_when_ready(out, term, pos, src, m.req, m.concern)
            return
        self.applier.clock(now)
        try:
            delta = self._execute(m.op, m.id, m.vector)
        except GraphrepError as exc:
            clients.reply(out, src, m.req, "error", error=f"{type(exc).__name__}: {exc}")
            return
        entry = self.applier.entry_for(self.term, m.op, m.id, m.vector, delta)
        pos = self.log.append(entry, out)
        self.applier.executed(op, m.id, pos)
        out.append(Metric("appended", float(pos)))
        if not self.peers:  # a shard of one: its own durable copy is the majority
            self.advance_commit(out)
        clients.ack_when_ready(out, self.term, pos, src, m.req, m.concern)
        self.after_append(out, commit=False)

    def after_append(self, out: list, commit: bool = True) -> None:
        """The leader appended entries: commit them at once if the shard has no other
        replica (``commit``), and send them to the followers."""
        if commit and not self.peers:
            self.advance_commit(out)
        for p in self.peers:
            # a follower being sent the snapshot gets its next chunk when it answers the
            # last one (or on a retransmission), not one more chunk per write
            if not self.snapshots.needed_by(p):
                self.send_append(p, out)

    def _on_search(self, now: int, src: str, m: ClientSearch, out: list) -> None:
        self.clients.on_search(now, src, m, out)

    # ------------------------------------------------------------------ log replication

    def verify(self, end: int) -> None:
        """The log prefix [0, end) is known to equal the current leader's."""
        if self.verified[0] != self.term or end > self.verified[1]:
            self.verified = (self.term, end)

    def _sync_tick(self, out: list) -> None:
        """Group commit (``sync="tick"``): sync the appended records, then send what was
        waiting for them (a follower's acknowledgement, client acknowledgements)."""
        log = self.log
        if log.synced_end >= log.end:
            return
        log.sync(out)
        if self.role == LEADER:
            self.advance_commit(out)
        elif self.leader and self.verified[0] == self.term:
            # claim only the prefix this leader has confirmed: entries past it may be a
            # deposed leader's, which this leader has not overwritten yet
            self.send(out, self.leader, AppendReply(
                self.config.shard, self.term, True, min(log.durable_end(), self.verified[1])))

    def send_append(self, peer: str, out: list, heartbeat: bool = False) -> None:
        """Send ``peer`` what its progress calls for: a snapshot chunk, the next entries
        (up to ``max_batch``, within ``window`` of what it acknowledged, unless the
        in-flight window is full), or (``heartbeat``) an empty Append."""
        pr = self.tracker[peer]
        log = self.log
        if self.snapshots.needed_by(peer):
            if not pr.snap_pending:  # else its answer, or the stall timer, sends the next
                pr.snapshot_sent()
                self.snapshots.send_chunk(peer, out)
            return
        nxt = pr.next
        if pr.paused() or pr.probe_out():
            stop = nxt  # full, or probed with a batch out: what is new waits for an answer
        else:
            stop = min(log.end, nxt + self.config.max_batch, pr.base() + self.config.window)
        if stop <= nxt:
            if heartbeat:
                at = pr.heartbeat_at(log.start)
                self.send(out, peer, Append(self.config.shard, self.term, self.name, at,
                                            log.term_at(at - 1) or 0, [], self.commit))
            return
        self.send(out, peer, Append(self.config.shard, self.term, self.name, nxt,
                                    log.term_at(nxt - 1) or 0, log.slice(nxt, stop),
                                    self.commit))
        pr.sent(stop)

    def hear_leader(self, now: int, src: str, term: int, out: list) -> bool:
        """A leader's Append or Snapshot: False if its term is fenced (the caller refuses
        it); else follow ``src`` in that term and reset the election clock."""
        if not self.terms.admits(term):
            return False
        self.see_term(term, out)
        if self.role != FOLLOWER:
            self.become_follower()
        self.leader = src
        self.elections.heard(now)
        return True

    def from_follower(self, src: str, term: int, out: list) -> bool:
        """Whether a follower's reply is for this leader's current term (a newer term
        makes this replica step down instead)."""
        if term > self.term:
            self.see_term(term, out)
            return False
        return self.role == LEADER and term == self.term and src in self.tracker

    def _on_append(self, now: int, src: str, m: Append, out: list) -> None:
        log = self.log
        start = log.anchor(m.prev_end, m.prev_term, len(m.entries))
        if m.term >= self.term:
            log.check_append(m, start, self.commit, self.applier.check_entry)
        if not self.hear_leader(now, src, m.term, out):
            self.send(out, src, AppendReply(self.config.shard, self.term, False, -1))
            return
        if start == GAP:
            if m.entries and len(self.early) < self.config.window:
                # most likely overtaken by a later message (the network reorders): keep
                # it until the missing entries arrive. If they were lost, the leader's
                # retransmission timer resends them, since nothing past them is acked.
                self.early[m.prev_end] = m
                return
            # a heartbeat past our end, or too much held back: ask for the missing range
            self.send(out, src, AppendReply(self.config.shard, self.term, False, log.end))
            return
        if start == CONFLICT:  # our entry there came from a deposed leader
            self.send(out, src, AppendReply(self.config.shard, self.term, False,
                                            log.conflict_hint(m.prev_end, self.commit)))
            return
        log.accept(start, m.entries, out, self._truncate)
        end = start + len(m.entries)
        self.verify(end)
        # commit up to what this leader has confirmed of our log (a heartbeat, anchored
        # at our last acknowledgement, confirms no more than that; earlier appends may
        # have confirmed more)
        known = self.verified[1]
        if m.commit > self.commit and min(m.commit, known) > self.commit:
            self.commit = min(m.commit, known)
            out.append(DurableWrite("commit", self.commit))
            if log.sync_each:
                log.sync(out)
            if self.commit - self.applied >= self.config.apply_batch:
                self.catch_up(out)
        # acknowledge only what is durable here (under sync="tick" the tick sends the rest)
        self.send(out, src, AppendReply(self.config.shard, self.term, True,
                                        min(end, log.durable_end())))
        if self.early:
            # a held append that starts before our end now was overtaken by a resend that
            # covered it: drop it, or such leftovers fill the buffer for good and every
            # append past a gap from then on is answered "gap" (a rewind and a resend)
            for pos in [p for p in self.early if p < log.end]:
                del self.early[pos]
        held = self.early.pop(log.end, None)
        if held is not None and held.term == self.term:
            try:  # the gap it waited on is filled
                log.check_append(held, log.anchor(held.prev_end, held.prev_term,
                                                  len(held.entries)), self.commit,
                                 self.applier.check_entry)
            except ProtocolError as exc:
                self.errors += 1
                out.extend(protocol_error_effects(exc))
                return
            self._on_append(now, src, held, out)

    def _on_append_reply(self, now: int, src: str, m: AppendReply, out: list) -> None:
        if not self.from_follower(src, m.term, out):
            return
        if m.ok and m.end > self.log.end:
            raise ProtocolError(f"{src} acknowledges log position {m.end} but this leader's "
                                f"log ends at {self.log.end}: refused")
        pr = self.tracker[src]
        if m.ok:
            if (pr.probing() and m.end <= pr.match < pr.next
                    and pr.quiet(now, self.config.retransmit_ns)):
                pr.answered_probe(now)
            pr.acknowledged(m.end, now)
            self.advance_commit(out)
            if self.anti_entropy.compare_due:
                self.anti_entropy.compare_if_due(src, out)
        else:
            refusal = pr.refused(m.end)
            if refusal is Refusal.STALE:
                return
            if refusal is Refusal.REGRESSED:
                out.append(Metric("follower_regressions", 1.0))
        self.send_append(src, out)

    def advance_commit(self, out: list) -> None:
        """Commit what a majority holds durably, if an entry of this term is among it;
        acknowledge the writes whose concern holds now."""
        candidate = self.tracker.quorum_end(self.log.durable_end())
        if candidate > self.commit and self.log.term_at(candidate - 1) == self.term:
            self.commit = candidate
            out.append(DurableWrite("commit", self.commit))
        self.clients.flush(out)

    def _truncate(self, pos: int, out: list) -> None:
        """Drop entries from ``pos`` on (they came from a deposed leader). Committed
        entries are never dropped; an index that applied dropped entries is rebuilt."""
        if pos < self.commit:
            raise ProtocolError(f"refusing to truncate committed entries at {pos} "
                                f"(commit {self.commit})")
        self.log.truncate(pos, out)
        self.verified = (self.verified[0], min(self.verified[1], pos))
        if self.applied > pos:
            self.recovery.rebuild(out)

    # ------------------------------------------------------------------ applying

    # The five methods below are the only ways the core (and recovery) reach the
    # applier's work on the index; each runs under its hook, and a measuring subclass
    # can wrap them by name as well.

    def _execute(self, op: str, id_: int, vector: bytes) -> EdgeDelta | None:
        """The leader's own write on its index, under the ``op`` hook."""
        with self.hooks.op():
            return self.applier.execute(op, id_, vector)

    def _apply_to(self, end: int, applier: Applier | None = None) -> None:
        """Apply the log up to ``end`` with ``applier`` (the replica's by default; a
        scratch one for a check), under the ``apply`` hook; raises what it raises."""
        with self.hooks.apply():
            (applier or self.applier).apply_to(self.log, end)

    def merge_shipped(self, body: bytes, pos: int) -> None:
        """Merge an entry shipped from another region, just appended at ``pos`` (the
        active-active leader's; :mod:`.regions`), under the ``apply`` hook: it is
        replication work, as a follower's apply is."""
        with self.hooks.apply():
            self.applier.merge_remote(body, pos)

    def _replay_bulk(self, end: int) -> None:
        """The applier's bulk re-index up to ``end`` (``replay``'s; nothing for the
        others), under the ``apply`` hook."""
        with self.hooks.apply():
            self.applier.bulk_load(self.log, end)

    def catch_up(self, out: list) -> None:
        """Apply every committed entry not applied yet (a follower's read path; nothing
        for a policy whose followers do not apply the log)."""
        if not self.applier.followers_apply:
            return
        if self.role != LEADER and self.applied < self.commit:
            before = self.applied
            try:
                self._apply_to(self.commit)
            except GraphrepError:
                # an index that refuses a committed entry was damaged behind the
                # protocol's back: rebuild it from the snapshot and log, and say so
                out.append(Metric("apply_failures", 1.0))
                self.recovery.rebuild(out, end=self.commit)
            self._entries_applied += max(self.applied - before, 0)
            out.append(Metric("applied", float(self.applied)))

    def install(self, end: int, term: int, data: bytes, out: list) -> None:
        """A leader's whole snapshot ``(end, term, data)`` arrived: install it, then apply
        the committed entries after it."""
        if self._install(end, term, data, out):
            self.catch_up(out)
            out.append(Metric("applied", float(self.applied)))

    def _install(self, end: int, term: int, data: bytes, out: list) -> bool:
        """Replace the log and the index by the snapshot, under the ``apply`` hook;
        whether it loaded (a snapshot that does not load changes nothing)."""
        with self.hooks.apply():
            try:
                index = self.applier.load(data)
            except GraphrepError:
                out.append(Metric("bad_snapshots", 1.0))
                return False
            self.log.install(end, term, data, out)
            self.commit = max(self.commit, end)
            self.applier.adopt(index, end)
            out.append(DurableWrite("commit", self.commit))
            self.log.sync(out)
            out.append(Metric("snapshot_installs", 1.0))
            return True

    # ------------------------------------------------------------------ roles

    def see_term(self, term: int, out: list) -> None:
        """A newer term: adopt it (durably) and step down."""
        if self.terms.adopt(term, out):
            self.log.sync(out)
            self.become_follower()

    def become_follower(self) -> None:
        self.early.clear()
        self.anti_entropy.compare_due = set()
        if self.role == LEADER:
            self.clients.pending = []  # clients retry; their writes may or may not survive
        self.role = FOLLOWER
        self.elections.votes = set()

    def become_leader(self, now: int, out: list) -> None:
        """Elected: make the index reflect the whole log (rebuilt from the durable state
        first if the policy says so), start every follower's progress at the log's end,
        and append a NOOP of this term, whose commit commits what predecessors left."""
        self.role = LEADER
        self.leader = self.name
        if self.applier.rebuild_when_elected:
            self.recovery.rebuild_index(count=False)
        try:
            self._apply_to(self.log.end)  # the leader's index reflects its whole log
        except GraphrepError:
            self.recovery.cut_log(self.applied)  # an uncommitted entry that does not apply
        self.recovery.fix_disk(out)
        self.tracker.reset(self.log.end, now, self.config.max_inflight)
        self.log.append((self.term, NOOP, b""), out)
        self.applier.caught_up(self.log.end)
        out.append(Metric("leader_elected", float(self.term)))
        for p in self.peers:
            self.send_append(p, out)
        self.advance_commit(out)


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

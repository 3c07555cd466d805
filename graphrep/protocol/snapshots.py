"""Snapshots: taking them on the policy's schedule, compacting the log behind them, and
sending them to followers in resumable chunks.

Schedules (the applier's ``snapshot_schedule``):

* ``COMPACTION``: once ``snapshot_every`` entries are committed past the last snapshot,
  a replica whose index holds exactly the committed state saves it and drops the log
  entries older than ``log_keep`` before it. A follower that needs entries the leader
  no longer holds is sent the snapshot, then the log tail.
* ``PERIODIC`` (the ``snapshot`` baseline): the leader saves its whole index every
  ``snapshot_ticks`` ticks, at the first tick from then on at which its index holds
  committed entries only, keeps no log before it, and sends it to every follower
  (``due``). Followers owed a snapshot stay owed it, across terms too, until they
  report holding it.

Transfer: the leader sends ``snapshot_chunk`` bytes at a time from the offset the
follower reports holding, so a lost chunk or a restarted transfer resumes. One chunk is
on its way at a time (``Progress.snap_pending``): the next leaves when the follower's
answer shows progress; an answer with no news (to a chunk sent again, or a late
duplicate) sends nothing, and neither do the follower's answers to heartbeats queued
while it was down. A chunk is resent only when the follower made no progress for
``retransmit_ns``, doubled for each resend since its last progress (it is large, and a
slow link answers late). The follower buffers the chunks of one snapshot (``incoming``)
and installs it whole (:meth:`~graphrep.protocol.replica.Replica.install`).

Why a collaborator of its own: the schedule and the chunking are self-contained (their
state is ``due``, ``wanted``, ``incoming`` and each follower's ``snap_offset``), while
what a snapshot does to the log, the commit position and the index stays in the core
(``Replica.install``) and the applier. The core asks only "take one if due", "does this
follower need one", "send it a chunk", and hands over the two messages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from graphrep.errors import ProtocolError
from graphrep.protocol.appliers import SnapshotSchedule
from graphrep.protocol.config import LEADER
from graphrep.protocol.messages import Snapshot, SnapshotReply
from graphrep.sansio import Metric

if TYPE_CHECKING:
    from graphrep.protocol.replica import Replica

__all__ = ["Snapshots"]


class Snapshots:
    """``Snapshots(replica)``: the snapshots of one replica (both sides)."""

    def __init__(self, replica: Replica) -> None:
        self.r = replica
        self.due: set[str] = set()
        """Followers owed the latest full snapshot (``PERIODIC``)."""
        self.wanted = False
        """A periodic snapshot is due at the first tick the index is all committed."""
        self.incoming: tuple[int, int, int, bytearray] | None = None
        """The snapshot being received: ``(end, last_term, total, bytes so far)``."""

    # ------------------------------------------------------------------ taking

    def maybe_take(self, out: list) -> None:
        """Save the index as a snapshot and compact the log, if the schedule says so."""
        r = self.r
        log = r.log
        periodic = r.applier.snapshot_schedule == SnapshotSchedule.PERIODIC
        if periodic:
            if r.role != LEADER:
                return
            if r.ticks % r.config.snapshot_ticks == 0:
                self.wanted = True
            if not self.wanted:
                return
            if r.commit <= log.snap_end:
                self.wanted = False  # nothing new since the last one
                return
            if r.applied != r.commit:
                return  # uncommitted state in the index: try again at the next tick
            self.wanted = False
            keep = 0  # every follower then needs the snapshot
        else:
            if r.applied != r.commit or r.commit <= log.snap_end:
                return  # a leader ahead of its commit holds uncommitted state: not a snapshot
            every = r.config.snapshot_every
            if not every or r.commit - log.snap_end < every:
                return
            keep = r.config.log_keep
        end = r.commit
        if r.applier.checks_snapshots and r.config.verify_snapshots:
            self.check_index(out)
        log.save_snapshot(end, r.applier.snapshot_bytes(), out)
        log.compact(min(max(log.start, end - keep), r.shipping.keep_from(end)), out)
        r.applier.compacted(log.start)
        if periodic:
            self.due = set(r.peers)
            for p in r.peers:
                r.tracker[p].snapshot_restart()
        log.sync(out)
        out.append(Metric("snapshots", 1.0))

    def check_index(self, out: list) -> None:
        """Before the index is saved as a snapshot: rebuild the same state from the
        previous snapshot and the log (:meth:`.recovery.Recovery.rebuilt`) and compare
        digests. An index damaged in memory (behind the protocol's back) is replaced,
        never persisted, and said so. Costs one apply per entry of the snapshot window
        (``verify_snapshots=False`` skips it)."""
        r = self.r
        fresh = r.recovery.rebuilt(r.commit)
        if fresh is not None and fresh.index.digest() != r.index.digest():
            r.applier.index = fresh.index
            r.anti_entropy.tree = None
            out.append(Metric("index_damage_repaired", 1.0))

    # ------------------------------------------------------------------ leader

    def needed_by(self, peer: str) -> bool:
        """Whether ``peer`` is sent the snapshot rather than entries: it needs entries
        compacted away, or it is owed the latest full snapshot."""
        return self.r.tracker[peer].next < self.r.log.start or peer in self.due

    def send_chunk(self, peer: str, out: list) -> None:
        """Send ``peer`` the next chunk of the snapshot, from what it holds."""
        r = self.r
        if r.log.snap is None:  # cannot happen: the log is compacted only after a snapshot
            raise ProtocolError("log compacted without a snapshot")
        end, term, data = r.log.snap
        off = r.tracker[peer].snap_offset
        chunk = data[off : off + r.config.snapshot_chunk]
        r.send(out, peer, Snapshot(r.config.shard, r.term, r.name, end, term, off,
                                   len(data), chunk))
        out.append(Metric("snapshot_bytes", float(len(chunk))))

    def installed_end(self, end: int) -> int:
        """How far a follower holds the log once it installed the snapshot ending at
        ``end``: exactly that far (what follows is found by the Appends after it)."""
        return end

    def on_reply(self, now: int, src: str, m: SnapshotReply, out: list) -> None:
        """A follower reports how much of the snapshot it holds: go on from there, or
        (all of it) go on with the log."""
        r = self.r
        if not r.from_follower(src, m.term, out):
            return
        pr = r.tracker[src]
        snap = r.log.snap
        if snap is None or m.end != snap[0]:
            pr.snapshot_restart()  # a snapshot we no longer hold: start the new one
        elif m.offset >= len(snap[2]):
            self.due.discard(src)
            pr.snapshot_installed(self.installed_end(m.end), now)
            r.advance_commit(out)
        elif m.offset == pr.snap_offset:
            # no news: the answer to a chunk sent again (or to a late duplicate). The
            # chunk after it left with the answer that moved snap_offset here, and a
            # stalled transfer is resent by the tick: one more chunk per answer would
            # add a chunk in flight for every retransmission, for good
            return
        else:
            pr.snapshot_progress(m.offset, now)  # ahead, or behind (it lost its buffer)
        r.send_append(src, out)

    # ------------------------------------------------------------------ follower

    def on_snapshot(self, now: int, src: str, m: Snapshot, out: list) -> None:
        """A chunk from the leader: keep it, install the snapshot once whole, and say how
        much is held."""
        r = self.r
        if not r.hear_leader(now, src, m.term, out):
            r.send(out, src, SnapshotReply(r.config.shard, r.term, m.end, 0))
            return
        if m.end <= min(r.applied, r.commit):
            # nothing new in it. (Committed, not just applied: a deposed leader has
            # applied entries of its own that no longer count.)
            if r.log.durable_end() < m.end:
                r.log.sync(out)  # it says "I hold all of it": make that true on disk
            r.verify(m.end)
            r.send(out, src, SnapshotReply(r.config.shard, r.term, m.end, m.total))
            return
        inc = self.incoming
        if inc is None or inc[:3] != (m.end, m.last_term, m.total):
            inc = self.incoming = (m.end, m.last_term, m.total, bytearray())
        buf = inc[3]
        if m.offset == len(buf):
            buf += m.data
        if len(buf) >= m.total:
            data = bytes(buf)
            # drop the buffer before loading: the index and this copy are big enough
            self.incoming = inc = buf = None  # type: ignore[assignment]
            r.install(m.end, m.last_term, data, out)
            r.verify(m.end)
            r.send(out, src, SnapshotReply(r.config.shard, r.term, m.end, m.total))
            return
        r.send(out, src, SnapshotReply(r.config.shard, r.term, m.end, len(buf)))

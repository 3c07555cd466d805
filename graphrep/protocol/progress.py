"""A leader's view of its followers: one :class:`Progress` per follower, the
:class:`Inflights` window of each, and the :class:`Tracker` that holds them and counts
the quorum (the shapes of etcd-raft's ``tracker.Progress``, ``tracker.Inflights`` and
``tracker.ProgressTracker``).

Every change to a follower's progress is a named transition, called by the replica at
one place each:

========================  =============================================================
transition                when
========================  =============================================================
``Progress(end, now)``    elected: send from the leader's end, nothing acknowledged
``sent(stop)``            an Append carried the entries up to ``stop``
``acknowledged(end)``     the follower holds the log up to ``end``
``refused(end)``          the follower reports a gap or conflict at ``end``: rewind to
                          it (``RESEND``), or after two reports below ``match`` in a row
                          believe the follower lost entries (``REGRESSED``), or ignore a
                          stale reply (``STALE``)
``retransmit(now)``       nothing acknowledged for ``retransmit_ns`` (doubled per
                          resend since the last progress, up to 32 x): resend from
                          ``match``, or from where the follower last said its log
                          ends if that is further (``told``), and probe (below)
``answered_probe(now)``   a probed follower answered without progress (a heartbeat's
                          reply) ``retransmit_ns`` or more after the last resend: it
                          is reachable, so resend from ``match`` (or ``told``) now
``snapshot_sent()``       a snapshot chunk left: the Appends in flight are superseded, and
                          no other chunk leaves until it is answered or seems lost
``snapshot_progress``     the follower holds ``offset`` bytes of the snapshot
``snapshot_installed``    the follower installed the snapshot ending at ``end``
``snapshot_restart()``    the follower was sending for a snapshot no longer held
``retry_snapshot(now)``   a snapshot chunk is resent after a stall
                          (``snapshot_stalled``: ``retransmit_ns``, doubled per resend
                          since the last progress, up to 32 x)
========================  =============================================================

A follower that made no progress for ``retransmit_ns`` is *probed* (etcd-raft's probe
state) until it acknowledges something new: one Append with entries in flight at a
time, resent when the follower answers (it is reachable again; at most once a
``retransmit_ns``, as a slow link answers heartbeats while a batch is still on its
way) or when the doubled timeout runs out. A leader cut off from a follower sends it
a heartbeat a tick and a batch now and then, not its whole window every
``retransmit_ns``.

Invariants (per follower, within one term): ``match`` only grows, except by
``REGRESSED`` (a follower that lost acknowledged entries); ``match <= next`` except
between ``rewind`` and the next send; the in-flight ends are increasing and above
``match``. Only :meth:`Progress.rewind` ever lowers ``next``: a variant that must never
resend (a planted bug) replaces that one method.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from enum import Enum

__all__ = ["Inflights", "Progress", "Refusal", "Tracker"]


class Inflights:
    """The ends of the Appends with entries in flight to one follower, oldest first.

    ``size`` 0 means no limit, and then nothing is tracked (``add`` is a no-op): with no
    limit the window is never consulted."""

    __slots__ = ("_ends", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._ends: deque[int] = deque()

    def add(self, end: int) -> None:
        """An Append ending at ``end`` left (ends are added in increasing order)."""
        if self.size:
            self._ends.append(end)

    def free_le(self, end: int) -> None:
        """The follower acknowledged up to ``end``: the Appends ending there are done."""
        ends = self._ends
        while ends and ends[0] <= end:
            ends.popleft()

    def full(self) -> bool:
        """Whether no further Append with entries may leave."""
        return bool(self.size) and len(self._ends) >= self.size

    def reset(self) -> None:
        """Forget every Append in flight (they are resent or superseded)."""
        self._ends.clear()

    def __len__(self) -> int:
        return len(self._ends)

    def __iter__(self) -> Iterator[int]:
        return iter(self._ends)

    def __repr__(self) -> str:
        return f"Inflights({list(self._ends)}, size={self.size})"


class Refusal(Enum):
    """What :meth:`Progress.refused` made of a follower's gap or conflict report."""

    RESEND = "resend"
    """``next`` moved back to the reported end: send from there."""
    REGRESSED = "regressed"
    """The follower lost acknowledged entries: ``match`` and ``next`` moved back."""
    STALE = "stale"
    """A duplicate or reordered reply: nothing changed, nothing to send."""


class Progress:
    """``Progress(next, now, max_inflight)``: one follower, seen by the leader.

    * ``next``: the position of the next entry to send.
    * ``told``: where the follower's log was last known to reach without being
      acknowledged: the leader's end when elected (a guess), then what the follower
      reported: its first acknowledgement, or the end a gap or conflict report gave.
      A retransmission resends from here when ``match`` is below.
    * ``match``: how far the follower has acknowledged holding the log durably.
    * ``progress_at``: when the follower last made progress (the retransmission clock).
    * ``snap_offset``: bytes of the leader's snapshot the follower holds.
    * ``inflight``: the Appends in flight (:class:`Inflights`).
    * ``below_match``: gap reports below ``match`` in a row.
    * ``heard``: the follower answered an Append in this term (:meth:`heartbeat_at`).
    * ``sent_since_rewind``: an Append with entries left since ``next`` was last
      lowered (a probed follower is sent no other until it answers).
    * ``retries``: Append retransmissions since the follower last made progress: each
      doubles the wait before the next (:meth:`stalled`); above 0 it is probed
      (:meth:`probing`).
    * ``snap_retries``: snapshot chunks resent since the follower last made progress:
      each doubles the wait before the next resend (:meth:`snapshot_stalled`).
    * ``snap_pending``: a snapshot chunk is on its way (one at a time: a follower that
      answers a pile of heartbeats queued while it was down must not be sent a chunk
      for each).
    """

    __slots__ = ("below_match", "heard", "inflight", "match", "next", "progress_at",
                 "retries", "sent_since_rewind", "snap_offset", "snap_pending",
                 "snap_retries", "told")

    def __init__(self, next: int, now: int, max_inflight: int = 0) -> None:
        self.next = next
        self.told = next
        self.sent_since_rewind = False
        self.match = 0
        self.progress_at = now
        self.snap_offset = 0
        self.inflight = Inflights(max_inflight)
        self.below_match = 0
        self.heard = False
        self.retries = 0
        self.snap_retries = 0
        self.snap_pending = False

    def __repr__(self) -> str:
        return (f"Progress(next={self.next}, match={self.match}, "
                f"progress_at={self.progress_at}, snap_offset={self.snap_offset}, "
                f"inflight={list(self.inflight)}, below_match={self.below_match})")

    # ------------------------------------------------------------------ queries

    def stalled(self, now: int, after: int) -> bool:
        """Whether the follower made no progress for ``after`` nanoseconds, doubled for
        each retransmission since its last progress (up to 32 x): resending into a
        partition every ``after`` would ship the whole window each time for nothing."""
        return self.quiet(now, after << min(self.retries, 5))

    def quiet(self, now: int, after: int) -> bool:
        """Whether the follower made no progress, and was sent nothing again, for
        ``after`` nanoseconds (:meth:`stalled` without the doubling)."""
        return now - self.progress_at >= after

    def probing(self) -> bool:
        """Whether the follower is probed: it went quiet, so at most one Append with
        entries is in flight until it makes progress."""
        return self.retries > 0

    def probe_out(self) -> bool:
        """Whether the follower is probed and its one batch is out: new entries wait
        for its answer (an acknowledgement, a gap or conflict report, or the timeout)."""
        return self.retries > 0 and self.sent_since_rewind

    def paused(self) -> bool:
        """Whether the in-flight window is full (new entries wait for an ack)."""
        return self.inflight.full()

    def heartbeat_at(self, log_start: int) -> int:
        """Where a heartbeat is anchored: where the follower's log is known to reach
        (:meth:`base`: what it acknowledged or reported), not at ``next``. With entries
        still in flight (or overtaken by the heartbeat) a heartbeat at ``next`` would
        look like a gap, and the reply would rewind ``next`` and resend them all.
        (``next`` if that position was compacted away.)

        Until the follower first answers in this term, at ``next``: the leader does not
        know where the follower's log ends (``match`` is 0 only because nothing was
        acknowledged yet), and a heartbeat at 0 would be answered "ok at 0", which says
        nothing. At ``next`` the answer is an acknowledgement of the whole log or a gap
        at the follower's end, where the leader then sends from (Raft's first probe).
        A follower that lacks entries holds the new leader's first appends for the gap
        and answers nothing, so without that answer the leader would wait for the
        retransmission timer and resend its log from 0."""
        if not self.heard:
            return self.next
        base = self.base()
        return base if base >= log_start else self.next

    def base(self) -> int:
        """Where the follower's log is known to reach: ``match``, or ``told`` when that
        is further (what it reported without acknowledging). The window of entries sent
        ahead counts from here, and heartbeats are anchored here once it answered:
        counted from ``match`` alone, a follower that reported a gap at 12,312 with
        ``match`` 0 could be sent nothing (every entry past 0 + window waits) and its
        heartbeats asked "do you hold 0?"."""
        return max(self.match, self.told)

    # ------------------------------------------------------------------ transitions

    def rewind(self, to: int) -> None:
        """Move ``next`` back to ``to``: the entries from there are sent again. The one
        place ``next`` is lowered."""
        self.next = to
        self.sent_since_rewind = False

    def sent(self, stop: int) -> None:
        """An Append carried the entries up to ``stop``."""
        self.sent_since_rewind = True
        self.inflight.add(stop)
        self.next = stop

    def acknowledged(self, end: int, now: int) -> None:
        """The follower holds the log up to ``end`` durably."""
        self.below_match = 0
        if not self.heard:  # its first answer in this term replaces the guess at election
            self.told = end
        self.heard = True
        if end > self.match:
            self.match = end
            self.progress_at = now
            self.retries = 0
        self.inflight.free_le(end)
        self.next = max(self.next, self.match)

    def refused(self, end: int) -> Refusal:
        """The follower reports a gap or a conflict: its log can take entries from
        ``end``. A report at or beyond what was sent, or below what it acknowledged, is
        stale (a duplicate or a reordered delivery) and rewinding for it would resend for
        nothing, except that two reports below ``match`` with no acknowledgement between
        them (one could be stale) are believed: the follower lost entries it had
        acknowledged (it cut a damaged entry, or a disk lost its tail)."""
        self.heard = True
        regressed = 0 <= end < self.match
        self.below_match = self.below_match + 1 if regressed else 0
        if self.match <= end < self.next:
            self.told = end
            self.rewind(end)
            self.inflight.reset()
            return Refusal.RESEND
        if regressed and self.below_match >= 2:
            self.match = self.told = end
            self.rewind(end)
            self.below_match = 0
            self.inflight.reset()
            return Refusal.REGRESSED
        return Refusal.STALE

    def retransmit(self, now: int) -> None:
        """Nothing acknowledged for a while: resend from what was acknowledged or, if
        the follower said more since (``told``), from where it said its log ends; probe
        the follower, and wait twice as long before the next retransmission.

        ``match`` only counts acknowledgements. A new leader's follower that answered a
        gap report at 12,312 and then lost the resend had ``match`` 0, and was sent the
        whole log again from 0, batch by batch, when it lacked the last few entries.
        Resending from ``told`` is safe: each Append is anchored at the entry before it,
        and a follower whose log differs there answers with a gap or conflict further
        back, where the leader then sends from."""
        self.answered_probe(now)
        self.retries += 1

    def answered_probe(self, now: int) -> None:
        """A probed follower answered with nothing new a while after it was last sent
        entries: it is reachable again and what it was sent was lost, so send from
        :meth:`base` again (as :meth:`retransmit` does, without doubling the wait: the
        link works)."""
        self.rewind(self.base())
        self.progress_at = now
        self.inflight.reset()

    def snapshot_sent(self) -> None:
        """A snapshot chunk left: it supersedes the Appends in flight, and is the one
        chunk on its way."""
        self.inflight.reset()
        self.snap_pending = True

    def snapshot_stalled(self, now: int, after: int) -> bool:
        """Whether the chunk in flight seems lost: no progress for ``after``
        nanoseconds, doubled for each resend since the last progress (up to 32 x). A
        chunk is large and a slow link or a busy follower answers late; a fixed timeout
        below the chunk's round trip would resend every chunk, and queue the resends
        ahead of the chunks that follow."""
        return now - self.progress_at >= after << min(self.snap_retries, 5)

    def retry_snapshot(self, now: int) -> None:
        """The last chunk seems lost: it is sent again, and waited for again (longer)."""
        self.progress_at = now
        self.snap_retries += 1
        self.snap_pending = False

    def snapshot_progress(self, offset: int, now: int) -> None:
        """The follower holds the first ``offset`` bytes of the snapshot."""
        self.snap_offset = offset
        self.progress_at = now
        self.snap_retries = 0
        self.snap_pending = False

    def snapshot_restart(self) -> None:
        """The next chunk is the first of the current snapshot."""
        self.snap_offset = 0
        self.snap_retries = 0
        self.snap_pending = False

    def snapshot_installed(self, end: int, now: int) -> None:
        """The follower installed the snapshot of the entries [0, end)."""
        self.heard = True
        self.sent_since_rewind = False
        self.snap_offset = 0
        self.snap_retries = 0
        self.snap_pending = False
        self.match = max(self.match, end)
        self.next = max(self.next, self.match)
        self.progress_at = now


class Tracker:
    """``Tracker(peers, majority, progress=Progress)``: the leader's followers and the
    quorum rule. ``reset`` (at each election won) gives every follower a fresh
    ``progress`` (the class); between terms the old progress stays readable.

    :meth:`quorum_end` is the one place the majority is counted: a variant that counts
    wrong (a planted bug) replaces that method."""

    def __init__(self, peers: Iterable[str], majority: int,
                 progress: type[Progress] = Progress) -> None:
        self.peers = list(peers)
        self.majority = majority
        self.progress_class = progress
        self.progress: dict[str, Progress] = {}

    def reset(self, end: int, now: int, max_inflight: int) -> None:
        """Elected: every follower starts at the leader's ``end``, nothing acknowledged."""
        self.progress = {p: self.progress_class(end, now, max_inflight) for p in self.peers}

    def __getitem__(self, peer: str) -> Progress:
        return self.progress[peer]

    def __contains__(self, peer: object) -> bool:
        return peer in self.progress

    def durable_ends(self, own: int) -> list[int]:
        """How far each replica (the leader, which holds ``own`` durably, included) holds
        the log durably, highest first."""
        return sorted([own] + [self.progress[p].match for p in self.peers], reverse=True)

    def quorum_end(self, own: int) -> int:
        """The log end a majority (the leader included) holds durably."""
        return self.durable_ends(own)[self.majority - 1]

    def all_hold(self, pos: int) -> bool:
        """Whether every follower holds the entry at ``pos`` durably."""
        return all(self.progress[p].match > pos for p in self.peers)

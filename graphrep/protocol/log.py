"""The replicated log as one replica holds it: entries, the latest snapshot, durability.

Positions are absolute: the entry at position ``p`` is ``entries[p - start]``; positions
before ``start`` were compacted into the snapshot ``snap = (end, last_term, bytes)``,
whose last entry (at ``start - 1`` right after compaction or an install) has the term
``start_term``. Every change comes with the ``DurableWrite`` effects that save it
(keys ``("log", p)``, ``"snapshot"``, ``"log_start"``, ``"start_term"``); :meth:`sync`
makes them durable. The log never looks inside an entry's body: what an entry means is
the applier's business (:mod:`graphrep.protocol.appliers`).

Invariants:

* ``start <= end`` and ``synced_end <= end``: :meth:`durable_end` is what this replica
  may claim to hold durably (what write concerns and the leader's commit count).
* Entry terms never decrease along the log (the leader's checks keep it so).
* Log matching (Raft): two logs that hold an entry of the same term at the same position
  agree on every entry before it. :meth:`anchor` is where a follower relies on it.

:class:`Log` is one of the replica's seams (:class:`graphrep.protocol.seams.Seams`):
:meth:`durable_end`, :meth:`anchor` and :meth:`accept` are the places durability, gap
and conflict detection, and a follower's copy of the leader's entries are decided.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from graphrep.errors import DamagedEntry, ProtocolError
from graphrep.protocol.config import ReplicaConfig, SyncPolicy
from graphrep.protocol.entries import check_entry, wal_entry, wal_record
from graphrep.protocol.messages import Append, Entry
from graphrep.sansio import DurableWrite, Sync

__all__ = ["CONFLICT", "GAP", "Log", "SnapshotRef"]

SnapshotRef = tuple[int, int, bytes]
"""A snapshot as the log keeps it: ``(end, last_term, index bytes)``."""

GAP = -1
""":meth:`Log.anchor`: entries are missing before the ones offered."""
CONFLICT = -2
""":meth:`Log.anchor`: the entry before the ones offered has another term here."""


class Log:
    """``Log(disk, config)``: the log recovered from ``disk`` (see the module docstring).

    Recovery reads records from ``("log", start)`` on and stops at the first missing or
    damaged one (``damaged`` counts the latter: a torn tail); records behind a damaged
    one are erased with the first append, so that rewriting the damaged position cannot
    bring them back."""

    def __init__(self, disk: Mapping[Hashable, Any], config: ReplicaConfig) -> None:
        self.sync_each = config.sync == SyncPolicy.ALWAYS
        self.dim = config.dim
        self.snap: SnapshotRef | None = disk.get("snapshot")
        self.start: int = int(disk.get("log_start", 0))
        self.start_term: int = int(disk.get("start_term", 0))
        self.entries: list[Entry] = []
        self.damaged = 0
        while (record := disk.get(("log", self.start + len(self.entries)))) is not None:
            entry = wal_entry(record)
            if entry is not None:
                try:
                    check_entry(entry, config.dim)
                except ProtocolError:
                    entry = None
            if entry is None:
                self.damaged += 1
                break
            self.entries.append(entry)
        self.synced_end = self.end
        self._stale_tail = sorted(
            k[1] for k in disk if isinstance(k, tuple) and len(k) == 2 and k[0] == "log"
            and isinstance(k[1], int) and k[1] > self.end) if self.damaged else []

    # ------------------------------------------------------------------ reading

    @property
    def end(self) -> int:
        """Log positions ever appended (the next entry's position)."""
        return self.start + len(self.entries)

    @property
    def snap_end(self) -> int:
        """The end of the latest snapshot (0 without one)."""
        return self.snap[0] if self.snap is not None else 0

    def term_at(self, pos: int) -> int | None:
        """Term of the entry at ``pos``; 0 before the log; None if compacted away or not
        appended yet."""
        if pos < 0:
            return 0
        if pos >= self.end:
            return None
        if pos >= self.start:
            return self.entries[pos - self.start][0]
        if pos == self.start - 1:
            return self.start_term
        return None

    def last_term(self) -> int:
        """The term of the last entry (0 for an empty log)."""
        return self.term_at(self.end - 1) or 0

    def entry(self, pos: int) -> Entry:
        """The entry at ``pos`` (held: ``start <= pos < end``)."""
        return self.entries[pos - self.start]

    def slice(self, lo: int, hi: int) -> list[Entry]:
        """The entries at positions [lo, hi) (held)."""
        return self.entries[lo - self.start : hi - self.start]

    def durable_end(self) -> int:
        """Log positions this replica may claim to hold durably (under ``sync="tick"``
        the tail may not be synced yet)."""
        return min(self.synced_end, self.end)

    # ------------------------------------------------------------------ a leader's entries

    def anchor(self, prev_end: int, prev_term: int, count: int) -> int:
        """Where ``count`` entries a leader sent after the entry ``(prev_end - 1,
        prev_term)`` go: at ``prev_end`` when the entry there agrees or is not held (it
        is compacted: committed, hence equal); :data:`GAP` when ``prev_end`` is past
        this log's end; :data:`CONFLICT` when the entry there has another term (it came
        from a deposed leader)."""
        if prev_end > self.end:
            return GAP
        mine = self.term_at(prev_end - 1)
        if mine is not None and mine != prev_term:
            return CONFLICT
        return prev_end

    def check_append(self, m: Append, start: int, commit: int,
                     check: Callable[[Entry, int], None] = check_entry) -> None:
        """Refuse (raise a ``ProtocolError``) an Append that no correct leader sends, before
        anything changes: an entry whose body is damaged (``check``: by default
        :func:`~.entries.check_entry`; a replica passes its applier's, which may keep what
        it decoded for the apply), entry terms that decrease or exceed the leader's, or an
        entry that contradicts one known to be committed (below ``commit``; ``start`` is
        what :meth:`anchor` returned). The leader's retransmission sends the entries
        again."""
        if m.prev_end < 0 or m.commit < 0:
            raise ProtocolError(f"Append from {m.leader} names log position {m.prev_end} and "
                                f"commit {m.commit}: positions are never negative")
        last = m.prev_term
        for entry in m.entries:
            check(entry, self.dim)
            if not last <= entry[0] <= m.term:
                raise DamagedEntry(f"Append of term {m.term} carries an entry of term "
                                   f"{entry[0]} after one of term {last}: entry terms never "
                                   "decrease and never exceed the leader's")
            last = entry[0]
        if start < 0:
            return  # a gap or a conflict: answered without touching the log
        stop = min(commit, self.end, start + len(m.entries))
        for pos in range(max(start, self.start), stop):
            if self.term_at(pos) != m.entries[pos - start][0]:
                raise ProtocolError(f"Append from {m.leader} (term {m.term}) contradicts "
                                    f"committed entry {pos}: refused")

    def conflict_hint(self, prev_end: int, commit: int) -> int:
        """After a :data:`CONFLICT` at ``prev_end``: where the leader should resend from,
        the first entry of the conflicting term (never below ``commit`` or ``start``), so
        a deposed leader's run of entries is skipped in one round trip."""
        mine = self.term_at(prev_end - 1)
        back = prev_end - 1
        while back > max(commit, self.start) and self.term_at(back - 1) == mine:
            back -= 1
        return back

    def accept(self, start: int, entries: Sequence[Entry], out: list,
               truncate: Callable[[int, list], None]) -> None:
        """Store a leader's ``entries``, the first at ``start`` (what :meth:`anchor`
        returned): compacted positions and duplicates (same position, same term: the
        same entry) are skipped; at the first entry whose term differs, ``truncate(pos,
        out)`` drops this log from ``pos`` on (the owner's call: it must also undo what it
        applied there), and the rest is appended."""
        pos = start
        for entry in entries:
            if pos < self.start:  # compacted here: committed, hence identical
                pos += 1
                continue
            if pos < self.end:
                if self.term_at(pos) == entry[0]:
                    pos += 1
                    continue
                truncate(pos, out)
            self.append(tuple(entry), out)  # type: ignore[arg-type]
            pos += 1

    # ------------------------------------------------------------------ changes

    def append(self, entry: Entry, out: list) -> int:
        """Append ``entry`` (synced at once under ``sync="always"``); its position."""
        if self._stale_tail:
            self.scrub_stale(out)
        pos = self.end
        self.entries.append(entry)
        out.append(DurableWrite(("log", pos), wal_record(entry)))
        if self.sync_each:
            self.sync(out)
        return pos

    def sync(self, out: list) -> None:
        """Make every record written so far durable."""
        out.append(Sync())
        self.synced_end = self.end

    def scrub_stale(self, out: list) -> None:
        """Erase the records recovery found behind a damaged one."""
        for q in self._stale_tail:
            out.append(DurableWrite(("log", q), None))
        self._stale_tail = []

    def truncate(self, pos: int, out: list) -> None:
        """Drop the entries from ``pos`` on, erasing their records: a deposed leader's
        entries (the caller checked they are not committed), or a damaged entry and
        what follows it, cut like a torn tail."""
        for p in range(pos, self.end):
            out.append(DurableWrite(("log", p), None))
        del self.entries[max(pos - self.start, 0):]
        self.synced_end = min(self.synced_end, pos)

    def drop_all(self, fixes: list) -> None:
        """Forget the snapshot and the log built on it (the snapshot does not load):
        start over empty."""
        for q in range(self.start, self.end):
            fixes.append(DurableWrite(("log", q), None))
        self.snap, self.entries, self.start, self.start_term = None, [], 0, 0
        self.synced_end = 0
        fixes += [DurableWrite("snapshot", None), DurableWrite("log_start", 0),
                  DurableWrite("start_term", 0)]

    def save_snapshot(self, end: int, data: bytes, out: list) -> None:
        """Record the snapshot of the state after the entries [0, end)."""
        self.snap = (end, self.term_at(end - 1) or 0, data)
        out.append(DurableWrite("snapshot", self.snap))

    def compact(self, start: int, out: list) -> None:
        """Drop the entries before ``start`` (the snapshot holds them)."""
        if start <= self.start:
            return
        self.start_term = self.term_at(start - 1) or 0
        for p in range(self.start, start):
            out.append(DurableWrite(("log", p), None))
        del self.entries[: start - self.start]
        self.start = start
        out.append(DurableWrite("log_start", start))
        out.append(DurableWrite("start_term", self.start_term))

    def install(self, end: int, term: int, data: bytes, out: list) -> None:
        """Replace the log by a leader's snapshot ``(end, term, data)``, keeping the
        entries after it if this log agrees with it at ``end - 1`` (Raft's rule: they
        may be newer than the snapshot). Written, not synced."""
        self.scrub_stale(out)
        keep_tail = end <= self.end and self.term_at(end - 1) == term
        tail = self.entries[end - self.start :] if keep_tail and end >= self.start else []
        for p in range(self.start, self.end):
            out.append(DurableWrite(("log", p), None))
        self.entries = list(tail)
        for i, entry in enumerate(self.entries):
            out.append(DurableWrite(("log", end + i), wal_record(entry)))
        self.start, self.start_term = end, term
        self.snap = (end, term, data)
        out += [DurableWrite("snapshot", self.snap), DurableWrite("log_start", end),
                DurableWrite("start_term", term)]

"""Recovery: the index rebuilt from the durable state, and what a replica does when
that state is damaged.

A replica rebuilds its index from its snapshot and committed log when it starts, when
a deposed leader's applied entries are overwritten, when its index refuses a committed
entry or a repair (damage behind the protocol's back), and (if the policy says so) when
it is elected. A rebuild never raises:

* a snapshot that does not load is dropped with the log that builds on it: the replica
  starts over empty (term and vote kept) and the leader sends it a snapshot;
* an entry the rebuilt index refuses is damaged: the log is cut there like a torn tail,
  the commit position moves back to it, and the leader sends the rest again (once the
  follower reports the gap: :meth:`.progress.Progress.refused`).

The effects that repair the disk (erased records, a lower commit position) are kept in
``fixes`` until the callback that found the damage emits them (:meth:`Recovery.fix_disk`;
at construction, ``on_start`` does).

Why a collaborator of its own: it is the one place the log, the commit position and the
applier are brought back into agreement after something went wrong, which the normal
path (append, commit, apply) never needs to consider.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from graphrep.errors import GraphrepError
from graphrep.protocol.config import LEADER
from graphrep.sansio import DurableWrite, Metric

if TYPE_CHECKING:
    from graphrep.protocol.appliers import Applier
    from graphrep.protocol.replica import Replica

__all__ = ["Recovery"]


class Recovery:
    """``Recovery(replica)``: rebuilding and damage handling of one replica."""

    def __init__(self, replica: Replica) -> None:
        self.r = replica
        self.fixes: list = []
        self.rebuilds = 0
        """Rebuilds after start (not counting the one at start or at an election)."""

    def rebuild(self, out: list, end: int | None = None) -> None:
        """Rebuild the index (up to ``end`` if given) and emit what it found to fix."""
        self.rebuild_index(end=end)
        self.fix_disk(out)

    def rebuild_index(self, count: bool = True, end: int | None = None) -> None:
        """The index from the snapshot and the committed log, up to ``end`` if given
        (see the module docstring); the entries are applied through the replica's hook
        points, so measuring them is the replica's business."""
        r = self.r
        if count:
            self.rebuilds += 1
        a = r.applier
        a.reset()
        snap = r.log.snap
        if snap is not None:
            try:
                index = a.load(snap[2])
            except GraphrepError:
                self.lose_snapshot()
            else:
                a.adopt(index, snap[0])
        if not a.followers_apply and r.role != LEADER:
            return  # its index is whatever snapshot it was last sent
        target = min(r.commit if end is None else end, r.log.end)
        if target > a.applied:
            r._replay_bulk(target)
        try:
            r._apply_to(target)
        except GraphrepError:
            self.cut_log(a.applied)

    def rebuilt(self, end: int) -> Applier | None:
        """A scratch applier (of the replica's class) holding the state the snapshot and
        the log up to ``end`` give, or None if an entry does not apply to it. The
        replica's own index is untouched; the scratch's work counts as the replica's."""
        r = self.r
        fresh = type(r.applier)(r.config)
        if r.log.snap is not None:
            fresh.adopt(fresh.load(r.log.snap[2]), r.log.snap_end)
        try:
            r._apply_to(end, fresh)
        except GraphrepError:
            return None
        finally:
            r.applier.work += fresh.work
        return fresh

    def lose_snapshot(self) -> None:
        """The durable snapshot does not load (a damaged disk): start over as an empty
        replica (term and vote kept) that the leader sends a snapshot."""
        r = self.r
        r.log.drop_all(self.fixes)
        r.commit = 0
        r.verified = (-1, 0)
        self.fixes += [DurableWrite("commit", 0), Metric("damaged_snapshots", 1.0)]

    def cut_log(self, pos: int) -> None:
        """The entry at ``pos`` does not apply to the state the snapshot and the entries
        before it give: it is damaged. Erase it and what follows, and move the commit
        position back to it."""
        r = self.r
        r.log.truncate(pos, self.fixes)
        r.verified = (r.verified[0], min(r.verified[1], pos))
        if r.commit > pos:
            r.commit = pos
            self.fixes.append(DurableWrite("commit", pos))
        self.fixes.append(Metric("damaged_entries", 1.0))

    def fix_disk(self, out: list) -> None:
        """Emit what :meth:`lose_snapshot` and :meth:`cut_log` decided."""
        if self.fixes:
            out.extend(self.fixes)
            self.fixes = []

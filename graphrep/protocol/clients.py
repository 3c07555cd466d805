"""What a replica answers its clients: write acknowledgements and searches.

A write is acknowledged once its *concern* holds (:class:`~graphrep.protocol.config.
Concern`): ``one`` once the leader holds it durably, ``majority`` once it is committed,
``all`` once it is committed and every replica holds it durably. Until then it waits in
``pending``; a leader that steps down drops what waits (clients retry, and their writes
may or may not survive). An ``ok`` names the ``(term, position)`` of a log entry whose
prefix holds the write (:meth:`Clients.entry_holding`), a pair every replica that stores
the entry holds.

A search carries the client's session token ``min_seq`` (one past the highest position
it was acknowledged): a replica that has not applied that far answers ``stale`` rather
than a result that may miss the client's own writes (read-your-writes).
:meth:`Clients.can_answer` is that check, in one place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from graphrep.errors import GraphrepError
from graphrep.protocol.config import Concern
from graphrep.protocol.messages import ClientSearch, SearchReply, WriteReply, vector_of

if TYPE_CHECKING:
    from graphrep.protocol.replica import Replica

__all__ = ["Clients"]

Pending = tuple[int, int, str, int, str]
"""A write waiting for its concern: ``(pos, term, client, req, concern)``."""


class Clients:
    """``Clients(replica)``: the client-facing side of one replica."""

    def __init__(self, replica: Replica) -> None:
        self.r = replica
        self.pending: list[Pending] = []

    # ------------------------------------------------------------------ writes

    def reply(self, out: list, client: str, req: int, status: str, term: int | None = None,
              pos: int = -1, error: str = "") -> None:
        """A client's write reply. An ``ok`` names the (term, position) of a log entry
        whose prefix holds the write; other replies name this replica's term and
        position -1 (``not_leader`` names the leader it follows, if any)."""
        r = self.r
        r.send(out, client, WriteReply(
            r.config.shard, req, status, r.term if term is None else term, pos,
            r.leader if status == "not_leader" else r.name, error))

    def entry_holding(self, pos: int) -> tuple[int, int]:
        """The (term, position) an acknowledgement of the write at log position ``pos``
        names: that entry itself while the log holds it, else (compacted away, or the
        write came in a snapshot) the snapshot's last entry, whose prefix holds the write.
        Either way a pair every replica that stores the entry holds, never a guess."""
        log = self.r.log
        term = log.term_at(pos)
        if term is not None or log.snap is None:
            return (term or 0), pos  # (compaction follows a snapshot: never None here)
        return log.snap[1], log.snap[0] - 1

    def ack_when_ready(self, out: list, term: int, pos: int, client: str, req: int,
                       concern: str) -> None:
        """Acknowledge the write held by entry (term, pos) once ``concern`` holds for it;
        the term is recorded now, so a reply sent after compaction still names it."""
        if self.satisfied(pos, concern):
            self.reply(out, client, req, "ok", term, pos)
        else:
            self.pending.append((pos, term, client, req, concern))

    def satisfied(self, pos: int, concern: str) -> bool:
        """Whether ``concern`` holds for the entry at ``pos`` (on the leader)."""
        r = self.r
        if concern == Concern.ONE:
            return pos < r.log.durable_end()
        if concern == Concern.MAJORITY:
            return pos < r.commit
        return r.tracker.all_hold(pos) and pos < r.commit and pos < r.log.durable_end()

    def flush(self, out: list) -> None:
        """Acknowledge every waiting write whose concern holds now."""
        keep = []
        for pos, term, client, req, concern in self.pending:
            if self.satisfied(pos, concern):
                self.reply(out, client, req, "ok", term, pos)
            else:
                keep.append((pos, term, client, req, concern))
        self.pending = keep

    # ------------------------------------------------------------------ searches

    def can_answer(self, min_seq: int) -> bool:
        """Whether this replica's index reflects the log up to the session token."""
        return self.r.applied >= min_seq

    def on_search(self, now: int, src: str, m: ClientSearch, out: list) -> None:
        """Answer a search from the index, once the committed log is applied: ``stale``
        if the index is behind the client's token, ``error`` for a query the index
        refuses."""
        r = self.r
        r.catch_up(out)
        status, ids, dists = "ok", b"", b""
        if not self.can_answer(m.min_seq):
            status = "stale"
        elif len(r.index):
            try:
                q = vector_of(m.vector, r.config.dim)
                found, far = r.index.search(q, k=m.k, L=max(r.config.search_L, m.k))
                ids = np.asarray(found, dtype="<i8").tobytes()
                dists = np.asarray(far, dtype="<f4").tobytes()
            except GraphrepError as exc:
                status, ids = "error", str(exc).encode()
        r.send(out, src, SearchReply(r.config.shard, m.req, status, ids, r.applied, r.leader,
                                          dists))

"""The current term and the vote cast in it (Raft's durable "hard state" besides the log).

Terms fence deposed leaders: every message carries its sender's term, a replica never
follows a leader of an older term, and a replica that sees a newer term adopts it. A
replica votes at most once per term. Both rules hold only if the term and the vote
survive a crash, so every change here comes with the ``DurableWrite`` effects that save
it; the replica syncs them before it sends anything that depends on them.

:class:`Terms` is one of the replica's seams (:class:`graphrep.protocol.seams.Seams`):
:meth:`Terms.admits` is the one place a leader's term is checked against the current
one, so a variant that breaks the fence (a planted bug) replaces that method only.

Invariant (without such a variant): ``term`` never decreases.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from graphrep.sansio import DurableWrite

__all__ = ["Terms"]


class Terms:
    """``Terms(disk)``: the term and vote recovered from ``disk`` (0 and None at first)."""

    def __init__(self, disk: Mapping[Hashable, Any]) -> None:
        self.term: int = int(disk.get("term", 0))
        self.voted_for: str | None = disk.get("voted_for")

    def admits(self, term: int) -> bool:
        """Whether a leader's message of ``term`` is followed: not if ``term`` is older
        than the current one. (A newer term is adopted afterwards, by :meth:`adopt`.)"""
        return term >= self.term

    def adopt(self, term: int, out: list) -> bool:
        """Adopt ``term`` if it is newer (no vote cast in it yet), writing both; whether
        it was newer (the replica then steps down)."""
        if term <= self.term:
            return False
        self.term = term
        self.voted_for = None
        out.append(DurableWrite("term", term))
        out.append(DurableWrite("voted_for", None))
        return True

    def stand(self, me: str, out: list) -> None:
        """Start the next term as a candidate that votes for itself."""
        self.term += 1
        self.voted_for = me
        out.extend([DurableWrite("term", self.term), DurableWrite("voted_for", me)])

    def may_vote_for(self, candidate: str, term: int) -> bool:
        """Whether a vote for ``candidate`` in ``term`` keeps one vote per term (the log
        comparison is the replica's)."""
        return term == self.term and self.voted_for in (None, candidate)

    def vote(self, candidate: str, out: list) -> None:
        """Cast this term's vote for ``candidate``."""
        self.voted_for = candidate
        out.append(DurableWrite("voted_for", candidate))

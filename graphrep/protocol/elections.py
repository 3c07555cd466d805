"""Elections: the election clock, standing as a candidate, and voting.

A follower that has not heard from a leader for its election timeout (drawn anew from
``election_timeout_ns`` each time, so that candidates rarely collide) stands in the next
term. A replica grants its vote (at most one per term, :class:`~.terms.Terms`) only to a
candidate whose log is at least as up to date as its own, last term first, then length:
the election restriction, which makes every elected leader hold every committed entry.
A candidate with a majority of votes becomes leader (:meth:`.Replica.become_leader`).

Why a term-based election rather than leases from a membership service: it needs no
other component and no clock agreement (the simulator skews clocks), and the terms it
produces are the fencing tokens the protocol needs anyway.

Why a collaborator of its own: voting reads the log and the term and changes nothing
else of the replica but its role, while becoming leader or follower changes everything
(the replica's own business). Here is the state only an election needs: the clock
(``heard_at``, ``timeout``) and the votes received.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from graphrep.protocol.config import CANDIDATE, FOLLOWER, LEADER
from graphrep.protocol.messages import RequestVote, VoteReply

if TYPE_CHECKING:
    from graphrep.protocol.replica import Replica

__all__ = ["Elections"]


class Elections:
    """``Elections(replica)``: the elections of one replica."""

    def __init__(self, replica: Replica) -> None:
        self.r = replica
        self.heard_at = 0
        """When a leader (or a candidate given a vote) was last heard."""
        self.timeout = 0
        self.votes: set[str] = set()

    def draw_timeout(self) -> int:
        """A new election timeout, from the replica's random stream."""
        lo, hi = self.r.config.election_timeout_ns
        return int(self.r.rng.integers(lo, hi + 1))

    def heard(self, now: int) -> None:
        """A leader was heard: the election clock starts over."""
        self.heard_at = now

    def restart_clock(self, now: int) -> None:
        """Start the clock with a new timeout (at start, and when standing)."""
        self.heard_at = now
        self.timeout = self.draw_timeout()

    def due(self, now: int) -> bool:
        """Whether the election timeout has passed without a leader."""
        return now - self.heard_at >= self.timeout

    def stand(self, now: int, out: list) -> None:
        """Become a candidate in the next term: vote for itself (durably) and ask the
        others."""
        r = self.r
        r.role = CANDIDATE
        r.terms.stand(r.name, out)
        self.votes = {r.name}
        r.leader = ""
        self.restart_clock(now)
        r.log.sync(out)
        last_term = r.log.last_term()
        for p in r.peers:
            r.send(out, p, RequestVote(r.config.shard, r.term, r.name, r.log.end, last_term))
        if len(self.votes) >= r.majority:  # a shard of one
            r.become_leader(now, out)

    def on_request_vote(self, now: int, src: str, m: RequestVote, out: list) -> None:
        """A candidate asks for this replica's vote."""
        r = self.r
        r.see_term(m.term, out)
        if r.role == LEADER:
            granted = False
        else:
            up_to_date = (m.last_term, m.last_end) >= (r.log.last_term(), r.log.end)
            granted = r.terms.may_vote_for(m.candidate, m.term) and up_to_date
        if granted:
            if r.role != FOLLOWER:
                r.become_follower()
            r.terms.vote(m.candidate, out)
            self.heard_at = now
            r.log.sync(out)
        r.send(out, src, VoteReply(r.config.shard, r.term, granted))

    def on_vote(self, now: int, src: str, m: VoteReply, out: list) -> None:
        """A vote (or a refusal) for this candidate."""
        r = self.r
        if m.term > r.term:
            r.see_term(m.term, out)
            return
        if r.role != CANDIDATE or m.term != r.term or not m.granted:
            return
        self.votes.add(src)
        if len(self.votes) >= r.majority:
            r.become_leader(now, out)

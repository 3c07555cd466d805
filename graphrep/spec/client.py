"""The client of a specification world: the process on the ``client`` node.

It sends the world's writes and searches to a shard's replicas, follows ``not_leader``
hints (up to three hops), and keeps what a client of the real system would know: the
ids it wrote, the writes acknowledged to it (:class:`Ack`), its session token per shard
(one past the highest acknowledged log position) and counts of its searches by answer.
As each answer arrives it checks the two invariants that are about answers
(``durability`` and ``read_your_writes``, see :mod:`graphrep.spec.invariants`) and
records what broke them; the world's run-time check raises it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from graphrep.errors import InvariantViolation, ProtocolError
from graphrep.protocol.messages import (
    ClientSearch,
    ClientWrite,
    SearchReply,
    WriteReply,
    decode,
    encode,
)
from graphrep.sansio import BaseProcess, Send
from graphrep.spec import invariants

if TYPE_CHECKING:
    from graphrep.spec.world import SpecWorld

__all__ = ["CLIENT", "Ack", "SpecClient"]

CLIENT = "client"
"""The client's node name."""


@dataclass(frozen=True)
class Ack:
    """A write acknowledged to the client: by ``node`` at virtual time ``at``, as log
    entry (``term``, ``pos``) of ``shard``."""

    shard: int
    op: str
    id: int
    term: int
    pos: int
    concern: str
    node: str
    at: int


class SpecClient(BaseProcess):
    """The client node's process (see the module docstring). The world's steps call
    :meth:`insert`, :meth:`delete` and :meth:`search`; the simulator delivers the
    answers to :meth:`on_message`."""

    def __init__(self, world: SpecWorld) -> None:
        self.world = world
        self.requests: dict[int, list] = {}  # req -> [message, hops]
        self.read_after: dict[int, int] = {}  # write req -> replica to search once acked
        self.next_req = 1
        self.next_id = 0
        self.inserted: dict[int, list[int]] = {s: [] for s in world.placement}
        """Ids sent for insertion, per shard, in the order sent."""
        self.delete_sent: set[int] = set()  # membership only
        self.acks: list[Ack] = []
        self.token: dict[int, int] = {s: 0 for s in world.placement}
        self.searches = {"sent": 0, "ok": 0, "stale": 0}
        self.violations: list[InvariantViolation] = []
        """Invariants broken by answers, in the order the answers arrived."""

    # ------------------------------------------------------------------ requests

    def insert(self, shard: int, replica: int, concern: str, read: int = -1) -> None:
        """Insert a new id (its vector: ``world.vector(id)``) at the shard's
        ``replica``-th replica; ``read`` >= 0: search for it at the ``read``-th replica
        once it is acknowledged."""
        id_ = self.next_id
        self.next_id += 1
        self.inserted[shard].append(id_)
        vec = self.world.vector(id_).astype("<f4").tobytes()
        req = self._req()
        if read >= 0:
            self.read_after[req] = read
        self._request(replica, ClientWrite(shard, req, "insert", id_, vec, concern))

    def delete(self, shard: int, replica: int, concern: str, pick: int) -> None:
        """Delete the ``pick``-th id inserted into ``shard`` (nothing if there is none)."""
        ids = self.inserted[shard]
        if not ids:
            return
        id_ = ids[pick % len(ids)]
        self.delete_sent.add(id_)
        self._request(replica, ClientWrite(shard, self._req(), "delete", id_, b"", concern))

    def search(self, shard: int, replica: int, query: np.ndarray) -> None:
        """Search for ``query`` (top 5) at the shard's ``replica``-th replica with the
        shard's session token."""
        q = query.astype("<f4").tobytes()
        self.searches["sent"] += 1
        self._request(replica, ClientSearch(shard, self._req(), q, 5, self.token[shard]))

    def _req(self) -> int:
        self.next_req += 1
        return self.next_req

    def _request(self, replica: int, msg: Any) -> None:
        """Send a request to the ``replica``-th replica of the message's shard (a client
        addresses only the shard's replicas: anything else would itself carry the shard's
        data out of its regions)."""
        self.world.sim.send(CLIENT, self._register(msg, replica), encode(msg))

    def _register(self, msg: Any, replica: int) -> str:
        """Note a request (for its reply) and say which node it goes to."""
        self.requests[msg.req] = [msg, 0]
        replicas = self.world.placement[msg.shard].replicas
        return replicas[replica % len(replicas)]

    # ------------------------------------------------------------------ answers

    def on_message(self, now: int, src: str, payload: Any, size: int) -> list:
        try:
            msg = decode(payload)
        except ProtocolError:
            return []
        entry = self.requests.get(msg.req)
        if entry is None:
            return []
        if isinstance(msg, WriteReply):
            if msg.status == "not_leader" and msg.leader and entry[1] < 3:
                entry[1] += 1
                replicas = self.world.placement[msg.shard].replicas
                if msg.leader in replicas:
                    data = encode(entry[0])
                    return [Send(msg.leader, data, len(data))]
                return []
            if msg.status == "ok":
                self._on_ack(now, src, entry[0], msg)
                read = self.read_after.pop(msg.req, None)
                if read is not None:
                    return [self._read_after_write(entry[0], read)]
        elif isinstance(msg, SearchReply):
            self._on_search_reply(src, entry[0], msg)
        return []

    def _on_ack(self, now: int, src: str, req: ClientWrite, msg: WriteReply) -> None:
        ack = Ack(req.shard, req.op, req.id, msg.term, msg.seq, req.concern, src, now)
        self.acks.append(ack)
        self.token[req.shard] = max(self.token[req.shard], msg.seq + 1)
        broken = invariants.ack_durability(self.world, ack)
        if broken is not None:
            self.violations.append(broken)

    def _read_after_write(self, write: ClientWrite, replica: int) -> Send:
        """The search for a vector just written, with the new token."""
        msg = ClientSearch(write.shard, self._req(), write.vector, 5, self.token[write.shard])
        to = self._register(msg, replica)
        self.searches["sent"] += 1
        data = encode(msg)
        return Send(to, data, len(data))

    def _on_search_reply(self, src: str, req: ClientSearch, msg: SearchReply) -> None:
        if msg.status == "stale":
            self.searches["stale"] += 1
            return
        if msg.status != "ok":
            return
        self.searches["ok"] += 1
        self.violations.extend(invariants.search_answer_problems(self.world, src, req, msg))

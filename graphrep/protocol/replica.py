"""A replica of one shard under the ``leader`` policy: a sans-IO state machine.

The leader runs every write on its ``VamanaIndex`` and appends the resulting edge delta
to a replicated log; followers apply the log in order, so their graphs equal the
leader's without a single distance computation. Log replication, commit and failover
follow Raft, because its guarantees are exactly the ones a replicated index needs:

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
its index from its committed log, which costs applies, not distance computations.

Durability: the log, the term and the vote are written with ``DurableWrite`` and made
durable with ``Sync`` before any message or acknowledgement that depends on them is
sent. A restarted replica rebuilds its index from the durable log (up to the last
commit position it recorded) and catches up from the leader.

Timers are periodic ticks (a follower checks how long it has not heard from a leader;
a leader sends heartbeats and retransmits): the simulator's ``quiesce`` ignores
periodic timers, so a quiet cluster is recognisable.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from graphrep.ann import EdgeDelta, VamanaIndex
from graphrep.errors import GraphrepError, ProtocolError
from graphrep.protocol.messages import (
    DELTA,
    NOOP,
    Append,
    AppendReply,
    ClientSearch,
    ClientWrite,
    Entry,
    RequestVote,
    SearchReply,
    VoteReply,
    WriteReply,
    decode,
    encode,
)
from graphrep.sansio import DurableWrite, Metric, Send, SetTimer, Sync

__all__ = ["CANDIDATE", "FOLLOWER", "LEADER", "Replica", "ReplicaConfig"]

FOLLOWER, CANDIDATE, LEADER = "follower", "candidate", "leader"
CONCERNS = ("one", "majority", "all")
MS = 1_000_000


@dataclass(frozen=True)
class ReplicaConfig:
    """What every replica of a shard agrees on. Times in virtual nanoseconds."""

    replicas: tuple[str, ...]
    dim: int
    shard: int = 0
    metric: str = "l2"
    R: int = 32
    L: int = 64
    alpha: float = 1.2
    tick_ns: int = 10 * MS
    """Heartbeat and retransmission check period of a leader, election check of others."""
    election_timeout_ns: tuple[int, int] = (150 * MS, 300 * MS)
    retransmit_ns: int = 50 * MS
    window: int = 256
    """Entries a leader sends to a follower beyond what it has acknowledged."""
    max_batch: int = 64
    """Entries per Append message."""
    search_L: int = 64
    index_seed: int = 0
    bug: str = ""
    """A planted bug, for the specification's mutation tests only (empty: none)."""

    def index(self) -> VamanaIndex:
        return VamanaIndex(self.dim, self.metric, R=self.R, L=self.L, alpha=self.alpha,
                           seed=self.index_seed)


class Replica:
    """One replica of one shard (see the module docstring). Built by the driver as
    ``Replica(name, disk, config, rng)``; ``rng`` (a numpy Generator from the driver)
    draws election timeouts, the only randomness the protocol needs."""

    def __init__(self, name: str, disk: Mapping[Hashable, Any], config: ReplicaConfig,
                 rng: np.random.Generator) -> None:
        if name not in config.replicas:
            raise ProtocolError(f"replica {name!r} is not in the shard's set {config.replicas}")
        self.name = name
        self.config = config
        self.peers = [r for r in config.replicas if r != name]
        self.majority = len(config.replicas) // 2 + 1
        self.rng = rng
        # durable state, recovered from the disk
        self.term: int = int(disk.get("term", 0))
        self.voted_for: str | None = disk.get("voted_for")
        self.log: list[Entry] = []
        end = 0
        while ("log", end) in disk:
            self.log.append(disk[("log", end)])
            end += 1
        self.commit = min(int(disk.get("commit", 0)), len(self.log))
        # volatile state
        self.role = FOLLOWER
        self.leader: str = ""
        self.index = config.index()
        self.applied = 0  # log entries applied to the index
        self.id_pos: dict[int, int] = {}  # id -> log position of its insert / delete
        self.deleted_pos: dict[int, int] = {}
        self.next: dict[str, int] = {}
        self.match: dict[str, int] = {}
        self.progress_at: dict[str, int] = {}
        self.votes: set[str] = set()
        self.pending: list[tuple[int, str, int, str]] = []  # (pos, client, req, concern)
        self.heard_at = 0
        self.timeout = 0
        self.errors = 0  # messages rejected as malformed / unsupported
        self.rebuilds = 0
        self._apply_to(self.commit)

    # ------------------------------------------------------------------ sans-IO entry points

    def on_start(self, now: int) -> list:
        self.heard_at = now
        self.timeout = self._draw_timeout()
        return [SetTimer("tick", self.config.tick_ns, periodic=True)]

    def on_timer(self, now: int, name: Hashable) -> list:
        out: list = []
        if self.role == LEADER:
            for p in self.peers:
                if (self.match[p] < len(self.log)
                        and now - self.progress_at[p] >= self.config.retransmit_ns):
                    self.next[p] = self.match[p]  # resend what was not acknowledged
                    self.progress_at[p] = now
                self._send_append(p, out, heartbeat=True)
        elif now - self.heard_at >= self.timeout:
            self._start_election(now, out)
        return out

    def on_message(self, now: int, src: str, payload: Any, size: int) -> list:
        try:
            msg = decode(payload)
            if msg.shard != self.config.shard:
                raise ProtocolError(f"message for shard {msg.shard}, this is shard "
                                    f"{self.config.shard}")
        except ProtocolError as exc:
            self.errors += 1
            return [Metric("protocol_errors", 1.0),
                    Metric(f"protocol_error:{type(exc).__name__}", 1.0)]
        handler = self._handlers.get(type(msg))
        out: list = []
        handler(self, now, src, msg, out)
        return out

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
            self._ack_when_ready(out, known, src, m.req, m.concern)
            return
        try:
            if m.op == "insert":
                vec = np.frombuffer(m.vector, dtype="<f4")
                delta = self.index.insert(m.id, vec)
            else:
                delta = self.index.delete(m.id)
        except GraphrepError as exc:
            self._reply(out, src, m.req, "error", error=f"{type(exc).__name__}: {exc}")
            return
        pos = self._append_local((self.term, DELTA, delta.to_bytes()), out)
        self.applied = len(self.log)
        (self.id_pos if m.op == "insert" else self.deleted_pos)[m.id] = pos
        out.append(Metric("appended", float(pos)))
        parts = delta.size_by_part()
        out.append(Metric("delta_bytes_vector", float(parts["vector"])))
        out.append(Metric("delta_bytes_edges", float(parts["edges"])))
        self._ack_when_ready(out, pos, src, m.req, m.concern)
        for p in self.peers:
            self._send_append(p, out)

    def _on_search(self, now: int, src: str, m: ClientSearch, out: list) -> None:
        status, ids = "ok", b""
        if self.applied < m.min_seq:
            status = "stale"
        elif len(self.index) == 0:
            ids = b""
        else:
            try:
                q = np.frombuffer(m.vector, dtype="<f4")
                found, _ = self.index.search(q, k=m.k, L=max(self.config.search_L, m.k))
                ids = np.asarray(found, dtype="<i8").tobytes()
            except GraphrepError as exc:
                status, ids = "error", str(exc).encode()
        reply = SearchReply(self.config.shard, m.req, status, ids, self.applied, self.leader)
        data = encode(reply)
        out.append(Send(src, data, len(data)))

    def _reply(self, out: list, client: str, req: int, status: str, pos: int = -1,
               error: str = "") -> None:
        term = self.log[pos][0] if 0 <= pos < len(self.log) else self.term
        data = encode(WriteReply(self.config.shard, req, status, term, pos,
                                 self.leader if status == "not_leader" else self.name, error))
        out.append(Send(client, data, len(data)))

    def _ack_when_ready(self, out: list, pos: int, client: str, req: int,
                        concern: str) -> None:
        if self._satisfied(pos, concern):
            self._reply(out, client, req, "ok", pos)
        else:
            self.pending.append((pos, client, req, concern))

    def _satisfied(self, pos: int, concern: str) -> bool:
        if concern == "one":
            return pos < len(self.log)  # durable here: the append synced before this
        if concern == "majority":
            return pos < self.commit
        return all(self.match[p] > pos for p in self.peers) and pos < self.commit

    def _flush_pending(self, out: list) -> None:
        keep = []
        for pos, client, req, concern in self.pending:
            if self._satisfied(pos, concern):
                self._reply(out, client, req, "ok", pos)
            else:
                keep.append((pos, client, req, concern))
        self.pending = keep

    # ------------------------------------------------------------------ log replication

    def _append_local(self, entry: Entry, out: list) -> int:
        pos = len(self.log)
        self.log.append(entry)
        out.append(DurableWrite(("log", pos), entry))
        out.append(Sync())
        return pos

    def _send_append(self, peer: str, out: list, heartbeat: bool = False) -> None:
        nxt = self.next[peer]
        if self.config.bug == "no_retransmit" and nxt < self.match[peer]:
            return
        stop = min(len(self.log), nxt + self.config.max_batch,
                   self.match[peer] + self.config.window)
        if stop <= nxt and not heartbeat:
            return
        entries = self.log[nxt:stop] if stop > nxt else []
        prev_term = self.log[nxt - 1][0] if nxt > 0 else 0
        data = encode(Append(self.config.shard, self.term, self.name, nxt, prev_term,
                             list(entries), self.commit))
        out.append(Send(peer, data, len(data)))
        self.next[peer] = max(nxt, stop)

    def _on_append(self, now: int, src: str, m: Append, out: list) -> None:
        if m.term < self.term and self.config.bug != "accept_stale_term":
            self._send(out, src, AppendReply(self.config.shard, self.term, False, -1))
            return
        self._see_term(m.term, out)
        if self.role != FOLLOWER:
            self._become_follower()
        self.leader = src
        self.heard_at = now
        if m.prev_end > len(self.log):  # a gap: ask for what is missing
            self._send(out, src, AppendReply(self.config.shard, self.term, False,
                                             len(self.log)))
            return
        if m.prev_end > 0 and self.log[m.prev_end - 1][0] != m.prev_term:
            # a conflict: our entry there came from a deposed leader; back up one term
            back = m.prev_end - 1
            bad_term = self.log[back][0]
            while back > self.commit and self.log[back - 1][0] == bad_term:
                back -= 1
            self._send(out, src, AppendReply(self.config.shard, self.term, False, back))
            return
        pos = m.prev_end
        for entry in m.entries:
            entry = tuple(entry)
            if pos < len(self.log):
                if self.log[pos][0] == entry[0]:
                    pos += 1
                    continue  # a duplicate: same position, same term, same entry
                self._truncate(pos, out)
            self._append_local(entry, out)  # type: ignore[arg-type]
            pos += 1
        end = m.prev_end + len(m.entries)
        if m.commit > self.commit:
            self.commit = min(m.commit, end)
            out.append(DurableWrite("commit", self.commit))
            self._apply_to(self.commit)
            out.append(Metric("applied", float(self.applied)))
        self._send(out, src, AppendReply(self.config.shard, self.term, True, end))

    def _on_append_reply(self, now: int, src: str, m: AppendReply, out: list) -> None:
        if m.term > self.term:
            self._see_term(m.term, out)
            self._become_follower()
            return
        if self.role != LEADER or m.term < self.term or src not in self.match:
            return
        if m.ok:
            if m.end > self.match[src]:
                self.match[src] = m.end
                self.progress_at[src] = now
            self.next[src] = max(self.next[src], self.match[src])
            self._advance_commit(out)
        elif self.match[src] <= m.end < self.next[src]:
            # a gap or conflict: resend from there. A reply below what the follower has
            # already acknowledged, or at or beyond what was sent, is stale (a duplicate
            # or a reordered delivery) and rewinding for it would resend for nothing.
            self.next[src] = m.end
        else:
            return
        self._send_append(src, out)

    def _advance_commit(self, out: list) -> None:
        ends = sorted([len(self.log)] + [self.match[p] for p in self.peers], reverse=True)
        need = self.majority - (1 if self.config.bug == "majority_one_early" else 0)
        candidate = ends[max(need, 1) - 1]
        if candidate > self.commit and self.log[candidate - 1][0] == self.term:
            self.commit = candidate
            out.append(DurableWrite("commit", self.commit))
        self._flush_pending(out)

    def _truncate(self, pos: int, out: list) -> None:
        """Drop entries from ``pos`` on (they came from a deposed leader). Committed
        entries are never dropped; an index that applied dropped entries is rebuilt."""
        if pos < self.commit:
            raise ProtocolError(f"refusing to truncate committed entries at {pos} "
                                f"(commit {self.commit})")
        for p in range(pos, len(self.log)):
            out.append(DurableWrite(("log", p), None))
        del self.log[pos:]
        if self.applied > pos:
            self._rebuild()

    def _rebuild(self) -> None:
        self.rebuilds += 1
        self.index = self.config.index()
        self.applied = 0
        self.id_pos.clear()
        self.deleted_pos.clear()
        self._apply_to(min(self.commit, len(self.log)))

    def _apply_to(self, end: int) -> None:
        """Apply log entries [applied, end) to the index, in one kernel call."""
        if end <= self.applied:
            return
        deltas: list[EdgeDelta] = []
        for pos in range(self.applied, end):
            _, kind, body = self.log[pos]
            if kind != DELTA:
                continue
            d = EdgeDelta.from_bytes(body)
            deltas.append(d)
            if d.op == "insert" and d.n_new:
                self.id_pos[int(d.ids[0])] = pos
            elif d.op == "delete":
                for i, f in zip(d.ids.tolist(), d.flags.tolist(), strict=True):
                    if f == 2:
                        self.deleted_pos.setdefault(i, pos)
        if deltas:
            self.index.apply(deltas)
        self.applied = end

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
            out.append(Sync())
            self._become_follower()

    def _become_follower(self) -> None:
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
        out.extend([DurableWrite("term", self.term), DurableWrite("voted_for", self.name),
                    Sync()])
        last_term = self.log[-1][0] if self.log else 0
        for p in self.peers:
            self._send(out, p, RequestVote(self.config.shard, self.term, self.name,
                                           len(self.log), last_term))
        if len(self.votes) >= self.majority:  # a shard of one
            self._become_leader(now, out)

    def _on_request_vote(self, now: int, src: str, m: RequestVote, out: list) -> None:
        self._see_term(m.term, out)
        if self.role == LEADER:
            granted = False
        else:
            last_term = self.log[-1][0] if self.log else 0
            up_to_date = (m.last_term, m.last_end) >= (last_term, len(self.log))
            granted = (m.term == self.term and self.voted_for in (None, m.candidate)
                       and up_to_date)
        if granted:
            if self.role != FOLLOWER:
                self._become_follower()
            self.voted_for = m.candidate
            self.heard_at = now
            out.extend([DurableWrite("voted_for", m.candidate), Sync()])
        self._send(out, src, VoteReply(self.config.shard, self.term, granted))

    def _on_vote(self, now: int, src: str, m: VoteReply, out: list) -> None:
        if m.term > self.term:
            self._see_term(m.term, out)
            self._become_follower()
            return
        if self.role != CANDIDATE or m.term != self.term or not m.granted:
            return
        self.votes.add(src)
        if len(self.votes) >= self.majority:
            self._become_leader(now, out)

    def _become_leader(self, now: int, out: list) -> None:
        self.role = LEADER
        self.leader = self.name
        self._apply_to(len(self.log))  # the leader's index reflects its whole log
        for p in self.peers:
            self.next[p] = len(self.log)
            self.match[p] = 0
            self.progress_at[p] = now
        self._append_local((self.term, NOOP, b""), out)
        self.applied = len(self.log)
        out.append(Metric("leader_elected", float(self.term)))
        for p in self.peers:
            self._send_append(p, out)
        self._advance_commit(out)

    # ------------------------------------------------------------------ helpers

    def _send(self, out: list, to: str, msg: Any) -> None:
        data = encode(msg)
        out.append(Send(to, data, len(data)))

    _handlers: ClassVar[dict[type, Callable[..., None]]] = {
        ClientWrite: _on_write,
        ClientSearch: _on_search,
        Append: _on_append,
        AppendReply: _on_append_reply,
        RequestVote: _on_request_vote,
        VoteReply: _on_vote,
        WriteReply: lambda self, now, src, m, out: None,
        SearchReply: lambda self, now, src, m, out: None,
    }

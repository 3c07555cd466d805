"""The client workload of a cluster run: writes, and searches with a session token.

One :class:`Client` process issues every write of the run and, with
``ClusterConfig.searches``, the run's searches (see :mod:`graphrep.cluster` for what
they do and how they are counted). It keeps what the checker needs: the acknowledged
writes in order (``acked``), the refused ones (``errors``), the outstanding ones, and
the searches' counts, latencies and read-your-writes violations.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from graphrep.cluster.config import SEARCH_K, ClusterConfig
from graphrep.protocol.messages import ClientSearch, ClientWrite, SearchReply, WriteReply
from graphrep.protocol.messages import decode as decode_message
from graphrep.protocol.messages import encode as encode_message
from graphrep.sansio import MS, BaseProcess, Send, SetTimer

__all__ = ["Client", "nearest"]


class Client(BaseProcess):
    """The workload: inserts ids ``initial .. initial + writes - 1`` and deletes
    ``deletes`` acknowledged ids, one write every ``write_interval_ns``, to the replica
    it believes leads its shard; follows ``not_leader`` hints and retries after
    ``client_timeout_ns`` at the next replica. Every write is retried until
    acknowledged (ids make retries idempotent).

    With ``cfg.searches`` it also sends searches carrying its session token (see
    :mod:`graphrep.cluster`); ``queries`` are their vectors and ``rng`` draws the
    replica of each search under read preference ``any``."""

    def __init__(self, cfg: ClusterConfig, shards: Mapping[int, Sequence[str]],
                 vectors: np.ndarray, delete_order: np.ndarray,
                 queries: np.ndarray | None = None,
                 rng: np.random.Generator | None = None) -> None:
        self.cfg = cfg
        # per shard: its replicas, and the one the client believes leads it
        self.shard_replicas = {s: list(r) for s, r in shards.items()}
        self.targets = {s: r[0] for s, r in self.shard_replicas.items()}
        self.replicas = self.shard_replicas[0]  # where searches go (one shard only)
        self.vectors = vectors
        self.plan: list[tuple[str, int]] = self._plan(delete_order)
        self.next_op = 0
        # req -> [op, id, sent_at, first_sent, attempt]
        self.outstanding: dict[int, list] = {}
        self.acked: list[dict] = []
        self.acked_inserts: set[int] = set()  # membership tests only, never iterated
        self.errors: list[dict] = []
        # searches
        self.queries = queries
        self.rng = rng
        self.nearest = nearest(cfg, self.replicas)
        self.session = 0  # read-your-writes token: highest acknowledged position + 1
        # search number -> [attempt, token, first_sent]
        self.searching: dict[int, list[int]] = {}
        self.search_counts = {"sent": 0, "ok": 0, "stale": 0, "retried": 0, "errors": 0}
        self.search_latency_ms: list[float] = []
        self.ryw_violations = 0

    def _plan(self, delete_order: np.ndarray) -> list[tuple[str, int]]:
        """Inserts in id order; a delete of an earlier id after every few inserts."""
        cfg = self.cfg
        plan: list[tuple[str, int]] = []
        dels = [cfg.initial + int(i) for i in delete_order[: cfg.deletes]]
        every = max(1, cfg.writes // max(cfg.deletes, 1))
        pending_dels = sorted(dels)
        for i in range(cfg.initial, cfg.initial + cfg.writes):
            plan.append(("insert", i))
            if (i + 1) % every == 0 and pending_dels and pending_dels[0] < i - 8:
                plan.append(("delete", pending_dels.pop(0)))
        plan.extend(("delete", d) for d in pending_dels)
        return plan

    @property
    def done(self) -> bool:
        return self.next_op >= len(self.plan) and not self.outstanding

    @property
    def search_interval_ns(self) -> int:
        return max(1, self.cfg.write_phase_ns // (self.cfg.searches + 1))

    def on_start(self, now: int) -> list:
        out: list = [SetTimer("write", self.cfg.write_interval_ns, periodic=True),
                     SetTimer("retry", self.cfg.client_timeout_ns // 4, periodic=True)]
        if self.cfg.searches:
            out.append(SetTimer("search", self.search_interval_ns))
        return out

    def shard_of(self, id_: int) -> int:
        return id_ % self.cfg.shards

    def _send(self, req: int, now: int) -> Send:
        """(Re)send a write to its shard's believed leader. The wire request id carries
        the attempt number, so that a redirect answering an older attempt (duplicated or
        late) starts no new chain."""
        entry = self.outstanding[req]
        op, id_ = entry[:2]
        entry[2] = now
        entry[4] += 1
        vec = self.vectors[id_].astype("<f4").tobytes() if op == "insert" else b""
        wire = (req << 16) | (entry[4] & 0xFFFF)
        shard = self.shard_of(id_)
        data = encode_message(ClientWrite(shard, wire, op, id_, vec, self.cfg.concern))
        return Send(self.targets[shard], data, len(data))

    def on_timer(self, now: int, name: Hashable) -> list:
        out: list = []
        if name == "write":
            if self.next_op < len(self.plan) and len(self.outstanding) < self.cfg.max_outstanding:
                op, id_ = self.plan[self.next_op]
                if op == "delete" and id_ not in self.acked_inserts:
                    # the insert is not acknowledged yet: delete later
                    self.plan.append(self.plan.pop(self.next_op))
                    return out
                req = self.next_op
                self.next_op += 1
                self.outstanding[req] = [op, id_, now, now, 0]
                out.append(self._send(req, now))
        elif name == "search":
            out.append(self._search(now))
            if self.search_counts["sent"] < self.cfg.searches:
                out.append(SetTimer("search", self.search_interval_ns))
        else:
            for req in sorted(self.outstanding):
                if now - self.outstanding[req][2] >= self.cfg.client_timeout_ns:
                    shard = self.shard_of(self.outstanding[req][1])
                    self.targets[shard] = self._after(shard, self.targets[shard])
                    out.append(self._send(req, now))
        return out

    def _after(self, shard: int, name: str) -> str:
        """The replica of ``shard`` after ``name``, in ring order."""
        ring = self.shard_replicas[shard]
        return ring[(ring.index(name) + 1) % len(ring)] if name in ring else ring[0]

    def _search(self, now: int) -> Send:
        """Send the next search where the read preference says."""
        no = self.search_counts["sent"]
        self.search_counts["sent"] += 1
        self.searching[no] = [0, self.session, now]
        pref = self.cfg.read_preference
        if pref == "leader":
            to = self.targets[0]
        elif pref == "nearest":
            to = self.nearest
        else:
            assert self.rng is not None
            to = self.replicas[int(self.rng.integers(len(self.replicas)))]
        return self._send_search(no, to)

    def _send_search(self, no: int, to: str) -> Send:
        """(Re)send search ``no``; like writes, the wire id carries the attempt."""
        attempt, token, _ = self.searching[no]
        assert self.queries is not None
        q = self.queries[no % len(self.queries)].astype("<f4").tobytes()
        data = encode_message(ClientSearch(0, (no << 16) | attempt, q, SEARCH_K, token))
        return Send(to, data, len(data))

    def _on_search_reply(self, now: int, msg: SearchReply) -> list:
        no = msg.req >> 16
        entry = self.searching.get(no)
        if entry is None or (msg.req & 0xFFFF) != entry[0]:
            return []  # a duplicate, or the answer to an attempt already retried
        counts = self.search_counts
        if msg.status == "stale":
            counts["stale"] += 1
            if entry[0] == 0:  # retry once, at the leader
                entry[0] = 1
                counts["retried"] += 1
                to = msg.leader if msg.leader in self.replicas else self.targets[0]
                return [self._send_search(no, to)]
            del self.searching[no]
            return []
        del self.searching[no]
        if msg.status == "ok":
            counts["ok"] += 1
            self.search_latency_ms.append((now - entry[2]) / MS)
            if msg.seq < entry[1]:
                self.ryw_violations += 1  # answered from a state before our own writes
        else:
            counts["errors"] += 1
        return []

    def on_message(self, now: int, src: str, payload: Any, size: int) -> list:
        msg = decode_message(payload)
        if isinstance(msg, SearchReply):
            return self._on_search_reply(now, msg)
        if not isinstance(msg, WriteReply):
            return []
        entry = self.outstanding.get(msg.req >> 16)
        if entry is None:
            return []  # a duplicate reply
        req = msg.req >> 16
        shard = self.shard_of(entry[1])
        if msg.status == "ok":
            del self.outstanding[req]
            if shard == 0:  # the token of searches, which go to shard 0
                self.session = max(self.session, msg.seq + 1)
            self.acked.append({"op": entry[0], "id": entry[1], "shard": shard,
                               "term": msg.term, "seq": msg.seq,
                               "latency_ns": now - entry[3], "at": now})
            if entry[0] == "insert":
                self.acked_inserts.add(entry[1])
            return []
        if msg.status == "error":
            del self.outstanding[req]
            self.errors.append({"op": entry[0], "id": entry[1], "error": msg.error})
            return []
        if (msg.req & 0xFFFF) != (entry[4] & 0xFFFF):
            return []  # answers an older attempt
        ring = self.shard_replicas[shard]
        self.targets[shard] = msg.leader if msg.leader in ring else self._after(shard, src)
        if not msg.leader:
            return []  # no leader known yet: the retry timer tries again
        return [self._send(req, now)]



def nearest(cfg: ClusterConfig, replicas: list[str]) -> str:
    """The replica with the lowest expected latency from the client; ties go to the
    first in ring order from the client's home replica ``r{seed % nodes}``."""
    home = cfg.seed % len(replicas)
    net = cfg.network()

    def key(i: int) -> tuple[float, int]:
        model = net.latency(cfg.client_region, cfg.region(i))
        return model.expected_ns(), (i - home) % len(replicas)

    return replicas[min(range(len(replicas)), key=key)]

"""The client of a live cluster: :class:`Client` (trio) and :class:`SyncClient` (blocking).

::

    with SyncClient.from_config("DIR/cluster.toml") as c:
        ack = c.insert(7, vector, concern="majority")   # Ack(shard, term, pos)
        c.delete(7)
        ids, dists = c.search(query, k=10, read_preference="leader")
        ids, dists = c.search(query, k=10, node="n2")   # one node's answer
        c.status()
        c.write_deltas([(id, delta_bytes), ...], window=32)  # a recorded run, in order

Every connection proves a client token (:mod:`graphrep.net.handshake`): ``token=``, else
the environment's ``GRAPHREP_TOKEN``, else the write token the cluster file names. A
read token's writes raise :class:`~graphrep.errors.PermissionDenied`.

Writes go to the replica the client believes leads the id's shard (``id % shards``); a
``not_leader`` answer names the leader, and a replica that does not answer in
``attempt_timeout`` (or refuses the connection) is skipped for the next one; when no
replica can take a write (an election is on, or the leader named is down), or a node
answers ``busy`` (at one of its limits), the client backs off with full jitter: the n-th
pause is drawn from ``[0, min(0.5 s, base * 2**n)]`` (``base``: 5 ms, or the busy node's
retry-after hint), so that clients sent away together come back spread out (each pause is
recorded in the write's history row, ``retries``). A write is retried with the same
request id until it is acknowledged or ``timeout`` passes (ids are never reused, so a
retried write is applied once). Every call is bounded: it raises
:class:`~graphrep.errors.RequestTimeout` or :class:`~graphrep.errors.NoLeader` naming
what timed out, or :class:`~graphrep.errors.WriteRefused` with the replica's reason.

Reads carry the session token (one past the highest position this client was
acknowledged on the shard): a replica that has not applied that far answers ``stale``
and the client asks another, so a client always reads its own writes.

With ``history=True`` the client records every write (:attr:`Client.history`): when it
was sent, whether it was acknowledged or failed, and the (term, position) acknowledged.
A failed write may still be applied (its fate is unknown): only acknowledged writes are
promised.
"""

from __future__ import annotations

import itertools
import os
import random
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import trio

from graphrep.ann import EdgeDelta
from graphrep.ann.validation import as_float_array, as_vectors
from graphrep.errors import (
    FrameError,
    GraphrepError,
    InvalidArgument,
    InvalidVector,
    NodeBusy,
    NoLeader,
    PermissionDenied,
    ProtocolError,
    RequestTimeout,
    WriteRefused,
)
from graphrep.net.config import ClusterFile
from graphrep.net.handshake import dial, token_role
from graphrep.net.transport import Transport
from graphrep.net.wire import (
    FrameReader,
    control,
    decode_control,
    frame,
    is_control,
)
from graphrep.protocol.config import CONCERNS
from graphrep.protocol.messages import ClientSearch, ClientWrite, decode, encode

__all__ = ["READ_PREFERENCES", "Ack", "Client", "SyncClient"]

READ_PREFERENCES = ("leader", "nearest", "any")

_PAUSE_MIN, _PAUSE_MAX = 0.005, 0.5
"""Retries back off with full jitter: the n-th pause is drawn uniformly from
``[0, min(_PAUSE_MAX, base * 2**n)]``, ``base`` being ``_PAUSE_MIN`` or a busy node's
retry-after hint, so that clients sent away at once (a failover, a busy node) do not
come back in step."""
_UNREACHABLE_S = 0.25
"""A node that did not answer is not redirected to for this long (it is still tried in
turn): a follower names its dead leader until it times out."""


def _delta_bytes(delta: bytes | EdgeDelta) -> bytes:
    if isinstance(delta, EdgeDelta):
        return delta.to_bytes()
    if isinstance(delta, (bytes, bytearray, memoryview)):
        return bytes(delta)
    raise InvalidArgument(f"a delta is an EdgeDelta or its bytes, got {type(delta).__name__}")


class _Busy(NamedTuple):
    """What :meth:`Client._ask` returns for a connection refused as busy."""

    status: str = "busy"
    seq: int = round(_PAUSE_MIN * 1e3)
    error: str = "the node refused the connection: busy"


class Ack(NamedTuple):
    """An acknowledged write: its shard and the (term, position) of a log entry whose
    prefix holds it."""

    shard: int
    term: int
    pos: int


class _Conn:
    def __init__(self, node: str, stream: trio.abc.Stream) -> None:
        self.node = node
        self.stream = stream
        self.alive = True
        self.sending = trio.StrictFIFOLock()  # one writer at a time on a stream


class Client:
    """A trio client (see the module docstring). Use as ``async with Client(cfg) as c``."""

    def __init__(self, cluster: ClusterFile, *, name: str | None = None,
                 timeout: float = 10.0, attempt_timeout: float = 1.0,
                 transport: Transport | None = None, history: bool = False,
                 seed: int | None = None, token: str | None = None,
                 region: str | None = None) -> None:
        self.cfg = cluster
        self.region = region or os.environ.get("GRAPHREP_REGION") or None
        """The client's region: ``nearest`` reads go to a replica there first."""
        if token is None:
            token = os.environ.get("GRAPHREP_TOKEN") or cluster.client_token()
        self._token = token.strip()
        # with no secrets configured anywhere, the handshake proves the empty key
        self._role = token_role(self._token) if self._token else "write"
        self.name = name or f"client-{os.getpid()}-{random.getrandbits(32):08x}"
        self.timeout = timeout
        self.attempt_timeout = attempt_timeout
        self.transport = transport or cluster.transport()
        self.record = history
        self.history: list[dict[str, Any]] = []
        self.leaders: dict[int, str] = {}
        self.session: dict[int, int] = {}
        self.rtt: dict[str, float] = {}
        self._unreachable: dict[str, float] = {}  # node -> when it last did not answer
        self._rng = random.Random(seed)
        self._req = itertools.count(1)
        self._conns: dict[str, _Conn] = {}
        self._locks: dict[str, trio.Lock] = {}
        self._waiters: dict[int, list] = {}  # req -> [event, reply, node]
        self._nursery: trio.Nursery | None = None
        self._cm: Any = None

    @classmethod
    def from_config(cls, path: str | Path, **kwargs: Any) -> Client:
        return cls(ClusterFile.load(path), **kwargs)

    async def __aenter__(self) -> Client:
        self._cm = trio.open_nursery()
        self._nursery = await self._cm.__aenter__()
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any
                        ) -> bool | None:
        await self.aclose()
        assert self._cm is not None
        if isinstance(exc, trio.Cancelled):
            return await self._cm.__aexit__(exc_type, exc, tb)
        # The nursery holds only this client's readers, which end quietly: an error of
        # the body goes up as itself (a NoLeader, say), not wrapped in an exception group.
        await self._cm.__aexit__(None, None, None)
        return None

    async def aclose(self) -> None:
        for conn in list(self._conns.values()):
            conn.alive = False
            await trio.aclose_forcefully(conn.stream)
        self._conns.clear()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    # ------------------------------------------------------------------ connections

    async def _conn(self, node: str) -> _Conn:
        conn = self._conns.get(node)
        if conn is not None and conn.alive:
            return conn
        lock = self._locks.setdefault(node, trio.Lock())
        async with lock:
            conn = self._conns.get(node)
            if conn is not None and conn.alive:
                return conn
            stream = await self.transport.connect(self.name, node)
            try:
                reader = await dial(
                    stream, cluster=self.cfg.cluster, name=self.name, node=node,
                    role=self._role, key=self._token.encode(), timeout=self.attempt_timeout,
                    max_frame_bytes=self.cfg.driver_config().max_frame_bytes)
            except trio.TooSlowError:
                await trio.aclose_forcefully(stream)
                raise FrameError(f"{node} did not finish the handshake in "
                                 f"{self.attempt_timeout} s") from None
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
            conn = _Conn(node, stream)
            self._conns[node] = conn
            assert self._nursery is not None, "use the client as `async with Client(...)`"
            self._nursery.start_soon(self._read, conn, reader)
            return conn

    async def _read(self, conn: _Conn, reader: FrameReader) -> None:
        try:
            while (body := await reader.next()) is not None:
                if is_control(body):
                    obj = decode_control(body)
                    req, reply = (obj[2] if len(obj) > 2 else 0), obj
                else:
                    msg = decode(body)
                    req, reply = msg.req, msg
                waiter = self._waiters.get(req)
                if waiter is not None and waiter[2] == conn.node:
                    waiter[1] = reply
                    waiter[0].set()
        except (FrameError, ProtocolError, trio.BrokenResourceError, trio.ClosedResourceError,
                OSError):
            pass
        finally:
            conn.alive = False
            if self._conns.get(conn.node) is conn:
                del self._conns[conn.node]
            for waiter in self._waiters.values():  # fail fast: they need not time out
                if waiter[2] == conn.node and not waiter[0].is_set():
                    waiter[0].set()
            await trio.aclose_forcefully(conn.stream)

    async def _ask(self, node: str, body: bytes, req: int, timeout: float) -> Any:
        """Send ``body`` to ``node`` and wait for the reply to ``req``; None when the node
        cannot be reached, its connection breaks, or it does not answer in time."""
        waiter = [trio.Event(), None, node]
        self._waiters[req] = waiter
        started = time.perf_counter()
        try:
            with trio.move_on_after(timeout):
                try:
                    conn = await self._conn(node)
                    async with conn.sending:
                        await conn.stream.send_all(frame(body))
                except (OSError, FrameError, trio.BrokenResourceError,
                        trio.ClosedResourceError):
                    return None
                except NodeBusy:
                    return _Busy()
                except GraphrepError:  # refused hello: a misconfigured cluster, say so
                    raise
                await waiter[0].wait()
        finally:
            self._waiters.pop(req, None)
        if waiter[1] is not None:
            rtt = time.perf_counter() - started
            self.rtt[node] = 0.8 * self.rtt.get(node, rtt) + 0.2 * rtt
        return waiter[1]

    # ------------------------------------------------------------------ writes

    def _vector(self, vector: Any) -> bytes:
        arr = as_float_array(vector, "vector")
        if arr.ndim != 1:
            raise InvalidVector(f"one vector of {self.cfg.dim} floats, got shape {arr.shape}")
        return as_vectors(arr[None, :], self.cfg.dim, self.cfg.metric, "vector")[0] \
            .astype("<f4").tobytes()

    async def insert(self, id: int, vector: Any, concern: str | None = None) -> Ack:
        """Insert ``id`` with ``vector``; returns once ``concern`` holds."""
        return await self._write("insert", id, self._vector(vector), concern)

    async def delete(self, id: int, concern: str | None = None) -> Ack:
        """Delete ``id``; returns once ``concern`` holds."""
        return await self._write("delete", id, b"", concern)

    async def write_delta(self, id: int, delta: bytes | EdgeDelta,
                          concern: str | None = None) -> Ack:
        """Insert or delete ``id`` given as its edge delta (an :class:`EdgeDelta` or its
        bytes), computed against the shard's index as it stands (a recorded run of the
        same index parameters, replayed): the leader applies it and logs it as is.
        Deltas of a shard apply in the order they were recorded; use
        :meth:`write_deltas` to send many."""
        return await self._write("delta", id, _delta_bytes(delta), concern)

    async def write_deltas(self, deltas: list[tuple[int, bytes | EdgeDelta]],
                           concern: str | None = None, window: int = 32) -> list[Ack]:
        """Write ``deltas`` (``(id, delta)`` pairs of one shard, in recorded order) with up
        to ``window`` outstanding on one connection to the leader: the frames leave in
        order, so the leader applies them in order. When a reply is not ``ok`` (a new
        leader, a lost connection, a timeout), the pipeline drains and the first delta
        not acknowledged is written alone, through the leader-finding and retrying path
        of :meth:`write_delta`; then the rest are pipelined again (one acknowledged
        already is not sent again, and a retried one is acknowledged once). A delta
        refused (``error``) raises :class:`~graphrep.errors.WriteRefused`."""
        if not 1 <= window <= 4096:
            raise InvalidArgument(f"window is an int in [1, 4096], got {window!r}")
        concern = concern or self.cfg.concern
        if concern not in CONCERNS:
            raise InvalidArgument(f"concern {concern!r} is not one of {CONCERNS}")
        items = [(self._id(id_), _delta_bytes(d)) for id_, d in deltas]
        shards = sorted({self.cfg.shard_of(i) for i, _ in items})
        if len(shards) > 1:
            raise InvalidArgument(f"write_deltas takes one shard's deltas (their order "
                                  f"matters within a shard); these are of shards {shards}")
        acks: list[Ack | None] = [None] * len(items)
        first = 0
        while first < len(items):
            await self._pipeline(items, first, concern, window, acks)
            first = next((k for k in range(first, len(items)) if acks[k] is None),
                         len(items))
            if first < len(items):  # the slow path finds the leader and retries
                acks[first] = await self.write_delta(*items[first], concern=concern)
                first += 1
        return [a for a in acks if a is not None]

    async def _pipeline(self, items: list[tuple[int, bytes]], first: int, concern: str,
                        window: int, acks: list[Ack | None]) -> None:
        """Send ``items[first:]`` (skipping the acknowledged) to the believed leader in
        order, ``window`` outstanding, until one is not acknowledged; fills ``acks``."""
        shard = self.cfg.shard_of(items[first][0])
        target = self.leaders.get(shard)
        if target is None:
            return
        try:
            conn = await self._conn(target)
        except (OSError, FrameError, trio.BrokenResourceError, trio.ClosedResourceError):
            return
        slots = trio.Semaphore(window)
        stop = trio.Event()

        async def await_reply(k: int, req: int, waiter: list, row: dict) -> None:
            try:
                with trio.move_on_after(self.attempt_timeout):
                    await waiter[0].wait()
            finally:
                self._waiters.pop(req, None)
                slots.release()
            reply = waiter[1]
            if reply is not None and getattr(reply, "status", None) == "ok":
                self.session[shard] = max(self.session.get(shard, 0), reply.seq + 1)
                row.update(status="ok", done=time.time(), term=reply.term, pos=reply.seq)
                acks[k] = Ack(shard, reply.term, reply.seq)
                return
            row.update(status="failed", done=time.time(),
                       error=getattr(reply, "error", "") or "no reply")
            if reply is not None and getattr(reply, "status", None) == "denied":
                raise PermissionDenied(f"delta of id {items[k][0]} denied by {target}: "
                                       f"{reply.error}")
            if reply is not None and getattr(reply, "status", None) == "error":
                raise WriteRefused(f"delta of id {items[k][0]} refused by {target}: "
                                   f"{reply.error}")
            stop.set()

        async with trio.open_nursery() as nursery:
            for k in range(first, len(items)):
                if acks[k] is not None:
                    continue
                await slots.acquire()
                if stop.is_set() or not conn.alive:
                    slots.release()
                    break
                id_, body = items[k]
                req = next(self._req)
                row = {"op": "delta", "id": id_, "shard": shard, "concern": concern,
                       "sent": time.time(), "status": "pending", "term": -1, "pos": -1}
                if self.record:
                    self.history.append(row)
                waiter = [trio.Event(), None, target]
                self._waiters[req] = waiter
                try:
                    async with conn.sending:
                        await conn.stream.send_all(frame(encode(ClientWrite(
                            shard, req, "delta", id_, body, concern))))
                except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                    self._waiters.pop(req, None)
                    slots.release()
                    row.update(status="failed", done=time.time(), error="connection lost")
                    break
                nursery.start_soon(await_reply, k, req, waiter, row)

    def _id(self, id_: Any) -> int:
        if (type(id_) is not int and not isinstance(id_, np.integer)) or int(id_) < 0:
            raise InvalidArgument(f"an id is an int >= 0, got {id_!r}")
        return int(id_)

    async def _write(self, op: str, id_: int, vec: bytes, concern: str | None) -> Ack:
        concern = concern or self.cfg.concern
        if concern not in CONCERNS:
            raise InvalidArgument(f"concern {concern!r} is not one of {CONCERNS}")
        id_ = self._id(id_)
        shard = self.cfg.shard_of(id_)
        replicas = list(self.cfg.replicas_of(shard))
        req = next(self._req)
        row = {"op": op, "id": id_, "shard": shard, "concern": concern,
               "sent": time.time(), "status": "pending", "term": -1, "pos": -1}
        if self.record:
            self.history.append(row)
        body = encode(ClientWrite(shard, req, op, id_, vec, concern))
        deadline = trio.current_time() + self.timeout
        target = self.leaders.get(shard, replicas[0])
        tried: list[str] = []
        retries = 0
        hops = 0
        while (left := deadline - trio.current_time()) > 0:
            tried.append(target)
            reply = await self._ask(target, body, req, min(self.attempt_timeout, left))
            if reply is not None and getattr(reply, "status", None) == "busy":
                # at a limit: the same node again (it leads), after a jittered pause
                await self._pause(row, retries, reply.seq / 1e3, left)
                retries += 1
                continue
            if reply is not None and getattr(reply, "status", None) == "ok":
                self.leaders[shard] = target
                self.session[shard] = max(self.session.get(shard, 0), reply.seq + 1)
                row.update(status="ok", done=time.time(), term=reply.term, pos=reply.seq)
                return Ack(shard, reply.term, reply.seq)
            if reply is not None and getattr(reply, "status", None) == "denied":
                row.update(status="failed", done=time.time(), error=reply.error)
                raise PermissionDenied(f"{op} of id {id_} denied by {target}: {reply.error}")
            if reply is not None and getattr(reply, "status", None) == "error":
                row.update(status="failed", done=time.time(), error=reply.error)
                raise WriteRefused(f"{op} of id {id_} refused by {target}: {reply.error}")
            if reply is None:
                self._unreachable[target] = trio.current_time()
                if self.leaders.get(shard) == target:
                    del self.leaders[shard]
            elif (reply.status == "not_leader" and reply.leader and reply.leader != target
                  and reply.leader in replicas and hops < len(replicas)
                  and self._reachable(reply.leader)):
                target = reply.leader  # follow the leader it names, at once
                hops += 1
                continue
            # No leader to go to now: an election is on, or the one named did not answer
            # (a follower names its dead leader until its election timeout). Back off
            # before the next replica, so that a client does not spin through the
            # replicas while the survivors elect a leader.
            hops = 0
            if len(tried) > 1:
                await self._pause(row, retries, _PAUSE_MIN, left)
                retries += 1
            target = self._next_replica(replicas, target)
        row.update(status="failed", done=time.time(), error="timeout")
        self.leaders.pop(shard, None)
        raise NoLeader(f"{op} of id {id_} (shard {shard}): no leader acknowledged it within "
                       f"{self.timeout} s (asked {', '.join(tried[-6:])}); the write may "
                       "or may not be applied")

    async def _pause(self, row: dict | None, retries: int, base: float, left: float) -> None:
        """Sleep before a retry: full jitter over an exponential ceiling (see
        ``_PAUSE_MIN``); the pause is recorded in the write's history row."""
        pause = self._rng.uniform(0, min(_PAUSE_MAX, max(base, _PAUSE_MIN) * 2 ** retries))
        pause = min(pause, max(left - 0.001, 0))
        if row is not None:
            row.setdefault("retries", []).append(round(pause, 6))
        await trio.sleep(pause)

    def _reachable(self, node: str) -> bool:
        """Whether ``node`` answered, or was not asked, in the last ``_UNREACHABLE_S``."""
        at = self._unreachable.get(node)
        return at is None or trio.current_time() - at > _UNREACHABLE_S

    def _next_replica(self, replicas: list[str], after: str) -> str:
        """The replica after ``after`` in order, skipping those that just did not answer
        (unless none did)."""
        i = replicas.index(after)
        ring = replicas[i + 1:] + replicas[:i + 1]
        return next((r for r in ring if self._reachable(r)), ring[0])

    # ------------------------------------------------------------------ searches

    def _order(self, shard: int, preference: str) -> list[str]:
        replicas = list(self.cfg.replicas_of(shard))
        if preference == "leader":
            first = self.leaders.get(shard, replicas[0])
        elif preference == "nearest":  # in the client's region, then the fastest to answer
            first = min(replicas, key=lambda n: (self.cfg.region_of(n) != self.region,
                                                 self.rtt.get(n, 0.0), n))
        else:
            first = self._rng.choice(replicas)
        return [first] + [r for r in replicas if r != first]

    async def search(self, query: Any, k: int = 10, read_preference: str = "leader",
                     node: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest ids and their distances over every shard (merged by distance,
        ties by id). ``node`` pins one node: only its shards, only its answer."""
        if read_preference not in READ_PREFERENCES:
            raise InvalidArgument(f"read_preference {read_preference!r} is not one of "
                                  f"{READ_PREFERENCES}")
        if type(k) is not int or not 1 <= k <= 4096:
            raise InvalidArgument(f"k must be an int in 1..4096, got {k!r}")
        vec = self._vector(query)
        shards = sorted(self.cfg.shards)
        if node is not None:
            if node not in self.cfg.nodes:
                raise InvalidArgument(f"node {node!r} is not in the cluster: "
                                      f"{sorted(self.cfg.nodes)}")
            shards = [s for s in shards if node in self.cfg.replicas_of(s)]
        ids: list[np.ndarray] = []
        dists: list[np.ndarray] = []
        for shard in shards:
            i, d = await self._search_shard(shard, vec, k, read_preference, node)
            ids.append(i)
            dists.append(d)
        if not ids:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        all_ids, all_d = np.concatenate(ids), np.concatenate(dists)
        order = np.lexsort((all_ids, all_d))[:k]
        return all_ids[order], all_d[order]

    async def _search_shard(self, shard: int, vec: bytes, k: int, preference: str,
                            node: str | None) -> tuple[np.ndarray, np.ndarray]:
        deadline = trio.current_time() + self.timeout
        order = [node] if node is not None else self._order(shard, preference)
        attempt = 0
        retries = 0
        last = "no answer"
        while (left := deadline - trio.current_time()) > 0:
            target = order[attempt % len(order)]
            attempt += 1
            req = next(self._req)
            body = encode(ClientSearch(shard, req, vec, k, self.session.get(shard, 0)))
            reply = await self._ask(target, body, req, min(self.attempt_timeout, left))
            if reply is None or reply.status == "busy":
                if reply is None:
                    last = f"{target} did not answer"
                    self._unreachable[target] = trio.current_time()
                else:
                    last = f"{target} is busy"
                if attempt % len(order) == 0:  # none answered this round: back off
                    await self._pause(None, retries, (reply.seq / 1e3) if reply else 0, left)
                    retries += 1
                continue
            if reply.status == "ok":
                if (preference == "leader" and node is None and reply.leader
                        and reply.leader != target and reply.leader in order):
                    self.leaders[shard] = reply.leader  # ask the leader it names
                    order = [reply.leader] + [r for r in order if r != reply.leader]
                    attempt = 0
                    continue
                ids = np.frombuffer(reply.ids, dtype="<i8").astype(np.int64)
                dists = np.frombuffer(reply.dists, dtype="<f4").astype(np.float32)
                keep = ids >= 0
                return ids[keep], dists[keep]
            if reply.status == "error":
                raise WriteRefused(f"search refused by {target}: "
                                   f"{reply.ids.decode(errors='replace')}")
            last = f"{target} is behind this client's writes (stale)"
            await trio.sleep(0.005)
        raise RequestTimeout(f"search on shard {shard}: no replica answered within "
                             f"{self.timeout} s ({last})")

    # ------------------------------------------------------------------ status

    async def status(self, timeout: float = 2.0, digest: bool = True) -> dict[str, Any]:
        """Every node's answer to ``status`` (``{"up": False}`` for one that does not
        answer): its shards' role, term, commit, applied and digest, its store.
        ``digest=False`` asks the nodes not to hash their indexes (``"digest": ""``):
        cheaper for a status polled often."""
        nodes: dict[str, Any] = {}
        for node in sorted(self.cfg.nodes):
            req = next(self._req)
            reply = await self._ask(node, control("status", req, digest), req, timeout)
            if isinstance(reply, list) and reply[1] == "status":
                nodes[node] = reply[3]
            else:
                nodes[node] = {"name": node, "up": False}
        return {"cluster": self.cfg.cluster, "nodes": nodes}


    async def ids(self, node: str, shard: int = 0, timeout: float = 5.0
                  ) -> tuple[int, np.ndarray]:
        """The live ids of ``shard`` on ``node`` and the log entries it has applied (for
        checking a replica against the writes acknowledged)."""
        req = next(self._req)
        reply = await self._ask(node, control("ids", req, shard), req, timeout)
        if not (isinstance(reply, list) and reply[1] == "ids"):
            why = reply[3] if isinstance(reply, list) and len(reply) > 3 else "no answer"
            raise RequestTimeout(f"ids of shard {shard} from {node}: {why}")
        return int(reply[3]), np.frombuffer(reply[4], dtype="<i8").astype(np.int64)


class SyncClient:
    """A blocking :class:`Client`: the same calls, run on a trio loop in a background
    thread. Use as a context manager, or call :meth:`close`."""

    def __init__(self, cluster: ClusterFile, **kwargs: Any) -> None:
        self._client = Client(cluster, **kwargs)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._token: Any = None
        self._stop: trio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="graphrep-client",
                                        daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    @classmethod
    def from_config(cls, path: str | Path, **kwargs: Any) -> SyncClient:
        return cls(ClusterFile.load(path), **kwargs)

    def _main(self) -> None:
        async def body() -> None:
            self._token = trio.lowlevel.current_trio_token()
            self._stop = trio.Event()
            async with self._client:
                self._ready.set()
                await self._stop.wait()

        try:
            trio.run(body)
        except BaseException as exc:  # surfaced to the caller of __init__
            self._error = exc
        finally:
            self._ready.set()

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self._stop is None or not self._thread.is_alive():
            raise GraphrepError("this client is closed")

        async def call() -> Any:
            return await fn(*args, **kwargs)

        return trio.from_thread.run(call, trio_token=self._token)

    @property
    def client(self) -> Client:
        return self._client

    @property
    def history(self) -> list[dict[str, Any]]:
        return self._client.history

    def insert(self, id: int, vector: Any, concern: str | None = None) -> Ack:
        return self._call(self._client.insert, id, vector, concern)

    def delete(self, id: int, concern: str | None = None) -> Ack:
        return self._call(self._client.delete, id, concern)

    def write_delta(self, id: int, delta: bytes | EdgeDelta,
                    concern: str | None = None) -> Ack:
        return self._call(self._client.write_delta, id, delta, concern)

    def write_deltas(self, deltas: list[tuple[int, bytes | EdgeDelta]],
                     concern: str | None = None, window: int = 32) -> list[Ack]:
        return self._call(self._client.write_deltas, deltas, concern, window)

    def search(self, query: Any, k: int = 10, read_preference: str = "leader",
               node: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        return self._call(self._client.search, query, k, read_preference, node)

    def status(self, timeout: float = 2.0, digest: bool = True) -> dict[str, Any]:
        return self._call(self._client.status, timeout, digest)

    def ids(self, node: str, shard: int = 0, timeout: float = 5.0
            ) -> tuple[int, np.ndarray]:
        return self._call(self._client.ids, node, shard, timeout)

    def close(self) -> None:
        if self._thread.is_alive() and self._stop is not None:
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
            self._thread.join(timeout=10)

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


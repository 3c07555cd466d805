"""The live driver: one sans-IO process (a ``ShardHost`` or any :mod:`graphrep.sansio`
process) run by trio, with real time, real connections and a durable store.

One serial loop per node. Every input (a message from a peer or a client, a timer
firing, a control request) goes into one bounded memory channel; one task takes inputs
in order, calls the process, and carries out the effects it returns in list order,
following the rules :mod:`graphrep.sansio` states (the simulator follows the same ones):

* ``Send``: to a peer, into that peer's bounded outgoing queue (:mod:`.peers`); to a
  client connected to this node, into the client's queue. A full queue drops the
  message and counts it (``dropped_sends``): the protocol retransmits.
* ``DurableWrite`` buffers in the driver; ``Sync`` hands the buffered writes to the store
  and asks it for a commit (:class:`~graphrep.net.store.SQLiteStore`: group commit, in a
  worker thread). Writes reach the store only with a ``Sync``, so a commit never takes
  writes made after the last ``Sync`` and a crash loses exactly the unsynced writes, as
  in the simulator (the store commits whatever it buffered when the commit starts).
* **A send waits for every sync requested before it.** The simulator completes a sync
  at once; live, a commit takes about a millisecond, and the loop keeps taking inputs
  meanwhile. A message sent after a ``Sync`` may claim what that sync makes durable (a
  follower's acknowledgement, a client's ``ok``), and so may a message sent by a *later*
  callback, since the process believes the sync done. So every send is held until the
  store has finished every commit requested before it, and held sends leave in order.
  This is where the live driver differs from the simulator: what the simulator does in
  zero time, it does in order.
* ``SetTimer`` replaces a timer of the same name (a new token: a firing of the old timer
  already queued is ignored); its delay counts from the callback that set it; periodic
  timers re-arm; ``CancelTimer`` of an unknown timer does nothing. A delay that is not
  an int >= 0 (> 0 if periodic) is refused like a value that is not an effect.
* A ``Send`` to the node itself comes back through its own inputs, in order.
* ``Metric`` goes to counters (:attr:`NodeDriver.metrics`), ``Log`` to :mod:`logging`;
  ``Busy`` and ``Work`` are not slept on (the CPU was really spent), ``Work`` is counted.

Time given to the process is ``trio.current_time()`` in integer nanoseconds (rounded, so
that a ``MockClock`` at 0.3 s reads 300_000_000), so a test can drive a node with
``trio.testing.MockClock``. The driver is generic over its
transport (:class:`~graphrep.net.transport.TCPTransport` for real sockets,
:class:`~graphrep.net.testing.MemoryTransport` for tests in one process).
"""

from __future__ import annotations

import collections
import hmac
import logging
import os
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import msgpack
import trio

from graphrep.errors import (
    FrameError,
    GraphrepError,
    NetError,
    ProtocolError,
    StoreError,
)
from graphrep.net.handshake import Keys, proof, secret_of
from graphrep.net.peers import PeerLink, coalesce
from graphrep.net.store import SQLiteStore
from graphrep.net.transport import Transport, peer_address
from graphrep.net.wire import (
    MAX_FRAME_BYTES,
    NONCE_BYTES,
    WIRE_VERSION,
    Challenge,
    FrameReader,
    Hello,
    Welcome,
    check_hello,
    control,
    decode_auth,
    decode_control,
    decode_hello,
    encode_challenge,
    encode_welcome,
    frame,
    is_control,
)
from graphrep.protocol.messages import (
    ClientSearch,
    ClientWrite,
    SearchReply,
    WriteReply,
    encode,
    message_type,
)
from graphrep.sansio import (
    Busy,
    CancelTimer,
    DurableWrite,
    Log,
    Metric,
    Send,
    SetTimer,
    Sync,
    Work,
)

__all__ = ["DriverConfig", "NodeDriver"]

log = logging.getLogger("graphrep.net")

_CLIENT_REQUESTS = (ClientWrite, ClientSearch)
"""The messages a client's connection may carry (with a decoder): the replicas trust a
message's sender, and a client is not a replica."""

ControlHandler = Callable[[Any, list], Any]
"""``handler(process, request) -> reply``: answers a client's control frame in the loop."""


class DriverConfig:
    """Limits of one live node. Seconds for times, counts for queues."""

    def __init__(self, *, max_frame_bytes: int = MAX_FRAME_BYTES, inputs: int = 4096,
                 peer_queue: int = 4096, client_queue: int = 4096,
                 hello_timeout: float = 5.0, idle_timeout: float = 300.0,
                 frame_timeout: float = 30.0, backoff: tuple[float, float] = (0.02, 1.0),
                 keys: Keys | None = None, stall_warning: float = 0.075,
                 max_connections: int = 1024, max_requests_per_connection: int = 256,
                 max_requests: int = 4096, busy_retry_ms: int = 20,
                 request_expiry: float = 30.0) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.inputs = inputs
        self.peer_queue = peer_queue
        self.client_queue = client_queue
        self.hello_timeout = hello_timeout
        self.idle_timeout = idle_timeout
        self.frame_timeout = frame_timeout
        self.backoff = backoff
        self.keys = keys or Keys()
        """The cluster key and client tokens (:mod:`graphrep.net.handshake`)."""
        self.stall_warning = stall_warning
        self.max_connections = max_connections
        """Client connections open at once; one more is refused in the handshake with a
        ``busy`` reason (peers, bounded by the cluster file, do not count)."""
        self.max_requests_per_connection = max_requests_per_connection
        self.max_requests = max_requests
        """Client requests (writes and searches) in flight, per connection and in all:
        one more is answered ``busy`` at once, with a retry-after hint of
        ``busy_retry_ms``, instead of queueing. A request is in flight from its arrival
        to its reply, or for ``request_expiry`` seconds (a leader that steps down drops
        the writes it had not acknowledged: their clients retry)."""
        self.busy_retry_ms = busy_retry_ms
        self.request_expiry = request_expiry
        """A callback that holds the loop longer than this (seconds) is logged and
        counted (``loop_stalls``): meanwhile the node sends nothing, not even heartbeats,
        so a stall near the election timeout makes its peers stand for election."""


def counter_totals(driver: Any) -> dict[str, int]:
    """A driver's counters with its transport's (refused TLS handshakes) added: what a
    node's status and its metrics report."""
    out = dict(driver.counters)
    for key, value in getattr(getattr(driver, "transport", None), "counters", {}).items():
        out[key] = out.get(key, 0) + value
    return out


def _op_of(msg: Any) -> str:
    return msg.op if type(msg) is ClientWrite else "search"


class _ClientConn:
    """A client connected to this node: the replies the loop queues for it, and its
    requests in flight (request id -> when it arrived)."""

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self.send, self.receive = trio.open_memory_channel[bytes](size)
        self.inflight: dict[int, tuple[float, str]] = {}  # req -> (arrival, op)


def _field(payload: bytes, k: int, kind: type = int) -> Any:
    """Item ``k`` of a message (``[version, type, shard, req or term, ...]``) if it is of
    type ``kind``, read without decoding the rest: 1 is the type code, 2 the shard, 3 a
    reply's request id, 4 its status (a str)."""
    if k <= 2 and kind is int and len(payload) > 3 and payload[0] & 0xF0 == 0x90 \
            and payload[0] & 0x0F > k and payload[1] < 0x80 and payload[2] < 0x80 \
            and payload[3] < 0x80:
        return payload[k + 1]  # a fixarray of positive fixints: the common case, at once
    try:
        unpacker = msgpack.Unpacker(max_buffer_size=len(payload) + 1)
        unpacker.feed(payload)
        if unpacker.read_array_header() <= k:
            return None
        for _ in range(k):
            unpacker.skip()
        value = unpacker.unpack()
    except Exception:  # not a message of this shape
        return None
    return value if type(value) is kind else None


@dataclass(frozen=True)
class Residency:
    """Where each shard may live (its allowed regions) and where each node is: a node
    sends and accepts a shard's messages only to and from nodes in that shard's regions
    (data residency, enforced on the wire as well as by the placement)."""

    regions: dict[str, str]
    allowed: dict[int, tuple[str, ...]]

    def admits(self, node: str, shard: int | None) -> bool:
        if shard is None or shard not in self.allowed:
            return True  # not a shard's message (or a shard unknown here: refused later)
        return self.regions.get(node) in self.allowed[shard]


class NodeDriver:
    """``NodeDriver(name, factory, store, transport, cluster=..., peers=...)``.

    ``factory(name, disk)`` builds the process from the store's durable map;
    ``peers`` are the names of the other nodes this one sends to (the transport knows
    where they are). With ``decode`` (``graphrep.protocol.messages.decode``), messages
    are decoded as they arrive, a malformed one closes its connection, and the process
    gets ``on_decoded(now, src, message)``; without, it gets ``on_message`` with the
    bytes. ``await driver.run(task_status=...)`` runs the node until
    cancelled or :meth:`shutdown`; it reports started once the process has started and
    the node accepts connections.
    """

    def __init__(self, name: str, factory: Callable[[str, dict], Any], store: SQLiteStore,
                 transport: Transport, *, cluster: str, peers: list[str] | tuple[str, ...],
                 config: DriverConfig | None = None,
                 control: ControlHandler | None = None,
                 decode: Callable[[bytes, int], Any] | None = None,
                 residency: Residency | None = None,
                 latency: dict[str, tuple[float, float]] | None = None) -> None:
        self.name = name
        self.residency = residency
        self.on_request_done: Callable[[str, str, float], None] | None = None
        """Called with (op, status, seconds) as each client request is answered (its
        reply queued): ``insert``/``delete``/``delta``/``search``, the reply's status."""
        self.traffic: collections.Counter[tuple[str, str]] = collections.Counter()
        """(``sent``/``received``, message type) -> bytes, over peer and client
        connections (frame bodies)."""
        self.frames: collections.Counter[tuple[str, str]] = collections.Counter()
        self.latency = latency or {}
        """Peer -> the one-way (delay, jitter) in seconds its frames are held (emulated
        regions: see :class:`~graphrep.net.peers.PeerLink`)."""
        self.factory = factory
        self.store = store
        self.transport = transport
        self.cluster = cluster
        self.config = config or DriverConfig()
        self.control = control
        self._decode = decode
        self.peer_names = sorted(p for p in peers if p != name)
        self.process: Any = None
        self.links: dict[str, PeerLink] = {}
        self.clients: dict[str, _ClientConn] = {}
        self._connections = 0  # accepted and open, peers' included
        self._peer_connections = 0
        self._requests = 0  # client requests in flight, over every connection
        self.metrics: dict[str, float] = collections.defaultdict(float)
        self.counters: dict[str, int] = collections.defaultdict(int)
        self._timers: dict[Hashable, tuple[int, trio.CancelScope, bool]] = {}
        self._unsynced: dict[Hashable, Any] = {}  # DurableWrites since the last Sync
        self._timer_token = 0
        self._held: collections.deque[tuple[int, str, bytes]] = collections.deque()
        self._need = 0  # the commit every send from now on waits for
        self._inputs_send, self._inputs = trio.open_memory_channel[tuple](self.config.inputs)
        self._stopping = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._timer_nursery: trio.Nursery | None = None
        self._held_wake = trio.Event()

    # ------------------------------------------------------------------ running

    @staticmethod
    def now() -> int:
        return round(trio.current_time() * 1e9)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        disk = self.store.load()
        self.process = self.factory(self.name, disk)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._run_store)
            nursery.start_soon(self._release_held)
            for peer in self.peer_names:
                link = PeerLink(self, peer)
                self.links[peer] = link
                nursery.start_soon(link.run)
                if link.latency is not None:
                    nursery.start_soon(link.run_delay_line)
            timers = await nursery.start(self._timer_host)
            self._timer_nursery = timers
            self._carry_out(self.process.on_start(self.now()))
            await nursery.start(self.transport.serve, self.name, self._serve_connection)
            nursery.start_soon(self._loop)
            task_status.started()
            await self._stopping.wait()
            # graceful: stop taking inputs, let the commit in progress finish
            if self.store.committing is not None:
                await self.store.wait(self.store.committing)
            nursery.cancel_scope.cancel()

    async def _run_store(self) -> None:
        try:
            await self.store.run()
        except StoreError as exc:
            # A cancellation that reaches the store as it starts a commit (this node
            # crashed or is shutting down) is not a failed commit: let it cancel.
            if isinstance(exc.__cause__, trio.Cancelled):
                raise exc.__cause__ from None
            raise

    def shutdown(self) -> None:
        """Stop: no more inputs; the commit in progress finishes; :meth:`run` returns."""
        self._stopping.set()

    async def _timer_host(self, task_status: trio.TaskStatus[trio.Nursery]) -> None:
        async with trio.open_nursery() as nursery:
            task_status.started(nursery)
            await trio.sleep_forever()

    async def _loop(self) -> None:
        """The serial loop: one input at a time, effects carried out in order."""
        async for item in self._inputs:
            kind = item[0]
            started = time.perf_counter()
            if kind == "msg":
                _, src, msg, size = item
                if self._decode is None:
                    effects = self.process.on_message(self.now(), src, msg, size)
                else:
                    effects = self.process.on_decoded(self.now(), src, msg)
            elif kind == "timer":
                _, name, token = item
                held = self._timers.get(name)
                if held is None or held[0] != token:
                    continue  # cancelled or replaced after it fired
                if not held[2]:
                    del self._timers[name]  # a one-shot timer is gone once it fired
                effects = self.process.on_timer(self.now(), name)
            elif kind == "ctl":
                _, client, request = item
                self._answer_control(client, request)
                continue
            else:  # pragma: no cover - the driver puts only the kinds above
                raise NetError(f"unknown input {kind!r}")
            took = time.perf_counter() - started
            if took > self.config.stall_warning:
                self._stalled(took, item)
            self._carry_out(effects)

    def _stalled(self, took: float, item: tuple) -> None:
        """Count and log a callback that held the loop for ``took`` seconds."""
        self.counters["loop_stalls"] += 1
        worst = self.counters.get("loop_stall_max_ms", 0)
        self.counters["loop_stall_max_ms"] = max(worst, round(took * 1e3))
        what = (f"a message from {item[1]!r}" if item[0] == "msg"
                else f"timer {item[1]!r}")
        log.warning("%s: handling %s held the loop for %.0f ms (more than %.0f ms): "
                    "nothing was sent meanwhile; if this nears the election timeout, "
                    "raise election_timeout_ms in the cluster file", self.name, what,
                    took * 1e3, self.config.stall_warning * 1e3)

    # ------------------------------------------------------------------ effects

    def _carry_out(self, effects: Any) -> None:
        if not effects:
            return
        store = self.store
        for e in effects:
            cls = type(e)
            if cls is Send or (cls is tuple and len(e) == 3):
                to, payload, _ = e
                self._send(to, payload)
            elif cls is DurableWrite:
                self._unsynced[e.key] = e.value
            elif cls is Sync:
                if self._unsynced:
                    for key, value in self._unsynced.items():
                        store.put(key, value)
                    self._unsynced.clear()
                self._need = max(self._need, store.request_sync())
            elif cls is SetTimer:
                self._set_timer(e.name, e.delay_ns, e.periodic)
            elif cls is CancelTimer:
                held = self._timers.pop(e.name, None)
                if held is not None:
                    held[1].cancel()
            elif cls is Metric:
                self.metrics[e.name] += e.value
            elif cls is Work:
                self.counters["work_distances"] += e.distances
                self.counters["work_entries"] += e.entries
            elif cls is Log:
                log.info("%s: %s", self.name, e.text)
            elif cls is Busy:
                pass  # real CPU was spent for real
            else:
                raise NetError(f"process {self.name!r} returned {e!r}, which is not an effect "
                               "of graphrep.sansio")

    def _send(self, to: str, payload: bytes) -> None:
        if self._held or self.store.durable < self._need:
            self._held.append((self._need, to, payload))
            self._held_wake.set()
            return
        self._deliver(to, payload)

    def _deliver(self, to: str, payload: bytes) -> None:
        if to == self.name:
            self._to_self(payload)
            return
        kind = message_type(_field(payload, 1))
        self.traffic["sent", kind] += len(payload)
        self.frames["sent", kind] += 1
        data = frame(payload)
        link = self.links.get(to)
        if link is not None:
            if self.residency is not None and not self.residency.admits(
                    to, _field(payload, 2)):
                self._nonresident("to", to, payload)
                return
            if not link.offer(data):
                self.counters["dropped_sends"] += 1
            return
        conn = self.clients.get(to)
        if conn is None:
            self.counters["sends_to_absent_client"] += 1
            return
        if conn.inflight:
            held = conn.inflight.pop(_field(payload, 3), None)
            if held is not None:
                self._requests -= 1
                self._request_done(held[1], _field(payload, 4, str) or "?",
                                   time.monotonic() - held[0])
        try:
            conn.send.send_nowait(data)
        except trio.WouldBlock:
            self.counters["dropped_sends"] += 1
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.counters["sends_to_absent_client"] += 1

    def _to_self(self, payload: bytes) -> None:
        """A send to this node: into its own inputs, as if it had come from a peer."""
        try:
            msg = self._decoded(payload)
        except (FrameError, ProtocolError):
            self.counters["frame_errors"] += 1
            return
        try:
            self._inputs_send.send_nowait(("msg", self.name, msg, len(payload)))
        except trio.WouldBlock:
            self.counters["dropped_sends"] += 1

    async def _release_held(self) -> None:
        """Sends held behind a commit leave, in order, once that commit is durable."""
        while True:
            while not self._held:
                self._held_wake = trio.Event()
                await self._held_wake.wait()
            need = self._held[0][0]
            await self.store.wait(need)
            while self._held and self._held[0][0] <= self.store.durable:
                _, to, payload = self._held.popleft()
                self._deliver(to, payload)

    def _set_timer(self, name: Hashable, delay_ns: int, periodic: bool) -> None:
        if type(delay_ns) is not int or delay_ns < 0 or (periodic and delay_ns == 0):
            raise NetError(f"process {self.name!r} set timer {name!r} with delay "
                           f"{delay_ns!r}: a delay is an int >= 0 ns (> 0 if periodic)")
        try:
            hash(name)
        except TypeError:
            raise NetError(f"process {self.name!r} set a timer named {name!r}, which is not "
                           "hashable") from None
        old = self._timers.pop(name, None)
        if old is not None:
            old[1].cancel()
        self._timer_token += 1
        token = self._timer_token
        scope = trio.CancelScope()
        self._timers[name] = (token, scope, bool(periodic))
        assert self._timer_nursery is not None
        # the delay counts from now (the callback's turn), not from when the task starts
        deadline = trio.current_time() + delay_ns / 1e9
        self._timer_nursery.start_soon(self._timer, name, token, scope, deadline,
                                       delay_ns / 1e9, periodic)

    async def _timer(self, name: Hashable, token: int, scope: trio.CancelScope,
                     deadline: float, delay: float, periodic: bool) -> None:
        with scope:
            while True:
                await trio.sleep_until(deadline)
                await self._inputs_send.send(("timer", name, token))
                if not periodic:
                    return
                # re-arm from the scheduled time, not from now: no drift
                deadline = max(deadline + delay, trio.current_time())

    # ------------------------------------------------------------------ connections

    async def _serve_connection(self, stream: trio.abc.Stream) -> None:
        """One accepted connection: hello, then frames into the loop until it closes.
        Whatever goes wrong closes this connection only."""
        cfg = self.config
        reader = FrameReader(stream, cfg.max_frame_bytes)
        peer = "?"
        self._connections += 1
        try:
            with trio.fail_after(cfg.hello_timeout):
                body = await reader.next()
            if body is None:
                return
            hello = decode_hello(body)
            peer = hello.name
            if not await self._authenticate(stream, reader, hello):
                return
            if hello.role == "node":
                self.links[hello.name].poke()  # it is up: our link to it need not wait
                self._peer_connections += 1
                try:
                    await self._read_peer(reader, hello.name)
                finally:
                    self._peer_connections -= 1
            else:
                await self._serve_client(stream, reader, hello.name, hello.role)
        except trio.TooSlowError:
            self.counters["connection_timeouts"] += 1
            log.info("%s: closed a silent connection from %r", self.name, peer)
        except (FrameError, ProtocolError) as exc:
            self.counters["frame_errors"] += 1
            self.counters[f"frame_error:{type(exc).__name__}"] += 1
            log.warning("%s: closed the connection from %r: %s", self.name, peer, exc)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            self._connections -= 1
            await trio.aclose_forcefully(stream)

    async def _authenticate(self, stream: trio.abc.Stream, reader: FrameReader,
                            hello: Hello) -> bool:
        """The node's side of the handshake (:mod:`graphrep.net.handshake`) after
        ``hello``: whether the dialer proved its role's key. A refusal is answered,
        counted and logged with the peer's address, never a secret."""
        cfg = self.config
        why = check_hello(hello, self.cluster)
        if not why and hello.role == "node" and hello.name not in self.links:
            why = f"{hello.name!r} is not a node of this cluster's file"
        key = cfg.keys.key_for(hello.role)
        if not why and key is None:
            why = f"this cluster has no {hello.role} token"
        clients = self._connections - self._peer_connections
        if not why and hello.role != "node" and clients > cfg.max_connections:
            why = (f"busy: {clients - 1} client connections are open (max_connections "
                   f"{cfg.max_connections}); retry after {cfg.busy_retry_ms} ms")
            self.counters["busy_connections"] += 1
        nonce = os.urandom(NONCE_BYTES)
        if why or key is None:
            await stream.send_all(frame(encode_challenge(Challenge(
                WIRE_VERSION, False, self.name, why, nonce, b""))))
            busy = why.startswith("busy:")
            if not busy:
                self.counters["refused_hellos"] += 1
            log.log(logging.INFO if busy else logging.WARNING,
                    "%s: refused a connection from %r (%s): %s", self.name, hello.name,
                    peer_address(stream), why)
            return False
        mine = proof(key, "node", self.cluster, hello.name, self.name, hello.role,
                     hello.nonce, nonce)
        await stream.send_all(frame(encode_challenge(Challenge(
            WIRE_VERSION, True, self.name, "", nonce, mine))))
        with trio.fail_after(cfg.hello_timeout):
            body = await reader.next()
        if body is None:  # a dialer leaves when this node's proof fails its check
            self.counters["abandoned_handshakes"] += 1
            log.warning("%s: %r (%s) left after the challenge: it holds another %s, or it "
                        "is not a graphrep %s", self.name, hello.name, peer_address(stream),
                        secret_of(hello.role), "node" if hello.role == "node" else "client")
            return False
        theirs = decode_auth(body)
        expected = proof(key, "dialer", self.cluster, hello.name, self.name, hello.role,
                         hello.nonce, nonce)
        ok = hmac.compare_digest(theirs, expected)
        why = "" if ok else (f"the proof of the {secret_of(hello.role)} is wrong (another "
                             "secret, or replayed)")
        await stream.send_all(frame(encode_welcome(Welcome(WIRE_VERSION, ok, self.name, why))))
        if not ok:
            self.counters["refused_handshakes"] += 1
            log.warning("%s: refused a connection from %r (%s): %s", self.name, hello.name,
                        peer_address(stream), why)
        return ok

    async def _next_frame(self, reader: FrameReader) -> bytes | None:
        """The next frame, within the idle timeout (and the frame timeout once one has
        started arriving)."""
        cfg = self.config
        if not reader.mid_frame:
            with trio.fail_after(cfg.idle_timeout):
                if not await reader.wait_for_frame():
                    return None
        with trio.fail_after(cfg.frame_timeout):
            return await reader.next()

    def _decoded(self, body: bytes) -> Any:
        """A message for the process: decoded here (off the loop's turn, so a malformed
        one closes its connection before it is queued) when the driver has a decoder."""
        return body if self._decode is None else self._decode(body, self.config.max_frame_bytes)

    async def _read_peer(self, reader: FrameReader, peer: str) -> None:
        residency = self.residency
        while (body := await self._next_frame(reader)) is not None:
            msg = self._decoded(body)
            self._received(body, msg)
            if residency is not None and not residency.admits(
                    peer, getattr(msg, "shard", None) if self._decode else _field(msg, 2)):
                self._nonresident("from", peer, body)
                continue
            await self._inputs_send.send(("msg", peer, msg, len(body)))

    def _received(self, body: bytes, msg: Any) -> None:
        kind = (type(msg).__name__ if self._decode is not None
                else message_type(_field(body, 1)))
        self.traffic["received", kind] += len(body)
        self.frames["received", kind] += 1

    def _nonresident(self, way: str, peer: str, payload: bytes) -> None:
        """Count (and log, once per peer and shard) a message refused for residency."""
        self.counters["residency_refused"] += 1
        shard = _field(payload, 2)
        if self.counters[f"residency_refused:{peer}:{shard}"] == 0:
            regions = self.residency.regions if self.residency else {}
            allowed = self.residency.allowed.get(shard) if self.residency else None
            log.warning("%s: refused shard %s's messages %s %r: it is in region %r, and the "
                        "shard may live only in %s (check the regions in the cluster "
                        "files)", self.name, shard, way, peer, regions.get(peer), allowed)
        self.counters[f"residency_refused:{peer}:{shard}"] += 1

    async def _serve_client(self, stream: trio.abc.Stream, reader: FrameReader,
                            name: str, role: str = "write") -> None:
        """A client's connection: its requests into the loop, its replies written back.
        A ``read`` client's write is answered ``denied`` here and never reaches the
        process (when the driver decodes messages; one that does not has no notion of a
        write)."""
        conn = _ClientConn(name, self.config.client_queue)
        old = self.clients.get(name)
        if old is not None:
            old.send.close()
        self.clients[name] = conn
        error: BaseException | None = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write_client, stream, conn, nursery.cancel_scope)
                try:
                    while (body := await self._next_frame(reader)) is not None:
                        if is_control(body):
                            await self._inputs_send.send(("ctl", name, decode_control(body)))
                        else:
                            msg = self._decoded(body)
                            self._received(body, msg)
                            if self._decode is not None and type(msg) not in _CLIENT_REQUESTS:
                                raise FrameError(f"client {name!r} sent {type(msg).__name__}: "
                                                 "a client's connection carries only "
                                                 "ClientWrite and ClientSearch")
                            if role == "read" and type(msg) is ClientWrite:
                                self._deny(conn, msg)
                                continue
                            if self._decode is not None and not self._admit(conn, msg):
                                continue
                            await self._inputs_send.send(("msg", name, msg, len(body)))
                except (trio.TooSlowError, FrameError, ProtocolError, trio.BrokenResourceError,
                        trio.ClosedResourceError, OSError) as exc:
                    error = exc  # raised below, outside the nursery (no exception group)
                nursery.cancel_scope.cancel()
        finally:
            if self.clients.get(name) is conn:
                del self.clients[name]
            self._requests -= len(conn.inflight)
            conn.inflight.clear()
            conn.send.close()
        if error is not None:
            raise error

    def _admit(self, conn: _ClientConn, msg: Any) -> bool:
        """Count ``msg`` (a client's request) in flight, or answer it ``busy`` at once if
        its connection or the node is at its limit (a retry of a request in flight is
        the same request)."""
        if msg.req in conn.inflight:
            return True
        cfg = self.config
        now = time.monotonic()
        if (len(conn.inflight) >= cfg.max_requests_per_connection
                or self._requests >= cfg.max_requests):
            self._expire(now)
        if len(conn.inflight) >= cfg.max_requests_per_connection:
            why = (f"{len(conn.inflight)} requests in flight on this connection "
                   f"(max_requests_per_connection {cfg.max_requests_per_connection})")
        elif self._requests >= cfg.max_requests:
            why = f"{self._requests} requests in flight (max_requests {cfg.max_requests})"
        else:
            conn.inflight[msg.req] = (now, _op_of(msg))
            self._requests += 1
            return True
        self.counters["busy_replies"] += 1
        self._request_done(_op_of(msg), "busy", 0.0)
        why = f"node {self.name} is busy: {why}; retry after {cfg.busy_retry_ms} ms"
        if type(msg) is ClientWrite:
            reply = encode(WriteReply(msg.shard, msg.req, "busy", -1, cfg.busy_retry_ms,
                                      self.name, why))
        else:
            reply = encode(SearchReply(msg.shard, msg.req, "busy", why.encode(),
                                       cfg.busy_retry_ms, self.name))
        try:
            conn.send.send_nowait(frame(reply))
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            self.counters["dropped_sends"] += 1
        return False

    def _request_done(self, op: str, status: str, seconds: float) -> None:
        if self.on_request_done is not None:
            self.on_request_done(op, status, seconds)

    def _expire(self, now: float) -> None:
        """Forget requests in flight longer than ``request_expiry`` (never answered: a
        deposed leader dropped them)."""
        horizon = now - self.config.request_expiry
        for conn in self.clients.values():
            old = [req for req, (at, _) in conn.inflight.items() if at < horizon]
            for req in old:
                del conn.inflight[req]
            self._requests -= len(old)
            self.counters["expired_requests"] += len(old)

    def _deny(self, conn: _ClientConn, msg: ClientWrite) -> None:
        self.counters["denied_writes"] += 1
        self._request_done(_op_of(msg), "denied", 0.0)
        reply = encode(WriteReply(msg.shard, msg.req, "denied", -1, -1, self.name,
                                  "this connection holds a read token: writes need a write "
                                  "token"))
        try:
            conn.send.send_nowait(frame(reply))
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            self.counters["dropped_sends"] += 1

    @staticmethod
    async def _write_client(stream: trio.abc.Stream, conn: _ClientConn,
                            scope: trio.CancelScope) -> None:
        """Write a client's replies, coalesced; a failed write ends the connection."""
        try:
            async for data in conn.receive:
                await stream.send_all(coalesce(data, conn.receive)[0])
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        scope.cancel()

    def _answer_control(self, client: str, request: list) -> None:
        if self.control is None:
            reply = control("error", request[2] if len(request) > 2 else 0,
                            "this node answers no control requests")
        else:
            try:
                reply = self.control(self, request)
            except GraphrepError as exc:
                reply = control("error", request[2] if len(request) > 2 else 0, str(exc))
        conn = self.clients.get(client)
        if conn is not None:
            try:
                conn.send.send_nowait(frame(reply))
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                self.counters["dropped_sends"] += 1

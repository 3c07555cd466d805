"""A node's link to one peer: a bounded outgoing queue and the connection that drains it.

The link dials its peer, proves the cluster key (:func:`graphrep.net.handshake.dial`),
and then writes whatever is queued, many
frames per write (coalescing queued frames into one ``send_all`` is what makes many
outstanding messages cheap). If the connection fails, the frames of the failed write are
lost (the protocol retransmits) and the link dials again after an exponential backoff
with jitter, so a restarted cluster does not reconnect in lockstep. The peer never
writes on this connection after its welcome, so the link also keeps a read waiting on
it: a read that ends (the peer closed the connection, or its process died and its
kernel did) tells the link at once, rather than when its next write fails and loses the
frames in it; frames queued meanwhile wait in the queue for the next connection. A link waiting to
dial again dials at once when the peer connects to this node (:meth:`PeerLink.poke`): a
restarted node is heard from its peers as soon as it is up, not a backoff later (which
can be longer than an election timeout). ``offer`` never
blocks the node's loop: a full queue refuses the frame and the driver counts the drop.

A link to a peer in another emulated region (``[delays]`` in the cluster file) holds
each frame for the one-way delay plus a jitter drawn per frame, in a delay line that
keeps the frames in order (a frame never leaves before the one offered before it, as on
one TCP connection): a multi-region cluster on one machine.
"""

from __future__ import annotations

import collections
import logging
import random
from typing import TYPE_CHECKING

import trio

from graphrep.errors import FrameError, HandshakeRefused
from graphrep.net.handshake import dial

if TYPE_CHECKING:
    from graphrep.net.driver import NodeDriver

__all__ = ["PeerLink", "coalesce"]

log = logging.getLogger("graphrep.net")

_COALESCE_BYTES = 1 << 20


def coalesce(first: bytes, queue: trio.MemoryReceiveChannel[bytes]) -> tuple[bytes, int]:
    """``first`` and the frames already queued behind it (up to about 1 MiB) as one
    write, and how many frames it holds: one ``send_all`` for many frames is what makes
    many outstanding messages cheap."""
    chunks, size = [first], len(first)
    while size < _COALESCE_BYTES:
        try:
            more = queue.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            break
        chunks.append(more)
        size += len(more)
    return (b"".join(chunks) if len(chunks) > 1 else first), len(chunks)


class PeerLink:
    """``PeerLink(driver, peer)``: the outgoing side of ``driver``'s link to ``peer``."""

    def __init__(self, driver: NodeDriver, peer: str) -> None:
        self.driver = driver
        self.peer = peer
        self._send, self._receive = trio.open_memory_channel[bytes](driver.config.peer_queue)
        self.connected = False
        self.connects = 0
        self.failures = 0
        self.frames_sent = 0
        self.bytes_sent = 0
        self._rng = random.Random(f"{driver.name}->{peer}")
        self._waiting: trio.CancelScope | None = None  # the backoff before the next dial
        self.latency = driver.latency.get(peer)
        self._line: collections.deque[tuple[float, bytes]] = collections.deque()
        self._line_wake = trio.Event()
        self._last_release = 0.0

    def offer(self, data: bytes) -> bool:
        """Queue one frame (after the link's delay, if any); False (dropped) if the
        queue is full."""
        if self.latency is not None:
            if len(self._line) >= self.driver.config.peer_queue:
                return False
            delay, jitter = self.latency
            release = trio.current_time() + delay + self._rng.uniform(0, jitter)
            self._last_release = release = max(release, self._last_release)
            self._line.append((release, data))
            self._line_wake.set()
            return True
        try:
            self._send.send_nowait(data)
        except trio.WouldBlock:
            return False
        return True

    async def run_delay_line(self) -> None:
        """Move held frames into the queue as their time comes, in order."""
        line = self._line
        while True:
            while not line:
                self._line_wake = trio.Event()
                await self._line_wake.wait()
            release, data = line[0]
            await trio.sleep_until(release)
            line.popleft()
            try:
                self._send.send_nowait(data)
            except trio.WouldBlock:
                self.driver.counters["dropped_sends"] += 1

    def poke(self) -> None:
        """The peer has just connected to this node, so it is up: if this link is waiting
        to dial it again, dial now."""
        if self._waiting is not None:
            self._waiting.cancel()

    async def run(self) -> None:
        lo, hi = self.driver.config.backoff
        delay = lo
        while True:
            try:
                stream = await self.driver.transport.connect(self.driver.name, self.peer)
            except OSError:
                self.failures += 1
            else:
                try:
                    await self._handshake(stream)
                    self.connected = True
                    self.connects += 1
                    delay = lo
                    await self._serve(stream)
                except HandshakeRefused as exc:
                    self.failures += 1
                    self.driver.counters["refused_by_peer"] += 1
                    log.error("%s: %s", self.driver.name, exc)
                    delay = hi
                except (FrameError, trio.TooSlowError, trio.BrokenResourceError,
                        trio.ClosedResourceError, OSError):
                    self.failures += 1
                finally:
                    self.connected = False
                    await trio.aclose_forcefully(stream)
            waiting = self._waiting = trio.CancelScope()
            with waiting:
                await trio.sleep(delay * (0.5 + self._rng.random()))
            self._waiting = None
            delay = lo if waiting.cancelled_caught else min(delay * 2, hi)

    async def _handshake(self, stream: trio.abc.Stream) -> None:
        d = self.driver
        await dial(stream, cluster=d.cluster, name=d.name, node=self.peer, role="node",
                   key=d.config.keys.cluster_key, timeout=d.config.hello_timeout)

    async def _serve(self, stream: trio.abc.Stream) -> None:
        """Write queued frames until the connection fails or the peer closes it; raises
        why (outside the nursery, so the caller sees the error itself)."""
        failure: list[BaseException] = []

        async def pump(scope: trio.CancelScope) -> None:
            try:
                await self._pump(stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                failure.append(exc)
            scope.cancel()

        async def watch(scope: trio.CancelScope) -> None:
            try:
                while await stream.receive_some(65536):
                    pass  # the peer has nothing to say on this connection
                failure.append(trio.BrokenResourceError(f"{self.peer} closed the connection"))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                failure.append(exc)
            scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump, nursery.cancel_scope)
            nursery.start_soon(watch, nursery.cancel_scope)
        if failure:
            raise failure[0]

    async def _pump(self, stream: trio.abc.Stream) -> None:
        """Write queued frames, coalesced, until the connection fails (a write to a peer
        that closed or died raises, and the link dials again)."""
        async for data in self._receive:
            data, frames = coalesce(data, self._receive)
            await stream.send_all(data)
            self.frames_sent += frames
            self.bytes_sent += len(data)

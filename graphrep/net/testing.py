"""Test aids for the live driver, shipped beside it (as ``trio.testing`` is).

* :class:`MemoryTransport`: nodes in one trio run connected by in-memory streams, so a
  test can drive a whole cluster under ``trio.testing.MockClock``.
* :class:`FaultyTransport`: wraps any transport; :meth:`~FaultyTransport.cut` closes the
  connections between two nodes and refuses new ones until
  :meth:`~FaultyTransport.restore`.
* :func:`autojump`: ``MockClock``'s autojump, except that the clock stands still while a
  worker thread runs (the store commits in one).
"""

from __future__ import annotations

import math

import trio
import trio.testing

from graphrep.net.transport import Handler, Transport

__all__ = ["FaultyTransport", "MemoryTransport", "autojump"]


class MemoryTransport:
    """Every node registered by :meth:`serve` in this trio run is reachable by name."""

    def __init__(self) -> None:
        self._servers: dict[str, tuple[Handler, trio.Nursery]] = {}

    async def connect(self, src: str, peer: str) -> trio.abc.Stream:
        await trio.lowlevel.checkpoint()  # as a real connect, a place to be cancelled
        server = self._servers.get(peer)
        if server is None:
            raise ConnectionRefusedError(f"{peer} is not serving")
        handler, nursery = server
        ours, theirs = trio.testing.memory_stream_pair()
        try:
            nursery.start_soon(handler, theirs)
        except RuntimeError:  # the node is going down: its nursery takes no new tasks
            raise ConnectionRefusedError(f"{peer} is shutting down") from None
        return ours

    async def serve(self, name: str, handler: Handler, *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        entry = None
        try:
            async with trio.open_nursery() as nursery:
                entry = (handler, nursery)
                self._servers[name] = entry
                task_status.started()
                await trio.sleep_forever()
        finally:
            # a node restarted under the same name may have registered already
            if entry is not None and self._servers.get(name) is entry:
                del self._servers[name]


class _Tracked(trio.abc.Stream):
    """A stream that :class:`FaultyTransport` can close, and forgets once closed."""

    def __init__(self, inner: trio.abc.Stream, on_close: list[_Tracked]) -> None:
        self.inner = inner
        self._registry = on_close
        on_close.append(self)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        if self in self._registry:
            self._registry.remove(self)
        await self.inner.aclose()


class FaultyTransport:
    """``FaultyTransport(inner)``: ``inner`` with connections that a test can cut."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self._blocked: set[frozenset[str]] = set()
        self._open: dict[frozenset[str], list[_Tracked]] = {}

    def is_cut(self, a: str, b: str) -> bool:
        return frozenset((a, b)) in self._blocked

    async def connect(self, src: str, peer: str) -> trio.abc.Stream:
        pair = frozenset((src, peer))
        if pair in self._blocked:
            raise ConnectionRefusedError(f"{src} and {peer} are cut apart")
        stream = await self.inner.connect(src, peer)
        if pair in self._blocked:  # cut while this connection was being made
            await trio.aclose_forcefully(stream)
            raise ConnectionRefusedError(f"{src} and {peer} are cut apart")
        return _Tracked(stream, self._open.setdefault(pair, []))

    async def serve(self, name: str, handler: Handler, *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self.inner.serve(name, handler, task_status=task_status)

    async def cut(self, a: str, b: str) -> None:
        """Close every connection between ``a`` and ``b``; refuse new ones."""
        pair = frozenset((a, b))
        self._blocked.add(pair)
        for stream in list(self._open.get(pair, [])):
            await trio.aclose_forcefully(stream)

    def restore(self, a: str, b: str) -> None:
        self._blocked.discard(frozenset((a, b)))


async def autojump(clock: trio.testing.MockClock) -> None:
    """Run beside the code under test, with a ``MockClock`` that does not autojump itself
    (``MockClock()``): whenever every task waits, jump the clock to the next deadline,
    unless a worker thread is running.

    ``MockClock(autojump_threshold=0)`` jumps as soon as every task waits, and a task
    waiting for a thread waits: the clock would leap to the next timer, and the next,
    while a store commits in its worker thread, so a millisecond's commit could take
    virtual seconds and elections time out under a node that waits for its vote to be
    durable. Here the clock stands still until the thread is done: a commit takes no
    virtual time, as a ``Sync`` takes none in the simulator. Threads are those of trio's
    default limiter (``trio.to_thread.run_sync`` without a limiter of its own)."""
    limiter = trio.to_thread.current_default_thread_limiter()
    while True:
        await trio.testing.wait_all_tasks_blocked()
        jump = trio.lowlevel.current_statistics().seconds_to_next_deadline
        if limiter.borrowed_tokens or not 0 < jump < math.inf:
            # a thread is running (or nothing is due): wait a real millisecond for it,
            # without moving the clock
            await trio.testing.wait_all_tasks_blocked(0.001)
            continue
        clock.jump(jump)

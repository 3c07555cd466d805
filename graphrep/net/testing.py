"""Test aids for the live driver, shipped beside it (as ``trio.testing`` is).

* :class:`MemoryTransport`: nodes in one trio run connected by in-memory streams, so a
  test can drive a whole cluster under ``trio.testing.MockClock``.
* :class:`FaultyTransport`: wraps any transport; :meth:`~FaultyTransport.cut` closes the
  connections between two nodes and refuses new ones until
  :meth:`~FaultyTransport.restore`.
"""

from __future__ import annotations

import trio
import trio.testing

from graphrep.net.transport import Handler, Transport

__all__ = ["FaultyTransport", "MemoryTransport"]


class MemoryTransport:
    """Every node registered by :meth:`serve` in this trio run is reachable by name."""

    def __init__(self) -> None:
        self._servers: dict[str, tuple[Handler, trio.Nursery]] = {}

    async def connect(self, src: str, peer: str) -> trio.abc.Stream:
        server = self._servers.get(peer)
        if server is None:
            raise ConnectionRefusedError(f"{peer} is not serving")
        handler, nursery = server
        ours, theirs = trio.testing.memory_stream_pair()
        nursery.start_soon(handler, theirs)
        return ours

    async def serve(self, name: str, handler: Handler, *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._servers[name] = (handler, nursery)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._servers.pop(name, None)


class FaultyTransport:
    """``FaultyTransport(inner)``: ``inner`` with connections that a test can cut."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self._blocked: set[frozenset[str]] = set()
        self._open: dict[frozenset[str], list[trio.abc.Stream]] = {}

    async def connect(self, src: str, peer: str) -> trio.abc.Stream:
        pair = frozenset((src, peer))
        if pair in self._blocked:
            raise ConnectionRefusedError(f"{src} and {peer} are cut apart")
        stream = await self.inner.connect(src, peer)
        self._open.setdefault(pair, []).append(stream)
        return stream

    async def serve(self, name: str, handler: Handler, *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self.inner.serve(name, handler, task_status=task_status)

    async def cut(self, a: str, b: str) -> None:
        """Close every connection between ``a`` and ``b``; refuse new ones."""
        pair = frozenset((a, b))
        self._blocked.add(pair)
        for stream in self._open.pop(pair, []):
            await trio.aclose_forcefully(stream)

    def restore(self, a: str, b: str) -> None:
        self._blocked.discard(frozenset((a, b)))

"""How a live node reaches its peers and accepts connections: the driver's only view of
the network, so that the same driver runs over TCP (:class:`TCPTransport`) and over
in-memory streams in tests (:class:`graphrep.net.testing.MemoryTransport`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

import trio

from graphrep.errors import ConfigError

__all__ = ["Handler", "TCPTransport", "Transport", "parse_address"]

Handler = Callable[[trio.abc.Stream], Awaitable[None]]


class Transport(Protocol):
    async def connect(self, src: str, peer: str) -> trio.abc.Stream:
        """A new stream from node (or client) ``src`` to node ``peer`` (raises
        ``OSError`` if it cannot be reached)."""
        ...

    async def serve(self, name: str, handler: Handler, *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Accept connections for node ``name``, each handled by ``handler`` in a task of
        its own; report started once accepting."""
        ...


def parse_address(text: str) -> tuple[str, int]:
    """``"host:port"`` -> ``(host, port)``; :class:`ConfigError` if it is not one."""
    host, sep, port = str(text).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"an address is host:port with a port 0-65535, got {text!r}")
    return host, int(port)


class TCPTransport:
    """TCP: ``addresses`` maps node name -> ``"host:port"``. Connections disable Nagle's
    algorithm (``open_tcp_stream`` does), so small frames are not delayed."""

    def __init__(self, addresses: Mapping[str, str]) -> None:
        self.addresses = {n: parse_address(a) for n, a in addresses.items()}
        self.bound: dict[str, int] = {}

    async def connect(self, src: str, peer: str) -> trio.abc.Stream:
        host, port = self.addresses[peer]
        return await trio.open_tcp_stream(host, port)

    async def serve(self, name: str, handler: Handler, *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        host, port = self.addresses[name]
        listeners = await trio.open_tcp_listeners(port, host=host)
        self.bound[name] = listeners[0].socket.getsockname()[1]
        if port == 0:  # the OS chose: peers in this process find it here
            self.addresses[name] = (host, self.bound[name])
        await trio.serve_listeners(handler, listeners, task_status=task_status)

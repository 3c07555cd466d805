"""How a live node reaches its peers and accepts connections: the driver's only view of
the network, so that the same driver runs over TCP (:class:`TCPTransport`) and over
in-memory streams in tests (:class:`graphrep.net.testing.MemoryTransport`).

With :class:`TLSFiles`, every TCP connection runs TLS (stdlib :mod:`ssl` through
:class:`trio.SSLStream`): a node serves its certificate, and dialers (peers and clients)
check it against the cluster's CA and the address they dialled. A dialer that does not
speak TLS (a plaintext peer) fails the TLS handshake and is closed before a byte of it
is read as a frame; the node counts it (``tls_refused``). TLS protects what crosses
the network; who may connect is still decided by the handshake of
:mod:`graphrep.net.handshake`, inside it."""

from __future__ import annotations

import collections
import logging
import ssl
import stat
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import trio

from graphrep.errors import ConfigError

__all__ = ["Handler", "TCPTransport", "TLSFiles", "Transport", "parse_address",
           "peer_address"]

log = logging.getLogger("graphrep.net")

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


def peer_address(stream: trio.abc.Stream) -> str:
    """The peer's ``host:port`` of a TCP stream (under TLS too), for logs; "?" for a
    stream of another kind or a socket already closed."""
    stream = getattr(stream, "transport_stream", stream)  # under TLS, the TCP stream
    sock = getattr(stream, "socket", None)
    if sock is None:
        return "?"
    try:
        host, port = sock.getpeername()[:2]
    except OSError:
        return "?"
    return f"{host}:{port}"


def parse_address(text: str) -> tuple[str, int]:
    """``"host:port"`` -> ``(host, port)``; :class:`ConfigError` if it is not one."""
    host, sep, port = str(text).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"an address is host:port with a port 0-65535, got {text!r}")
    return host, int(port)


@dataclass(frozen=True)
class TLSFiles:
    """``[tls]`` of a cluster file: the CA that signed the nodes' certificates (``ca``),
    and the certificate chain and private key every node serves (``cert``, ``key``;
    the certificate names the nodes' addresses). The key file must be private."""

    ca: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        try:
            mode = self.key.stat().st_mode
        except OSError as exc:
            raise ConfigError(f"cannot read the TLS key {self.key}: {exc.strerror}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"the TLS key {self.key} may be read by group or others (mode "
                              f"{stat.S_IMODE(mode):o}); run `chmod 600 {self.key}`")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ctx.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load the TLS certificate {self.cert} with its key "
                              f"{self.key}: {exc}") from None
        return ctx

    def client_context(self) -> ssl.SSLContext:
        try:
            return ssl.create_default_context(cafile=str(self.ca))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load the TLS CA {self.ca}: {exc}") from None


class TCPTransport:
    """TCP: ``addresses`` maps node name -> ``"host:port"``. Connections disable Nagle's
    algorithm (``open_tcp_stream`` does), so small frames are not delayed. With ``tls``,
    every connection runs TLS; ``tls_timeout`` bounds its handshake. ``counters``
    counts refused TLS handshakes (a node's status reports them)."""

    def __init__(self, addresses: Mapping[str, str], *, tls: TLSFiles | None = None,
                 tls_timeout: float = 5.0) -> None:
        self.addresses = {n: parse_address(a) for n, a in addresses.items()}
        self.bound: dict[str, int] = {}
        self.tls = tls
        self.tls_timeout = tls_timeout
        self.counters: collections.Counter[str] = collections.Counter()
        self._client_ctx = tls.client_context() if tls is not None else None
        self._server_ctx: ssl.SSLContext | None = None

    async def connect(self, src: str, peer: str) -> trio.abc.Stream:
        host, port = self.addresses[peer]
        stream = await trio.open_tcp_stream(host, port)
        if self._client_ctx is None:
            return stream
        tls = trio.SSLStream(stream, self._client_ctx, server_hostname=host)
        try:
            with trio.fail_after(self.tls_timeout):
                await tls.do_handshake()
        except (trio.BrokenResourceError, trio.TooSlowError) as exc:
            await trio.aclose_forcefully(stream)
            cause = exc.__cause__ or exc
            raise OSError(f"TLS with {peer} at {host}:{port} failed: {cause}") from None
        return tls

    async def serve(self, name: str, handler: Handler, *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        host, port = self.addresses[name]
        if self.tls is not None and self._server_ctx is None:
            self._server_ctx = self.tls.server_context()  # only a node needs the key
        listeners = await trio.open_tcp_listeners(port, host=host)
        self.bound[name] = listeners[0].socket.getsockname()[1]
        if port == 0:  # the OS chose: peers in this process find it here
            self.addresses[name] = (host, self.bound[name])
        if self._server_ctx is not None:
            handler = self._over_tls(name, handler, self._server_ctx)
        await trio.serve_listeners(handler, listeners, task_status=task_status)

    def _over_tls(self, name: str, handler: Handler, ctx: ssl.SSLContext) -> Handler:
        async def serve_tls(stream: trio.SocketStream) -> None:
            tls = trio.SSLStream(stream, ctx, server_side=True)
            try:
                with trio.fail_after(self.tls_timeout):
                    await tls.do_handshake()
            except (trio.BrokenResourceError, trio.TooSlowError) as exc:
                self.counters["tls_refused"] += 1
                log.warning("%s: refused a connection from %s: no TLS handshake (%s); is "
                            "the peer configured for TLS?", name, peer_address(stream),
                            exc.__cause__ or type(exc).__name__)
                await trio.aclose_forcefully(stream)
                return
            await handler(tls)

        return serve_tls

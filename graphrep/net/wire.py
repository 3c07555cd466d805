"""The live wire: length-prefixed frames, the hello that opens every connection, and the
node's control frames.

A frame is a 4-byte big-endian length followed by that many bytes. The length is checked
against the connection's limit *before* anything is allocated, so a hostile length costs
nothing but the closed connection. Frame bodies are:

* the hello and its answer (the first frame each way on every connection);
* replication and client messages: exactly the canonical encodings of
  :mod:`graphrep.protocol.messages` (``[PROTOCOL_VERSION, type, fields...]``);
* control frames between a client and a node (``[0, kind, ...]``): version 0 is never a
  protocol version, so :func:`is_control` tells the two apart from the first two bytes.

The handshake (:mod:`graphrep.net.handshake` says what it proves)::

    Hello      ["graphrep", WIRE_VERSION, cluster id, sender name, role, nonce]
    Challenge  ["graphrep-challenge", WIRE_VERSION, ok, node name, reason, nonce, proof]
    Auth       ["graphrep-auth", proof]
    Welcome    ["graphrep-welcome", WIRE_VERSION, ok, node name, reason]

``role`` is ``node`` or a client's ``read`` / ``write``. A node that refuses a hello
says why in the challenge's ``reason``, one that refuses the proof in the welcome's,
and closes the connection; the refused side raises
:class:`~graphrep.errors.HandshakeRefused` with that reason.
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

import msgpack
import trio

from graphrep.errors import AuthenticationFailed, FrameError, HandshakeRefused, NodeBusy

__all__ = [
    "HEADER",
    "MAX_FRAME_BYTES",
    "NONCE_BYTES",
    "ROLES",
    "WIRE_VERSION",
    "Challenge",
    "FrameReader",
    "Hello",
    "Welcome",
    "check_hello",
    "control",
    "decode_auth",
    "decode_challenge",
    "decode_control",
    "decode_hello",
    "decode_welcome",
    "encode_auth",
    "encode_challenge",
    "encode_hello",
    "encode_welcome",
    "frame",
    "is_control",
]

WIRE_VERSION = 2
"""The version of the handshake and framing; a peer with another one is refused."""
MAX_FRAME_BYTES = 64 << 20
"""Default frame limit: must exceed the largest message (snapshot chunks, batches)."""
HEADER = struct.Struct(">I")
ROLES = ("node", "read", "write")
"""A dialer's roles: a peer node, or a client holding a read or a write token."""
NONCE_BYTES = 16
_MAGIC = "graphrep"
_CHALLENGE = "graphrep-challenge"
_AUTH = "graphrep-auth"
_WELCOME = "graphrep-welcome"
_PROOF_BYTES = 32
_MAX_NAME = 256


def frame(body: bytes) -> bytes:
    """``body`` as one frame (length prefix + body)."""
    return HEADER.pack(len(body)) + body


class FrameReader:
    """Reads frames from a trio stream.

    ``await reader.next()`` returns one frame's body, or None at a clean end of stream
    (between frames). It raises :class:`FrameError` for a length over ``max_bytes`` (before
    reading or allocating the body) or a stream that ends inside a frame. Reading is
    buffered: one ``receive_some`` may deliver many frames.
    """

    def __init__(self, stream: trio.abc.ReceiveStream, max_bytes: int = MAX_FRAME_BYTES
                 ) -> None:
        self.stream = stream
        self.max_bytes = max_bytes
        self._buf = bytearray()
        self.frames = 0
        self.bytes = 0

    @property
    def mid_frame(self) -> bool:
        """Whether bytes of an unfinished frame are buffered."""
        return bool(self._buf)

    async def _fill(self, need: int) -> bool:
        while len(self._buf) < need:
            chunk = await self.stream.receive_some(max(65536, need - len(self._buf)))
            if not chunk:
                if self._buf:
                    raise FrameError(f"the connection closed inside a frame ({len(self._buf)}"
                                     f" of {need} bytes received)")
                return False
            self._buf += chunk
        return True

    async def wait_for_frame(self) -> bool:
        """Wait until bytes of the next frame have arrived (True), or the stream ended
        cleanly between frames (False)."""
        return await self._fill(1)

    async def next(self) -> bytes | None:
        if not await self._fill(HEADER.size):
            return None
        (length,) = HEADER.unpack_from(self._buf)
        if length > self.max_bytes:
            raise FrameError(f"a frame of {length} bytes exceeds this connection's limit of "
                             f"{self.max_bytes} (max_frame_bytes in the cluster file)")
        await self._fill(HEADER.size + length)
        body = bytes(self._buf[HEADER.size : HEADER.size + length])
        del self._buf[: HEADER.size + length]
        self.frames += 1
        self.bytes += HEADER.size + length
        return body


class Hello(NamedTuple):
    version: int
    cluster: str
    name: str
    role: str
    nonce: bytes


class Challenge(NamedTuple):
    version: int
    ok: bool
    name: str
    reason: str
    nonce: bytes
    proof: bytes


class Welcome(NamedTuple):
    version: int
    ok: bool
    name: str
    reason: str


def encode_hello(hello: Hello) -> bytes:
    return msgpack.packb([_MAGIC, *hello], use_bin_type=True)


def _unpack(body: bytes, what: str) -> list:
    """A handshake frame: a short array of scalars (no maps, short strings)."""
    try:
        obj = msgpack.unpackb(body, raw=False, max_bin_len=4096, max_str_len=4096,
                              max_array_len=16, max_map_len=0)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise FrameError(f"the {what} does not decode ({type(exc).__name__}); is the peer "
                         "a graphrep node?") from None
    if type(obj) is not list:
        raise FrameError(f"the {what} is not an array; is the peer a graphrep node?")
    return obj


def decode_hello(body: bytes) -> Hello:
    """Parse a hello; :class:`FrameError` if it is not one (a stranger or garbage)."""
    obj = _unpack(body, "hello")
    if len(obj) != 6 or obj[0] != _MAGIC or type(obj[1]) is not int:
        raise FrameError("the first frame is not a graphrep hello; is the peer a graphrep "
                         "node or client?")
    _, version, cluster, name, role, nonce = obj
    if not (type(cluster) is str and type(name) is str and type(role) is str
            and type(nonce) is bytes and 0 < len(name) <= _MAX_NAME):
        raise FrameError("a hello's cluster, name, role and nonce must be str, str (1-256 "
                         "chars), str and bytes")
    return Hello(version, cluster, name, role, nonce)


def check_hello(hello: Hello, cluster: str) -> str:
    """Why a node refuses ``hello`` ("" if it goes on to the challenge)."""
    if hello.version != WIRE_VERSION:
        return (f"wire version {hello.version} is not this node's {WIRE_VERSION}: run the "
                "same graphrep version on both sides")
    if hello.cluster != cluster:
        return (f"cluster id {hello.cluster!r} is not this node's {cluster!r}: the peer uses "
                "another cluster file")
    if hello.role not in ROLES:
        return f"role {hello.role!r} is not one of {ROLES}"
    if len(hello.nonce) != NONCE_BYTES:
        return f"the hello's nonce is {len(hello.nonce)} bytes, not {NONCE_BYTES}"
    return ""


def encode_challenge(c: Challenge) -> bytes:
    return msgpack.packb([_CHALLENGE, *c], use_bin_type=True)


def _check_version(version: Any, name: Any) -> None:
    if version != WIRE_VERSION:
        raise HandshakeRefused(f"node {name!r} speaks wire version {version}, this side "
                               f"{WIRE_VERSION}: run the same graphrep version on both")


def decode_challenge(body: bytes) -> Challenge:
    """Parse the answer to a hello; raise :class:`HandshakeRefused` if it refuses."""
    obj = _unpack(body, "answer to the hello")
    if len(obj) < 2 or obj[0] != _CHALLENGE or type(obj[1]) is not int:
        raise FrameError("the answer to the hello is not a graphrep challenge")
    _check_version(obj[1], obj[3] if len(obj) > 3 else "?")
    if len(obj) != 7:
        raise FrameError("the answer to the hello is not a graphrep challenge")
    c = Challenge(*obj[1:])
    if not (type(c.ok) is bool and type(c.name) is str and type(c.reason) is str
            and type(c.nonce) is bytes and type(c.proof) is bytes):
        raise FrameError("a challenge's ok, name, reason, nonce and proof must be bool, "
                         "str, str, bytes and bytes")
    if not c.ok:
        error = NodeBusy if c.reason.startswith("busy:") else HandshakeRefused
        raise error(f"node {c.name!r} refused the connection: {c.reason}")
    if len(c.nonce) != NONCE_BYTES or len(c.proof) != _PROOF_BYTES:
        raise FrameError("a challenge's nonce or proof has the wrong length")
    return c


def encode_auth(proof: bytes) -> bytes:
    return msgpack.packb([_AUTH, proof], use_bin_type=True)


def decode_auth(body: bytes) -> bytes:
    """The dialer's proof; :class:`FrameError` if the frame is not an Auth."""
    obj = _unpack(body, "proof")
    if len(obj) != 2 or obj[0] != _AUTH or type(obj[1]) is not bytes:
        raise FrameError("the frame after the challenge is not a graphrep proof")
    return obj[1]


def encode_welcome(w: Welcome) -> bytes:
    return msgpack.packb([_WELCOME, *w], use_bin_type=True)


def decode_welcome(body: bytes) -> Welcome:
    """Parse the last frame of the handshake; raise
    :class:`~graphrep.errors.AuthenticationFailed` if the node refused the proof."""
    obj = _unpack(body, "answer to the proof")
    if len(obj) != 5 or obj[0] != _WELCOME or type(obj[1]) is not int:
        raise FrameError("the answer to the proof is not a graphrep welcome")
    w = Welcome(*obj[1:])
    _check_version(w.version, w.name)
    if not (type(w.ok) is bool and type(w.name) is str and type(w.reason) is str):
        raise FrameError("a welcome's ok, name and reason must be bool, str and str")
    if not w.ok:
        raise AuthenticationFailed(f"node {w.name!r} refused the connection: {w.reason}")
    return w


def control(kind: str, *fields: Any) -> bytes:
    """A control frame body (client <-> node, never replicated): ``[0, kind, fields...]``."""
    return msgpack.packb([0, kind, *fields], use_bin_type=True)


def is_control(body: bytes) -> bool:
    """Whether a frame body is a control frame (a msgpack array whose first item is 0)
    rather than a protocol message (whose first item is the protocol version, >= 1).

    The array header is a fixarray (up to 15 items, one byte), an array 16 (three bytes)
    or an array 32 (five bytes): a control frame with many fields is still one."""
    if not body:
        return False
    head = body[0]
    skip = 1 if head & 0xF0 == 0x90 else 3 if head == 0xDC else 5 if head == 0xDD else 0
    return 0 < skip < len(body) and body[skip] == 0


def decode_control(body: bytes) -> list:
    """Parse a control frame; :class:`FrameError` unless it is ``[0, kind, fields...]``.

    Its size is bounded by the frame limit alone (the reader refused anything longer):
    a control reply can be large (``ids`` of a big shard is 8 bytes per vector)."""
    n = len(body)
    try:
        obj = msgpack.unpackb(body, raw=False, max_bin_len=n, max_str_len=n,
                              max_array_len=n, max_map_len=n // 2)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise FrameError(f"the control frame does not decode ({type(exc).__name__})"
                         ) from None
    if (type(obj) is not list or len(obj) < 2 or type(obj[0]) is not int or obj[0] != 0
            or type(obj[1]) is not str):
        raise FrameError("a control frame is [0, kind, fields...]")
    return obj

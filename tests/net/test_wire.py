"""The live wire: frames reassembled from any chunking, a hostile length refused from the
header alone, a cut frame told from a clean end; the hello and its answer refuse every
kind of stranger and say why; control frames told apart from every protocol message."""

from __future__ import annotations

import itertools
import struct
import tracemalloc

import msgpack
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from graphrep.errors import AuthenticationFailed, FrameError, HandshakeRefused, NetError
from graphrep.net.wire import (
    HEADER,
    MAX_FRAME_BYTES,
    NONCE_BYTES,
    ROLES,
    WIRE_VERSION,
    Challenge,
    FrameReader,
    Hello,
    Welcome,
    check_hello,
    control,
    decode_auth,
    decode_challenge,
    decode_control,
    decode_hello,
    decode_welcome,
    encode_auth,
    encode_challenge,
    encode_hello,
    encode_welcome,
    frame,
    is_control,
)
from graphrep.protocol import messages
from graphrep.protocol import messages as m


class ChunkStream(trio.abc.ReceiveStream):
    """A receive stream that delivers exactly ``chunks``, one per ``receive_some`` (split
    further only when the reader asks for fewer bytes), then the end of the stream. It
    records the sizes the reader asked for."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = [bytes(c) for c in chunks if c]
        self.asked: list[int | None] = []

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        self.asked.append(max_bytes)
        if not self.chunks:
            return b""
        chunk = self.chunks.pop(0)
        if max_bytes is not None and len(chunk) > max_bytes:
            chunk, rest = chunk[:max_bytes], chunk[max_bytes:]
            self.chunks.insert(0, rest)
        return chunk

    async def aclose(self) -> None:
        pass


def reference(data: bytes, max_bytes: int) -> tuple[list[bytes], str]:
    """What a correct reader makes of ``data``: its frames, then ``eof`` (a clean end),
    ``limit`` (a length over the limit) or ``cut`` (the data ends inside a frame)."""
    out, pos = [], 0
    while pos < len(data):
        if len(data) - pos < HEADER.size:
            return out, "cut"
        (n,) = HEADER.unpack_from(data, pos)
        if n > max_bytes:
            return out, "limit"
        if len(data) - pos - HEADER.size < n:
            return out, "cut"
        out.append(data[pos + HEADER.size : pos + HEADER.size + n])
        pos += HEADER.size + n
    return out, "eof"


async def read_all(reader: FrameReader) -> tuple[list[bytes], str]:
    """Every frame ``reader`` returns, then ``eof`` or ``error`` (a FrameError); any other
    exception propagates."""
    out = []
    while True:
        try:
            body = await reader.next()
        except FrameError:
            return out, "error"
        if body is None:
            return out, "eof"
        assert type(body) is bytes
        assert len(body) <= reader.max_bytes
        out.append(body)


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


# ---------------------------------------------------------------- FrameReader


BODIES = [b"", b"a", b"\x00" * 3, bytes(range(256)) * 4, b"hello" * 400]


@pytest.mark.trio
@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 1000, 1 << 20])
async def test_frames_split_at_any_boundary_are_reassembled(size):
    """Over a lockstep stream each ``send_all`` reaches the reader as its own chunk(s), so
    headers and bodies arrive cut at every offset ``size`` makes."""
    data = b"".join(frame(b) for b in BODIES)
    send, receive = trio.testing.lockstep_stream_one_way_pair()
    reader = FrameReader(receive, max_bytes=4096)

    async def sender() -> None:
        for chunk in split(data, size):
            await send.send_all(chunk)
        await send.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        got = await read_all(reader)
    assert got == (BODIES, "eof")
    assert reader.frames == len(BODIES)
    assert reader.bytes == len(data)
    assert not reader.mid_frame


@pytest.mark.trio
async def test_a_frame_larger_than_one_receive_is_reassembled():
    body = bytes(range(256)) * 1000  # 256 000 bytes: several receive_some calls
    send, receive = trio.testing.memory_stream_one_way_pair()
    reader = FrameReader(receive)
    async with trio.open_nursery() as nursery:

        async def sender() -> None:
            for chunk in split(frame(body) + frame(b"next"), 10_000):
                await send.send_all(chunk)
                await trio.testing.wait_all_tasks_blocked()
            await send.aclose()

        nursery.start_soon(sender)
        assert await reader.next() == body
        assert await reader.next() == b"next"
        assert await reader.next() is None


@pytest.mark.trio
async def test_many_frames_in_one_chunk_come_out_one_by_one():
    send, receive = trio.testing.memory_stream_pair()
    reader = FrameReader(receive)
    await send.send_all(frame(b"one") + frame(b"") + frame(b"three") + frame(b"fo"))
    await send.send_stream.aclose()
    assert [await reader.next() for _ in range(4)] == [b"one", b"", b"three", b"fo"]
    assert await reader.next() is None
    assert await reader.next() is None  # the end stays the end


@pytest.mark.trio
async def test_a_huge_length_is_refused_from_the_header_alone():
    """A header announcing 2 GiB, and nothing after it, on a stream that stays open: the
    reader must raise at once. If it waited for the body it would block for ever (and
    the test sees it blocked); if it allocated the body, tracemalloc sees the peak."""
    send, receive = trio.testing.memory_stream_one_way_pair()
    reader = FrameReader(receive)
    await send.send_all(HEADER.pack(2 << 30))
    outcome: list[BaseException | bytes | None] = []

    async def read() -> None:
        try:
            outcome.append(await reader.next())
        except Exception as exc:
            outcome.append(exc)

    tracemalloc.start()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            await trio.testing.wait_all_tasks_blocked()
            blocked = not outcome
            nursery.cancel_scope.cancel()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not blocked, "the reader waited for the body of a frame over its limit"
    (exc,) = outcome
    assert isinstance(exc, FrameError)
    assert f"{2 << 30} bytes exceeds" in str(exc) and str(MAX_FRAME_BYTES) in str(exc)
    assert "max_frame_bytes" in str(exc)  # says which setting to change
    assert peak < 1 << 20, f"{peak} bytes allocated to refuse a frame"


@pytest.mark.trio
async def test_the_limit_is_inclusive():
    reader = FrameReader(ChunkStream([frame(b"x" * 10), frame(b"y" * 11)]), max_bytes=10)
    assert await reader.next() == b"x" * 10
    with pytest.raises(FrameError, match=r"11 bytes exceeds .* limit of 10"):
        await reader.next()


@pytest.mark.trio
async def test_the_reader_never_asks_for_more_than_the_limit_allows():
    """The receive size is bounded by the limit checked, not by the length announced."""
    stream = ChunkStream([HEADER.pack(1 << 31)])
    with pytest.raises(FrameError):
        await FrameReader(stream, max_bytes=100).next()
    assert stream.asked == [65536]


@pytest.mark.trio
@pytest.mark.parametrize("data", [
    pytest.param(frame(b"0123456789")[:-1], id="one body byte short"),
    pytest.param(frame(b"0123456789")[:6], id="two of ten body bytes"),
    pytest.param(HEADER.pack(5), id="a header and no body"),
    pytest.param(b"\x00\x00", id="half a header"),
    pytest.param(b"\x00", id="one header byte"),
])
async def test_the_end_inside_a_frame_is_an_error(data):
    send, receive = trio.testing.memory_stream_one_way_pair()
    await send.send_all(frame(b"whole") + data)
    await send.aclose()
    reader = FrameReader(receive)
    assert await reader.next() == b"whole"
    with pytest.raises(FrameError, match="closed inside a frame"):
        await reader.next()


@pytest.mark.trio
async def test_a_clean_end_returns_none():
    send, receive = trio.testing.memory_stream_one_way_pair()
    await send.aclose()
    assert await FrameReader(receive).next() is None


@pytest.mark.trio
async def test_mid_frame_tells_a_started_frame():
    send, receive = trio.testing.memory_stream_one_way_pair()
    reader = FrameReader(receive)
    assert not reader.mid_frame
    await send.send_all(frame(b"abc") + frame(b"defg")[:5])
    assert await reader.next() == b"abc"
    assert reader.mid_frame
    await send.send_all(frame(b"defg")[5:])
    assert await reader.next() == b"defg"
    assert not reader.mid_frame


@st.composite
def streams(draw) -> tuple[bytes, int, list[bytes]]:
    """(data, max_bytes, chunks): either arbitrary bytes, or well-formed frames with
    lengths around the limit and an arbitrary (possibly empty) tail; cut anywhere."""
    max_bytes = draw(st.integers(0, 80))
    if draw(st.booleans()):
        data = draw(st.binary(max_size=300))
    else:
        bodies = draw(st.lists(st.binary(max_size=100), max_size=6))
        data = b"".join(frame(b) for b in bodies) + draw(st.binary(max_size=8))
    cuts = sorted(set(draw(st.lists(st.integers(0, len(data)), max_size=12))))
    edges = [0, *cuts, len(data)]
    return data, max_bytes, [data[a:b] for a, b in itertools.pairwise(edges)]


@settings(max_examples=300)
@given(streams())
def test_any_byte_stream_gives_frames_then_none_or_a_frame_error(case):
    """Whatever arrives, chunked however: the reader returns exactly the frames a correct
    parser finds (never one over the limit), then None at a clean end or FrameError (a
    length over the limit, a cut frame) - never another exception - and never asks the
    stream for more than the limit allows."""
    data, max_bytes, chunks = case
    stream = ChunkStream(chunks)
    reader = FrameReader(stream, max_bytes=max_bytes)
    frames, end = trio.run(read_all, reader)
    want, why = reference(data, max_bytes)
    assert frames == want
    assert end == ("eof" if why == "eof" else "error")
    assert all(len(b) <= max_bytes for b in frames)
    assert max(stream.asked) <= max(65536, HEADER.size + max_bytes)


# ---------------------------------------------------------------- the handshake's frames


N16 = b"\x01" * NONCE_BYTES
HELLO = Hello(WIRE_VERSION, "c1", "n1", "node", N16)
CHALLENGE = Challenge(WIRE_VERSION, True, "n0", "", b"\x02" * NONCE_BYTES, b"\x03" * 32)


def test_a_hello_round_trips():
    for hello in [HELLO, Hello(WIRE_VERSION, "", "x" * 256, "write", N16)]:
        back = decode_hello(encode_hello(hello))
        assert back == hello and type(back) is Hello
        assert check_hello(back, hello.cluster) == ""


def _id(body: object) -> str:
    """A short test id for a bytes parameter."""
    return body[:24].hex() if isinstance(body, bytes) else repr(body)


def _hello(*items) -> bytes:
    return msgpack.packb(list(items), use_bin_type=True)


V = WIRE_VERSION


@pytest.mark.parametrize("body", [
    b"",
    b"\xc1",                                     # never valid msgpack
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",         # a stranger
    _hello("graphrep", V, "c", "n", "node", N16) + b"\x00",  # trailing bytes
    msgpack.packb({"graphrep": V}),
    msgpack.packb("graphrep"),
    _hello("graphrep", V, "c", "n", "node"),      # too short
    _hello("graphrep", V, "c", "n", "node", N16, 0),  # too long
    _hello("graphrap", V, "c", "n", "node", N16),  # wrong magic
    _hello(b"graphrep", V, "c", "n", "node", N16),  # magic as bytes
    _hello("graphrep-welcome", V, True, "n", ""),  # a welcome is not a hello
    _hello("graphrep", True, "c", "n", "node", N16),  # a bool for the version
    _hello("graphrep", str(V), "c", "n", "node", N16),
    _hello("graphrep", float(V), "c", "n", "node", N16),
    _hello("graphrep", V, 7, "n", "node", N16),   # cluster not a str
    _hello("graphrep", V, "c", b"n", "node", N16),  # name not a str
    _hello("graphrep", V, "c", "n", None, N16),   # role not a str
    _hello("graphrep", V, "c", "n", "node", "n"),  # nonce not bytes
    _hello("graphrep", V, "c", "", "node", N16),  # empty name
    _hello("graphrep", V, "c", "x" * 257, "node", N16),  # overlong name
    _hello("graphrep", V, "c", "n", "node", b"a" * 5000),  # an oversized field
    _hello("graphrep", V, "c", "n", "node", [b""] * 20),
], ids=_id)
def test_decode_hello_refuses_what_is_not_a_hello(body):
    with pytest.raises(FrameError):
        decode_hello(body)


@pytest.mark.parametrize("hello,words", [
    (HELLO._replace(version=WIRE_VERSION + 1), [f"wire version {WIRE_VERSION + 1}",
                                               "same graphrep version"]),
    (HELLO._replace(version=0), ["wire version 0"]),
    (HELLO._replace(cluster="c2"), ["cluster id 'c2'", "'c1'", "another cluster file"]),
    (HELLO._replace(role="admin"), ["role 'admin'", str(ROLES)]),
    (HELLO._replace(role="client"), ["role 'client'"]),
    (HELLO._replace(role=""), ["role ''"]),
    (HELLO._replace(nonce=b"short"), ["nonce is 5 bytes"]),
])
def test_check_hello_refuses_and_says_why(hello, words):
    why = check_hello(hello, "c1")
    assert why
    for word in words:
        assert word in why


def test_a_challenge_an_auth_and_a_welcome_round_trip():
    assert decode_challenge(encode_challenge(CHALLENGE)) == CHALLENGE
    assert decode_auth(encode_auth(b"\x04" * 32)) == b"\x04" * 32
    w = Welcome(WIRE_VERSION, True, "n0", "")
    assert decode_welcome(encode_welcome(w)) == w


def test_a_refused_hello_raises_handshake_refused_with_the_reason():
    body = encode_challenge(CHALLENGE._replace(ok=False, reason="role 'admin' is not one of",
                                               proof=b""))
    with pytest.raises(HandshakeRefused) as info:
        decode_challenge(body)
    assert "'n0' refused the connection: role 'admin' is not one of" in str(info.value)
    assert isinstance(info.value, NetError) and not isinstance(info.value, FrameError)
    assert not isinstance(info.value, AuthenticationFailed)


def test_a_refused_proof_raises_authentication_failed():
    body = encode_welcome(Welcome(WIRE_VERSION, False, "n0", "the proof is wrong"))
    with pytest.raises(AuthenticationFailed, match="'n0' refused the connection: the proof"):
        decode_welcome(body)


@pytest.mark.parametrize("decode,encode,value", [
    (decode_challenge, encode_challenge, CHALLENGE),
    (decode_welcome, encode_welcome, Welcome(WIRE_VERSION, True, "n0", "")),
])
def test_an_answer_of_another_wire_version_is_refused(decode, encode, value):
    with pytest.raises(HandshakeRefused, match=f"wire version {WIRE_VERSION + 1}"):
        decode(encode(value._replace(version=WIRE_VERSION + 1)))


@pytest.mark.parametrize("body", [
    b"",
    b"\xc1",
    encode_hello(HELLO),                              # a hello is not a welcome
    _hello("graphrep-welcome", V, True, "n0"),
    _hello("graphrep-welcome", True, True, "n0", ""),
    _hello("graphrep-welcome", V, "false", "n0", ""),  # a truthy non-bool
    _hello("graphrep-welcome", V, 1, "n0", ""),
    _hello("graphrep-welcome", V, False, "n0", None),
    _hello("graphrep-welcome", V, True, 5, ""),
], ids=_id)
def test_decode_welcome_refuses_what_is_not_a_welcome(body):
    with pytest.raises(FrameError):
        decode_welcome(body)


@pytest.mark.parametrize("body", [
    b"",
    encode_hello(HELLO),
    _hello("graphrep-challenge", V, True, "n0", "", N16),       # too short
    _hello("graphrep-challenge", V, "yes", "n0", "", N16, b"\x03" * 32),
    _hello("graphrep-challenge", V, True, "n0", "", b"x", b"\x03" * 32),  # short nonce
    _hello("graphrep-challenge", V, True, "n0", "", N16, b"\x03" * 31),   # short proof
    _hello("graphrep-challenge", V, True, "n0", "", N16, "proof"),
], ids=_id)
def test_decode_challenge_refuses_what_is_not_a_challenge(body):
    with pytest.raises(FrameError):
        decode_challenge(body)


@pytest.mark.parametrize("body", [b"", encode_hello(HELLO), _hello("graphrep-auth"),
                                  _hello("graphrep-auth", "proof"),
                                  _hello("graphrep-auth", b"p", b"q")], ids=_id)
def test_decode_auth_refuses_what_is_not_a_proof(body):
    with pytest.raises(FrameError):
        decode_auth(body)


# ---------------------------------------------------------------- control frames


EXAMPLES = [
    m.ClientWrite(0, 1, "insert", 42, b"\x00" * 16, "majority"),
    m.WriteReply(0, 1, "ok", 3, 17, "r1", ""),
    m.ClientSearch(0, 2, b"\x01" * 16, 10, 5),
    m.SearchReply(0, 2, "ok", b"\x02" * 80, 9, "r0", b"\x00" * 40),
    m.Append(0, 3, "r0", 10, 2, [(3, m.DELTA, b"delta"), (3, m.NOOP, b""), (3, m.OP, b"op")], 9),
    m.AppendReply(0, 3, True, 12),
    m.RequestVote(0, 4, "r2", 12, 3),
    m.VoteReply(0, 4, False),
    m.Snapshot(0, 4, "r0", 100, 3, 0, 1000, b"\x07" * 100),
    m.SnapshotReply(0, 4, 100, 100),
    m.TreeRoot(0, 4, 100, b"\x01" * 32, 7),
    m.TreeLeaves(0, 4, 100, [b"\x02" * 16, b"\x03" * 16]),
    m.Repair(0, 4, 100, [1, 5], b"records", 7, 99),
    m.Pull(0, "eu", [3, 0, 5]),
    m.Ship(0, "us", [b"entry-a", b"entry-b"], [3, 4, 5]),
]


def test_the_examples_cover_every_message_type():
    assert {type(m) for m in EXAMPLES} == {cls for cls, _ in messages._SCHEMA.values()}


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: type(m).__name__)
def test_no_protocol_message_is_a_control_frame(msg):
    body = messages.encode(msg)
    assert not is_control(body)
    assert messages.decode(body) == msg
    with pytest.raises(FrameError):
        decode_control(body)


@pytest.mark.parametrize("body", [
    control("ping", 1),
    control("status", 7, {"name": "n0", "shards": [{"shard": 0}]}),
    control("ids", 3, 10, b"\x00" * 80),
    control("x"),
    control("many", *range(20)),      # an array 16 header
    control("more", *range(70_000)),  # an array 32 header
], ids=_id)
def test_control_frames_are_control_frames(body):
    assert is_control(body)
    obj = decode_control(body)
    assert obj[0] == 0 and type(obj[1]) is str
    assert msgpack.packb(obj, use_bin_type=True) == body


@pytest.mark.parametrize("body", [
    b"", b"\x00", b"\x90", b"\x91\x01", b"\xdc\x00", b"\xdc\x00\x01\x01", b"\x00\x00",
], ids=_id)
def test_short_or_other_bodies_are_not_control_frames(body):
    assert not is_control(body)


def test_a_large_control_reply_decodes():
    """``ids`` of a shard of 500 000 vectors is 4 MB: a control frame is bounded by the
    frame limit, not by a smaller limit of its own."""
    ids = bytes(8 * 500_000)
    obj = decode_control(control("ids", 9, 12, ids))
    assert obj == [0, "ids", 9, 12, ids]


@pytest.mark.parametrize("body", [
    b"\xc1",
    msgpack.packb(0),
    msgpack.packb([0]),
    msgpack.packb([0, 5]),          # the kind must be a str
    msgpack.packb([False, "ping"]),  # 0 is an int, not a bool
    msgpack.packb([0.0, "ping"]),
    msgpack.packb([1, "ping"]),
    control("ping") + b"\x00",
], ids=_id)
def test_decode_control_refuses_what_is_not_one(body):
    with pytest.raises(FrameError):
        decode_control(body)


scalars = st.one_of(st.integers(-(2**63), 2**64 - 1), st.text(max_size=8),
                    st.binary(max_size=8), st.booleans(), st.none())


@given(st.text(max_size=10), st.lists(scalars, max_size=40))
def test_every_control_frame_is_told_apart_and_decodes(kind, fields):
    body = control(kind, *fields)
    assert is_control(body)
    assert decode_control(body) == [0, kind, *fields]
    assert struct.unpack(">I", frame(body)[:4])[0] == len(body)

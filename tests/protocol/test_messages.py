"""The wire codec: canonical round trips, and every kind of bad frame refused clearly."""

from __future__ import annotations

import msgpack
import pytest

from graphrep.errors import MalformedMessage, OversizedMessage, ProtocolError, UnsupportedVersion
from graphrep.protocol.messages import (
    DELTA,
    NOOP,
    Append,
    AppendReply,
    ClientSearch,
    ClientWrite,
    RequestVote,
    SearchReply,
    VoteReply,
    WriteReply,
    decode,
    encode,
)

EXAMPLES = [
    ClientWrite(0, 1, "insert", 42, b"\x00" * 16, "majority"),
    WriteReply(0, 1, "ok", 3, 17, "r1", ""),
    ClientSearch(0, 2, b"\x01" * 16, 10, 5),
    SearchReply(0, 2, "ok", b"\x02" * 80, 9, "r0"),
    Append(0, 3, "r0", 10, 2, [(3, DELTA, b"delta"), (3, NOOP, b"")], 9),
    AppendReply(0, 3, True, 12),
    RequestVote(0, 4, "r2", 12, 3),
    VoteReply(0, 4, False),
]


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip_is_exact_and_canonical(msg):
    data = encode(msg)
    back = decode(data)
    assert type(back) is type(msg) and back == msg
    assert encode(back) == data


def test_equal_messages_give_equal_bytes_and_different_ones_differ():
    assert encode(AppendReply(0, 1, True, 5)) == encode(AppendReply(0, 1, True, 5))
    assert encode(AppendReply(0, 1, True, 5)) != encode(AppendReply(0, 1, True, 6))


@pytest.mark.parametrize("data,error,match", [
    (b"\xc1garbage", MalformedMessage, "undecodable"),
    (msgpack.packb({"a": 1}), MalformedMessage, "undecodable"),  # maps are refused
    (msgpack.packb(7), MalformedMessage, "array"),
    (msgpack.packb([2, 6, 0, 1, True, 5]), UnsupportedVersion, "version 2"),
    (msgpack.packb([1, 99, 0]), MalformedMessage, "unknown message type 99"),
    (msgpack.packb([1, 6, 0, 1, True]), MalformedMessage, "needs 4 fields"),
    (msgpack.packb([1, 6, 0, 1, "yes", 5]), MalformedMessage, "AppendReply.ok"),
    (msgpack.packb([1, 5, 0, 1, "r0", 0, 0, [[1, 7, b""]], 0]), MalformedMessage, "entries"),
    (msgpack.packb([1, 1, 0, 1, "insert", 1.5, b"", "one"]), MalformedMessage, "ClientWrite.id"),
    (b"", MalformedMessage, "undecodable"),
    # each well typed but for one field (the fast check must send them to the slow one)
    (msgpack.packb([1, 6, 0, 2**63, True, 5]), MalformedMessage, "AppendReply.term"),
    (msgpack.packb([1, 6, 0, 1, True, 2**64 - 1]), MalformedMessage, "AppendReply.end"),
    (msgpack.packb([1, 6, 0, True, True, 5]), MalformedMessage, "AppendReply.term"),
    (msgpack.packb([1, 6, 0, 1, 1, 5]), MalformedMessage, "AppendReply.ok"),
    (msgpack.packb([1, 5, 0, 1, "r0", 0, 0, [[1, 0, b""], [2**63, 0, b""]], 0]),
     MalformedMessage, "Append.entries"),
    (msgpack.packb([1, 12, 0, 1, 2, [b"a", 3]]), MalformedMessage, "TreeLeaves.leaves"),
    (msgpack.packb([1, 13, 0, 1, 2, [1, -2**63, 2**63], b"", 0, 0]), MalformedMessage,
     "Repair.leaves"),
])
def test_bad_frames_raise_a_specific_protocol_error(data, error, match):
    with pytest.raises(error, match=match):
        decode(data)


def test_oversized_frames_and_non_bytes_are_refused():
    big = encode(ClientWrite(0, 1, "insert", 1, b"\x00" * 5000, "one"))
    with pytest.raises(OversizedMessage, match="limit of 1000"):
        decode(big, max_bytes=1000)
    with pytest.raises(ProtocolError, match="must be bytes"):
        decode("text")  # type: ignore[arg-type]
    with pytest.raises(MalformedMessage, match="not a protocol message"):
        encode(("not", "a", "message"))  # type: ignore[arg-type]

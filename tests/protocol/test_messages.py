"""The wire codec: canonical round trips, every kind of bad frame refused clearly, and only
canonical frames accepted (one encoding per message)."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from graphrep.errors import MalformedMessage, OversizedMessage, ProtocolError, UnsupportedVersion
from graphrep.protocol import messages
from graphrep.protocol.messages import (
    DELTA,
    NOOP,
    OP,
    PROTOCOL_VERSION,
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


# ---------------------------------------------------------------------- canonical frames

def _wide(obj) -> bytes:
    """msgpack of ``obj`` with every int, str, bin and array in its widest format: the
    same values as the canonical encoding, in different bytes."""
    if isinstance(obj, bool):
        return b"\xc3" if obj else b"\xc2"
    if isinstance(obj, int):
        return b"\xd3" + obj.to_bytes(8, "big", signed=True)
    if isinstance(obj, str):
        raw = obj.encode()
        return b"\xdb" + len(raw).to_bytes(4, "big") + raw
    if isinstance(obj, bytes):
        return b"\xc6" + len(obj).to_bytes(4, "big") + obj
    if isinstance(obj, list | tuple):
        return b"\xdd" + len(obj).to_bytes(4, "big") + b"".join(_wide(x) for x in obj)
    raise TypeError(obj)


_INT64 = st.integers(-(2**63), 2**63 - 1)
_FIELD = {  # a strategy per field check of the schema
    messages._int: _INT64,
    messages._str: st.text(max_size=40),
    messages._bytes: st.binary(max_size=300),
    messages._bool: st.booleans(),
    messages._entries: st.lists(st.tuples(_INT64, st.sampled_from([DELTA, NOOP, OP]),
                                          st.binary(max_size=100)), max_size=5),
    messages._bytes_list: st.lists(st.binary(max_size=20), max_size=5),
    messages._int_list: st.lists(_INT64, max_size=20),
}
any_message = st.one_of(*(
    st.tuples(*(_FIELD[check] for check in checks)).map(lambda f, cls=cls: cls(*f))
    for cls, checks in messages._SCHEMA.values()))


@given(any_message)
def test_every_message_decodes_to_itself_and_re_encodes_to_the_same_bytes(msg):
    data = encode(msg)
    back = decode(data)
    assert type(back) is type(msg) and back == msg
    assert encode(back) == data


@given(any_message)
def test_a_wider_encoding_of_the_same_values_is_refused(msg):
    wide = _wide([PROTOCOL_VERSION, messages._CODE[type(msg)], *msg])
    assert msgpack.unpackb(wide) == msgpack.unpackb(encode(msg))  # the same values
    with pytest.raises(MalformedMessage, match="canonical"):
        decode(wide)


def _frame(*fields) -> bytes:
    return msgpack.packb(list(fields), use_bin_type=True)


@pytest.mark.parametrize("data,match", [
    # a boolean or a float that equals the int it stands for
    pytest.param(_frame(True, 6, 0, 1, True, 5), "protocol version must be an int",
                 id="version True"),
    pytest.param(_frame(1.0, 6, 0, 1, True, 5), "protocol version must be an int",
                 id="version 1.0"),
    pytest.param(_frame(1, True, 0, 1, True), "unknown message type True", id="type True"),
    pytest.param(_frame(1, 6.0, 0, 1, True, 5), "unknown message type 6.0", id="type 6.0"),
    pytest.param(_frame(1, 5, 0, 1, "r0", 0, 0, [[1, True, b""]], 0), "Append.entries",
                 id="entry kind True"),
    pytest.param(_frame(1, 5, 0, 1, "r0", 0, 0, [[1, 1.0, b""]], 0), "Append.entries",
                 id="entry kind 1.0"),
    pytest.param(_frame(1, 5, 0, 1, "r0", 0, 0, [[True, 0, b""]], 0), "Append.entries",
                 id="entry term True"),
    pytest.param(_frame(1, 6, 0, 1.0, True, 5), "AppendReply.term", id="term 1.0"),
    pytest.param(_frame(1, 8, 0, 1, 0), "VoteReply.granted", id="granted 0"),
    pytest.param(_frame(1, 13, 0, 1, 2, [1, False], b"", 0, 0), "Repair.leaves",
                 id="leaf False"),
    # a value in a wider msgpack format than it needs
    pytest.param(b"\x96\x01\x06\x00\x01\xc3\xcc\x05", "canonical", id="uint8 5"),
    pytest.param(b"\x96\xd3" + (1).to_bytes(8, "big") + b"\x06\x00\x01\xc3\x05", "canonical",
                 id="int64 version"),
    pytest.param(b"\xdc\x00\x06\x01\x06\x00\x01\xc3\x05", "canonical", id="array16"),
    pytest.param(b"\x97\x01\x07\x00\x01\xd9\x02r2\x00\x00", "canonical", id="str8"),
    pytest.param(b"\x96\x01\x0c\x00\x01\x02\x91\xc5\x00\x01a", "canonical", id="bin16"),
])
def test_non_canonical_frames_are_refused(data, match):
    with pytest.raises(MalformedMessage, match=match):
        decode(data)


def test_the_canonical_frames_of_the_table_above_are_accepted():
    # the same messages as the last rows of the table, canonically encoded
    assert decode(b"\x96\x01\x06\x00\x01\xc3\x05") == AppendReply(0, 1, True, 5)
    assert decode(b"\x97\x01\x07\x00\x01\xa2r2\x00\x00") == RequestVote(0, 1, "r2", 0, 0)
    assert decode(b"\x96\x01\x0c\x00\x01\x02\x91\xc4\x01a") == messages.TreeLeaves(0, 1, 2,
                                                                                  [b"a"])


@given(any_message)
def test_a_snapshot_frame_is_recognised_by_its_header_alone(msg):
    data = encode(msg)
    assert messages.is_snapshot_frame(data) is (type(msg) is messages.Snapshot)
    assert not messages.is_snapshot_frame(bytearray(data))  # frames are bytes
    assert not messages.is_snapshot_frame(data[:2])

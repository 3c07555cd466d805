"""Replication messages and their wire codec: versioned, typed, canonical msgpack.

A message is a ``NamedTuple``; on the wire it is one msgpack array::

    [PROTOCOL_VERSION, type code, field, field, ...]

Arrays, never maps, so that equal messages give equal bytes (canonical: the trace hash
and byte counts depend on it). Vectors travel as raw little-endian float32 bytes and
edge deltas as their own compact format (``EdgeDelta.to_bytes``), both as msgpack
``bin``. Decoding checks the version, the type code, the number of fields and every
field's exact type (a msgpack boolean or float is never taken for an int), refuses
frames over ``max_bytes``, and accepts only canonical frames: the bytes ``encode``
gives for the message decoded, so that each message has exactly one encoding. A
malformed, non-canonical or hostile message raises a
:class:`~graphrep.errors.ProtocolError` subclass and never reaches the replica's state.

Log entries are ``(term, kind, body)``: kind ``DELTA`` carries an edge delta's bytes,
kind ``NOOP`` (empty body) is what a new leader appends to commit its predecessors'
entries (Raft's rule: a leader commits only entries of its own term directly), kind
``OP`` carries a client operation (msgpack ``[op, id, vector bytes]``) for the
``replay`` baseline, whose replicas run every insert themselves, and kind ``MERGE`` a
write of an active-active policy as a mergeable record (:mod:`graphrep.protocol.entries`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import msgpack
import numpy as np

from graphrep.errors import (
    InvalidVector,
    MalformedMessage,
    OversizedMessage,
    UnsupportedVersion,
)

__all__ = [
    "DELTA", "MAX_MESSAGE_BYTES", "MERGE", "NOOP", "OP", "PROTOCOL_VERSION", "Append",
    "AppendReply",
    "ClientSearch", "ClientWrite", "Entry", "Pull", "Repair", "RequestVote", "SearchReply",
    "Ship", "Snapshot", "SnapshotReply", "TreeLeaves", "TreeRoot", "VoteReply", "WriteReply",
    "decode", "encode", "is_snapshot_frame", "message_type", "vector_of",
]

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 64 << 20
DELTA, NOOP, OP, MERGE = 0, 1, 2, 3

Entry = tuple[int, int, bytes]
"""A log entry: (term, kind, body)."""


class ClientWrite(NamedTuple):
    """Insert ``id`` with ``vector`` (float32 bytes) or delete it; ``concern`` is
    ``one``, ``majority`` or ``all``. Op ``delta``: the insert or delete of ``id`` given
    as its edge delta, whose bytes ``vector`` holds (the ``leader`` policy applies and
    logs it as is: replaying a recorded run)."""

    shard: int
    req: int
    op: str
    id: int
    vector: bytes
    concern: str


class WriteReply(NamedTuple):
    """``status``: ``ok`` (the write is at (term, seq)), ``not_leader`` (try ``leader``,
    empty if unknown) or ``error`` (``error`` says why; nothing changed). A live node
    also answers ``busy`` (at a limit: ``seq`` is a retry-after hint in milliseconds)
    and ``denied`` (a read token's write), before the replica sees the request."""

    shard: int
    req: int
    status: str
    term: int
    seq: int
    leader: str
    error: str


class ClientSearch(NamedTuple):
    """k nearest neighbours of ``vector``; ``min_seq`` is a session token: the replica
    answers only once it has applied that many log entries (read-your-writes)."""

    shard: int
    req: int
    vector: bytes
    k: int
    min_seq: int


class SearchReply(NamedTuple):
    """``ids`` as little-endian int64 bytes and ``dists`` their distances as little-endian
    float32 bytes (same order); ``seq``: entries applied when answering; ``status``:
    ``ok`` or ``stale`` (behind ``min_seq``) or ``error`` (``ids`` then holds the reason,
    UTF-8); a live node at a limit answers ``busy`` (the reason in ``ids``, a
    retry-after hint in milliseconds in ``seq``)."""

    shard: int
    req: int
    status: str
    ids: bytes
    seq: int
    leader: str
    dists: bytes = b""


class Append(NamedTuple):
    """Leader -> follower: ``entries`` start at log position ``prev_end`` and follow the
    entry at ``prev_end - 1`` of term ``prev_term``; ``commit`` is the leader's commit
    position. An empty ``entries`` is a heartbeat."""

    shard: int
    term: int
    leader: str
    prev_end: int
    prev_term: int
    entries: list[Entry]
    commit: int


class AppendReply(NamedTuple):
    """``ok``: the follower's log durably matches the leader's up to ``end``; not ok:
    ``end`` is where the leader should resume (a gap or a conflict)."""

    shard: int
    term: int
    ok: bool
    end: int


class RequestVote(NamedTuple):
    shard: int
    term: int
    candidate: str
    last_end: int
    last_term: int


class VoteReply(NamedTuple):
    shard: int
    term: int
    granted: bool


class Snapshot(NamedTuple):
    """One chunk of the leader's index state after its first ``end`` log entries (the
    last of term ``last_term``): bytes ``[offset, offset + len(data))`` of ``total``.
    Sent when a follower needs entries the leader's log no longer holds."""

    shard: int
    term: int
    leader: str
    end: int
    last_term: int
    offset: int
    total: int
    data: bytes


class SnapshotReply(NamedTuple):
    """How many bytes of snapshot ``end`` the follower holds (``total``: installed).
    The leader resumes from ``offset``, so a lost chunk costs one chunk."""

    shard: int
    term: int
    end: int
    offset: int


class TreeRoot(NamedTuple):
    """Anti-entropy, leader -> follower: the root of the leader's hash tree over its
    node records at log position ``end``, and its entry point."""

    shard: int
    term: int
    end: int
    root: bytes
    entry: int


class TreeLeaves(NamedTuple):
    """Anti-entropy, follower -> leader: the follower's leaf digests at ``end`` (sent
    only when its root differs)."""

    shard: int
    term: int
    end: int
    leaves: list[bytes]


class Repair(NamedTuple):
    """Anti-entropy, leader -> follower: the leader's records (``RecordSet`` bytes) of
    every node in ``leaves``; the follower drops its other nodes in those leaves and
    takes the leader's entry point and delta ``seq``."""

    shard: int
    term: int
    end: int
    leaves: list[int]
    records: bytes
    entry: int
    seq: int


class Pull(NamedTuple):
    """Active-active, a region's leader -> a replica of another region's group: send me
    your committed entries I lack. ``vv`` is the puller's version vector, one int per
    region of the shard (in ``ReplicaConfig.regions`` order): how many entries written
    in each region it has, a prefix of that region's writes."""

    shard: int
    region: str
    vv: list[int]


class Ship(NamedTuple):
    """Active-active, the answer to a :class:`Pull`: up to ``ship_batch`` committed
    entry bodies the puller lacks, in the shipper's log order (so every entry comes after
    the entries it was computed from); ``vv`` is the shipper's version vector."""

    shard: int
    region: str
    entries: list[bytes]
    vv: list[int]


def _entries(v: Any) -> bool:
    return type(v) is list and all(
        type(e) is list and len(e) == 3 and _int(e[0]) and type(e[1]) is int
        and e[1] in (DELTA, NOOP, OP, MERGE) and type(e[2]) is bytes for e in v)


def _bytes_list(v: Any) -> bool:
    return type(v) is list and all(type(x) is bytes for x in v)


def _int_list(v: Any) -> bool:
    return type(v) is list and all(_int(x) for x in v)


# Exact types throughout (``type(v) is int``, never ``isinstance``): msgpack decodes a
# boolean as ``bool``, an int subclass, and ``1.0 == 1``, so an isinstance or equality
# check would let ``True`` or ``1.0`` stand for ``1`` and one message have two encodings.
def _int(v: Any) -> bool:
    return type(v) is int and -(2**63) <= v < 2**63


def _str(v: Any) -> bool:
    return type(v) is str


def _bytes(v: Any) -> bool:
    return type(v) is bytes


def _bool(v: Any) -> bool:
    return type(v) is bool


# type code -> (class, field checks); codes are part of the wire format: never reuse one
_SCHEMA: dict[int, tuple[type, tuple]] = {
    1: (ClientWrite, (_int, _int, _str, _int, _bytes, _str)),
    2: (WriteReply, (_int, _int, _str, _int, _int, _str, _str)),
    3: (ClientSearch, (_int, _int, _bytes, _int, _int)),
    4: (SearchReply, (_int, _int, _str, _bytes, _int, _str, _bytes)),
    5: (Append, (_int, _int, _str, _int, _int, _entries, _int)),
    6: (AppendReply, (_int, _int, _bool, _int)),
    7: (RequestVote, (_int, _int, _str, _int, _int)),
    8: (VoteReply, (_int, _int, _bool)),
    9: (Snapshot, (_int, _int, _str, _int, _int, _int, _int, _bytes)),
    10: (SnapshotReply, (_int, _int, _int, _int)),
    11: (TreeRoot, (_int, _int, _int, _bytes, _int)),
    12: (TreeLeaves, (_int, _int, _int, _bytes_list)),
    13: (Repair, (_int, _int, _int, _int_list, _bytes, _int, _int)),
    14: (Pull, (_int, _str, _int_list)),
    15: (Ship, (_int, _str, _bytes_list, _int_list)),
}
_CODE = {cls: code for code, (cls, _) in _SCHEMA.items()}


def message_type(code: int | None) -> str:
    """The name of the message type with wire code ``code`` (``"?"`` if none)."""
    entry = _SCHEMA.get(code) if type(code) is int else None
    return entry[0].__name__ if entry is not None else "?"

# The fast check of a well-formed message, per type code: the exact type of every field
# (a check that accepts ints but not bools wants ``int``), where the ints are (each must
# be below 2**63: msgpack also decodes uint64) and which fields need a deep check (lists).
_EXACT = {_int: int, _str: str, _bytes: bytes, _bool: bool, _entries: list,
          _bytes_list: list, _int_list: list}
_FAST: dict[int, tuple[tuple[type, ...], tuple[int, ...], tuple[tuple[int, Any], ...]]] = {
    code: (tuple(_EXACT[c] for c in checks),
           tuple(i for i, c in enumerate(checks) if c is _int),
           tuple((i, c) for i, c in enumerate(checks) if _EXACT[c] is list))
    for code, (_, checks) in _SCHEMA.items()
}
_I64_END = 2**63


def encode(msg: NamedTuple) -> bytes:
    """The canonical bytes of ``msg``."""
    code = _CODE.get(type(msg))
    if code is None:
        raise MalformedMessage(f"cannot encode {type(msg).__name__}: not a protocol message")
    return msgpack.packb([PROTOCOL_VERSION, code, *msg], use_bin_type=True)


def decode(data: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> NamedTuple:
    """Parse and type-check one message; raise a ``ProtocolError`` subclass if it is bad.

    Only canonical frames are accepted: the bytes must be exactly what :func:`encode`
    gives for the message they decode to (no ``True`` or ``1.0`` for an int, no number,
    string, bytes or array in a wider msgpack format than it needs)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedMessage(f"a message must be bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise OversizedMessage(f"message of {len(data)} bytes exceeds the limit of "
                               f"{max_bytes}; batch fewer entries per message")
    data = bytes(data)
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True,
                              max_bin_len=max_bytes, max_str_len=1 << 20,
                              max_array_len=1 << 24, max_map_len=0)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise MalformedMessage(f"undecodable message ({type(exc).__name__}: {exc})") from None
    if type(obj) is not list or len(obj) < 2:
        raise MalformedMessage("a message is an array [version, type, fields...]")
    version, code = obj[0], obj[1]
    if type(version) is not int:
        raise MalformedMessage(f"the protocol version must be an int, got {version!r:.60}")
    if version != PROTOCOL_VERSION:
        raise UnsupportedVersion(f"peer speaks protocol version {version!r}; this replica "
                                 f"speaks {PROTOCOL_VERSION}: upgrade the older side")
    schema = _SCHEMA.get(code) if _int(code) else None
    if schema is None:
        raise MalformedMessage(f"unknown message type {code!r:.60}")
    cls, checks = schema
    fields = obj[2:]
    if len(fields) != len(checks):
        raise MalformedMessage(f"{cls.__name__} needs {len(checks)} fields, got {len(fields)}")
    types, ints, deep = _FAST[code]
    if (tuple(map(type, fields)) != types or any(fields[i] >= _I64_END for i in ints)
            or not all(check(fields[i]) for i, check in deep)):
        # something is wrong: find the first bad field, for the error message
        for name, value, check in zip(cls._fields, fields, checks, strict=True):
            if not check(value):
                raise MalformedMessage(f"{cls.__name__}.{name} has a bad value {value!r:.60}")
    if msgpack.packb(obj, use_bin_type=True) != data:
        raise MalformedMessage(f"{cls.__name__} is not in canonical form: a number, string, "
                               f"bytes or array is encoded in a wider msgpack format than "
                               f"it needs (encode() gives one encoding per message)")
    if cls is Append:
        fields[5] = [tuple(e) for e in fields[5]]
    return cls(*fields)


def vector_of(data: bytes, dim: int) -> np.ndarray:
    """The float32 vector a message carries; raises :class:`InvalidVector` unless it is
    exactly ``dim`` little-endian float32 (4 * ``dim`` bytes)."""
    if len(data) != 4 * dim:
        raise InvalidVector(f"a vector of this shard is {dim} float32 ({4 * dim} bytes), "
                            f"got {len(data)} bytes")
    return np.frombuffer(data, dtype="<f4")


_SNAPSHOT_HEAD = encode(Snapshot(0, 0, "", 0, 0, 0, 0, b""))[:3]  # array, version, type


def is_snapshot_frame(data: Any) -> bool:
    """Whether ``data`` looks like the frame of a :class:`Snapshot` chunk, by its first
    three bytes (the array header, the version and the type code; no decoding): cheap
    enough to ask of every message, as a simulation that keeps only the digests of
    snapshot chunks in its trace does."""
    return type(data) is bytes and data.startswith(_SNAPSHOT_HEAD)

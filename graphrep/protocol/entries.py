"""Log entries: what a well-formed one is, and how one is written to disk.

A log entry is ``(term, kind, body)`` (:data:`graphrep.protocol.messages.Entry`). The
message decoder checks the shape and types of an entry; :func:`check_entry` checks that
its body is what its kind promises, which a replica does before an entry can reach its
log, and again when it reads its log back from disk:

* ``DELTA``: an edge delta's bytes (:meth:`graphrep.ann.EdgeDelta.to_bytes`) whose
  magic, version and CRC-32 trailer are sound. A full decode happens when the delta is
  applied; the checksum alone catches damage in transit or on disk for a few
  microseconds a kilobyte.
* ``OP`` (the ``replay`` baseline): msgpack ``[op, id, vector]``, ``op`` ``insert``
  (``vector``: ``dim`` little-endian float32) or ``delete``.
* ``NOOP``: an empty body.
* ``MERGE`` (active-active policies): a write as a mergeable record,
  :func:`encode_entry`: its origin region and sequence number there, its timestamp,
  insert or delete, the id, the vector, and the candidate additions it makes.

A damaged entry raises :class:`~graphrep.errors.DamagedEntry`: a replica refuses the
message that carried it and its state stays as it was, so the leader's retransmission
sends the entry again; read back from disk, a damaged entry ends the log there, like a
torn tail.

On disk an entry is a *record* ``(term, kind, body, crc32)`` (:func:`wal_record`), the
CRC over the term, the kind and the body; :func:`wal_entry` returns None for a record
whose shape or checksum is wrong.

:func:`entry_parts` splits an entry's body into the parts a byte count reports:
``vector``, ``edges`` and ``metadata``. Replicas never call it: whoever counts the
messages between them (the simulated cluster's checker) does.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import msgpack
import numpy as np

from graphrep.ann.delta import MAGIC, MIN_BYTES, READ_VERSIONS, EdgeDelta
from graphrep.ann.records import RecordSet
from graphrep.errors import DamagedEntry, DeltaError, GraphrepError, MalformedMessage
from graphrep.protocol.messages import DELTA, MERGE, NOOP, OP, Entry, vector_of

__all__ = ["DELETE", "INSERT", "LINK", "RECORDS", "check_entry", "decode_entry", "encode_entry",
           "entry_parts", "wal_entry", "wal_record"]

INSERT, DELETE, LINK, RECORDS = 0, 1, 2, 3
"""The kinds of write a ``MERGE`` entry carries: an insert, a delete, a link (candidate
additions alone: a region's leader linking nodes written concurrently in two regions,
which never saw each other), or the full records a write changed (``lww``: the
``vector`` field holds a :class:`~graphrep.ann.records.RecordSet`'s bytes)."""

_WAL_HEAD = struct.Struct("<qB")
_OPS = ("insert", "delete")
_TERM_END = 2**63


def check_entry(entry: Entry, dim: int) -> None:
    """Raise :class:`~graphrep.errors.DamagedEntry` unless ``entry``'s body is a sound
    body of its kind for an index of dimension ``dim`` (see the module docstring)."""
    term, kind, body = entry
    if not 0 <= term < _TERM_END:
        raise DamagedEntry(f"entry has term {term}; terms are integers in [0, 2**63)")
    if kind == DELTA:
        _check_delta(term, body)
    elif kind == OP:
        _check_op(term, body, dim)
    elif kind == MERGE:
        try:
            decode_entry(body, dim)
        except MalformedMessage as exc:
            raise DamagedEntry(f"MERGE entry of term {term}: {exc}") from None
    elif kind == NOOP:
        if body:
            raise DamagedEntry(f"NOOP entry of term {term} has a {len(body)}-byte body; a "
                               "NOOP's body is empty")
    else:
        raise DamagedEntry(f"entry of term {term} has unknown kind {kind!r}; kinds are "
                           f"DELTA={DELTA}, NOOP={NOOP}, OP={OP}, MERGE={MERGE}")


def _check_delta(term: int, body: bytes) -> None:
    if len(body) < MIN_BYTES:
        raise DamagedEntry(f"DELTA entry of term {term} is {len(body)} bytes, shorter than "
                           f"any delta ({MIN_BYTES})")
    if body[: len(MAGIC)] != MAGIC or body[len(MAGIC)] not in READ_VERSIONS:
        raise DamagedEntry(f"DELTA entry of term {term} does not start with the header of "
                           f"a delta format this replica reads ({READ_VERSIONS})")
    if zlib.crc32(memoryview(body)[:-4]) != int.from_bytes(body[-4:], "little"):
        raise DamagedEntry(f"DELTA entry of term {term} fails its CRC-32: damaged in "
                           "transit or on disk")


def _check_op(term: int, body: bytes, dim: int | None) -> list:
    """The ``[op, id, vector]`` of a sound OP body (an insert's vector ``dim`` float32;
    any length if ``dim`` is None); raises ``DamagedEntry`` otherwise."""
    try:
        op = msgpack.unpackb(body, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several types for undecodable bytes
        raise DamagedEntry(f"OP entry of term {term} is not msgpack: "
                           f"{type(exc).__name__}") from None
    if not (type(op) is list and len(op) == 3 and op[0] in _OPS and type(op[1]) is int
            and type(op[2]) is bytes):
        raise DamagedEntry(f"OP entry of term {term} is not [op, id, vector bytes] with op "
                           f"insert|delete: {_short(op)}")
    if dim is not None and op[0] == "insert" and len(op[2]) != 4 * dim:
        raise DamagedEntry(f"OP entry of term {term} inserts a {len(op[2])}-byte vector; "
                           f"this shard's vectors are {dim} float32 ({4 * dim} bytes)")
    return op


def entry_parts(entry: Entry) -> dict[str, int]:
    """The bytes of ``entry``'s body by part: ``vector``, ``edges``, ``metadata`` and
    ``total`` (the body's length). A ``DELTA`` body is parsed by the delta format
    (:meth:`graphrep.ann.EdgeDelta.size_by_part`: the new nodes' vectors, the neighbour
    lists, the rest); an ``OP`` body's vector is its ``vector`` (a delete's is empty) and
    its msgpack framing, op and id are metadata; a ``NOOP`` has no body. Raises
    :class:`~graphrep.errors.DamagedEntry` for a body that is not of its kind (a delta
    that does not decode, or whose bytes are not the ones its decoding encodes to)."""
    term, kind, body = entry
    total = len(body)
    if kind == DELTA:
        try:
            delta = EdgeDelta.from_bytes(body)
        except DeltaError as exc:
            raise DamagedEntry(f"DELTA entry of term {term} does not decode: {exc}") from None
        if delta.to_bytes() != body:
            raise DamagedEntry(f"DELTA entry of term {term} is not the canonical encoding of "
                               "the delta it decodes to")
        parts = delta.size_by_part()
        return {"vector": parts["vector"], "edges": parts["edges"],
                "metadata": parts["metadata"], "total": total}
    if kind == OP:
        vector = len(_check_op(term, body, None)[2])
        return {"vector": vector, "edges": 0, "metadata": total - vector, "total": total}
    if kind == MERGE:
        try:
            f = decode_entry(body, None)
        except MalformedMessage as exc:
            raise DamagedEntry(f"MERGE entry of term {term}: {exc}") from None
        if f[3] == RECORDS:
            parts = RecordSet.from_bytes(f[5]).size_by_part()
            vector, keys = parts["vector"], parts["edges"]
        else:
            vector, keys = len(f[5]), len(msgpack.unpackb(body)[6])
        return {"vector": vector, "edges": keys, "metadata": total - vector - keys,
                "total": total}
    check_entry(entry, 1)  # a NOOP with an empty body passes; anything else raises
    return {"vector": 0, "edges": 0, "metadata": 0, "total": 0}


MAX_ENTRY_KEYS = 1 << 20
"""Incarnation keys one crdt entry may carry, at most (a decoder allocates no more)."""


def _pack_keys(a: Any, b: Any) -> bytes:
    """The keys of ``a`` and ``b`` (pairs of id, version) as one compressed block: the
    int64 columns a_ids, a_versions, b_ids, b_versions, byte-shuffled (every value's
    first byte, then every second byte, ...: ids and timestamps share their high bytes)
    and deflated. Keys are most of an entry; this makes them about a fifth."""
    cols = [np.asarray(k, dtype="<i8").reshape(-1, 2) for k in (a, b)]
    flat = np.concatenate([cols[0][:, 0], cols[0][:, 1], cols[1][:, 0], cols[1][:, 1]])
    return zlib.compress(flat.astype("<i8").view(np.uint8).reshape(-1, 8).T.tobytes(), 1)


def _unpack_keys(blob: bytes, na: int, nb: int) -> tuple[np.ndarray, np.ndarray]:
    n = 2 * (na + nb)
    d = zlib.decompressobj()
    try:
        raw = d.decompress(blob, 8 * n)
    except zlib.error as exc:
        raise MalformedMessage(f"crdt entry keys do not inflate ({exc})") from None
    if len(raw) != 8 * n or d.unconsumed_tail or not d.eof:
        raise MalformedMessage(f"crdt entry keys are not the {na} + {nb} pairs it names")
    flat = np.frombuffer(raw, np.uint8).reshape(8, n).T.copy().view("<i8").ravel()
    # [a ids, a versions, b ids, b versions] -> (na, 2) and (nb, 2) pairs
    a = np.ascontiguousarray(flat[: 2 * na].reshape(2, na).T)
    b = np.ascontiguousarray(flat[2 * na:].reshape(2, nb).T)
    return a, b


def encode_entry(origin: int, seq: int, ts: int, kind: int, id_: int, vector: bytes,
                 a: list[tuple[int, int]], b: list[tuple[int, int]],
                 vv: list[int] | tuple[int, ...] = ()) -> bytes:
    """An entry's body: msgpack ``[origin, seq, ts, kind, id, vector, keys, len(a),
    len(b), vv]`` (``keys``: :func:`_pack_keys`). Insert: ``a`` is the new node's pool,
    ``b`` the nodes offered the new node. Delete and link: ``b[k]`` is offered to
    ``a[k]``. ``vv``: the writer's version vector when it wrote (what it had seen of
    each region; empty for a link)."""
    return msgpack.packb([origin, seq, ts, kind, id_, vector, _pack_keys(a, b), len(a),
                          len(b), list(vv)], use_bin_type=True)


def decode_entry(body: bytes, dim: int | None, regions: int | None = None) -> tuple:
    """``(origin, seq, ts, kind, id, vector, a, b, vv)`` of a ``MERGE`` body, every field
    checked (``dim``: the shard's dimension, None: any; ``regions``: how many regions the
    shard has, None: any origin); a bad body
    raises :class:`MalformedMessage` (nothing changes)."""
    try:
        f = msgpack.unpackb(body, raw=False)
    except Exception as exc:
        raise MalformedMessage(f"undecodable crdt entry ({type(exc).__name__})") from None
    if type(f) is not list or len(f) != 10 or not all(type(x) is int for x in f[:5]) \
            or not all(type(x) is bytes for x in f[5:7]) \
            or not all(type(x) is int and 0 <= x <= MAX_ENTRY_KEYS for x in f[7:9]) \
            or type(f[9]) is not list or not all(type(x) is int and x >= 0 for x in f[9]):
        raise MalformedMessage("a crdt entry is [origin, seq, ts, kind, id, vector, keys, "
                               f"len(a), len(b), vv] with at most {MAX_ENTRY_KEYS} keys")
    origin, seq, ts, kind, id_, vec, keys, na, nb, vv = f
    if not 0 <= origin < (regions or 256) or seq < 1 \
            or kind not in (INSERT, DELETE, LINK, RECORDS):
        raise MalformedMessage(f"crdt entry with origin {origin}, seq {seq}, kind {kind}")
    if vv and len(vv) != (regions or len(vv)):
        raise MalformedMessage(f"crdt entry with a version vector of {len(vv)} regions, the "
                               f"shard has {regions}")
    if kind == RECORDS:
        try:
            rs = RecordSet.from_bytes(vec)
        except GraphrepError as exc:
            raise MalformedMessage(f"crdt entry's records: {exc}") from None
        if dim is not None and rs.dim != dim:
            raise MalformedMessage(f"records of dimension {rs.dim}, the shard has {dim}")
    if kind != INSERT and na != nb:
        raise MalformedMessage("a delete's or link's targets and candidates differ in number")
    if kind == INSERT and dim is not None:
        try:
            v = vector_of(vec, dim)
        except GraphrepError as exc:
            raise MalformedMessage(f"crdt insert: {exc}") from None
        if not np.isfinite(v).all():
            raise MalformedMessage("crdt insert with a NaN or inf vector")
    a, b = _unpack_keys(keys, na, nb)
    return origin, seq, ts, kind, id_, vec, a, b, vv


def _short(x: Any) -> str:
    text = repr(x)
    return text if len(text) <= 60 else text[:57] + "..."


def wal_record(entry: Entry) -> tuple[int, int, bytes, int]:
    """A log entry as written to disk: ``(term, kind, body, crc32)``."""
    term, kind, body = entry
    return (term, kind, body, _wal_crc(term, kind, body))


def wal_entry(record: Any) -> Entry | None:
    """The entry of a disk record, or None if the record is damaged (bad shape or
    checksum): recovery keeps the log up to the first damaged record."""
    if not (isinstance(record, tuple) and len(record) == 4):
        return None
    term, kind, body, crc = record
    if not (type(term) is int and type(kind) is int and isinstance(body, bytes)
            and 0 <= term < _TERM_END and 0 <= kind < 256):
        return None
    if crc != _wal_crc(term, kind, body):
        return None
    return (term, kind, body)


def _wal_crc(term: int, kind: int, body: bytes) -> int:
    return zlib.crc32(body, zlib.crc32(_WAL_HEAD.pack(term, kind)))

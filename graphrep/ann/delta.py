"""Edge deltas: what one index mutation changed, as data another index can apply.

An :class:`EdgeDelta` lists the node records a mutation created or changed:
the node's id, its flags (live / deleted), its vector when the node is new,
and its new neighbour list, either in full or as a diff (ids removed, ids
added) when that is shorter. Consolidation also frees deleted nodes; their
ids are in ``removed``. ``entry`` is the entry point after the mutation.
Neighbour lists are sets of ids (see :mod:`graphrep.ann.kernels`): lists and
diffs are stored sorted by id, so that equal changes give equal bytes.

Wire format (``to_bytes``), little endian, version 1::

    header  "GRD1" u8 version, u8 op, u16 0, u32 dim, u64 seq, i64 entry,
            u32 n_records, u32 n_new, u32 n_removed, u32 n_values
    body    record ids      zigzag varints of successive differences
            flags, kinds    one byte each per record
            counts          varints: full list -> length; diff -> removed, added
            values          per list (or diff part): varints of sorted ids, each
                            as the difference from the previous one
            removed         zigzag varints of successive differences
            vectors         n_new x dim float32
    trailer u32 CRC-32 of everything before it

A delta carries its sequence number: an index applies delta ``seq`` only
when it has applied (or emitted) exactly ``seq`` deltas before.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from numba import njit

from graphrep.errors import CorruptDelta

FORMAT_VERSION = 1
MAGIC = b"GRD1"
_HEADER = struct.Struct("<4sBBHIQqIIII")

OPS = ("build", "insert", "delete", "consolidate", "repair")
_OP_CODE = {name: i for i, name in enumerate(OPS)}

KIND_NONE = 0  # flags only, list unchanged
KIND_FULL = 1  # the whole new list
KIND_DIFF = 2  # ids removed, then ids added

# bounds a decoder accepts before it allocates anything
MAX_DIM = 1 << 16
MAX_RECORDS = 1 << 26
MAX_VALUES = 1 << 31


class NodeRecord(NamedTuple):
    """One node's change, for reading a delta (the arrays are the real storage)."""

    id: int
    flags: int
    vector: np.ndarray | None
    neighbours: np.ndarray | None  # full list, when the delta carries one
    removed: np.ndarray | None  # diff: neighbours removed
    added: np.ndarray | None  # diff: neighbours added


@dataclass(frozen=True, eq=False)
class EdgeDelta:
    """The records one mutation of a :class:`~graphrep.ann.VamanaIndex` changed.

    Arrays (all numpy, read-only by convention):

    * ``ids`` (n,) int64: record ids; the first ``n_new`` records are new nodes.
    * ``flags`` (n,) uint8: 1 live, 2 deleted.
    * ``kinds`` (n,) uint8: 0 flags only, 1 full list, 2 diff.
    * ``counts`` (n, 2) int32: full -> (length, 0); diff -> (n removed, n added).
    * ``values`` int64: the lists and diffs, concatenated in record order.
    * ``vectors`` (n_new, dim) float32: the stored vectors of the new nodes.
    * ``removed`` int64: ids whose deleted nodes this delta frees.
    """

    seq: int
    op: str
    dim: int
    entry: int
    ids: np.ndarray
    flags: np.ndarray
    kinds: np.ndarray
    counts: np.ndarray
    values: np.ndarray
    vectors: np.ndarray
    removed: np.ndarray
    _wire: list = field(default_factory=list, repr=False, compare=False)

    # ------------------------------------------------------------------ reading
    @property
    def n_records(self) -> int:
        return int(self.ids.shape[0])

    @property
    def n_new(self) -> int:
        return int(self.vectors.shape[0])

    def records(self) -> list[NodeRecord]:
        """The records as :class:`NodeRecord` tuples (for people and tests, not hot paths)."""
        out = []
        pos = 0
        for i in range(self.n_records):
            kind = int(self.kinds[i])
            a, b = int(self.counts[i, 0]), int(self.counts[i, 1])
            full = rem = add = None
            if kind == KIND_FULL:
                full = self.values[pos : pos + a]
                pos += a
            elif kind == KIND_DIFF:
                rem = self.values[pos : pos + a]
                add = self.values[pos + a : pos + a + b]
                pos += a + b
            vec = self.vectors[i] if i < self.n_new else None
            out.append(NodeRecord(int(self.ids[i]), int(self.flags[i]), vec, full, rem, add))
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EdgeDelta):
            return NotImplemented
        return (
            (self.seq, self.op, self.dim, self.entry)
            == (other.seq, other.op, other.dim, other.entry)
            and all(
                np.array_equal(getattr(self, name), getattr(other, name))
                for name in ("ids", "flags", "kinds", "counts", "values", "vectors", "removed")
            )
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"EdgeDelta(seq={self.seq}, op={self.op!r}, records={self.n_records}, "
            f"new={self.n_new}, removed={self.removed.shape[0]}, entry={self.entry})"
        )

    # ------------------------------------------------------------------ bytes
    def to_bytes(self) -> bytes:
        """Serialise to the compact wire format (cached: a delta is immutable)."""
        if not self._wire:
            self._wire.append(_encode(self))
        return self._wire[0][0]

    def size_by_part(self) -> dict[str, int]:
        """Bytes on the wire by part: ``vector``, ``edges``, ``metadata`` and ``total``."""
        self.to_bytes()
        return dict(self._wire[0][1])

    @property
    def nbytes(self) -> int:
        return len(self.to_bytes())

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> EdgeDelta:
        """Parse bytes made by :meth:`to_bytes`; raises :class:`CorruptDelta` on any damage."""
        return _decode(bytes(data))


# --------------------------------------------------------------------------- varints


@njit(cache=True)
def _put_varint(buf, pos, v):
    while v >= 0x80:
        buf[pos] = np.uint8((v & 0x7F) | 0x80)
        v >>= 7
        pos += 1
    buf[pos] = np.uint8(v)
    return pos + 1


@njit(cache=True)
def _zigzag(v):
    return np.uint64((v << 1) ^ (v >> 63))


@njit(cache=True)
def _encode_body(ids, flags, kinds, counts, values, removed, buf):
    pos = 0
    prev = np.int64(0)
    for i in range(ids.shape[0]):
        pos = _put_varint(buf, pos, _zigzag(ids[i] - prev))
        prev = ids[i]
    for i in range(ids.shape[0]):
        buf[pos] = flags[i]
        pos += 1
    for i in range(ids.shape[0]):
        buf[pos] = kinds[i]
        pos += 1
    meta_end = pos
    for i in range(ids.shape[0]):
        if kinds[i] == KIND_FULL:
            pos = _put_varint(buf, pos, np.uint64(counts[i, 0]))
        elif kinds[i] == KIND_DIFF:
            pos = _put_varint(buf, pos, np.uint64(counts[i, 0]))
            pos = _put_varint(buf, pos, np.uint64(counts[i, 1]))
    vp = 0
    for i in range(ids.shape[0]):
        if kinds[i] == KIND_NONE:
            continue
        parts = 1 if kinds[i] == KIND_FULL else 2
        for part in range(parts):
            n = counts[i, part]
            prev = np.int64(0)
            for _ in range(n):
                pos = _put_varint(buf, pos, np.uint64(values[vp] - prev))
                prev = values[vp]
                vp += 1
    edges_end = pos
    prev = np.int64(0)
    for i in range(removed.shape[0]):
        pos = _put_varint(buf, pos, _zigzag(removed[i] - prev))
        prev = removed[i]
    return pos, meta_end, edges_end


@njit(cache=True)
def _get_varint(buf, pos, end):
    """Returns (value, new pos); pos = -1 on truncation or overlong encoding."""
    v = np.uint64(0)
    shift = np.uint64(0)
    while True:
        if pos >= end or shift > np.uint64(63):
            return np.uint64(0), -1
        b = np.uint64(buf[pos])
        pos += 1
        v |= (b & np.uint64(0x7F)) << shift
        if b < np.uint64(0x80):
            return v, pos
        shift += np.uint64(7)


@njit(cache=True)
def _unzigzag(u):
    return np.int64(u >> np.uint64(1)) ^ -np.int64(u & np.uint64(1))


@njit(cache=True)
def _decode_body(buf, end, n, n_removed, n_values, ids, flags, kinds, counts, values, removed):
    """Returns the position after the body, or -1 if it is malformed."""
    pos = 0
    prev = np.int64(0)
    for i in range(n):
        u, pos = _get_varint(buf, pos, end)
        if pos < 0:
            return -1
        prev = prev + _unzigzag(u)
        ids[i] = prev
    if pos + 2 * n > end:
        return -1
    for i in range(n):
        flags[i] = buf[pos]
        pos += 1
    for i in range(n):
        kinds[i] = buf[pos]
        pos += 1
    total = np.int64(0)
    for i in range(n):
        k = kinds[i]
        if k == KIND_FULL:
            u, pos = _get_varint(buf, pos, end)
            if pos < 0 or u > np.uint64(n_values):
                return -1
            counts[i, 0] = np.int32(u)
            counts[i, 1] = 0
            total += np.int64(u)
        elif k == KIND_DIFF:
            u, pos = _get_varint(buf, pos, end)
            if pos < 0 or u > np.uint64(n_values):
                return -1
            w, pos = _get_varint(buf, pos, end)
            if pos < 0 or w > np.uint64(n_values):
                return -1
            counts[i, 0] = np.int32(u)
            counts[i, 1] = np.int32(w)
            total += np.int64(u) + np.int64(w)
        elif k == KIND_NONE:
            counts[i, 0] = 0
            counts[i, 1] = 0
        else:
            return -1
    if total != n_values:
        return -1
    vp = 0
    for i in range(n):
        if kinds[i] == KIND_NONE:
            continue
        parts = 1 if kinds[i] == KIND_FULL else 2
        for part in range(parts):
            prev = np.int64(0)
            for _ in range(counts[i, part]):
                u, pos = _get_varint(buf, pos, end)
                if pos < 0 or u > np.uint64(0x7FFFFFFFFFFFFFFF):
                    return -1
                prev = prev + np.int64(u)
                values[vp] = prev
                vp += 1
    prev = np.int64(0)
    for i in range(n_removed):
        u, pos = _get_varint(buf, pos, end)
        if pos < 0:
            return -1
        prev = prev + _unzigzag(u)
        removed[i] = prev
    return pos


def _encode(d: EdgeDelta) -> tuple[bytes, dict[str, int]]:
    n = d.n_records
    n_values = int(d.values.shape[0])
    buf = np.empty(10 * (n + n_values + d.removed.shape[0]) + 3 * n + 16, dtype=np.uint8)
    end, meta_end, edges_end = _encode_body(
        d.ids.astype(np.int64, copy=False),
        d.flags.astype(np.uint8, copy=False),
        d.kinds.astype(np.uint8, copy=False),
        d.counts.astype(np.int32, copy=False),
        d.values.astype(np.int64, copy=False),
        d.removed.astype(np.int64, copy=False),
        buf,
    )
    header = _HEADER.pack(
        MAGIC, FORMAT_VERSION, _OP_CODE[d.op], 0, d.dim, d.seq, d.entry,
        n, d.n_new, int(d.removed.shape[0]), n_values,
    )
    vec = np.ascontiguousarray(d.vectors, dtype="<f4").tobytes()
    body = header + buf[:end].tobytes() + vec
    out = body + struct.pack("<I", zlib.crc32(body))
    sizes = {
        "vector": len(vec),
        "edges": int(edges_end - meta_end),
        "metadata": len(out) - len(vec) - int(edges_end - meta_end),
        "total": len(out),
    }
    return out, sizes


def _corrupt(why: str) -> CorruptDelta:
    return CorruptDelta(
        f"corrupt delta: {why}; the bytes were damaged or not made by EdgeDelta.to_bytes "
        f"(format version {FORMAT_VERSION}); fetch the delta again from its origin"
    )


def _decode(data: bytes) -> EdgeDelta:
    if len(data) < _HEADER.size + 4:
        raise _corrupt(f"{len(data)} bytes is shorter than the {_HEADER.size + 4}-byte minimum")
    (crc,) = struct.unpack_from("<I", data, len(data) - 4)
    if zlib.crc32(data[:-4]) != crc:
        raise _corrupt("CRC-32 mismatch")
    magic, version, op, _, dim, seq, entry, n, n_new, n_removed, n_values = _HEADER.unpack_from(
        data, 0
    )
    if magic != MAGIC:
        raise _corrupt(f"bad magic {magic!r}")
    if version != FORMAT_VERSION:
        raise _corrupt(f"unknown format version {version}")
    if op >= len(OPS):
        raise _corrupt(f"unknown op code {op}")
    if not (0 < dim <= MAX_DIM and n <= MAX_RECORDS and n_new <= n and n_values < MAX_VALUES):
        raise _corrupt("header sizes out of range")
    payload = np.frombuffer(data, dtype=np.uint8, offset=_HEADER.size,
                            count=len(data) - 4 - _HEADER.size)
    vec_bytes = n_new * dim * 4
    body_end = payload.shape[0] - vec_bytes
    # every record takes >= 3 bytes, every value and removed id >= 1
    if body_end < 3 * n + n_values + n_removed:
        raise _corrupt("body shorter than its header announces")
    ids = np.empty(n, dtype=np.int64)
    flags = np.empty(n, dtype=np.uint8)
    kinds = np.empty(n, dtype=np.uint8)
    counts = np.empty((n, 2), dtype=np.int32)
    values = np.empty(n_values, dtype=np.int64)
    removed = np.empty(n_removed, dtype=np.int64)
    pos = _decode_body(
        payload, body_end, n, n_removed, n_values, ids, flags, kinds, counts, values, removed
    )
    if pos != body_end:
        raise _corrupt("malformed body")
    vectors = payload[body_end:].view("<f4").astype(np.float32).reshape(n_new, dim)
    return EdgeDelta(
        seq=int(seq), op=OPS[op], dim=int(dim), entry=int(entry), ids=ids, flags=flags,
        kinds=kinds, counts=counts, values=values, vectors=vectors, removed=removed,
    )

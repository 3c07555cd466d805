"""Edge deltas: what one index mutation changed, as data another index can apply.

An :class:`EdgeDelta` lists the node records a mutation created or changed:
the node's id, its flags (live / deleted), its vector when the node is new,
and its new neighbour list, either in full or as a diff (ids removed, ids
added) when that is shorter. Consolidation also frees deleted nodes; their
ids are in ``removed``. ``entry`` is the entry point after the mutation.
Neighbour lists are sets of ids (see :mod:`graphrep.ann.kernels`): lists and
diffs are stored sorted by id, so that equal changes give equal bytes.

Wire format (``to_bytes``), version 2, little endian. A varint is LEB128 (7
bits a byte, low bits first, shortest form); zigzag maps signed to unsigned
(0, -1, 1, -2 -> 0, 1, 2, 3)::

    header  "GRD1", u8 version (2), u8 op,
            varints: dim, seq, entry + 1, n_records, n_new, n_removed, n_values
    body    record ids   zigzag varints of successive differences
            tags         one byte per record: bits 0-1 kind, bit 2 deleted (else
                         live), bit 3 "the list (full) or the ids added (diff)
                         hold the first record's id", which is then not written
                         among the values; bits 4-7 the written lengths: full ->
                         0..14, 15 = longer; diff -> bits 4-5 removed and bits
                         6-7 added, 0..2 each, 3 = more
            lengths      varints, in record order, for every length marked
                         longer / more: its excess over 15 (full) or 3 (diff)
            values       per list (or diff part): varints of its sorted written
                         ids, each as the difference from the previous one
            removed      zigzag varints of successive differences
            vectors      n_new x dim float32
    trailer u32 CRC-32 of everything before it

The first record of an insert's delta is the new node, and nearly every other
record is a neighbour list that gained a link to it: bit 3 says so in one bit
instead of a three-byte id. ``size_by_part`` counts the lengths and values as
``edges``, the vectors as ``vector`` and the rest (header, record ids, tags,
removed ids, CRC) as ``metadata``. Version 1 bytes (fixed 44-byte header; a
flags byte, a kind byte and varint lengths per record; every id written) are
rejected as an unknown version: nothing stores deltas across versions.

A delta carries its sequence number: an index applies delta ``seq`` only
when it has applied (or emitted) exactly ``seq`` deltas before.
:func:`decode_many` decodes a batch of deltas' bytes with one kernel call into
concatenated arrays (a :class:`DeltaBatch`), which
:meth:`~graphrep.ann.VamanaIndex.apply_bytes` applies without building
:class:`EdgeDelta` objects.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import NamedTuple

import numpy as np
from numba import njit

from graphrep.errors import CorruptDelta, DeltaError

FORMAT_VERSION = 2
MAGIC = b"GRD1"  # the same four bytes in every version; the version byte follows
_MAGIC = np.frombuffer(MAGIC, dtype=np.uint8).copy()

OPS = ("build", "insert", "delete", "consolidate", "repair")
_OP_CODE = {name: i for i, name in enumerate(OPS)}

KIND_NONE = 0  # flags only, list unchanged
KIND_FULL = 1  # the whole new list
KIND_DIFF = 2  # ids removed, then ids added

# bounds a decoder accepts before it allocates anything
MAX_DIM = 1 << 16
MAX_RECORDS = 1 << 26
MAX_VALUES = 1 << 31

FLAG_LIVE = 1
FLAG_DELETED = 2

# each array of an EdgeDelta, and the dtype the kernels (encoder and apply) read it as
ARRAY_DTYPES = {"ids": np.dtype(np.int64), "flags": np.dtype(np.uint8),
                "kinds": np.dtype(np.uint8), "counts": np.dtype(np.int32),
                "values": np.dtype(np.int64), "vectors": np.dtype(np.float32),
                "removed": np.dtype(np.int64)}


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
        return decode_many([data]).delta(0)


def array_problem(d: EdgeDelta) -> str | None:
    """What keeps the kernels from reading ``d``'s arrays as the delta they describe, or
    None: every field a numpy array, shapes that agree (n records, (n, 2) counts,
    at most n vectors of ``d.dim`` floats, 1-d values and removed ids), and every
    integer array exactly representable in its kernel dtype (:data:`ARRAY_DTYPES`),
    so that no cast changes a value (flags 257 are not flags 1)."""
    arrays = {name: getattr(d, name) for name in ARRAY_DTYPES}
    if not all(isinstance(a, np.ndarray) for a in arrays.values()):
        return "its array fields must be numpy arrays"
    n = d.ids.shape[0]
    v = d.vectors
    if not (d.ids.ndim == 1 and d.flags.shape == (n,) and d.kinds.shape == (n,)
            and d.counts.shape == (n, 2) and v.ndim == 2 and v.shape[1] == d.dim
            and v.shape[0] <= n and d.values.ndim == 1 and d.removed.ndim == 1):
        return "inconsistent array shapes"
    for name, a in arrays.items():
        want = ARRAY_DTYPES[name]
        if a.dtype == want:
            continue
        if want.kind == "f":
            if a.dtype.kind not in "fiu":
                return f"{name} has dtype {a.dtype}, not a number type"
            continue
        if a.dtype.kind not in "iu":
            return f"{name} has dtype {a.dtype}, not integers"
        lim = np.iinfo(want)
        if a.size and (int(a.min()) < lim.min or int(a.max()) > lim.max):
            return f"{name} holds values outside the range of {want}"
    return None


# --------------------------------------------------------------------------- batches


class DeltaBatch:
    """Deltas decoded together (by :func:`decode_many`, or by
    :meth:`~graphrep.ann.VamanaIndex.apply_bytes`, which returns the batch it
    applied): each array field is every delta's array concatenated in order
    (``vectors`` flattened); delta ``k`` owns ``off[k, c]:off[k + 1, c]`` of
    records (c = 0: ``ids``, ``flags``, ``kinds``, ``counts``), ``values`` (1),
    new nodes (2), ``removed`` (3) and ``vectors`` floats (4). ``seq``, ``op``
    (index into :data:`OPS`), ``dim`` and ``entry`` have one entry per delta."""

    __slots__ = ("counts", "dim", "entry", "flags", "ids", "kinds", "off", "op", "removed",
                 "seq", "values", "vectors")

    def __init__(self, hdr: np.ndarray, off: np.ndarray, ids: np.ndarray, flags: np.ndarray,
                 kinds: np.ndarray, counts: np.ndarray, values: np.ndarray,
                 vectors: np.ndarray, removed: np.ndarray) -> None:
        self.op, self.dim, self.seq, self.entry = hdr
        self.off = off
        self.ids, self.flags, self.kinds, self.counts = ids, flags, kinds, counts
        self.values, self.vectors, self.removed = values, vectors, removed

    def __len__(self) -> int:
        return int(self.seq.shape[0])

    def ops(self) -> list[str]:
        """Each delta's op name (``insert``, ``delete``...)."""
        return [OPS[c] for c in self.op.tolist()]

    def delta(self, k: int) -> EdgeDelta:
        """Delta ``k`` as an :class:`EdgeDelta` (its arrays are views of the batch's)."""
        r0, v0, n0, m0, f0 = self.off[k].tolist()
        r1, v1, n1, m1, f1 = self.off[k + 1].tolist()
        dim = int(self.dim[k])
        return EdgeDelta(
            seq=int(self.seq[k]), op=OPS[int(self.op[k])], dim=dim, entry=int(self.entry[k]),
            ids=self.ids[r0:r1], flags=self.flags[r0:r1], kinds=self.kinds[r0:r1],
            counts=self.counts[r0:r1], values=self.values[v0:v1],
            vectors=self.vectors[f0:f1].reshape(n1 - n0, dim), removed=self.removed[m0:m1],
        )


def decode_many(blobs: Sequence[bytes | bytearray | memoryview]) -> DeltaBatch:
    """Decode the wire bytes of many deltas with one kernel call.

    Every delta is checked (CRC, header, body) before anything is returned:
    any damage raises :class:`CorruptDelta` naming the first damaged delta.
    """
    buf, starts = joined(blobs)
    bad, why, val, hdr, off, ids, flags, kinds, counts, values, vec, removed = _decode_kernel(
        buf, starts)
    if bad >= 0:
        raise corrupt_at(int(bad), int(why), int(val), starts)
    return DeltaBatch(hdr, off, ids, flags, kinds, counts, values, float32s(vec), removed)


def joined(blobs: Sequence[bytes | bytearray | memoryview]) -> tuple[np.ndarray, np.ndarray]:
    """Many deltas' bytes as one uint8 array, and where each starts: delta ``k`` is
    ``buf[starts[k]:starts[k + 1]]`` (what the decoding kernels take)."""
    blobs = [b if type(b) is bytes else bytes(b) for b in blobs]
    data = blobs[0] if len(blobs) == 1 else b"".join(blobs)
    starts = np.fromiter(accumulate(map(len, blobs), initial=0), np.int64, len(blobs) + 1)
    return np.frombuffer(data, dtype=np.uint8), starts


def float32s(vec: np.ndarray) -> np.ndarray:
    """Decoded vector bytes (little endian) as float32."""
    if sys.byteorder != "little":  # pragma: no cover - every supported platform is
        return vec.view("<f4").astype(np.float32)
    return vec.view(np.float32)


def corrupt_at(k: int, why: int, val: int, starts: np.ndarray) -> CorruptDelta:
    """The error for delta ``k`` of the ones ``starts`` delimits, which the decoding
    kernel refused for reason ``why``."""
    return _corrupt(_WHY[why].format(v=val), k, starts.shape[0] - 1,
                    int(starts[k + 1] - starts[k]))


# --------------------------------------------------------------------------- varints and CRC


def _crc_tables() -> np.ndarray:
    """Slice-by-8 tables of zlib's CRC-32 (reflected polynomial 0xEDB88320)."""
    t = np.zeros((8, 256), dtype=np.int64)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        t[0, i] = c
    for k in range(1, 8):
        for i in range(256):
            t[k, i] = (int(t[k - 1, i]) >> 8) ^ int(t[0, int(t[k - 1, i]) & 0xFF])
    return t


_CRC = _crc_tables()


@njit(cache=True)
def _crc32(buf, start, end):
    """zlib.crc32 of buf[start:end] (slice-by-8)."""
    t = _CRC
    crc = np.int64(0xFFFFFFFF)
    p = start
    while p + 8 <= end:
        one = crc ^ (np.int64(buf[p]) | (np.int64(buf[p + 1]) << 8)
                     | (np.int64(buf[p + 2]) << 16) | (np.int64(buf[p + 3]) << 24))
        crc = (t[7, one & 0xFF] ^ t[6, (one >> 8) & 0xFF] ^ t[5, (one >> 16) & 0xFF]
               ^ t[4, (one >> 24) & 0xFF] ^ t[3, buf[p + 4]] ^ t[2, buf[p + 5]]
               ^ t[1, buf[p + 6]] ^ t[0, buf[p + 7]])
        p += 8
    while p < end:
        crc = t[0, (crc ^ buf[p]) & 0xFF] ^ (crc >> 8)
        p += 1
    return crc ^ np.int64(0xFFFFFFFF)


@njit(inline="always")
def _put_varint(buf, pos, v):
    while v >= 0x80:
        buf[pos] = np.uint8((v & 0x7F) | 0x80)
        v >>= 7
        pos += 1
    buf[pos] = np.uint8(v)
    return pos + 1


@njit(inline="always")
def _zigzag(v):
    return np.uint64((v << 1) ^ (v >> 63))


@njit(inline="always")
def _get_varint(buf, pos, end):
    """Returns (value, new pos); pos = -1 on truncation or a non-shortest encoding."""
    if pos < end:
        b = buf[pos]
        if b < 0x80:
            return np.uint64(b), pos + 1
    v = np.uint64(0)
    shift = np.uint64(0)
    while True:
        if pos >= end:
            return np.uint64(0), -1
        b = np.uint64(buf[pos])
        pos += 1
        if shift == np.uint64(63) and b > np.uint64(1):
            return np.uint64(0), -1  # more than 64 bits
        v |= (b & np.uint64(0x7F)) << shift
        if b < np.uint64(0x80):
            if b == np.uint64(0) and shift > np.uint64(0):
                return np.uint64(0), -1  # overlong: a trailing zero group
            return v, pos
        shift += np.uint64(7)


@njit(inline="always")
def _then_varint(buf, pos, end):
    """:func:`_get_varint` after a read that may have failed (pos -1 stays -1)."""
    if pos < 0:
        return np.uint64(0), -1
    return _get_varint(buf, pos, end)


@njit(inline="always")
def _unzigzag(u):
    return np.int64(u >> np.uint64(1)) ^ -np.int64(u & np.uint64(1))


# --------------------------------------------------------------------------- encoding

# record tag byte
_KIND_MASK = 0x03
_TAG_DELETED = 0x04
_TAG_FIRST = 0x08  # the list / ids added hold ids[0], not written
_FULL_MORE = 15
_DIFF_MORE = 3

# why the encoder refused (in-memory deltas an index never makes)
_ENC_OK = 0
_ENC_FLAGS = 1
_ENC_KIND = 2
_ENC_COUNTS = 3
_ENC_ORDER = 4
_ENC_MESSAGES = {
    _ENC_FLAGS: "record {i} has flags {v} (1 live or 2 deleted)",
    _ENC_KIND: "record {i} has kind {v} (0 none, 1 full, 2 diff)",
    _ENC_COUNTS: "record {i}'s counts do not match its kind or the values",
    _ENC_ORDER: "record {i}'s list is not sorted by id or holds a negative id",
}


@njit(inline="always")
def _holds(values, lo, hi, x):
    """Index of the first ``x`` in the sorted values[lo:hi], or -1."""
    for t in range(lo, hi):
        if values[t] == x:
            return t
        if values[t] > x:
            return -1
    return -1


@njit(inline="always")
def _put_part(buf, pos, values, lo, hi, skip):
    """Sorted values[lo:hi] (except index ``skip``) as varints of differences."""
    prev = np.int64(0)
    for t in range(lo, hi):
        if t == skip:
            continue
        pos = _put_varint(buf, pos, np.uint64(values[t] - prev))
        prev = values[t]
    return pos


@njit(cache=True)
def _encode_kernel(op, dim, seq, entry1, n_new, ids, flags, kinds, counts, values, removed,
                   vec, buf):
    """The whole wire form into ``buf``: returns (end, edges start, edges end, refusal
    code, record); refusal code 0 means encoded."""
    n = ids.shape[0]
    # refuse what the format cannot carry, before writing
    total = np.int64(0)
    for i in range(n):
        if flags[i] != FLAG_LIVE and flags[i] != FLAG_DELETED:
            return 0, 0, 0, _ENC_FLAGS, i
        k = kinds[i]
        a = np.int64(counts[i, 0])
        b = np.int64(counts[i, 1])
        if k > KIND_DIFF:
            return 0, 0, 0, _ENC_KIND, i
        if a < 0 or b < 0 or (k == KIND_NONE and a + b != 0) or (k == KIND_FULL and b != 0):
            return 0, 0, 0, _ENC_COUNTS, i
        total += a + b
    if total != values.shape[0]:
        return 0, 0, 0, _ENC_COUNTS, -1
    vp = 0
    for i in range(n):
        k = kinds[i]
        if k == KIND_NONE:
            continue
        parts = 1 if k == KIND_FULL else 2
        for part in range(parts):
            prev = np.int64(0)
            for _ in range(counts[i, part]):
                if values[vp] < prev:
                    return 0, 0, 0, _ENC_ORDER, i
                prev = values[vp]
                vp += 1
    # header
    pos = 0
    for c in _MAGIC:
        buf[pos] = c
        pos += 1
    buf[pos] = FORMAT_VERSION
    buf[pos + 1] = op
    pos += 2
    pos = _put_varint(buf, pos, np.uint64(dim))
    pos = _put_varint(buf, pos, seq)
    pos = _put_varint(buf, pos, entry1)
    pos = _put_varint(buf, pos, np.uint64(n))
    pos = _put_varint(buf, pos, np.uint64(n_new))
    pos = _put_varint(buf, pos, np.uint64(removed.shape[0]))
    pos = _put_varint(buf, pos, np.uint64(values.shape[0]))
    # record ids
    prev = np.int64(0)
    for i in range(n):
        pos = _put_varint(buf, pos, _zigzag(ids[i] - prev))
        prev = ids[i]
    # tags, remembering which value each list leaves out
    first = ids[0] if n else np.int64(-1)
    skip = np.full(n, -1, dtype=np.int64)
    tags = pos
    vp = 0
    for i in range(n):
        k = kinds[i]
        a = counts[i, 0]
        b = counts[i, 1]
        tag = np.int64(k)
        if flags[i] == FLAG_DELETED:
            tag |= _TAG_DELETED
        if k == KIND_FULL:
            s = _holds(values, vp, vp + a, first)
            if s >= 0:
                tag |= _TAG_FIRST
                a -= 1
            skip[i] = s
            tag |= min(a, _FULL_MORE) << 4
        elif k == KIND_DIFF:
            s = _holds(values, vp + a, vp + a + b, first)
            if s >= 0:
                tag |= _TAG_FIRST
                b -= 1
            skip[i] = s
            tag |= (min(a, _DIFF_MORE) << 4) | (min(b, _DIFF_MORE) << 6)
        buf[tags + i] = np.uint8(tag)
        vp += counts[i, 0] + counts[i, 1]
    pos = tags + n
    edges_start = pos
    # lengths that did not fit in the tag
    for i in range(n):
        k = kinds[i]
        w = 1 if skip[i] >= 0 else 0
        if k == KIND_FULL and counts[i, 0] - w >= _FULL_MORE:
            pos = _put_varint(buf, pos, np.uint64(counts[i, 0] - w - _FULL_MORE))
        elif k == KIND_DIFF:
            if counts[i, 0] >= _DIFF_MORE:
                pos = _put_varint(buf, pos, np.uint64(counts[i, 0] - _DIFF_MORE))
            if counts[i, 1] - w >= _DIFF_MORE:
                pos = _put_varint(buf, pos, np.uint64(counts[i, 1] - w - _DIFF_MORE))
    # values
    vp = 0
    for i in range(n):
        k = kinds[i]
        a = counts[i, 0]
        b = counts[i, 1]
        if k == KIND_FULL:
            pos = _put_part(buf, pos, values, vp, vp + a, skip[i])
        elif k == KIND_DIFF:
            pos = _put_part(buf, pos, values, vp, vp + a, -1)
            pos = _put_part(buf, pos, values, vp + a, vp + a + b, skip[i])
        vp += a + b
    edges_end = pos
    prev = np.int64(0)
    for i in range(removed.shape[0]):
        pos = _put_varint(buf, pos, _zigzag(removed[i] - prev))
        prev = removed[i]
    for t in range(vec.shape[0]):
        buf[pos + t] = vec[t]
    pos += vec.shape[0]
    crc = _crc32(buf, 0, pos)
    for t in range(4):
        buf[pos + t] = np.uint8((crc >> (8 * t)) & 0xFF)
    return pos + 4, edges_start, edges_end, _ENC_OK, -1


def _encode(d: EdgeDelta) -> tuple[bytes, dict[str, int]]:
    problem = array_problem(d)
    if problem is not None:
        raise DeltaError(f"cannot encode delta seq {d.seq}: {problem}")
    if not isinstance(d.op, str) or d.op not in _OP_CODE:
        raise DeltaError(f"cannot encode delta seq {d.seq}: unknown op {d.op!r} (one of {OPS})")
    n = d.n_records
    n_values = int(d.values.shape[0])
    if not (all(isinstance(x, (int, np.integer)) and not isinstance(x, bool)
                for x in (d.dim, d.seq, d.entry))
            and 0 < d.dim <= MAX_DIM and 0 <= d.seq < 2**63 and -1 <= d.entry < 2**63):
        raise DeltaError(f"cannot encode delta seq {d.seq}: its dim, seq or entry is not an "
                         "integer in range")
    vec = np.ascontiguousarray(d.vectors, dtype="<f4").reshape(-1).view(np.uint8)
    n_removed = int(d.removed.shape[0])
    buf = np.empty(80 + 21 * n + 10 * (n_values + n_removed) + vec.shape[0], dtype=np.uint8)
    end, edges_start, edges_end, code, rec = _encode_kernel(
        np.uint8(_OP_CODE[d.op]), np.int64(d.dim), np.uint64(d.seq), np.uint64(d.entry + 1),
        np.int64(d.n_new),
        d.ids.astype(np.int64, copy=False),
        d.flags.astype(np.uint8, copy=False),
        d.kinds.astype(np.uint8, copy=False),
        d.counts.astype(np.int32, copy=False),
        d.values.astype(np.int64, copy=False),
        d.removed.astype(np.int64, copy=False),
        vec, buf,
    )
    if code != _ENC_OK:
        i = int(rec)
        v = int(d.flags[i]) if code == _ENC_FLAGS else int(d.kinds[i]) if i >= 0 else 0
        raise DeltaError(f"cannot encode delta seq {d.seq}: "
                         + _ENC_MESSAGES[int(code)].format(i=i, v=v))
    out = buf[:end].tobytes()
    sizes = {
        "vector": int(vec.shape[0]),
        "edges": int(edges_end - edges_start),
        "metadata": int(end - vec.shape[0] - (edges_end - edges_start)),
        "total": int(end),
    }
    return out, sizes


# --------------------------------------------------------------------------- decoding

# why the decoder refused: codes -> messages ({v}: a value)
_W_SHORT = 0
_W_CRC = 1
_W_MAGIC = 2
_W_VERSION = 3
_W_OP = 4
_W_HEADER = 5
_W_SIZES = 6
_W_BODY = 7
_W_TAG = 8
_W_LENGTHS = 9
_W_VALUE = 10
_W_TRAILING = 11
_WHY = {
    _W_SHORT: "{v} bytes is shorter than the smallest delta",
    _W_CRC: "CRC-32 mismatch",
    _W_MAGIC: "bad magic (not a delta)",
    _W_VERSION: "unknown format version {v}; this build reads version " + str(FORMAT_VERSION)
                + " only",
    _W_OP: "unknown op code {v}",
    _W_HEADER: "truncated or malformed header",
    _W_SIZES: "header sizes out of range",
    _W_BODY: "body shorter than its header announces",
    _W_TAG: "bad tag byte {v}",
    _W_LENGTHS: "list lengths do not add up to the values announced",
    _W_VALUE: "malformed or out-of-range id",
    _W_TRAILING: "body longer than its header announces",
}
_MIN_BYTES = len(MAGIC) + 2 + 7 + 4


@njit(cache=True)
def _read_header(buf, s, e, hdr, k, sizes):
    """Check one delta's CRC and header (buf[s:e]); fill ``hdr[:, k]`` (op, dim, seq,
    entry) and ``sizes`` (n, n_new, n_removed, n_values, body start, body end). Returns
    (why, value): why -1 means it is sound so far."""
    if e - s < _MIN_BYTES:
        return _W_SHORT, e - s
    stored = (np.int64(buf[e - 4]) | (np.int64(buf[e - 3]) << 8) | (np.int64(buf[e - 2]) << 16)
              | (np.int64(buf[e - 1]) << 24))
    if _crc32(buf, s, e - 4) != stored:
        return _W_CRC, 0
    for t in range(_MAGIC.shape[0]):
        if buf[s + t] != _MAGIC[t]:
            return _W_MAGIC, 0
    if buf[s + 4] != FORMAT_VERSION:
        return _W_VERSION, np.int64(buf[s + 4])
    if buf[s + 5] >= len(OPS):
        return _W_OP, np.int64(buf[s + 5])
    end = e - 4
    pos = s + 6
    dim, pos = _then_varint(buf, pos, end)
    seq, pos = _then_varint(buf, pos, end)
    entry1, pos = _then_varint(buf, pos, end)
    n, pos = _then_varint(buf, pos, end)
    n_new, pos = _then_varint(buf, pos, end)
    n_removed, pos = _then_varint(buf, pos, end)
    n_values, pos = _then_varint(buf, pos, end)
    if pos < 0:
        return _W_HEADER, 0
    if not (0 < dim <= MAX_DIM and seq < np.uint64(2**63) and entry1 <= np.uint64(2**63)
            and n <= MAX_RECORDS and n_new <= n and n_removed <= MAX_RECORDS
            and n_values < MAX_VALUES):
        return _W_SIZES, 0
    body_end = end - np.int64(n_new) * np.int64(dim) * 4
    # a record takes >= 2 bytes, a removed id >= 1, a value >= 1 unless it is the
    # record's one id left out (so the arrays allocated are bounded by the input)
    room = body_end - pos
    if room < 2 * np.int64(n) + np.int64(n_removed) or \
            np.int64(n_values) > room + np.int64(n):
        return _W_BODY, 0
    hdr[0, k] = np.int64(buf[s + 5])
    hdr[1, k] = np.int64(dim)
    hdr[2, k] = np.int64(seq)
    hdr[3, k] = np.int64(entry1 - np.uint64(1)) if entry1 > 0 else np.int64(-1)
    sizes[0] = np.int64(n)
    sizes[1] = np.int64(n_new)
    sizes[2] = np.int64(n_removed)
    sizes[3] = np.int64(n_values)
    sizes[4] = pos
    sizes[5] = body_end
    return -1, 0


@njit(inline="always")
def _get_part(buf, pos, end, m, values, vp, hold, first):
    """Read ``m`` sorted ids into values[vp:], putting ``first`` in its place when
    ``hold``. Returns the new pos (-1 if malformed)."""
    if hold and first < 0:
        return -1  # the encoder leaves out only ids >= 0 (list ids are never negative)
    prev = np.int64(0)
    for _ in range(m):
        u, pos = _get_varint(buf, pos, end)
        if pos < 0 or u > np.uint64(0x7FFFFFFFFFFFFFFF) - np.uint64(prev):
            return -1
        v = prev + np.int64(u)
        if hold and first < v:
            values[vp] = first
            vp += 1
            hold = False
        values[vp] = v
        vp += 1
        prev = v
    if hold:
        values[vp] = first
    return pos


@njit(inline="always")
def _get_id_run(buf, pos, end, n, out):
    """Read ``n`` ids written as zigzag varints of successive differences into out[:n].
    Returns the new pos (-1 if malformed)."""
    prev = np.int64(0)
    for i in range(n):
        u, pos = _get_varint(buf, pos, end)
        if pos < 0:
            return -1
        prev = prev + _unzigzag(u)
        out[i] = prev
    return pos


@njit(cache=True)
def _decode_body(buf, pos, end, n, n_removed, n_values, ids, flags, kinds, counts, values,
                 removed):
    """One delta's body buf[pos:end] into the arrays; returns (why, value), why -1 if sound."""
    pos = _get_id_run(buf, pos, end, n, ids)
    if pos < 0 or pos + n > end:
        return _W_BODY, 0
    tags = pos
    pos += n
    total = np.int64(0)
    for i in range(n):
        tag = np.int64(buf[tags + i])
        k = tag & _KIND_MASK
        first = (tag & _TAG_FIRST) != 0
        w = 1 if first else 0
        hi = tag >> 4
        flags[i] = FLAG_DELETED if tag & _TAG_DELETED else FLAG_LIVE
        kinds[i] = k
        if k == KIND_NONE:
            if tag & ~(_KIND_MASK | _TAG_DELETED):
                return _W_TAG, tag
            counts[i, 0] = 0
            counts[i, 1] = 0
        elif k == KIND_FULL:
            a = hi
            if a == _FULL_MORE:
                u, pos = _get_varint(buf, pos, end)
                if pos < 0 or u > np.uint64(n_values):
                    return _W_LENGTHS, 0
                a += np.int64(u)
            counts[i, 0] = a + w
            counts[i, 1] = 0
            total += a + w
        elif k == KIND_DIFF:
            a = hi & 3
            b = hi >> 2
            if a == _DIFF_MORE:
                u, pos = _get_varint(buf, pos, end)
                if pos < 0 or u > np.uint64(n_values):
                    return _W_LENGTHS, 0
                a += np.int64(u)
            if b == _DIFF_MORE:
                u, pos = _get_varint(buf, pos, end)
                if pos < 0 or u > np.uint64(n_values):
                    return _W_LENGTHS, 0
                b += np.int64(u)
            counts[i, 0] = a
            counts[i, 1] = b + w
            total += a + b + w
        else:
            return _W_TAG, tag
        if total > n_values:
            return _W_LENGTHS, 0
    if total != n_values:
        return _W_LENGTHS, 0
    first_id = ids[0] if n else np.int64(-1)
    vp = 0
    for i in range(n):
        k = kinds[i]
        if k == KIND_NONE:
            continue
        hold = (buf[tags + i] & _TAG_FIRST) != 0
        w = 1 if hold else 0
        if k == KIND_FULL:
            m = counts[i, 0]
            pos = _get_part(buf, pos, end, m - w, values, vp, hold, first_id)
            vp += m
        else:
            a = counts[i, 0]
            b = counts[i, 1]
            pos = _get_part(buf, pos, end, a, values, vp, False, first_id)
            if pos < 0:
                return _W_VALUE, 0
            pos = _get_part(buf, pos, end, b - w, values, vp + a, hold, first_id)
            vp += a + b
        if pos < 0:
            return _W_VALUE, 0
    pos = _get_id_run(buf, pos, end, n_removed, removed)
    if pos < 0:
        return _W_BODY, 0
    if pos != end:
        return _W_TRAILING, 0
    return -1, 0


@njit(cache=True)
def _decode_kernel(buf, starts):
    """Decode the deltas buf[starts[k]:starts[k + 1]], every one checked before anything
    is returned. Returns (first bad delta or -1, why, value, hdr, off, ids, flags, kinds,
    counts, values, vector bytes, removed)."""
    nb = starts.shape[0] - 1
    hdr = np.zeros((4, nb), dtype=np.int64)
    sizes = np.zeros((nb, 6), dtype=np.int64)
    off = np.zeros((nb + 1, 5), dtype=np.int64)
    for k in range(nb):
        why, val = _read_header(buf, starts[k], starts[k + 1], hdr, k, sizes[k])
        if why >= 0:
            return (k, why, val, hdr, off, np.empty(0, np.int64), np.empty(0, np.uint8),
                    np.empty(0, np.uint8), np.empty((0, 2), np.int32), np.empty(0, np.int64),
                    np.empty(0, np.uint8), np.empty(0, np.int64))
        off[k + 1, 0] = off[k, 0] + sizes[k, 0]
        off[k + 1, 1] = off[k, 1] + sizes[k, 3]
        off[k + 1, 2] = off[k, 2] + sizes[k, 1]
        off[k + 1, 3] = off[k, 3] + sizes[k, 2]
        off[k + 1, 4] = off[k, 4] + sizes[k, 1] * hdr[1, k]
    ids = np.empty(off[nb, 0], dtype=np.int64)
    flags = np.empty(off[nb, 0], dtype=np.uint8)
    kinds = np.empty(off[nb, 0], dtype=np.uint8)
    counts = np.empty((off[nb, 0], 2), dtype=np.int32)
    values = np.empty(off[nb, 1], dtype=np.int64)
    removed = np.empty(off[nb, 3], dtype=np.int64)
    vec = np.empty(4 * off[nb, 4], dtype=np.uint8)
    for k in range(nb):
        r0 = off[k, 0]
        r1 = off[k + 1, 0]
        why, val = _decode_body(
            buf, sizes[k, 4], sizes[k, 5], sizes[k, 0], sizes[k, 2], sizes[k, 3],
            ids[r0:r1], flags[r0:r1], kinds[r0:r1], counts[r0:r1],
            values[off[k, 1]:off[k + 1, 1]], removed[off[k, 3]:off[k + 1, 3]],
        )
        if why >= 0:
            return (k, why, val, hdr, off, ids, flags, kinds, counts, values, vec, removed)
        f0 = 4 * off[k, 4]
        src = sizes[k, 5]
        for t in range(4 * (off[k + 1, 4] - off[k, 4])):
            vec[f0 + t] = buf[src + t]
    return (-1, 0, np.int64(0), hdr, off, ids, flags, kinds, counts, values, vec, removed)


def _corrupt(why: str, k: int = 0, nb: int = 1, size: int = 0) -> CorruptDelta:
    which = f"delta {k} of {nb} ({size} bytes)" if nb > 1 else "delta"
    return CorruptDelta(
        f"corrupt {which}: {why}; the bytes were damaged or not made by EdgeDelta.to_bytes "
        f"(format version {FORMAT_VERSION}); fetch the delta again from its origin"
    )

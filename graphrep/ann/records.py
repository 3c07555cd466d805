"""Node records for anti-entropy repair: one 64-bit hash per node, and the records.

Deltas keep replicas equal while every delta arrives. When one was lost,
damaged or applied to the wrong state, two replicas have to find *which*
nodes differ without shipping the whole index. Each side hashes every
stored node (:func:`node_hashes`); the protocol compares those hashes
(through a Merkle tree, :mod:`graphrep.protocol.merkle`), and the side with
the trusted copy ships the differing nodes as a :class:`RecordSet`, which
the other side writes over its own
(:meth:`graphrep.ann.VamanaIndex.overwrite_records`).

A node's hash covers what the index digest covers for that node: its id,
its flags, the bytes of its stored vector and the set of its neighbour ids.
So it depends on logical state only, never on slot layout, capacity or the
order of a list in memory, and it is the same in every process and on every
platform (no Python ``hash()``, no seed). What a node hash does not cover,
the protocol compares on its own: the index parameters (dim, metric, R) and
the entry point (``VamanaIndex.entry_id``).

The hash is a 64-bit sponge: every 64-bit word is XORed into the state and
the state goes through the SplitMix64 finaliser (a bijection), so a single
changed word always changes the hash. The neighbour list enters as its
length and one word, the sum of its mixed ids, which is the same in any
list order. Two different nodes collide with probability about 2**-64. It
is not cryptographic; replicas trust each other, and the hash only has to
notice accidents.

Wire format of a :class:`RecordSet` (``to_bytes``), little endian, version 1::

    header  "GRR1" u8 version, u8 0, u16 0, u32 dim, u32 n_records, u64 n_neighbours
    body    ids         n_records x i64
            flags       n_records x u8 (1 live, 2 deleted)
            counts      n_records x u32, the length of each neighbour list
            neighbours  n_neighbours x i64, the lists concatenated in record order
            vectors     n_records x dim x f32
    trailer u32 CRC-32 of everything before it

Fixed-width fields keep it simple to check: repairs are rare and small, and
the vectors dominate their size anyway.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from graphrep.errors import CorruptDelta, InvalidArgument

FORMAT_VERSION = 1
MAGIC = b"GRR1"
_HEADER = struct.Struct("<4sBBHIIQ")
_CRC = struct.Struct("<I")

# bounds a decoder accepts before it allocates anything
MAX_DIM = 1 << 16
MAX_RECORDS = 1 << 26

_LIVE = 1
_DELETED = 2

# --------------------------------------------------------------------------- node hashes

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_SEED = np.uint64(0x6772617068726570)  # "graphrep"
_NB_KEY = np.uint64(0x632BE59BD9B4E019)  # keeps neighbour words apart from the other words
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S32 = np.uint64(32)


@njit(inline="always")
def _mix(x):
    """SplitMix64's finaliser: a bijection on 64-bit words with full avalanche."""
    x = (x ^ (x >> _S30)) * _M1
    x = (x ^ (x >> _S27)) * _M2
    return x ^ (x >> _S31)


@njit(inline="always")
def _absorb(h, w):
    return _mix(h ^ w) + _GOLDEN


@njit(cache=True)
def node_hashes(slots, vec_bits, nbrs, deg, flags, ext, out):
    """``out[i]`` = the hash of the node in slot ``slots[i]``.

    ``vec_bits`` is the vector table viewed as uint32 (the float32 bit
    patterns, so -0.0, 0.0 and every NaN payload hash differently, as the
    digest's bytes do). The words absorbed: id, flags, the vector two floats
    per word, the list length, then the neighbour set as one word: the sum
    (mod 2**64) of the mixed neighbour ids. A sum does not depend on the
    order of the list, so no sort is needed (sorting 64 ids per node cost
    twice as much as all the rest of the hash).
    """
    dim = vec_bits.shape[1]
    for i in range(slots.shape[0]):
        s = slots[i]
        h = _SEED
        h = _absorb(h, np.uint64(ext[s]))
        h = _absorb(h, np.uint64(flags[s]))
        j = 0
        while j + 1 < dim:
            h = _absorb(h, np.uint64(vec_bits[s, j]) | (np.uint64(vec_bits[s, j + 1]) << _S32))
            j += 2
        if j < dim:
            h = _absorb(h, np.uint64(vec_bits[s, j]))
        d = deg[s]
        acc = np.uint64(0)
        for t in range(d):
            acc += _mix(np.uint64(ext[nbrs[s, t]]) ^ _NB_KEY)
        h = _absorb(h, np.uint64(d))
        h = _absorb(h, acc)
        out[i] = _mix(h)


# --------------------------------------------------------------------------- RecordSet


@dataclass(frozen=True, eq=False)
class RecordSet:
    """Full records of some nodes, as one index stores them, to write over another's.

    * ``dim``: the vector dimension.
    * ``ids`` (n,) int64: node ids (``export_records`` gives them ascending).
    * ``flags`` (n,) uint8: 1 live, 2 deleted.
    * ``vectors`` (n, dim) float32: the stored vectors (normalised already for a
      cosine index: they are written back bit for bit, never renormalised).
    * ``counts`` (n,) int32: the length of each node's neighbour list.
    * ``neighbours`` (counts.sum(),) int64: the neighbour ids (external ids, not
      slots), each list ascending, concatenated in record order.

    The constructor coerces dtypes (refusing integers the cast would change) and
    checks that the shapes agree (raising :class:`InvalidArgument`); whether the
    records fit an index is checked by the index that takes them.
    """

    dim: int
    ids: np.ndarray
    flags: np.ndarray
    vectors: np.ndarray
    counts: np.ndarray
    neighbours: np.ndarray

    def __post_init__(self) -> None:
        if isinstance(self.dim, bool) or not isinstance(self.dim, (int, np.integer)) \
                or not 0 < int(self.dim) <= MAX_DIM:
            raise InvalidArgument(f"RecordSet dim must be an integer in [1, {MAX_DIM}], "
                                  f"got {self.dim!r}")
        arrays = {}
        for name, dtype in (("ids", np.int64), ("flags", np.uint8), ("vectors", np.float32),
                            ("counts", np.int32), ("neighbours", np.int64)):
            arr = np.asarray(getattr(self, name))
            if arr.size == 0:
                arr = arr.astype(dtype)  # an empty list has dtype float64
            if arr.dtype.kind not in ("f" if name == "vectors" else "iu"):
                raise InvalidArgument(f"RecordSet {name} has dtype {arr.dtype}; pass "
                                      f"{np.dtype(dtype).name} values")
            if name != "vectors" and arr.dtype != dtype and arr.size:
                lim = np.iinfo(dtype)  # the cast must not change a value (flags 257 -> 1)
                if int(arr.min()) < lim.min or int(arr.max()) > lim.max:
                    raise InvalidArgument(f"RecordSet {name} holds values outside the range "
                                          f"of {np.dtype(dtype).name}")
            # a copy: a RecordSet is a value, and the caller may reuse its arrays
            arrays[name] = np.array(arr, dtype=dtype, order="C", copy=True)
        n = arrays["ids"].shape[0] if arrays["ids"].ndim == 1 else -1
        want = {"ids": (n,), "flags": (n,), "counts": (n,), "vectors": (n, int(self.dim))}
        for name, shape in want.items():
            if arrays[name].shape != shape:
                raise InvalidArgument(
                    f"RecordSet {name} has shape {arrays[name].shape}, expected {shape} "
                    f"(ids must be 1-d; one flag, count and {self.dim}-d vector per id)"
                )
        c = arrays["counts"]
        if c.size and c.min() < 0:
            raise InvalidArgument("RecordSet counts must be >= 0")
        if arrays["neighbours"].shape != (int(c.sum(dtype=np.int64)),):
            raise InvalidArgument(
                f"RecordSet neighbours has shape {arrays['neighbours'].shape}, but the counts "
                f"add up to {int(c.sum(dtype=np.int64))}"
            )
        object.__setattr__(self, "dim", int(self.dim))
        for name, arr in arrays.items():
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)

    # ------------------------------------------------------------------ reading
    @classmethod
    def empty(cls, dim: int) -> RecordSet:
        return cls(dim, np.zeros(0, np.int64), np.zeros(0, np.uint8),
                   np.zeros((0, dim), np.float32), np.zeros(0, np.int32), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def offsets(self) -> np.ndarray:
        """(n + 1,) int64: record ``i``'s list is ``neighbours[offsets[i]:offsets[i + 1]]``."""
        out = np.zeros(len(self) + 1, dtype=np.int64)
        np.cumsum(self.counts, out=out[1:])
        return out

    def neighbours_of(self, i: int) -> np.ndarray:
        """The neighbour ids of record ``i`` (by position, not by id)."""
        off = self.offsets
        return self.neighbours[off[i] : off[i + 1]]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RecordSet):
            return NotImplemented
        return self.dim == other.dim and all(
            np.array_equal(getattr(self, k), getattr(other, k))
            for k in ("ids", "flags", "counts", "neighbours")
        ) and self.vectors.tobytes() == other.vectors.tobytes()  # bit for bit, NaN included

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"RecordSet(dim={self.dim}, records={len(self)}, "
                f"neighbours={self.neighbours.shape[0]})")

    # ------------------------------------------------------------------ bytes
    def to_bytes(self) -> bytes:
        """Serialise to the wire format in the module docstring."""
        header = _HEADER.pack(MAGIC, FORMAT_VERSION, 0, 0, self.dim, len(self),
                              int(self.neighbours.shape[0]))
        body = b"".join((
            header,
            self.ids.astype("<i8").tobytes(),
            self.flags.tobytes(),
            self.counts.astype("<u4").tobytes(),
            self.neighbours.astype("<i8").tobytes(),
            self.vectors.astype("<f4").tobytes(),
        ))
        return body + _CRC.pack(zlib.crc32(body))

    def size_by_part(self) -> dict[str, int]:
        """Bytes of :meth:`to_bytes` by part: ``vector``, ``edges`` (list lengths and
        neighbour ids), ``metadata`` (header, ids, flags, checksum) and ``total``,
        the same parts as :meth:`EdgeDelta.size_by_part` reports."""
        n = len(self)
        vector = 4 * n * self.dim
        edges = 4 * n + 8 * int(self.neighbours.shape[0])
        metadata = _HEADER.size + 9 * n + _CRC.size
        return {"vector": vector, "edges": edges, "metadata": metadata,
                "total": vector + edges + metadata}

    @property
    def nbytes(self) -> int:
        return self.size_by_part()["total"]

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> RecordSet:
        """Parse bytes made by :meth:`to_bytes`; raises :class:`CorruptDelta` on any damage."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidArgument(f"RecordSet.from_bytes takes bytes, not {type(data).__name__}")
        data = bytes(data)
        least = _HEADER.size + _CRC.size
        if len(data) < least:
            raise _corrupt(f"{len(data)} bytes is shorter than the {least}-byte minimum")
        (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
        if zlib.crc32(data[: -_CRC.size]) != crc:
            raise _corrupt("CRC-32 mismatch")
        magic, version, _, _, dim, n, n_nb = _HEADER.unpack_from(data, 0)
        if magic != MAGIC:
            raise _corrupt(f"bad magic {magic!r}")
        if version != FORMAT_VERSION:
            raise _corrupt(f"unknown format version {version}")
        if not (0 < dim <= MAX_DIM and n <= MAX_RECORDS):
            raise _corrupt(f"header sizes out of range (dim {dim}, {n} records)")
        expect = _HEADER.size + n * (8 + 1 + 4 + 4 * dim) + 8 * n_nb + _CRC.size
        if len(data) != expect:
            raise _corrupt(f"{len(data)} bytes, but the header announces {expect}")
        pos = _HEADER.size

        def take(dtype: str, count: int) -> np.ndarray:
            nonlocal pos
            arr = np.frombuffer(data, dtype=dtype, count=count, offset=pos)
            pos += arr.nbytes
            return arr

        ids = take("<i8", n)
        flags = take("u1", n)
        counts = take("<u4", n)
        neighbours = take("<i8", n_nb)
        vectors = take("<f4", n * dim).reshape(n, dim)
        if int(counts.sum(dtype=np.int64)) != n_nb:
            raise _corrupt("the list lengths don't add up to the neighbour count")
        if n and not np.isin(flags, (_LIVE, _DELETED)).all():
            raise _corrupt(f"flags {int(flags[~np.isin(flags, (_LIVE, _DELETED))][0])} is "
                           "neither live (1) nor deleted (2)")
        if (n and ids.min() < 0) or (n_nb and neighbours.min() < 0):
            raise _corrupt("a negative id")
        if np.unique(ids).size != n:
            raise _corrupt("an id has two records")
        return cls(int(dim), ids, flags, vectors, counts.astype(np.int32), neighbours)


def _corrupt(why: str) -> CorruptDelta:
    return CorruptDelta(
        f"corrupt record set: {why}; the bytes were damaged or not made by "
        f"RecordSet.to_bytes (format version {FORMAT_VERSION}); fetch the records again "
        "from the trusted replica"
    )


def as_record_set(x: Any) -> RecordSet:
    """``x`` if it is a RecordSet, else an :class:`InvalidArgument` naming what it was."""
    if not isinstance(x, RecordSet):
        raise InvalidArgument(
            f"expected a RecordSet (from export_records or RecordSet.from_bytes), "
            f"got {type(x).__name__}"
        )
    return x

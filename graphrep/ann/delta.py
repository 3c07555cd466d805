"""Edge deltas: what one index mutation changed, as data another index can apply.

An :class:`EdgeDelta` lists the node records a mutation created or changed:
the node's id, its flags (live / deleted), its vector when the node is new,
and its new neighbour list, either in full or as a diff (ids removed, ids
added) when that is shorter. Consolidation also frees deleted nodes; their
ids are in ``removed``. ``entry`` is the entry point after the mutation.
Neighbour lists are sets of ids (see :mod:`graphrep.ann.kernels`): lists and
diffs are stored sorted by id, so that equal changes give equal bytes.

The wire form (``to_bytes``: varints, a tag byte per record, a CRC-32) and
the kernels that encode and decode it are in :mod:`graphrep.ann.delta_wire`.

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

from graphrep.ann.delta_wire import (
    ENC_FLAGS,
    ENC_MESSAGES,
    ENC_OK,
    FORMAT_VERSION,
    KIND_DIFF,
    KIND_FULL,
    KIND_NONE,
    MAGIC,
    MAX_DIM,
    MIN_BYTES,
    OPS,
    READ_VERSIONS,
    WHY,
    decode_kernel,
    encode_kernel,
)
from graphrep.errors import CorruptDelta, DeltaError

__all__ = ["ARRAY_DTYPES", "FORMAT_VERSION", "KIND_DIFF", "KIND_FULL", "KIND_NONE", "MAGIC",
           "MIN_BYTES", "OPS", "READ_VERSIONS", "DeltaBatch", "EdgeDelta", "NodeRecord",
           "array_problem", "corrupt_at", "decode_many", "float32s", "joined"]

_OP_CODE = {name: i for i, name in enumerate(OPS)}

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
    bad, why, val, hdr, off, ids, flags, kinds, counts, values, vec, removed = decode_kernel(
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
    return _corrupt(WHY[why].format(v=val), k, starts.shape[0] - 1,
                    int(starts[k + 1] - starts[k]))


def _encode(d: EdgeDelta) -> tuple[bytes, dict[str, int]]:
    """``d``'s wire bytes and their sizes by part (see :meth:`EdgeDelta.size_by_part`)."""
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
    end, edges_start, edges_end, code, rec = encode_kernel(
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
    if code != ENC_OK:
        i = int(rec)
        v = int(d.flags[i]) if code == ENC_FLAGS else int(d.kinds[i]) if i >= 0 else 0
        raise DeltaError(f"cannot encode delta seq {d.seq}: "
                         + ENC_MESSAGES[int(code)].format(i=i, v=v))
    out = buf[:end].tobytes()
    sizes = {
        "vector": int(vec.shape[0]),
        "edges": int(edges_end - edges_start),
        "metadata": int(end - vec.shape[0] - (edges_end - edges_start)),
        "total": int(end),
    }
    return out, sizes


def _corrupt(why: str, k: int = 0, nb: int = 1, size: int = 0) -> CorruptDelta:
    which = f"delta {k} of {nb} ({size} bytes)" if nb > 1 else "delta"
    return CorruptDelta(
        f"corrupt {which}: {why}; the bytes were damaged or not made by EdgeDelta.to_bytes "
        f"(format version {FORMAT_VERSION}); fetch the delta again from its origin"
    )

"""Search codes: one byte per dimension, for the beam search to walk on.

A search at high dimension waits on memory: a 784-d float32 vector is 49 cache lines,
and a query at recall@10 0.95 on Fashion-MNIST reads a few hundred of them at random.
With search codes (:meth:`VamanaIndex.use_codes
<graphrep.ann.VamanaIndex.use_codes>`) the beam search computes its distances on a
uint8 copy of every vector (a quarter of the bytes), and the beam it ends with is
re-ranked on the float32 vectors, so the distances a search returns are exact and only
the walk is approximate.

A :class:`CodeBook` maps dimension ``j`` linearly from ``[lo[j], hi[j]]`` onto 0..255
(rounded to the nearest, clipped). The walk is deterministic everywhere: a vector's code
is a pure function of the vector and the code book (elementwise float32 arithmetic, no
reduction, no ``fastmath``), and the distance between codes is an exact integer sum
(:func:`graphrep.ann._simd.sqdist_u8`), so two indexes with the same state and code
book walk to the same beam on any machine. The re-ranking uses the float32 distance of
a plain search, summed in a fixed lane order: the same bits on any machine too.

What codes do not touch: the graph, inserts, deltas, digests and snapshots (the code
book is a search setting, not state: a loaded index searches on its vectors until
``use_codes`` is called). Memory: ``dim`` bytes per slot on top of ``4 * dim`` for the
vectors.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from graphrep.errors import InvalidArgument, InvalidVector

__all__ = ["CodeBook", "encode_rows"]


@njit(cache=True)
def encode_rows(X, lo, scale, out):
    """``out[i, j]`` = ``X[i, j]`` coded: ``rint((x - lo[j]) * scale[j])`` clipped to
    0..255, in float32. Compiled without ``fastmath`` (no reassociation or fused
    multiply-add may change a rounding): a code is the same bits wherever it is made."""
    for i in range(X.shape[0]):
        for j in range(X.shape[1]):
            x = np.rint((X[i, j] - lo[j]) * scale[j])
            if x < 0:
                x = np.float32(0)
            elif x > 255:
                x = np.float32(255)
            out[i, j] = np.uint8(x)


class CodeBook:
    """``CodeBook(lo, hi)``: per-dimension ranges (arrays of length ``dim``, or scalars
    with ``dim``) mapped onto the codes 0..255. Values outside a range are clipped to
    its ends (the walk gets coarser there; re-ranking keeps the results exact)."""

    __slots__ = ("dim", "hi", "lo", "scale")

    def __init__(self, lo: Any, hi: Any, dim: int | None = None) -> None:
        lo_a = np.asarray(lo, dtype=np.float64)
        hi_a = np.asarray(hi, dtype=np.float64)
        if lo_a.ndim == 0 and hi_a.ndim == 0:
            if dim is None:
                raise InvalidArgument("a code book of scalar ranges needs dim=")
            lo_a = np.full(dim, float(lo_a))
            hi_a = np.full(dim, float(hi_a))
        if lo_a.ndim != 1 or lo_a.shape != hi_a.shape or lo_a.shape[0] == 0:
            raise InvalidArgument(f"lo and hi must be two 1-d arrays of one length, got "
                                  f"shapes {lo_a.shape} and {hi_a.shape}")
        if not (np.all(np.isfinite(lo_a)) and np.all(np.isfinite(hi_a))):
            raise InvalidVector("code book ranges must be finite")
        if np.any(hi_a < lo_a):
            j = int(np.argmax(hi_a < lo_a))
            raise InvalidArgument(f"code book range of dimension {j} is empty: "
                                  f"lo {lo_a[j]} > hi {hi_a[j]}")
        self.dim = int(lo_a.shape[0])
        self.lo = lo_a.astype(np.float32)
        self.hi = hi_a.astype(np.float32)
        width = (hi_a - lo_a).astype(np.float32)
        # a dimension of one value codes to 0 everywhere
        self.scale = np.where(width > 0, np.float32(255) / np.where(width > 0, width, 1),
                              np.float32(0)).astype(np.float32)

    @classmethod
    def fit(cls, vectors: Any) -> CodeBook:
        """The code book spanning each dimension's range in ``vectors`` (a sample of the
        data, say: later vectors outside it are clipped)."""
        X = np.asarray(vectors, dtype=np.float32)
        if X.ndim != 2 or X.shape[0] == 0:
            raise InvalidVector(f"fit takes a non-empty 2-d array, got shape {X.shape}")
        if not np.all(np.isfinite(X)):
            raise InvalidVector("fit: vectors must be finite")
        return cls(X.min(axis=0), X.max(axis=0))

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        """uint8 codes of float32 rows (``(n, dim)`` -> ``(n, dim)``; one row -> one row)."""
        v = np.asarray(vectors, dtype=np.float32)
        if v.ndim not in (1, 2) or v.shape[-1] != self.dim:
            raise InvalidVector(f"vectors of shape {v.shape} for a code book of "
                                f"dimension {self.dim}")
        rows = np.ascontiguousarray(v.reshape(-1, self.dim))
        out = np.empty(rows.shape, dtype=np.uint8)
        encode_rows(rows, self.lo, self.scale, out)
        return out.reshape(v.shape)

    def __repr__(self) -> str:
        return f"CodeBook(dim={self.dim})"

"""Checks of the values callers hand the index: settings, ids and vectors.

Every check raises its specific :class:`graphrep.errors.GraphrepError` subclass
(:class:`InvalidArgument`, :class:`InvalidId`, :class:`InvalidVector`,
:class:`DimensionMismatch`, :class:`DuplicateId`) with a message that says what
was wrong, before the index changes. The snapshot reader
(:mod:`graphrep.ann.snapshot`) and the repair (:mod:`graphrep.ann.repair`) use
them too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graphrep.ann.delta_apply import first_too_large, first_unfit_row
from graphrep.ann.delta_wire import OPS
from graphrep.ann.idmap import MAX_ID, IdMap
from graphrep.errors import (
    DimensionMismatch,
    DuplicateId,
    InvalidArgument,
    InvalidId,
    InvalidVector,
)

METRICS = ("l2", "cosine", "ip")
"""The distance metrics an index takes."""
COUNTED_OPS = (*OPS, "search", "apply")
"""The operations whose calls and work an index counts (``stats()["counters"]``)."""
MAX_SEQ = 2**62
"""The largest seq an index takes from a snapshot or a repair."""


def is_real(v: Any) -> bool:
    """``v`` is a finite Python or NumPy number, not a bool (and not an int beyond float)."""
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        return False
    try:
        return bool(np.isfinite(float(v)))
    except OverflowError:
        return False


def check_int(v: Any, name: str, lo: int, hi: int) -> None:
    """``v`` is an integer (not a bool) in [lo, hi], else :class:`InvalidArgument`."""
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise InvalidArgument(f"{name} must be an integer, got {type(v).__name__} {v!r}")
    if not lo <= int(v) <= hi:
        raise InvalidArgument(f"{name} must be in [{lo}, {hi}], got {int(v)}")


def check_settings(dim: Any, metric: Any, R: Any, L: Any, alpha: Any, build_slack: Any,
                   seed: Any, capacity: Any) -> None:
    """The constructor's arguments are in range (see :class:`~graphrep.ann.VamanaIndex`)."""
    check_int(dim, "dim", 1, 1 << 16)
    check_int(R, "R", 2, 4096)
    check_int(L, "L", 1, 1 << 20)
    check_int(seed, "seed", 0, 2**63 - 1)
    check_int(capacity, "capacity", 1, 1 << 31)
    if metric not in METRICS:
        raise InvalidArgument(f"metric must be one of {METRICS}, got {metric!r}")
    if not (is_real(alpha) and alpha >= 1.0):
        raise InvalidArgument(f"alpha must be a finite number >= 1.0, got {alpha!r}")
    if not (is_real(build_slack) and 1.0 <= build_slack <= 4.0):
        raise InvalidArgument(f"build_slack must be in [1, 4], got {build_slack!r}")


def as_vectors(x: Any, dim: int, metric: str, what: str, copy: bool = True) -> np.ndarray:
    """Validate a 2-d batch and return it as C-contiguous float32, ready to store
    (normalised for ``cosine``; a copy unless ``copy`` is False and the input already
    is that)."""
    arr = as_float_array(x, what)
    if arr.ndim != 2:
        raise InvalidVector(
            f"{what} must be a 2-d array (n, {dim}), got shape {arr.shape}"
        )
    if arr.shape[1] != dim:
        raise DimensionMismatch(
            f"{what} has dimension {arr.shape[1]} but the index has dim={dim}; "
            "pass vectors of the index's dimension or create an index for this one"
        )
    if (metric != "cosine" and arr.dtype == np.float32 and arr.flags.c_contiguous
            and first_unfit_row(arr) < 0):
        # the common case in one kernel pass; anything it refuses takes the path below,
        # which says what is wrong
        return np.array(arr, copy=True) if copy else arr
    check_finite(arr, what)
    arr = np.array(arr, dtype=np.float32, order="C", copy=True if copy else None)
    if metric == "cosine":
        normalise_rows(arr, what)
    else:
        big = int(first_too_large(arr))
        if big >= 0:
            raise InvalidVector(
                f"{what}: row {big} has a squared norm above 2**125 (about 4.3e37), beyond "
                "which float32 distances between vectors overflow; scale the vectors "
                "down (or use metric='cosine')"
            )
    return arr


def as_one_vector(x: Any, dim: int, metric: str, what: str) -> np.ndarray:
    """Validate one vector (1-d) as :func:`as_vectors` does a batch."""
    arr = as_float_array(x, what)
    if arr.ndim != 1:
        raise InvalidVector(
            f"{what} must be a 1-d array of length {dim}, got shape {arr.shape}"
        )
    return as_vectors(arr[None, :], dim, metric, what)[0]


def check_new_ids(ids: np.ndarray, idmap: IdMap) -> None:
    """The int64 ``ids`` are in range, distinct and none of them in ``idmap`` yet."""
    if ids.size and (ids.min() < 0 or ids.max() > MAX_ID):
        bad = ids[(ids < 0) | (ids > MAX_ID)][0]
        raise InvalidId(f"id {int(bad)} is out of range; ids must be integers in [0, 2**62)")
    uniq, counts = np.unique(ids, return_counts=True)
    if uniq.size != ids.size:
        raise DuplicateId(f"id {int(uniq[counts > 1][0])} appears more than once in ids; "
                          "give every vector its own id")
    present = idmap.get_many(ids) >= 0
    if present.any():
        raise DuplicateId(
            f"id {int(ids[present][0])} is already in the index; ids are never reused "
            "(to update a vector, delete it and insert it under a new id)"
        )


def as_float_array(x: Any, what: str) -> np.ndarray:
    """``x`` as a numeric numpy array (not copied when it is one), else
    :class:`InvalidVector`."""
    try:
        arr = np.asarray(x)
    except ValueError as e:  # ragged nested sequences
        raise InvalidVector(f"{what} is ragged or not array-like: {e}") from e
    if arr.dtype == object:
        raise InvalidVector(f"{what} is ragged or holds non-numbers; pass a numeric array")
    if arr.dtype.kind not in "fiu":
        raise InvalidVector(
            f"{what} has dtype {arr.dtype}; pass a numeric (float or integer) array"
        )
    return arr


def check_finite(arr: np.ndarray, what: str) -> None:
    """Every value of ``arr`` is finite and fits float32, else :class:`InvalidVector`
    naming the first bad row."""
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            row = int(np.argwhere(~np.isfinite(arr))[0][0])
            raise InvalidVector(f"{what}: row {row} holds NaN or inf; clean or drop it")
        if arr.dtype.itemsize > 4:
            big = np.abs(arr) > np.finfo(np.float32).max
            if big.any():
                row = int(np.argwhere(big)[0][0])
                raise InvalidVector(f"{what}: row {row} overflows float32")


# below this float32 norm a row's sum of squares was subnormal (or zero): bits were lost
_TINY_NORM = np.float32(np.sqrt(np.finfo(np.float32).tiny))


def normalise_rows(arr: np.ndarray, what: str) -> None:
    """Scale every row of the float32 batch ``arr`` to unit length, in place.

    A row whose float32 norm is a normal finite number is divided by it in float32.
    A row whose sum of squares overflows float32 (``[3e38, 3e38, 0]``) or underflows
    it (``[1e-30, 0, 0]``) is divided by its largest magnitude and then by its norm,
    both in float64, where neither can happen. Only the zero vector is refused.
    """
    with np.errstate(over="ignore", under="ignore"):  # the rows they hit are redone
        norms = np.linalg.norm(arr, axis=1)
    odd = ~((norms >= _TINY_NORM) & np.isfinite(norms))
    if not odd.any():
        arr /= norms[:, None]
        return
    rows = np.flatnonzero(odd)
    sub = arr[rows].astype(np.float64)
    top = np.abs(sub).max(axis=1)
    if (top == 0).any():
        raise InvalidVector(
            f"{what}: row {int(rows[top == 0][0])} is the zero vector, which has no cosine "
            "distance; drop it or use metric='l2'"
        )
    sub /= top[:, None]
    sub /= np.linalg.norm(sub, axis=1)[:, None]
    norms[rows] = 1
    arr /= norms[:, None]
    arr[rows] = sub


def as_id(x: Any, what: str) -> int:
    """``x`` as an id: an integer (not a bool) in [0, 2**62), else :class:`InvalidId`."""
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise InvalidId(f"{what} must be an integer id, got {type(x).__name__} {x!r}")
    i = int(x)
    if i < 0 or i > MAX_ID:
        raise InvalidId(f"{what}: id {i} is out of range; ids must be integers in [0, 2**62)")
    return i


def as_id_array(x: Any, what: str) -> np.ndarray:
    """``x`` as a 1-d int64 array (integers only; the caller checks the range of signed
    ones), else :class:`InvalidId`."""
    arr = np.asarray(x)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise InvalidId(f"{what} must be a 1-d array of integers, got dtype {arr.dtype} "
                        f"shape {arr.shape}")
    if arr.dtype.kind == "u" and arr.size and arr.max() > MAX_ID:
        raise InvalidId(f"{what}: id {int(arr.max())} is out of range [0, 2**62)")
    return arr.astype(np.int64)


def id_list(ids: Any, what: str) -> np.ndarray:
    """A 1-d int64 array of ids in range (an empty sequence is fine)."""
    arr = np.asarray(ids)
    if arr.size == 0 and arr.ndim == 1:
        return np.zeros(0, dtype=np.int64)
    arr = as_id_array(arr, what)
    if arr.size and (arr.min() < 0 or arr.max() > MAX_ID):
        bad = arr[(arr < 0) | (arr > MAX_ID)][0]
        raise InvalidId(f"{what}: id {int(bad)} is out of range; ids are in [0, 2**62)")
    return arr

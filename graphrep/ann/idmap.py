"""External id -> slot map as a flat open-addressing hash table.

Why not a dict: applying a delta resolves every neighbour id it names (a few
hundred per insert) to a slot, and that has to happen inside Numba kernels,
without a Python call per id. A Python dict can't be reached from a kernel
and ``numba.typed.Dict`` costs a function call and a boxed hash per lookup;
this table is two flat arrays (keys, values) with linear probing and a
Fibonacci hash, read by the same kernels that walk the graph.

Keys are non-negative int64 ids; ``EMPTY`` (-1) marks a free bucket. The
table is kept at most half full; deletion uses backward-shift so that no
tombstones accumulate. The layout of the table never reaches the index's
logical state or its digest.
"""

from __future__ import annotations

import numpy as np
from numba import njit

EMPTY = np.int64(-1)
# the largest id the index accepts (ids are in [0, 2**62)): every id is a valid key
MAX_ID = (1 << 62) - 1
_GOLDEN = np.uint64(11400714819323198485)


@njit(inline="always")
def _bucket(key, mask):
    h = np.uint64(key) * _GOLDEN
    return np.int64((h >> np.uint64(32)) & np.uint64(mask))


@njit(inline="always")
def _probe(keys, vals, key, mask):
    """Slot of ``key`` in the table of size ``mask + 1``, or -1 if absent."""
    b = _bucket(key, mask)
    while True:
        k = keys[b]
        if k == key:
            return vals[b]
        if k == EMPTY:
            return -1
        b = (b + 1) & mask


@njit(cache=True)
def lookup(keys, vals, key):
    """Slot of ``key``, or -1 if absent."""
    return _probe(keys, vals, key, keys.shape[0] - 1)


@njit(cache=True)
def lookup_many(keys, vals, query, out):
    """Vectorised :func:`lookup`: ``out[i] = slot of query[i]`` or -1."""
    mask = keys.shape[0] - 1
    for i in range(query.shape[0]):
        out[i] = _probe(keys, vals, query[i], mask)


@njit(cache=True)
def insert(keys, vals, key, val):
    """Insert or overwrite ``key -> val``. The caller keeps the load <= 1/2."""
    mask = keys.shape[0] - 1
    b = _bucket(key, mask)
    while True:
        k = keys[b]
        if k == key or k == EMPTY:
            keys[b] = key
            vals[b] = val
            return
        b = (b + 1) & mask


@njit(cache=True)
def remove(keys, vals, key):
    """Remove ``key`` if present (backward-shift deletion). Returns True if it was there."""
    mask = keys.shape[0] - 1
    b = _bucket(key, mask)
    while True:
        k = keys[b]
        if k == EMPTY:
            return False
        if k == key:
            break
        b = (b + 1) & mask
    # shift following entries of the cluster back into the hole
    hole = b
    j = (b + 1) & mask
    while keys[j] != EMPTY:
        home = _bucket(keys[j], mask)
        # move j into the hole if its home is not cyclically in (hole, j]
        if (j > hole and (home <= hole or home > j)) or (j < hole and (home <= hole and home > j)):
            keys[hole] = keys[j]
            vals[hole] = vals[j]
            hole = j
        j = (j + 1) & mask
    keys[hole] = EMPTY
    vals[hole] = -1
    return True


class IdMap:
    """Python handle around the table arrays; grows by rehashing."""

    __slots__ = ("count", "keys", "vals")

    def __init__(self, capacity: int = 16) -> None:
        size = 16
        while size < 2 * capacity:
            size *= 2
        self.keys = np.full(size, EMPTY, dtype=np.int64)
        self.vals = np.full(size, -1, dtype=np.int32)
        self.count = 0

    def reserve(self, n_more: int) -> None:
        """Make room for ``n_more`` further keys without exceeding half load."""
        need = self.count + n_more
        if 2 * need <= self.keys.shape[0]:
            return
        old_keys, old_vals = self.keys, self.vals
        size = self.keys.shape[0]
        while 2 * need > size:
            size *= 2
        self.keys = np.full(size, EMPTY, dtype=np.int64)
        self.vals = np.full(size, -1, dtype=np.int32)
        used = old_keys != EMPTY
        _insert_all(self.keys, self.vals, old_keys[used], old_vals[used])

    def get(self, key: int) -> int:
        return int(lookup(self.keys, self.vals, np.int64(key)))

    def get_many(self, query: np.ndarray) -> np.ndarray:
        out = np.empty(query.shape[0], dtype=np.int32)
        lookup_many(self.keys, self.vals, np.ascontiguousarray(query, dtype=np.int64), out)
        return out

    def put(self, key: int, val: int) -> None:
        self.reserve(1)
        insert(self.keys, self.vals, np.int64(key), np.int32(val))
        self.count += 1

    def put_many(self, keys: np.ndarray, vals: np.ndarray) -> None:
        self.reserve(len(keys))
        _insert_all(self.keys, self.vals, keys.astype(np.int64), vals.astype(np.int32))
        self.count += len(keys)

    def discard(self, key: int) -> None:
        if remove(self.keys, self.vals, np.int64(key)):
            self.count -= 1


@njit(cache=True)
def _insert_all(keys, vals, new_keys, new_vals):
    for i in range(new_keys.shape[0]):
        insert(keys, vals, new_keys[i], new_vals[i])

"""A Merkle tree over node hashes, for finding which nodes two replicas disagree on.

Anti-entropy has to find the few nodes in which two large replicas differ
while sending little. Each replica hashes its nodes
(:meth:`graphrep.ann.VamanaIndex.record_hashes`, one 64-bit hash per id) and
builds this tree over them; equal roots mean equal node sets (up to hash
collisions), and two replicas that differ descend from the root, exchanging
the hashes of the children of the nodes that still differ, until they reach
the differing leaves. Then each side lists the ids in those leaves
(:func:`ids_in_leaves`) and compares hashes per id.

Layout. The tree is complete and binary, with ``n_leaves`` (a power of two)
leaves. Depth 0 is the root; depth ``d`` holds ``2**d`` nodes; node ``i`` at
depth ``d`` has children ``2i`` and ``2i + 1`` at depth ``d + 1``. Leaf
``b`` holds the ids whose bucket :func:`leaf_of` is ``b``: the SplitMix64
hash of the id modulo ``n_leaves``, so ids spread evenly whatever their
pattern, and a given id is in the same bucket on every replica.

Hashes. BLAKE2b with a 16-byte digest, personalised per kind of node so that
a leaf can never be read as an internal node:

* leaf: over the bucket's (id, hash) pairs in ascending id order, each pair
  16 bytes, ``<i8`` id then ``<u8`` hash; an empty bucket hashes the empty
  string, which is therefore a fixed constant (:data:`EMPTY_LEAF`).
* internal node: over its two children's digests, left then right.

Nothing depends on the process (no Python ``hash()``, no PYTHONHASHSEED) or
on the order the ids are given in. Record-level hashes are 64 bits, so two
different states are told apart except with probability about 2**-64 per
differing record; 16-byte node digests add nothing measurable to that.

What the tree does not cover, the protocol compares on its own: the index
parameters (dim, metric, R) and the entry point (``VamanaIndex.entry_id``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphrep.errors import InvalidArgument, InvalidId

DIGEST_SIZE = 16
DEFAULT_LEAVES = 256
MAX_LEAVES = 1 << 20
_LEAF_PERSON = b"graphrep-leaf-v1"
_NODE_PERSON = b"graphrep-node-v1"

EMPTY_LEAF = hashlib.blake2b(b"", digest_size=DIGEST_SIZE, person=_LEAF_PERSON).digest()


def splitmix64(x: Any) -> np.ndarray:
    """SplitMix64 of each value of ``x`` (taken as unsigned 64-bit), as uint64.

    Arithmetic wraps modulo 2**64 on purpose (numpy arrays wrap silently)."""
    z = np.array(x, dtype=np.int64, ndmin=1).view(np.uint64)
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def leaf_of(ids: Any, n_leaves: int) -> np.ndarray:
    """The leaf (bucket) of each id: ``splitmix64(id) % n_leaves``, as int64."""
    _check_leaves(n_leaves)
    arr = _ids_array(ids, "ids")
    return (splitmix64(arr) & np.uint64(n_leaves - 1)).astype(np.int64)


def ids_in_leaves(ids: Any, leaves: Iterable[int], n_leaves: int) -> np.ndarray:
    """The ids among ``ids`` whose bucket is one of ``leaves``, ascending (int64).

    After a descent has named the differing leaves, each replica calls this on
    its own ids to list the records it has to compare, or send."""
    _check_leaves(n_leaves)
    arr = _ids_array(ids, "ids")
    want = np.asarray(list(leaves), dtype=np.int64)
    if want.size and (want.min() < 0 or want.max() >= n_leaves):
        raise InvalidArgument(f"leaf numbers must be in [0, {n_leaves}), got "
                              f"{int(want[(want < 0) | (want >= n_leaves)][0])}")
    return np.sort(arr[np.isin(leaf_of(arr, n_leaves), want)])


@dataclass(frozen=True, eq=False)
class MerkleTree:
    """The hash tree of one replica's node hashes (see the module docstring).

    ``levels[d]`` holds the ``2**d`` digests at depth ``d``; ``levels[depth]``
    are the leaves. ``counts[b]`` is how many ids leaf ``b`` holds, which lets
    a replica estimate a repair's size before asking for it.
    """

    n_leaves: int
    levels: tuple[tuple[bytes, ...], ...]
    counts: np.ndarray

    @classmethod
    def build(cls, ids: Any, hashes: Any, leaves: int = DEFAULT_LEAVES) -> MerkleTree:
        """The tree over ``(ids, hashes)`` as :meth:`VamanaIndex.record_hashes` returns
        them (ids in any order, each once; hashes unsigned 64-bit)."""
        _check_leaves(leaves)
        id_arr = _ids_array(ids, "ids")
        h = np.asarray(hashes)
        if h.shape != id_arr.shape or (h.size and h.dtype.kind != "u"):
            raise InvalidArgument(
                f"hashes must be an unsigned integer array with one hash per id ({id_arr.shape}),"
                f" got dtype {h.dtype} shape {h.shape}"
            )
        order = np.argsort(id_arr, kind="stable")
        id_arr, h = id_arr[order], h[order].astype(np.uint64)
        if id_arr.size > 1 and not (id_arr[1:] != id_arr[:-1]).all():
            dup = id_arr[1:][id_arr[1:] == id_arr[:-1]][0]
            raise InvalidArgument(f"id {int(dup)} appears twice; every id has one hash")
        bucket = leaf_of(id_arr, leaves)
        by_bucket = np.argsort(bucket, kind="stable")  # ids stay ascending within a bucket
        pairs = np.empty((id_arr.size, 2), dtype="<u8")
        pairs[:, 0] = id_arr[by_bucket].view(np.uint64)
        pairs[:, 1] = h[by_bucket]
        raw = memoryview(pairs.tobytes())
        counts = np.bincount(bucket, minlength=leaves).astype(np.int64)
        ends = np.cumsum(counts) * 16
        starts = ends - counts * 16
        leaf_level = tuple(
            hashlib.blake2b(raw[a:b], digest_size=DIGEST_SIZE, person=_LEAF_PERSON).digest()
            if b > a else EMPTY_LEAF
            for a, b in zip(starts.tolist(), ends.tolist(), strict=True)
        )
        levels = [leaf_level]
        while len(levels[-1]) > 1:
            below = levels[-1]
            levels.append(tuple(
                hashlib.blake2b(below[i] + below[i + 1], digest_size=DIGEST_SIZE,
                                person=_NODE_PERSON).digest()
                for i in range(0, len(below), 2)
            ))
        counts.flags.writeable = False
        return cls(leaves, tuple(reversed(levels)), counts)

    # ------------------------------------------------------------------ reading
    @property
    def depth(self) -> int:
        """The leaves' depth: log2(n_leaves)."""
        return len(self.levels) - 1

    @property
    def root(self) -> bytes:
        return self.levels[0][0]

    @property
    def leaf_hashes(self) -> tuple[bytes, ...]:
        return self.levels[-1]

    def level(self, depth: int) -> list[bytes]:
        """The ``2**depth`` digests at ``depth`` (0: the root; ``self.depth``: the leaves)."""
        self._check_depth(depth, "depth")
        return list(self.levels[depth])

    def children(self, depth: int, nodes: Sequence[int], span: int = 1) -> list[bytes]:
        """For each of ``nodes`` (indexes at ``depth``), in order, the digests of its
        ``2**span`` descendants at ``depth + span``, left to right.

        This is what a replica answers in one round trip of a descent; a larger
        ``span`` means fewer round trips and more digests per answer (a descent of
        a 256-leaf tree with span 4 takes two).
        """
        lo, w = self._descendants(depth, nodes, span)
        below = self.levels[depth + span]
        return [below[i] for start in lo for i in range(start, start + w)]

    def differing_children(self, depth: int, nodes: Sequence[int], theirs: Sequence[bytes],
                           span: int = 1) -> list[int]:
        """Indexes at ``depth + span`` of the descendants of ``nodes`` whose digests here
        differ from ``theirs`` (another replica's :meth:`children` for the same
        arguments). The nodes to ask about in the next round, or the differing leaves."""
        lo, w = self._descendants(depth, nodes, span)
        if len(theirs) != len(lo) * w:
            raise InvalidArgument(f"expected {len(lo) * w} digests ({len(lo)} nodes x {w} "
                                  f"descendants), got {len(theirs)}")
        below = self.levels[depth + span]
        out = []
        k = 0
        for start in lo:
            for i in range(start, start + w):
                if below[i] != theirs[k]:
                    out.append(i)
                k += 1
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MerkleTree):
            return NotImplemented
        return self.n_leaves == other.n_leaves and self.root == other.root

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"MerkleTree(n_leaves={self.n_leaves}, records={int(self.counts.sum())}, "
                f"root={self.root.hex()})")

    def _check_depth(self, depth: int, what: str) -> None:
        if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) \
                or not 0 <= depth <= self.depth:
            raise InvalidArgument(f"{what} must be an integer in [0, {self.depth}], got {depth!r}")

    def _descendants(self, depth: int, nodes: Sequence[int], span: int
                     ) -> tuple[list[int], int]:
        """The first descendant index at ``depth + span`` of each node, and how many."""
        self._check_depth(depth, "depth")
        if isinstance(span, bool) or not isinstance(span, (int, np.integer)) \
                or not 1 <= span <= self.depth - depth:
            raise InvalidArgument(
                f"span must be an integer in [1, {self.depth - depth}] at depth {depth} of a "
                f"tree of depth {self.depth}, got {span!r}"
            )
        width = 1 << depth
        lo = []
        for v in nodes:
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v < width:
                raise InvalidArgument(f"node {v!r} is not an index in [0, {width}) at depth "
                                      f"{depth}")
            lo.append(int(v) << span)
        return lo, 1 << span


def diff_leaves(a: MerkleTree, b: MerkleTree) -> list[int]:
    """The leaves whose digests differ between two trees, ascending, found the way two
    replicas find them over the network: descending from the root one level at a
    time and only below nodes that differ."""
    if not (isinstance(a, MerkleTree) and isinstance(b, MerkleTree)):
        raise InvalidArgument("diff_leaves compares two MerkleTree objects")
    if a.n_leaves != b.n_leaves:
        raise InvalidArgument(
            f"the trees have {a.n_leaves} and {b.n_leaves} leaves; build both with the "
            "same leaf count to compare them"
        )
    if a.root == b.root:
        return []
    frontier = [0]
    for depth in range(a.depth):
        frontier = a.differing_children(depth, frontier, b.children(depth, frontier))
    return frontier


def _check_leaves(n: Any) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= MAX_LEAVES \
            or n & (n - 1):
        raise InvalidArgument(f"the leaf count must be a power of two in [1, {MAX_LEAVES}], "
                              f"got {n!r}")


def _ids_array(ids: Any, what: str) -> np.ndarray:
    arr = np.asarray(ids)
    if arr.size == 0 and arr.ndim == 1:
        return np.zeros(0, dtype=np.int64)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise InvalidId(f"{what} must be a 1-d array of integer ids, got dtype {arr.dtype} "
                        f"shape {arr.shape}")
    if arr.size and (arr.min() < 0 or (arr.dtype.kind == "u" and arr.max() > 2**63 - 1)):
        raise InvalidId(f"{what}: ids must be non-negative 64-bit integers")
    return arr.astype(np.int64)

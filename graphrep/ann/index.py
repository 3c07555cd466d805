"""VamanaIndex: a Vamana (DiskANN) graph index that emits and applies edge deltas.

The index is flat arrays (:class:`graphrep.ann.kernels.Graph`) plus Numba
kernels; this class validates input, owns the arrays and the id table, and
turns what each kernel touched into an :class:`~graphrep.ann.delta.EdgeDelta`.

Every method that changes the graph returns the delta(s) of that change.
Applying the deltas of index A, in order, to an empty index B (same ``dim``,
``metric`` and ``R``) gives ``B.digest() == A.digest()`` and the same search
results, and B computes no distance to do it. A replica that receives the
deltas as bytes hands a batch of them to :meth:`VamanaIndex.apply_bytes`,
which decodes and applies them in one kernel call.

Two ways past the log, for replicas the deltas can't help: a whole snapshot
(:meth:`VamanaIndex.to_bytes` / :meth:`VamanaIndex.from_bytes`), and
anti-entropy repair, which finds the nodes two replicas disagree on
(:meth:`VamanaIndex.record_hashes`) and writes the trusted copy's records over
the other's (:meth:`VamanaIndex.export_records`,
:meth:`VamanaIndex.overwrite_records`). A repair is not a log entry: it
emits no delta and leaves ``seq`` alone.

Any error raised by a method is a :class:`graphrep.errors.GraphrepError`
subclass, and the index is unchanged when it is raised.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tokenize
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numba
import numpy as np
from numpy.lib import format as npformat

from graphrep.ann import delta_check
from graphrep.ann.delta import (
    ARRAY_DTYPES,
    KIND_NONE,
    DeltaBatch,
    EdgeDelta,
    array_problem,
    corrupt_at,
    float32s,
    joined,
)
from graphrep.ann.delta_apply import (
    WIRE_CORRUPT,
    WIRE_DIM,
    WIRE_ROOM,
    WIRE_SEQ,
    apply_batch,
    apply_wire,
)
from graphrep.ann.delta_check import first_too_large
from graphrep.ann.delta_emit import changed_records, make_records
from graphrep.ann.idmap import MAX_ID, IdMap
from graphrep.ann.kernels import (
    DELETED,
    FREE,
    LIVE,
    METRIC_IP,
    METRIC_L2,
    N_COUNTERS,
    Changes,
    Graph,
    Scratch,
    begin_changes,
    build_graph,
    consolidate_lists,
    count_unreachable,
    insert_node,
    make_changes,
    make_scratch,
    release_deleted,
    repair_unreachable,
    search_parallel,
    search_serial,
)
from graphrep.ann.records import RecordSet, as_record_set, node_hashes
from graphrep.errors import (
    CorruptIndexFile,
    DeltaError,
    DeltaOutOfOrder,
    DimensionMismatch,
    DuplicateId,
    EmptyIndex,
    GraphrepError,
    IndexNotEmpty,
    InvalidArgument,
    InvalidId,
    InvalidVector,
    UnknownId,
)

METRICS = ("l2", "cosine", "ip")
SAVE_FORMAT = 1
_OPS = ("build", "insert", "delete", "consolidate", "repair", "search", "apply")

# up to this many live nodes every insert ends with a reachability BFS
_BFS_EVERY_INSERT_UP_TO = 1024

# a batch of at least this many queries per thread goes to the parallel kernel
_PARALLEL_MIN_PER_THREAD = 16


class VamanaIndex:
    """A Vamana graph index over float32 vectors with integer ids.

    Parameters
    ----------
    dim: vector dimension.
    metric: ``"l2"`` (squared Euclidean), ``"cosine"`` (1 - cosine; vectors
        are stored normalised) or ``"ip"`` (distance = -dot; the graph is
        built on L2 of the raw vectors, searched by inner product).
    R: maximum out-degree.
    L: beam width of construction, and the default beam width of search.
    alpha: RobustPrune's distance slack (>= 1), applied to squared distances
        as DiskANN does.
    build_slack: during ``build`` lists may grow to ``build_slack * R`` before
        a re-prune to R (DiskANN's GRAPH_SLACK_FACTOR); all end at <= R. After
        the build R is a hard cap, and an insert that would overflow a list
        re-prunes it to ``R / build_slack``, which leaves DiskANN's headroom.
    seed: seeds the order in which ``build`` inserts points.
    """

    def __init__(
        self,
        dim: int,
        metric: str = "l2",
        R: int = 64,
        L: int = 100,
        alpha: float = 1.2,
        *,
        build_slack: float = 1.3,
        seed: int = 0,
        capacity: int = 1024,
    ) -> None:
        _check_int(dim, "dim", 1, 1 << 16)
        _check_int(R, "R", 2, 4096)
        _check_int(L, "L", 1, 1 << 20)
        _check_int(seed, "seed", 0, 2**63 - 1)
        _check_int(capacity, "capacity", 1, 1 << 31)
        if metric not in METRICS:
            raise InvalidArgument(f"metric must be one of {METRICS}, got {metric!r}")
        if not (_is_real(alpha) and alpha >= 1.0):
            raise InvalidArgument(f"alpha must be a finite number >= 1.0, got {alpha!r}")
        if not (_is_real(build_slack) and 1.0 <= build_slack <= 4.0):
            raise InvalidArgument(f"build_slack must be in [1, 4], got {build_slack!r}")
        self.dim = int(dim)
        self.metric = metric
        self.R = int(R)
        self.L = int(L)
        self.alpha = float(alpha)
        self.build_slack = float(build_slack)
        # an insert that overflows a list (> R) re-prunes it to R / slack: the same
        # headroom DiskANN gets from letting lists grow to slack * R, under a hard cap R
        self._overflow_target = max(1, int(self.R / self.build_slack))
        # repairs search with a wider beam, to find a reachable list with room
        self._repair_L = max(self.L, 4 * self.R)
        self._inserts_since_bfs = 0
        self.seed = int(seed)
        self._cap = 0
        self._n_slots = 0  # slots [0, n_slots) have been used at least once
        self._free = np.empty(0, dtype=np.int32)  # stack of freed slots, reused last-in first-out
        self._n_free = 0
        self._n_live = 0
        self._n_deleted = 0
        self._entry = -1  # entry point slot
        self._seq = 0  # deltas emitted or applied so far
        self._idmap = IdMap(capacity)
        self._counters = np.zeros(N_COUNTERS, dtype=np.int64)
        self._totals = {op: {"calls": 0, "distance_computations": 0, "nodes_visited": 0}
                        for op in _OPS}
        self.last_op: dict[str, Any] = {}
        self._scratch_by_L: dict[int, Scratch] = {}
        self._orph = np.empty(max(64, 8 * self.R), dtype=np.int32)
        self._grow(capacity)

    # ------------------------------------------------------------------ storage
    def _grow(self, cap: int) -> None:
        """Reallocate the arrays for ``cap`` slots (a logical no-op)."""
        old = self._cap
        vecs = np.zeros((cap, self.dim), dtype=np.float32)
        nbrs = np.full((cap, self.R), -1, dtype=np.int32)
        deg = np.zeros(cap, dtype=np.int32)
        flags = np.zeros(cap, dtype=np.uint8)
        ext = np.full(cap, -1, dtype=np.int64)
        indeg = np.zeros(cap, dtype=np.int32)
        if old:
            g = self._g
            vecs[:old] = g.vecs
            nbrs[:old] = g.nbrs
            deg[:old] = g.deg
            flags[:old] = g.flags
            ext[:old] = g.ext
            indeg[:old] = g.indeg
        self._g = Graph(vecs, nbrs, deg, flags, ext, indeg)
        free = np.empty(cap, dtype=np.int32)
        free[: self._n_free] = self._free[: self._n_free]
        self._free = free
        self._cap = cap
        self._scratch_by_L = {}
        self._changes = make_changes(cap, 4 * self.R + 64, self.R)
        self._queue = np.empty(cap, dtype=np.int32)

    def _reserve(self, n_more: int) -> None:
        need = self._n_slots + max(0, n_more - self._n_free)
        if need > self._cap:
            self._grow(max(need, 2 * self._cap))
        self._idmap.reserve(n_more)

    def _scratch(self, L: int) -> Scratch:
        s = self._scratch_by_L.get(L)
        if s is None:
            s = make_scratch(self._cap, L, self.R)
            self._scratch_by_L[L] = s
        return s

    def _peek_slots(self, n: int) -> np.ndarray:
        """The slots the next ``n`` allocations will take (without taking them)."""
        take = min(n, self._n_free)
        reused = self._free[self._n_free - take : self._n_free][::-1]
        fresh = np.arange(self._n_slots, self._n_slots + n - take, dtype=np.int32)
        return np.concatenate((reused, fresh))

    def _take_slots(self, n: int) -> np.ndarray:
        slots = self._peek_slots(n)
        take = min(n, self._n_free)
        self._n_free -= take
        self._n_slots += n - take
        return slots

    def _push_free(self, slots: np.ndarray) -> None:
        """Return slots to the stack, highest first, so that the lowest is reused first."""
        k = slots.shape[0]
        self._free[self._n_free : self._n_free + k] = np.sort(slots)[::-1]
        self._n_free += k

    @property
    def _used(self) -> int:
        return self._n_live + self._n_deleted

    # ------------------------------------------------------------------ accounting
    def _start(self) -> np.ndarray:
        return self._counters.copy()

    def _account(self, op: str, before: np.ndarray, **extra: Any) -> None:
        d = self._counters - before
        t = self._totals[op]
        t["calls"] += 1
        t["distance_computations"] += int(d[0])
        t["nodes_visited"] += int(d[1])
        self.last_op = {"op": op, "distance_computations": int(d[0]),
                        "nodes_visited": int(d[1]), **extra}

    # ------------------------------------------------------------------ input checks
    def _vectors(self, x: Any, what: str, copy: bool = True) -> np.ndarray:
        """Validate a 2-d batch and return it as C-contiguous float32, ready to store
        (a copy unless ``copy`` is False and the input already is that)."""
        arr = _as_float_array(x, what)
        if arr.ndim != 2:
            raise InvalidVector(
                f"{what} must be a 2-d array (n, {self.dim}), got shape {arr.shape}"
            )
        if arr.shape[1] != self.dim:
            raise DimensionMismatch(
                f"{what} has dimension {arr.shape[1]} but the index has dim={self.dim}; "
                "pass vectors of the index's dimension or create an index for this one"
            )
        _check_finite(arr, what)
        arr = np.array(arr, dtype=np.float32, order="C", copy=True if copy else None)
        if self.metric == "cosine":
            _normalise_rows(arr, what)
        else:
            big = int(first_too_large(arr))
            if big >= 0:
                raise InvalidVector(
                    f"{what}: row {big} has a squared norm above 2**125 (about 4.3e37), beyond "
                    "which float32 distances between vectors overflow; scale the vectors "
                    "down (or use metric='cosine')"
                )
        return arr

    def _one_vector(self, x: Any, what: str) -> np.ndarray:
        arr = _as_float_array(x, what)
        if arr.ndim != 1:
            raise InvalidVector(
                f"{what} must be a 1-d array of length {self.dim}, got shape {arr.shape}"
            )
        return self._vectors(arr[None, :], what)[0]

    def _check_new_ids(self, ids: np.ndarray) -> None:
        if ids.size and (ids.min() < 0 or ids.max() > MAX_ID):
            bad = ids[(ids < 0) | (ids > MAX_ID)][0]
            raise InvalidId(f"id {int(bad)} is out of range; ids must be integers in [0, 2**62)")
        uniq, counts = np.unique(ids, return_counts=True)
        if uniq.size != ids.size:
            raise DuplicateId(f"id {int(uniq[counts > 1][0])} appears more than once in ids; "
                              "give every vector its own id")
        present = self._idmap.get_many(ids) >= 0
        if present.any():
            raise DuplicateId(
                f"id {int(ids[present][0])} is already in the index; ids are never reused "
                "(to update a vector, delete it and insert it under a new id)"
            )

    def _slot_of(self, id_: Any, what: str) -> int:
        i = _as_id(id_, what)
        slot = self._idmap.get(i)
        if slot < 0:
            raise UnknownId(f"{what}: id {i} is not in the index")
        return slot

    # ------------------------------------------------------------------ mutations
    def build(self, vectors: Any, ids: Any = None) -> list[EdgeDelta]:
        """Batch-build the graph over ``vectors`` (ids default to 0..n-1).

        One pass of FreshVamana inserts in a seeded random order, with
        DiskANN's in-prune alpha schedule and build slack, then every list
        pruned to R and every unreachable node re-linked. The index must be
        empty. Returns one delta holding every node.
        """
        if self._used:
            raise IndexNotEmpty(
                f"build needs an empty index but this one holds {self._used} nodes; "
                "use insert() to add to a built index"
            )
        X = self._vectors(vectors, "vectors")
        n = X.shape[0]
        if n == 0:
            raise InvalidVector("vectors is empty; build needs at least one vector")
        if ids is None:
            id_arr = np.arange(n, dtype=np.int64)
        else:
            id_arr = _as_id_array(ids, "ids")
            if id_arr.shape[0] != n:
                raise InvalidArgument(f"ids has {id_arr.shape[0]} entries for {n} vectors")
            self._check_new_ids(id_arr)
        before = self._start()
        self._reserve(n)
        slots = self._take_slots(n)  # 0..n-1 on an empty index
        g = self._g
        g.vecs[slots] = X
        g.flags[slots] = LIVE
        g.ext[slots] = id_arr
        g.deg[slots] = 0
        g.indeg[slots] = 0
        self._idmap.put_many(id_arr, slots)
        self._n_live = n
        self._entry = int(slots[_medoid(X, id_arr)])
        ch = self._changes
        begin_changes(ch)
        if n > 1:
            limit = max(self.R, round(self.build_slack * self.R))
            wide = np.full((self._cap, limit), -1, dtype=np.int32)
            gw = Graph(g.vecs, wide, g.deg, g.flags, g.ext, g.indeg)
            order = np.random.default_rng(self.seed).permutation(n).astype(np.int32)
            sw = make_scratch(self._cap, self.L, limit)
            chw = make_changes(self._cap, 0, limit)
            begin_changes(chw)
            build_graph(gw, order, self._entry, self.L, self.R, limit, self.alpha, sw, chw,
                          self._counters, self._orph)
            g.nbrs[:, :] = wide[:, : self.R]
            self._repair_all(ch)
        delta = self._delta_for(slots, op="build")
        self._account("build", before, n=n)
        return [delta]

    def insert(self, id: Any, vector: Any) -> EdgeDelta:
        """FreshVamana insert of one vector; returns the delta (new node + changed lists)."""
        i = _as_id(id, "id")
        v = self._one_vector(vector, "vector")
        if self._idmap.get(i) >= 0:
            raise DuplicateId(
                f"id {i} is already in the index; ids are never reused "
                "(to update a vector, delete it and insert it under a new id)"
            )
        before = self._start()
        self._reserve(1)
        (slot,) = self._take_slots(1)
        g = self._g
        g.vecs[slot] = v
        g.flags[slot] = LIVE
        g.ext[slot] = i
        g.deg[slot] = 0
        g.indeg[slot] = 0
        self._idmap.put(i, int(slot))
        self._n_live += 1
        ch = self._changes
        begin_changes(ch)
        if self._entry < 0:  # the first node: it becomes the entry point, no edges
            self._entry = int(slot)
            delta = self._delta_for(np.array([slot], dtype=np.int32), op="insert")
            self._account("insert", before, orphans_repaired=0)
            return delta
        orphans = int(insert_node(slot, g, self._entry, self.L, self.R, self.R,
                                    self._overflow_target, self.alpha,
                                    self._scratch(self._repair_L), ch, self._counters,
                                    self._orph, self._repair_L))
        # A re-prune can also cut off an island whose members still link to each
        # other (exact duplicates do that). A BFS finds those; it runs after every
        # insert while the index is small and every live/64 inserts after that, so
        # its cost stays a small fraction of an insert's.
        self._inserts_since_bfs += 1
        if self._n_live <= _BFS_EVERY_INSERT_UP_TO or \
                self._inserts_since_bfs >= self._n_live // 64:
            orphans += self._repair_all(ch)
            self._inserts_since_bfs = 0
        delta = self._delta_from_changes("insert", new_slot=int(slot))
        self._account("insert", before, orphans_repaired=orphans)
        return delta

    def delete(self, id: Any) -> EdgeDelta:
        """Tombstone ``id``: hidden from search results at once, still used for navigation
        until :meth:`consolidate` removes it."""
        slot = self._slot_of(id, "delete")
        g = self._g
        if g.flags[slot] == DELETED:
            raise UnknownId(f"delete: id {int(g.ext[slot])} is already deleted")
        before = self._start()
        g.flags[slot] = DELETED
        self._n_live -= 1
        self._n_deleted += 1
        delta = self._make_delta(
            "delete", ids=np.array([g.ext[slot]], dtype=np.int64),
            flags=np.array([DELETED], dtype=np.uint8),
            kinds=np.array([KIND_NONE], dtype=np.uint8), counts=np.zeros((1, 2), np.int32),
            values=np.zeros(0, np.int64), vectors=np.zeros((0, self.dim), np.float32),
        )
        self._account("delete", before)
        return delta

    def consolidate(self) -> list[EdgeDelta]:
        """FreshDiskANN delete consolidation: re-link around every deleted node, free them,
        and repair reachability. Returns ``[]`` when nothing is deleted."""
        if self._n_deleted == 0:
            return []
        before = self._start()
        g = self._g
        ch = make_changes(self._cap, self._n_live + 16, self.R)
        begin_changes(ch)
        s = self._scratch(self.L)
        n_lists = int(consolidate_lists(g, self._n_slots, self._entry, self.R, self.alpha, s,
                                          ch, self._counters))
        if g.flags[self._entry] == DELETED:
            self._entry = self._nearest_live(self._entry)
        freed = np.empty(self._n_deleted, dtype=np.int32)
        n_freed = int(release_deleted(g, self._n_slots, freed))
        freed = freed[:n_freed]
        removed = np.sort(g.ext[freed])
        for rid in removed:
            self._idmap.discard(int(rid))
        self._push_free(freed)
        self._n_deleted = 0
        repairs = self._repair_all(ch)
        # the pre-images of lists still name the freed slots: clear their ids after the diff
        delta = self._delta_from_changes("consolidate", changes=ch, removed=removed)
        g.ext[freed] = -1
        self._account("consolidate", before, lists_rewritten=n_lists, freed=n_freed,
                      repairs=repairs)
        return [delta]

    def repair(self) -> list[EdgeDelta]:
        """Re-link any live node the entry point can't reach; ``[]`` if all are reachable."""
        if self._entry < 0 or self.unreachable_count() == 0:
            return []
        before = self._start()
        ch = self._changes
        begin_changes(ch)
        repairs = self._repair_all(ch)
        delta = self._delta_from_changes("repair")
        self._account("repair", before, repairs=repairs)
        return [delta]

    def _repair_all(self, ch: Changes) -> int:
        return int(repair_unreachable(self._g, self._entry, self._n_slots, self._repair_L,
                                        self.R, self.alpha, self._scratch(self._repair_L), ch,
                                        self._counters, self._orph, self._queue, 16))

    def _nearest_live(self, slot: int) -> int:
        """The live slot nearest to ``slot``'s vector (ties by id); -1 if none is live."""
        g = self._g
        live = np.flatnonzero(g.flags[: self._n_slots] == LIVE)
        if live.size == 0:
            return -1
        diff = g.vecs[live].astype(np.float64) - g.vecs[slot].astype(np.float64)
        d = np.einsum("ij,ij->i", diff, diff)
        return int(live[np.lexsort((g.ext[live], d))[0]])

    # ------------------------------------------------------------------ deltas out
    def _delta_from_changes(self, op: str, new_slot: int = -1,
                            changes: Changes | None = None,
                            removed: np.ndarray | None = None) -> EdgeDelta:
        """The delta of the lists ``changes`` recorded; ``new_slot`` is the node created."""
        ch = self._changes if changes is None else changes
        g = self._g
        c = int(ch.count[0])
        slots = np.empty(c, dtype=np.int32)
        kinds = np.empty(c, dtype=np.uint8)
        counts = np.empty((c, 2), dtype=np.int32)
        values = np.empty(2 * self.R * c + 1, dtype=np.int64)
        s = self._scratch(self.L)
        n_new, nv = changed_records(ch.slots, c, ch.old.shape[0], new_slot, ch.old,
                                       ch.old_deg, g.nbrs, g.deg, g.ext, s.mark, s.mstate,
                                       slots, kinds, counts, values)
        return self._make_delta(
            op, ids=g.ext[slots], flags=g.flags[slots], kinds=kinds, counts=counts,
            values=values[:nv], vectors=g.vecs[slots[:n_new]], removed=removed,
        )

    def _delta_for(self, slots: np.ndarray, op: str) -> EdgeDelta:
        """A delta carrying the full records of ``slots``, all of them new nodes."""
        g = self._g
        slots = np.ascontiguousarray(slots, dtype=np.int32)
        n = slots.shape[0]
        kinds = np.empty(n, dtype=np.uint8)
        counts = np.empty((n, 2), dtype=np.int32)
        values = np.empty(int(g.deg[slots].sum()) + 1, dtype=np.int64)
        s = self._scratch(self.L)
        no_old = np.full(n, -1, dtype=np.int32)
        nv = make_records(slots, n, n, no_old, self._changes.old, self._changes.old_deg,
                             g.nbrs, g.deg, g.ext, s.mark, s.mstate, kinds, counts, values)
        return self._make_delta(
            op, ids=g.ext[slots], flags=g.flags[slots], kinds=kinds, counts=counts,
            values=values[:nv], vectors=g.vecs[slots], removed=None,
        )

    def _make_delta(self, op: str, *, ids, flags, kinds, counts, values, vectors,
                    removed=None) -> EdgeDelta:
        delta = EdgeDelta(
            seq=self._seq, op=op, dim=self.dim,
            entry=int(self._g.ext[self._entry]) if self._entry >= 0 else -1,
            ids=ids, flags=flags, kinds=kinds, counts=counts, values=values, vectors=vectors,
            removed=np.zeros(0, np.int64) if removed is None else removed.astype(np.int64),
        )
        self._seq += 1
        return delta

    # ------------------------------------------------------------------ deltas in
    def apply(self, delta: EdgeDelta | Sequence[EdgeDelta]) -> None:
        """Apply another index's delta (or a list of them, in order) without distance work.

        Each delta is checked completely before anything changes: a delta
        for another dimension raises :class:`DimensionMismatch`, one whose
        ``seq`` is not the next expected raises :class:`DeltaOutOfOrder`,
        one that doesn't fit this index's state raises :class:`DeltaError`
        (:class:`DuplicateId` when a new node's id is stored here already).
        Fitting means the index keeps its invariants after the delta (the
        full list is in :mod:`graphrep.ann.delta_check`): ids unique and in
        [0, 2**62), new ids not stored yet, no record for a freed id; every
        neighbour a node that exists afterwards, no self loop or repeated
        edge, degree <= R; every freed id stored, deleted, named once and
        linked to by no list afterwards, so no edge dangles; an entry point
        that exists afterwards; new vectors finite, squared norm <= 2**125.

        With a list, the deltas are checked and applied one after another,
        each against the state the ones before it left; the deltas before
        the failing one stay applied, the failing one changes nothing. A list
        is applied by one kernel call, which is how a replica should consume
        a batch of deltas.
        """
        if isinstance(delta, EdgeDelta):
            deltas = [delta]
        elif isinstance(delta, (list, tuple)):
            deltas = list(delta)
        else:
            raise DeltaError(
                f"apply takes an EdgeDelta or a list of them, not {type(delta).__name__}"
            )
        first_bad, error = len(deltas), None
        for i, d in enumerate(deltas):
            error = self._precheck(d, self._seq + i)
            if error is not None:
                first_bad = i
                break
        if first_bad:
            self._apply_run(deltas[:first_bad])
        if error is not None:
            raise error

    def apply_bytes(self, data: Sequence[bytes | bytearray | memoryview]) -> DeltaBatch:
        """Apply deltas given as their wire bytes (:meth:`EdgeDelta.to_bytes`), in order,
        without building :class:`EdgeDelta` objects: one kernel call decodes them all and
        applies them. Returns the decoded :class:`~graphrep.ann.delta.DeltaBatch` (for
        bookkeeping: which delta inserted or deleted which id).

        Every delta's bytes, dimension and ``seq`` are checked before anything changes:
        damaged bytes raise :class:`CorruptDelta`, a wrong dimension
        :class:`DimensionMismatch`, a gap or repeat in ``seq`` :class:`DeltaOutOfOrder`,
        and the index is unchanged. Then each delta is checked against the state the
        ones before it left, with the same invariants as :meth:`apply`, and applied; one
        that does not fit raises :class:`DeltaError` as in :meth:`apply`: the deltas
        before it stay applied, it changes nothing.
        """
        if not isinstance(data, (list, tuple)):
            raise DeltaError(f"apply_bytes takes a list of bytes, not {type(data).__name__}")
        buf, starts = joined(data)
        while True:
            s = self._scratch(self.L)
            state = self._state()
            (outcome, a, b, c, v, hdr, off, ids, flags, kinds, counts, values, vec,
             removed) = apply_wire(
                buf, starts, self.dim, self._seq, self._idmap.count, self._idmap.keys,
                self._idmap.vals, self._g, self.R, s.mark, s.mstate, self._free, state,
            )
            if outcome != WIRE_ROOM:
                break
            self._reserve(int(a))  # then decode and check again: nothing has changed
        if outcome == WIRE_CORRUPT:
            raise corrupt_at(int(a), int(b), int(v), starts)
        batch = DeltaBatch(hdr, off, ids, flags, kinds, counts, values, float32s(vec), removed)
        if outcome == WIRE_DIM:
            k = int(a)
            raise DimensionMismatch(
                f"delta seq {int(batch.seq[k])} is for dimension {int(batch.dim[k])} but this "
                f"index has dim={self.dim}; apply it to a replica created with the same dim"
            )
        if outcome == WIRE_SEQ:
            k = int(a)
            raise self._out_of_order(int(batch.seq[k]), self._seq + k)
        self._applied(state, off, int(a), int(b), int(c), int(v), batch.delta)
        return batch

    @staticmethod
    def _out_of_order(seq: int, expect_seq: int) -> DeltaOutOfOrder:
        return DeltaOutOfOrder(
            f"delta seq {seq} arrived but this index expects seq {expect_seq}; "
            + ("it was already applied" if seq < expect_seq else
               f"deltas {expect_seq}..{seq - 1} are missing: fetch and apply them first")
        )

    def _precheck(self, d: object, expect_seq: int) -> GraphrepError | None:
        """What is wrong with ``d`` that its type, seq and shapes show, or None.
        (Array contents are checked for the whole run at once in ``_apply_run``.)"""
        if not isinstance(d, EdgeDelta):
            return DeltaError(f"apply takes EdgeDelta objects, not {type(d).__name__}")
        if d.dim != self.dim:
            return DimensionMismatch(
                f"delta seq {d.seq} is for dimension {d.dim} but this index has dim={self.dim}; "
                "apply it to a replica created with the same dim"
            )
        if d.seq != expect_seq:
            return self._out_of_order(d.seq, expect_seq)
        problem = array_problem(d)
        if problem is not None:
            return _malformed(d, problem)
        if isinstance(d.entry, bool) or not isinstance(d.entry, (int, np.integer)) \
                or not -1 <= int(d.entry) <= MAX_ID:
            return _malformed(d, f"entry {d.entry!r} is not -1 or an id in [0, 2**62)")
        return None

    def _apply_run(self, deltas: list[EdgeDelta]) -> None:
        """Apply shape-checked deltas with one kernel call, which checks their contents;
        raise for the first that doesn't fit (the ones before it stay applied)."""
        if len(deltas) == 1:
            parts = [getattr(deltas[0], name) for name in ARRAY_DTYPES]
        else:
            parts = [np.concatenate([getattr(d, name) for d in deltas]) for name in ARRAY_DTYPES]
        ids, flags, kinds, counts, values, vectors, removed = (
            np.ascontiguousarray(a, dtype=t)
            for a, t in zip(parts, ARRAY_DTYPES.values(), strict=True))
        off = np.zeros((len(deltas) + 1, 4), dtype=np.int64)
        off[1:] = [(d.ids.shape[0], d.values.shape[0], d.vectors.shape[0], d.removed.shape[0])
                   for d in deltas]
        np.cumsum(off, axis=0, out=off)
        entries = np.array([d.entry for d in deltas], dtype=np.int64)
        self._reserve(int(off[-1, 2]))
        s = self._scratch(self.L)
        state = self._state()
        done, code, rec, val = apply_batch(
            ids, flags, kinds, counts, values, vectors, removed, entries, off,
            self._idmap.keys, self._idmap.vals, self._g, self.R, s.mark, s.mstate, self._free,
            state,
        )
        self._applied(state, off, int(done), int(code), int(rec), int(val), deltas.__getitem__)

    def _state(self) -> np.ndarray:
        """The allocator and counts as the apply kernels take them
        (:mod:`graphrep.ann.delta_apply`'s ``ST_*``)."""
        return np.array([self._n_slots, self._n_free, self._n_live, self._n_deleted,
                         self._entry], dtype=np.int64)

    def _applied(self, state: np.ndarray, off: np.ndarray, done: int, code: int, rec: int,
                 val: int, delta_at: Callable[[int], EdgeDelta]) -> None:
        """Take in what an apply kernel did: ``done`` deltas applied, then ``code`` (with
        the record and value it names) for the one after them, ``delta_at(done)``."""
        self._n_slots, self._n_free, self._n_live, self._n_deleted, self._entry = state.tolist()
        self._idmap.count += int(off[done, 2] - off[done, 3])
        self._seq += done
        self._totals["apply"]["calls"] += done
        self.last_op = {"op": "apply", "distance_computations": 0, "nodes_visited": 0,
                        "deltas": done, "records": int(off[done, 0])}
        if code != delta_check.OK:
            raise _delta_error(delta_at(done), code, rec, val)

    # ------------------------------------------------------------------ search
    def search(self, queries: Any, k: int = 10, L: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest live ids and their distances, for one query (1-d) or a batch (2-d).

        ``L`` is the beam width (default: the index's L; raised to k if smaller).
        Missing results (fewer than k live nodes found) are id -1, distance inf.
        """
        _check_int(k, "k", 1, 1 << 20)
        if L is not None:
            _check_int(L, "L", 1, 1 << 20)
        arr = _as_float_array(queries, "queries")
        single = arr.ndim == 1
        if single:
            arr = arr[None, :]
        if arr.ndim != 2:
            raise InvalidVector(f"queries must be 1-d or 2-d, got shape {arr.shape}")
        Q = self._vectors(arr, "queries", copy=self.metric == "cosine")
        if self._n_live == 0:
            raise EmptyIndex("search on an empty index: insert or build vectors first")
        beam = max(k, self.L if L is None else L)
        metric = METRIC_IP if self.metric == "ip" else METRIC_L2
        nq = Q.shape[0]
        ids = np.empty((nq, k), dtype=np.int64)
        dists = np.empty((nq, k), dtype=np.float32)
        before = self._start()
        # (asking numba for its thread count costs microseconds: only for big batches)
        threads = numba.get_num_threads() if nq >= 2 * _PARALLEL_MIN_PER_THREAD else 1
        if threads > 1 and nq >= threads * _PARALLEL_MIN_PER_THREAD:
            search_parallel(Q, self._entry, self._g, beam, k, metric, threads, self.R,
                              self._counters, ids, dists)
        else:
            search_serial(Q, self._entry, self._g, beam, k, metric, self._scratch(beam),
                            self._counters, ids, dists)
        if self.metric == "cosine":
            dists *= 0.5  # |a - b|^2 = 2 - 2 cos for unit vectors
        self._account("search", before, queries=nq)
        if single:
            return ids[0], dists[0]
        return ids, dists

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return self._n_live

    def __contains__(self, id_: object) -> bool:
        try:
            i = _as_id(id_, "id")
        except InvalidId:
            return False
        slot = self._idmap.get(i)
        return slot >= 0 and self._g.flags[slot] == LIVE

    @property
    def seq(self) -> int:
        """Number of deltas this index has emitted or applied (the next delta's seq)."""
        return self._seq

    @property
    def entry_id(self) -> int:
        return int(self._g.ext[self._entry]) if self._entry >= 0 else -1

    def ids(self, include_deleted: bool = False) -> np.ndarray:
        """Ids in the index, sorted (live only unless ``include_deleted``)."""
        f = self._g.flags[: self._n_slots]
        mask = (f != FREE) if include_deleted else (f == LIVE)
        return np.sort(self._g.ext[: self._n_slots][mask])

    def is_deleted(self, id_: Any) -> bool:
        return bool(self._g.flags[self._slot_of(id_, "is_deleted")] == DELETED)

    def vector(self, id_: Any) -> np.ndarray:
        """The stored vector (normalised for cosine)."""
        return self._g.vecs[self._slot_of(id_, "vector")].copy()

    def neighbors(self, id_: Any) -> np.ndarray:
        """The out-neighbour ids of ``id_``, sorted."""
        slot = self._slot_of(id_, "neighbors")
        return np.sort(self._g.ext[self._g.nbrs[slot, : self._g.deg[slot]]])

    def unreachable_count(self) -> int:
        """Live nodes that a search from the entry point can never reach."""
        s = self._scratch(self.L)
        return int(count_unreachable(self._entry, self._g, self._n_slots, s.mark, s.mstate,
                                       self._queue))

    def graph_problems(self) -> list[str]:
        """Violations of the graph invariants (empty when healthy): degree <= R, no edge to
        a free slot or to itself, no duplicate edge, in-degrees consistent, an entry point;
        and of the bookkeeping around them: ids unique, in range and all in the id table,
        live and deleted counts that match the flags, and a free list that names every
        free slot once."""
        g = self._g
        n = self._n_slots
        out: list[str] = []
        used = np.flatnonzero(g.flags[:n] != FREE)
        if (g.deg[:n] > self.R).any():
            out.append(f"{int((g.deg[:n] > self.R).sum())} lists longer than R={self.R}")
        if (g.deg[:n][g.flags[:n] == FREE] != 0).any():
            out.append("a free slot has edges")
        nb = g.nbrs[used]
        valid = np.arange(self.R)[None, :] < g.deg[used][:, None]
        targets = nb[valid]
        if targets.size and ((targets < 0) | (targets >= n)).any():
            out.append("an edge points outside the used slots")
        elif targets.size and (g.flags[targets] == FREE).any():
            out.append(f"{int((g.flags[targets] == FREE).sum())} edges to unknown (freed) ids")
        if (nb == used[:, None])[valid].any():
            out.append("a self loop")
        srt = np.sort(np.where(valid, nb, -1), axis=1)
        if ((srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)).any():
            out.append("a duplicate edge")
        indeg = np.bincount(targets[(targets >= 0) & (targets < n)], minlength=n) if n else []
        if n and not np.array_equal(indeg[:n], g.indeg[:n]):
            out.append("in-degree counters disagree with the lists")
        if self._used and (self._entry < 0 or g.flags[self._entry] == FREE):
            out.append("no valid entry point")
        ids = g.ext[used]
        if ids.size and (ids.min() < 0 or ids.max() > MAX_ID or np.unique(ids).size != ids.size):
            out.append("an id is out of range or stored twice")
        if self._idmap.count != used.size or not np.array_equal(self._idmap.get_many(ids), used):
            out.append("the id table disagrees with the stored ids")
        flags = g.flags[:n]
        if (self._n_live, self._n_deleted) != (int((flags == LIVE).sum()),
                                               int((flags == DELETED).sum())):
            out.append("live and deleted counts disagree with the flags")
        free = self._free[: self._n_free]
        if np.unique(free).size != free.size or free.size != n - used.size or \
                (free.size and ((free < 0) | (free >= n)).any()) or \
                (free.size and (flags[np.clip(free, 0, max(n - 1, 0))] != FREE).any()):
            out.append("the free list does not name every free slot exactly once")
        return out

    @property
    def distance_computations(self) -> int:
        """Distance computations this index object has done so far, over all operations
        (a cheap counter read; ``stats()`` has the breakdown per operation)."""
        return int(self._counters[0])

    def stats(self) -> dict[str, Any]:
        """Size, live/deleted counts, degree and in-degree histograms, unreachable live
        nodes, and the per-operation counters of distance computations and visits."""
        g = self._g
        n = self._n_slots
        used = g.flags[:n] != FREE
        live = g.flags[:n] == LIVE
        deg = g.deg[:n][used]
        indeg = g.indeg[:n][live]
        return {
            "dim": self.dim, "metric": self.metric, "R": self.R, "L": self.L,
            "alpha": self.alpha,
            "size": int(used.sum()), "live": self._n_live, "deleted": self._n_deleted,
            "capacity": self._cap, "seq": self._seq, "entry_id": self.entry_id,
            "degree_histogram": np.bincount(deg, minlength=self.R + 1).tolist() if deg.size
            else [0] * (self.R + 1),
            "mean_degree": float(deg.mean()) if deg.size else 0.0,
            "max_degree": int(deg.max()) if deg.size else 0,
            "in_degree_histogram": np.bincount(indeg).tolist() if indeg.size else [],
            "zero_in_degree_live": int(((indeg == 0) & (g.ext[:n][live] != self.entry_id)).sum()),
            "unreachable": self.unreachable_count(),
            "counters": {op: dict(v) for op, v in self._totals.items()},
            "distance_computations": int(self._counters[0]),
            "nodes_visited": int(self._counters[1]),
        }

    # ------------------------------------------------------------------ anti-entropy records
    def record_hashes(self) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, hashes)``: every stored node (live or deleted), ids ascending (int64),
        and a 64-bit hash (uint64) of each node's id, flags, vector bytes and neighbour
        id set (see :mod:`graphrep.ann.records`).

        Two replicas in the same logical state get equal arrays, in any process, whatever
        their slot layout or list order; comparing them (or a Merkle tree over them)
        names the nodes a repair must send. The entry point and the parameters (dim,
        metric, R) are not in any node's hash: compare ``entry_id`` separately.
        """
        g = self._g
        n = self._n_slots
        slots = np.flatnonzero(g.flags[:n] != FREE).astype(np.int32)
        slots = slots[np.argsort(g.ext[slots], kind="stable")]
        hashes = np.empty(slots.shape[0], dtype=np.uint64)
        node_hashes(slots, g.vecs.view(np.uint32), g.nbrs, g.deg, g.flags, g.ext, hashes)
        return g.ext[slots].copy(), hashes

    def export_records(self, ids: Any) -> RecordSet:
        """The full records (flags, stored vector, sorted neighbour ids) of ``ids``, for
        :meth:`overwrite_records` on a replica. The set holds each distinct id once,
        ascending. Deleted nodes are exported too; an id this index does not store
        raises :class:`UnknownId`."""
        want = _id_list(ids, "export_records ids")
        uniq = np.unique(want)
        slots = self._idmap.get_many(uniq)
        if (slots < 0).any():
            raise UnknownId(
                f"export_records: id {int(uniq[slots < 0][0])} is not stored in this index "
                "(never inserted, or freed by consolidate); export ids from this index's "
                "record_hashes()"
            )
        g = self._g
        deg = g.deg[slots]
        valid = np.arange(self.R)[None, :] < deg[:, None]
        big = np.iinfo(np.int64).max
        ext_nb = np.where(valid, g.ext[np.where(valid, g.nbrs[slots], 0)], big)
        ext_nb.sort(axis=1)  # each list ascending, its padding last
        return RecordSet(self.dim, uniq, g.flags[slots], g.vecs[slots], deg, ext_nb[valid])

    def overwrite_records(self, records: RecordSet, drop_ids: Any = (),
                          entry_id: int | None = None, seq: int | None = None) -> None:
        """Repair this index from a trusted copy's records (anti-entropy).

        Each record's node is created (a new slot) if its id is absent here, else its
        flags, vector and neighbour list are replaced; vectors are stored bit for bit
        as given (a cosine copy's are normalised already). The nodes ``drop_ids`` are
        removed outright and their slots freed. ``entry_id``, when given, becomes the
        entry point.

        The whole repair is checked before anything changes: after it every neighbour
        id must name a stored node, so a node that is neither overwritten nor dropped
        may not keep an edge to a dropped one. Anything that doesn't fit raises
        (:class:`DimensionMismatch`, :class:`UnknownId` for a drop id not stored here,
        :class:`DeltaError` otherwise) and leaves the index unchanged.

        A repair is not a log entry: ``seq`` stays as it is unless ``seq`` is given (a
        replica repaired to a trusted copy's state takes that copy's ``seq`` too, so that
        it can go on applying the copy's later deltas), and the counters stay.
        Cost: O((records + drops) * R), no distance computation.
        """
        if seq is not None:
            _check_int(seq, "seq", 0, _MAX_SEQ)
        rs = as_record_set(records)
        if rs.dim != self.dim:
            raise DimensionMismatch(
                f"overwrite_records: the records have dimension {rs.dim} but this index has "
                f"dim={self.dim}; repair from a replica of the same index"
            )
        plan = self._plan_overwrite(rs, _id_list(drop_ids, "overwrite_records drop_ids"),
                                    entry_id)
        self._do_overwrite(rs, *plan)
        if seq is not None:
            self._seq = int(seq)

    def _plan_overwrite(self, rs: RecordSet, drop: np.ndarray, entry_id: int | None
                        ) -> tuple[np.ndarray, np.ndarray, int]:
        """Check a repair completely; return the record slots (-1 for a new node), the
        drop slots and the entry point's id after the repair (-1: no entry point)."""

        def bad(what: str) -> DeltaError:
            return DeltaError(f"overwrite_records: {what}; the index is unchanged. Export the "
                              "records and drop ids again from the trusted replica")

        g = self._g
        ids, counts, nb = rs.ids, rs.counts, rs.neighbours
        n = ids.shape[0]
        if n and (ids.min() < 0 or ids.max() > MAX_ID):
            raise bad(f"record id {int(ids[(ids < 0) | (ids > MAX_ID)][0])} is out of range")
        uniq, reps = np.unique(ids, return_counts=True)
        if (reps > 1).any():
            raise bad(f"id {int(uniq[reps > 1][0])} has two records")
        if n and not np.isin(rs.flags, (LIVE, DELETED)).all():
            i = int(np.flatnonzero(~np.isin(rs.flags, (LIVE, DELETED)))[0])
            raise bad(f"record {i} (id {int(ids[i])}) has flags {int(rs.flags[i])}, neither "
                      "live (1) nor deleted (2)")
        if n and (counts > self.R).any():
            i = int(np.flatnonzero(counts > self.R)[0])
            raise bad(f"id {int(ids[i])}'s list has {int(counts[i])} neighbours, more than "
                      f"R={self.R}")
        if not np.isfinite(rs.vectors).all():
            raise bad(f"id {int(ids[np.argwhere(~np.isfinite(rs.vectors))[0][0]])}'s vector "
                      "holds NaN or inf")
        big = int(first_too_large(np.ascontiguousarray(rs.vectors, dtype=np.float32)))
        if big >= 0:
            raise bad(f"id {int(ids[big])}'s vector has a squared norm above 2**125, beyond "
                      "which float32 distances overflow")
        owner = np.repeat(np.arange(n), counts)
        if (nb == ids[owner]).any():
            raise bad(f"id {int(nb[nb == ids[owner]][0])} lists itself as a neighbour")
        # a repeat in a list: lists come ascending from export_records, so check that
        # first and sort (millions of values take seconds) only when they are not
        o_s, nb_s = owner, nb
        if not ((nb[1:] > nb[:-1]) | (owner[1:] != owner[:-1])).all():
            order = np.lexsort((nb, owner))
            o_s, nb_s = owner[order], nb[order]
        rep = (o_s[1:] == o_s[:-1]) & (nb_s[1:] == nb_s[:-1])
        if rep.any():
            j = int(np.flatnonzero(rep)[0])
            raise bad(f"id {int(ids[o_s[j]])} lists neighbour {int(nb_s[j])} twice")
        # drops: stored here, listed once, not also overwritten
        d_uniq, d_reps = np.unique(drop, return_counts=True)
        if (d_reps > 1).any():
            raise bad(f"drop id {int(d_uniq[d_reps > 1][0])} is listed twice")
        drop_slots = self._idmap.get_many(drop)
        if (drop_slots < 0).any():
            raise UnknownId(
                f"overwrite_records: drop id {int(drop[drop_slots < 0][0])} is not stored in "
                "this index; the index is unchanged. Compare record_hashes() again and "
                "drop only ids this index holds"
            )
        both = np.intersect1d(uniq, d_uniq)
        if both.size:
            raise bad(f"id {int(both[0])} is both overwritten and dropped")
        rec_slots = self._idmap.get_many(ids)
        # every neighbour must exist afterwards: a record here, or a stored node not dropped
        exists = np.isin(nb, uniq) | ((self._idmap.get_many(nb) >= 0) & ~np.isin(nb, d_uniq))
        if not exists.all():
            j = int(np.flatnonzero(~exists)[0])
            raise bad(f"id {int(ids[owner[j]])} names neighbour {int(nb[j])}, which would not "
                      "be stored after the repair (send its record too, or don't drop it)")
        # no edge may dangle: the in-edges of each dropped node must all come from
        # overwritten or dropped nodes, whose current lists go away
        if drop_slots.size:
            ds = np.sort(drop_slots)
            src = np.concatenate((rec_slots[rec_slots >= 0], drop_slots))
            valid = np.arange(self.R)[None, :] < g.deg[src][:, None]
            cur = g.nbrs[src][valid]
            cur = cur[np.isin(cur, ds)]
            gone = np.bincount(np.searchsorted(ds, cur), minlength=ds.size)
            left = g.indeg[ds] - gone
            if (left > 0).any():
                t = int(ds[np.flatnonzero(left > 0)[0]])
                raise bad(f"dropping id {int(g.ext[t])} would leave dangling the edge to it "
                          f"from id {self._an_unlisted_source(t, src)}, which is neither "
                          "overwritten nor dropped (send that node's record too)")
        n_after = self._used - drop.size + int((rec_slots < 0).sum())
        if entry_id is not None:
            e = _as_id(entry_id, "overwrite_records entry_id")
            if not (e in uniq or (self._idmap.get(e) >= 0 and e not in d_uniq)):
                raise bad(f"entry_id {e} would not be stored after the repair")
            entry = e
        elif n_after == 0:
            entry = -1
        elif self._entry < 0 or self._entry in set(drop_slots.tolist()):
            raise bad("the repair leaves no entry point (the index has none, or it is "
                      "dropped); pass entry_id, the trusted replica's entry_id")
        else:
            entry = self.entry_id
        return rec_slots, drop_slots, entry

    def _an_unlisted_source(self, target: int, listed: np.ndarray) -> int:
        """The id of some node, not in the slots ``listed``, with an edge to slot ``target``
        (for an error message: a scan of the whole graph)."""
        g = self._g
        n = self._n_slots
        has = (g.nbrs[:n] == target) & (np.arange(self.R)[None, :] < g.deg[:n][:, None])
        src = np.setdiff1d(np.flatnonzero(has.any(axis=1)), listed)
        return int(g.ext[src[0]]) if src.size else -1

    def _do_overwrite(self, rs: RecordSet, rec_slots: np.ndarray, drop_slots: np.ndarray,
                      entry_id: int) -> None:
        """Apply a repair that :meth:`_plan_overwrite` accepted."""
        new = rec_slots < 0
        self._reserve(int(new.sum()))  # may reallocate the arrays: read self._g after it
        g = self._g
        R = self.R
        # the current lists of dropped and overwritten nodes go, and their in-degrees
        old = np.concatenate((drop_slots, rec_slots[~new]))
        valid = np.arange(R)[None, :] < g.deg[old][:, None]
        np.subtract.at(g.indeg, g.nbrs[old][valid], 1)
        g.nbrs[old] = -1
        g.deg[old] = 0
        self._n_live -= int((g.flags[old] == LIVE).sum())
        self._n_deleted -= int((g.flags[old] == DELETED).sum())
        for i in g.ext[drop_slots].tolist():
            self._idmap.discard(int(i))
        g.flags[drop_slots] = FREE
        g.ext[drop_slots] = -1
        g.vecs[drop_slots] = 0
        self._push_free(drop_slots)
        # new nodes take slots (freed ones first)
        slots = rec_slots.copy()
        slots[new] = self._take_slots(int(new.sum()))
        g.ext[slots[new]] = rs.ids[new]
        g.indeg[slots[new]] = 0
        self._idmap.put_many(rs.ids[new], slots[new])
        # every record's flags, vector and list
        g.flags[slots] = rs.flags
        g.vecs[slots] = rs.vectors
        self._n_live += int((rs.flags == LIVE).sum())
        self._n_deleted += int((rs.flags == DELETED).sum())
        owner = np.repeat(np.arange(len(rs)), rs.counts)
        pos = np.arange(owner.size) - rs.offsets[owner]
        targets = self._idmap.get_many(rs.neighbours)
        g.nbrs[slots[owner], pos] = targets
        g.deg[slots] = rs.counts
        np.add.at(g.indeg, targets, 1)
        self._entry = self._idmap.get(entry_id) if entry_id >= 0 else -1
        self.last_op = {"op": "overwrite_records", "distance_computations": 0,
                        "nodes_visited": 0, "records": len(rs),
                        "created": int(new.sum()), "dropped": int(drop_slots.size)}

    # ------------------------------------------------------------------ digest, save, load
    def digest(self) -> bytes:
        """BLAKE2b-256 of the logical state: dim, metric, R, entry id and every node
        (id, flags, vector bytes, sorted neighbour ids) in id order. Independent of slot
        layout, capacity, growth history and the in-memory order of lists."""
        g = self._g
        n = self._n_slots
        slots = np.flatnonzero(g.flags[:n] != FREE)
        slots = slots[np.argsort(g.ext[slots], kind="stable")]
        h = hashlib.blake2b(digest_size=32)
        h.update(json.dumps({"format": "graphrep.vamana/1", "dim": self.dim,
                             "metric": self.metric, "R": self.R,
                             "entry": self.entry_id, "size": int(slots.size)},
                            sort_keys=True).encode())
        if slots.size:
            h.update(g.ext[slots].astype("<i8").tobytes())
            h.update(g.flags[slots].tobytes())
            h.update(np.ascontiguousarray(g.vecs[slots]).astype("<f4").tobytes())
            nb = g.nbrs[slots]
            valid = np.arange(self.R)[None, :] < g.deg[slots][:, None]
            ext_nb = np.where(valid, g.ext[np.where(valid, nb, 0)], np.iinfo(np.int64).max)
            ext_nb.sort(axis=1)
            ext_nb[ext_nb == np.iinfo(np.int64).max] = -1
            h.update(ext_nb.astype("<i8").tobytes())
        return h.digest()

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to ``path`` (a NumPy .npz archive; the name is used as given)."""
        with open(path, "wb") as f:
            self._write_snapshot(f)

    def to_bytes(self) -> bytes:
        """The index as bytes: exactly what :meth:`save` writes to a file.

        A replica that is too far behind to catch up by deltas is sent this.
        Everything the index holds travels (its slot layout, free list and seq
        included), so the copy digests the same, searches the same and goes on
        applying the origin's deltas from ``seq``. The archive's members carry
        CRC-32s, so damage to the content is found by :meth:`from_bytes`; the
        bytes also carry zip timestamps, so compare :meth:`digest`, not bytes.
        """
        buf = io.BytesIO()
        self._write_snapshot(buf)
        return buf.getvalue()

    def _write_snapshot(self, f: BinaryIO) -> None:
        n = self._n_slots
        g = self._g
        meta = {
            "format": SAVE_FORMAT, "dim": self.dim, "metric": self.metric, "R": self.R,
            "L": self.L, "alpha": self.alpha, "build_slack": self.build_slack, "seed": self.seed,
            "n_slots": n, "entry": self._entry, "seq": self._seq,
            "free": self._free[: self._n_free].tolist(),
            "totals": self._totals, "counters": self._counters.tolist(),
        }
        np.savez(f, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                 vecs=g.vecs[:n], nbrs=g.nbrs[:n], deg=g.deg[:n], flags=g.flags[:n],
                 ext=g.ext[:n])

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> VamanaIndex:
        """Read an index written by :meth:`save`; raises :class:`CorruptIndexFile` if the
        file is missing, damaged or of another format version."""
        p = Path(path)
        if not p.is_file():
            raise CorruptIndexFile(f"no index file at {p}")
        return cls._read_snapshot(p, f"{p}", "graphrep index file")

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> VamanaIndex:
        """Read bytes made by :meth:`to_bytes` (or the content of a :meth:`save` file),
        with the checks of :meth:`load`: damaged, truncated or foreign bytes raise
        :class:`CorruptIndexFile`."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidArgument(f"from_bytes takes bytes, not {type(data).__name__}")
        return cls._read_snapshot(io.BytesIO(bytes(data)), "the snapshot bytes",
                                  "graphrep index snapshot")

    @classmethod
    def _read_snapshot(cls, source: Path | BinaryIO, name: str, kind: str) -> VamanaIndex:
        """The index in ``source``; ``name`` and ``kind`` say in error messages what it was.

        Everything is checked before the index is allocated, and no array is read
        before its size is known to be what the archive holds: the archive's array
        members must be stored uncompressed (as :meth:`save` writes them) with sound
        CRC-32s; each ``.npy`` header's dtype and shape must be what the metadata
        announces and account for its member's size exactly; the metadata's fields
        must all be there, of their types and in range (:func:`_check_snapshot_meta`);
        the arrays must hold an index that keeps every invariant a delta keeps
        (:func:`_check_snapshot_graph`). Anything else raises :class:`CorruptIndexFile`.
        """
        try:
            with zipfile.ZipFile(source) as zf:
                members = _snapshot_members(zf)
                try:
                    meta = json.loads(bytes(_read_npy(zf, members["meta"], "meta")).decode())
                except RecursionError:
                    raise ValueError("its metadata is nested too deeply to be an index's "
                                     "metadata") from None
                if not isinstance(meta, dict) or meta.get("format") != SAVE_FORMAT:
                    raise _ForeignFormat(meta.get("format") if isinstance(meta, dict) else "?")
                try:
                    shapes = _check_snapshot_meta(meta)
                except (InvalidArgument, KeyError, TypeError, ValueError, OverflowError) as e:
                    raise _Inconsistent(f"its metadata is invalid: {e}") from e
                arrays = {k: _read_npy(zf, members[k], k, shp) for k, shp in shapes.items()}
        except _ForeignFormat as e:
            raise CorruptIndexFile(
                f"{name} has format {e.args[0]}; this graphrep reads format {SAVE_FORMAT}"
            ) from None
        except _Inconsistent as e:
            raise CorruptIndexFile(f"{name} holds an inconsistent index: {e}") from e
        except (OSError, ValueError, KeyError, TypeError, SyntaxError, RecursionError,
                tokenize.TokenError, zipfile.BadZipFile, UnicodeDecodeError, EOFError,
                NotImplementedError, RuntimeError, OverflowError, zlib.error) as e:
            raise CorruptIndexFile(
                f"{name} is not a readable {kind}: {e}; it was damaged or not written by "
                "VamanaIndex.save/to_bytes"
            ) from e
        try:
            _check_snapshot_graph(meta, arrays)
            idx = cls(meta["dim"], meta["metric"], meta["R"], meta["L"], meta["alpha"],
                      build_slack=meta["build_slack"], seed=meta["seed"],
                      capacity=max(1, meta["n_slots"]))
        except (ValueError, InvalidArgument) as e:
            raise CorruptIndexFile(f"{name} holds an inconsistent index: {e}") from e
        idx._restore(meta, arrays)
        return idx

    def _restore(self, meta: dict, a: dict[str, np.ndarray]) -> None:
        """Take in a snapshot's metadata and arrays, which :meth:`_read_snapshot` checked."""
        n = meta["n_slots"]
        g = self._g
        g.vecs[:n] = a["vecs"]
        g.deg[:n] = a["deg"]
        valid = np.arange(self.R)[None, :] < g.deg[:n][:, None]
        g.nbrs[:n] = np.where(valid, a["nbrs"], -1)  # past a list's end: -1, as kept in memory
        g.flags[:n] = a["flags"]
        g.ext[:n] = a["ext"]
        used = g.flags[:n] != FREE
        g.indeg[:n] = np.bincount(g.nbrs[:n][valid], minlength=n)[:n] if n else 0
        self._n_slots = n
        free = np.asarray(meta["free"], dtype=np.int64)
        self._free[: free.size] = free
        self._n_free = int(free.size)
        self._n_live = int((g.flags[:n] == LIVE).sum())
        self._n_deleted = int((g.flags[:n] == DELETED).sum())
        self._entry = meta["entry"]
        self._seq = meta["seq"]
        self._idmap.put_many(g.ext[:n][used], np.flatnonzero(used).astype(np.int32))
        for op, v in meta["totals"].items():
            self._totals[op].update(v)
        self._counters[:] = np.asarray(meta["counters"], dtype=np.int64)


# --------------------------------------------------------------------------- helpers


def _is_real(v: Any) -> bool:
    """``v`` is a finite Python or NumPy number, not a bool (and not an int beyond float)."""
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        return False
    try:
        return bool(np.isfinite(float(v)))
    except OverflowError:
        return False


def _check_int(v: Any, name: str, lo: int, hi: int) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise InvalidArgument(f"{name} must be an integer, got {type(v).__name__} {v!r}")
    if not lo <= int(v) <= hi:
        raise InvalidArgument(f"{name} must be in [{lo}, {hi}], got {int(v)}")


class _ForeignFormat(Exception):
    """A snapshot's metadata names another format version (``args[0]``)."""


class _Inconsistent(Exception):
    """A snapshot is readable but does not hold a valid index (the message says why)."""


# the members of a snapshot and the dtype of each (the metadata is JSON as uint8)
_SNAPSHOT_DTYPES = {"meta": np.uint8, "vecs": np.float32, "nbrs": np.int32, "deg": np.int32,
                    "flags": np.uint8, "ext": np.int64}
_SNAPSHOT_META = ("format", "dim", "metric", "R", "L", "alpha", "build_slack", "seed",
                  "n_slots", "entry", "seq", "free", "totals", "counters")
_TOTAL_KEYS = ("calls", "distance_computations", "nodes_visited")
# the largest seq an index takes from a snapshot or a repair
_MAX_SEQ = 2**62
_MAX_COUNT = 2**63 - 1


def _snapshot_members(zf: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """The archive members of a snapshot's arrays, each checked to be stored uncompressed
    (as ``np.savez`` writes them: the data is then as large as the member's bytes in the
    archive) and to pass its CRC-32 (before numpy parses a header that may be damaged)."""
    members: dict[str, zipfile.ZipInfo] = {}
    for info in zf.infolist():
        key = info.filename.removesuffix(".npy")
        if info.filename.endswith(".npy") and key in _SNAPSHOT_DTYPES:
            members[key] = info
    for key in _SNAPSHOT_DTYPES:
        info = members.get(key)
        if info is None:
            raise ValueError(f"it has no member {key}.npy")
        if info.flag_bits & 0x1:
            raise ValueError(f"member {key}.npy is encrypted")
        if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size:
            raise ValueError(f"member {key}.npy is compressed; VamanaIndex.save stores its "
                             "arrays uncompressed")
        with zf.open(info) as f:  # zipfile checks the CRC-32 at the end of the data
            while f.read(1 << 20):
                pass
    return members


def _read_npy(zf: zipfile.ZipFile, info: zipfile.ZipInfo, key: str,
              shape: tuple[int, ...] | None = None) -> np.ndarray:
    """The array ``key`` in the ``.npy`` member ``info``: its header is checked (dtype
    ``_SNAPSHOT_DTYPES[key]`` in either byte order, C order, ``shape`` or any 1-d shape
    when None, data exactly the rest of the member) before its data is read."""
    want = np.dtype(_SNAPSHOT_DTYPES[key])
    with zf.open(info) as f:
        version = npformat.read_magic(f)
        if version == (1, 0):
            got, fortran, dtype = npformat.read_array_header_1_0(f)
        elif version == (2, 0):
            got, fortran, dtype = npformat.read_array_header_2_0(f)
        else:
            raise ValueError(f"array {key} has .npy format version {version}")
        if dtype.newbyteorder("=") != want or dtype.hasobject:
            raise ValueError(f"array {key} has dtype {dtype}, not {want}")
        if fortran:
            raise ValueError(f"array {key} is stored in Fortran order")
        if (shape is None and len(got) != 1) or (shape is not None and got != shape):
            raise ValueError(f"array {key} has shape {got}, expected "
                             f"{shape if shape is not None else 'a 1-d shape'}")
        nbytes = want.itemsize
        for m in got:
            nbytes *= m
        if info.file_size - f.tell() != nbytes:
            raise ValueError(f"array {key}'s header announces {nbytes} bytes of data, its "
                             f"member holds {info.file_size - f.tell()}")
        data = f.read(nbytes)
    if len(data) != nbytes:
        raise ValueError(f"array {key} is truncated")
    arr = np.frombuffer(data, dtype=dtype).reshape(got)
    return arr if dtype == want else arr.astype(want)


def _check_snapshot_meta(meta: dict) -> dict[str, tuple[int, ...]]:
    """Check every field of a snapshot's metadata (its type and range, as the index's
    constructor and state take them); return the shape each array must have."""
    missing = [k for k in _SNAPSHOT_META if k not in meta]
    if missing:
        raise ValueError(f"it lacks {', '.join(missing)}")
    _check_int(meta["dim"], "dim", 1, 1 << 16)
    _check_int(meta["R"], "R", 2, 4096)
    _check_int(meta["L"], "L", 1, 1 << 20)
    _check_int(meta["seed"], "seed", 0, 2**63 - 1)
    _check_int(meta["n_slots"], "n_slots", 0, 1 << 31)
    n, dim, R = meta["n_slots"], meta["dim"], meta["R"]
    _check_int(meta["entry"], "entry", -1, n - 1)
    _check_int(meta["seq"], "seq", 0, _MAX_SEQ)
    if not isinstance(meta["metric"], str) or meta["metric"] not in METRICS:
        raise ValueError(f"metric {meta['metric']!r} is not one of {METRICS}")
    for key, lo, hi in (("alpha", 1.0, float("inf")), ("build_slack", 1.0, 4.0)):
        v = meta[key]
        if not (_is_real(v) and lo <= v <= hi):
            raise ValueError(f"{key} {v!r} is not a finite number in [{lo}, {hi}]")
    free = meta["free"]
    if not isinstance(free, list) or len(free) > n or not all(type(s) is int for s in free):
        raise ValueError("free is not a list of at most n_slots slot numbers")
    if free and not (min(free) >= 0 and max(free) < n):
        raise ValueError(f"the free list names a slot outside [0, {n})")
    totals = meta["totals"]
    if not isinstance(totals, dict):
        raise ValueError("totals is not an object")
    for op, t in totals.items():
        if op not in _OPS or not isinstance(t, dict) or not set(t) <= set(_TOTAL_KEYS):
            raise ValueError(f"totals holds {op!r}: {t!r}, not an operation's counters")
        for k, v in t.items():
            _check_int(v, f"totals {op} {k}", 0, _MAX_COUNT)
    counters = meta["counters"]
    if not isinstance(counters, list) or len(counters) != N_COUNTERS:
        raise ValueError(f"counters is not a list of {N_COUNTERS} counts")
    for v in counters:
        _check_int(v, "a counter", 0, _MAX_COUNT)
    return {"vecs": (n, dim), "nbrs": (n, R), "deg": (n,), "flags": (n,), "ext": (n,)}


def _check_snapshot_graph(meta: dict, a: dict[str, np.ndarray]) -> None:
    """The arrays of a snapshot (shapes checked) hold an index that keeps every invariant
    a delta keeps (:mod:`graphrep.ann.delta_check`): flags free, live or deleted; degrees in
    [0, R], none for a free slot; every edge to a stored node, none to itself, none
    twice; ids unique and in [0, 2**62); vectors of stored nodes finite with squared
    norm <= 2**125; the free list each free slot exactly once; an entry point that is
    a stored node (-1 when there is none)."""
    n, R = meta["n_slots"], meta["R"]
    flags, deg, nbrs, ext = a["flags"], a["deg"], a["nbrs"], a["ext"]

    def first(mask: np.ndarray) -> int:
        return int(np.flatnonzero(mask)[0])

    if (flags > DELETED).any():
        i = first(flags > DELETED)
        raise ValueError(f"slot {i} has flags {int(flags[i])}, not 0 (free), 1 (live) or "
                         "2 (deleted)")
    used = flags != FREE
    if ((deg < 0) | (deg > R)).any():
        i = first((deg < 0) | (deg > R))
        raise ValueError(f"slot {i} has degree {int(deg[i])}, outside [0, R={R}]")
    if (deg[~used] != 0).any():
        raise ValueError(f"free slot {first(~used & (deg != 0))} has edges")
    valid = np.arange(R)[None, :] < deg[:, None]
    targets = nbrs[valid]
    owner = np.repeat(np.arange(n), deg)
    out = (targets < 0) | (targets >= n)
    if out.any():
        j = first(out)
        raise ValueError(f"slot {int(owner[j])} has an edge to slot {int(targets[j])}, "
                         "outside the stored slots")
    to_free = ~used[targets]
    if to_free.any():
        j = first(to_free)
        raise ValueError(f"slot {int(owner[j])} has an edge to free slot {int(targets[j])}")
    if (targets == owner).any():
        raise ValueError(f"slot {int(owner[first(targets == owner)])} has an edge to itself")
    srt = np.sort(np.where(valid, nbrs, -1), axis=1)
    rep = (srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)
    if rep.any():
        raise ValueError(f"slot {first(rep.any(axis=1))} has the same edge twice")
    ids = ext[used]
    if ids.size and (ids.min() < 0 or ids.max() > MAX_ID):
        raise ValueError(f"id {int(ids[(ids < 0) | (ids > MAX_ID)][0])} is outside [0, 2**62)")
    if np.unique(ids).size != ids.size:
        raise ValueError("an id is stored in two slots")
    vecs = np.ascontiguousarray(a["vecs"][used])
    if not np.isfinite(vecs).all():
        raise ValueError(f"the vector of id {int(ids[first(~np.isfinite(vecs).all(axis=1))])} "
                         "holds NaN or inf")
    big = int(first_too_large(vecs))
    if big >= 0:
        raise ValueError(f"the vector of id {int(ids[big])} has a squared norm above 2**125")
    free = np.asarray(meta["free"], dtype=np.int64)
    if used[free].any():
        raise ValueError(f"the free list names slot {int(free[used[free]][0])}, which is in "
                         "use")
    if np.unique(free).size != free.size:
        raise ValueError("the free list names a slot twice")
    if free.size != n - int(used.sum()):
        raise ValueError("the free list does not name every free slot")
    entry = meta["entry"]
    if ids.size and not (entry >= 0 and used[entry]):
        raise ValueError(f"entry point {entry} is not a stored node")
    if not ids.size and entry != -1:
        raise ValueError(f"entry point {entry} in an index that stores no node")


def _as_float_array(x: Any, what: str) -> np.ndarray:
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


def _check_finite(arr: np.ndarray, what: str) -> None:
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


def _normalise_rows(arr: np.ndarray, what: str) -> None:
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


def _as_id(x: Any, what: str) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise InvalidId(f"{what} must be an integer id, got {type(x).__name__} {x!r}")
    i = int(x)
    if i < 0 or i > MAX_ID:
        raise InvalidId(f"{what}: id {i} is out of range; ids must be integers in [0, 2**62)")
    return i


def _as_id_array(x: Any, what: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise InvalidId(f"{what} must be a 1-d array of integers, got dtype {arr.dtype} "
                        f"shape {arr.shape}")
    if arr.dtype.kind == "u" and arr.size and arr.max() > MAX_ID:
        raise InvalidId(f"{what}: id {int(arr.max())} is out of range [0, 2**62)")
    return arr.astype(np.int64)


def _id_list(ids: Any, what: str) -> np.ndarray:
    """A 1-d int64 array of ids in range (an empty sequence is fine)."""
    arr = np.asarray(ids)
    if arr.size == 0 and arr.ndim == 1:
        return np.zeros(0, dtype=np.int64)
    arr = _as_id_array(arr, what)
    if arr.size and (arr.min() < 0 or arr.max() > MAX_ID):
        bad = arr[(arr < 0) | (arr > MAX_ID)][0]
        raise InvalidId(f"{what}: id {int(bad)} is out of range; ids are in [0, 2**62)")
    return arr


def _medoid(X: np.ndarray, ids: np.ndarray) -> int:
    """Row nearest to the centroid (ties by id): DiskANN's entry point."""
    c = X.astype(np.float64).mean(axis=0)
    diff = X.astype(np.float64) - c
    d = np.einsum("ij,ij->i", diff, diff)
    return int(np.lexsort((ids, d))[0])


_DELTA_MESSAGES = {
    delta_check.NEW_ID_EXISTS: "new node id {v} already exists here",
    delta_check.RECORD_ID_REPEATED: "id {v} has two records",
    delta_check.RECORD_ID_UNKNOWN: "record for id {v}, which this index doesn't hold",
    delta_check.BAD_FLAGS: "record {i} has invalid flags {v}",
    delta_check.LIST_TOO_LONG: "record {i}'s list would have {v} neighbours, more than R",
    delta_check.NEIGHBOUR_UNKNOWN: "record {i} names neighbour {v}, which this index doesn't hold",
    delta_check.SELF_LOOP: "record {i} links id {v} to itself",
    delta_check.NEIGHBOUR_REPEATED: "record {i} names neighbour {v} twice",
    delta_check.DIFF_REMOVES_ABSENT: "record {i}'s diff removes {v}, which is not in its list here",
    delta_check.DIFF_ADDS_PRESENT: "record {i}'s diff adds {v}, which is already in its list here",
    delta_check.REMOVED_UNKNOWN: "it frees id {v}, which this index doesn't hold",
    delta_check.REMOVED_NOT_DELETED: "it frees id {v}, which is not deleted here",
    delta_check.ENTRY_UNKNOWN: "its entry point {v} is not a node here",
    delta_check.BAD_KIND: "record {i} has unknown list kind {v}",
    delta_check.NEW_WITHOUT_LIST: "new node {v} comes without its full list",
    delta_check.BAD_ID: "record {i} has id {v}, outside [0, 2**62)",
    delta_check.BAD_COUNTS: "its list lengths don't add up to its values ({v})",
    delta_check.NONFINITE_VECTOR: "new node {i}'s vector is not finite",
    delta_check.REMOVED_REPEATED: "it frees id {v} twice",
    delta_check.REMOVED_HAS_RECORD: "record {i} rewrites id {v}, which the same delta frees",
    delta_check.REMOVED_STILL_LINKED: "it frees id {v}, but a list still links to it after "
                                      "the delta (the edge would dangle; every list that "
                                      "links to it must be rewritten without it)",
    delta_check.NEIGHBOUR_REMOVED: "record {i} links to id {v}, which the same delta frees",
    delta_check.KIND_COUNTS: "record {i}'s list lengths do not fit its kind {v} (none: no values, "
                    "full: no added part)",
    delta_check.VECTOR_TOO_LARGE: "new node {v}'s vector has a squared norm above 2**125, beyond "
                         "which float32 distances overflow",
}


def _malformed(d: EdgeDelta, what: str) -> DeltaError:
    return DeltaError(f"delta seq {d.seq} ({d.op}) is malformed: {what}; the index is "
                      "unchanged by it. Fetch the delta again from its origin")


def _delta_error(d: EdgeDelta, code: int, rec: int, val: int) -> DeltaError:
    what = _DELTA_MESSAGES.get(code, "unknown validation failure {v}").format(i=rec, v=val)
    cls = DuplicateId if code == delta_check.NEW_ID_EXISTS else DeltaError
    msg = (f"delta seq {d.seq} ({d.op}) does not fit this index: {what}; the index is "
           "unchanged. A replica that diverged needs a snapshot or anti-entropy repair")
    return cls(msg)


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

The class holds the state, the mutations and search; the rest lives in
modules of functions that take the index, which the methods here call:
:mod:`~graphrep.ann.validation` (input checks), :mod:`~graphrep.ann.delta_emit`
(deltas out), :mod:`~graphrep.ann.delta_intake` (deltas in),
:mod:`~graphrep.ann.snapshot`, :mod:`~graphrep.ann.repair` and
:mod:`~graphrep.ann.analysis` (invariants, statistics, a networkx view).
This module stays at about 700 lines, 200 of them the docstrings that state
the public API's contracts; the methods that delegate are a line each.

Any error raised by a method is a :class:`graphrep.errors.GraphrepError`
subclass, and the index is unchanged when it is raised.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numba
import numpy as np

from graphrep.ann import analysis, delta_intake, repair, snapshot
from graphrep.ann.codes import CodeBook, encode_rows
from graphrep.ann.delta import KIND_NONE, DeltaBatch, EdgeDelta
from graphrep.ann.delta_emit import delta_for, delta_from_changes, make_delta
from graphrep.ann.idmap import IdMap
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
    SearchScratch,
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
    search_scratch,
    search_serial,
)
from graphrep.ann.records import RecordSet
from graphrep.ann.validation import (
    COUNTED_OPS,
    as_float_array,
    as_id,
    as_id_array,
    as_one_vector,
    as_vectors,
    check_int,
    check_new_ids,
    check_settings,
)
from graphrep.errors import (
    DimensionMismatch,
    DuplicateId,
    EmptyIndex,
    IndexNotEmpty,
    InvalidArgument,
    InvalidId,
    InvalidVector,
    UnknownId,
)

if TYPE_CHECKING:
    import networkx

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
    build_slack: during ``build`` lists may grow to ``build_slack * R`` (DiskANN's
        GRAPH_SLACK_FACTOR) before a re-prune to ``R / build_slack``, and every
        list still at R or more at the end is re-pruned to ``R / build_slack``
        too, so that no list ends full. After the build R is a hard cap, and an
        insert that would overflow a list re-prunes it to ``R / build_slack``.
    seed: seeds the order in which ``build`` inserts points.
    new_degree: the most out-edges a new node's own RobustPrune keeps (default R,
        Vamana's); its neighbours' back-edges still fill lists up to R. A smaller
        value is hnswlib's M against its layer-0 cap of 2M: cheaper builds and
        inserts (the prune is quadratic in what it keeps) for some recall at a
        given beam. On gmm 100k x 128 with R 64, 32 built in about 20% less time
        and searched 1-8% slower at recall 0.95-0.99 (docs/benchmarks.md).
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
        new_degree: int | None = None,
    ) -> None:
        check_settings(dim, metric, R, L, alpha, build_slack, seed, capacity)
        if new_degree is not None:
            check_int(new_degree, "new_degree", 1, int(R))
        self.dim = int(dim)
        self.metric = metric
        self.R = int(R)
        self.new_degree = int(R) if new_degree is None else int(new_degree)
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
                        for op in COUNTED_OPS}
        self.last_op: dict[str, Any] = {}
        self._scratch_by_L: dict[int, Scratch] = {}
        self._search_by_L: dict[int, SearchScratch] = {}
        self._orph = np.empty(max(64, 8 * self.R), dtype=np.int32)
        # search codes (graphrep.ann.codes): off until use_codes; a (0, dim) array then
        self._codebook: CodeBook | None = None
        self._codes = np.zeros((0, self.dim), dtype=np.uint8)
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
        if self._codebook is not None:
            codes = np.zeros((cap, self.dim), dtype=np.uint8)
            codes[:old] = self._codes[:old]
            self._codes = codes
        free = np.empty(cap, dtype=np.int32)
        free[: self._n_free] = self._free[: self._n_free]
        self._free = free
        self._cap = cap
        self._scratch_by_L = {}
        self._search_by_L = {}
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

    def _search_scratch(self, L: int) -> SearchScratch:
        """The part of ``_scratch(L)`` a search uses (a smaller argument to unbox)."""
        s = self._search_by_L.get(L)
        if s is None:
            s = self._search_by_L[L] = search_scratch(self._scratch(L))
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
    def _slot_of(self, id_: Any, what: str) -> int:
        i = as_id(id_, what)
        slot = self._idmap.get(i)
        if slot < 0:
            raise UnknownId(f"{what}: id {i} is not in the index")
        return slot


    def _place(self, slots: Any, vectors: np.ndarray, ids: Any) -> None:
        """Store new live nodes, without edges yet, at ``slots`` (an array or one slot)."""
        g = self._g
        g.vecs[slots] = vectors
        g.flags[slots] = LIVE
        g.ext[slots] = ids
        g.deg[slots] = 0
        g.indeg[slots] = 0
        self._encode_slots(slots)

    # ------------------------------------------------------------------ search codes
    def use_codes(self, codebook: CodeBook | None) -> None:
        """Search on one-byte codes of the vectors (see :mod:`graphrep.ann.codes`), or on
        the vectors again with ``None``.

        With a code book, every stored vector gets its code now (O(n * dim)), and each
        insert, applied delta and repair codes its new vectors as it stores them. The
        beam search then walks on the codes and its beam is re-ranked on the float32
        vectors: returned distances are exact, and the results can differ from a search
        on the vectors only where the walk does (recall at a given ``L`` moves a little;
        measure it). Not for ``metric="ip"``: codes give squared L2 distances. The graph,
        deltas, the digest and snapshots do not change; a loaded index has no code book."""
        if codebook is None:
            self._codebook = None
            self._codes = np.zeros((0, self.dim), dtype=np.uint8)
            return
        if not isinstance(codebook, CodeBook):
            raise InvalidArgument(f"use_codes takes a CodeBook or None, not "
                                  f"{type(codebook).__name__}")
        if codebook.dim != self.dim:
            raise DimensionMismatch(f"code book of dimension {codebook.dim} for an index of "
                                    f"dim={self.dim}")
        if self.metric == "ip":
            raise InvalidArgument("search codes give L2 distances: not for metric='ip' "
                                  "(use 'l2', or 'cosine' with a code book over [-1, 1])")
        codes = np.zeros((self._cap, self.dim), dtype=np.uint8)
        codes[: self._n_slots] = codebook.encode(self._g.vecs[: self._n_slots])
        self._codebook, self._codes = codebook, codes

    @property
    def codebook(self) -> CodeBook | None:
        """The code book searches walk on, or None (see :meth:`use_codes`)."""
        return self._codebook

    def _encode_slots(self, slots: Any) -> None:
        """Code the vectors just stored at ``slots`` (nothing without a code book)."""
        if self._codebook is not None:
            self._codes[slots] = self._codebook.encode(self._g.vecs[slots])

    def _encode_ids(self, ids: np.ndarray) -> None:
        """Code the stored vectors of ``ids`` (ids not stored are skipped)."""
        if self._codebook is not None and ids.shape[0]:
            slots = self._idmap.get_many(ids)
            self._encode_slots(slots[slots >= 0])

    # ------------------------------------------------------------------ mutations
    def build(self, vectors: Any, ids: Any = None) -> list[EdgeDelta]:
        """Batch-build the graph over ``vectors`` (ids default to 0..n-1).

        One pass of FreshVamana inserts in a seeded random order, with
        DiskANN's in-prune alpha schedule and build slack, then every full list
        re-pruned to ``R / build_slack`` and every unreachable node re-linked. The
        index must be empty. Returns one delta holding every node.
        """
        if self._used:
            raise IndexNotEmpty(
                f"build needs an empty index but this one holds {self._used} nodes; "
                "use insert() to add to a built index"
            )
        X = as_vectors(vectors, self.dim, self.metric, "vectors")
        n = X.shape[0]
        if n == 0:
            raise InvalidVector("vectors is empty; build needs at least one vector")
        if ids is None:
            id_arr = np.arange(n, dtype=np.int64)
        else:
            id_arr = as_id_array(ids, "ids")
            if id_arr.shape[0] != n:
                raise InvalidArgument(f"ids has {id_arr.shape[0]} entries for {n} vectors")
            check_new_ids(id_arr, self._idmap)
        before = self._start()
        self._reserve(n)
        slots = self._take_slots(n)  # 0..n-1 on an empty index
        self._place(slots, X, id_arr)
        self._idmap.put_many(id_arr, slots)
        g = self._g
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
            build_graph(gw, order, self._entry, self.L, self.R, self.new_degree, limit,
                        self.alpha, sw, chw, self._counters, self._orph,
                        self._overflow_target)
            g.nbrs[:, :] = wide[:, : self.R]
            self._repair_all(ch)
        delta = delta_for(self, slots, op="build")
        self._account("build", before, n=n)
        return [delta]

    def insert(self, id: Any, vector: Any) -> EdgeDelta:
        """FreshVamana insert of one vector; returns the delta (new node + changed lists)."""
        i = as_id(id, "id")
        v = as_one_vector(vector, self.dim, self.metric, "vector")
        if self._idmap.get(i) >= 0:
            raise DuplicateId(
                f"id {i} is already in the index; ids are never reused "
                "(to update a vector, delete it and insert it under a new id)"
            )
        before = self._start()
        self._reserve(1)
        (slot,) = self._take_slots(1)
        self._place(slot, v, i)
        self._idmap.put(i, int(slot))
        g = self._g
        self._n_live += 1
        ch = self._changes
        begin_changes(ch)
        if self._entry < 0:  # the first node: it becomes the entry point, no edges
            self._entry = int(slot)
            delta = delta_for(self, np.array([slot], dtype=np.int32), op="insert")
            self._account("insert", before, orphans_repaired=0)
            return delta
        orphans = int(insert_node(slot, g, self._entry, self.L, self.R, self.new_degree,
                                  self.R, self._overflow_target, self.alpha,
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
        delta = delta_from_changes(self, "insert", new_slot=int(slot))
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
        delta = make_delta(
            self, "delete", ids=np.array([g.ext[slot]], dtype=np.int64),
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
        delta = delta_from_changes(self, "consolidate", changes=ch, removed=removed)
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
        delta = delta_from_changes(self, "repair")
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

    # ------------------------------------------------------------------ deltas in
    def apply(self, delta: EdgeDelta | Sequence[EdgeDelta]) -> None:
        """Apply another index's delta (or a list of them, in order) without distance work.

        Each delta is checked completely before anything changes: a delta
        for another dimension raises :class:`DimensionMismatch`, one whose
        ``seq`` is not the next expected raises :class:`DeltaOutOfOrder`,
        one that doesn't fit this index's state raises :class:`DeltaError`
        (:class:`DuplicateId` when a new node's id is stored here already).
        Fitting means the index keeps its invariants after the delta (the
        full list is in :mod:`graphrep.ann.delta_apply`): ids unique and in
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
        delta_intake.apply(self, delta)

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
        return delta_intake.apply_bytes(self, data)

    # ------------------------------------------------------------------ search
    def search(self, queries: Any, k: int = 10, L: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest live ids and their distances, for one query (1-d) or a batch (2-d).

        ``L`` is the beam width (default: the index's L; raised to k if smaller).
        Missing results (fewer than k live nodes found) are id -1, distance inf.
        """
        check_int(k, "k", 1, 1 << 20)
        if L is not None:
            check_int(L, "L", 1, 1 << 20)
        arr = as_float_array(queries, "queries")
        single = arr.ndim == 1
        if single:
            arr = arr[None, :]
        if arr.ndim != 2:
            raise InvalidVector(f"queries must be 1-d or 2-d, got shape {arr.shape}")
        Q = as_vectors(arr, self.dim, self.metric, "queries", copy=self.metric == "cosine")
        if not Q.flags.writeable:  # (a read-only array would compile the kernels again)
            Q = Q.copy()
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
        codes = self._codes
        cb = self._codebook
        if cb is not None:
            QC = np.empty(Q.shape, dtype=np.uint8)
            encode_rows(Q, cb.lo, cb.scale, QC)
        else:
            QC = codes[:0]
        if threads > 1 and nq >= threads * _PARALLEL_MIN_PER_THREAD:
            search_parallel(Q, QC, codes, self._entry, self._g, beam, k, metric, threads,
                            self.R, self._counters, ids, dists)
        else:
            search_serial(Q, QC, codes, self._entry, self._g, beam, k, metric,
                          self._search_scratch(beam), self._counters, ids, dists)
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
            i = as_id(id_, "id")
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
        return analysis.graph_problems(self)

    @property
    def distance_computations(self) -> int:
        """Distance computations this index object has done so far, over all operations
        (a cheap counter read; ``stats()`` has the breakdown per operation)."""
        return int(self._counters[0])

    def stats(self) -> dict[str, Any]:
        """Size, live/deleted counts, degree and in-degree histograms, unreachable live
        nodes, and the per-operation counters of distance computations and visits."""
        return analysis.stats(self)

    def to_networkx(self, include_deleted: bool = False, vectors: bool = False
                    ) -> networkx.DiGraph:
        """The graph as a :class:`networkx.DiGraph` (nodes and edges added in id order),
        for analysis off the hot paths; the index is unchanged and shares nothing with it.

        Nodes are ids, with the attributes ``id``, ``deleted`` and, with ``vectors``,
        ``vector`` (a copy); an edge ``u -> v`` says ``v`` is in ``u``'s list. Deleted
        nodes are left out unless ``include_deleted``, with their edges; searches walk
        through them, so reachability as search sees it needs ``include_deleted=True``.
        The graph attributes are ``dim``, ``metric``, ``R``, ``seq`` and ``entry_id``.

        >>> import collections
        >>> import networkx as nx
        >>> idx = VamanaIndex(8, R=8, L=16)
        >>> _ = idx.build(np.random.default_rng(0).standard_normal((300, 8)))
        >>> _ = idx.delete(7)
        >>> G = idx.to_networkx(include_deleted=True)
        >>> entry = G.graph["entry_id"]
        >>> reached = nx.descendants(G, entry) | {entry}
        >>> unreachable = [v for v, gone in G.nodes(data="deleted")
        ...                if not gone and v not in reached]
        >>> len(unreachable) == idx.unreachable_count()
        True
        >>> largest_scc = max(nx.strongly_connected_components(G), key=len)
        >>> in_degrees = collections.Counter(d for _, d in G.in_degree())
        >>> sum(in_degrees.values()) == G.number_of_nodes()
        True
        >>> hops = nx.single_source_shortest_path_length(G, entry)  # BFS levels from entry
        >>> max(hops.values()) < 300
        True
        """
        return analysis.to_networkx(self, include_deleted, vectors)

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
        return repair.record_hashes(self)

    def export_records(self, ids: Any) -> RecordSet:
        """The full records (flags, stored vector, sorted neighbour ids) of ``ids``, for
        :meth:`overwrite_records` on a replica. The set holds each distinct id once,
        ascending. Deleted nodes are exported too; an id this index does not store
        raises :class:`UnknownId`."""
        return repair.export_records(self, ids)

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
        repair.overwrite_records(self, records, drop_ids, entry_id, seq)

    # ------------------------------------------------------------------ digest, save, load
    def digest(self) -> bytes:
        """BLAKE2b-256 of the logical state: dim, metric, R, entry id and every node
        (id, flags, vector bytes, sorted neighbour ids) in id order. Independent of slot
        layout, capacity, growth history and the in-memory order of lists."""
        g = self._g
        slots = analysis.stored_slots(self)
        h = hashlib.blake2b(digest_size=32)
        h.update(json.dumps({"format": "graphrep.vamana/1", "dim": self.dim,
                             "metric": self.metric, "R": self.R,
                             "entry": self.entry_id, "size": int(slots.size)},
                            sort_keys=True).encode())
        if slots.size:
            h.update(g.ext[slots].astype("<i8").tobytes())
            h.update(g.flags[slots].tobytes())
            h.update(np.ascontiguousarray(g.vecs[slots]).astype("<f4").tobytes())
            ext_nb, valid = analysis.sorted_neighbour_ids(self, slots)
            ext_nb[~valid] = -1
            h.update(ext_nb.astype("<i8").tobytes())
        return h.digest()

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to ``path`` (a NumPy .npz archive; the name is used as given)."""
        snapshot.save(self, path)

    def to_bytes(self) -> bytes:
        """The index as bytes: exactly what :meth:`save` writes to a file.

        A replica that is too far behind to catch up by deltas is sent this.
        Everything the index holds travels (its slot layout, free list and seq
        included), so the copy digests the same, searches the same and goes on
        applying the origin's deltas from ``seq``. The archive's members carry
        CRC-32s, so damage to the content is found by :meth:`from_bytes`; the
        bytes also carry zip timestamps, so compare :meth:`digest`, not bytes.
        """
        return snapshot.to_bytes(self)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> VamanaIndex:
        """Read an index written by :meth:`save`; raises :class:`CorruptIndexFile` if the
        file is missing, damaged or of another format version."""
        return snapshot.load(cls, path)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> VamanaIndex:
        """Read bytes made by :meth:`to_bytes` (or the content of a :meth:`save` file),
        with the checks of :meth:`load`: damaged, truncated or foreign bytes raise
        :class:`CorruptIndexFile`."""
        return snapshot.from_bytes(cls, data)


def _medoid(X: np.ndarray, ids: np.ndarray) -> int:
    """Row nearest to the centroid (ties by id): DiskANN's entry point."""
    c = X.astype(np.float64).mean(axis=0)
    diff = X.astype(np.float64) - c
    d = np.einsum("ij,ij->i", diff, diff)
    return int(np.lexsort((ids, d))[0])

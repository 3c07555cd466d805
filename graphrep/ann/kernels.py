"""Numba kernels of the Vamana index: distances, beam search, RobustPrune,
FreshVamana insert, delete consolidation and reachability repair.

The index state is a handful of flat arrays (see :class:`Graph`), and every
kernel takes arrays and scalars, never Python objects. Three named tuples
group the arrays that travel together, so that signatures stay readable:

* :class:`Graph`   the index itself: vectors, neighbour lists (slots, padded
  with -1), degrees, flags, external ids and in-degrees.
* :class:`Scratch` per-thread work space: the visited stamps (an epoch
  counter makes reset O(1)), the beam, the prune buffers.
* :class:`Changes` which slots an operation touched, with a copy of each
  touched list as it was before, so that the delta can send a diff.

Determinism: every choice between equals is broken by external id. The beam
keeps the best ``L`` by (distance, id); RobustPrune sorts its candidates by
(distance, id). Neighbour lists are therefore *sets*: their order in memory
never changes a search result, a prune, or the digest, which is why a
replica may apply a list as a diff and store it in another order.

Distances: squared L2 for the graph (as DiskANN, hnswlib and faiss), and
``-dot`` for inner-product search. Graph construction always uses L2
(for "cosine" on normalised vectors, L2 is monotone in the cosine distance).
Every float32 distance is summed in a fixed order of 64 lanes
(:mod:`graphrep.ann._simd`), never in whatever order a compiler's vectoriser
picks, so a distance is the same bits on every machine.

This module is the package's largest (about 1,000 lines) on purpose: its
kernels are tight Numba code that call each other (search, prune, insert,
consolidation and repair share the beam, the prune and the change log), and
Numba's on-disk cache (``cache=True``) notices a change to a kernel's own
file but not to a callee in another file, so a call chain stays in one file.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np
from numba import njit, prange, types
from numba.core import errors
from numba.extending import overload

from graphrep.ann._prefetch import prefetch_row
from graphrep.ann._simd import (
    dot_f32_query,
    is_c_array,
    lane_sum,
    sqdist_f32_query,
    sqdist_f32_rows,
    sqdist_u8,
)

FREE = np.uint8(0)
LIVE = np.uint8(1)
DELETED = np.uint8(2)

METRIC_L2 = 0
METRIC_IP = 1

# counters[0]: distance computations, [1]: nodes expanded (visited), [2]: prunes
N_COUNTERS = 3

# RobustPrune looks at no more than this many nearest candidates (DiskANN's maxc)
MAXC = 750

_INF = np.float32(np.inf)
_EPOCH_LIMIT = 2**31 - 4

# copies of one vector are linked into a tree (see _link_copy): a full node
# takes this many children before a new copy goes a level down, and a new copy
# goes at most this many levels down
_COPY_CHILDREN = 2
_COPY_DESCENT = 64

Graph = namedtuple("Graph", "vecs nbrs deg flags ext indeg")
Scratch = namedtuple(
    "Scratch",
    "vis vstate bid bd bexp expanded expd cand cd pc pd occl chk selpos pbuf mark mstate nb",
)
Changes = namedtuple("Changes", "stamp state slots count old old_deg")
# what a search reads of a Scratch: fewer arrays for a kernel call to unbox per query
SearchScratch = namedtuple("SearchScratch", "vis vstate bid bd bexp expanded expd nb")


def search_scratch(s: Scratch) -> SearchScratch:
    """The arrays of ``s`` that :func:`beam_search` uses (shared, not copied)."""
    return SearchScratch(s.vis, s.vstate, s.bid, s.bd, s.bexp, s.expanded, s.expd, s.nb)


def make_scratch(cap: int, L: int, width: int) -> Scratch:
    """Work space for one thread: visited stamps for ``cap`` slots, a beam of ``L``."""
    pool = max(4 * L + 2 * width + 16, width * (width + 1) + 1)
    return Scratch(
        vis=np.zeros(cap, dtype=np.int32),
        vstate=np.zeros(1, dtype=np.int32),
        bid=np.empty(L + 1, dtype=np.int32),
        bd=np.empty(L + 1, dtype=np.float32),
        bexp=np.empty(L + 1, dtype=np.bool_),
        expanded=np.empty(pool, dtype=np.int32),
        expd=np.empty(pool, dtype=np.float32),
        cand=np.empty(pool, dtype=np.int32),
        cd=np.empty(pool, dtype=np.float32),
        pc=np.empty(pool, dtype=np.int32),
        pd=np.empty(pool, dtype=np.float32),
        occl=np.empty(pool, dtype=np.float32),
        chk=np.empty(pool, dtype=np.int32),
        selpos=np.empty(pool, dtype=np.int32),
        pbuf=np.empty(pool, dtype=np.int32),
        mark=np.zeros(cap, dtype=np.int32),
        mstate=np.zeros(1, dtype=np.int32),
        nb=np.empty(width, dtype=np.int32),
    )


def make_changes(cap: int, n_old: int, width: int) -> Changes:
    """Change log for one operation: up to ``n_old`` pre-images of lists kept for diffs."""
    return Changes(
        stamp=np.zeros(cap, dtype=np.int32),
        state=np.zeros(1, dtype=np.int32),
        slots=np.empty(cap, dtype=np.int32),
        count=np.zeros(1, dtype=np.int64),
        old=np.empty((max(n_old, 1), width), dtype=np.int32),
        old_deg=np.empty(max(n_old, 1), dtype=np.int32),
    )


# --------------------------------------------------------------------------- basics


@njit(inline="always")
def _i64(x):
    """``x`` as a plain int64. Numba compiles a kernel once per distinct tuple of
    argument types, and a constant (``0``) is typed as its literal value and an element
    of an int32 array as int32: a kernel called with ``0`` in one place and a variable
    in another, or an int32 in one and an int64 in another, is compiled twice (each of
    the large kernels costs seconds of LLVM on a cold cache). Call sites pass scalars
    through this (or ``np.int32``) so each kernel has one signature."""
    return np.int64(x)


@njit(inline="always")
def _next_epoch(stamp, state):
    e = state[0] + 1
    if e >= _EPOCH_LIMIT:
        stamp[:] = 0
        e = 1
    state[0] = e
    return e


def _l2_slots(vecs, i, j):
    """Squared L2 distance between rows ``i`` and ``j`` of the float32 vectors, summed in
    the fixed lane order of :mod:`graphrep.ann._simd` (the same bits on every machine).
    (Compiled code takes the overload below; this body serves pure-Python runs.)"""
    d = vecs[i] - vecs[j]
    return lane_sum(d * d)


def _dist_query(vecs, i, q, metric):
    """Distance between row ``i`` of the float32 vectors and the query ``q``: squared L2,
    or ``-dot`` for inner product, summed in the fixed lane order of
    :mod:`graphrep.ann._simd`. (Compiled code takes the overload below.)"""
    if metric == METRIC_L2:
        d = vecs[i] - q
        return lane_sum(d * d)
    return -lane_sum(vecs[i] * q)


@overload(_l2_slots, inline="always")
def _l2_slots_impl(vecs, i, j):
    if not is_c_array(vecs, types.float32, 2):
        raise errors.TypingError(f"_l2_slots takes a 2-d C-contiguous float32 array, not {vecs}")

    def impl(vecs, i, j):
        return sqdist_f32_rows(vecs, i, j)
    return impl


@overload(_dist_query, inline="always")
def _dist_query_impl(vecs, i, q, metric):
    if not (is_c_array(vecs, types.float32, 2) and is_c_array(q, types.float32, 1)):
        raise errors.TypingError("_dist_query takes C-contiguous float32 arrays, "
                                 f"not {vecs} and {q}")

    def impl(vecs, i, q, metric):
        if metric == METRIC_L2:
            return sqdist_f32_query(vecs, i, q)
        return -dot_f32_query(vecs, i, q)
    return impl


def _dist_any(vecs, i, q, metric):
    """The beam search's distance between row ``i`` of ``vecs`` and the query ``q``: for
    float32 vectors :func:`_dist_query`; for uint8 search codes (see
    :mod:`graphrep.ann.codes`) the squared L2 distance between the codes, an exact
    integer sum (:func:`graphrep.ann._simd.sqdist_u8`), so the codes' distances are the
    same bits on every machine, whatever its vector width. (Compiled code takes the
    overload below; this body serves pure-Python runs with ``NUMBA_DISABLE_JIT``.)"""
    if vecs.dtype == np.uint8:
        t = vecs[i].astype(np.int32) - q.astype(np.int32)
        return np.float32(int((t * t).sum()))
    return _dist_query(vecs, i, q, metric)


@overload(_dist_any, inline="always")
def _dist_any_impl(vecs, i, q, metric):
    if isinstance(vecs, types.Array) and vecs.dtype == types.uint8:
        if is_c_array(vecs, types.uint8, 2) and is_c_array(q, types.uint8, 1):
            def codes(vecs, i, q, metric):
                return np.float32(sqdist_u8(vecs, i, q))
            return codes

        def strided_codes(vecs, i, q, metric):
            s = np.int64(0)
            for k in range(vecs.shape[1]):
                t = np.int64(vecs[i, k]) - np.int64(q[k])
                s += t * t
            return np.float32(s)
        return strided_codes

    def floats(vecs, i, q, metric):
        return _dist_query(vecs, i, q, metric)
    return floats


def begin_changes(ch: Changes) -> None:
    """Start a new operation's change log (O(1): bumps the stamp epoch)."""
    _begin_changes(ch.stamp, ch.state, ch.count)


@njit(cache=True)
def _begin_changes(stamp, state, count):
    _next_epoch(stamp, state)
    count[0] = 0


@njit(inline="always")
def _touch(j, g, ch):
    """Record that slot ``j``'s list is about to change (keeps its pre-image once)."""
    ep = ch.state[0]
    if ch.stamp[j] == ep:
        return
    ch.stamp[j] = ep
    c = ch.count[0]
    ch.slots[c] = j
    if c < ch.old.shape[0]:
        d = g.deg[j]
        ch.old_deg[c] = d
        for t in range(d):
            ch.old[c, t] = g.nbrs[j, t]
    ch.count[0] = c + 1


# --------------------------------------------------------------------------- search


@njit(cache=True)
def beam_search(q, entry, g, L, metric, s, counters):
    """Greedy beam search from ``entry``: the best ``L`` nodes by (distance, id).

    Fills ``s.bid``/``s.bd`` (the beam, sorted) and ``s.expanded``/``s.expd``
    (the nodes expanded, in order, up to the pool size) and returns
    ``(beam size, number of expanded nodes recorded)``. Deleted nodes are
    walked through like live ones; callers filter them.
    """
    vis = s.vis
    bid = s.bid
    bd = s.bd
    bexp = s.bexp
    ext = g.ext
    nbrs = g.nbrs
    deg = g.deg
    vecs = g.vecs
    nb = s.nb
    ep = _next_epoch(vis, s.vstate)
    vis[entry] = ep
    bid[0] = entry
    bd[0] = _dist_any(vecs, entry, q, metric)
    bexp[0] = False
    size = 1
    ndist = 1
    nexp = 0
    pool = s.expanded.shape[0]
    cur = 0
    while cur < size:
        node = bid[cur]
        bexp[cur] = True
        if nexp < pool:
            s.expanded[nexp] = node
            s.expd[nexp] = bd[cur]
        nexp += 1
        best = size
        # gather the unvisited neighbours, then compute their distances while
        # prefetching the vectors two ahead (the search waits on memory; two
        # ahead measured best on 100k x 128 here, against 0, 4, 8 and all)
        m = 0
        for t in range(deg[node]):
            n = nbrs[node, t]
            if vis[n] != ep:
                vis[n] = ep
                nb[m] = n
                m += 1
        for a in range(min(m, 2)):
            prefetch_row(vecs, nb[a])
        for a in range(m):
            n = nb[a]
            if a + 2 < m:
                prefetch_row(vecs, nb[a + 2])
            d = _dist_any(vecs, n, q, metric)
            ndist += 1
            # (distance, id) order; ids are read only on a distance tie
            if size == L:
                wd = bd[L - 1]
                if d > wd or (d == wd and ext[n] > ext[bid[L - 1]]):
                    continue
            lo = 0
            hi = size
            while lo < hi:
                mid = (lo + hi) >> 1
                bm = bd[mid]
                if bm < d or (bm == d and ext[bid[mid]] < ext[n]):
                    lo = mid + 1
                else:
                    hi = mid
            last = size if size < L else L - 1
            for u in range(last, lo, -1):
                bid[u] = bid[u - 1]
                bd[u] = bd[u - 1]
                bexp[u] = bexp[u - 1]
            bid[lo] = n
            bd[lo] = d
            bexp[lo] = False
            if size < L:
                size += 1
            if lo < best:
                best = lo
        k = cur if cur < best else best
        while k < size and bexp[k]:
            k += 1
        cur = k
    counters[0] += ndist
    counters[1] += nexp
    return size, min(nexp, pool)


@njit(inline="always")
def _collect_results(s, size, g, k, out_ids, out_d, row):
    r = 0
    for t in range(size):
        if r >= k:
            break
        n = s.bid[t]
        if g.flags[n] == LIVE:
            out_ids[row, r] = g.ext[n]
            out_d[row, r] = s.bd[t]
            r += 1
    for t in range(r, k):
        out_ids[row, t] = -1
        out_d[row, t] = _INF


@njit(inline="always")
def _rerank(s, size, g, q, metric):
    """Replace the beam's distances by exact ones (float32 vectors) and sort it by
    (distance, id) again: the beam was walked on search codes."""
    bid = s.bid
    bd = s.bd
    for t in range(size):
        bd[t] = _dist_query(g.vecs, bid[t], q, metric)
    for t in range(1, size):
        n = bid[t]
        d = bd[t]
        u = t
        while u > 0 and (bd[u - 1] > d or (bd[u - 1] == d and g.ext[bid[u - 1]] > g.ext[n])):
            bid[u] = bid[u - 1]
            bd[u] = bd[u - 1]
            u -= 1
        bid[u] = n
        bd[u] = d


@njit(inline="always")
def _search_one(Q, QC, codes, i, entry, g, gc, L, k, metric, s, counters, out_ids, out_d):
    """One query: a beam search on the vectors, or on the search codes (``codes`` has
    rows) followed by an exact re-ranking of the beam."""
    if codes.shape[0] > 0:
        size, _ = beam_search(QC[i], entry, gc, L, metric, s, counters)
        _rerank(s, size, g, Q[i], metric)
    else:
        size, _ = beam_search(Q[i], entry, g, L, metric, s, counters)
    _collect_results(s, size, g, k, out_ids, out_d, i)


@njit(cache=True)
def search_serial(Q, QC, codes, entry, g, L, k, metric, s, counters, out_ids, out_d):
    """Search every row of ``Q`` one after the other with the given scratch. With search
    codes (``codes``: a uint8 row per slot, ``QC``: the queries' codes; both empty
    without), the beam walks on the codes and is re-ranked on the vectors."""
    gc = Graph(codes, g.nbrs, g.deg, g.flags, g.ext, g.indeg)
    for i in range(Q.shape[0]):
        _search_one(Q, QC, codes, i, entry, g, gc, L, k, metric, s, counters, out_ids, out_d)


@njit(cache=True, parallel=True)
def search_parallel(Q, QC, codes, entry, g, L, k, metric, n_chunks, width, counters, out_ids,
                    out_d):
    """Search the rows of ``Q`` in ``n_chunks`` parallel chunks (each its own scratch).

    Each query's result is the same as :func:`search_serial` gives: searches
    only read the graph, and each chunk has a private visited set and beam.
    """
    gc = Graph(codes, g.nbrs, g.deg, g.flags, g.ext, g.indeg)
    nq = Q.shape[0]
    cap = g.vecs.shape[0]
    per = (nq + n_chunks - 1) // n_chunks
    part = np.zeros((n_chunks, counters.shape[0]), dtype=np.int64)
    pool = 4 * L + 2 * width + 16
    for c in prange(n_chunks):
        s = SearchScratch(
            np.zeros(cap, dtype=np.int32),
            np.zeros(1, dtype=np.int32),
            np.empty(L + 1, dtype=np.int32),
            np.empty(L + 1, dtype=np.float32),
            np.empty(L + 1, dtype=np.bool_),
            np.empty(pool, dtype=np.int32),
            np.empty(pool, dtype=np.float32),
            np.empty(width, dtype=np.int32),
        )
        lo = c * per
        hi = min(nq, lo + per)
        cnt = part[c]
        for i in range(lo, hi):
            _search_one(Q, QC, codes, i, entry, g, gc, L, k, metric, s, cnt, out_ids, out_d)
    for c in range(n_chunks):
        for t in range(counters.shape[0]):
            counters[t] += part[c, t]


# --------------------------------------------------------------------------- prune


@njit(cache=True)
def robust_prune(cand, cd, n, alpha, R, maxc, g, s, counters):
    """RobustPrune (Vamana) with DiskANN's in-prune alpha schedule.

    ``cand[:n]`` are distinct candidate slots (the node itself excluded) and
    ``cd[:n]`` their squared L2 distances to the node; only the ``maxc``
    nearest by (distance, id) are considered (DiskANN's cap on the pool).
    Candidates are taken in
    (distance, id) order; a candidate c is occluded by an already selected s
    when ``d(node, c) > a * d(s, c)``, first with a = 1, then a *= 1.2 up to
    ``alpha``: close-range edges are chosen strictly first and the looser
    alpha only adds long edges afterwards. That is DiskANN's current
    ``occlude_list`` and gives in one pass what the paper's two passes give.
    Writes the kept slots to ``s.pbuf`` and returns how many (<= R).

    The occlusion test is lazy, as hnswlib's heuristic: a candidate is compared
    with the selected nodes before it (in the order they were selected) only
    until one occludes it at the current ``a``, and a later pass resumes where
    it stopped (``s.chk``). DiskANN's eager form, which compares each selected
    node with every later candidate, selects the same nodes: a candidate's
    occlusion factor is the largest ``d(node, c) / d(s, c)`` over the selected
    ``s`` before it either way, and it is kept at ``a`` iff no single factor
    exceeds ``a``. Only the distances after the first occluder are skipped.
    """
    pc = s.pc
    pd = s.pd
    occl = s.occl
    chk = s.chk
    selpos = s.selpos
    ext = g.ext
    vecs = g.vecs
    order = np.argsort(cd[:n])
    for t in range(n):
        pc[t] = cand[order[t]]
        pd[t] = cd[order[t]]
    # equal distances: order by external id (insertion sort on the rare runs)
    t = 0
    while t < n:
        u = t + 1
        while u < n and pd[u] == pd[t]:
            u += 1
        if u - t > 1:
            for a in range(t + 1, u):
                x = pc[a]
                b = a - 1
                while b >= t and ext[pc[b]] > ext[x]:
                    pc[b + 1] = pc[b]
                    b -= 1
                pc[b + 1] = x
        t = u
    if n > maxc:
        n = maxc
    for t in range(n):
        occl[t] = 0.0
        chk[t] = 0
    res = 0
    ndist = 0
    cur = 1.0
    while cur <= alpha and res < R:
        for i in range(n):
            if res >= R:
                break
            if occl[i] > cur:
                continue  # selected (infinite), or occluded at this a already
            # compare with the selected nodes before i not compared yet
            k = chk[i]
            while k < res:
                if selpos[k] < i:
                    djk = _l2_slots(vecs, pc[i], pc[selpos[k]])
                    ndist += 1
                    if djk == 0.0:
                        occl[i] = _INF
                    else:
                        r = pd[i] / djk
                        if r > occl[i]:
                            occl[i] = r
                    if occl[i] > cur:
                        break
                k += 1
            if k < res:
                chk[i] = k + 1
                continue
            chk[i] = res
            occl[i] = _INF
            selpos[res] = i
            s.pbuf[res] = pc[i]
            res += 1
        cur *= 1.2
    counters[0] += ndist
    counters[2] += 1
    return res


@njit(inline="always")
def _contains(g, j, x):
    for t in range(g.deg[j]):
        if g.nbrs[j, t] == x:
            return True
    return False


@njit(cache=True)
def _prune_list_with(j, x, g, R, alpha, s, counters):
    """RobustPrune of j's list plus ``x`` (``x`` may be -1 for none); result in s.pbuf."""
    n = 0
    d = g.deg[j]
    for t in range(min(d, 2)):
        prefetch_row(g.vecs, g.nbrs[j, t])
    for t in range(d):
        if t + 2 < d:
            prefetch_row(g.vecs, g.nbrs[j, t + 2])
        c = g.nbrs[j, t]
        s.cand[n] = c
        s.cd[n] = _l2_slots(g.vecs, j, c)
        n += 1
    if x >= 0:
        s.cand[n] = x
        s.cd[n] = _l2_slots(g.vecs, j, x)
        n += 1
    counters[0] += n
    return robust_prune(s.cand, s.cd, _i64(n), alpha, R, MAXC, g, s, counters)


@njit(cache=True)
def _replace_list(j, newl, m, g, entry, s, ch, orph, norph):
    """Set j's list to ``newl[:m]``, keeping in-degrees; returns the orphan count.

    A node whose in-degree falls to zero (live, not the entry point) is
    appended to ``orph`` for repair.
    """
    _touch(j, g, ch)
    ep = _next_epoch(s.mark, s.mstate)
    for t in range(m):
        s.mark[newl[t]] = ep
    for t in range(g.deg[j]):
        c = g.nbrs[j, t]
        if s.mark[c] == ep:
            s.mark[c] = ep - 1 if ep > 1 else 0  # seen in both lists: unchanged
        else:
            g.indeg[c] -= 1
            if (
                g.indeg[c] == 0
                and g.flags[c] == LIVE
                and c != entry
                and norph < orph.shape[0]
            ):
                orph[norph] = c
                norph += 1
    for t in range(m):
        c = newl[t]
        if s.mark[c] == ep:  # only in the new list
            g.indeg[c] += 1
        g.nbrs[j, t] = c
    for t in range(m, g.deg[j]):
        g.nbrs[j, t] = -1
    g.deg[j] = m
    return norph


@njit(inline="always")
def _append_edge(j, x, g, ch):
    """Append x to j's list (the caller knows there is room and x is not in it)."""
    _touch(j, g, ch)
    g.nbrs[j, g.deg[j]] = x
    g.deg[j] += 1
    g.indeg[x] += 1


@njit(cache=True)
def add_edge(j, x, g, target, limit, alpha, entry, s, ch, counters, orph, norph):
    """Add the edge j -> x; if j's list would exceed ``limit``, re-prune it (with x)
    to at most ``target`` neighbours."""
    d = g.deg[j]
    if _contains(g, j, x):
        return norph
    if d < limit:
        _append_edge(j, x, g, ch)
        return norph
    m = _prune_list_with(j, x, g, target, alpha, s, counters)
    return _replace_list(j, s.pbuf, m, g, entry, s, ch, orph, norph)


# --------------------------------------------------------------------------- reachability


@njit(cache=True)
def bfs_mark(start, g, mark, ep, queue):
    """Mark with ``ep`` every slot reachable from ``start`` that isn't marked yet."""
    if mark[start] == ep:
        return 0
    mark[start] = ep
    queue[0] = start
    head = 0
    tail = 1
    while head < tail:
        u = queue[head]
        head += 1
        for t in range(g.deg[u]):
            v = g.nbrs[u, t]
            if mark[v] != ep:
                mark[v] = ep
                queue[tail] = v
                tail += 1
    return tail


@njit(cache=True)
def count_unreachable(entry, g, n_slots, mark, mstate, queue):
    """Live nodes not reachable from the entry point (walking through tombstones)."""
    if entry < 0:
        return 0
    ep = _next_epoch(mark, mstate)
    bfs_mark(entry, g, mark, ep, queue)
    c = 0
    for u in range(n_slots):
        if g.flags[u] == LIVE and mark[u] != ep:
            c += 1
    return c


@njit(inline="always")
def _set_edge(j, a, x, g, entry, ch, orph, norph):
    """Replace j's ``a``-th neighbour by ``x`` (not in j's list), keeping in-degrees;
    a live node other than the entry point whose in-degree falls to zero is
    appended to ``orph``. Returns the orphan count."""
    _touch(j, g, ch)
    c = g.nbrs[j, a]
    g.indeg[c] -= 1
    if g.indeg[c] == 0 and g.flags[c] == LIVE and c != entry and norph < orph.shape[0]:
        orph[norph] = c
        norph += 1
    g.nbrs[j, a] = x
    g.indeg[x] += 1
    return norph


@njit(inline="always")
def _mix64(x):
    """SplitMix64's finaliser: a bijection on uint64 that spreads every bit."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@njit(cache=True)
def _farthest(j, g, counters):
    """The position in j's (non-empty) list of its farthest neighbour by (distance, id)."""
    f = 0
    fd = _l2_slots(g.vecs, j, g.nbrs[j, 0])
    for b in range(1, g.deg[j]):
        x = g.nbrs[j, b]
        d = _l2_slots(g.vecs, j, x)
        if d > fd or (d == fd and g.ext[x] > g.ext[g.nbrs[j, f]]):
            f = b
            fd = d
    counters[0] += g.deg[j]
    return f


@njit(cache=True)
def _splice(u, v, a, g, entry, R, ch, counters, orph, norph):
    """Put ``u`` between v and its ``a``-th neighbour c: v -> u -> c instead of v -> c.

    u gets the edge u -> c appended, or in place of u's own farthest neighbour
    (by (distance, id)) when u's list is full. Every path that used v -> c now
    runs through u, so a caller that knows no reachable node links to u
    knows that nothing reachable loses its path. Returns the orphan count.
    """
    c = g.nbrs[v, a]
    if not _contains(g, u, c):
        du = g.deg[u]
        if du < R:
            _append_edge(u, c, g, ch)
        else:
            norph = _set_edge(u, _farthest(u, g, counters), c, g, entry, ch, orph, norph)
    return _set_edge(v, a, u, g, entry, ch, orph, norph)


@njit(cache=True)
def _dropped(v, n, m, any_drop, g, s, counters):
    """A neighbour of v that RobustPrune of v's list plus one node dropped, as a
    position in v's list (candidates ``s.cand[:n]`` with their distances to v in
    ``s.cd``, kept ``s.pbuf[:m]``); -1 if there is none to report.

    The dropped neighbour of largest id that is an exact copy of a kept one;
    if there is none and ``any_drop`` is set, the farthest dropped neighbour
    by (distance, id). Only pairs at equal distance from v are compared, so
    lists without exact copies cost no distance computation here.
    """
    ep = _next_epoch(s.mark, s.mstate)
    for t in range(m):
        s.mark[s.pbuf[t]] = ep
    best = -1
    far = -1
    nd = 0
    for i in range(n):
        c = s.cand[i]
        if s.mark[c] == ep:
            continue
        if far < 0 or s.cd[i] > s.cd[far] or (
            s.cd[i] == s.cd[far] and g.ext[c] > g.ext[s.cand[far]]
        ):
            far = i
        if best >= 0 and g.ext[c] < g.ext[best]:
            continue
        for j in range(n):
            k = s.cand[j]
            if s.mark[k] != ep or s.cd[j] != s.cd[i]:
                continue
            nd += 1
            if _l2_slots(g.vecs, c, k) == 0.0:
                best = c
                break
    counters[0] += nd
    if best < 0 and any_drop and far >= 0:
        best = s.cand[far]
    if best < 0:
        return -1
    for a in range(g.deg[v]):
        if g.nbrs[v, a] == best:
            return a
    return -1


@njit(cache=True)
def _link_copy(u, w, g, entry, R, ch, counters, orph, norph):
    """Link ``u``, which no reachable node links to, from a node under ``w``, a
    reachable exact copy of u.

    RobustPrune occludes every candidate at distance 0 from one it kept, so
    of many copies of a vector a list keeps one, and no prune takes u where
    a copy of u is already kept. Copies are linked into a tree of copies
    instead: starting at v = w,

    * if v has room, v -> u is appended;
    * if v is full and lists fewer than ``_COPY_CHILDREN`` copies of larger
      id than its own (its children), u is spliced in place of v's farthest
      neighbour that is not a copy (:func:`_splice`);
    * otherwise v steps down to one of its live children, the one whose
      hash of (id, u's id, depth) is largest, and tries again.

    After ``_COPY_DESCENT`` steps, or at a node with no live child, u is
    spliced in place of that node's copy of largest id (or its farthest
    neighbour). Each child has a larger id than its parent, so the walk
    ends; the hash spreads the copies over the subtrees, so the tree stays
    shallow and a search among copies (ordered by id at equal distance)
    never has to follow a long path of falling ids. Only edges out of
    reachable nodes are redirected through u, and only u's own list loses
    an edge, so nothing reachable becomes unreachable and u becomes
    reachable. Returns the orphan count.
    """
    ext = g.ext
    h = _mix64(np.uint64(ext[u]) + np.uint64(0x9E3779B97F4A7C15))
    v = w
    for step in range(_COPY_DESCENT):
        dv = g.deg[v]
        if dv < R:
            _append_edge(v, u, g, ch)
            return norph
        kids = 0
        kid = -1
        kkey = np.uint64(0)
        top = -1
        far = -1
        fard = np.float32(0.0)
        for a in range(dv):
            c = g.nbrs[v, a]
            d = _l2_slots(g.vecs, v, c)
            if d == 0.0:
                if top < 0 or ext[c] > ext[g.nbrs[v, top]]:
                    top = a
                if ext[c] > ext[v]:
                    kids += 1
                    if g.flags[c] == LIVE:
                        key = _mix64(np.uint64(ext[c]) ^ h)
                        if kid < 0 or key > kkey:
                            kid = c
                            kkey = key
            elif far < 0 or d > fard or (d == fard and ext[c] > ext[g.nbrs[v, far]]):
                far = a
                fard = d
        counters[0] += dv
        if kids < _COPY_CHILDREN and far >= 0:
            return _splice(u, _i64(v), _i64(far), g, entry, R, ch, counters, orph, norph)
        if kid < 0 or step == _COPY_DESCENT - 1:
            return _splice(u, _i64(v), _i64(top if top >= 0 else far), g, entry, R, ch,
                           counters, orph, norph)
        v = kid
        h = _mix64(h)
    return norph


@njit(cache=True)
def repair_node(u, g, entry, L, R, alpha, s, ch, counters, orph, norph, max_tries, safe):
    """Give ``u`` an in-edge from a nearby node that the entry point reaches.

    Searches for u's vector from the entry point with beam ``L`` (the beam
    holds reachable nodes only). If the beam holds a live exact copy of u
    (distance 0; copies come first in the beam's (distance, id) order), the
    first one takes u by :func:`_link_copy`, which never takes away an edge a
    reachable node's path needs. Otherwise it walks the beam in order: the
    first live v with room takes the edge v -> u; a full v takes it if
    RobustPrune of v's list plus u keeps u (tried on the first ``max_tries``
    full lists), and v's list becomes the pruned one, unless the prune drops
    an exact copy of a neighbour it keeps: such a copy may have no other
    in-edge from a reachable node, so u is spliced in its place instead
    (v -> u -> copy, :func:`_splice`). If no prune keeps u, the nearest live
    v swaps u in for its neighbour of highest in-degree, among those with
    in-degree >= 2; if no beam node has such a neighbour, u is spliced in
    front of the nearest live node's farthest neighbour.

    A pruned list or a swap can drop the only reachable in-edge of another
    node. With ``safe`` set neither happens: a prune that keeps u splices u
    in front of a neighbour it drops (v's list is otherwise unchanged), and
    the swap is skipped for the splice. Then every edit only adds paths:
    nothing reachable becomes unreachable, and u becomes reachable.

    ``u`` must be unreachable (the callers repair orphans and nodes a BFS did
    not reach): the splices take edges only out of u's own list.
    """
    size, _ = beam_search(g.vecs[u], entry, g, L, METRIC_L2, s, counters)
    for t in range(size):
        if s.bd[t] != 0.0:
            break
        v = s.bid[t]
        if v == u or g.flags[v] != LIVE:
            continue
        if _contains(g, v, u):
            return norph
        return _link_copy(u, v, g, entry, R, ch, counters, orph, norph)
    tries = 0
    first = -1
    for t in range(size):
        v = s.bid[t]
        if v == u or g.flags[v] != LIVE:
            continue
        if _contains(g, v, u):
            return norph
        if first < 0:
            first = v
        if g.deg[v] < R:
            _append_edge(v, u, g, ch)
            return norph
        if tries < max_tries:
            tries += 1
            m = _prune_list_with(v, u, g, R, alpha, s, counters)
            for a in range(m):
                if s.pbuf[a] == u:
                    c = _dropped(v, g.deg[v] + 1, m, safe, g, s, counters)
                    if c >= 0:
                        return _splice(u, _i64(v), _i64(c), g, entry, R, ch, counters, orph,
                                       norph)
                    return _replace_list(v, s.pbuf, m, g, entry, s, ch, orph, norph)
    if first < 0:  # nothing live in reach: link from the entry point itself
        if entry == u or _contains(g, entry, u):
            return norph
        if g.deg[entry] < R:
            _append_edge(entry, u, g, ch)
            return norph
        first = entry
    # swap u in for a neighbour that keeps another in-edge
    for t in range(size + 1 if not safe else 0):
        v = s.bid[t] if t < size else first
        if v == u or (t < size and g.flags[v] != LIVE):
            continue
        best = -1
        for a in range(g.deg[v]):
            c = g.nbrs[v, a]
            if g.indeg[c] < 2 or c == entry:
                continue
            if best < 0 or g.indeg[c] > g.indeg[g.nbrs[v, best]] or (
                g.indeg[c] == g.indeg[g.nbrs[v, best]] and g.ext[c] > g.ext[g.nbrs[v, best]]
            ):
                best = a
        if best < 0:
            continue
        m = 0
        for a in range(g.deg[v]):
            if a != best:
                s.pbuf[m] = g.nbrs[v, a]
                m += 1
        s.pbuf[m] = u
        m += 1
        return _replace_list(np.int32(v), s.pbuf, m, g, entry, s, ch, orph, norph)
    # no swap: put u on the path to first's farthest neighbour
    if first == u or g.deg[first] == 0:
        return norph
    return _splice(u, _i64(first), _i64(_farthest(first, g, counters)), g, entry, R, ch,
                   counters, orph, norph)


@njit(cache=True)
def repair_orphans(g, entry, L, R, alpha, s, ch, counters, orph, norph, max_tries):
    """Repair every orphan in ``orph[:norph]`` (and those the repairs create)."""
    i = 0
    budget = 4 * orph.shape[0] + 64
    while i < norph and budget > 0:
        u = orph[i]
        i += 1
        if g.flags[u] == LIVE and g.indeg[u] == 0 and u != entry:
            budget -= 1
            norph = repair_node(u, g, entry, L, R, alpha, s, ch, counters, orph, norph, max_tries,
                                np.bool_(False))
    return i


@njit(cache=True)
def repair_unreachable(g, entry, n_slots, L, R, alpha, s, ch, counters, orph, queue, max_rounds):
    """Make every live node reachable from the entry point; returns repairs made.

    A round: BFS from the entry point; then each unreachable live node, in
    id order, that is still unreached gets an in-edge (:func:`repair_node`)
    and what it reaches is marked. Re-prunes during a repair can cut other
    nodes off, so rounds repeat until a BFS finds none. A round that starts
    with no fewer unreachable nodes than the round before (exact duplicates
    can make repairs cut each other off forever), and the last of
    ``max_rounds``, repair in ``safe`` mode, whose edits only add paths: such
    a round links every node it finds unreachable, so none is left after it.
    """
    if entry < 0:
        return 0
    repairs = 0
    reach = np.zeros(n_slots, dtype=np.bool_)
    last_bad = n_slots + 1
    for rnd in range(max_rounds):
        reach[:] = False
        _mark_from(entry, g, reach, queue)
        n_bad = 0
        for u in range(n_slots):
            if g.flags[u] == LIVE and not reach[u]:
                n_bad += 1
        if n_bad == 0:
            return repairs
        safe = n_bad >= last_bad or rnd == max_rounds - 1
        last_bad = n_bad
        bad = np.empty(n_bad, dtype=np.int32)
        c = 0
        for u in range(n_slots):
            if g.flags[u] == LIVE and not reach[u]:
                bad[c] = u
                c += 1
        bad = bad[np.argsort(g.ext[bad])]
        for t in range(n_bad):
            u = bad[t]
            if reach[u]:
                continue
            # orphans this repair creates are found by the next round's BFS
            repair_node(u, g, entry, L, R, alpha, s, ch, counters, orph, _i64(0), _i64(8),
                        np.bool_(safe))
            repairs += 1
            _mark_from(u, g, reach, queue)
    return repairs


@njit(cache=True)
def _mark_from(start, g, reach, queue):
    if reach[start]:
        return
    reach[start] = True
    queue[0] = start
    head = 0
    tail = 1
    while head < tail:
        u = queue[head]
        head += 1
        for t in range(g.deg[u]):
            v = g.nbrs[u, t]
            if not reach[v]:
                reach[v] = True
                queue[tail] = v
                tail += 1


# --------------------------------------------------------------------------- insert / build


@njit(cache=True)
def insert_node(x, g, entry, L, R, keep, limit, target, alpha, s, ch, counters, orph,
                repair_L):
    """FreshVamana insert of slot ``x`` (vector and flags already set, no edges).

    Beam search for x from the entry point; RobustPrune of the expanded
    nodes gives x's out-list (at most ``keep`` <= R nodes: R is Vamana's, a
    smaller one hnswlib's M, whose back-edges still fill lists to R); each
    chosen neighbour gets the reverse edge,
    re-pruned to ``target`` when its list would exceed ``limit``. (Build:
    limit = slack * R, target = R, as DiskANN. Insert into a built index:
    limit = R, the hard cap, and target = R / slack, which leaves the same
    headroom before the next re-prune.) With ``repair_L`` > 0, nodes whose
    in-degree the re-prunes dropped to zero (and x, if every re-prune
    declined it) are re-linked at once, searching with that beam width.
    Returns the number of orphans found.
    """
    _, nexp = beam_search(g.vecs[x], entry, g, L, METRIC_L2, s, counters)
    n = 0
    for t in range(nexp):
        c = s.expanded[t]
        if c != x:
            s.cand[n] = c
            s.cd[n] = s.expd[t]
            n += 1
    m = robust_prune(s.cand, s.cd, _i64(n), alpha, keep, MAXC, g, s, counters)
    _touch(x, g, ch)
    for t in range(m):
        c = s.pbuf[t]
        g.nbrs[x, t] = c
        g.indeg[c] += 1
    g.deg[x] = m
    norph = _i64(0)
    for t in range(m):
        norph = add_edge(g.nbrs[x, t], x, g, target, limit, alpha, entry, s, ch, counters, orph,
                         norph)
    # every re-prune may have declined x itself: then nothing links to it yet
    if g.indeg[x] == 0 and norph < orph.shape[0]:
        orph[norph] = x
        norph += 1
    if repair_L > 0 and norph > 0:
        repair_orphans(g, entry, repair_L, R, alpha, s, ch, counters, orph, norph, _i64(8))
    return norph


@njit(cache=True)
def build_graph(g, order, entry, L, R, keep, limit, alpha, s, ch, counters, orph, target):
    """Vamana build: FreshVamana-insert the slots of ``order`` one by one.

    Lists may grow to ``limit`` (DiskANN's slack, > R) before a re-prune to
    ``target`` (< R); a final pass re-prunes every list still at R or more to
    ``target``. No list ends full, so the inserts that follow a build have room
    for their back-edges (after a build that prunes to R, as DiskANN's does,
    each insert ran about 17 RobustPrunes). Measured on 94k of gmm 100k x 128
    (R 64, L 100, target 49), against re-pruning to R: 25% fewer distances in
    the build, 2.1 RobustPrunes an insert afterwards (its own list's included)
    instead of 16.9 (359 against 856 us), and recall@10 at each search beam as
    high or higher (0.958 against 0.948 at L=20).
    Reachability is repaired afterwards by the caller.
    """
    for i in range(order.shape[0]):
        x = order[i]
        if x == entry:
            continue
        insert_node(x, g, entry, L, R, keep, limit, target, alpha, s, ch, counters, orph,
                    _i64(0))
    for x in range(order.shape[0]):
        if g.deg[x] >= R:
            m = _prune_list_with(np.int32(x), np.int32(-1), g, target, alpha, s, counters)
            _replace_list(np.int32(x), s.pbuf, m, g, entry, s, ch, orph, _i64(0))


# --------------------------------------------------------------------------- consolidate


@njit(cache=True)
def consolidate_lists(g, n_slots, entry, R, alpha, s, ch, counters):
    """FreshDiskANN delete consolidation of every live list that names a deleted node.

    Candidates for p: p's live neighbours plus the live neighbours of p's
    deleted neighbours, pruned with RobustPrune. Only live lists change and
    candidates come from deleted lists (which don't change), so the result
    is independent of the order in which nodes are processed. Returns the
    number of lists rewritten.
    """
    changed = 0
    for p in range(n_slots):
        if g.flags[p] != LIVE:
            continue
        has_del = False
        for t in range(g.deg[p]):
            if g.flags[g.nbrs[p, t]] == DELETED:
                has_del = True
                break
        if not has_del:
            continue
        ep = _next_epoch(s.mark, s.mstate)
        s.mark[p] = ep
        n = 0
        for t in range(g.deg[p]):
            c = g.nbrs[p, t]
            if g.flags[c] == LIVE:
                if s.mark[c] != ep:
                    s.mark[c] = ep
                    s.cand[n] = c
                    n += 1
        for t in range(g.deg[p]):
            dn = g.nbrs[p, t]
            if g.flags[dn] != DELETED:
                continue
            for u in range(g.deg[dn]):
                c = g.nbrs[dn, u]
                if g.flags[c] == LIVE and s.mark[c] != ep:
                    if n >= s.cand.shape[0]:
                        break
                    s.mark[c] = ep
                    s.cand[n] = c
                    n += 1
        for t in range(n):
            s.cd[t] = _l2_slots(g.vecs, p, s.cand[t])
        counters[0] += n
        m = robust_prune(s.cand, s.cd, _i64(n), alpha, R, MAXC, g, s, counters)
        # copy: _replace_list uses s.mark, and s.pbuf is the new list
        _replace_list(np.int32(p), s.pbuf, m, g, entry, s, ch, s.pbuf[:0], _i64(0))
        changed += 1
    return changed


@njit(cache=True)
def release_deleted(g, n_slots, freed):
    """Drop the lists of deleted nodes and mark their slots free; returns how many."""
    c = 0
    for u in range(n_slots):
        if g.flags[u] != DELETED:
            continue
        for t in range(g.deg[u]):
            v = g.nbrs[u, t]
            g.indeg[v] -= 1
            g.nbrs[u, t] = -1
        g.deg[u] = 0
        g.flags[u] = FREE
        freed[c] = u
        c += 1
    return c

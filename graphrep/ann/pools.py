"""PoolGraph: a graph index whose neighbour lists are pure functions of candidate pools.

A :class:`~graphrep.ann.VamanaIndex` list is the outcome of a history of inserts: two
copies that run the same inserts in different orders get different graphs. Here every
node ``p`` instead keeps a *candidate pool* ``C[p]``: the best ``pool`` candidates ever
offered to it, by (distance, id, version). Its neighbour list is RobustPrune over the
live members of ``C[p]``, taken in that order. So the state is a function of the *set*
of offers ("candidate additions") it has received, in any order, with duplicates:

* top-``c`` of a union equals top-``c`` of the union of top-``c`` s, so capping the pool
  keeps it independent of arrival order;
* distances are computed in one fixed order at float32 without fast-math, so every copy
  computes the same bits;
* the entry points are, for each *origin*, the live node of that origin with the
  smallest id: a function of the state. An incarnation's origin is the low
  ``origin_bits`` bits of its version (0 bits, the default: one origin, one entry point).
  The replication layer puts the writing region there, so nodes written in a region
  that was cut off, which found only each other when they were inserted, stay
  reachable from that region's entry point after the merge.

Prunes can leave a live node without an in-edge from anything the entry points reach.
A search therefore also starts from *rescue points* (:meth:`PoolGraph.rescue_points`):
the unreachable live node with the smallest (id, version), then the smallest not
reachable from that one either, and so on. They too are a function of the state, so
every copy searches alike; they are recomputed (a walk of the graph) at the first
search after a change. A local insert's search starts from the entry points only.

A node is an *incarnation* ``(id, version)``: versions are opaque int64 values (the
replication layer uses timestamps). For each id the incarnation with the largest
version is its value and the others are dead; a tombstone ``(id, version)`` kills every
incarnation of ``id`` with a smaller version, and a later version lives again. Dead
nodes keep their pools and lists (a search walks through them, as through a deleted
node of a Vamana graph) but never appear in a list or a result.

Offers may name an incarnation that has not arrived yet: they wait (``pending``) and are
merged when it does, so the final state does not depend on causal delivery either.

Updates are incremental and equal to recomputing from scratch (the tests check it with
:meth:`PoolGraph.recomputed_lists`): a list is a greedy pass over its pool in order, so
an offer at pool position ``k`` leaves everything before ``k`` as it was, and when the
offered node is not kept (dead, occluded or past ``R`` kept) the rest is unchanged too.
Only when it is kept is the tail re-pruned.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import msgpack
import numpy as np
from numba import njit

from graphrep.errors import (
    CorruptIndexFile,
    DimensionMismatch,
    EmptyIndex,
    InvalidArgument,
    InvalidVector,
)

__all__ = ["PoolGraph"]

_FORMAT = "graphrep.pools/3"
_READS = ("graphrep.pools/2", _FORMAT)  # /2: before ghosts


# --------------------------------------------------------------------------- kernels
# No fastmath anywhere: the sums run in index order at float32, so every copy computes
# the same bits, which the convergence of the lists depends on.


@njit(cache=True)
def _d2(vecs, a, b):
    s = np.float32(0.0)
    for k in range(vecs.shape[1]):
        t = vecs[a, k] - vecs[b, k]
        s += t * t
    return s


@njit(cache=True)
def _dq(vecs, a, q):
    s = np.float32(0.0)
    for k in range(vecs.shape[1]):
        t = vecs[a, k] - q[k]
        s += t * t
    return s


@njit(inline="always")
def _before(da, ia, va, db, ib, vb):
    """(distance, id, version) order."""
    if da != db:
        return da < db
    if ia != ib:
        return ia < ib
    return va < vb


@njit(cache=True)
def _prune_from(t, k, m, vecs, alive, ps, pd, pn, nbrs, deg, kd, R, alpha, counters):
    """Re-prune ``t``'s list from pool position ``k``, its first ``m`` kept members (all
    before ``k``) standing. A candidate is kept unless dead, past ``R`` kept, or occluded
    by a kept ``s``: ``d(t, c) > alpha * d(s, c)`` (squared distances) or ``d(s, c) == 0``."""
    n = pn[t]
    for i in range(k, n):
        if m >= R:
            break
        c = ps[t, i]
        if alive[c] == 0 or c == t:
            continue
        dc = pd[t, i]
        ok = True
        for j in range(m):
            dsc = _d2(vecs, nbrs[t, j], c)
            counters[0] += 1
            if dsc == 0.0 or dc > alpha * dsc:
                ok = False
                break
        if ok:
            nbrs[t, m] = c
            m += 1
    kd[t] = m
    _fill(t, alive, ps, pn, nbrs, deg, kd, R)


@njit(cache=True)
def _fill(t, alive, ps, pn, nbrs, deg, kd, R):
    """After the ``kd[t]`` kept members, fill ``t``'s list up to ``R`` with the live pool
    members the prune left out, in pool order (as hnswlib's ``keepPrunedConnections``):
    more nodes get an in-edge, so fewer are unreachable; no distance is computed."""
    m = kd[t]
    j = 0
    for i in range(pn[t]):
        if m >= R:
            break
        c = ps[t, i]
        if j < kd[t] and nbrs[t, j] == c:
            j += 1
            continue
        if alive[c] == 0 or c == t:
            continue
        nbrs[t, m] = c
        m += 1
    deg[t] = m


@njit(cache=True)
def _admit(t, k, m, vecs, alive, ps, pd, pn, nbrs, deg, kd, R, alpha, counters):
    """``ps[t, k]`` has just entered ``t``'s pool and passed the occlusion test against
    the ``m`` kept members before it (``m < R``): it is kept, and ``t``'s list becomes
    the prune of the pool again, equal to ``_prune_from(t, k, m, ...)`` at less cost.

    Until some member kept before is dropped, every member after ``k`` keeps its
    standing except where the newcomer occludes it: the kept members before it are the
    old ones plus the newcomer, so a member occluded before stays occluded (no distance)
    and a member kept before stays kept unless the newcomer occludes it (one distance).
    Once one is dropped, members it alone had occluded may come back, so the rest is
    pruned in full, as :func:`_prune_from` does."""
    c = ps[t, k]
    old = kd[t]
    tail = nbrs[t, m:old].copy()  # the members kept after k, in pool order
    nbrs[t, m] = c
    n_new = m + 1
    j = 0
    n = pn[t]
    for i in range(k + 1, n):
        if n_new >= R:
            break
        x = ps[t, i]
        if alive[x] == 0 or x == t:
            continue
        if not (j < tail.shape[0] and tail[j] == x):
            continue  # occluded by a member still kept (or past R before)
        j += 1
        dcx = _d2(vecs, c, x)
        counters[0] += 1
        if dcx == 0.0 or pd[t, i] > alpha * dcx:  # dropped: prune the rest in full
            _prune_from(t, i + 1, n_new, vecs, alive, ps, pd, pn, nbrs, deg, kd, R, alpha,
                        counters)
            return
        nbrs[t, n_new] = x
        n_new += 1
    kd[t] = n_new
    _fill(t, alive, ps, pn, nbrs, deg, kd, R)


@njit(cache=True)
def _kept_before(t, k, ps, nbrs, kd):
    """How many of ``t``'s kept members sit at pool positions < ``k`` (they are kept in
    pool order)."""
    m = 0
    d = kd[t]
    for i in range(k):
        if m < d and nbrs[t, m] == ps[t, i]:
            m += 1
    return m


@njit(cache=True)
def _offer(t, c, dc, vecs, kid, kver, alive, ps, pd, pn, nbrs, deg, kd, R, alpha, counters):
    """Offer ``c`` (at squared distance ``dc``) to ``t``'s pool and keep ``t``'s list equal
    to the prune of its pool. Returns True if the pool changed."""
    n = pn[t]
    cap = ps.shape[1]
    for i in range(n):
        if ps[t, i] == c:
            return False
    # position by (distance, id, version)
    k = n
    while k > 0 and _before(dc, kid[c], kver[c], pd[t, k - 1], kid[ps[t, k - 1]],
                            kver[ps[t, k - 1]]):
        k -= 1
    if k >= cap:
        return False
    dropped = -1
    if n == cap:
        dropped = ps[t, cap - 1]
        n -= 1
    for i in range(n, k, -1):
        ps[t, i] = ps[t, i - 1]
        pd[t, i] = pd[t, i - 1]
    ps[t, k] = c
    pd[t, k] = dc
    pn[t] = n + 1
    if dropped >= 0 and kd[t] > 0 and nbrs[t, kd[t] - 1] == dropped:
        kd[t] -= 1  # the pool's last member left; nothing came after it
    if alive[c] == 0 or c == t:
        _fill(t, alive, ps, pn, nbrs, deg, kd, R)
        return True
    m = _kept_before(t, k, ps, nbrs, kd)
    if m < R:
        for j in range(m):
            dsc = _d2(vecs, nbrs[t, j], c)
            counters[0] += 1
            if dsc == 0.0 or dc > alpha * dsc:
                m = R  # occluded: the kept members are as they were
                break
    if m >= R:
        _fill(t, alive, ps, pn, nbrs, deg, kd, R)
        return True
    _admit(t, k, m, vecs, alive, ps, pd, pn, nbrs, deg, kd, R, alpha, counters)
    return True


# (id, version) -> slot, as a flat open-addressing table the offer path reads in one
# kernel call per entry instead of a Python dict lookup per key (the dict ``_slot`` stays
# the reference; the table is rebuilt from the slots and never reaches the state).

_H1 = np.int64(-7046029254386353131)  # 0x9E3779B97F4A7C15 as int64: multiplication wraps
_H2 = np.int64(-4658895280553007687)  # 0xBF58476D1CE4E5B9 as int64


@njit(inline="always")
def _pbucket(i, v, mask):
    h = i * _H1 + v * _H2
    return (h >> 29) & mask


@njit(cache=True)
def _table_put(tid, tver, tval, tused, i, v, s):
    mask = tid.shape[0] - 1
    b = _pbucket(i, v, mask)
    while tused[b] and not (tid[b] == i and tver[b] == v):
        b = (b + 1) & mask
    tused[b] = 1
    tid[b] = i
    tver[b] = v
    tval[b] = s


@njit(cache=True)
def _table_fill(tid, tver, tval, tused, kid, kver, n):
    for s in range(n):
        _table_put(tid, tver, tval, tused, kid[s], kver[s], s)


@njit(cache=True)
def _table_get(tid, tver, tval, tused, keys, out):
    """``out[k]`` = the slot of incarnation ``keys[k]`` (an (n, 2) array), -1 if absent."""
    mask = tid.shape[0] - 1
    for k in range(keys.shape[0]):
        i = keys[k, 0]
        v = keys[k, 1]
        b = _pbucket(i, v, mask)
        out[k] = -1
        while tused[b]:
            if tid[b] == i and tver[b] == v:
                out[k] = tval[b]
                break
            b = (b + 1) & mask


@njit(cache=True)
def _offer_many(ts, cs, vecs, kid, kver, alive, ps, pd, pn, nbrs, deg, kd, R, alpha,
                counters):
    """Offer ``cs[i]`` to ``ts[i]`` for every i (both present)."""
    for i in range(ts.shape[0]):
        t = ts[i]
        c = cs[i]
        if t == c:
            continue
        dc = _d2(vecs, t, c)
        counters[0] += 1
        _offer(t, c, dc, vecs, kid, kver, alive, ps, pd, pn, nbrs, deg, kd, R, alpha,
               counters)


@njit(cache=True)
def _kill(x, n_slots, vecs, alive, ps, pd, pn, nbrs, deg, kd, R, alpha, counters):
    """``x`` died (``alive[x]`` is already 0): re-prune every list that held it (from its
    pool position if it was kept, else only the fill)."""
    for t in range(n_slots):
        at = -1
        for j in range(deg[t]):
            if nbrs[t, j] == x:
                at = j
                break
        if at < 0:
            continue
        if at >= kd[t]:
            _fill(t, alive, ps, pn, nbrs, deg, kd, R)
            continue
        for i in range(pn[t]):
            if ps[t, i] == x:
                m = _kept_before(t, i, ps, nbrs, kd)
                _prune_from(t, i + 1, m, vecs, alive, ps, pd, pn, nbrs, deg, kd, R, alpha,
                            counters)
                break


@njit(inline="always")
def _beam_put(n, d, kid, kver, bid, bd, bexp, size, L):
    """Put slot ``n`` at distance ``d`` into the beam (``size`` slots sorted by (distance,
    id, version), at most ``L``). Returns the new size and where ``n`` went (``L``: not
    taken)."""
    if size == L and not _before(d, kid[n], kver[n], bd[L - 1], kid[bid[L - 1]],
                                 kver[bid[L - 1]]):
        return size, L
    lo = size if size < L else L - 1
    while lo > 0 and _before(d, kid[n], kver[n], bd[lo - 1], kid[bid[lo - 1]],
                             kver[bid[lo - 1]]):
        lo -= 1
    last = size if size < L else L - 1
    for u in range(last, lo, -1):
        bid[u] = bid[u - 1]
        bd[u] = bd[u - 1]
        bexp[u] = bexp[u - 1]
    bid[lo] = n
    bd[lo] = d
    bexp[lo] = 0
    if size < L:
        size += 1
    return size, lo


@njit(cache=True)
def _beam(q, entries, vecs, kid, kver, nbrs, deg, L, vis, stamp, bid, bd, bexp, counters):
    """Greedy beam search from the slots ``entries``: the best ``L`` slots by (distance,
    id, version), dead ones included (callers filter). Returns the beam size; ``bexp[i]``
    is 1 for the beam members expanded."""
    size = 0
    nd = 0
    for e in entries:
        if vis[e] == stamp:
            continue
        vis[e] = stamp
        nd += 1
        size, _ = _beam_put(e, _dq(vecs, e, q), kid, kver, bid, bd, bexp, size, L)
    cur = 0
    while cur < size:
        node = bid[cur]
        bexp[cur] = 1
        counters[1] += 1
        best = size
        for t in range(deg[node]):
            n = nbrs[node, t]
            if vis[n] == stamp:
                continue
            vis[n] = stamp
            nd += 1
            size, lo = _beam_put(n, _dq(vecs, n, q), kid, kver, bid, bd, bexp, size, L)
            if lo < best:
                best = lo
        k = cur if cur < best else best
        while k < size and bexp[k] == 1:
            k += 1
        cur = k
    counters[0] += nd
    return size


@njit(cache=True)
def _mark(entries, nbrs, deg, queue, mark):
    """Mark every slot reachable from the slots ``entries`` (those marked already, and
    what only they reach, are skipped)."""
    head = 0
    tail = 0
    for e in entries:
        if mark[e] == 0:
            mark[e] = 1
            queue[tail] = e
            tail += 1
    while head < tail:
        u = queue[head]
        head += 1
        for t in range(deg[u]):
            v = nbrs[u, t]
            if mark[v] == 0:
                mark[v] = 1
                queue[tail] = v
                tail += 1


@njit(cache=True)
def _rescue(entries, order, alive, present, nbrs, deg, queue, mark):
    """The rescue points' slots: walking the slots ``order`` (the canonical order), each
    live one not reached from ``entries`` or an earlier rescue point becomes one.
    ``mark`` must start all zero."""
    _mark(entries, nbrs, deg, queue, mark)
    out = np.empty(order.size, dtype=np.int32)
    k = 0
    one = np.empty(1, dtype=np.int32)
    for s in order:
        if alive[s] == 1 and present[s] == 1 and mark[s] == 0:
            out[k] = s
            k += 1
            one[0] = s
            _mark(one, nbrs, deg, queue, mark)
    return out[:k]


@njit(cache=True)
def _reach(entries, n_slots, nbrs, deg, alive, present, queue, mark):
    """Live slots a search from the slots ``entries`` can never reach."""
    for i in range(n_slots):
        mark[i] = 0
    _mark(entries, nbrs, deg, queue, mark)
    out = 0
    for i in range(n_slots):
        if alive[i] == 1 and present[i] == 1 and mark[i] == 0:
            out += 1
    return out


# --------------------------------------------------------------------------- the graph


class PoolGraph:
    """A convergent graph index over float32 vectors (squared L2), see the module docstring.

    Parameters: ``dim``; ``R`` the out-degree cap; ``L`` the beam width of a local insert's
    search and the default of queries; ``alpha`` RobustPrune's slack on squared
    distances; ``pool`` the candidates each node keeps (default ``3 * R``: a smaller pool
    drops the far candidates that give a node its long edges and in-edges);
    ``origin_bits`` how many low bits of a version name its origin (one entry point per
    origin, see the module docstring).

    Mutations: :meth:`add` (an incarnation's vector), :meth:`tombstone`, :meth:`offer`
    (candidate additions). Each is idempotent and they commute. :meth:`candidates_for`
    finds, by a search of the current state, the pool a new node's insert offers it.
    """

    def __init__(self, dim: int, R: int = 32, L: int = 64, alpha: float = 1.2,
                 pool: int = 0, capacity: int = 256, origin_bits: int = 0) -> None:
        for name, v, lo in (("dim", dim, 1), ("R", R, 1), ("L", L, 1), ("pool", pool, 0),
                            ("capacity", capacity, 1), ("origin_bits", origin_bits, 0)):
            if not isinstance(v, int | np.integer) or isinstance(v, bool) or v < lo:
                raise InvalidArgument(f"{name} must be an int >= {lo}, got {v!r}")
        if not (isinstance(alpha, int | float) and np.isfinite(alpha) and alpha >= 1.0):
            raise InvalidArgument(f"alpha must be a finite float >= 1, got {alpha!r}")
        self.dim, self.R, self.L = int(dim), int(R), int(L)
        self.alpha = np.float32(alpha)
        self.pool = int(pool) or 3 * self.R
        if self.pool < self.R:
            raise InvalidArgument(f"pool ({self.pool}) must be >= R ({self.R}): a list is "
                                  "chosen from the pool")
        self._n = 0
        self._cap = 0
        self._ghosts = 0  # forgotten incarnations still named by a pool (see forget)
        self._slot: dict[tuple[int, int], int] = {}
        self._table_size = 0
        self._best: dict[int, int] = {}  # id -> largest version present
        self._tomb: dict[int, int] = {}  # id -> largest tombstone version
        self._pending: dict[int, list[tuple[int, int]]] = {}  # placeholder -> offers
        self._multi: set[int] = set()  # ids that have had two incarnations here
        self._forget: dict[int, int] = {}  # id -> forgotten below this version (forget)
        if origin_bits > 16:
            raise InvalidArgument(f"origin_bits must be <= 16, got {origin_bits!r}")
        self.origin_bits = int(origin_bits)
        self._entries: dict[int, int] = {}  # origin -> slot of its smallest live id
        self._stamp = 0
        self._changes = 0  # bumped by every mutation: the rescue points' cache key
        self._rescue: tuple[int, np.ndarray] = (-1, np.empty(0, np.int32))
        self.counters = np.zeros(2, dtype=np.int64)
        """[0] distance computations, [1] nodes expanded by searches."""
        self._grow(int(capacity))

    # ------------------------------------------------------------------ storage
    def _grow(self, cap: int) -> None:
        """Room for ``cap`` slots. The key arrays (``kid``, ``kver``, ``alive``,
        ``present``) also hold the ghosts, at ``cap`` and above (see :meth:`forget`), so
        pool references to ghosts move with ``cap``."""
        old, n, g = self._cap, self._n, self._ghosts
        vecs = np.zeros((cap, self.dim), dtype=np.float32)
        kid = np.zeros(cap + g, dtype=np.int64)
        kver = np.zeros(cap + g, dtype=np.int64)
        alive = np.zeros(cap + g, dtype=np.uint8)
        present = np.zeros(cap + g, dtype=np.uint8)
        ps = np.full((cap, self.pool), -1, dtype=np.int32)
        pd = np.zeros((cap, self.pool), dtype=np.float32)
        pn = np.zeros(cap, dtype=np.int32)
        nbrs = np.full((cap, self.R), -1, dtype=np.int32)
        deg = np.zeros(cap, dtype=np.int32)
        kd = np.zeros(cap, dtype=np.int32)
        if old:
            vecs[:n], kid[:n], kver[:n] = self.vecs[:n], self.kid[:n], self.kver[:n]
            alive[:n], present[:n] = self.alive[:n], self.present[:n]
            kid[cap:], kver[cap:] = self.kid[old:old + g], self.kver[old:old + g]
            ps[:n], pd[:n], pn[:n] = self.ps[:n], self.pd[:n], self.pn[:n]
            if g and cap != old:
                ref = ps[:n]
                ref[ref >= old] += cap - old
            nbrs[:n], deg[:n], kd[:n] = self.nbrs[:n], self.deg[:n], self.kd[:n]
        self.vecs, self.kid, self.kver, self.alive, self.present = vecs, kid, kver, alive, present
        self.ps, self.pd, self.pn, self.nbrs, self.deg, self.kd = ps, pd, pn, nbrs, deg, kd
        self._vis = np.zeros(cap, dtype=np.int64)
        self._cap = cap

    def _slot_for(self, id_: int, ver: int) -> int:
        """The slot of incarnation (id, ver), a placeholder if it has not arrived."""
        key = (id_, ver)
        s = self._slot.get(key)
        if s is not None:
            return s
        if self._n == self._cap:
            self._grow(2 * self._cap)
        s = self._n
        self._n += 1
        self._slot[key] = s
        self.kid[s] = id_
        self.kver[s] = ver
        if 2 * self._n > self._table_size:
            self._rebuild_table()
        else:
            _table_put(self._tid, self._tver, self._tval, self._tused, np.int64(id_),
                       np.int64(ver), np.int32(s))
        return s

    def _rebuild_table(self) -> None:
        """The (id, version) -> slot table, at least four times the slots in use."""
        size = 64
        while size < 4 * max(self._n, 1):
            size *= 2
        self._tid = np.zeros(size, dtype=np.int64)
        self._tver = np.zeros(size, dtype=np.int64)
        self._tval = np.zeros(size, dtype=np.int32)
        self._tused = np.zeros(size, dtype=np.uint8)
        self._table_size = size
        _table_fill(self._tid, self._tver, self._tval, self._tused, self.kid, self.kver,
                    self._n)

    def _slots_of(self, keys: Any) -> np.ndarray:
        """Slots of the incarnations ``keys`` (pairs), placeholders made for the absent
        ones in the order they are named."""
        arr = np.ascontiguousarray(np.asarray(keys, dtype=np.int64).reshape(-1, 2))
        out = np.empty(arr.shape[0], dtype=np.int32)
        if self._table_size == 0:
            self._rebuild_table()
        _table_get(self._tid, self._tver, self._tval, self._tused, arr, out)
        return out

    def _args(self) -> tuple:
        return (self.vecs, self.kid, self.kver, self.alive, self.ps, self.pd, self.pn,
                self.nbrs, self.deg, self.kd, self.R, self.alpha, self.counters)

    # ------------------------------------------------------------------ liveness
    def _lives(self, s: int) -> bool:
        i, v = int(self.kid[s]), int(self.kver[s])
        return bool(self.present[s]) and self._best.get(i) == v and v > self._tomb.get(i, -1)

    def _die(self, s: int) -> None:
        if not self.alive[s]:
            return
        self.alive[s] = 0
        _kill(s, self._n, self.vecs, self.alive, self.ps, self.pd, self.pn, self.nbrs,
              self.deg, self.kd, self.R, self.alpha, self.counters)
        o = self._origin(s)
        if self._entries.get(o) == s:
            e = self._smallest_live(o)
            if e < 0:
                del self._entries[o]
            else:
                self._entries[o] = e

    def _origin(self, s: int) -> int:
        return int(self.kver[s]) & ((1 << self.origin_bits) - 1)

    def _smallest_live(self, origin: int) -> int:
        """The slot of the live node of ``origin`` with the smallest id (-1: none)."""
        n = self._n
        live = np.flatnonzero(self.alive[:n])
        mask = (1 << self.origin_bits) - 1
        live = live[(self.kver[live] & mask) == origin]
        if live.size == 0:
            return -1
        return int(live[np.argmin(self.kid[live])])

    def _entry_slots(self) -> np.ndarray:
        """The entry points' slots, by id."""
        slots = sorted(self._entries.values(), key=lambda s: int(self.kid[s]))
        return np.asarray(slots, dtype=np.int32)

    def recomputed_entries(self) -> dict[int, int]:
        """The entry points recomputed from the live set (the reference for the kept ones)."""
        out = {}
        for s in np.flatnonzero(self.alive[: self._n]).tolist():
            o = self._origin(s)
            if o not in out or self.kid[s] < self.kid[out[o]]:
                out[o] = s
        return out

    # ------------------------------------------------------------------ mutations
    def add(self, id_: int, version: int, vector: Any) -> bool:
        """The vector of incarnation ``(id_, version)``. Returns False if it was here
        already (same vector: nothing changes). It lives if ``version`` is the id's
        largest and above its tombstone; the incarnation it supersedes dies."""
        vec = self._vector(vector)
        s = self._slot_for(int(id_), int(version))
        self._changes += 1
        if self.present[s]:
            if not np.array_equal(self.vecs[s], vec):
                raise InvalidArgument(f"incarnation ({id_}, {version}) arrived with two "
                                      "different vectors: versions must be unique per write")
            return False
        self.vecs[s] = vec
        self.present[s] = 1
        prev = self._best.get(int(id_))
        if prev is not None:
            self._multi.add(int(id_))
        if prev is None or int(version) > prev:
            self._best[int(id_)] = int(version)
            if prev is not None:
                self._die(self._slot[(int(id_), prev)])
        if self._lives(s):
            self.alive[s] = 1
            o = self._origin(s)
            e = self._entries.get(o)
            if e is None or self.kid[s] < self.kid[e]:
                self._entries[o] = s
        waiting = self._pending.pop(s, [])
        if waiting:
            self._offer_pairs(waiting)
        return True

    def tombstone(self, id_: int, version: int) -> None:
        """Kill every incarnation of ``id_`` older than ``version`` (now or on arrival)."""
        i, v = int(id_), int(version)
        if v <= self._tomb.get(i, -1):
            return
        self._changes += 1
        self._tomb[i] = v
        b = self._best.get(i)
        if b is not None and b < v:
            self._die(self._slot[(i, b)])

    def forget(self, id_: int, version: int) -> None:
        """Forget ``id_``'s past below ``version``: every incarnation of ``id_`` older than
        ``version`` (each dead: ``version`` is a tombstone of the id or an incarnation
        that supersedes them) and its tombstone, unless newer than ``version``.

        The caller promises that no offer, tombstone or vector naming a forgotten
        incarnation will be merged again: the replication layer calls this once every
        region has passed the write that killed them (a cut of version vectors). A
        forgotten incarnation that a pool still names stays there as a *ghost*: its
        (distance, id, version) keeps its place, so the pool remains the same function of
        the offers ever made, while its vector, pool and list are freed. Readers (reads,
        :meth:`digest`, :meth:`to_bytes`) see the forgotten past gone at once; the memory
        is reclaimed in batches (:meth:`compact`), which changes nothing they see."""
        i, v = int(id_), int(version)
        tb, b = self._tomb.get(i), self._best.get(i)
        if b is not None and b < v and self.alive[self._slot[(i, b)]]:
            raise InvalidArgument(f"forget({i}, {v}): incarnation ({i}, {b}) is alive; "
                                  "forget below a tombstone or a newer incarnation only")
        if (tb is None or tb > v) and (b is None or b >= v) and i not in self._multi:
            return  # nothing of the id is older than ``version``
        if v > self._forget.get(i, v - 1):
            self._forget[i] = v
        if len(self._forget) >= max(64, self._n // 8):
            self.compact()

    def holds_past(self, id_: int, version: int) -> bool:
        """Whether an incarnation of ``id_`` older than ``version`` may still be held here
        (not forgotten yet): true for an id that has had two incarnations here, until
        :meth:`forget` drops those below ``version``. An insert that kills nothing (the
        id's first) gives False."""
        i = int(id_)
        return i in self._multi and self._forget.get(i, -1) < int(version)

    def _forgotten(self, id_: int, version: int) -> bool:
        f = self._forget.get(id_)
        return f is not None and version < f

    def compact(self) -> None:
        """Free what :meth:`forget` dropped: renumber the slots without the forgotten
        incarnations, keep only the ghosts some pool still names, shrink the arrays.
        Changes the slot layout only, which nothing a reader sees depends on."""
        if not self._forget:
            return
        n, cap, g = self._n, self._cap, self._ghosts
        fid = np.array(sorted(self._forget), dtype=np.int64)
        fver = np.array([self._forget[i] for i in fid.tolist()], dtype=np.int64)
        kid, kver = self.kid[:n], self.kver[:n]
        at = np.minimum(np.searchsorted(fid, kid), fid.size - 1)
        gone = (fid[at] == kid) & (kver < fver[at]) & (self.alive[:n] == 0)
        keep = np.flatnonzero(~gone)
        m = int(keep.size)
        kept_ps = self.ps[keep]
        remap = np.full(cap + g, -1, dtype=np.int64)
        remap[keep] = np.arange(m)
        refs = kept_ps[kept_ps >= 0]
        ghosts = np.unique(refs[remap[refs] < 0])  # forgotten now or before, still named
        new_cap = max(m + m // 2, 16)
        remap[ghosts] = new_cap + np.arange(ghosts.size)
        G = int(ghosts.size)

        def keyed(a: np.ndarray, ghost_value: bool) -> np.ndarray:
            out = np.zeros(new_cap + G, dtype=a.dtype)
            out[:m] = a[keep]
            if ghost_value:
                out[new_cap:] = a[ghosts]
            return out

        def rows(kept: np.ndarray, fill: int = 0) -> np.ndarray:
            out = np.full((new_cap, *kept.shape[1:]), fill, dtype=kept.dtype)
            out[:m] = kept
            return out

        def renumbered(kept: np.ndarray) -> np.ndarray:  # slots in pools and lists
            return rows(np.where(kept >= 0, remap[kept], -1).astype(np.int32), -1)

        self.ps, self.nbrs = renumbered(kept_ps), renumbered(self.nbrs[keep])
        self.kid, self.kver = keyed(self.kid, True), keyed(self.kver, True)
        self.alive, self.present = keyed(self.alive, False), keyed(self.present, False)
        self.vecs, self.pd = rows(self.vecs[keep]), rows(self.pd[keep])
        self.pn, self.deg, self.kd = rows(self.pn[keep]), rows(self.deg[keep]), rows(self.kd[keep])
        self._entries = {o: int(remap[s]) for o, s in self._entries.items()}
        pending: dict[int, list[tuple[int, int]]] = {}
        for k, pairs in self._pending.items():
            if 0 <= remap[k] < new_cap:
                got = [(int(remap[t]), int(remap[c])) for t, c in pairs
                       if 0 <= remap[t] < new_cap and 0 <= remap[c] < new_cap]
                if got:
                    pending[int(remap[k])] = got
        self._pending = pending
        for i, v in self._forget.items():
            if self._best.get(i, v) < v:
                del self._best[i]
            if self._tomb.get(i, v + 1) <= v:
                del self._tomb[i]
        left, counts = np.unique(self.kid[:m][np.isin(self.kid[:m], fid)], return_counts=True)
        many = set(left[counts > 1].tolist())
        self._multi -= {i for i in self._forget if i not in many}
        self._forget = {}
        self._n, self._cap, self._ghosts = m, new_cap, G
        self._slot = dict(zip(zip(self.kid[:m].tolist(), self.kver[:m].tolist(), strict=True),
                              range(m), strict=True))
        self._vis = np.zeros(new_cap, dtype=np.int64)
        self._rebuild_table()
        self._changes += 1

    def offer(self, targets: Sequence[tuple[int, int]],
              candidates: Sequence[tuple[int, int]]) -> None:
        """Offer ``candidates[k]`` to the pool of ``targets[k]`` (incarnations as (id,
        version)); offers naming an incarnation not here yet wait for it."""
        if len(targets) != len(candidates):
            raise InvalidArgument(f"{len(targets)} targets for {len(candidates)} candidates")
        if len(targets) == 0:
            return
        ts, cs = self._slots_of(targets), self._slots_of(candidates)
        miss = np.flatnonzero((ts < 0) | (cs < 0))
        if miss.size:  # placeholders, made in the order of the pairs (target first)
            tk = np.asarray(targets, dtype=np.int64).reshape(-1, 2)
            ck = np.asarray(candidates, dtype=np.int64).reshape(-1, 2)
            for k in miss.tolist():
                if ts[k] < 0:
                    ts[k] = self._slot_for(int(tk[k, 0]), int(tk[k, 1]))
                if cs[k] < 0:
                    cs[k] = self._slot_for(int(ck[k, 0]), int(ck[k, 1]))
        self._offer_slots(ts, cs)

    def offer_around(self, key: tuple[int, int], pool: Any, back: Any) -> None:
        """Offer each of ``pool`` to incarnation ``key`` and ``key`` to each of ``back``
        (an insert's candidate additions): :meth:`offer` both ways, in one lookup and
        one kernel call."""
        me = (int(key[0]), int(key[1]))
        s = self._slot.get(me)
        na, nb = len(pool), len(back)
        slots = None
        if s is not None and self.present[s] and na + nb:
            slots = self._slots_of(np.concatenate([
                np.asarray(pool, dtype=np.int64).reshape(-1, 2),
                np.asarray(back, dtype=np.int64).reshape(-1, 2)]))
        if slots is None or (slots < 0).any():  # some not here yet: offers that wait
            self.offer([me] * na, pool)
            self.offer(back, [me] * nb)
            return
        mine = np.full(na + nb, s, dtype=np.int32)
        ts = np.concatenate([mine[:na], slots[na:]])
        cs = np.concatenate([slots[:na], mine[na:]])
        self._offer_slots(ts, cs)

    def _offer_pairs(self, pairs: Iterable[tuple[int, int]]) -> None:
        got = list(pairs)
        if got:
            a = np.asarray(got, dtype=np.int32).reshape(-1, 2)
            self._offer_slots(np.ascontiguousarray(a[:, 0]), np.ascontiguousarray(a[:, 1]))

    def _offer_slots(self, ts: np.ndarray, cs: np.ndarray) -> None:
        """Offer slot ``cs[k]`` to slot ``ts[k]``: at once where both are here, else kept
        pending on the missing one (in the order given)."""
        self._changes += 1
        present = self.present
        ready = (present[ts] == 1) & (present[cs] == 1)
        if not ready.all():
            for t, c in zip(ts[~ready].tolist(), cs[~ready].tolist(), strict=True):
                self._pending.setdefault(t if not present[t] else c, []).append((t, c))
        if ready.any():
            _offer_many(np.ascontiguousarray(ts[ready]), np.ascontiguousarray(cs[ready]),
                        *self._args())

    # ------------------------------------------------------------------ search
    def _search_slots(self, q: np.ndarray, L: int, starts: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
        """The beam (slots, distances), dead slots included, from the slots ``starts``
        (default: the entry points)."""
        if not self._entries:
            return np.empty(0, np.int32), np.empty(0, np.float32)
        self._stamp += 1
        bid = np.empty(L, dtype=np.int32)
        bd = np.empty(L, dtype=np.float32)
        bexp = np.zeros(L, dtype=np.uint8)
        if starts is None:
            starts = self._entry_slots()
        size = _beam(q, starts, self.vecs, self.kid, self.kver, self.nbrs, self.deg, L,
                     self._vis, self._stamp, bid, bd, bexp, self.counters)
        return bid[:size], bd[:size]

    def _rescue_slots(self) -> np.ndarray:
        """The rescue points' slots (see the module docstring), recomputed after a change."""
        if self._rescue[0] != self._changes:
            n = self._n
            order = np.lexsort((self.kver[:n], self.kid[:n])).astype(np.int32)
            slots = _rescue(self._entry_slots(), order, self.alive, self.present, self.nbrs,
                            self.deg, np.empty(max(n, 1), np.int32),
                            np.zeros(max(n, 1), np.uint8))
            self._rescue = (self._changes, slots)
        return self._rescue[1]

    def _search_starts(self) -> np.ndarray:
        """Where a query's search starts: the entry points, then the rescue points."""
        return np.concatenate([self._entry_slots(), self._rescue_slots()])

    def rescue_points(self) -> list[tuple[int, int]]:
        """The live nodes a query's search starts from besides the entry points, as
        (id, version): the smallest unreachable one, then the smallest not reachable
        from it either, and so on (empty when the entry points reach every live node)."""
        return [(int(self.kid[s]), int(self.kver[s])) for s in self._rescue_slots()]

    def candidates_for(self, vector: Any) -> list[tuple[int, int]]:
        """The pool a new node at ``vector`` gets from a search of the current state with
        beam ``L``: the live incarnations found, best ``pool`` of them by (distance, id,
        version). Changes nothing but the counters. An insert offers these to the new
        node (:meth:`offer`), then offers the new node back to the members of its list."""
        vec = self._vector(vector)
        slots, _ = self._search_slots(vec, self.L)
        live = [int(s) for s in slots if self.alive[s]][: self.pool]
        return [(int(self.kid[s]), int(self.kver[s])) for s in live]

    def nearest_among(self, vector: Any, keys: Sequence[tuple[int, int]], k: int
                      ) -> list[tuple[int, int]]:
        """The ``k`` live incarnations of ``keys`` nearest to ``vector``, by (distance, id,
        version): a scan of those candidates, no search. Changes nothing but the
        counters."""
        vec = self._vector(vector)
        if len(keys) == 0:
            return []
        idx = self._slots_of(keys).astype(np.int64)
        idx = idx[idx >= 0]
        idx = idx[self.alive[idx] == 1]
        if idx.size == 0:
            return []
        diff = self.vecs[idx] - vec
        d = np.einsum("ij,ij->i", diff, diff)
        self.counters[0] += idx.size
        order = np.lexsort((self.kver[idx], self.kid[idx], d))[:k]
        return [(int(self.kid[idx[o]]), int(self.kver[idx[o]])) for o in order]

    def search(self, queries: Any, k: int = 10, L: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest live ids and squared distances, for one query (1-d) or a batch
        (2-d); missing results are id -1, distance inf. ``L``: beam width (default the
        graph's ``L``, at least ``k``)."""
        arr = np.asarray(queries, dtype=np.float32)
        single = arr.ndim == 1
        Q = arr[None, :] if single else arr
        if Q.ndim != 2 or Q.shape[1] != self.dim:
            raise DimensionMismatch(f"queries must have {self.dim} columns, got shape "
                                    f"{arr.shape}")
        if not np.isfinite(Q).all():
            raise InvalidVector("queries contain NaN or inf")
        if not self._entries:
            raise EmptyIndex("search on an empty graph: add vectors first")
        beam = max(k, L or self.L)
        ids = np.full((Q.shape[0], k), -1, dtype=np.int64)
        dists = np.full((Q.shape[0], k), np.inf, dtype=np.float32)
        starts = self._search_starts()
        for r in range(Q.shape[0]):
            slots, d = self._search_slots(np.ascontiguousarray(Q[r]), beam, starts)
            keep = self.alive[slots] == 1
            slots, d = slots[keep][:k], d[keep][:k]
            ids[r, : slots.size] = self.kid[slots]
            dists[r, : slots.size] = d
        return (ids[0], dists[0]) if single else (ids, dists)

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return int(self.alive[: self._n].sum())

    def __contains__(self, id_: object) -> bool:
        b = self._best.get(id_)  # type: ignore[call-overload]
        return b is not None and bool(self.alive[self._slot[(id_, b)]])  # type: ignore[index]

    def would_take(self, target: tuple[int, int], cand: tuple[int, int]) -> bool:
        """Whether offering ``cand`` to ``target`` would change ``target``'s pool now: both
        here, and the pool has room or ``cand`` comes before its last member by (distance,
        id, version). (A filter for links; an offer that changes nothing is harmless.)"""
        t, c = self._slot.get(target), self._slot.get(cand)
        if t is None or c is None or t == c or not (self.present[t] and self.present[c]):
            return False
        n = int(self.pn[t])
        if n < self.pool:
            return True
        self.counters[0] += 1
        d = _d2(self.vecs, t, c)
        last = int(self.ps[t, n - 1])
        return _before(d, self.kid[c], self.kver[c], self.pd[t, n - 1], self.kid[last],
                       self.kver[last])

    def keys(self) -> list[tuple[int, int]]:
        """Every incarnation ``(id, version)`` whose vector is here, live or not (and not
        forgotten)."""
        self.compact()
        n = self._n
        return [(int(self.kid[s]), int(self.kver[s])) for s in range(n) if self.present[s]]

    def is_live(self, id_: int, version: int) -> bool:
        """Whether incarnation ``(id_, version)`` is here and alive."""
        s = self._slot.get((int(id_), int(version)))
        return s is not None and bool(self.alive[s])

    def ids(self, include_deleted: bool = False) -> np.ndarray:
        """Ids with a live incarnation, sorted (``include_deleted``: every id with a
        vector here, not forgotten)."""
        if include_deleted:
            self.compact()
        n = self._n
        mask = self.present[:n] == 1 if include_deleted else self.alive[:n] == 1
        return np.unique(self.kid[:n][mask])

    def is_deleted(self, id_: int) -> bool:
        return self.version(id_) is not None and id_ not in self

    @property
    def entry_id(self) -> int:
        """The smallest id among the entry points (-1: empty)."""
        slots = self._entry_slots()
        return int(self.kid[slots[0]]) if slots.size else -1

    @property
    def entry_ids(self) -> list[int]:
        """The entry points' ids, one per origin with a live node, ascending."""
        return [int(self.kid[s]) for s in self._entry_slots()]

    def version(self, id_: int) -> int | None:
        """The largest version of ``id_`` here (live or not), or None."""
        b = self._best.get(int(id_))
        return None if b is None or self._forgotten(int(id_), b) else b

    def tombstone_version(self, id_: int) -> int | None:
        t = self._tomb.get(int(id_))
        return None if t is None or self._forgotten(int(id_), t - 1) else t

    def vector(self, id_: int, version: int) -> np.ndarray:
        s = self._slot.get((int(id_), int(version)))
        if s is None or not self.present[s] or self._forgotten(int(id_), int(version)):
            raise InvalidArgument(f"incarnation ({id_}, {version}) is not here")
        return self.vecs[s].copy()

    def neighbors(self, id_: int) -> np.ndarray:
        """The out-neighbour ids of ``id_``'s live incarnation, sorted."""
        b = self._best.get(int(id_))
        if b is None:
            raise InvalidArgument(f"id {id_} is not here")
        s = self._slot[(int(id_), b)]
        return np.sort(self.kid[self.nbrs[s, : self.deg[s]]])

    def in_neighbors(self, id_: int, version: int) -> list[tuple[int, int]]:
        """The incarnations whose lists hold ``(id_, version)``, sorted."""
        s = self._slot.get((int(id_), int(version)))
        if s is None:
            return []
        n = self._n
        held = (self.nbrs[:n] == s).any(axis=1)
        return sorted((int(self.kid[t]), int(self.kver[t])) for t in np.flatnonzero(held))

    def list_of(self, id_: int, version: int) -> list[tuple[int, int]]:
        s = self._slot.get((int(id_), int(version)))
        if s is None or self._forgotten(int(id_), int(version)):
            return []
        return [(int(self.kid[x]), int(self.kver[x])) for x in self.nbrs[s, : self.deg[s]]]

    def garbage(self) -> dict[str, int]:
        """What the dead still hold: ``tombstones``, ``dead`` incarnations with a slot of
        their own, and ``ghosts`` (forgotten ones a pool still names, see :meth:`forget`).
        Compacts first."""
        self.compact()
        n = self._n
        dead = int(((self.present[:n] == 1) & (self.alive[:n] == 0)).sum())
        return {"tombstones": len(self._tomb), "dead": dead, "ghosts": self._ghosts}

    @property
    def pending(self) -> int:
        """Offers waiting for an incarnation that has not arrived."""
        return sum(len(v) for v in self._pending.values())

    @property
    def distance_computations(self) -> int:
        return int(self.counters[0])

    def unreachable_count(self) -> int:
        """Live nodes a query's search can never reach (from the entry points and the
        rescue points: none, unless the rescue points are stale)."""
        return self._unreached(self._search_starts())

    def orphan_count(self) -> int:
        """Live nodes the entry points alone cannot reach: what the rescue points stand
        in for (a measure of the graph, not of search)."""
        return self._unreached(self._entry_slots())

    def _unreached(self, starts: np.ndarray) -> int:
        n = self._n
        return int(_reach(starts, n, self.nbrs, self.deg, self.alive, self.present,
                          np.empty(max(n, 1), np.int32), np.zeros(max(n, 1), np.uint8)))

    def graph_problems(self) -> list[str]:
        """Violations of the graph's invariants (empty when healthy): degree <= R, every
        edge to a live node other than itself, no duplicate, every list the prune of its
        pool, an entry point when anything lives."""
        out = []
        n = self._n
        want = self.recomputed_lists()
        for s in range(n):
            lst = self.nbrs[s, : self.deg[s]].tolist()
            name = (int(self.kid[s]), int(self.kver[s]))
            if len(lst) > self.R or len(set(lst)) != len(lst):
                out.append(f"node {name}: bad list {lst}")
            if any(not self.alive[x] or x == s for x in lst):
                out.append(f"node {name}: edge to a dead node or itself")
            if lst != want[s]:
                out.append(f"node {name}: list {lst} is not the prune of its pool {want[s]}")
        if self._entries != self.recomputed_entries():
            out.append(f"entry points {self._entries} are not each origin's smallest live "
                       f"id {self.recomputed_entries()}")
        return out

    def recomputed_lists(self) -> list[list[int]]:
        """Every list recomputed from its pool from scratch (slots; the reference the
        incremental updates must equal)."""
        nbrs = self.nbrs.copy()
        deg = self.deg.copy()
        kd = self.kd.copy()
        counters = np.zeros(2, dtype=np.int64)
        out = []
        for s in range(self._n):
            _prune_from(s, 0, 0, self.vecs, self.alive, self.ps, self.pd, self.pn, nbrs, deg,
                        kd, self.R, self.alpha, counters)
            out.append(nbrs[s, : deg[s]].tolist())
        return out

    def digest(self) -> bytes:
        """BLAKE2b-256 of the logical state, independent of slot layout: settings, entry
        id, tombstones, and every incarnation in (id, version) order with its liveness,
        vector, pool (as (id, version, distance): ghosts too) and list (as (id, version)).
        What :meth:`forget` dropped is not in it, whether compacted yet or not."""
        self.compact()
        n = self._n
        order = np.lexsort((self.kver[:n], self.kid[:n])) if n else np.empty(0, np.int64)
        h = hashlib.blake2b(digest_size=32)
        h.update(msgpack.packb([_FORMAT, self.dim, self.R, self.pool, float(self.alpha),
                                self.origin_bits, self.entry_ids,
                                sorted(self._tomb.items()), self.pending]))
        for s in order.tolist():
            pn, dg = int(self.pn[s]), int(self.deg[s])
            pool = self.ps[s, :pn]
            lst = self.nbrs[s, :dg]
            h.update(msgpack.packb([int(self.kid[s]), int(self.kver[s]), int(self.alive[s]),
                                    int(self.present[s])]))
            h.update(self.vecs[s].tobytes())
            h.update(self.kid[pool].tobytes() + self.kver[pool].tobytes()
                     + self.pd[s, :pn].tobytes())
            h.update(self.kid[lst].tobytes() + self.kver[lst].tobytes())
        return h.digest()

    # ------------------------------------------------------------------ bytes
    def to_bytes(self) -> bytes:
        """Everything, as msgpack (slot layout included, so a copy continues exactly;
        compacted first). Ghosts follow the ``n`` slots: a pool names ghost ``g`` as
        ``n + g``."""
        self.compact()
        n, cap, g = self._n, self._cap, self._ghosts
        arrays = {k: np.ascontiguousarray(getattr(self, k)[:n]).tobytes()
                  for k in ("vecs", "kid", "kver", "alive", "present", "pd", "pn",
                            "nbrs", "deg", "kd")}
        ps = self.ps[:n]
        arrays["ps"] = np.where(ps >= cap, ps - cap + n, ps).astype(np.int32).tobytes()
        return msgpack.packb({
            "format": _FORMAT, "dim": self.dim, "R": self.R, "L": self.L,
            "alpha": float(self.alpha), "pool": self.pool, "n": n, "origin_bits": self.origin_bits,
            "entries": sorted(self._entries.items()),
            "best": sorted(self._best.items()), "tomb": sorted(self._tomb.items()),
            "pending": sorted((k, sorted(v)) for k, v in self._pending.items()),
            "counters": self.counters.tolist(), "arrays": arrays,
            "multi": sorted(self._multi),
            "ghosts": [self.kid[cap:cap + g].tobytes(), self.kver[cap:cap + g].tobytes()]},
            use_bin_type=True)

    @classmethod
    def from_bytes(cls, data: bytes) -> PoolGraph:
        """Read :meth:`to_bytes`; damaged or foreign bytes raise :class:`CorruptIndexFile`."""
        try:
            d = msgpack.unpackb(data, raw=False, strict_map_key=False)
            if d["format"] not in _READS:
                raise CorruptIndexFile(f"not a pool graph (format {d['format']!r})")
            g = cls(d["dim"], d["R"], d["L"], d["alpha"], d["pool"],
                    capacity=max(1, d["n"]), origin_bits=d["origin_bits"])
            n = d["n"]
            shapes = {"vecs": (n, g.dim), "ps": (n, g.pool), "pd": (n, g.pool),
                      "nbrs": (n, g.R)}
            for k, raw in d["arrays"].items():
                arr = getattr(g, k)
                a = np.frombuffer(raw, dtype=arr.dtype).reshape(shapes.get(k, (n,)))
                arr[:n] = a
            g._n = n
            g._entries = {int(k): int(v) for k, v in d["entries"]}
            g._best = {int(k): int(v) for k, v in d["best"]}
            g._tomb = {int(k): int(v) for k, v in d["tomb"]}
            g._pending = {int(k): [tuple(p) for p in v] for k, v in d["pending"]}
            g._slot = {(int(g.kid[s]), int(g.kver[s])): s for s in range(n)}
            gkid, gkver = (np.frombuffer(b, dtype=np.int64) for b in d.get("ghosts", (b"", b"")))
            if gkid.size != gkver.size or (gkid.size and n == 0):
                raise CorruptIndexFile("pool graph bytes name ghosts without slots")
            if gkid.size:
                top = g._cap
                g._ghosts = int(gkid.size)
                g.kid = np.concatenate([g.kid, gkid])
                g.kver = np.concatenate([g.kver, gkver])
                g.alive = np.concatenate([g.alive, np.zeros(gkid.size, np.uint8)])
                g.present = np.concatenate([g.present, np.zeros(gkid.size, np.uint8)])
                ref = g.ps[:n]
                ref[ref >= n] += top - n
            if g.ps[:n].max(initial=-1) >= g._cap + g._ghosts or g.ps[:n].min(initial=0) < -1:
                raise CorruptIndexFile("pool graph bytes name slots that are not there")
            g._multi = {int(i) for i in d.get("multi", ())}
            g._rebuild_table()
            g.counters[:] = d["counters"]
        except CorruptIndexFile:
            raise
        except Exception as exc:  # any decoding failure: the bytes are not ours
            raise CorruptIndexFile(f"pool graph bytes do not load: {type(exc).__name__}: "
                                   f"{exc}") from None
        return g

    # ------------------------------------------------------------------ input checks
    def _vector(self, vector: Any) -> np.ndarray:
        v = np.asarray(vector, dtype=np.float32)
        if v.ndim != 1 or v.shape[0] != self.dim:
            raise DimensionMismatch(f"a vector of {self.dim} floats is needed, got shape "
                                    f"{v.shape}")
        if not np.isfinite(v).all():
            raise InvalidVector("the vector contains NaN or inf")
        return np.ascontiguousarray(v)

"""Kernels that turn a mutation's touched lists into delta records, and that
check and apply another index's delta without a single distance computation.

Kept apart from :mod:`graphrep.ann.kernels` because nothing here looks at a
vector: this is bookkeeping of ids, slots and lists.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from graphrep.ann.delta import KIND_DIFF, KIND_FULL, KIND_NONE
from graphrep.ann.idmap import _bucket, insert, lookup, remove
from graphrep.ann.kernels import DELETED, FREE, LIVE, _next_epoch

# validation outcomes (code, record index, offending value) -> errors in index.py
OK = 0
NEW_ID_EXISTS = 1
RECORD_ID_REPEATED = 2
RECORD_ID_UNKNOWN = 3
BAD_FLAGS = 4
LIST_TOO_LONG = 5
NEIGHBOUR_UNKNOWN = 6
SELF_LOOP = 7
NEIGHBOUR_REPEATED = 8
DIFF_REMOVES_ABSENT = 9
DIFF_ADDS_PRESENT = 10
REMOVED_UNKNOWN = 11
REMOVED_NOT_DELETED = 12
ENTRY_UNKNOWN = 13
BAD_KIND = 14
NEW_WITHOUT_LIST = 15
BAD_ID = 16


@njit(cache=True)
def make_records(slots, n_rec, n_new, old_idx, old, old_deg, nbrs, deg, ext, mark, mstate,
                 kinds, counts, values):
    """Fill kinds/counts/values for the records at ``slots[:n_rec]``.

    New nodes (the first ``n_new``) and records without a kept pre-image get
    their full list; the others get a diff when removed + added is shorter
    than the full list. Lists and diff parts are written sorted by id.
    Returns the number of values written.
    """
    vp = 0
    for i in range(n_rec):
        j = slots[i]
        d = deg[j]
        cur = np.empty(d, dtype=np.int64)
        for t in range(d):
            cur[t] = ext[nbrs[j, t]]
        cur.sort()
        oi = old_idx[i]
        if i < n_new or oi < 0:
            kinds[i] = KIND_FULL
            counts[i, 0] = d
            counts[i, 1] = 0
            for t in range(d):
                values[vp] = cur[t]
                vp += 1
            continue
        od = old_deg[oi]
        prev = np.empty(od, dtype=np.int64)
        for t in range(od):
            prev[t] = ext[old[oi, t]]
        prev.sort()
        # sorted set differences by a merge
        rem = np.empty(od, dtype=np.int64)
        add = np.empty(d, dtype=np.int64)
        nr = 0
        na = 0
        a = 0
        b = 0
        while a < od or b < d:
            if b >= d or (a < od and prev[a] < cur[b]):
                rem[nr] = prev[a]
                nr += 1
                a += 1
            elif a >= od or cur[b] < prev[a]:
                add[na] = cur[b]
                na += 1
                b += 1
            else:
                a += 1
                b += 1
        if nr + na == 0:
            kinds[i] = KIND_NONE
            counts[i, 0] = 0
            counts[i, 1] = 0
        elif nr + na < d:
            kinds[i] = KIND_DIFF
            counts[i, 0] = nr
            counts[i, 1] = na
            for t in range(nr):
                values[vp] = rem[t]
                vp += 1
            for t in range(na):
                values[vp] = add[t]
                vp += 1
        else:
            kinds[i] = KIND_FULL
            counts[i, 0] = d
            counts[i, 1] = 0
            for t in range(d):
                values[vp] = cur[t]
                vp += 1
    return vp


@njit(cache=True)
def _local_set(new_ids, new_slots):
    size = 16
    while size < 2 * new_ids.shape[0] + 2:
        size *= 2
    keys = np.full(size, -1, dtype=np.int64)
    vals = np.full(size, -1, dtype=np.int32)
    mask = size - 1
    for i in range(new_ids.shape[0]):
        b = _bucket(new_ids[i], mask)
        while keys[b] != -1 and keys[b] != new_ids[i]:
            b = (b + 1) & mask
        keys[b] = new_ids[i]
        vals[b] = new_slots[i]
    return keys, vals


@njit(inline="always")
def _resolve(v, tkeys, tvals, nkeys, nvals):
    s = lookup(tkeys, tvals, v)
    if s >= 0:
        return s
    return lookup(nkeys, nvals, v)


@njit(cache=True)
def validate_delta(ids, flags, kinds, counts, values, removed, entry, new_slots,
                   tkeys, tvals, g_nbrs, g_deg, g_flags, R, mark, mstate, size_after):
    """Check a delta against this index without changing it.

    Returns ``(code, record index, value)``; code 0 means it applies cleanly.
    ``new_slots`` are the slots the new records will take; ``mark`` is a
    stamp array at least as long as the largest slot.
    """
    n = ids.shape[0]
    n_new = new_slots.shape[0]
    for i in range(n):
        if ids[i] < 0:
            return BAD_ID, i, ids[i]
    for i in range(n_new):
        if lookup(tkeys, tvals, ids[i]) >= 0:
            return NEW_ID_EXISTS, i, ids[i]
    nkeys, nvals = _local_set(ids[:n_new], new_slots)
    # record ids unique: stamp their slots
    ep = _next_epoch(mark, mstate)
    for i in range(n):
        s = lookup(nkeys, nvals, ids[i]) if i < n_new else lookup(tkeys, tvals, ids[i])
        if s < 0:
            return RECORD_ID_UNKNOWN, i, ids[i]
        if mark[s] == ep:
            return RECORD_ID_REPEATED, i, ids[i]
        mark[s] = ep
        if flags[i] != LIVE and flags[i] != DELETED:
            return BAD_FLAGS, i, np.int64(flags[i])
    vp = 0
    for i in range(n):
        k = kinds[i]
        me = lookup(nkeys, nvals, ids[i]) if i < n_new else lookup(tkeys, tvals, ids[i])
        if i < n_new and k != KIND_FULL:
            return NEW_WITHOUT_LIST, i, ids[i]
        ep = _next_epoch(mark, mstate)
        if k == KIND_NONE:
            continue
        if k == KIND_FULL:
            m = counts[i, 0]
            if m > R:
                return LIST_TOO_LONG, i, np.int64(m)
            for _ in range(m):
                v = values[vp]
                vp += 1
                s = _resolve(v, tkeys, tvals, nkeys, nvals)
                if s < 0:
                    return NEIGHBOUR_UNKNOWN, i, v
                if s == me:
                    return SELF_LOOP, i, v
                if mark[s] == ep:
                    return NEIGHBOUR_REPEATED, i, v
                mark[s] = ep
        elif k == KIND_DIFF:
            for t in range(g_deg[me]):
                mark[g_nbrs[me, t]] = ep
            m = g_deg[me]
            for _ in range(counts[i, 0]):
                v = values[vp]
                vp += 1
                s = lookup(tkeys, tvals, v)
                if s < 0 or mark[s] != ep:
                    return DIFF_REMOVES_ABSENT, i, v
                mark[s] = -1  # removed: may not be removed twice
                m -= 1
            for _ in range(counts[i, 1]):
                v = values[vp]
                vp += 1
                s = _resolve(v, tkeys, tvals, nkeys, nvals)
                if s < 0:
                    return NEIGHBOUR_UNKNOWN, i, v
                if s == me:
                    return SELF_LOOP, i, v
                if mark[s] == ep:
                    return DIFF_ADDS_PRESENT, i, v
                mark[s] = ep
                m += 1
            if m > R:
                return LIST_TOO_LONG, i, np.int64(m)
        else:
            return BAD_KIND, i, np.int64(k)
    for i in range(removed.shape[0]):
        s = lookup(tkeys, tvals, removed[i])
        if s < 0:
            return REMOVED_UNKNOWN, i, removed[i]
        if g_flags[s] != DELETED:
            return REMOVED_NOT_DELETED, i, removed[i]
    if entry >= 0:
        s = _resolve(entry, tkeys, tvals, nkeys, nvals)
        if s < 0:
            return ENTRY_UNKNOWN, -1, entry
        for i in range(removed.shape[0]):
            if removed[i] == entry:
                return ENTRY_UNKNOWN, -1, entry
    elif size_after > 0:
        return ENTRY_UNKNOWN, -1, entry
    return OK, -1, np.int64(0)


@njit(cache=True)
def apply_delta(ids, flags, kinds, counts, values, vectors, removed, new_slots,
                tkeys, tvals, g, freed):
    """Apply a delta that :func:`validate_delta` accepted.

    Returns (change in live count, change in deleted count); the slots of
    removed nodes are written to ``freed``. New ids enter the id table and
    removed ids leave it here; the caller accounts the table's size.
    """
    n = ids.shape[0]
    n_new = new_slots.shape[0]
    d_live = 0
    d_del = 0
    for i in range(n_new):
        s = new_slots[i]
        insert(tkeys, tvals, ids[i], np.int32(s))
        for t in range(g.vecs.shape[1]):
            g.vecs[s, t] = vectors[i, t]
        g.ext[s] = ids[i]
        g.deg[s] = 0
        g.indeg[s] = 0
        g.flags[s] = flags[i]
        if flags[i] == LIVE:
            d_live += 1
        else:
            d_del += 1
    vp = 0
    for i in range(n):
        me = lookup(tkeys, tvals, ids[i])
        if i >= n_new and g.flags[me] != flags[i]:
            if g.flags[me] == LIVE:
                d_live -= 1
            else:
                d_del -= 1
            if flags[i] == LIVE:
                d_live += 1
            else:
                d_del += 1
            g.flags[me] = flags[i]
        k = kinds[i]
        if k == KIND_FULL:
            for t in range(g.deg[me]):
                g.indeg[g.nbrs[me, t]] -= 1
            m = counts[i, 0]
            for t in range(m):
                s = lookup(tkeys, tvals, values[vp])
                vp += 1
                g.nbrs[me, t] = s
                g.indeg[s] += 1
            for t in range(m, g.deg[me]):
                g.nbrs[me, t] = -1
            g.deg[me] = m
        elif k == KIND_DIFF:
            for _ in range(counts[i, 0]):
                s = lookup(tkeys, tvals, values[vp])
                vp += 1
                d = g.deg[me]
                for t in range(d):
                    if g.nbrs[me, t] == s:
                        g.nbrs[me, t] = g.nbrs[me, d - 1]
                        g.nbrs[me, d - 1] = -1
                        g.deg[me] = d - 1
                        break
                g.indeg[s] -= 1
            for _ in range(counts[i, 1]):
                s = lookup(tkeys, tvals, values[vp])
                vp += 1
                g.nbrs[me, g.deg[me]] = s
                g.deg[me] += 1
                g.indeg[s] += 1
    for i in range(removed.shape[0]):
        s = lookup(tkeys, tvals, removed[i])
        for t in range(g.deg[s]):
            g.indeg[g.nbrs[s, t]] -= 1
            g.nbrs[s, t] = -1
        g.deg[s] = 0
        g.flags[s] = FREE
        d_del -= 1
        freed[i] = s
        remove(tkeys, tvals, removed[i])
    return d_live, d_del

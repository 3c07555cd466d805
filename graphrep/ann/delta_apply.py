"""Kernels that check another index's deltas against this index and apply them,
without a single distance computation.

Kept apart from :mod:`graphrep.ann.kernels` because nothing here compares
vectors: this is bookkeeping of ids, slots and lists. :func:`validate_delta`
checks a delta and changes nothing, :func:`apply_delta` applies one it
accepted, :func:`apply_batch` does both for a run of deltas given as arrays
and :func:`apply_wire` for deltas given as their wire bytes. The index's side
(type and seq checks, errors) is :mod:`graphrep.ann.delta_intake`.

The checking and the applying kernels stay in one file of about 700 lines:
:func:`apply_batch` calls :func:`validate_delta`, and Numba's on-disk cache
(``cache=True``) notices a change to a kernel's own file but not to a callee
in another file.

What a delta must keep true. :func:`validate_delta`, with the per-delta checks
at the top of :func:`apply_batch`, checks all of the following against the
index's current state before :func:`apply_delta` changes anything, so that a
delta no mutation could have produced (a bit flip behind a recomputed CRC, a
buggy leader) is refused whole instead of corrupting a replica:

* Records: every id is in [0, ``MAX_ID``] and has one record at most; a new
  node's id is not stored here, an existing record's id is; flags are live or
  deleted; the kind is none, full or diff, with lengths that fit the kind
  (none: no values; full: no "added" part) and add up to the values; a new
  node comes with its full list and a finite vector whose squared norm is at
  most ``MAX_SQUARED_NORM``.
* Lists after the delta: every neighbour exists afterwards (stored and not
  freed by this delta, or new in it), is not the node itself and appears
  once; a list holds at most R; a diff removes only ids in the list and adds
  only ids not in it (or removed by the same diff).
* Freed nodes (``removed``): each is stored here and deleted, is named once,
  has no record in the delta (it is freed, not rewritten), and no edge points
  to it afterwards. The last is checked with the tracked in-degrees: the
  node's in-degree, less the edges to it in the lists this delta replaces or
  frees, must be zero (a diff's kept part and every new list must not name
  it) -- O(records + removed + the lengths of those lists), no graph scan.
* The entry point exists afterwards (it is not freed by the delta), or is -1
  when the index is empty afterwards.

So after any delta the graph holds no dangling edge, no self loop, no
repeated edge and no list longer than R, ids are unique and in range, every
freed slot is freed once, and the in-degree counters match the lists.

A batch (:func:`apply_batch`, :func:`apply_wire`) is checked and applied
delta by delta: delta k + 1 is checked against the state delta k left. The
first delta that fails changes nothing; the deltas before it stay applied.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from graphrep.ann._prefetch import prefetch_item, prefetch_row
from graphrep.ann.delta_wire import KIND_DIFF, KIND_FULL, KIND_NONE, decode_kernel
from graphrep.ann.idmap import MAX_ID, _bucket, insert, lookup, remove
from graphrep.ann.kernels import DELETED, FREE, LIVE, _next_epoch

# validation outcomes (code, record index, offending value) -> errors in delta_intake.py
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
BAD_COUNTS = 17
NONFINITE_VECTOR = 18
REMOVED_REPEATED = 19
REMOVED_HAS_RECORD = 20
REMOVED_STILL_LINKED = 21
NEIGHBOUR_REMOVED = 22
KIND_COUNTS = 23
VECTOR_TOO_LARGE = 24

# the largest squared L2 norm a stored vector (or query) may have: with both at most
# this, every squared distance (<= 2|a|^2 + 2|b|^2) and inner product the kernels
# compute in float32 stays finite, rounding included
MAX_SQUARED_NORM = 2.0**125


@njit(inline="always")
def squared_norm(vectors, i):
    """Squared L2 norm of row ``i``, summed in float64 in index order (exact enough
    that no float32 input overflows it, and the same wherever it is computed)."""
    sq = 0.0
    for t in range(vectors.shape[1]):
        x = np.float64(vectors[i, t])
        sq += x * x
    return sq


@njit(cache=True)
def first_unfit_row(vectors):
    """The first row of the 2-d float32 ``vectors`` that holds NaN or inf or whose
    squared norm is above ``MAX_SQUARED_NORM``, or -1: both checks in one pass (what a
    query or a new vector must pass; the caller says which check failed). Squares of
    finite float32 values cannot overflow a float64 sum, so the sum is NaN or inf
    exactly when a value is."""
    for i in range(vectors.shape[0]):
        if not squared_norm(vectors, i) <= MAX_SQUARED_NORM:
            return i
    return -1


@njit(cache=True)
def first_too_large(vectors):
    """The first row of the 2-d float32 ``vectors`` whose squared norm is above
    ``MAX_SQUARED_NORM`` (the check :func:`apply_batch` makes of a delta's new
    vectors), or -1."""
    for i in range(vectors.shape[0]):
        if squared_norm(vectors, i) > MAX_SQUARED_NORM:
            return i
    return -1



@njit(cache=True)
def _local_set(new_ids, new_slots):
    """A hash table (keys, values, as :mod:`graphrep.ann.idmap` reads them) of
    ``new_ids[i] -> new_slots[i]`` (keys >= 0), and the index of the first key
    that repeats an earlier one (-1 if none does; the later value wins)."""
    size = 16
    while size < 2 * new_ids.shape[0] + 2:
        size *= 2
    keys = np.full(size, -1, dtype=np.int64)
    vals = np.full(size, -1, dtype=np.int32)
    mask = size - 1
    dup = -1
    for i in range(new_ids.shape[0]):
        b = _bucket(new_ids[i], mask)
        while keys[b] != -1 and keys[b] != new_ids[i]:
            b = (b + 1) & mask
        if keys[b] == new_ids[i] and dup < 0:
            dup = i
        keys[b] = new_ids[i]
        vals[b] = new_slots[i]
    return keys, vals, dup


# up to this many new nodes a delta's new ids are searched linearly, not hashed
_FEW_NEW = 8


@njit(inline="always")
def _new_slot(v, new_ids, new_slots, nkeys, nvals):
    """Slot of ``v`` among the delta's new nodes, or -1."""
    if new_ids.shape[0] <= _FEW_NEW:
        for i in range(new_ids.shape[0]):
            if new_ids[i] == v:
                return new_slots[i]
        return -1
    return lookup(nkeys, nvals, v)


@njit(inline="always")
def _resolve(v, tkeys, tvals, new_ids, new_slots, nkeys, nvals):
    s = _new_slot(v, new_ids, new_slots, nkeys, nvals)
    if s >= 0:
        return s
    return lookup(tkeys, tvals, v)


@njit(inline="always")
def _neighbour_code(s, me):
    """Why slot ``s`` can't be a neighbour of ``me`` (OK if it can)."""
    if s < 0:
        return NEIGHBOUR_UNKNOWN
    if s == me:
        return SELF_LOOP
    return OK


@njit(inline="always")
def _take_neighbour(values, vp, me, val_slot, tkeys, tvals, new_ids, new_slots, nkeys, nvals):
    """Resolve the list value ``values[vp]`` (an id) to its slot, noted in ``val_slot``:
    returns (the id, its slot, why it can't be a neighbour of ``me`` or OK)."""
    v = values[vp]
    s = _resolve(v, tkeys, tvals, new_ids, new_slots, nkeys, nvals)
    val_slot[vp] = s
    return v, s, _neighbour_code(s, me)


@njit(inline="always")
def _take_stamped(m, repeated, values, vp, me, val_slot, mark, ep, tkeys, tvals, new_ids,
                  new_slots, nkeys, nvals):
    """Take the ``m`` list values from ``values[vp]`` as neighbours of ``me`` (see
    :func:`_take_neighbour`), stamping each slot ``ep`` in ``mark``; a slot stamped
    already is refused with the code ``repeated``. Returns (code, offending id, the
    position after the values taken)."""
    for _ in range(m):
        v, s, code = _take_neighbour(values, vp, me, val_slot, tkeys, tvals, new_ids,
                                     new_slots, nkeys, nvals)
        vp += 1
        if code != OK:
            return code, v, vp
        if mark[s] == ep:
            return repeated, v, vp
        mark[s] = ep
    return OK, np.int64(0), vp


# a diff of at most this many ids is checked by scanning the list it changes (its lines
# are read anyway) instead of stamping every neighbour in ``mark``: for the common
# record that only gains the new node that saves a cache miss per neighbour when the
# index is cold (as it is on a follower between batches)
_SCAN_DIFF = 4


@njit(inline="always")
def _in_slots(a, lo, hi, s):
    for t in range(lo, hi):
        if a[t] == s:
            return True
    return False


@njit(inline="always")
def _in_list(g_nbrs, me, d, s):
    for t in range(d):
        if g_nbrs[me, t] == s:
            return True
    return False


@njit(inline="always")
def _check_small_diff(i, me, vp, nr, na, values, R, tkeys, tvals, new_ids, new_slots, nkeys,
                      nvals, g_nbrs, g_deg, val_slot):
    """The checks :func:`validate_delta` makes of a diff record, with the same outcome,
    by scanning its list: returns (code, offending value, position after its values)."""
    d = g_deg[me]
    r0 = vp
    for j in range(nr):
        v = values[vp]
        s = lookup(tkeys, tvals, v)
        val_slot[vp] = s
        vp += 1
        # in the list, and not removed by this diff already
        if s < 0 or not _in_list(g_nbrs, me, d, s) or _in_slots(val_slot, r0, r0 + j, s):
            return DIFF_REMOVES_ABSENT, v, vp
    a0 = vp
    for j in range(na):
        v, s, code = _take_neighbour(values, vp, me, val_slot, tkeys, tvals, new_ids,
                                     new_slots, nkeys, nvals)
        vp += 1
        if code != OK:
            return code, v, vp
        # present: in the list and not removed by this diff, or added by it already
        if (_in_list(g_nbrs, me, d, s) and not _in_slots(val_slot, r0, r0 + nr, s)) or \
                _in_slots(val_slot, a0, a0 + j, s):
            return DIFF_ADDS_PRESENT, v, vp
    if d - nr + na > R:
        return LIST_TOO_LONG, np.int64(d - nr + na), vp
    return OK, np.int64(0), vp


@njit(inline="always")
def _removed_index(c, rem_slot, rkeys, rvals):
    """Position in ``rem_slot`` of the freed slot ``c`` (known to be one)."""
    if rem_slot.shape[0] <= _FEW_NEW:
        for i in range(rem_slot.shape[0]):
            if rem_slot[i] == c:
                return i
        return -1
    return lookup(rkeys, rvals, c)


@njit(cache=True)
def _check_removed(ids, kinds, counts, values, removed, n_new, tkeys, tvals, g_nbrs, g_deg,
                   g_flags, g_indeg, mark, mstate, rec_slot, val_slot, rem_slot):
    """The checks of a delta's freed ids (module docstring), after its records were
    resolved (``rec_slot``, ``val_slot``): returns ``(code, index, value)``.

    Each freed slot is stamped in ``mark``; its in-degree then loses the edges to it
    from the old lists of full records, from the removed parts of diffs and from the
    freed nodes' own lists, and must end at zero. A list value (full, or added by a
    diff) that is a freed slot is an edge to it that would dangle.
    """
    n = ids.shape[0]
    n_rem = removed.shape[0]
    ep = _next_epoch(mark, mstate)
    for i in range(n_rem):
        s = lookup(tkeys, tvals, removed[i])
        rem_slot[i] = s
        if s < 0:
            return REMOVED_UNKNOWN, i, removed[i]
        if g_flags[s] != DELETED:
            return REMOVED_NOT_DELETED, i, removed[i]
        if mark[s] == ep:
            return REMOVED_REPEATED, i, removed[i]
        mark[s] = ep
    for i in range(n_new, n):
        if mark[rec_slot[i]] == ep:
            return REMOVED_HAS_RECORD, i, ids[i]
    if n_rem > _FEW_NEW:
        rkeys, rvals, _ = _local_set(rem_slot.astype(np.int64),
                                     np.arange(n_rem).astype(np.int32))
    else:
        rkeys = np.full(1, -1, dtype=np.int64)
        rvals = np.full(1, -1, dtype=np.int32)
    left = np.empty(n_rem, dtype=np.int64)
    for i in range(n_rem):
        left[i] = g_indeg[rem_slot[i]]
    vp = 0
    for i in range(n):
        k = kinds[i]
        me = rec_slot[i]
        if k == KIND_FULL:
            m = counts[i, 0]
            for t in range(vp, vp + m):
                if mark[val_slot[t]] == ep:
                    return NEIGHBOUR_REMOVED, i, values[t]
            if i >= n_new:  # the old list goes
                for t in range(g_deg[me]):
                    c = g_nbrs[me, t]
                    if mark[c] == ep:
                        left[_removed_index(c, rem_slot, rkeys, rvals)] -= 1
            vp += m
        elif k == KIND_DIFF:
            nr = counts[i, 0]
            na = counts[i, 1]
            for t in range(vp, vp + nr):
                c = val_slot[t]
                if mark[c] == ep:
                    left[_removed_index(c, rem_slot, rkeys, rvals)] -= 1
            for t in range(vp + nr, vp + nr + na):
                if mark[val_slot[t]] == ep:
                    return NEIGHBOUR_REMOVED, i, values[t]
            vp += nr + na
    for i in range(n_rem):  # the freed nodes' own lists go too
        s = rem_slot[i]
        for t in range(g_deg[s]):
            c = g_nbrs[s, t]
            if mark[c] == ep:
                left[_removed_index(c, rem_slot, rkeys, rvals)] -= 1
    for i in range(n_rem):
        if left[i] != 0:
            return REMOVED_STILL_LINKED, i, removed[i]
    return OK, -1, np.int64(0)


@njit(cache=True)
def validate_delta(ids, flags, kinds, counts, values, removed, entry, new_slots,
                   tkeys, tvals, g_nbrs, g_deg, g_flags, g_indeg, R, mark, mstate, size_after,
                   rec_slot, val_slot, rem_slot):
    """Check a delta against this index without changing it: every invariant of
    the module docstring except the ones :func:`apply_batch` checks first (list
    lengths against the values, the kinds' lengths, the vectors).

    Returns ``(code, record index, value)``; code 0 means it applies cleanly.
    ``new_slots`` are the slots the new records will take; ``mark`` is a
    stamp array at least as long as the largest slot. The slots that ids,
    list values and removed ids resolve to are written to ``rec_slot``,
    ``val_slot`` and ``rem_slot`` for :func:`apply_delta`.
    """
    n = ids.shape[0]
    n_new = new_slots.shape[0]
    # the id-table buckets of every id named, requested at once so that the misses
    # overlap instead of coming one after another in the checks below
    mask = tkeys.shape[0] - 1
    for i in range(n):
        b = _bucket(ids[i], mask)
        prefetch_item(tkeys, b)
        prefetch_item(tvals, b)
    for i in range(values.shape[0]):
        b = _bucket(values[i], mask)
        prefetch_item(tkeys, b)
        prefetch_item(tvals, b)
    for i in range(n):
        if ids[i] < 0 or ids[i] > MAX_ID:
            return BAD_ID, i, ids[i]
    for i in range(n_new):
        if lookup(tkeys, tvals, ids[i]) >= 0:
            return NEW_ID_EXISTS, i, ids[i]
    new_ids = ids[:n_new]
    # new ids unique (their slots differ, so the stamps below can't tell)
    if n_new > _FEW_NEW:
        nkeys, nvals, dup = _local_set(new_ids, new_slots)
        if dup >= 0:
            return RECORD_ID_REPEATED, dup, ids[dup]
    else:
        nkeys = np.full(1, -1, dtype=np.int64)
        nvals = np.full(1, -1, dtype=np.int32)
        for i in range(1, n_new):
            for j in range(i):
                if ids[j] == ids[i]:
                    return RECORD_ID_REPEATED, i, ids[i]
    # record ids unique: stamp their slots
    ep = _next_epoch(mark, mstate)
    for i in range(n):
        s = new_slots[i] if i < n_new else lookup(tkeys, tvals, ids[i])
        if s < 0:
            return RECORD_ID_UNKNOWN, i, ids[i]
        if mark[s] == ep:
            return RECORD_ID_REPEATED, i, ids[i]
        mark[s] = ep
        rec_slot[i] = s
        if i >= n_new:  # what the next loop and apply_delta read of this node
            prefetch_item(g_deg, s)
            prefetch_item(g_flags, s)
            if kinds[i] != KIND_NONE:
                prefetch_row(g_nbrs, s)
        if flags[i] != LIVE and flags[i] != DELETED:
            return BAD_FLAGS, i, np.int64(flags[i])
    vp = 0
    for i in range(n):
        k = kinds[i]
        me = rec_slot[i]
        if i < n_new and k != KIND_FULL:
            return NEW_WITHOUT_LIST, i, ids[i]
        ep = _next_epoch(mark, mstate)
        if k == KIND_NONE:
            continue
        if k == KIND_FULL:
            m = counts[i, 0]
            if m > R:
                return LIST_TOO_LONG, i, np.int64(m)
            code, v, vp = _take_stamped(m, NEIGHBOUR_REPEATED, values, vp, me, val_slot, mark,
                                        ep, tkeys, tvals, new_ids, new_slots, nkeys, nvals)
            if code != OK:
                return code, i, v
        elif k == KIND_DIFF and counts[i, 0] + counts[i, 1] <= _SCAN_DIFF:
            code, v, vp = _check_small_diff(i, me, vp, counts[i, 0], counts[i, 1], values, R,
                                            tkeys, tvals, new_ids, new_slots, nkeys, nvals,
                                            g_nbrs, g_deg, val_slot)
            if code != OK:
                return code, i, v
        elif k == KIND_DIFF:
            for t in range(g_deg[me]):
                mark[g_nbrs[me, t]] = ep
            m = g_deg[me]
            for _ in range(counts[i, 0]):
                v = values[vp]
                s = lookup(tkeys, tvals, v)
                val_slot[vp] = s
                vp += 1
                if s < 0 or mark[s] != ep:
                    return DIFF_REMOVES_ABSENT, i, v
                mark[s] = -1  # removed: may not be removed twice
                m -= 1
            code, v, vp = _take_stamped(counts[i, 1], DIFF_ADDS_PRESENT, values, vp, me,
                                        val_slot, mark, ep, tkeys, tvals, new_ids, new_slots,
                                        nkeys, nvals)
            if code != OK:
                return code, i, v
            m += counts[i, 1]
            if m > R:
                return LIST_TOO_LONG, i, np.int64(m)
        else:
            return BAD_KIND, i, np.int64(k)
    if removed.shape[0] > 0:
        code, i, v = _check_removed(ids, kinds, counts, values, removed, n_new, tkeys, tvals,
                                    g_nbrs, g_deg, g_flags, g_indeg, mark, mstate, rec_slot,
                                    val_slot, rem_slot)
        if code != OK:
            return code, i, v
    if entry >= 0:
        s = _resolve(entry, tkeys, tvals, new_ids, new_slots, nkeys, nvals)
        if s < 0:
            return ENTRY_UNKNOWN, -1, entry
        for i in range(removed.shape[0]):
            if removed[i] == entry:
                return ENTRY_UNKNOWN, -1, entry
    elif size_after > 0:
        return ENTRY_UNKNOWN, -1, entry
    return OK, -1, np.int64(0)


@njit(cache=True)
def apply_delta(ids, flags, kinds, counts, vectors, removed, new_slots, rec_slot, val_slot,
                rem_slot, tkeys, tvals, g, mark, mstate):
    """Apply a delta that :func:`validate_delta` accepted, using the slots it resolved.

    Returns (change in live count, change in deleted count). New ids enter
    the id table and removed ids leave it here; the caller accounts the
    table's size and the freed slots (``rem_slot``).
    """
    n = ids.shape[0]
    n_new = new_slots.shape[0]
    for t in range(val_slot.shape[0]):  # in-degree counters updated below
        prefetch_item(g.indeg, val_slot[t])
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
        me = rec_slot[i]
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
                s = val_slot[vp]
                vp += 1
                g.nbrs[me, t] = s
                g.indeg[s] += 1
            for t in range(m, g.deg[me]):
                g.nbrs[me, t] = -1
            g.deg[me] = m
        elif k == KIND_DIFF:
            nr = counts[i, 0]
            if nr > 0:
                # stamp the removed slots, then compact the list in one pass
                ep = _next_epoch(mark, mstate)
                for _ in range(nr):
                    s = val_slot[vp]
                    vp += 1
                    mark[s] = ep
                    g.indeg[s] -= 1
                d = g.deg[me]
                w = 0
                for t in range(d):
                    c = g.nbrs[me, t]
                    if mark[c] != ep:
                        g.nbrs[me, w] = c
                        w += 1
                for t in range(w, d):
                    g.nbrs[me, t] = -1
                g.deg[me] = w
            for _ in range(counts[i, 1]):
                s = val_slot[vp]
                vp += 1
                g.nbrs[me, g.deg[me]] = s
                g.deg[me] += 1
                g.indeg[s] += 1
    for i in range(removed.shape[0]):
        s = rem_slot[i]
        for t in range(g.deg[s]):
            g.indeg[g.nbrs[s, t]] -= 1
            g.nbrs[s, t] = -1
        g.deg[s] = 0
        g.flags[s] = FREE
        d_del -= 1
        remove(tkeys, tvals, removed[i])
    return d_live, d_del



# state vector shared by apply_batch and the index: where the allocator and counts stand
ST_N_SLOTS = 0
ST_N_FREE = 1
ST_LIVE = 2
ST_DELETED = 3
ST_ENTRY = 4


@njit(cache=True)
def apply_batch(ids, flags, kinds, counts, values, vectors, removed, entries, off,
                tkeys, tvals, g, R, mark, mstate, free, state):
    """Validate and apply a run of deltas (concatenated arrays plus offsets), in order.

    Delta by delta: each is checked completely (the module docstring's
    invariants) against the state the deltas before it left, then applied.
    Stops at the first delta that does not fit; the deltas before it stay
    applied, the failing one changes nothing. Slots come from the free stack
    ``free[:state[ST_N_FREE]]`` (last in, first out) and then from
    ``state[ST_N_SLOTS]``, as the index allocates them. Returns
    ``(deltas applied, code, record, value)`` of the first failure, or
    ``(n, OK, -1, 0)``. ``off[d]`` holds where delta d starts in the records,
    values, vectors and removed ids (``off[nd]`` is the end of each).
    """
    nd = entries.shape[0]
    rec_off = off[:, 0]
    val_off = off[:, 1]
    vec_off = off[:, 2]
    rem_off = off[:, 3]
    # work buffers for the whole run, sliced per delta
    rec_slot_all = np.empty(rec_off[nd], dtype=np.int32)
    val_slot_all = np.empty(val_off[nd], dtype=np.int32)
    freed_all = np.empty(rem_off[nd], dtype=np.int32)
    new_slots_all = np.empty(vec_off[nd], dtype=np.int32)
    for d in range(nd):
        r0 = rec_off[d]
        r1 = rec_off[d + 1]
        v0 = val_off[d]
        v1 = val_off[d + 1]
        n0 = vec_off[d]
        n1 = vec_off[d + 1]
        m0 = rem_off[d]
        m1 = rem_off[d + 1]
        n_new = n1 - n0
        # list lengths must fit the kinds and add up to the values, and vectors must be
        # finite and of a norm whose distances stay finite
        total = np.int64(0)
        for i in range(r0, r1):
            if counts[i, 0] < 0 or counts[i, 1] < 0:
                return d, BAD_COUNTS, i - r0, np.int64(min(counts[i, 0], counts[i, 1]))
            if (kinds[i] == KIND_NONE and counts[i, 0] + counts[i, 1] != 0) or \
                    (kinds[i] == KIND_FULL and counts[i, 1] != 0):
                return d, KIND_COUNTS, i - r0, np.int64(kinds[i])
            total += np.int64(counts[i, 0]) + np.int64(counts[i, 1])
        if total != v1 - v0:
            return d, BAD_COUNTS, -1, total
        for i in range(n0, n1):
            for t in range(vectors.shape[1]):
                if not np.isfinite(vectors[i, t]):
                    return d, NONFINITE_VECTOR, i - n0, np.int64(t)
            if squared_norm(vectors, i) > MAX_SQUARED_NORM:
                return d, VECTOR_TOO_LARGE, i - n0, ids[r0 + i - n0]
        n_free = state[ST_N_FREE]
        take = min(n_new, n_free)
        new_slots = new_slots_all[n0:n1]
        for i in range(take):
            new_slots[i] = free[n_free - 1 - i]
        for i in range(n_new - take):
            new_slots[take + i] = state[ST_N_SLOTS] + i
        size_after = state[ST_LIVE] + state[ST_DELETED] + n_new - (m1 - m0)
        rec_slot = rec_slot_all[r0:r1]
        val_slot = val_slot_all[v0:v1]
        freed = freed_all[m0:m1]
        code, rec, val = validate_delta(
            ids[r0:r1], flags[r0:r1], kinds[r0:r1], counts[r0:r1], values[v0:v1],
            removed[m0:m1], entries[d], new_slots, tkeys, tvals, g.nbrs, g.deg, g.flags,
            g.indeg, R, mark, mstate, size_after, rec_slot, val_slot, freed,
        )
        if code != OK:
            return d, code, rec, val
        d_live, d_del = apply_delta(
            ids[r0:r1], flags[r0:r1], kinds[r0:r1], counts[r0:r1], vectors[n0:n1],
            removed[m0:m1], new_slots, rec_slot, val_slot, freed, tkeys, tvals, g, mark, mstate,
        )
        state[ST_N_FREE] = n_free - take
        state[ST_N_SLOTS] += n_new - take
        state[ST_LIVE] += d_live
        state[ST_DELETED] += d_del
        # freed slots go on the stack highest first, so the lowest is reused first
        freed.sort()
        for i in range(freed.shape[0]):
            s = freed[freed.shape[0] - 1 - i]
            g.ext[s] = -1
            free[state[ST_N_FREE]] = s
            state[ST_N_FREE] += 1
        state[ST_ENTRY] = lookup(tkeys, tvals, entries[d]) if entries[d] >= 0 else -1
    return nd, OK, -1, np.int64(0)


# apply_wire outcomes: what the other four numbers of its result mean
WIRE_APPLIED = 0  # (deltas applied, code, record, value), as apply_batch returns them
WIRE_CORRUPT = 1  # (damaged delta, why (see graphrep.ann.delta_wire), -1, value)
WIRE_DIM = 2  # (delta of another dimension, 0, -1, 0)
WIRE_SEQ = 3  # (delta whose seq is not the next, 0, -1, 0)
WIRE_ROOM = 4  # (new nodes the index must first make room for, 0, -1, 0)


# apply_wire compiles decode_kernel (graphrep.ann.delta_wire) into itself, and Numba keys
# a cached function on its own file only: a change to the wire format must come with a
# change to this file, or a checkout that kept its __pycache__ decodes with the old code.
@njit(cache=True)
def apply_wire(buf, starts, dim, seq0, id_count, tkeys, tvals, g, R, mark, mstate, free,
               state):
    """Decode the deltas ``buf[starts[k]:starts[k + 1]]`` and apply them, in one call.

    Nothing changes unless every delta's bytes are sound, every delta is for
    ``dim`` and delta ``k`` has seq ``seq0 + k``, and the index has room for
    the new nodes (``free`` is as long as the slot capacity, ``id_count``
    ids fill the id table); then :func:`apply_batch` applies them. Returns
    (outcome, four numbers: see ``WIRE_*``) and the decoded arrays as
    :func:`~graphrep.ann.delta_wire.decode_kernel` returns them.
    """
    bad, why, val, hdr, off, ids, flags, kinds, counts, values, vec, removed = decode_kernel(
        buf, starts)
    nd = starts.shape[0] - 1
    outcome = WIRE_APPLIED
    a, b, c, v = np.int64(0), np.int64(0), np.int64(-1), np.int64(0)
    if bad >= 0:
        outcome, a, b, v = WIRE_CORRUPT, np.int64(bad), np.int64(why), np.int64(val)
    else:
        for k in range(nd):
            if hdr[1, k] != dim:
                outcome, a = WIRE_DIM, np.int64(k)
                break
            if hdr[2, k] != seq0 + k:
                outcome, a = WIRE_SEQ, np.int64(k)
                break
    if outcome == WIRE_APPLIED:
        n_new = off[nd, 2]
        if (state[ST_N_SLOTS] + max(0, n_new - state[ST_N_FREE]) > free.shape[0]
                or 2 * (id_count + n_new) > tkeys.shape[0]):
            outcome, a = WIRE_ROOM, n_new
    if outcome == WIRE_APPLIED:
        vectors = vec.view(np.float32).reshape((off[nd, 2], dim))
        done, code, rec, value = apply_batch(
            ids, flags, kinds, counts, values, vectors, removed, hdr[3], off, tkeys, tvals, g, R,
            mark, mstate, free, state,
        )
        a, b, c, v = np.int64(done), np.int64(code), np.int64(rec), np.int64(value)
    return (outcome, a, b, c, v, hdr, off, ids, flags, kinds, counts, values, vec, removed)

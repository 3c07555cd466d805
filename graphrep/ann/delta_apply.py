"""Kernels that apply deltas another index made, without a single distance computation.

Each delta is checked first (:func:`graphrep.ann.delta_check.validate_delta`,
with the per-delta checks at the top of :func:`apply_batch`; the invariants a
delta must keep are listed in :mod:`graphrep.ann.delta_check`), then applied
(:func:`apply_delta`). :func:`apply_batch` does both for a run of deltas given
as arrays, :func:`apply_wire` for deltas given as their wire bytes.

:func:`apply` and :func:`apply_bytes` are the index's side
(:meth:`VamanaIndex.apply <graphrep.ann.VamanaIndex.apply>` and
:meth:`~graphrep.ann.VamanaIndex.apply_bytes` call them): they check what
the kernels can't (types, shapes, seq), hand the index's arrays to the
kernels, take in the counts the kernels changed and turn a kernel's refusal
code into the error that names it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from numba import njit

from graphrep.ann import delta_check
from graphrep.ann._prefetch import prefetch_item
from graphrep.ann.delta import (
    ARRAY_DTYPES,
    DeltaBatch,
    EdgeDelta,
    array_problem,
    corrupt_at,
    float32s,
    joined,
)
from graphrep.ann.delta_check import (
    BAD_COUNTS,
    KIND_COUNTS,
    MAX_SQUARED_NORM,
    NONFINITE_VECTOR,
    OK,
    VECTOR_TOO_LARGE,
    squared_norm,
    validate_delta,
)
from graphrep.ann.delta_wire import KIND_DIFF, KIND_FULL, KIND_NONE, decode_kernel
from graphrep.ann.idmap import MAX_ID, insert, lookup, remove
from graphrep.ann.kernels import FREE, LIVE, _next_epoch
from graphrep.errors import (
    DeltaError,
    DeltaOutOfOrder,
    DimensionMismatch,
    DuplicateId,
    GraphrepError,
)

if TYPE_CHECKING:
    from graphrep.ann.index import VamanaIndex


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

    Delta by delta: each is checked completely (the invariants listed in
    :mod:`graphrep.ann.delta_check`) against the state the deltas before it left, then applied.
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


# --------------------------------------------------------------------------- the index's side


def apply(index: VamanaIndex, delta: EdgeDelta | Sequence[EdgeDelta]) -> None:
    """Check and apply one delta or a list of them (:meth:`VamanaIndex.apply
    <graphrep.ann.VamanaIndex.apply>` states the contract)."""
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
        error = _precheck(index, d, index._seq + i)
        if error is not None:
            first_bad = i
            break
    if first_bad:
        _apply_run(index, deltas[:first_bad])
    if error is not None:
        raise error


def apply_bytes(index: VamanaIndex, data: Sequence[bytes | bytearray | memoryview]
                ) -> DeltaBatch:
    """Decode, check and apply deltas given as wire bytes, with one kernel call
    (:meth:`VamanaIndex.apply_bytes <graphrep.ann.VamanaIndex.apply_bytes>` states the
    contract); grows the index first when the deltas need more room."""
    if not isinstance(data, (list, tuple)):
        raise DeltaError(f"apply_bytes takes a list of bytes, not {type(data).__name__}")
    buf, starts = joined(data)
    while True:
        s = index._scratch(index.L)
        state = _state(index)
        (outcome, a, b, c, v, hdr, off, ids, flags, kinds, counts, values, vec,
         removed) = apply_wire(
            buf, starts, index.dim, index._seq, index._idmap.count, index._idmap.keys,
            index._idmap.vals, index._g, index.R, s.mark, s.mstate, index._free, state,
        )
        if outcome != WIRE_ROOM:
            break
        index._reserve(int(a))  # then decode and check again: nothing has changed
    if outcome == WIRE_CORRUPT:
        raise corrupt_at(int(a), int(b), int(v), starts)
    batch = DeltaBatch(hdr, off, ids, flags, kinds, counts, values, float32s(vec), removed)
    if outcome == WIRE_DIM:
        k = int(a)
        raise DimensionMismatch(
            f"delta seq {int(batch.seq[k])} is for dimension {int(batch.dim[k])} but this "
            f"index has dim={index.dim}; apply it to a replica created with the same dim"
        )
    if outcome == WIRE_SEQ:
        k = int(a)
        raise _out_of_order(int(batch.seq[k]), index._seq + k)
    _applied(index, state, off, int(a), int(b), int(c), int(v), batch.delta)
    return batch


def _out_of_order(seq: int, expect_seq: int) -> DeltaOutOfOrder:
    """The error for delta ``seq`` arriving where ``expect_seq`` was due."""
    return DeltaOutOfOrder(
        f"delta seq {seq} arrived but this index expects seq {expect_seq}; "
        + ("it was already applied" if seq < expect_seq else
           f"deltas {expect_seq}..{seq - 1} are missing: fetch and apply them first")
    )


def _precheck(index: VamanaIndex, d: object, expect_seq: int) -> GraphrepError | None:
    """What is wrong with ``d`` that its type, seq and shapes show, or None.
    (Array contents are checked for the whole run at once in :func:`_apply_run`.)"""
    if not isinstance(d, EdgeDelta):
        return DeltaError(f"apply takes EdgeDelta objects, not {type(d).__name__}")
    if d.dim != index.dim:
        return DimensionMismatch(
            f"delta seq {d.seq} is for dimension {d.dim} but this index has dim={index.dim}; "
            "apply it to a replica created with the same dim"
        )
    if d.seq != expect_seq:
        return _out_of_order(d.seq, expect_seq)
    problem = array_problem(d)
    if problem is not None:
        return _malformed(d, problem)
    if isinstance(d.entry, bool) or not isinstance(d.entry, (int, np.integer)) \
            or not -1 <= int(d.entry) <= MAX_ID:
        return _malformed(d, f"entry {d.entry!r} is not -1 or an id in [0, 2**62)")
    return None


def _apply_run(index: VamanaIndex, deltas: list[EdgeDelta]) -> None:
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
    index._reserve(int(off[-1, 2]))
    s = index._scratch(index.L)
    state = _state(index)
    done, code, rec, val = apply_batch(
        ids, flags, kinds, counts, values, vectors, removed, entries, off,
        index._idmap.keys, index._idmap.vals, index._g, index.R, s.mark, s.mstate,
        index._free, state,
    )
    _applied(index, state, off, int(done), int(code), int(rec), int(val), deltas.__getitem__)


def _state(index: VamanaIndex) -> np.ndarray:
    """The allocator and counts as the apply kernels take them (``ST_*``)."""
    return np.array([index._n_slots, index._n_free, index._n_live, index._n_deleted,
                     index._entry], dtype=np.int64)


def _applied(index: VamanaIndex, state: np.ndarray, off: np.ndarray, done: int, code: int,
             rec: int, val: int, delta_at: Callable[[int], EdgeDelta]) -> None:
    """Take in what an apply kernel did: ``done`` deltas applied, then ``code`` (with
    the record and value it names) for the one after them, ``delta_at(done)``."""
    (index._n_slots, index._n_free, index._n_live, index._n_deleted,
     index._entry) = state.tolist()
    index._idmap.count += int(off[done, 2] - off[done, 3])
    index._seq += done
    index._totals["apply"]["calls"] += done
    index.last_op = {"op": "apply", "distance_computations": 0, "nodes_visited": 0,
                     "deltas": done, "records": int(off[done, 0])}
    if code != OK:
        raise _delta_error(delta_at(done), code, rec, val)


# what each refusal code of the checking kernels means ({i}: the record, {v}: the value)
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
    delta_check.KIND_COUNTS: "record {i}'s list lengths do not fit its kind {v} (none: no "
                             "values, full: no added part)",
    delta_check.VECTOR_TOO_LARGE: "new node {v}'s vector has a squared norm above 2**125, "
                                  "beyond which float32 distances overflow",
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

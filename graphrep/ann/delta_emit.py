"""Kernels that turn the lists a mutation touched into the records of its delta.

A mutation kernel (:mod:`graphrep.ann.kernels`) notes every list it touches,
with a copy of the list as it was (``Changes``); :func:`changed_records`
orders those records (the new node first, then by id) and writes each as a
full list or, when shorter, as a diff against its copy. Nothing here compares
vectors.

:func:`delta_from_changes`, :func:`delta_for` and :func:`make_delta` are the
index's side: they run those kernels over an index's arrays and wrap the
records in an :class:`~graphrep.ann.delta.EdgeDelta` that takes the index's
next seq.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numba import njit

from graphrep.ann.delta import EdgeDelta
from graphrep.ann.delta_wire import KIND_DIFF, KIND_FULL, KIND_NONE
from graphrep.ann.kernels import Changes, _next_epoch

if TYPE_CHECKING:
    from graphrep.ann.index import VamanaIndex


@njit(inline="always")
def _sort_small(a, lo, hi):
    """Insertion sort of a[lo:hi] (lists here are short: at most R)."""
    for i in range(lo + 1, hi):
        x = a[i]
        j = i - 1
        while j >= lo and a[j] > x:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = x


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
        oi = old_idx[i]
        if i >= n_new and oi >= 0:
            od = old_deg[oi]
            ep = _next_epoch(mark, mstate)
            for t in range(d):
                mark[nbrs[j, t]] = ep
            nr = 0
            for t in range(od):
                c = old[oi, t]
                if mark[c] == ep:
                    mark[c] = -1  # in both lists
                else:
                    values[vp + nr] = ext[c]
                    nr += 1
            na = 0
            for t in range(d):
                c = nbrs[j, t]
                if mark[c] == ep:
                    values[vp + nr + na] = ext[c]
                    na += 1
            if nr + na == 0:
                kinds[i] = KIND_NONE
                counts[i, 0] = 0
                counts[i, 1] = 0
                continue
            if nr + na < d:
                kinds[i] = KIND_DIFF
                counts[i, 0] = nr
                counts[i, 1] = na
                _sort_small(values, vp, vp + nr)
                _sort_small(values, vp + nr, vp + nr + na)
                vp += nr + na
                continue
        kinds[i] = KIND_FULL
        counts[i, 0] = d
        counts[i, 1] = 0
        for t in range(d):
            values[vp + t] = ext[nbrs[j, t]]
        if d > 64:
            values[vp : vp + d].sort()
        else:
            _sort_small(values, vp, vp + d)
        vp += d
    return vp



@njit(cache=True)
def changed_records(touched, n, old_cap, new_slot, old, old_deg, nbrs, deg, ext, mark, mstate,
                    out_slots, kinds, counts, values):
    """Records of an operation's change log in canonical order, in one call.

    ``touched[:n]`` are the slots in the order they were first touched (the
    pre-image of touch ``c`` is ``old[c]`` when ``c < old_cap``);
    ``new_slot`` (or -1) is the node the operation created, which goes
    first; the others follow in id order. Returns (records with a new node,
    values written); ``out_slots[:n]`` receives the ordered slots.
    """
    order = np.argsort(ext[touched[:n]])
    old_idx = np.empty(n, dtype=np.int32)
    r = 0
    n_new = 0
    if new_slot >= 0:
        for t in range(n):
            if touched[t] == new_slot:
                out_slots[0] = new_slot
                old_idx[0] = -1
                r = 1
                n_new = 1
                break
    for a in range(n):
        t = order[a]
        if touched[t] == new_slot:
            continue
        out_slots[r] = touched[t]
        old_idx[r] = t if t < old_cap else -1
        r += 1
    nv = make_records(out_slots, n, n_new, old_idx, old, old_deg, nbrs, deg, ext, mark, mstate,
                      kinds, counts, values)
    return n_new, nv


# --------------------------------------------------------------------------- the index's side


def delta_from_changes(index: VamanaIndex, op: str, new_slot: int = -1,
                       changes: Changes | None = None,
                       removed: np.ndarray | None = None) -> EdgeDelta:
    """The delta of the lists ``changes`` (default: the index's own change log)
    recorded; ``new_slot`` is the node the operation created (-1: none)."""
    ch = index._changes if changes is None else changes
    g = index._g
    c = int(ch.count[0])
    slots = np.empty(c, dtype=np.int32)
    kinds = np.empty(c, dtype=np.uint8)
    counts = np.empty((c, 2), dtype=np.int32)
    values = np.empty(2 * index.R * c + 1, dtype=np.int64)
    s = index._scratch(index.L)
    n_new, nv = changed_records(ch.slots, c, ch.old.shape[0], new_slot, ch.old, ch.old_deg,
                                g.nbrs, g.deg, g.ext, s.mark, s.mstate, slots, kinds, counts,
                                values)
    return make_delta(index, op, ids=g.ext[slots], flags=g.flags[slots], kinds=kinds,
                      counts=counts, values=values[:nv], vectors=g.vecs[slots[:n_new]],
                      removed=removed)


def delta_for(index: VamanaIndex, slots: np.ndarray, op: str) -> EdgeDelta:
    """A delta carrying the full records of ``slots``, all of them new nodes."""
    g = index._g
    slots = np.ascontiguousarray(slots, dtype=np.int32)
    n = slots.shape[0]
    kinds = np.empty(n, dtype=np.uint8)
    counts = np.empty((n, 2), dtype=np.int32)
    values = np.empty(int(g.deg[slots].sum()) + 1, dtype=np.int64)
    s = index._scratch(index.L)
    no_old = np.full(n, -1, dtype=np.int32)
    nv = make_records(slots, n, n, no_old, index._changes.old, index._changes.old_deg,
                      g.nbrs, g.deg, g.ext, s.mark, s.mstate, kinds, counts, values)
    return make_delta(index, op, ids=g.ext[slots], flags=g.flags[slots], kinds=kinds,
                      counts=counts, values=values[:nv], vectors=g.vecs[slots])


def make_delta(index: VamanaIndex, op: str, *, ids: np.ndarray, flags: np.ndarray,
               kinds: np.ndarray, counts: np.ndarray, values: np.ndarray,
               vectors: np.ndarray, removed: np.ndarray | None = None) -> EdgeDelta:
    """The next delta of ``index``: it takes the index's seq (which then advances) and
    names its entry point as it is now."""
    delta = EdgeDelta(
        seq=index._seq, op=op, dim=index.dim,
        entry=int(index._g.ext[index._entry]) if index._entry >= 0 else -1,
        ids=ids, flags=flags, kinds=kinds, counts=counts, values=values, vectors=vectors,
        removed=np.zeros(0, np.int64) if removed is None else removed.astype(np.int64),
    )
    index._seq += 1
    return delta

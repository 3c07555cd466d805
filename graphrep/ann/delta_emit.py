"""Kernels that turn the lists a mutation touched into the records of its delta.

A mutation kernel (:mod:`graphrep.ann.kernels`) notes every list it touches,
with a copy of the list as it was (``Changes``); :func:`changed_records`
orders those records (the new node first, then by id) and writes each as a
full list or, when shorter, as a diff against its copy. Nothing here compares
vectors.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from graphrep.ann.delta_wire import KIND_DIFF, KIND_FULL, KIND_NONE
from graphrep.ann.kernels import _next_epoch


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

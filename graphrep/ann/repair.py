"""Anti-entropy repair: find the nodes two replicas disagree on, and overwrite them.

A replica compares :func:`record_hashes` (or a Merkle tree over them) with a
trusted copy's, asks that copy for the full records of the nodes that differ
(:func:`export_records`) and writes them over its own
(:func:`overwrite_records`). The public methods
:meth:`~graphrep.ann.VamanaIndex.record_hashes`,
:meth:`~graphrep.ann.VamanaIndex.export_records` and
:meth:`~graphrep.ann.VamanaIndex.overwrite_records` call these functions; their
docstrings state the contract. A repair is not a log entry: it emits no
delta, and computes no distance.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from graphrep.ann.analysis import sorted_neighbour_ids, stored_slots
from graphrep.ann.delta_apply import first_too_large
from graphrep.ann.idmap import MAX_ID
from graphrep.ann.kernels import DELETED, FREE, LIVE
from graphrep.ann.records import RecordSet, as_record_set, node_hashes
from graphrep.ann.validation import MAX_SEQ, as_id, check_int, id_list
from graphrep.errors import DeltaError, DimensionMismatch, UnknownId

if TYPE_CHECKING:
    from graphrep.ann.index import VamanaIndex


def record_hashes(index: VamanaIndex) -> tuple[np.ndarray, np.ndarray]:
    """Every stored node's id (ascending) and hash (:func:`graphrep.ann.records.node_hashes`)."""
    g = index._g
    slots = stored_slots(index).astype(np.int32)
    hashes = np.empty(slots.shape[0], dtype=np.uint64)
    node_hashes(slots, g.vecs.view(np.uint32), g.nbrs, g.deg, g.flags, g.ext, hashes)
    return g.ext[slots].copy(), hashes


def export_records(index: VamanaIndex, ids: Any) -> RecordSet:
    """The records of the distinct ``ids``, ascending, each list sorted by id."""
    want = id_list(ids, "export_records ids")
    uniq = np.unique(want)
    slots = _stored(index, uniq, "export_records: id {} is not stored in this index (never "
                    "inserted, or freed by consolidate); export ids from this index's "
                    "record_hashes()")
    g = index._g
    ext_nb, valid = sorted_neighbour_ids(index, slots)
    return RecordSet(index.dim, uniq, g.flags[slots], g.vecs[slots], g.deg[slots],
                     ext_nb[valid])


def _stored(index: VamanaIndex, ids: np.ndarray, unknown: str) -> np.ndarray:
    """The slots of ``ids``; :class:`UnknownId` with the message ``unknown`` (``{}``: the
    first id not stored) if one is not stored in ``index``."""
    slots = index._idmap.get_many(ids)
    if (slots < 0).any():
        raise UnknownId(unknown.format(int(ids[slots < 0][0])))
    return slots


def overwrite_records(index: VamanaIndex, records: RecordSet, drop_ids: Any = (),
                      entry_id: int | None = None, seq: int | None = None) -> None:
    """Check the repair completely (:func:`_plan`), then apply it (:func:`_overwrite`)."""
    if seq is not None:
        check_int(seq, "seq", 0, MAX_SEQ)
    rs = as_record_set(records)
    if rs.dim != index.dim:
        raise DimensionMismatch(
            f"overwrite_records: the records have dimension {rs.dim} but this index has "
            f"dim={index.dim}; repair from a replica of the same index"
        )
    plan = _plan(index, rs, id_list(drop_ids, "overwrite_records drop_ids"), entry_id)
    _overwrite(index, rs, *plan)
    if seq is not None:
        index._seq = int(seq)


def _plan(index: VamanaIndex, rs: RecordSet, drop: np.ndarray, entry_id: int | None
          ) -> tuple[np.ndarray, np.ndarray, int]:
    """Check a repair completely; return the record slots (-1 for a new node), the
    drop slots and the entry point's id after the repair (-1: no entry point)."""

    def bad(what: str) -> DeltaError:
        return DeltaError(f"overwrite_records: {what}; the index is unchanged. Export the "
                          "records and drop ids again from the trusted replica")

    g = index._g
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
    if n and (counts > index.R).any():
        i = int(np.flatnonzero(counts > index.R)[0])
        raise bad(f"id {int(ids[i])}'s list has {int(counts[i])} neighbours, more than "
                  f"R={index.R}")
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
    drop_slots = _stored(index, drop, "overwrite_records: drop id {} is not stored in this "
                         "index; the index is unchanged. Compare record_hashes() again and "
                         "drop only ids this index holds")
    both = np.intersect1d(uniq, d_uniq)
    if both.size:
        raise bad(f"id {int(both[0])} is both overwritten and dropped")
    rec_slots = index._idmap.get_many(ids)
    # every neighbour must exist afterwards: a record here, or a stored node not dropped
    exists = np.isin(nb, uniq) | ((index._idmap.get_many(nb) >= 0) & ~np.isin(nb, d_uniq))
    if not exists.all():
        j = int(np.flatnonzero(~exists)[0])
        raise bad(f"id {int(ids[owner[j]])} names neighbour {int(nb[j])}, which would not "
                  "be stored after the repair (send its record too, or don't drop it)")
    # no edge may dangle: the in-edges of each dropped node must all come from
    # overwritten or dropped nodes, whose current lists go away
    if drop_slots.size:
        ds = np.sort(drop_slots)
        src = np.concatenate((rec_slots[rec_slots >= 0], drop_slots))
        valid = np.arange(index.R)[None, :] < g.deg[src][:, None]
        cur = g.nbrs[src][valid]
        cur = cur[np.isin(cur, ds)]
        gone = np.bincount(np.searchsorted(ds, cur), minlength=ds.size)
        left = g.indeg[ds] - gone
        if (left > 0).any():
            t = int(ds[np.flatnonzero(left > 0)[0]])
            raise bad(f"dropping id {int(g.ext[t])} would leave dangling the edge to it "
                      f"from id {_an_unlisted_source(index, t, src)}, which is neither "
                      "overwritten nor dropped (send that node's record too)")
    n_after = index._used - drop.size + int((rec_slots < 0).sum())
    if entry_id is not None:
        e = as_id(entry_id, "overwrite_records entry_id")
        if not (e in uniq or (index._idmap.get(e) >= 0 and e not in d_uniq)):
            raise bad(f"entry_id {e} would not be stored after the repair")
        entry = e
    elif n_after == 0:
        entry = -1
    elif index._entry < 0 or index._entry in set(drop_slots.tolist()):
        raise bad("the repair leaves no entry point (the index has none, or it is "
                  "dropped); pass entry_id, the trusted replica's entry_id")
    else:
        entry = index.entry_id
    return rec_slots, drop_slots, entry


def _an_unlisted_source(index: VamanaIndex, target: int, listed: np.ndarray) -> int:
    """The id of some node, not in the slots ``listed``, with an edge to slot ``target``
    (for an error message: a scan of the whole graph)."""
    g = index._g
    n = index._n_slots
    has = (g.nbrs[:n] == target) & (np.arange(index.R)[None, :] < g.deg[:n][:, None])
    src = np.setdiff1d(np.flatnonzero(has.any(axis=1)), listed)
    return int(g.ext[src[0]]) if src.size else -1


def _overwrite(index: VamanaIndex, rs: RecordSet, rec_slots: np.ndarray,
               drop_slots: np.ndarray, entry_id: int) -> None:
    """Apply a repair that :func:`_plan` accepted."""
    new = rec_slots < 0
    index._reserve(int(new.sum()))  # may reallocate the arrays: read index._g after it
    g = index._g
    R = index.R
    # the current lists of dropped and overwritten nodes go, and their in-degrees
    old = np.concatenate((drop_slots, rec_slots[~new]))
    valid = np.arange(R)[None, :] < g.deg[old][:, None]
    np.subtract.at(g.indeg, g.nbrs[old][valid], 1)
    g.nbrs[old] = -1
    g.deg[old] = 0
    index._n_live -= int((g.flags[old] == LIVE).sum())
    index._n_deleted -= int((g.flags[old] == DELETED).sum())
    for i in g.ext[drop_slots].tolist():
        index._idmap.discard(int(i))
    g.flags[drop_slots] = FREE
    g.ext[drop_slots] = -1
    g.vecs[drop_slots] = 0
    index._push_free(drop_slots)
    # new nodes take slots (freed ones first)
    slots = rec_slots.copy()
    slots[new] = index._take_slots(int(new.sum()))
    g.ext[slots[new]] = rs.ids[new]
    g.indeg[slots[new]] = 0
    index._idmap.put_many(rs.ids[new], slots[new])
    # every record's flags, vector and list
    g.flags[slots] = rs.flags
    g.vecs[slots] = rs.vectors
    index._encode_slots(slots)
    index._n_live += int((rs.flags == LIVE).sum())
    index._n_deleted += int((rs.flags == DELETED).sum())
    owner = np.repeat(np.arange(len(rs)), rs.counts)
    pos = np.arange(owner.size) - rs.offsets[owner]
    targets = index._idmap.get_many(rs.neighbours)
    g.nbrs[slots[owner], pos] = targets
    g.deg[slots] = rs.counts
    np.add.at(g.indeg, targets, 1)
    index._entry = index._idmap.get(entry_id) if entry_id >= 0 else -1
    index.last_op = {"op": "overwrite_records", "distance_computations": 0,
                    "nodes_visited": 0, "records": len(rs),
                    "created": int(new.sum()), "dropped": int(drop_slots.size)}

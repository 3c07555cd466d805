"""The index's side of taking in deltas: what the kernels can't check, and the errors.

:meth:`VamanaIndex.apply <graphrep.ann.VamanaIndex.apply>` and
:meth:`~graphrep.ann.VamanaIndex.apply_bytes` call :func:`apply` and
:func:`apply_bytes`. They check what the kernels of :mod:`graphrep.ann.delta_apply`
can't (types, shapes, dimension, seq), hand the index's arrays to those kernels,
take in the counts the kernels changed and turn a kernel's refusal code into the
error that names it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from graphrep.ann import delta_apply
from graphrep.ann.delta import (
    ARRAY_DTYPES,
    DeltaBatch,
    EdgeDelta,
    array_problem,
    corrupt_at,
    float32s,
    joined,
)
from graphrep.ann.idmap import MAX_ID
from graphrep.errors import (
    DeltaError,
    DeltaOutOfOrder,
    DimensionMismatch,
    DuplicateId,
    GraphrepError,
)

if TYPE_CHECKING:
    from graphrep.ann.index import VamanaIndex


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
         removed) = delta_apply.apply_wire(
            buf, starts, index.dim, index._seq, index._idmap.count, index._idmap.keys,
            index._idmap.vals, index._g, index.R, s.mark, s.mstate, index._free, state,
        )
        if outcome != delta_apply.WIRE_ROOM:
            break
        index._reserve(int(a))  # then decode and check again: nothing has changed
    if outcome == delta_apply.WIRE_CORRUPT:
        raise corrupt_at(int(a), int(b), int(v), starts)
    batch = DeltaBatch(hdr, off, ids, flags, kinds, counts, values, float32s(vec), removed)
    if outcome == delta_apply.WIRE_DIM:
        k = int(a)
        raise DimensionMismatch(
            f"delta seq {int(batch.seq[k])} is for dimension {int(batch.dim[k])} but this "
            f"index has dim={index.dim}; apply it to a replica created with the same dim"
        )
    if outcome == delta_apply.WIRE_SEQ:
        k = int(a)
        raise _out_of_order(int(batch.seq[k]), index._seq + k)
    _applied(index, state, off, ids, int(a), int(b), int(c), int(v), batch.delta)
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
    done, code, rec, val = delta_apply.apply_batch(
        ids, flags, kinds, counts, values, vectors, removed, entries, off,
        index._idmap.keys, index._idmap.vals, index._g, index.R, s.mark, s.mstate,
        index._free, state,
    )
    _applied(index, state, off, ids, int(done), int(code), int(rec), int(val),
             deltas.__getitem__)


def _state(index: VamanaIndex) -> np.ndarray:
    """The allocator and counts as the apply kernels take them (``delta_apply.ST_*``)."""
    return np.array([index._n_slots, index._n_free, index._n_live, index._n_deleted,
                     index._entry], dtype=np.int64)


def _applied(index: VamanaIndex, state: np.ndarray, off: np.ndarray, ids: np.ndarray,
             done: int, code: int, rec: int, val: int,
             delta_at: Callable[[int], EdgeDelta]) -> None:
    """Take in what an apply kernel did: ``done`` deltas applied, then ``code`` (with
    the record and value it names) for the one after them, ``delta_at(done)``. ``ids``
    are the records' ids (a delta's new nodes come first among its records)."""
    (index._n_slots, index._n_free, index._n_live, index._n_deleted,
     index._entry) = state.tolist()
    if index.codebook is not None and done:
        new = [ids[off[k, 0]: off[k, 0] + off[k + 1, 2] - off[k, 2]] for k in range(done)]
        index._encode_ids(np.concatenate(new))
    index._idmap.count += int(off[done, 2] - off[done, 3])
    index._seq += done
    index._totals["apply"]["calls"] += done
    index.last_op = {"op": "apply", "distance_computations": 0, "nodes_visited": 0,
                     "deltas": done, "records": int(off[done, 0])}
    if code != delta_apply.OK:
        raise _delta_error(delta_at(done), code, rec, val)


# what each refusal code of the checking kernels means ({i}: the record, {v}: the value)
_DELTA_MESSAGES = {
    delta_apply.NEW_ID_EXISTS: "new node id {v} already exists here",
    delta_apply.RECORD_ID_REPEATED: "id {v} has two records",
    delta_apply.RECORD_ID_UNKNOWN: "record for id {v}, which this index doesn't hold",
    delta_apply.BAD_FLAGS: "record {i} has invalid flags {v}",
    delta_apply.LIST_TOO_LONG: "record {i}'s list would have {v} neighbours, more than R",
    delta_apply.NEIGHBOUR_UNKNOWN: "record {i} names neighbour {v}, which this index doesn't hold",
    delta_apply.SELF_LOOP: "record {i} links id {v} to itself",
    delta_apply.NEIGHBOUR_REPEATED: "record {i} names neighbour {v} twice",
    delta_apply.DIFF_REMOVES_ABSENT: "record {i}'s diff removes {v}, which is not in its list here",
    delta_apply.DIFF_ADDS_PRESENT: "record {i}'s diff adds {v}, which is already in its list here",
    delta_apply.REMOVED_UNKNOWN: "it frees id {v}, which this index doesn't hold",
    delta_apply.REMOVED_NOT_DELETED: "it frees id {v}, which is not deleted here",
    delta_apply.ENTRY_UNKNOWN: "its entry point {v} is not a node here",
    delta_apply.BAD_KIND: "record {i} has unknown list kind {v}",
    delta_apply.NEW_WITHOUT_LIST: "new node {v} comes without its full list",
    delta_apply.BAD_ID: "record {i} has id {v}, outside [0, 2**62)",
    delta_apply.BAD_COUNTS: "its list lengths don't add up to its values ({v})",
    delta_apply.NONFINITE_VECTOR: "new node {i}'s vector is not finite",
    delta_apply.REMOVED_REPEATED: "it frees id {v} twice",
    delta_apply.REMOVED_HAS_RECORD: "record {i} rewrites id {v}, which the same delta frees",
    delta_apply.REMOVED_STILL_LINKED: "it frees id {v}, but a list still links to it after "
                                      "the delta (the edge would dangle; every list that "
                                      "links to it must be rewritten without it)",
    delta_apply.NEIGHBOUR_REMOVED: "record {i} links to id {v}, which the same delta frees",
    delta_apply.KIND_COUNTS: "record {i}'s list lengths do not fit its kind {v} (none: no "
                             "values, full: no added part)",
    delta_apply.VECTOR_TOO_LARGE: "new node {v}'s vector has a squared norm above 2**125, "
                                  "beyond which float32 distances overflow",
}


def _malformed(d: EdgeDelta, what: str) -> DeltaError:
    """The error for a delta whose fields can't describe a delta (``what`` says why)."""
    return DeltaError(f"delta seq {d.seq} ({d.op}) is malformed: {what}; the index is "
                      "unchanged by it. Fetch the delta again from its origin")


def _delta_error(d: EdgeDelta, code: int, rec: int, val: int) -> DeltaError:
    """The error for a delta the checking kernels refused with ``code`` (record ``rec``,
    value ``val``)."""
    what = _DELTA_MESSAGES.get(code, "unknown validation failure {v}").format(i=rec, v=val)
    cls = DuplicateId if code == delta_apply.NEW_ID_EXISTS else DeltaError
    msg = (f"delta seq {d.seq} ({d.op}) does not fit this index: {what}; the index is "
           "unchanged. A replica that diverged needs a snapshot or anti-entropy repair")
    return cls(msg)

"""The index read as a whole graph: its invariants, its statistics, a networkx view.

:meth:`VamanaIndex.graph_problems <graphrep.ann.VamanaIndex.graph_problems>`,
:meth:`~graphrep.ann.VamanaIndex.stats` and
:meth:`~graphrep.ann.VamanaIndex.to_networkx` call the functions here. They
read the arrays and change nothing; none of them is on a hot path (each is
O(size * R), and :func:`to_networkx` builds a Python object per node and edge).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from graphrep.ann.idmap import MAX_ID
from graphrep.ann.kernels import DELETED, FREE, LIVE

if TYPE_CHECKING:
    import networkx

    from graphrep.ann.index import VamanaIndex

_PAD = np.iinfo(np.int64).max


def sorted_neighbour_ids(index: VamanaIndex, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The neighbour ids of ``slots`` as an (n, R) int64 array, each row ascending with
    its padding (the largest int64) last, and the mask of the entries that are ids."""
    g = index._g
    valid = np.arange(index.R)[None, :] < g.deg[slots][:, None]
    ext_nb = np.where(valid, g.ext[np.where(valid, g.nbrs[slots], 0)], _PAD)
    ext_nb.sort(axis=1)
    return ext_nb, valid


def stored_slots(index: VamanaIndex, include_deleted: bool = True) -> np.ndarray:
    """The slots of the stored nodes (live, and deleted unless ``include_deleted`` is
    False), in ascending id order."""
    g = index._g
    flags = g.flags[: index._n_slots]
    slots = np.flatnonzero((flags != FREE) if include_deleted else (flags == LIVE))
    return slots[np.argsort(g.ext[slots], kind="stable")]


def graph_problems(index: VamanaIndex) -> list[str]:
    """Violations of the graph invariants (empty when healthy): degree <= R, no edge to
    a free slot or to itself, no duplicate edge, in-degrees consistent, an entry point;
    and of the bookkeeping around them: ids unique, in range and all in the id table,
    live and deleted counts that match the flags, and a free list that names every
    free slot once."""
    g = index._g
    n = index._n_slots
    out: list[str] = []
    used = np.flatnonzero(g.flags[:n] != FREE)
    if (g.deg[:n] > index.R).any():
        out.append(f"{int((g.deg[:n] > index.R).sum())} lists longer than R={index.R}")
    if (g.deg[:n][g.flags[:n] == FREE] != 0).any():
        out.append("a free slot has edges")
    nb = g.nbrs[used]
    valid = np.arange(index.R)[None, :] < g.deg[used][:, None]
    targets = nb[valid]
    if targets.size and ((targets < 0) | (targets >= n)).any():
        out.append("an edge points outside the used slots")
    elif targets.size and (g.flags[targets] == FREE).any():
        out.append(f"{int((g.flags[targets] == FREE).sum())} edges to unknown (freed) ids")
    if (nb == used[:, None])[valid].any():
        out.append("a self loop")
    srt = np.sort(np.where(valid, nb, -1), axis=1)
    if ((srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)).any():
        out.append("a duplicate edge")
    indeg = np.bincount(targets[(targets >= 0) & (targets < n)], minlength=n) if n else []
    if n and not np.array_equal(indeg[:n], g.indeg[:n]):
        out.append("in-degree counters disagree with the lists")
    if index._used and (index._entry < 0 or g.flags[index._entry] == FREE):
        out.append("no valid entry point")
    ids = g.ext[used]
    if ids.size and (ids.min() < 0 or ids.max() > MAX_ID or np.unique(ids).size != ids.size):
        out.append("an id is out of range or stored twice")
    if index._idmap.count != used.size or not np.array_equal(index._idmap.get_many(ids), used):
        out.append("the id table disagrees with the stored ids")
    flags = g.flags[:n]
    if (index._n_live, index._n_deleted) != (int((flags == LIVE).sum()),
                                           int((flags == DELETED).sum())):
        out.append("live and deleted counts disagree with the flags")
    free = index._free[: index._n_free]
    if np.unique(free).size != free.size or free.size != n - used.size or \
            (free.size and ((free < 0) | (free >= n)).any()) or \
            (free.size and (flags[np.clip(free, 0, max(n - 1, 0))] != FREE).any()):
        out.append("the free list does not name every free slot exactly once")
    return out


def stats(index: VamanaIndex) -> dict[str, Any]:
    """Size, live/deleted counts, degree and in-degree histograms, unreachable live
    nodes, and the per-operation counters of distance computations and visits."""
    g = index._g
    n = index._n_slots
    used = g.flags[:n] != FREE
    live = g.flags[:n] == LIVE
    deg = g.deg[:n][used]
    indeg = g.indeg[:n][live]
    return {
        "dim": index.dim, "metric": index.metric, "R": index.R, "L": index.L,
        "alpha": index.alpha,
        "size": int(used.sum()), "live": index._n_live, "deleted": index._n_deleted,
        "capacity": index._cap, "seq": index._seq, "entry_id": index.entry_id,
        "degree_histogram": np.bincount(deg, minlength=index.R + 1).tolist() if deg.size
        else [0] * (index.R + 1),
        "mean_degree": float(deg.mean()) if deg.size else 0.0,
        "max_degree": int(deg.max()) if deg.size else 0,
        "in_degree_histogram": np.bincount(indeg).tolist() if indeg.size else [],
        "zero_in_degree_live": int(((indeg == 0) & (g.ext[:n][live] != index.entry_id)).sum()),
        "unreachable": index.unreachable_count(),
        "counters": {op: dict(v) for op, v in index._totals.items()},
        "distance_computations": int(index._counters[0]),
        "nodes_visited": int(index._counters[1]),
    }


def to_networkx(index: VamanaIndex, include_deleted: bool = False,
                vectors: bool = False) -> networkx.DiGraph:
    """``index``'s graph as a :class:`networkx.DiGraph`, built in ascending id order.

    Nodes are the ids of the live nodes (and of the deleted ones with
    ``include_deleted``), each with the attributes ``id`` and ``deleted`` (and
    ``vector``, a copy of the stored vector, with ``vectors``); an edge ``u -> v``
    says that ``v`` is in ``u``'s neighbour list (edges to nodes left out are left
    out too). The graph attributes are ``dim``, ``metric``, ``R``, ``seq`` and
    ``entry_id`` (-1 when the index is empty).
    """
    import networkx  # only here: the index itself never needs it

    g = index._g
    slots = stored_slots(index, include_deleted)
    ids = g.ext[slots]
    out = networkx.DiGraph(dim=index.dim, metric=index.metric, R=index.R, seq=index.seq,
                           entry_id=index.entry_id)
    deleted = (g.flags[slots] == DELETED).tolist()
    if vectors:
        out.add_nodes_from((i, {"id": i, "deleted": d, "vector": g.vecs[s].copy()})
                           for i, d, s in zip(ids.tolist(), deleted, slots.tolist(),
                                              strict=True))
    else:
        out.add_nodes_from((i, {"id": i, "deleted": d})
                           for i, d in zip(ids.tolist(), deleted, strict=True))
    ext_nb, valid = sorted_neighbour_ids(index, slots)
    src = np.broadcast_to(ids[:, None], ext_nb.shape)[valid]
    dst = ext_nb[valid]
    kept = np.isin(dst, ids)  # ids ascending: the edges stay in (source, target) order
    out.add_edges_from(zip(src[kept].tolist(), dst[kept].tolist(), strict=True))
    return out

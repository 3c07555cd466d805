"""PoolGraph: lists are the prune of their pools; state independent of arrival order."""

from __future__ import annotations

import random

import numpy as np
import pytest

from graphrep.ann.pools import PoolGraph
from graphrep.errors import CorruptIndexFile, DimensionMismatch, EmptyIndex, InvalidArgument


def build(n: int = 300, dim: int = 8, seed: int = 0, deletes: bool = True
          ) -> tuple[PoolGraph, list, np.ndarray]:
    """A graph grown by inserts (and some deletes), and the operations that made it."""
    X = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    g = PoolGraph(dim, R=8, L=20)
    ops: list = []
    for i in range(n):
        pool = g.candidates_for(X[i]) if g.entry_id >= 0 else []
        g.add(i, i + 1, X[i])
        ops.append(("add", i, i + 1, X[i]))
        me = [(i, i + 1)]
        g.offer(me * len(pool), pool)
        back = g.list_of(i, i + 1)
        g.offer(back, me * len(back))
        ops += [("offer", me * len(pool), pool), ("offer", back, me * len(back))]
        if deletes and i % 9 == 8 and (i // 2) in g:
            g.tombstone(i // 2, i + 1)
            ops.append(("tomb", i // 2, i + 1))
    return g, ops, X


def replay(ops: list, dim: int = 8) -> PoolGraph:
    g = PoolGraph(dim, R=8, L=20)
    for op in ops:
        if op[0] == "add":
            g.add(*op[1:])
        elif op[0] == "offer":
            g.offer(*op[1:])
        else:
            g.tombstone(*op[1:])
    return g


def test_incremental_lists_equal_lists_recomputed_from_the_pools():
    g, _, _ = build()
    assert g.graph_problems() == []
    assert len(g) < 300  # some were deleted
    assert max(g.deg[: g._n]) <= g.R


def test_any_arrival_order_with_duplicates_gives_the_same_digest():
    g, ops, _ = build(200)
    for seed in range(3):
        shuffled = list(ops)
        random.Random(seed).shuffle(shuffled)
        shuffled += shuffled[:40]  # duplicates
        h = replay(shuffled)
        assert h.pending == 0
        assert h.digest() == g.digest()
        assert h.graph_problems() == []


def test_offers_for_an_incarnation_not_here_yet_wait_for_it():
    g = PoolGraph(2, R=4, L=8)
    g.add(1, 1, [0.0, 0.0])
    g.offer([(1, 1)], [(2, 5)])
    assert g.pending == 1 and g.list_of(1, 1) == []
    g.add(2, 5, [1.0, 0.0])
    assert g.pending == 0 and g.list_of(1, 1) == [(2, 5)]


def test_the_largest_version_is_the_value_and_a_tombstone_kills_only_older_ones():
    g = PoolGraph(2, R=4, L=8)
    g.add(7, 10, [0.0, 0.0])
    g.tombstone(7, 20)
    assert 7 not in g and g.is_deleted(7)
    g.add(7, 15, [1.0, 1.0])  # older than the tombstone: stays dead
    assert 7 not in g
    g.add(7, 30, [2.0, 2.0])  # newer: lives again, as a new incarnation
    assert 7 in g and g.version(7) == 30
    ids, _ = g.search(np.array([2.0, 2.0], np.float32), k=1)
    assert ids[0] == 7


def test_a_newer_write_supersedes_an_older_one_in_either_order():
    a, b = PoolGraph(2, R=4, L=8), PoolGraph(2, R=4, L=8)
    a.add(1, 5, [0.0, 0.0])
    a.add(1, 9, [3.0, 0.0])
    b.add(1, 9, [3.0, 0.0])
    b.add(1, 5, [0.0, 0.0])
    assert a.digest() == b.digest()
    assert a.search(np.array([3.0, 0.0], np.float32), k=1)[1][0] == 0.0


def test_the_entry_point_is_the_smallest_live_id():
    g, _, _ = build(60, deletes=False)
    assert g.entry_id == 0
    g.tombstone(0, 10**6)
    assert g.entry_id == 1


def test_search_finds_near_neighbours():
    g, _, X = build(400, deletes=False)
    Q = np.random.default_rng(9).standard_normal((30, 8)).astype(np.float32)
    ids, _ = g.search(Q, k=5)
    truth = np.argsort(((Q[:, None] - X[None]) ** 2).sum(-1), axis=1)[:, :5]
    recall = np.mean([len(set(ids[r]) & set(truth[r])) / 5 for r in range(30)])
    assert recall > 0.9


def test_bytes_round_trip_and_damage_is_refused():
    g, _, _ = build(100)
    h = PoolGraph.from_bytes(g.to_bytes())
    assert h.digest() == g.digest() and h.graph_problems() == []
    with pytest.raises(CorruptIndexFile):
        PoolGraph.from_bytes(g.to_bytes()[:-50])


def test_bad_input_is_refused_and_changes_nothing():
    g = PoolGraph(3)
    with pytest.raises(DimensionMismatch):
        g.add(1, 1, [1.0, 2.0])
    with pytest.raises(InvalidArgument):
        g.add(1, 1, [1.0, np.nan, 0.0])
    with pytest.raises(EmptyIndex):
        g.search(np.zeros(3, np.float32))
    g.add(1, 1, [1.0, 2.0, 3.0])
    with pytest.raises(InvalidArgument, match="two different vectors"):
        g.add(1, 1, [0.0, 2.0, 3.0])
    assert len(g) == 1 and g.vector(1, 1).tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(InvalidArgument):
        PoolGraph(3, R=8, pool=4)


def test_queries_start_from_rescue_points_that_reach_every_live_node():
    """Prunes orphan a few nodes (no in-edge from what the entry points reach); a query
    also starts from the rescue points, a function of the state: every copy has the same
    ones, whatever the arrival order, and they follow every change."""
    g, ops, X = build(600, seed=4)
    assert g.orphan_count() > 0  # the case the rescue points exist for
    rescue = g.rescue_points()
    assert rescue == sorted(rescue) and all(g.is_live(*k) for k in rescue)
    assert g.unreachable_count() == 0
    shuffled = list(ops)
    random.Random(1).shuffle(shuffled)
    assert replay(shuffled).rescue_points() == rescue
    for id_, _ver in rescue:  # a query for a rescue point's own vector finds it
        ids, _ = g.search(X[id_], k=1)
        assert ids[0] == id_
    g.tombstone(rescue[0][0], rescue[0][1] + 1)  # a change: recomputed, still complete
    assert rescue[0] not in g.rescue_points() and g.unreachable_count() == 0
    assert 0 < len(g.rescue_points()) <= g.orphan_count()


def _insert(g: PoolGraph, id_: int, ver: int, x: np.ndarray) -> None:
    pool = g.candidates_for(x)
    g.add(id_, ver, x)
    me = [(id_, ver)]
    g.offer(me * len(pool), pool)
    back = g.list_of(id_, ver)
    g.offer(back, me * len(back))


def test_forgetting_the_dead_changes_nothing_a_reader_sees_and_frees_their_slots():
    g, ops, _ = build(600, seed=2)
    tombs = [(op[1], op[2]) for op in ops if op[0] == "tomb"]
    kept = PoolGraph.from_bytes(g.to_bytes())
    assert kept.garbage()["dead"] == len(tombs) > 0
    Q = np.random.default_rng(3).standard_normal((40, 8)).astype(np.float32)
    for i, v in tombs:
        g.forget(i, v)
    assert g.garbage() == {"tombstones": 0, "dead": 0, "ghosts": g._ghosts}
    assert g._ghosts > 0 and g._n == len(g) == len(kept)  # only the live keep a slot
    assert all(g.version(i) is None and not g.is_deleted(i) for i, _ in tombs)
    assert g.graph_problems() == []
    assert g.entry_ids == kept.entry_ids and g.rescue_points() == kept.rescue_points()
    for a, b in zip(g.search(Q, k=10), kept.search(Q, k=10), strict=True):
        assert np.array_equal(a, b)
    for i in g.ids().tolist()[::17]:
        assert np.array_equal(g.neighbors(i), kept.neighbors(i))
    # the graph goes on as the one that kept its dead: pools hold the ghosts' places
    X = np.random.default_rng(4).standard_normal((150, 8)).astype(np.float32)
    for k in range(150):
        _insert(g, 1000 + k, 5000 + k, X[k])
        _insert(kept, 1000 + k, 5000 + k, X[k])
    for a, b in zip(g.search(Q, k=10), kept.search(Q, k=10), strict=True):
        assert np.array_equal(a, b)


def test_when_the_dead_are_forgotten_does_not_matter():
    """Forgotten at once or after more inserts (which name live nodes only), compacted in
    one batch or several, through bytes or not: one digest."""
    g, ops, _ = build(400, seed=5)
    tombs = [(op[1], op[2]) for op in ops if op[0] == "tomb"]
    early = PoolGraph.from_bytes(g.to_bytes())
    for i, v in tombs:
        early.forget(i, v)
        early.compact()  # one batch each
    early = PoolGraph.from_bytes(early.to_bytes())  # ghosts through bytes
    X = np.random.default_rng(6).standard_normal((100, 8)).astype(np.float32)
    for k in range(100):
        _insert(g, 1000 + k, 5000 + k, X[k])
        _insert(early, 1000 + k, 5000 + k, X[k])
    assert g.digest() != early.digest()  # g still holds its dead
    for i, v in tombs:
        g.forget(i, v)
    assert g.digest() == early.digest()
    assert g.graph_problems() == [] and early.graph_problems() == []


def test_forgetting_a_live_node_is_refused_and_changes_nothing():
    g, _, _ = build(50, deletes=False)
    d = g.digest()
    with pytest.raises(InvalidArgument, match="alive"):
        g.forget(3, 10**6)
    g.forget(3, 1)  # below its only incarnation: nothing to forget
    assert g.digest() == d and 3 in g

"""Unit tests of VamanaIndex: build, insert, delete, consolidate, search, quality,
reachability under churn, save/load, capacity, metrics and counters."""

from __future__ import annotations

import numpy as np
import pytest

from graphrep.ann import EdgeDelta, VamanaIndex
from graphrep.datasets import gmm_dataset, ground_truth, recall_at_k
from graphrep.errors import InvalidArgument

# --------------------------------------------------------------------------- helpers


def small_index(n: int = 200, dim: int = 8, R: int = 8, L: int = 24, metric: str = "l2",
                seed: int = 1, **kw) -> tuple[VamanaIndex, np.ndarray, np.ndarray]:
    base, q = gmm_dataset(n, 20, dim, n_clusters=8, seed=seed)
    idx = VamanaIndex(dim, metric, R, L, **kw)
    idx.build(base)
    return idx, base, q


def edges_to(idx: VamanaIndex, targets: set[int]) -> list[tuple[int, int]]:
    return [(int(i), int(j)) for i in idx.ids(include_deleted=True)
            for j in idx.neighbors(i) if int(j) in targets]


def assert_health(idx: VamanaIndex) -> None:
    assert idx.graph_problems() == []
    st = idx.stats()
    assert st["max_degree"] <= idx.R
    assert sum(st["degree_histogram"][idx.R + 1:]) == 0
    known = set(idx.ids(include_deleted=True).tolist())
    for i in known:
        nb = idx.neighbors(i)
        assert nb.size <= idx.R
        assert set(nb.tolist()) <= known - {i}


# --------------------------------------------------------------------------- build & basics


def test_build_returns_one_delta_and_a_healthy_graph() -> None:
    base, _ = gmm_dataset(300, 1, 8, n_clusters=6, seed=2)
    idx = VamanaIndex(8, R=6, L=20)
    deltas = idx.build(base)
    assert len(deltas) == 1
    (d,) = deltas
    assert d.op == "build" and d.seq == 0 and d.n_new == 300 and d.n_records == 300
    assert idx.seq == 1
    assert len(idx) == 300 and np.array_equal(idx.ids(), np.arange(300))
    assert_health(idx)
    st = idx.stats()
    assert st["size"] == st["live"] == 300 and st["deleted"] == 0
    assert st["unreachable"] == 0
    assert st["max_degree"] == 6  # lists fill up to R on 300 points with R=6
    assert sum(st["degree_histogram"]) == 300
    assert sum(st["in_degree_histogram"]) == 300
    assert idx.last_op["op"] == "build" and idx.last_op["distance_computations"] > 0


def test_build_with_custom_ids() -> None:
    base, _ = gmm_dataset(50, 1, 4, n_clusters=3, seed=0)
    ids = np.arange(50, dtype=np.int64)[::-1] * 1000 + 17
    idx = VamanaIndex(4, R=4, L=10)
    idx.build(base, ids=ids)
    assert np.array_equal(idx.ids(), np.sort(ids))
    assert 17 in idx and 0 not in idx
    np.testing.assert_array_equal(idx.vector(int(ids[3])), base[3])
    found, dist = idx.search(base[3], k=1)
    assert found[0] == ids[3] and dist[0] == 0.0
    assert_health(idx)


def test_single_vector_build_and_first_insert() -> None:
    idx = VamanaIndex(4, R=4, L=8)
    idx.build(np.ones((1, 4), np.float32), ids=[42])
    assert idx.entry_id == 42 and idx.neighbors(42).size == 0
    ids, dists = idx.search(np.zeros(4), k=3)
    assert ids.tolist() == [42, -1, -1]
    assert dists[0] == 4.0 and np.isinf(dists[1:]).all()

    empty = VamanaIndex(4, R=4, L=8)
    d = empty.insert(7, [1, 2, 3, 4])
    assert d.op == "insert" and d.seq == 0 and d.n_new == 1
    assert empty.entry_id == 7 and len(empty) == 1
    d2 = empty.insert(8, [1, 2, 3, 5])
    assert d2.seq == 1
    assert empty.neighbors(8).tolist() == [7] and empty.neighbors(7).tolist() == [8]


def test_insert_adds_the_node_and_keeps_degree_bounded() -> None:
    idx, base, _ = small_index(n=120, R=5)
    rng = np.random.default_rng(0)
    for c in range(80):
        v = base[c] + rng.normal(0, 0.05, size=base.shape[1]).astype(np.float32)
        d = idx.insert(1000 + c, v)
        assert d.op == "insert" and d.n_new == 1 and int(d.ids[0]) == 1000 + c
        assert 1000 + c in idx
        assert 1 <= idx.neighbors(1000 + c).size <= 5
    assert len(idx) == 200 and idx.seq == 81
    assert_health(idx)
    assert idx.stats()["max_degree"] == 5


def test_search_shapes_order_and_exactness_with_a_full_beam() -> None:
    idx, base, q = small_index(n=150)
    ids1, d1 = idx.search(q[0], k=7)
    assert ids1.shape == d1.shape == (7,) and ids1.dtype == np.int64
    ids, dists = idx.search(q, k=7)
    assert ids.shape == dists.shape == (20, 7)
    assert np.array_equal(ids[0], ids1) and np.array_equal(dists[0], d1)
    assert (np.diff(dists, axis=1) >= 0).all()
    # a beam as large as the index visits every reachable node: exact answers
    exact, _ = ground_truth(base, q, 7)
    full, _ = idx.search(q, k=7, L=150)
    assert recall_at_k(full, exact, 7) == 1.0
    # k larger than the index: every live id once, then padding
    ids, dists = idx.search(q[0], k=160, L=200)
    assert sorted(ids[:150].tolist()) == list(range(150))
    assert (ids[150:] == -1).all() and np.isinf(dists[150:]).all()


def test_search_distances_are_the_metric() -> None:
    for metric in ("l2", "cosine", "ip"):
        idx, base, q = small_index(n=100, metric=metric)
        ids, dists = idx.search(q[:5], k=3)
        b = base.astype(np.float64)
        for row in range(5):
            x, y = b[ids[row]], q[row].astype(np.float64)
            if metric == "l2":
                want = ((x - y) ** 2).sum(axis=1)
            elif metric == "ip":
                want = -(x @ y)
            else:
                want = 1 - (x @ y) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y))
            np.testing.assert_allclose(dists[row], want, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- delete & consolidate


def test_delete_hides_at_once() -> None:
    idx, base, _ = small_index(n=200)
    for victim in (0, 57, 199, idx.entry_id):
        ids_before, _ = idx.search(base[victim], k=1)
        assert ids_before[0] == victim
        d = idx.delete(victim)
        assert d.op == "delete" and d.n_records == 1 and d.n_new == 0
        assert victim not in idx and idx.is_deleted(victim)
        assert victim not in idx.ids() and victim in idx.ids(include_deleted=True)
        ids, _ = idx.search(base[victim], k=10)
        assert victim not in ids
        ids, _ = idx.search(base, k=5)  # batch (parallel path on 2+ threads)
        assert victim not in ids
        ids, _ = idx.search(base[victim], k=200, L=250)
        assert victim not in ids
    assert len(idx) == 196 and idx.stats()["deleted"] == 4
    assert_health(idx)


def test_consolidate_removes_every_edge_to_deleted_ids() -> None:
    idx, base, q = small_index(n=300, R=6)
    victims = set(range(0, 300, 4)) | {idx.entry_id}
    for v in sorted(victims):
        idx.delete(v)
    assert edges_to(idx, victims), "deleted nodes are still linked before consolidation"
    deltas = idx.consolidate()
    assert len(deltas) == 1 and deltas[0].op == "consolidate"
    assert sorted(deltas[0].removed.tolist()) == sorted(victims)
    assert edges_to(idx, victims) == []
    assert idx.graph_problems() == []
    assert set(idx.ids(include_deleted=True).tolist()) == set(range(300)) - victims
    assert idx.entry_id not in victims
    st = idx.stats()
    assert st["deleted"] == 0 and st["live"] == st["size"] == 300 - len(victims)
    assert st["unreachable"] == 0
    assert idx.consolidate() == []
    live = idx.ids()
    truth, _ = ground_truth(base[live], q, 10, ids=live)
    found, _ = idx.search(q, k=10)
    assert recall_at_k(found, truth, 10) >= 0.9


def test_consolidate_with_nothing_deleted_is_a_no_op() -> None:
    idx, _, _ = small_index(n=50)
    before = (idx.digest(), idx.seq)
    assert idx.consolidate() == []
    assert (idx.digest(), idx.seq) == before


def test_delete_everything_then_start_again() -> None:
    idx, base, _ = small_index(n=30, R=4)
    for i in range(30):
        idx.delete(i)
    assert len(idx) == 0
    (d,) = idx.consolidate()
    assert d.entry == -1 and len(d.removed) == 30
    assert len(idx.ids(include_deleted=True)) == 0 and idx.entry_id == -1
    assert idx.graph_problems() == []
    idx.insert(100, base[0])
    idx.insert(101, base[1])
    assert idx.entry_id == 100 and idx.search(base[1], k=1)[0][0] == 101
    assert idx.graph_problems() == []


def test_no_unreachable_live_nodes_after_churn() -> None:
    """Several rounds of inserts and deletes (a whole cluster, the entry point, random
    nodes) on clustered data, each closed by a consolidation: no live node is ever
    left unreachable, lists stay within R, quality holds."""
    dim = 12
    pool, q = gmm_dataset(4000, 50, dim, n_clusters=12, seed=21)
    idx = VamanaIndex(dim, R=8, L=32)
    idx.build(pool[:1500])
    rng = np.random.default_rng(5)
    nxt = 1500
    for rnd in range(5):
        for i in range(nxt, nxt + 400):
            idx.insert(i, pool[i])
        nxt += 400
        live = idx.ids()
        # a whole region (the live nodes nearest to a random anchor), then random ones
        anchor = pool[rng.choice(live)]
        near = np.argsort(((pool[live] - anchor) ** 2).sum(axis=1), kind="stable")[:250]
        doomed = set(live[near].tolist())
        doomed |= set(rng.choice(live, size=150, replace=False).tolist())
        doomed.add(idx.entry_id)
        for v in sorted(doomed):
            idx.delete(v)
        assert idx.consolidate(), "consolidate must emit a delta after deletes"
        st = idx.stats()
        assert st["unreachable"] == 0, f"round {rnd}: {st['unreachable']} unreachable"
        assert st["deleted"] == 0
        assert idx.graph_problems() == []
        assert edges_to(idx, doomed) == []
        assert st["max_degree"] <= idx.R
    live = idx.ids()
    truth, _ = ground_truth(pool[live], q, 10, ids=live)
    found, _ = idx.search(q, k=10)
    assert recall_at_k(found, truth, 10) >= 0.9


def test_duplicate_vectors_stay_reachable() -> None:
    """Exact duplicates are common in real data (repeated documents). RobustPrune keeps
    one of a group of duplicates in each list, so the build's repair has to give every
    copy an in-edge; a copy nobody links to is never returned, not even for its own
    vector with a beam as large as the index."""
    X = np.zeros((11, 4), np.float32)
    X[0, 3] = 1.0  # one distinct point and ten copies of the origin
    idx = VamanaIndex(4, R=3, L=4)
    idx.build(X)
    assert idx.graph_problems() == []
    found, _ = idx.search(np.zeros(4), k=11, L=50)
    assert sorted(found.tolist()) == list(range(11))
    assert idx.stats()["unreachable"] == 0


def test_inserting_a_duplicate_does_not_cut_off_existing_nodes() -> None:
    """Invariant 3 (single writer): inserts keep every live node reachable. Here the
    re-prune that the last insert (a copy of id 11) causes in id 0's list drops both
    copies, which then only link to each other: an island that the insert's orphan
    repair (in-degree 0) does not see."""
    e = np.eye(5, dtype=np.float32)
    idx = VamanaIndex(5, R=3, L=4, alpha=1.0)
    idx.build(np.zeros((2, 5), np.float32))
    idx.insert(10, e[4])
    idx.insert(11, e[1])
    idx.insert(12, e[1])
    assert idx.graph_problems() == []
    found, _ = idx.search(e[1], k=5, L=20)
    assert {11, 12} <= set(found.tolist())
    assert idx.stats()["unreachable"] == 0


# --------------------------------------------------------------------------- quality


def test_recall_at_10_on_10k_gaussian_mixture() -> None:
    base, q = gmm_dataset(10_000, 200, 32, seed=3)
    idx = VamanaIndex(dim=32)  # R=64, L=100, alpha=1.2
    idx.build(base)
    found, _ = idx.search(q, k=10)  # the default search L (the index's L)
    truth, _ = ground_truth(base, q, 10)
    recall = recall_at_k(found, truth, 10)
    assert recall >= 0.95, recall
    assert idx.stats()["unreachable"] == 0


@pytest.mark.parametrize(("metric", "floor"), [("cosine", 0.95), ("ip", 0.9)])
def test_cosine_and_ip_recall(metric: str, floor: float) -> None:
    base, q = gmm_dataset(3000, 100, 16, seed=5)
    idx = VamanaIndex(16, metric=metric, R=24, L=64)
    idx.build(base)
    found, _ = idx.search(q, k=10)
    truth, _ = ground_truth(base, q, 10, metric=metric)
    assert recall_at_k(found, truth, 10) >= floor
    # after inserts too (FreshVamana insert path, same metric)
    idx2 = VamanaIndex(16, metric=metric, R=24, L=64)
    idx2.build(base[:2000])
    for i in range(2000, 3000):
        idx2.insert(i, base[i])
    found, _ = idx2.search(q, k=10)
    assert recall_at_k(found, truth, 10) >= floor


def test_cosine_stores_normalised_vectors_and_is_scale_invariant() -> None:
    idx = VamanaIndex(4, metric="cosine", R=4, L=8)
    idx.build(np.array([[3, 0, 0, 0], [0, 5, 0, 0], [1, 1, 0, 0]], np.float32))
    np.testing.assert_allclose(np.linalg.norm(idx.vector(0)), 1.0, rtol=1e-6)
    a, da = idx.search(np.array([1, 0.1, 0, 0]), k=3)
    b, db = idx.search(np.array([100, 10, 0, 0]), k=3)
    assert np.array_equal(a, b)
    np.testing.assert_allclose(da, db, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- save / load


def test_save_load_round_trip_and_continue(tmp_path) -> None:
    base, q = gmm_dataset(300, 20, 8, n_clusters=8, seed=1)
    replica = VamanaIndex(8, "l2", 6, 24)
    # a primary with history: build, inserts, deletes, a consolidation, a pending delete
    primary = VamanaIndex(8, "l2", 6, 24)
    log = primary.build(base[:200])
    log += [primary.insert(i, base[i]) for i in range(200, 260)]
    log += [primary.delete(i) for i in (3, 50, 210)]
    log += primary.consolidate()
    log.append(primary.delete(7))
    replica.apply(log)

    path = tmp_path / "index.npz"
    primary.save(path)
    loaded = VamanaIndex.load(path)
    assert loaded.digest() == primary.digest()
    assert (loaded.dim, loaded.metric, loaded.R, loaded.L, loaded.alpha) == (8, "l2", 6, 24, 1.2)
    assert loaded.seq == primary.seq and len(loaded) == len(primary)
    assert loaded.is_deleted(7)
    for k, L in ((1, None), (10, None), (10, 60)):
        a, da = primary.search(q, k=k, L=L)
        b, db = loaded.search(q, k=k, L=L)
        assert np.array_equal(a, b) and np.array_equal(da, db)
    assert loaded.graph_problems() == []
    assert loaded.stats()["counters"]["insert"]["calls"] == 60

    # the loaded index continues: its deltas equal the primary's and a replica applies them
    more_loaded, more_primary = [], []
    for i in range(260, 300):
        more_loaded.append(loaded.insert(i, base[i]))
        more_primary.append(primary.insert(i, base[i]))
    more_loaded.append(loaded.delete(280))
    more_primary.append(primary.delete(280))
    more_loaded += loaded.consolidate()
    more_primary += primary.consolidate()
    assert more_loaded == more_primary
    replica.apply([EdgeDelta.from_bytes(d.to_bytes()) for d in more_loaded])
    assert replica.digest() == loaded.digest() == primary.digest()
    assert np.array_equal(replica.search(q, k=10)[0], loaded.search(q, k=10)[0])

    # and a save of a loaded index loads to the same state again
    loaded.save(tmp_path / "again.npz")
    assert VamanaIndex.load(tmp_path / "again.npz").digest() == loaded.digest()


def test_save_load_empty_and_cosine(tmp_path) -> None:
    empty = VamanaIndex(5, "cosine", R=4, L=8)
    empty.save(tmp_path / "e.npz")
    e2 = VamanaIndex.load(tmp_path / "e.npz")
    assert e2.digest() == empty.digest() and len(e2) == 0 and e2.metric == "cosine"
    e2.insert(1, [1, 2, 3, 4, 5])
    empty.insert(1, [1, 2, 3, 4, 5])
    assert e2.digest() == empty.digest()


# --------------------------------------------------------------------------- capacity, counters


def test_digest_is_independent_of_capacity() -> None:
    base, q = gmm_dataset(400, 10, 8, n_clusters=5, seed=9)
    results = []
    for cap in (1, 10_000):
        idx = VamanaIndex(8, R=6, L=20, capacity=cap)
        log = idx.build(base[:200])
        log += [idx.insert(i, base[i]) for i in range(200, 400)]
        log += [idx.delete(i) for i in range(0, 400, 7)]
        log += idx.consolidate()
        log += [idx.insert(1000 + i, base[i] + 0.01) for i in range(0, 30)]
        results.append((idx.digest(), [d.to_bytes() for d in log], idx.search(q, k=10)))
    (d1, b1, s1), (d2, b2, s2) = results
    assert d1 == d2
    assert b1 == b2
    assert np.array_equal(s1[0], s2[0]) and np.array_equal(s1[1], s2[1])


def test_counters_count_distance_computations() -> None:
    idx, base, q = small_index(n=100)
    st = idx.stats()
    assert st["counters"]["build"]["calls"] == 1
    assert st["counters"]["build"]["distance_computations"] > 0
    for i in range(100, 120):
        idx.insert(i, base[i - 100] + 0.5)
        assert idx.last_op["op"] == "insert"
        assert idx.last_op["distance_computations"] > 0
        assert idx.last_op["nodes_visited"] > 0
    idx.search(q, k=5)
    assert idx.last_op["op"] == "search" and idx.last_op["distance_computations"] > 0
    st = idx.stats()
    ins = st["counters"]["insert"]
    assert ins["calls"] == 20 and ins["distance_computations"] > 0 and ins["nodes_visited"] > 0
    assert st["counters"]["search"]["calls"] == 1
    total = sum(v["distance_computations"] for v in st["counters"].values())
    assert st["distance_computations"] == total
    idx.delete(5)
    assert idx.last_op == {"op": "delete", "distance_computations": 0, "nodes_visited": 0}


def test_apply_does_no_distance_computations() -> None:
    base, _ = gmm_dataset(300, 1, 8, n_clusters=5, seed=4)
    primary = VamanaIndex(8, R=6, L=20)
    log = primary.build(base[:200])
    log += [primary.insert(i, base[i]) for i in range(200, 300)]
    log += [primary.delete(i) for i in range(0, 300, 5)]
    log += primary.consolidate()
    assert primary.stats()["counters"]["consolidate"]["distance_computations"] > 0
    replica = VamanaIndex(8, R=6, L=20)
    for d in log:
        replica.apply(d)
        assert replica.last_op["op"] == "apply"
        assert replica.last_op["distance_computations"] == 0
    st = replica.stats()
    assert st["distance_computations"] == 0
    assert st["counters"]["apply"]["calls"] == len(log)
    assert all(v["distance_computations"] == 0 for v in st["counters"].values())
    assert replica.digest() == primary.digest()


def test_len_contains_ids_and_neighbours() -> None:
    idx, _, _ = small_index(n=40, R=4)
    assert len(idx) == 40
    assert 0 in idx and 40 not in idx and "x" not in idx and -1 not in idx and True not in idx
    nb = idx.neighbors(3)
    assert np.array_equal(nb, np.sort(nb)) and nb.dtype == np.int64
    idx.delete(3)
    assert 3 not in idx and len(idx) == 39
    assert idx.neighbors(3).size > 0  # tombstones keep their list until consolidation


def test_new_degree_caps_a_new_nodes_own_list_and_travels_with_the_index():
    """new_degree (hnswlib's M against Vamana's R): a new node's own prune keeps at most
    that many; its neighbours' back-edges still fill lists up to R."""
    X = np.random.default_rng(8).standard_normal((1700, 16)).astype(np.float32)
    default, same = VamanaIndex(16, R=16, L=32), VamanaIndex(16, R=16, L=32, new_degree=16)
    default.build(X[:1500])
    same.build(X[:1500])
    assert default.new_degree == 16 and default.digest() == same.digest()
    small = VamanaIndex(16, R=16, L=32, new_degree=6)
    small.build(X[:1500])
    degrees = []
    for i in range(1500, 1700):
        small.insert(i, X[i])
        assert len(small.neighbors(i)) <= 6  # its own prune's, before any back-edge
        degrees.append(max(len(small.neighbors(j)) for j in range(0, 1500, 50)))
    assert max(degrees) > 6  # back-edges go on filling lists beyond it, up to R
    assert small.graph_problems() == [] and small.unreachable_count() == 0
    assert small.stats()["distance_computations"] < default.stats()["distance_computations"]
    copy = VamanaIndex.from_bytes(small.to_bytes())
    assert copy.new_degree == 6 and copy.digest() == small.digest()
    for bad in (0, 17, 2.5, True):
        with pytest.raises(InvalidArgument, match="new_degree"):
            VamanaIndex(16, R=16, new_degree=bad)

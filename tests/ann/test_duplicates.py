"""Exact duplicate vectors stay reachable.

RobustPrune occludes every candidate at distance 0 from a point it already
kept, so among many copies of one vector each list keeps at most one other
copy, and a re-link that waits for RobustPrune to keep a copy waits forever.
The repair links a copy from a copy that the entry point already reaches,
spliced into that copy's list so that no edge's target loses its path. These
tests hold ``build``, ``insert``, ``consolidate`` and ``repair`` to zero
unreachable live nodes on all-identical data and on mixtures in which 20% or
half of the points are copies, at several R/L settings.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graphrep.ann import EdgeDelta, VamanaIndex
from graphrep.ann.records import RecordSet
from graphrep.datasets import gaussian_mixture, ground_truth
from graphrep.spec.profiles import scaled_examples


def assert_all_reachable(idx: VamanaIndex) -> None:
    assert idx.graph_problems() == []
    assert idx.unreachable_count() == 0
    st = idx.stats()
    assert st["unreachable"] == 0
    assert st["max_degree"] <= idx.R


def with_copies(n: int, dim: int, frac: float, sources: int, seed: int = 1) -> np.ndarray:
    """``n`` points of which ``frac`` are exact copies of the first ``sources`` others,
    shuffled."""
    rng = np.random.default_rng(seed)
    n_copies = int(n * frac)
    orig = gaussian_mixture(n - n_copies, dim, n_clusters=20, seed=seed + 1)
    base = np.vstack([orig, orig[rng.integers(0, sources, n_copies)]])
    return np.ascontiguousarray(base[rng.permutation(n)])


def distance_recall(base: np.ndarray, q: np.ndarray, found: np.ndarray, k: int) -> float:
    """Share of results within the exact k-th distance: any of several equally near
    copies counts, which id recall (ties broken by id) does not allow."""
    _, td = ground_truth(base, q, k)
    hits = 0
    for i in range(q.shape[0]):
        f = found[i][found[i] >= 0][:k]
        d = ((base[f].astype(np.float64) - q[i].astype(np.float64)) ** 2).sum(axis=1)
        hits += int((d <= td[i, k - 1] * (1 + 1e-5) + 1e-9).sum())
    return hits / (q.shape[0] * k)


# --------------------------------------------------------------------------- build


@pytest.mark.parametrize(("R", "L", "n"), [(8, 16, 1000), (16, 32, 3000), (32, 64, 10_000)])
def test_build_of_identical_points_reaches_every_copy(R: int, L: int, n: int) -> None:
    idx = VamanaIndex(8, R=R, L=L)
    idx.build(np.zeros((n, 8), np.float32))
    assert_all_reachable(idx)
    assert idx.repair() == []
    ids, d = idx.search(np.zeros(8, np.float32), k=10)
    assert (ids >= 0).all() and (d == 0).all()


@pytest.mark.parametrize(
    ("n", "dim", "R", "L", "frac", "sources"),
    [
        (2000, 8, 8, 16, 0.2, 1),
        (2000, 8, 8, 16, 0.2, 1600),  # copies of random others: mostly pairs
        (2000, 8, 8, 16, 0.5, 1),
        (5000, 16, 16, 32, 0.5, 1),
        (5000, 16, 8, 16, 0.2, 10),
        (5000, 16, 32, 64, 0.2, 100),
        (4000, 32, 12, 24, 0.2, 3),
    ],
)
def test_build_with_copies_reaches_every_copy(n, dim, R, L, frac, sources) -> None:
    base = with_copies(n, dim, frac, sources)
    idx = VamanaIndex(dim, R=R, L=L)
    idx.build(base)
    assert_all_reachable(idx)
    # the most copied point: the search finds a copy first, and a beam as large as the
    # index finds every copy
    rows, counts = np.unique(base, axis=0, return_counts=True)
    top, k = rows[np.argmax(counts)], int(counts.max())
    _, d = idx.search(top, k=1)
    assert d[0] == 0.0
    ids, d = idx.search(top, k=k, L=n)
    assert (ids >= 0).all() and (d == 0).all()


def test_recall_with_copies() -> None:
    base = with_copies(5000, 16, 0.2, 10)
    q = gaussian_mixture(200, 16, n_clusters=20, seed=2) * np.float32(1.01)
    idx = VamanaIndex(16, R=16, L=32)
    idx.build(base)
    found, _ = idx.search(q, k=10, L=64)
    assert distance_recall(base, q, found, 10) >= 0.95
    stored = base[::25]
    found, d = idx.search(stored, k=10, L=64)
    assert distance_recall(base, stored, found, 10) >= 0.95
    assert (d[:, 0] == 0).all()


def test_cosine_copies_are_scaled_vectors() -> None:
    """Under cosine a vector and twice it are stored as the same normalised vector."""
    rng = np.random.default_rng(4)
    orig = gaussian_mixture(600, 12, n_clusters=6, seed=4) + np.float32(0.5)
    base = np.vstack([orig, np.repeat(orig[:3] * np.float32(2.0), 300, axis=0)])
    base = np.ascontiguousarray(base[rng.permutation(base.shape[0])])
    idx = VamanaIndex(12, "cosine", R=8, L=16)
    idx.build(base)
    assert_all_reachable(idx)


# --------------------------------------------------------------------------- insert


def test_inserting_many_copies_keeps_every_node_reachable() -> None:
    base = gaussian_mixture(400, 8, n_clusters=8, seed=5)
    idx = VamanaIndex(8, R=8, L=16)
    idx.build(base)
    rng = np.random.default_rng(6)
    for i in range(700):
        v = base[0] if i % 3 else base[rng.integers(0, 400)]
        idx.insert(1000 + i, v)
        assert idx.unreachable_count() == 0, f"after insert {i}"
    assert_all_reachable(idx)


def test_inserting_copies_into_a_larger_index() -> None:
    """Above 1024 live nodes the index looks for cut-off islands only every live/64
    inserts; the orphan repair and those checks keep up with a stream of copies."""
    base = with_copies(3000, 16, 0.2, 4)
    idx = VamanaIndex(16, R=12, L=24)
    idx.build(base[:2000])
    for i in range(2000, 3000):
        idx.insert(i, base[i])
    assert idx.repair() == []
    assert_all_reachable(idx)


def test_inserting_into_all_identical_data() -> None:
    idx = VamanaIndex(4, R=4, L=8)
    idx.insert(0, np.ones(4, np.float32))
    for i in range(1, 1500):
        idx.insert(i, np.ones(4, np.float32))
    assert idx.repair() == []
    assert_all_reachable(idx)
    found, _ = idx.search(np.ones(4, np.float32), k=1500, L=1500)
    assert sorted(found.tolist()) == list(range(1500))


# --------------------------------------------------------------------------- delete, repair


@pytest.mark.parametrize("identical", [True, False])
def test_consolidate_after_deleting_copies(identical: bool) -> None:
    base = np.zeros((1500, 8), np.float32) if identical else with_copies(1500, 8, 0.5, 2)
    idx = VamanaIndex(8, R=8, L=16)
    idx.build(base)
    rng = np.random.default_rng(7)
    for rnd in range(3):
        live = idx.ids()
        for i in rng.choice(live, size=len(live) // 4, replace=False):
            idx.delete(int(i))
        if not idx.is_deleted(idx.entry_id):
            idx.delete(idx.entry_id)  # the entry point too
        idx.consolidate()
        assert_all_reachable(idx)
        for i in range(100):
            idx.insert(10_000 * (rnd + 1) + i, base[rng.integers(0, 1500)])
        assert_all_reachable(idx)


def test_repair_reaches_copies_cut_off_by_a_records_overwrite() -> None:
    """A state the index would not make itself: every copy but two links only to the
    entry point. ``repair()`` re-links all of them."""
    n = 800
    idx = VamanaIndex(6, R=6, L=12)
    idx.build(np.zeros((n, 6), np.float32))
    e = idx.entry_id
    other = 0 if e != 0 else 1
    ids = np.arange(n, dtype=np.int64)
    nb = [[other] if i == e else [e] for i in range(n)]
    rs = RecordSet(6, ids, np.ones(n, np.uint8), np.zeros((n, 6), np.float32),
                   np.array([len(x) for x in nb], np.int32),
                   np.array([j for x in nb for j in x], np.int64))
    idx.overwrite_records(rs)
    assert idx.graph_problems() == []
    assert idx.unreachable_count() == n - 2
    out = idx.repair()
    assert len(out) == 1
    assert_all_reachable(idx)


# --------------------------------------------------------------------------- determinism


def _run(base: np.ndarray, *, R: int = 6, L: int = 12) -> tuple[VamanaIndex, list[EdgeDelta]]:
    idx = VamanaIndex(base.shape[1], R=R, L=L, seed=3)
    log = idx.build(base[:500])
    log += [idx.insert(5000 + i, base[i]) for i in range(500, base.shape[0])]
    log += [idx.delete(int(i)) for i in idx.ids()[::5]]
    log += idx.consolidate()
    return idx, log


def test_same_operations_same_graph_and_replicas_agree() -> None:
    base = with_copies(700, 6, 0.4, 5)
    a, log_a = _run(base)
    b, log_b = _run(base)
    assert a.digest() == b.digest()
    assert [d.to_bytes() for d in log_a] == [d.to_bytes() for d in log_b]
    replica = VamanaIndex(6, R=6, L=12, capacity=1)
    replica.apply([EdgeDelta.from_bytes(d.to_bytes()) for d in log_a])
    assert replica.digest() == a.digest()
    assert_all_reachable(replica)
    # the replica stores lists in another order; as a writer it makes the same deltas
    for i in range(60):
        v = base[i % 7]
        assert a.insert(90_000 + i, v).to_bytes() == replica.insert(90_000 + i, v).to_bytes()
    for i in a.ids()[::4]:
        a.delete(int(i))
        replica.delete(int(i))
    assert [d.to_bytes() for d in a.consolidate()] == [
        d.to_bytes() for d in replica.consolidate()
    ]
    assert a.digest() == replica.digest()
    assert_all_reachable(a)


# --------------------------------------------------------------------------- any operations


small_vec = st.lists(st.integers(-2, 2).map(float), min_size=3, max_size=3)


@given(data=st.data())
@settings(max_examples=scaled_examples(0.5))
def test_copies_stay_reachable_under_any_operations(data) -> None:
    """Vectors drawn from a pool of at most four, so that nearly every vector has many
    copies: every operation leaves every live node reachable."""
    R = data.draw(st.integers(2, 6), label="R")
    L = data.draw(st.integers(2, 12), label="L")
    alpha = data.draw(st.sampled_from([1.0, 1.2]), label="alpha")
    pool = data.draw(st.lists(small_vec, min_size=1, max_size=4), label="pool")
    pick = st.integers(0, len(pool) - 1)
    n = data.draw(st.integers(1, 120), label="n_build")
    X = np.array([pool[data.draw(pick)] for _ in range(n)], np.float32)
    idx = VamanaIndex(3, R=R, L=L, alpha=alpha)
    idx.build(X)
    assert_all_reachable(idx)
    next_id = n
    for _ in range(data.draw(st.integers(0, 40), label="n_ops")):
        op = data.draw(st.sampled_from(["insert", "insert", "delete", "consolidate"]))
        if op == "insert":
            idx.insert(next_id, np.array(pool[data.draw(pick)], np.float32))
            next_id += 1
        elif op == "delete" and len(idx) > 1:
            live = idx.ids()
            idx.delete(int(live[data.draw(st.integers(0, len(live) - 1))]))
            continue
        else:
            idx.consolidate()
        assert_all_reachable(idx)
    assert idx.repair() == []

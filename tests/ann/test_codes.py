"""Search codes (graphrep.ann.codes): a beam search that walks on one-byte codes of the
vectors and re-ranks its beam on the vectors. The codes are kept with every write path,
results are exact distances, replicas agree, and bad settings are refused."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from graphrep.ann import CodeBook, VamanaIndex
from graphrep.datasets import gmm_dataset, ground_truth, recall_at_k
from graphrep.errors import DimensionMismatch, InvalidArgument, InvalidVector

DIM = 24


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    base, queries = gmm_dataset(1500, 60, DIM, n_clusters=12, seed=3)
    return base.astype(np.float32), queries.astype(np.float32)


def coded_rows_are_current(idx: VamanaIndex) -> bool:
    """Every stored node's code is the code of its vector now."""
    slots = np.flatnonzero(idx._g.flags[: idx._n_slots])
    want = idx.codebook.encode(idx._g.vecs[slots])
    return bool(np.array_equal(idx._codes[slots], want))


def test_codes_are_kept_by_every_write_path(data):
    base, _ = data
    cb = CodeBook.fit(base[:200])
    idx = VamanaIndex(DIM, R=12, L=24, seed=1, capacity=64)
    idx.use_codes(cb)
    deltas = idx.build(base[:300])  # grows from a capacity of 64
    deltas += [idx.insert(1000 + i, base[300 + i]) for i in range(100)]
    deltas += [idx.delete(int(i)) for i in range(0, 300, 7)]
    deltas += idx.consolidate()
    deltas += [idx.insert(2000 + i, base[400 + i] * 1.5) for i in range(50)]  # some clip
    assert coded_rows_are_current(idx)
    # a replica built from the deltas, through both apply paths
    by_objects = VamanaIndex(DIM, R=12, L=24, seed=1, capacity=64)
    by_objects.use_codes(cb)
    by_objects.apply(deltas)
    by_bytes = VamanaIndex(DIM, R=12, L=24, seed=1, capacity=64)
    by_bytes.use_codes(cb)
    by_bytes.apply_bytes([d.to_bytes() for d in deltas])
    for replica in (by_objects, by_bytes):
        assert replica.digest() == idx.digest()
        assert coded_rows_are_current(replica)
    # a repair from another copy's records rewrites vectors too
    other = VamanaIndex.from_bytes(idx.to_bytes())
    some = other.ids()[:40]
    rs = other.export_records(some)
    changed = dataclasses.replace(rs, vectors=rs.vectors + 0.25)
    by_bytes.overwrite_records(changed)
    assert coded_rows_are_current(by_bytes)


def test_a_replica_searching_on_codes_returns_what_the_leader_does(data):
    base, queries = data
    cb = CodeBook.fit(base)
    leader = VamanaIndex(DIM, R=12, L=24, seed=1)
    deltas = leader.build(base[:1000]) + [leader.insert(5000 + i, base[1000 + i])
                                          for i in range(200)]
    replica = VamanaIndex(DIM, R=12, L=24, seed=1)
    replica.apply_bytes([d.to_bytes() for d in deltas])
    leader.use_codes(cb)
    replica.use_codes(cb)
    a = leader.search(queries, k=10, L=16)
    b = replica.search(queries, k=10, L=16)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    # one query at a time and a batch agree
    one = [replica.search(q, k=10, L=16) for q in queries]
    assert np.array_equal(np.stack([o[0] for o in one]), b[0])


def test_results_carry_exact_distances_and_recall_holds(data):
    base, queries = data
    idx = VamanaIndex(DIM, R=12, L=24, seed=1)
    idx.build(base)
    plain_ids, _ = idx.search(queries, k=10, L=32)
    idx.use_codes(CodeBook.fit(base))
    ids, dists = idx.search(queries, k=10, L=32)
    exact = ((base[ids] - queries[:, None, :]) ** 2).sum(-1)
    assert np.allclose(dists, exact, rtol=1e-4, atol=1e-4)
    assert np.all(np.diff(dists, axis=1) >= 0)  # sorted after the re-ranking
    truth, _ = ground_truth(base, queries, 10)
    assert recall_at_k(ids, truth) >= recall_at_k(plain_ids, truth) - 0.02
    assert recall_at_k(ids, truth) > 0.9
    idx.use_codes(None)  # off again: the plain search's results
    assert np.array_equal(idx.search(queries, k=10, L=32)[0], plain_ids)


def test_the_walk_happens_on_the_codes(data):
    """A code book that maps everything to one code makes every walked distance equal
    (ties broken by id), so the results change; re-ranking still sorts what it found."""
    base, queries = data
    idx = VamanaIndex(DIM, R=12, L=24, seed=1)
    idx.build(base)
    plain = idx.search(queries, k=10, L=16)[0]
    idx.use_codes(CodeBook(1e6, 2e6, dim=DIM))  # every value clips to 0
    flat = idx.search(queries, k=10, L=16)[0]
    assert not np.array_equal(flat, plain)


def test_bad_code_books_are_refused_and_change_nothing(data):
    base, queries = data
    idx = VamanaIndex(DIM, R=12, L=24, seed=1)
    idx.build(base[:200])
    before = idx.search(queries[:3], k=5)
    with pytest.raises(DimensionMismatch, match="dimension 5"):
        idx.use_codes(CodeBook(0, 1, dim=5))
    with pytest.raises(InvalidArgument, match="CodeBook or None"):
        idx.use_codes((0, 1))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="metric='ip'"):
        VamanaIndex(DIM, "ip").use_codes(CodeBook(0, 1, dim=DIM))
    with pytest.raises(InvalidArgument, match="empty"):
        CodeBook([0, 2], [1, 1])
    with pytest.raises(InvalidArgument, match="needs dim"):
        CodeBook(0, 1)
    with pytest.raises(InvalidVector, match="finite"):
        CodeBook([0, np.nan], [1, 1])
    with pytest.raises(InvalidVector, match="finite"):
        CodeBook.fit(np.array([[0.0, np.inf]]))
    assert idx.codebook is None
    after = idx.search(queries[:3], k=5)
    assert np.array_equal(before[0], after[0])


def test_codes_round_and_clip_as_documented():
    cb = CodeBook([0.0, -1.0, 5.0], [255.0, 1.0, 5.0])
    got = cb.encode(np.array([[0.4, -1.0, 5.0], [254.6, 1.0, 7.0], [-3.0, 9.0, 0.0],
                              [127.5, 0.0, 5.0]], dtype=np.float32))
    assert got.tolist() == [[0, 0, 0], [255, 255, 0], [0, 255, 0], [128, 128, 0]]

"""Tests for graphrep.datasets: synthetic data, exact ground truth, recall, Fashion-MNIST."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from graphrep import datasets
from graphrep.datasets import (
    FASHION_MNIST_ENV,
    fashion_mnist_dirs,
    gaussian_mixture,
    gmm_dataset,
    ground_truth,
    load_fashion_mnist,
    recall_at_k,
    uniform,
    uniform_dataset,
)
from graphrep.errors import DatasetUnavailable, DimensionMismatch, InvalidArgument, InvalidVector

# --------------------------------------------------------------------------- helpers


def naive_distances(base: np.ndarray, queries: np.ndarray, metric: str) -> np.ndarray:
    """The full (queries x base) distance matrix in float64."""
    x = base.astype(np.float64)
    q = queries.astype(np.float64)
    if metric == "l2":
        return ((q[:, None, :] - x[None, :, :]) ** 2).sum(axis=2)
    if metric == "ip":
        return -(q @ x.T)
    xn = np.linalg.norm(x, axis=1)
    qn = np.linalg.norm(q, axis=1)
    xn[xn == 0] = 1.0
    qn[qn == 0] = 1.0
    return 1.0 - (q @ x.T) / qn[:, None] / xn[None, :]


def naive_truth(base: np.ndarray, queries: np.ndarray, k: int, metric: str, ids=None):
    """Full distance matrix in float64 + a sort by (distance, id): the obvious answer."""
    d = naive_distances(base, queries, metric)
    ext = np.arange(base.shape[0]) if ids is None else np.asarray(ids)
    out_i = np.empty((d.shape[0], k), dtype=np.int64)
    out_d = np.empty((d.shape[0], k))
    for r in range(d.shape[0]):
        order = np.lexsort((ext, d[r]))[:k]
        out_i[r] = ext[order]
        out_d[r] = d[r, order]
    return out_i, out_d


# --------------------------------------------------------------------------- synthetic data


def test_gaussian_mixture_shape_dtype_determinism():
    a = gaussian_mixture(500, 16, n_clusters=7, seed=3)
    b = gaussian_mixture(500, 16, n_clusters=7, seed=3)
    c = gaussian_mixture(500, 16, n_clusters=7, seed=4)
    assert a.shape == (500, 16) and a.dtype == np.float32 and a.flags.c_contiguous
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.all(np.isfinite(a))


def test_gmm_dataset_base_matches_gaussian_mixture_and_queries_are_fresh():
    base, queries = gmm_dataset(400, 50, 8, n_clusters=5, seed=11)
    assert base.shape == (400, 8) and queries.shape == (50, 8)
    assert base.dtype == np.float32 and queries.dtype == np.float32
    assert np.array_equal(base, gaussian_mixture(400, 8, n_clusters=5, seed=11))
    # asking for more queries does not change the base set
    base2, _ = gmm_dataset(400, 80, 8, n_clusters=5, seed=11)
    assert np.array_equal(base, base2)
    # queries are not copies of base points
    assert not (queries[:, None, :] == base[None, :, :]).all(axis=2).any()


@pytest.mark.parametrize("rows", [1, 7, 64, 10**6])
def test_mixture_drawn_in_pieces_has_the_bits_of_one_draw(rows):
    """The mixture is drawn a few thousand points at a time to bound its temporaries;
    the pieces' size must not change a bit (every label first, then the noise rows)."""
    from graphrep.datasets import _mixture_centres, _mixture_draw

    centres, sigmas = _mixture_centres(9, 5, 2)
    rng = np.random.default_rng([2, 1])
    labels = rng.integers(0, 5, size=300)
    whole = (centres[labels] + rng.standard_normal((300, 9)) * sigmas[labels, None])
    got = _mixture_draw(300, centres, sigmas, np.random.default_rng([2, 1]), rows=rows)
    assert got.dtype == np.float32 and np.array_equal(got, whole.astype(np.float32))


def test_gmm_is_clustered():
    """Points sit closer to their own cluster than the data's overall spread."""
    base = gaussian_mixture(2000, 32, n_clusters=4, seed=0)
    total = ((base - base.mean(axis=0)) ** 2).sum(axis=1).mean()
    # nearest-neighbour distances are far below the overall spread
    d = ((base[:200, None, :] - base[None, :, :]) ** 2).sum(axis=2)
    d[np.arange(200), np.arange(200)] = np.inf
    assert np.median(d.min(axis=1)) < 0.5 * total


def test_uniform_shape_range_determinism():
    a = uniform(300, 5, seed=1)
    assert a.shape == (300, 5) and a.dtype == np.float32
    assert a.min() >= 0.0 and a.max() < 1.0
    assert np.array_equal(a, uniform(300, 5, seed=1))
    base, queries = uniform_dataset(300, 20, 5, seed=1)
    assert np.array_equal(base, a)
    assert queries.shape == (20, 5) and queries.dtype == np.float32
    assert not np.array_equal(queries, base[:20])


@pytest.mark.parametrize(
    "call",
    [
        lambda: gaussian_mixture(-1, 4),
        lambda: gaussian_mixture(10, 0),
        lambda: gaussian_mixture(10, 4, n_clusters=0),
        lambda: gaussian_mixture(10, 4, seed=-1),
        lambda: gaussian_mixture(10.5, 4),
        lambda: uniform(10, 4, seed=True),
        lambda: gmm_dataset(10, -2, 4),
    ],
)
def test_synthetic_invalid_arguments(call):
    with pytest.raises(InvalidArgument):
        call()


# --------------------------------------------------------------------------- ground truth


@pytest.mark.parametrize("metric", ["l2", "cosine", "ip"])
@pytest.mark.parametrize("block", [7, 64, 1024])
def test_ground_truth_matches_naive(metric, block):
    base, queries = gmm_dataset(300, 25, 12, n_clusters=6, seed=5)
    ids, dists = ground_truth(base, queries, 10, metric, block=block)
    want_i, want_d = naive_truth(base, queries, 10, metric)
    assert ids.dtype == np.int64 and ids.shape == (25, 10)
    assert dists.dtype == np.float32 and dists.shape == (25, 10)
    np.testing.assert_array_equal(ids, want_i)
    np.testing.assert_allclose(dists, want_d, rtol=1e-5, atol=1e-5)
    assert np.all(np.diff(dists, axis=1) >= 0)


@pytest.mark.parametrize("metric", ["l2", "cosine", "ip"])
def test_ground_truth_ties_broken_by_smaller_id(metric):
    # many exact duplicates: the k results must be the smallest ids among ties
    rng = np.random.default_rng(0)
    distinct = rng.integers(-3, 4, size=(6, 4)).astype(np.float32)
    distinct[0] = [1, 1, 1, 1]
    base = distinct[rng.integers(0, 6, size=200)]
    queries = np.vstack([distinct, rng.integers(-3, 4, size=(4, 4)).astype(np.float32)])
    for block in (3, 16, 1000):
        ids, _ = ground_truth(base, queries, 15, metric, block=block)
        want, _ = naive_truth(base, queries, 15, metric)
        np.testing.assert_array_equal(ids, want)


def test_ground_truth_integer_data_exact_distances():
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, size=(500, 49)).astype(np.float32)
    queries = rng.integers(0, 256, size=(10, 49)).astype(np.float32)
    ids, dists = ground_truth(base, queries, 5, block=37)
    want_i, want_d = naive_truth(base, queries, 5, "l2")
    np.testing.assert_array_equal(ids, want_i)
    np.testing.assert_array_equal(dists, want_d.astype(np.float32))


def test_ground_truth_external_ids():
    base, queries = gmm_dataset(120, 9, 6, n_clusters=3, seed=2)
    ext = np.arange(120)[::-1] * 10 + 7
    ids, dists = ground_truth(base, queries, 4, ids=ext, block=50)
    want_i, _ = naive_truth(base, queries, 4, "l2", ids=ext)
    np.testing.assert_array_equal(ids, want_i)
    plain, pd = ground_truth(base, queries, 4, block=50)
    np.testing.assert_array_equal(ids, ext[plain])
    np.testing.assert_array_equal(dists, pd)


def test_ground_truth_k_equals_n_and_single_query():
    base = uniform(12, 3, seed=0)
    ids, _ = ground_truth(base, base[0], 12, block=5)
    assert ids.shape == (1, 12)
    assert ids[0, 0] == 0
    assert sorted(ids[0].tolist()) == list(range(12))


def test_ground_truth_zero_vectors_cosine():
    base = np.zeros((5, 3), dtype=np.float32)
    base[3] = [1, 0, 0]
    q = np.array([[1, 0, 0], [0, 0, 0]], dtype=np.float32)
    ids, dists = ground_truth(base, q, 2, "cosine")
    assert ids[0].tolist() == [3, 0]
    np.testing.assert_allclose(dists[0], [0.0, 1.0])
    assert ids[1].tolist() == [0, 1]


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 40),
    nq=st.integers(1, 6),
    dim=st.integers(1, 5),
    k=st.integers(1, 8),
    block=st.integers(1, 17),
    metric=st.sampled_from(["l2", "cosine", "ip"]),
    seed=st.integers(0, 2**16),
)
# from query [2, 2, 2], base rows 1 [2, 0, 0], 2 [-1, 2, 2] and 10 [1, 0, 0] all have cosine
# distance 1 - 1/sqrt(3): float64 rounding breaks that tie differently in two formulas
@example(n=11, nq=4, dim=3, k=4, block=1, metric="cosine", seed=3316)
def test_ground_truth_property(n, nq, dim, k, block, metric, seed):
    k = min(k, n)
    rng = np.random.default_rng(seed)
    # small integer grid: lots of exact ties and duplicates
    base = rng.integers(-2, 3, size=(n, dim)).astype(np.float32)
    queries = rng.integers(-2, 3, size=(nq, dim)).astype(np.float32)
    ids, dists = ground_truth(base, queries, k, metric, block=block)
    want, want_d = naive_truth(base, queries, k, metric)
    np.testing.assert_allclose(dists, want_d, rtol=0, atol=1e-6)  # float32 distances
    if metric != "cosine":  # integer grids: both float64 computations are exact
        np.testing.assert_array_equal(ids, want)
        return
    # Cosine distances of integer vectors are irrational: vectors with equal distances in
    # real arithmetic (parallel ones, or [1, 0, 0] and [-1, 2, 2] from [2, 2, 2]) may
    # differ by an ulp in one float64 formula and not in another, so such a tie can be
    # broken either way. The answer must still be an equally good top-k, in order,
    # and the same as the naive one wherever the distances are not that close.
    got_d = np.take_along_axis(naive_distances(base, queries, metric), ids, axis=1)
    np.testing.assert_allclose(got_d, want_d, rtol=0, atol=1e-12)
    for r in range(ids.shape[0]):
        assert len(set(ids[r].tolist())) == k
        assert np.all(np.diff(got_d[r]) >= -1e-12)
        near = np.isclose(want_d[r][:, None], want_d[r][None, :], rtol=0, atol=1e-12)
        alone = near.sum(axis=1) == 1  # ranks whose distance ties no other in the top-k
        cut = want_d[r][-1]
        alone &= ~np.isclose(want_d[r], cut, rtol=0, atol=1e-12)  # nor the boundary
        assert np.array_equal(ids[r][alone], want[r][alone])


def test_ground_truth_invalid_arguments():
    base = uniform(20, 4)
    q = uniform(3, 4, seed=1)
    with pytest.raises(InvalidArgument):
        ground_truth(base, q, 0)
    with pytest.raises(InvalidArgument):
        ground_truth(base, q, 21)
    with pytest.raises(InvalidArgument):
        ground_truth(base, q, 3, "manhattan")
    with pytest.raises(InvalidArgument):
        ground_truth(base, q, 3, block=0)
    with pytest.raises(DimensionMismatch):
        ground_truth(base, uniform(3, 5), 3)
    with pytest.raises(InvalidVector):
        bad = q.copy()
        bad[0, 0] = np.nan
        ground_truth(base, bad, 3)
    with pytest.raises(InvalidArgument):
        ground_truth(base, q, 3, ids=np.zeros(20, dtype=np.int64))
    with pytest.raises(InvalidArgument):
        ground_truth(base, q, 3, ids=np.arange(19))


# --------------------------------------------------------------------------- recall


def test_recall_at_k():
    truth = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    assert recall_at_k(truth, truth, k=4) == 1.0
    found = np.array([[1, 2, 9, 9], [8, 7, -1, -1]])
    # query 0: {1, 2} (9 repeated counts once, and is wrong anyway); query 1: {7, 8}
    assert recall_at_k(found, truth, k=4) == pytest.approx(0.5)
    # only the first k columns of each side count
    assert recall_at_k(np.array([[4, 3, 1, 2]]), np.array([[1, 2, 3, 4]]), k=2) == 0.0
    assert recall_at_k(np.array([[2, 1, 0, 0]]), np.array([[1, 2, 3, 4]]), k=2) == 1.0
    # duplicates are not double counted, -1 never counts
    assert recall_at_k(np.array([1, 1, 1]), np.array([1, 2, 3]), k=3) == pytest.approx(1 / 3)
    assert recall_at_k(np.array([[-1, -1]]), np.array([[-1, 0]]), k=2) == 0.0
    # fewer results than k
    assert recall_at_k(np.array([[1]]), np.array([[1, 2]]), k=2) == 0.5


@settings(max_examples=50)
@given(seed=st.integers(0, 2**32 - 1), nq=st.integers(1, 60), k=st.integers(1, 10))
def test_recall_is_the_mean_of_each_querys_share_bit_for_bit(seed, nq, k):
    """The cluster's and the specification's recall@n (n < 10 live vectors) average
    each query's ``hits / k`` over a set intersection; recall_at_k gives the same float."""
    rng = np.random.default_rng(seed)
    truth = np.stack([rng.permutation(k + 5)[:k] for _ in range(nq)])
    found = rng.integers(-1, k + 5, (nq, 10))
    shares = [len(set(found[i, :k].tolist()) & set(truth[i].tolist())) / k
              for i in range(nq)]
    assert recall_at_k(found, truth, k) == float(np.mean(shares))


def test_recall_invalid():
    with pytest.raises(InvalidArgument):
        recall_at_k(np.zeros((2, 3)), np.zeros((3, 3)), k=3)
    with pytest.raises(InvalidArgument):
        recall_at_k(np.zeros((2, 3)), np.zeros((2, 2)), k=3)
    with pytest.raises(InvalidArgument):
        recall_at_k(np.zeros((2, 3)), np.zeros((2, 3)), k=0)


# --------------------------------------------------------------------------- Fashion-MNIST


def write_idx(path: Path, arr: np.ndarray, *, compress: bool = True) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)


def test_load_fashion_mnist_from_small_fake_files(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, size=(6, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", train)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", test, compress=False)
    base, queries = load_fashion_mnist(tmp_path)
    assert base.shape == (6, 784) and queries.shape == (3, 784)
    assert base.dtype == np.float32 and queries.dtype == np.float32
    np.testing.assert_array_equal(base, train.reshape(6, -1).astype(np.float32))
    np.testing.assert_array_equal(queries, test.reshape(3, -1).astype(np.float32))
    # the environment variable is searched first
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path))
    assert fashion_mnist_dirs()[0] == tmp_path
    b2, _ = load_fashion_mnist()
    np.testing.assert_array_equal(b2, base)


def test_load_fashion_mnist_missing_dir_raises(tmp_path, monkeypatch):
    with pytest.raises(DatasetUnavailable, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path / "nope")
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path / "nope"))
    searched = fashion_mnist_dirs()
    assert searched[0] == tmp_path / "nope"
    assert Path("/usr/share/datasets/fashion-mnist") in searched  # where the Debian package puts it
    # hide the standard locations, so the test holds whether or not the real set is installed
    monkeypatch.setattr(datasets, "fashion_mnist_dirs", lambda: [tmp_path / "nope", tmp_path])
    with pytest.raises(DatasetUnavailable, match=FASHION_MNIST_ENV):
        load_fashion_mnist()


def test_load_fashion_mnist_corrupt_file(tmp_path):
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((1, 28, 28), dtype=np.uint8))
    with pytest.raises(DatasetUnavailable):
        load_fashion_mnist(tmp_path)
    # truncated data section
    header = bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 5, 28, 28)
    with gzip.open(tmp_path / "train-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(header + b"\x00" * 100)
    with pytest.raises(DatasetUnavailable, match="expected"):
        load_fashion_mnist(tmp_path)


def test_load_fashion_mnist_real_if_installed():
    try:
        base, queries = load_fashion_mnist()
    except DatasetUnavailable:
        pytest.skip("dataset-fashion-mnist is not installed")
    assert base.shape == (60000, 784) and queries.shape == (10000, 784)
    assert base.dtype == np.float32
    assert base.min() >= 0.0 and base.max() <= 255.0

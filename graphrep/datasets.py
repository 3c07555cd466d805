"""Data for experiments and tests: synthetic sets, a real set, exact ground truth, recall.

Everything here is deterministic: a synthetic set is a pure function of its
arguments and seed, and the ground truth is a pure function of its inputs
(ties broken by id), so a benchmark run, a test and a replica can all agree on
what the "right answer" is without shipping it around.

Why these pieces:

- ``gaussian_mixture`` / ``gmm_dataset``: clustered data like the "gmm" sets
  used by ann-benchmarks style studies. Clustered data is where graph indexes
  shine (and where a bad prune shows up as unreachable clusters); uniform data
  is the opposite corner (``uniform``), where brute force is hard to beat.
- ``ground_truth``: exact top-k by blocked brute force. Recall is only
  meaningful against an *exact* answer, so candidates are selected with a fast
  float64 matrix product and then re-ranked by a canonical float64 distance,
  with an explicit error margin so that no true neighbour is lost to rounding.
- ``recall_at_k``: the ann-benchmarks definition (overlap with the exact top-k).
- ``load_fashion_mnist``: a real set that is available without the internet,
  through the Debian package ``dataset-fashion-mnist``.
"""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from graphrep.errors import DatasetUnavailable, DimensionMismatch, InvalidArgument, InvalidVector

__all__ = [
    "FASHION_MNIST_ENV",
    "METRICS",
    "fashion_mnist_dirs",
    "gaussian_mixture",
    "gmm_dataset",
    "ground_truth",
    "load_fashion_mnist",
    "recall_at_k",
    "uniform",
    "uniform_dataset",
]

METRICS: tuple[str, ...] = ("l2", "cosine", "ip")
"""Metrics understood by :func:`ground_truth` (the same names the index uses)."""

FASHION_MNIST_ENV = "GRAPHREP_FASHION_MNIST_DIR"
"""Environment variable naming a directory that holds the Fashion-MNIST idx files."""

# Shape of the mixture. Centres are N(0, _CENTRE_SCALE^2 I); each cluster has
# its own isotropic spread, drawn uniformly from _SIGMA_RANGE. With these values
# the distance between two centres (~ _CENTRE_SCALE * sqrt(2 d)) is larger than
# the distance between two points of one cluster (~ sigma * sqrt(2 d)), so the
# clusters are separated but each is a full-dimensional blob: the nearest
# neighbours of a query are (almost always) in its own cluster, and finding them
# inside the cluster is a genuinely high-dimensional search.
_CENTRE_SCALE = 1.0
_SIGMA_RANGE = (0.5, 1.0)

# Stream numbers for np.random.default_rng([seed, stream]). Keeping them fixed
# and separate means that drawing more queries never changes the base set, and
# that base and queries share the centres but not their draws.
_STREAM_CENTRES = 0
_STREAM_BASE = 1
_STREAM_QUERIES = 2


# --------------------------------------------------------------------------- helpers


def _check_count(name: str, value: int, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidArgument(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise InvalidArgument(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InvalidArgument(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream])


def _mixture_centres(dim: int, n_clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = _rng(seed, _STREAM_CENTRES)
    centres = rng.standard_normal((n_clusters, dim)) * _CENTRE_SCALE
    sigmas = rng.uniform(_SIGMA_RANGE[0], _SIGMA_RANGE[1], size=n_clusters)
    return centres, sigmas


_DRAW_ROWS = 16_384


def _mixture_draw(
    n: int, centres: np.ndarray, sigmas: np.ndarray, rng: np.random.Generator,
    rows: int = _DRAW_ROWS,
) -> np.ndarray:
    """``n`` points: every label first, then the noise ``rows`` points at a time.

    The generator draws the same stream in pieces as at once, and each row's float64
    arithmetic is the same, so the bits do not depend on ``rows``; drawing in pieces
    keeps the float64 temporaries to ``rows`` points (at a million 128-d points, whole
    temporaries would take gigabytes)."""
    n_clusters, dim = centres.shape
    labels = rng.integers(0, n_clusters, size=n)
    out = np.empty((n, dim), dtype=np.float32)
    for lo in range(0, n, rows):
        lab = labels[lo:lo + rows]
        noise = rng.standard_normal((len(lab), dim))
        out[lo:lo + rows] = centres[lab] + noise * sigmas[lab, None]
    return out


# --------------------------------------------------------------------------- synthetic data


def gaussian_mixture(n: int, dim: int, *, n_clusters: int = 100, seed: int = 0) -> np.ndarray:
    """``n`` points in ``dim`` dimensions from a mixture of ``n_clusters`` Gaussians.

    Each point picks a cluster uniformly at random and is its centre plus
    isotropic Gaussian noise with that cluster's own spread. Returns a C-contiguous
    ``float32`` array of shape ``(n, dim)``; the same arguments always give the
    same bits. Equal to the base set of :func:`gmm_dataset` with the same
    ``n``, ``dim``, ``n_clusters`` and ``seed``.
    """
    n = _check_count("n", n)
    dim = _check_count("dim", dim, minimum=1)
    n_clusters = _check_count("n_clusters", n_clusters, minimum=1)
    seed = _check_seed(seed)
    centres, sigmas = _mixture_centres(dim, n_clusters, seed)
    return _mixture_draw(n, centres, sigmas, _rng(seed, _STREAM_BASE))


def gmm_dataset(
    n: int, nq: int, dim: int, *, n_clusters: int = 100, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A base set and a query set drawn from the same Gaussian mixture.

    Queries share the base set's centres and spreads but come from an
    independent random stream, so they are fresh points (not copies of base
    points) from the same distribution: the usual ann-benchmarks setup.
    Returns ``(base (n, dim), queries (nq, dim))``, both ``float32``.
    """
    n = _check_count("n", n)
    nq = _check_count("nq", nq)
    dim = _check_count("dim", dim, minimum=1)
    n_clusters = _check_count("n_clusters", n_clusters, minimum=1)
    seed = _check_seed(seed)
    centres, sigmas = _mixture_centres(dim, n_clusters, seed)
    base = _mixture_draw(n, centres, sigmas, _rng(seed, _STREAM_BASE))
    queries = _mixture_draw(nq, centres, sigmas, _rng(seed, _STREAM_QUERIES))
    return base, queries


def uniform(n: int, dim: int, *, seed: int = 0) -> np.ndarray:
    """``n`` points uniform in the unit cube ``[0, 1)^dim``, ``float32`` ``(n, dim)``.

    The hard case for graph indexes: no cluster structure, full intrinsic
    dimension. Equal to the base set of :func:`uniform_dataset` with the same seed.
    """
    n = _check_count("n", n)
    dim = _check_count("dim", dim, minimum=1)
    seed = _check_seed(seed)
    return _rng(seed, _STREAM_BASE).random((n, dim), dtype=np.float32)


def uniform_dataset(n: int, nq: int, dim: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Base and query sets, both uniform in ``[0, 1)^dim``, from independent streams."""
    nq = _check_count("nq", nq)
    base = uniform(n, dim, seed=seed)
    queries = _rng(_check_seed(seed), _STREAM_QUERIES).random((nq, base.shape[1]), dtype=np.float32)
    return base, queries


# --------------------------------------------------------------------------- ground truth


def _as_matrix(name: str, x: np.ndarray) -> np.ndarray:
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:  # ragged input
        raise InvalidVector(f"{name} is not a numeric array: {exc}") from exc
    if arr.dtype.kind not in "biuf":
        raise InvalidVector(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise InvalidVector(f"{name} must be 2-d (rows are vectors), got shape {arr.shape}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise InvalidVector(f"{name} contains NaN or infinite values")
    return arr  # kept in its own dtype: tiles are converted to float64 as they are used


def _f64(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _row_norms(x: np.ndarray, block: int) -> np.ndarray:
    """Canonical per-row Euclidean norms in float64 (same summation for every row)."""
    out = np.empty(x.shape[0], dtype=np.float64)
    for s in range(0, x.shape[0], block):
        t = _f64(x[s : s + block])
        out[s : s + block] = np.sqrt(np.einsum("ij,ij->i", t, t))
    return out


def _exact_pairs(
    metric: str,
    q: np.ndarray,
    x: np.ndarray,
    qn: np.ndarray,
    xn: np.ndarray,
    qi: np.ndarray,
    xj: np.ndarray,
    chunk: int,
) -> np.ndarray:
    """Canonical float64 distance of the pairs (q[qi], x[xj]).

    Every pair is computed by the same row-wise expression, so two pairs with
    equal vectors get bit-identical distances, and ties are then broken by id.
    """
    out = np.empty(qi.shape[0], dtype=np.float64)
    for s in range(0, qi.shape[0], chunk):
        a = _f64(q[qi[s : s + chunk]])
        b = _f64(x[xj[s : s + chunk]])
        if metric == "l2":
            diff = a - b
            out[s : s + chunk] = np.einsum("ij,ij->i", diff, diff)
        else:
            dot = np.einsum("ij,ij->i", a, b)
            if metric == "ip":
                out[s : s + chunk] = -dot
            else:
                out[s : s + chunk] = 1.0 - dot / (qn[qi[s : s + chunk]] * xn[xj[s : s + chunk]])
    return out


def ground_truth(
    base: np.ndarray,
    queries: np.ndarray,
    k: int,
    metric: str = "l2",
    *,
    block: int = 1024,
    ids: Sequence[int] | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` neighbours of every query by blocked brute force.

    Returns ``(ids int64 (nq, k), dists float32 (nq, k))``, each row sorted by
    (distance, id). Distances: ``"l2"`` squared Euclidean, ``"cosine"``
    ``1 - cos`` (a zero vector has cosine 0 with everything), ``"ip"`` minus the
    dot product. ``ids`` maps base row -> external id (default: the row number);
    ties are broken by the smaller (external) id, so the answer is unique.

    How it stays exact and bounded: distances are computed for tiles of
    ``block`` queries x ``block`` base rows with a float64 matrix product. Within
    each tile, every pair whose fast distance lies within a rounding margin of
    the current k-th best is re-scored by a canonical float64 expression, and a
    running top-``k`` per query is kept by (exact distance, id). Memory is
    O(block^2 + block * dim) beyond the inputs themselves (never a float64 copy
    of the base set), whatever the sizes of ``base`` and ``queries``.
    """
    if metric not in METRICS:
        raise InvalidArgument(f"unknown metric {metric!r}; expected one of {METRICS}")
    k = _check_count("k", k, minimum=1)
    block = _check_count("block", block, minimum=1)
    x = _as_matrix("base", base)
    q = _as_matrix("queries", queries)
    n, dim = x.shape
    nq = q.shape[0]
    if q.shape[1] != dim:
        raise DimensionMismatch(f"queries have dimension {q.shape[1]}, base has {dim}")
    if k > n:
        raise InvalidArgument(f"k={k} is larger than the base set ({n} vectors)")
    if ids is None:
        ext = np.arange(n, dtype=np.int64)
    else:
        ext = np.asarray(ids)
        if ext.shape != (n,) or ext.dtype.kind not in "iu":
            raise InvalidArgument(f"ids must be {n} integers (one per base row), got {ext.shape}")
        ext = ext.astype(np.int64)
        if np.unique(ext).shape[0] != n:
            raise InvalidArgument("ids must be unique")

    xn = _row_norms(x, block)
    qn = _row_norms(q, block)
    x_sq = xn * xn
    if metric == "cosine":  # a zero vector is scaled by 1: cosine 0 with everything
        xn = np.where(xn > 0, xn, 1.0)
        qn = np.where(qn > 0, qn, 1.0)
    max_xn = float(xn.max()) if n else 0.0

    # Bound on |fast - canonical| is ~ dim * eps64 * scale; 1e-9 * scale is far
    # above it yet far below any real distance gap between float32 vectors.
    if metric == "l2":
        scale = (qn + max_xn) ** 2
    elif metric == "ip":
        scale = qn * max_xn
    else:
        scale = np.ones(nq)
    margin = 1e-9 * scale + 1e-300

    out_ids = np.empty((nq, k), dtype=np.int64)
    out_d = np.empty((nq, k), dtype=np.float32)
    pair_chunk = max(1, (1 << 22) // max(1, dim))  # ~32 MB of float64 per chunk

    for q0 in range(0, nq, block):
        q1 = min(nq, q0 + block)
        bq = q1 - q0
        qb = _f64(q[q0:q1])
        if metric == "cosine":
            qb = qb / qn[q0:q1, None]
        pool_d = np.full((bq, k), np.inf)
        pool_id = np.full((bq, k), np.iinfo(np.int64).max, dtype=np.int64)
        for x0 in range(0, n, block):
            x1 = min(n, x0 + block)
            xb = _f64(x[x0:x1])
            if metric == "cosine":
                xb = xb / xn[x0:x1, None]
            prod = qb @ xb.T
            if metric == "l2":
                fast = (qn[q0:q1, None] ** 2 - 2.0 * prod) + x_sq[None, x0:x1]
            elif metric == "ip":
                fast = -prod
            else:
                fast = 1.0 - prod
            thr = pool_d[:, k - 1].copy()
            if x1 - x0 >= k:
                thr = np.minimum(thr, np.partition(fast, k - 1, axis=1)[:, k - 1])
            thr = thr + 2.0 * margin[q0:q1]
            qi, cj = np.nonzero(fast <= thr[:, None])
            if qi.size == 0:
                continue
            rows = cj + x0
            exact = _exact_pairs(metric, q, x, qn, xn, qi + q0, rows, pair_chunk)
            # merge the candidates with the running pool, keep the k best per query
            all_q = np.concatenate([np.repeat(np.arange(bq), k), qi])
            all_d = np.concatenate([pool_d.ravel(), exact])
            all_id = np.concatenate([pool_id.ravel(), ext[rows]])
            order = np.lexsort((all_id, all_d, all_q))
            sq = all_q[order]
            starts = np.searchsorted(sq, np.arange(bq))
            rank = np.arange(sq.shape[0]) - starts[sq]
            keep = order[rank < k]
            kq = all_q[keep]
            kr = rank[rank < k]
            pool_d[kq, kr] = all_d[keep]
            pool_id[kq, kr] = all_id[keep]
        out_ids[q0:q1] = pool_id
        out_d[q0:q1] = pool_d.astype(np.float32)
    return out_ids, out_d


def recall_at_k(found: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    """Mean over queries of ``|found[:k] ∩ truth[:k]| / k`` (ann-benchmarks recall).

    ``found`` rows may be shorter than ``k`` or padded with ``-1`` (an index
    that returned fewer results); ``-1`` and repeated ids never count as hits.
    1-d inputs are treated as a single query. Returns a float in ``[0, 1]``.

    The one recall of the project: the benchmarks, the demo and the simulated
    cluster all call it. The cluster measures a shard holding fewer than ten live
    vectors at recall@n, passing ``k = truth.shape[1]`` (its ground truth's width).
    It averages each query's share ``hits / k`` (dividing the mean hit count by
    ``k`` instead can differ in the last bit, and the cluster's pinned summaries
    are computed this way).
    """
    k = _check_count("k", k, minimum=1)
    f = np.asarray(found)
    t = np.asarray(truth)
    if f.ndim == 1:
        f = f[None, :]
    if t.ndim == 1:
        t = t[None, :]
    if f.ndim != 2 or t.ndim != 2:
        raise InvalidArgument("found and truth must be 1-d or 2-d arrays of ids")
    if f.shape[0] != t.shape[0]:
        raise InvalidArgument(f"found has {f.shape[0]} queries, truth has {t.shape[0]}")
    if t.shape[1] < k:
        raise InvalidArgument(f"truth has {t.shape[1]} neighbours per query, need k={k}")
    if f.shape[0] == 0:
        raise InvalidArgument("no queries")
    f = np.sort(f[:, :k].astype(np.int64), axis=1)
    t = t[:, :k].astype(np.int64)
    valid = f != -1
    if f.shape[1] > 1:
        valid[:, 1:] &= f[:, 1:] != f[:, :-1]
    hits = (f[:, :, None] == t[:, None, :]).any(axis=2) & valid
    return float(np.mean(hits.sum(axis=1) / k))


# --------------------------------------------------------------------------- Fashion-MNIST

_FMNIST_TRAIN = "train-images-idx3-ubyte"
_FMNIST_TEST = "t10k-images-idx3-ubyte"
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_INSTALL_HINT = (
    "install it with `apt-get install dataset-fashion-mnist` "
    f"or set {FASHION_MNIST_ENV} to a directory holding "
    f"{_FMNIST_TRAIN}.gz and {_FMNIST_TEST}.gz"
)


def fashion_mnist_dirs() -> list[Path]:
    """Directories searched for Fashion-MNIST, in order.

    The environment variable first, then ``datasets/fashion-mnist`` under every
    XDG data directory (default ``/usr/local/share`` and ``/usr/share``), which
    is where the Debian package ``dataset-fashion-mnist`` puts the files.
    """
    dirs: list[Path] = []
    env = os.environ.get(FASHION_MNIST_ENV)
    if env:
        dirs.append(Path(env))
    xdg = os.environ.get("XDG_DATA_DIRS") or "/usr/local/share:/usr/share"
    for d in [*xdg.split(os.pathsep), "/usr/share"]:
        if d:
            p = Path(d) / "datasets" / "fashion-mnist"
            if p not in dirs:
                dirs.append(p)
    return dirs


def _find_idx(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        p = directory / name
        if p.is_file():
            return p
    return None


def _read_idx(path: Path) -> np.ndarray:
    """Parse an idx file (the MNIST container format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise DatasetUnavailable(f"cannot read {path}: {exc}; reinstall: {_INSTALL_HINT}") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DatasetUnavailable(f"{path} is not an idx file; reinstall: {_INSTALL_HINT}")
    dtype = _IDX_DTYPES[raw[2]]
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetUnavailable(f"{path} is truncated (header); reinstall: {_INSTALL_HINT}")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    count = int(np.prod(shape, dtype=np.int64))
    if len(raw) != header + count * dtype.itemsize:
        raise DatasetUnavailable(
            f"{path} has {len(raw) - header} data bytes, expected {count * dtype.itemsize} "
            f"for shape {shape}; reinstall: {_INSTALL_HINT}"
        )
    return np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(shape)


def load_fashion_mnist(root: str | os.PathLike[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST as ann-benchmarks uses it: ``(base (60000, 784), queries (10000, 784))``.

    Base is the training set, queries the test set, each image flattened to
    784 raw pixel values 0..255 as ``float32`` (no normalisation, as in
    ann-benchmarks' ``fashion-mnist-784-euclidean``). ``root`` names the
    directory holding the idx files; by default :func:`fashion_mnist_dirs` is
    searched. Raises :class:`graphrep.errors.DatasetUnavailable` (saying how to
    install the set) when the files are missing or malformed.
    """
    candidates = [Path(root)] if root is not None else fashion_mnist_dirs()
    for d in candidates:
        train = _find_idx(d, _FMNIST_TRAIN)
        test = _find_idx(d, _FMNIST_TEST)
        if train is None or test is None:
            continue
        base = _read_idx(train)
        queries = _read_idx(test)
        if base.ndim != 3 or queries.ndim != 3 or base.shape[1:] != queries.shape[1:]:
            raise DatasetUnavailable(
                f"unexpected image shapes {base.shape} / {queries.shape} in {d}; {_INSTALL_HINT}"
            )
        base = np.ascontiguousarray(base.reshape(base.shape[0], -1), dtype=np.float32)
        queries = np.ascontiguousarray(queries.reshape(queries.shape[0], -1), dtype=np.float32)
        return base, queries
    where = ", ".join(str(d) for d in candidates)
    raise DatasetUnavailable(f"Fashion-MNIST not found (looked in {where}); {_INSTALL_HINT}")

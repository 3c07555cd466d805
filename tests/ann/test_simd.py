"""The distance kernels (graphrep.ann._simd): the exact integer squared L2 between uint8
search codes, and float32 distances summed in a fixed lane order, so that both give the
same bits whatever vector instructions the machine has."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from graphrep.ann._simd import FLOAT_LANES, lane_sum, sqdist_u8
from graphrep.ann.kernels import METRIC_IP, METRIC_L2, _dist_any, _dist_query, _l2_slots


@njit(cache=False)
def _all_rows(a, q):
    out = np.empty(a.shape[0], dtype=np.int64)
    for i in range(a.shape[0]):
        out[i] = sqdist_u8(a, i, q)
    return out


@njit(cache=False)
def _via_dist_any(a, q):
    out = np.empty(a.shape[0], dtype=np.float32)
    for i in range(a.shape[0]):
        out[i] = _dist_any(a, i, q, 0)
    return out


@njit(cache=False, fastmath=True)
def _float_rows(a, q):
    """Every row's squared L2 to q, -dot with q, and squared L2 to the next row, from a
    caller compiled with fastmath (which must not reorder the kernels' sums)."""
    n = a.shape[0]
    out = np.empty((n, 3), dtype=np.float32)
    for i in range(n):
        out[i, 0] = _dist_query(a, i, q, METRIC_L2)
        out[i, 1] = _dist_query(a, i, q, METRIC_IP)
        out[i, 2] = _l2_slots(a, i, (i + 1) % n)
    return out


def float_reference(a: np.ndarray, q: np.ndarray) -> np.ndarray:
    n = a.shape[0]
    out = np.empty((n, 3), dtype=np.float32)
    for i in range(n):
        d = a[i] - q
        e = a[i] - a[(i + 1) % n]
        out[i] = (lane_sum(d * d), -lane_sum(a[i] * q), lane_sum(e * e))
    return out


def exact(a: np.ndarray, q: np.ndarray) -> np.ndarray:
    t = a.astype(np.int64) - q.astype(np.int64)
    return (t * t).sum(axis=1)


@settings(max_examples=60, deadline=None)
@given(dim=st.integers(1, 200), n=st.integers(1, 5), seed=st.integers(0, 2**32 - 1))
def test_equals_the_exact_sum_for_any_dimension(dim, n, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, size=(n, dim), dtype=np.uint8)
    q = rng.integers(0, 256, size=dim, dtype=np.uint8)
    assert np.array_equal(_all_rows(a, q), exact(a, q))


@settings(max_examples=60, deadline=None)
@given(dim=st.integers(1, 3 * FLOAT_LANES + 5), n=st.integers(1, 4),
       scale=st.sampled_from([1e-3, 1.0, 1e3]), seed=st.integers(0, 2**32 - 1))
def test_float_distances_are_the_lane_order_sum(dim, n, scale, seed):
    """Each float32 distance equals its definition (graphrep.ann._simd.lane_sum), bit for
    bit, for any dimension (full lane blocks and a partial one)."""
    rng = np.random.default_rng(seed)
    a = (rng.standard_normal((n, dim)) * scale).astype(np.float32)
    q = (rng.standard_normal(dim) * scale).astype(np.float32)
    assert np.array_equal(_float_rows(a, q).view(np.uint32), float_reference(a, q).view(np.uint32))


def test_the_lane_order_is_not_the_sequential_order():
    """The check above can fail: a sequential float32 sum differs from the lane sum on
    data where the order matters."""
    rng = np.random.default_rng(2)
    t = (rng.standard_normal(700) * np.logspace(-4, 4, 700)).astype(np.float32) ** 2
    seq = np.float32(0)
    for x in t:
        seq = np.float32(seq + x)
    assert seq != lane_sum(t)


def test_extremes_at_the_largest_dimension_do_not_overflow():
    dim = 1 << 16  # the largest dimension an index accepts
    a = np.zeros((2, dim), dtype=np.uint8)
    a[1, ::2] = 255
    q = np.full(dim, 255, dtype=np.uint8)
    got = _all_rows(a, q)
    assert got.tolist() == [dim * 255**2, dim // 2 * 255**2]


def test_a_search_distance_on_strided_codes_is_the_same_number():
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, size=(6, 40), dtype=np.uint8)
    q = rng.integers(0, 256, size=40, dtype=np.uint8)
    want = exact(a, q).astype(np.float32)
    assert np.array_equal(_via_dist_any(a, q), want)
    # a non-contiguous view takes the plain loop, with the same result
    wide = np.zeros((6, 80), dtype=np.uint8)
    wide[:, ::2] = a
    assert np.array_equal(_via_dist_any(wide[:, ::2], q), want)


_CHILD = """
import json, sys
import numpy as np
from numba import njit
from graphrep.ann import _simd
rng = np.random.default_rng(11)
a = rng.integers(0, 256, size=(50, 131), dtype=np.uint8)
q = rng.integers(0, 256, size=131, dtype=np.uint8)

@njit
def rows(a, q):
    out = np.empty(a.shape[0], dtype=np.int64)
    for i in range(a.shape[0]):
        out[i] = _simd.sqdist_u8(a, i, q)
    return out

from graphrep.ann.kernels import _dist_query, _l2_slots
f = (rng.standard_normal((20, 300)) * 10).astype(np.float32)
fq = rng.standard_normal(300).astype(np.float32)

@njit(fastmath=True)
def frows(a, q):
    out = np.empty((a.shape[0], 3), dtype=np.float32)
    for i in range(a.shape[0]):
        out[i, 0] = _dist_query(a, i, q, 0)
        out[i, 1] = _dist_query(a, i, q, 1)
        out[i, 2] = _l2_slots(a, i, (i + 1) % a.shape[0])
    return out

print(json.dumps({"avx2": _simd._AVX2, "d": rows(a, q).tolist(),
                  "f": frows(f, fq).view(np.uint32).tolist()}))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="subprocess environment handling")
def test_a_generic_cpu_gives_the_same_bits_as_this_machines():
    """A process whose Numba target is the generic x86-64 CPU (SSE2 only: no AVX2, so the
    portable integer loop and 4-wide float vectors) computes the same distances, bit for
    bit, as one compiled for this machine."""
    def run(extra: dict[str, str]) -> dict:
        env = {**os.environ, "NUMBA_CACHE_DIR": os.devnull, **extra}
        env.pop("NUMBA_DISABLE_JIT", None)
        out = subprocess.run([sys.executable, "-c", _CHILD], env=env, check=True,
                             capture_output=True, text=True, timeout=300)
        return json.loads(out.stdout.strip().splitlines()[-1])

    generic = run({"NUMBA_CPU_NAME": "generic", "NUMBA_CPU_FEATURES": ""})
    here = run({})
    rng = np.random.default_rng(11)
    a = rng.integers(0, 256, size=(50, 131), dtype=np.uint8)
    q = rng.integers(0, 256, size=131, dtype=np.uint8)
    assert generic["avx2"] is False
    assert generic["d"] == here["d"] == exact(a, q).tolist()
    assert generic["f"] == here["f"]


_BUILD_CHILD = """
import hashlib
from graphrep.ann import VamanaIndex
from graphrep.datasets import gmm_dataset
base, queries = gmm_dataset(400, 50, 100, n_clusters=6, seed=4)
idx = VamanaIndex(100, R=12, L=24, seed=1)
idx.build(base[:300])
for i in range(300, 400):
    idx.insert(i, base[i])
for i in range(0, 300, 9):
    idx.delete(i)
idx.consolidate()
ids, dists = idx.search(queries, k=10)
print(idx.digest().hex(), hashlib.sha256(ids.tobytes() + dists.tobytes()).hexdigest())
"""


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="subprocess environment handling")
def test_an_index_built_for_a_generic_cpu_is_this_machines_bit_for_bit(tmp_path):
    """Build, inserts, deletes, a consolidation and a search compiled for the generic
    x86-64 CPU (every kernel compiled afresh: about a minute each) end in the same digest,
    and return the same ids and distances to the last bit, as the same program compiled
    for this machine."""
    def run(name: str, extra: dict[str, str]) -> str:
        env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / name), **extra}
        env.pop("NUMBA_DISABLE_JIT", None)
        out = subprocess.run([sys.executable, "-c", _BUILD_CHILD], env=env, check=True,
                             capture_output=True, text=True, timeout=900)
        return out.stdout.strip().splitlines()[-1]

    generic = run("generic", {"NUMBA_CPU_NAME": "generic", "NUMBA_CPU_FEATURES": ""})
    here = run("here", {})
    assert len(here) == 64 + 1 + 64
    assert generic == here

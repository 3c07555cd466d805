"""The search codes' distance kernel (graphrep.ann._simd): the exact integer squared L2
between uint8 rows, in the vector loop this machine compiles and in the generic one."""

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

from graphrep.ann._simd import sqdist_u8
from graphrep.ann.kernels import _dist_any


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

print(json.dumps({"avx2": _simd._AVX2, "d": rows(a, q).tolist()}))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="subprocess environment handling")
def test_the_generic_loop_gives_the_same_bits_as_this_machines():
    """A process whose Numba target is the generic CPU (no AVX2) takes the portable
    vector loop; its distances equal this process's and the exact sums."""
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

"""RobustPrune (graphrep.ann.kernels.robust_prune) against DiskANN's eager form."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from graphrep.ann import kernels


def eager_prune(d_node: np.ndarray, vecs: np.ndarray, ext: np.ndarray, alpha: float,
                R: int) -> list[int]:
    """DiskANN's ``occlude_list``: each selected node raises the occlusion factor of
    every later candidate; candidates in (distance, id) order; a = 1, then a *= 1.2."""
    order = sorted(range(len(d_node)), key=lambda i: (d_node[i], ext[i]))
    occl = [0.0] * len(order)  # float32 factors, compared with a as float64 (the kernel's)
    out: list[int] = []
    cur = 1.0
    while cur <= alpha and len(out) < R:
        for i, c in enumerate(order):
            if len(out) >= R:
                break
            if occl[i] > cur:
                continue
            occl[i] = np.inf
            out.append(c)
            for j in range(i + 1, len(order)):
                if occl[j] > alpha:
                    continue
                diff = vecs[order[j]] - vecs[c]
                djk = np.float32(np.dot(diff, diff))
                occl[j] = np.inf if djk == 0 else max(occl[j],
                                                      float(d_node[order[j]] / djk))
        cur *= 1.2
    return out


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 120), st.integers(1, 40), st.sampled_from([1.0, 1.2, 1.5]),
       st.integers(0, 2**32 - 1), st.booleans())
def test_the_lazy_prune_selects_what_the_eager_one_does(n, R, alpha, seed, ties):
    rng = np.random.default_rng(seed)
    dim = 3
    vecs = rng.integers(-3, 4, size=(n + 1, dim)).astype(np.float32) if ties else \
        rng.standard_normal((n + 1, dim)).astype(np.float32)
    ext = rng.permutation(n + 1).astype(np.int64)
    node = n  # the last row: the node whose list is chosen
    diff = vecs[:n] - vecs[node]
    d_node = np.einsum("ij,ij->i", diff, diff).astype(np.float32)
    g = kernels.Graph(vecs, np.zeros((n + 1, 1), np.int32), np.zeros(n + 1, np.int32),
                      np.ones(n + 1, np.uint8), ext, np.zeros(n + 1, np.int32))
    s = kernels.make_scratch(n + 1, 8, 8)
    s = s._replace(**{k: np.empty(max(len(getattr(s, k)), n + 1), getattr(s, k).dtype)
                      for k in ("cand", "cd", "pc", "pd", "occl", "chk", "selpos", "pbuf")})
    s.cand[:n] = np.arange(n)
    s.cd[:n] = d_node
    counters = np.zeros(kernels.N_COUNTERS, np.int64)
    m = kernels.robust_prune(s.cand, s.cd, n, np.float32(alpha), R, kernels.MAXC, g, s,
                             counters)
    assert s.pbuf[:m].tolist() == eager_prune(d_node, vecs, ext, np.float32(alpha), R)

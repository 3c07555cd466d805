"""What the benchmark and its reference runner share: timing and the recall/QPS sweep.

Pure numpy on purpose: ``ann_refs.py`` imports it from the reference venv
(numpy 1.25, no graphrep), ``ann_bench.py`` from graphrep's own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np


def recall_at_k(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Same definition as graphrep.ann.datasets.recall_at_k (kept here: no graphrep import)."""
    f = np.sort(np.asarray(found)[:, :k].astype(np.int64), axis=1)
    t = np.asarray(truth)[:, :k].astype(np.int64)
    valid = f >= 0
    if f.shape[1] > 1:
        valid[:, 1:] &= f[:, 1:] != f[:, :-1]
    hits = (f[:, :, None] == t[:, None, :]).any(axis=2) & valid
    return float(hits.sum(axis=1).mean() / k)


def best_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Best wall time of ``repeats`` calls (the usual ann-benchmarks convention) and a result."""
    best = float("inf")
    out = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def search_sweep(
    name: str,
    search_batch: Callable[[np.ndarray, int], np.ndarray],
    search_one: Callable[[np.ndarray, int], np.ndarray],
    queries: np.ndarray,
    gt: np.ndarray,
    k: int,
    sweep_L: list[int],
    repeats: int,
    stop_recall: float,
    log: Callable[[str], None],
    prepare: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Recall@k and QPS, batched and one query at a time, for each search size L.

    ``search_batch(queries, L)`` returns the (nq, k) ids, ``search_one(q, L)``
    the k ids of one query; ``prepare(L)`` runs before each L (untimed). The
    sweep stops once both recalls reach ``stop_recall``.
    """
    sweep = []
    nq = queries.shape[0]
    for L in sweep_L:
        if k > L:
            continue
        if prepare is not None:
            prepare(L)
        search_batch(queries[: min(50, nq)], L)  # warm caches
        tb, ids_b = best_time(lambda L=L: search_batch(queries, L), repeats)
        rb = recall_at_k(np.asarray(ids_b), gt, k)

        def single(L: int = L) -> np.ndarray:
            out = np.empty((nq, k), dtype=np.int64)
            for i in range(nq):
                out[i] = search_one(queries[i], L)
            return out

        ts, ids_s = best_time(single, repeats)
        rs = recall_at_k(ids_s, gt, k)
        point = {"L": L, "recall_batched": rb, "qps_batched": nq / tb,
                 "recall_single": rs, "qps_single": nq / ts}
        sweep.append(point)
        log(f"{name}: L={L} recall {rb:.4f}/{rs:.4f} "
            f"qps {point['qps_batched']:.0f}/{point['qps_single']:.0f}")
        if min(rb, rs) >= stop_recall:
            break
    return sweep

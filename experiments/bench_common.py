"""What the benchmark and its reference runner share: timing and the recall/QPS sweep.

``ann_refs.py`` imports it from the reference venv (numpy 1.25, graphrep not
installed), ``ann_bench.py`` from graphrep's own. Recall is
:func:`graphrep.datasets.recall_at_k`, imported from this checkout: that module
needs nothing but numpy and :mod:`graphrep.errors`, so the reference venv can
import it too.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the reference venv does not have graphrep installed
    sys.path.insert(0, str(REPO))

from graphrep.datasets import recall_at_k  # noqa: E402

__all__ = ["best_time", "recall_at_k", "search_sweep"]


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

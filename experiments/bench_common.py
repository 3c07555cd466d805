"""What the benchmarks share: timing, the recall/QPS sweep, the index options and the
fields that say what ran.

``ann_refs.py`` imports it from the reference venv (numpy 1.25, graphrep not
installed), ``ann_bench.py`` from graphrep's own. Recall is
:func:`graphrep.datasets.recall_at_k`, imported from this checkout: that module
needs nothing but numpy and :mod:`graphrep.errors`, so the reference venv can
import it too.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the reference venv does not have graphrep installed
    sys.path.insert(0, str(REPO))

from graphrep.datasets import recall_at_k  # noqa: E402
from graphrep.exp.memory import peak_rss_mb, reset_peak_rss  # noqa: E402

__all__ = ["GRAPH_OPTIONS", "INDEX_OPTIONS", "SWEEP_OPTIONS", "add_options", "best_time",
           "cpu_seconds", "forward", "peak_rss_mb", "recall_at_k", "reset_peak_rss",
           "run_info", "search_sweep"]

Option = tuple[str, type, float, str]
"""``(flag, type, default, help)`` of a command-line option."""

GRAPH_OPTIONS: tuple[Option, ...] = (
    ("--R", int, 64, "graph degree (graphrep, DiskANN)"),
    ("--L", int, 100, "build beam width (graphrep, DiskANN)"),
)
INDEX_OPTIONS: tuple[Option, ...] = (
    *GRAPH_OPTIONS,
    ("--alpha", float, 1.2, "prune factor (graphrep, DiskANN)"),
    ("--M", int, 32, "graph degree (HNSW: hnswlib, faiss)"),
    ("--efc", int, 200, "build beam width (HNSW)"),
)
"""How every library builds its index; ``ann_bench.py`` passes them on to ``ann_refs.py``."""
SWEEP_OPTIONS: tuple[Option, ...] = (
    ("--stop-recall", float, 0.999, "stop the sweep once both recalls reach this"),
    ("--insert-frac", float, 0.1, "fraction of the base inserted one point at a time"),
)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def add_options(p: argparse.ArgumentParser, options: Sequence[Option]) -> None:
    """Add ``options`` to ``p``."""
    for flag, kind, default, help_text in options:
        p.add_argument(flag, type=kind, default=default, help=f"{help_text} (default "
                       f"{default})")


def forward(args: argparse.Namespace, options: Sequence[Option]) -> list[str]:
    """``options`` as parsed into ``args``, as command-line words for another script."""
    return [word for flag, *_ in options
            for word in (flag, str(getattr(args, flag[2:].replace("-", "_"))))]


def run_info(n: int, nq: int, dim: int, k: int) -> dict[str, Any]:
    """What every result file records about a run: versions, sizes, one thread."""
    return {"numpy": np.__version__, "python": platform.python_version(), "n": n, "nq": nq,
            "dim": dim, "k": k, "threads": 1}


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

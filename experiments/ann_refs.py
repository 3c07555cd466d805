"""Measure one reference ANN library on prepared data (runs in the reference venv).

This script is started by ``experiments/ann_bench.py`` with the python of the
separate reference environment (``.venv-ref``: numpy 1.25, hnswlib, faiss-cpu,
diskannpy), because diskannpy pins an older numpy than graphrep needs. It must
therefore not import graphrep. It reads the data that ``ann_bench.py`` wrote as
``.npy`` files into a work directory, measures one library on ONE thread, and
writes one JSON file:

- build: seconds to build the index on the whole base set;
- sweep: recall@k and QPS for every search list size (L / ef), both with one
  batched call for all queries and with one call per query;
- insert: build on the first ``n_build`` points, then insert the rest one point
  at a time; microseconds per insert, and recall of the resulting index.

Usage (normally only through ann_bench.py)::

    .venv-ref/bin/python experiments/ann_refs.py --lib hnswlib --work DIR --out result.json
"""

from __future__ import annotations

import one_thread  # noqa: F401  (first: one thread for every library)

# isort: split
import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_common import (
    INDEX_OPTIONS,
    SWEEP_OPTIONS,
    add_options,
    recall_at_k,
    run_info,
    search_sweep,
)

LIBS = ("hnswlib", "faiss", "diskannpy")


def log(msg: str) -> None:
    print(f"[ann_refs] {msg}", file=sys.stderr, flush=True)


class Ref:
    """One library behind a common interface: build, set search size, search, insert."""

    name = ""

    def __init__(self, args: argparse.Namespace, dim: int) -> None:
        self.args = args
        self.dim = dim

    def version(self) -> str:
        return ""

    def build(self, base: np.ndarray) -> None:
        raise NotImplementedError

    def prepare_search(self, L: int) -> None:
        """Called once before the searches with list size L (not timed)."""

    def search_batch(self, queries: np.ndarray, k: int, L: int) -> np.ndarray:
        raise NotImplementedError

    def search_one(self, query: np.ndarray, k: int, L: int) -> np.ndarray:
        raise NotImplementedError

    def start_dynamic(self, base: np.ndarray, capacity: int) -> None:
        raise NotImplementedError

    def insert_one(self, i: int, vector: np.ndarray) -> None:
        raise NotImplementedError

    def dynamic_search(self, queries: np.ndarray, k: int, L: int) -> np.ndarray:
        raise NotImplementedError


class Hnswlib(Ref):
    name = "hnswlib"

    def version(self) -> str:
        import importlib.metadata as md

        return md.version("hnswlib")

    def _new(self, capacity: int):
        import hnswlib

        space = {"l2": "l2", "ip": "ip", "cosine": "cosine"}[self.args.metric]
        index = hnswlib.Index(space=space, dim=self.dim)
        index.init_index(
            max_elements=capacity, M=self.args.M, ef_construction=self.args.efc, random_seed=100
        )
        index.set_num_threads(1)
        return index

    def build(self, base: np.ndarray) -> None:
        self.index = self._new(base.shape[0])
        self.index.add_items(base, np.arange(base.shape[0]), num_threads=1)

    def prepare_search(self, L: int) -> None:
        self.index.set_ef(L)

    def search_batch(self, queries: np.ndarray, k: int, L: int) -> np.ndarray:
        labels, _ = self.index.knn_query(queries, k=k, num_threads=1)
        return labels

    def search_one(self, query: np.ndarray, k: int, L: int) -> np.ndarray:
        labels, _ = self.index.knn_query(query, k=k, num_threads=1)
        return labels[0]

    def start_dynamic(self, base: np.ndarray, capacity: int) -> None:
        self.dyn = self._new(capacity)
        self.dyn.add_items(base, np.arange(base.shape[0]), num_threads=1)

    def insert_one(self, i: int, vector: np.ndarray) -> None:
        self.dyn.add_items(vector, i, num_threads=1)

    def dynamic_search(self, queries: np.ndarray, k: int, L: int) -> np.ndarray:
        self.dyn.set_ef(L)
        labels, _ = self.dyn.knn_query(queries, k=k, num_threads=1)
        return labels


class Faiss(Ref):
    name = "faiss"

    def version(self) -> str:
        import faiss

        return faiss.__version__

    def _new(self):
        import faiss

        faiss.omp_set_num_threads(1)
        if self.args.metric == "l2":
            index = faiss.IndexHNSWFlat(self.dim, self.args.M)
        elif self.args.metric == "ip":
            index = faiss.IndexHNSWFlat(self.dim, self.args.M, faiss.METRIC_INNER_PRODUCT)
        else:
            raise SystemExit("faiss IndexHNSWFlat: cosine needs normalised data, not supported")
        index.hnsw.efConstruction = self.args.efc
        return index

    def build(self, base: np.ndarray) -> None:
        self.index = self._new()
        self.index.add(base)

    def prepare_search(self, L: int) -> None:
        self.index.hnsw.efSearch = L

    def search_batch(self, queries: np.ndarray, k: int, L: int) -> np.ndarray:
        _, labels = self.index.search(queries, k)
        return labels

    def search_one(self, query: np.ndarray, k: int, L: int) -> np.ndarray:
        _, labels = self.index.search(query[None, :], k)
        return labels[0]

    def start_dynamic(self, base: np.ndarray, capacity: int) -> None:
        self.dyn = self._new()
        self.dyn.add(base)

    def insert_one(self, i: int, vector: np.ndarray) -> None:
        # faiss numbers points in insertion order, which is i here
        self.dyn.add(vector[None, :])

    def dynamic_search(self, queries: np.ndarray, k: int, L: int) -> np.ndarray:
        self.dyn.hnsw.efSearch = L
        _, labels = self.dyn.search(queries, k)
        return labels


class Diskann(Ref):
    name = "diskannpy"

    def version(self) -> str:
        import importlib.metadata as md

        return md.version("diskannpy")

    @property
    def _metric(self) -> str:
        return {"l2": "l2", "ip": "mips", "cosine": "cosine"}[self.args.metric]

    def build(self, base: np.ndarray) -> None:
        import diskannpy

        self.dir = Path(self.args.work) / "diskann_index"
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        diskannpy.build_memory_index(
            data=base,
            distance_metric=self._metric,
            index_directory=str(self.dir),
            complexity=self.args.L,
            graph_degree=self.args.R,
            num_threads=1,
            alpha=self.args.alpha,
            vector_dtype=np.float32,
            index_prefix="ann",
        )

    def prepare_search(self, L: int) -> None:
        import diskannpy

        # Each query clears a scratch buffer sized by initial_search_complexity, so a
        # buffer sized for a larger L slows every query down: size it to the L being
        # measured, reloading per L.
        self.index = diskannpy.StaticMemoryIndex(
            index_directory=str(self.dir),
            num_threads=1,
            initial_search_complexity=L,
            index_prefix="ann",
        )

    def search_batch(self, queries: np.ndarray, k: int, L: int) -> np.ndarray:
        res = self.index.batch_search(queries, k, L, 1)
        return res.identifiers

    def search_one(self, query: np.ndarray, k: int, L: int) -> np.ndarray:
        res = self.index.search(query, k, L)
        return res.identifiers

    def start_dynamic(self, base: np.ndarray, capacity: int) -> None:
        import diskannpy

        # concurrent_consolidation=True drops edges to the frozen start point
        # on insert, so keep it off.
        self.dyn = diskannpy.DynamicMemoryIndex(
            distance_metric=self._metric,
            vector_dtype=np.float32,
            dimensions=self.dim,
            max_vectors=capacity,
            complexity=self.args.L,
            graph_degree=self.args.R,
            alpha=self.args.alpha,
            num_threads=1,
            initial_search_complexity=self.args.L,
            search_threads=1,
            concurrent_consolidation=False,
        )
        # tags are 1-based: 0 is not a valid vector id for DynamicMemoryIndex
        tags = np.arange(1, base.shape[0] + 1, dtype=np.uint32)
        self.dyn.batch_insert(base, tags, num_threads=1)

    def insert_one(self, i: int, vector: np.ndarray) -> None:
        self.dyn.insert(vector, np.uint32(i + 1))

    def dynamic_search(self, queries: np.ndarray, k: int, L: int) -> np.ndarray:
        res = self.dyn.batch_search(queries, k, L, 1)
        return res.identifiers.astype(np.int64) - 1


REFS: dict[str, type[Ref]] = {"hnswlib": Hnswlib, "faiss": Faiss, "diskannpy": Diskann}


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.work)
    base = np.ascontiguousarray(np.load(work / "base.npy"), dtype=np.float32)
    queries = np.ascontiguousarray(np.load(work / "queries.npy"), dtype=np.float32)
    gt = np.load(work / "gt_ids.npy")
    k = args.k
    n, dim = base.shape
    ref = REFS[args.lib](args, dim)
    result: dict[str, Any] = {"lib": ref.name, "version": ref.version(),
                              **run_info(n, int(queries.shape[0]), dim, k)}
    if ref.name == "diskannpy":
        result["params"] = {"R": args.R, "L": args.L, "alpha": args.alpha}
    else:
        result["params"] = {"M": args.M, "efConstruction": args.efc}

    log(f"{ref.name}: build on {n} x {dim}")
    t0 = time.perf_counter()
    ref.build(base)
    result["build_s"] = time.perf_counter() - t0
    log(f"{ref.name}: build {result['build_s']:.2f} s")

    sweep = search_sweep(
        ref.name, lambda Q, L: ref.search_batch(Q, k, L), lambda q, L: ref.search_one(q, k, L),
        queries, gt, k, args.sweep, args.repeats, args.stop_recall, log,
        prepare=ref.prepare_search,
    )
    result["sweep"] = sweep

    if args.insert_frac > 0:
        n_ins = max(1, round(n * args.insert_frac))
        n_build = n - n_ins
        log(f"{ref.name}: build on {n_build}, then insert {n_ins} one at a time")
        t0 = time.perf_counter()
        ref.start_dynamic(base[:n_build], n)
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(n_build, n):
            ref.insert_one(i, base[i])
        ins_s = time.perf_counter() - t0
        labels = ref.dynamic_search(queries, k, args.L)
        result["insert"] = {
            "n_build": n_build,
            "n_insert": n_ins,
            "build_s": build_s,
            "insert_s": ins_s,
            "us_per_insert": ins_s / n_ins * 1e6,
            "recall_after_at_L": args.L,
            "recall_after": recall_at_k(np.asarray(labels), gt, k),
        }
        log(f"{ref.name}: insert {result['insert']['us_per_insert']:.1f} us/point")
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--lib", choices=LIBS, required=True)
    p.add_argument("--work", required=True, help="directory with base.npy, queries.npy, gt_ids.npy")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--metric", default="l2", choices=("l2", "ip", "cosine"))
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--sweep", type=lambda s: [int(v) for v in s.split(",")], required=True)
    p.add_argument("--repeats", type=int, default=3)
    add_options(p, SWEEP_OPTIONS + INDEX_OPTIONS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

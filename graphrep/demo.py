"""``graphrep demo``: the index and its deltas end to end, in under a minute.

Builds a Vamana index on a synthetic Gaussian mixture, inserts, deletes and
consolidates, replays every delta on a second index, and reports recall@10,
whether the two digests are equal, what the deltas cost on the wire, and
how much cheaper applying a delta is than computing the insert. Writes a
recall/QPS plot of both indexes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numba
import numpy as np

from graphrep.ann import EdgeDelta, VamanaIndex
from graphrep.datasets import gmm_dataset, ground_truth, recall_at_k
from graphrep.errors import InvalidArgument

SEARCH_K = 10
"""The k of the demo's recall@k: at least this many vectors must stay live."""
MAX_N = 1_000_000
MAX_DIM = 4096
MAX_QUERIES = 100_000
MAX_FLOATS = 2**28
"""(n + n_insert) * dim at most: 1 GiB per float32 copy of the data set; the demo keeps
a few (the data, both indexes, the deltas' wire bytes)."""
MAX_SEED = 2**63 - 1


def check_demo_args(*, n: int, dim: int, n_insert: int, n_delete: int, nq: int,
                    seed: int) -> None:
    """Raise :class:`~graphrep.errors.InvalidArgument` unless the demo can run with these
    sizes: each in its range, and ``n + n_insert - n_delete >= SEARCH_K``."""
    for name, v, lo, hi in (("n", n, 1, MAX_N), ("dim", dim, 1, MAX_DIM),
                            ("n_insert", n_insert, 0, MAX_N), ("n_delete", n_delete, 0, MAX_N),
                            ("nq", nq, 1, MAX_QUERIES), ("seed", seed, 0, MAX_SEED)):
        if type(v) is not int or not lo <= v <= hi:
            raise InvalidArgument(f"{name} must be an int in [{lo}, {hi}], got {v!r}")
    if n + n_insert - n_delete < SEARCH_K:
        raise InvalidArgument(f"n + n_insert - n_delete = {n} + {n_insert} - {n_delete} "
                              f"leaves {n + n_insert - n_delete} live vectors; recall@"
                              f"{SEARCH_K} needs at least {SEARCH_K}: delete fewer")
    if (n + n_insert) * dim > MAX_FLOATS:
        raise InvalidArgument(f"(n + n_insert) * dim = {(n + n_insert) * dim} floats is more "
                              f"than the demo's limit of {MAX_FLOATS} (1 GiB per copy of "
                              f"the data): fewer vectors or fewer dimensions")


def run_demo(n: int = 10_000, dim: int = 64, n_insert: int = 2_000, n_delete: int = 1_000,
             nq: int = 500, seed: int = 7, out: str | Path = "results/demo",
             progress: bool = True) -> dict[str, Any]:
    """Run the demo and return its summary (also written as JSON next to the plot).

    ``n_insert`` may be 0: the per-insert fields of the summary (``insert_us``,
    ``apply_us_per_insert``, ``insert_over_apply``, ``bytes_per_insert``) are then None.
    At least ``SEARCH_K`` (10) vectors must stay live, since recall@10 is measured on
    them; an argument out of range raises :class:`~graphrep.errors.InvalidArgument`
    before anything runs."""
    check_demo_args(n=n, dim=dim, n_insert=n_insert, n_delete=n_delete, nq=nq, seed=seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    say = print if progress else (lambda *a, **k: None)
    base, queries = gmm_dataset(n + n_insert, nq, dim, n_clusters=50, seed=seed)
    rng = np.random.default_rng(seed)

    say("compiling the kernels (cached on disk after the first run)...")
    _warm_up(dim, seed)
    say(f"build: {n} x {dim} Gaussian mixture...")
    primary = VamanaIndex(dim, metric="l2", R=32, L=64, alpha=1.2, seed=seed)
    t0 = time.perf_counter()
    log: list[EdgeDelta] = primary.build(base[:n])
    t_build = time.perf_counter() - t0

    say(f"insert {n_insert} one at a time...")
    t0 = time.perf_counter()
    for i in range(n, n + n_insert):
        log.append(primary.insert(i, base[i]))
    t_insert = time.perf_counter() - t0
    insert_deltas = log[len(log) - n_insert :]

    victims = np.sort(rng.choice(n + n_insert, size=n_delete, replace=False))
    say(f"delete {n_delete} and consolidate...")
    for v in victims:
        log.append(primary.delete(int(v)))
    t0 = time.perf_counter()
    log.extend(primary.consolidate())
    t_consolidate = time.perf_counter() - t0

    say(f"replay {len(log)} deltas on a fresh replica (through their wire bytes)...")
    wire = [d.to_bytes() for d in log]
    replica = VamanaIndex(dim, metric="l2", R=32, L=64, alpha=1.2, seed=seed)
    t0 = time.perf_counter()
    for b in wire[:1]:
        replica.apply(EdgeDelta.from_bytes(b))
    decoded = [EdgeDelta.from_bytes(b) for b in wire[1 : 1 + n_insert]]
    t1 = time.perf_counter()
    replica.apply(decoded)  # a replica consumes deltas in batches: one kernel call
    t_apply_inserts = time.perf_counter() - t1
    for b in wire[1 + n_insert :]:
        replica.apply(EdgeDelta.from_bytes(b))
    t_replay = time.perf_counter() - t0
    replica_work = replica.stats()["distance_computations"]  # before any search

    live = primary.ids()
    truth, _ = ground_truth(base[live], queries, SEARCH_K)
    truth = live[truth]
    curves: dict[str, list[tuple[float, float]]] = {"primary": [], "replica": []}
    threads = numba.get_num_threads()
    numba.set_num_threads(1)  # one thread: QPS comparable with the benchmark's
    for L in (10, 16, 24, 32, 48, 64, 96):
        for name, idx in (("primary", primary), ("replica", replica)):
            best = float("inf")
            for _ in range(3):  # best of three: the machine is shared
                t0 = time.perf_counter()
                found, _ = idx.search(queries, k=SEARCH_K, L=L)
                best = min(best, time.perf_counter() - t0)
            curves[name].append((recall_at_k(found, truth, SEARCH_K), nq / best))
    numba.set_num_threads(threads)
    found_p, _ = primary.search(queries, k=SEARCH_K)
    found_r, _ = replica.search(queries, k=SEARCH_K)
    stats = primary.stats()
    parts = ({k: int(np.mean([d.size_by_part()[k] for d in insert_deltas]))
              for k in ("vector", "edges", "metadata", "total")} if n_insert else None)
    summary = {
        "n": n, "dim": dim, "inserted": n_insert, "deleted": n_delete, "live": len(primary),
        "recall_at_10": round(recall_at_k(found_p, truth, SEARCH_K), 4),
        "replica_recall_at_10": round(recall_at_k(found_r, truth, SEARCH_K), 4),
        "digests_equal": primary.digest() == replica.digest(),
        "identical_results": bool(np.array_equal(found_p, found_r)),
        "digest": primary.digest().hex()[:16],
        "deltas": len(log),
        "unreachable": stats["unreachable"],
        "max_degree": stats["max_degree"],
        "build_s": round(t_build, 3),
        "insert_us": round(t_insert / n_insert * 1e6, 1) if n_insert else None,
        "apply_us_per_insert": round(t_apply_inserts / n_insert * 1e6, 1) if n_insert else None,
        "insert_over_apply": (round(t_insert / max(t_apply_inserts, 1e-9), 1) if n_insert
                              else None),
        "consolidate_s": round(t_consolidate, 3),
        "replay_s": round(t_replay, 3),
        "bytes_per_insert": parts,
        "insert_distance_computations": stats["counters"]["insert"]["distance_computations"]
        // max(1, n_insert),
        "replica_distance_computations": replica_work,
    }
    plot = out / "demo_recall_qps.png"
    _plot(curves, plot, summary)
    summary["plot"] = str(plot)
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _warm_up(dim: int, seed: int) -> None:
    """Run every code path once on a tiny index, so that no timing includes JIT compiles."""
    x, q = gmm_dataset(300, 256, dim, n_clusters=5, seed=seed)
    a = VamanaIndex(dim, metric="l2", R=32, L=64, alpha=1.2, seed=seed)
    log = a.build(x[:200])
    log += [a.insert(i, x[i]) for i in range(200, 300)]
    log += [a.delete(i) for i in range(0, 300, 3)]
    log += a.consolidate()
    b = VamanaIndex(dim, metric="l2", R=32, L=64, alpha=1.2, seed=seed)
    b.apply(log[:1])
    b.apply(log[1:2])
    b.apply([EdgeDelta.from_bytes(d.to_bytes()) for d in log[2:]])
    a.search(q, k=10)  # a batch: the parallel kernel when there are threads
    a.search(q[:4], k=10)
    a.search(q[0], k=10)


def _plot(curves: dict[str, list[tuple[float, float]]], path: Path, summary: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for (name, pts), style in zip(curves.items(), ("o-", "x--"), strict=True):
        r, q = zip(*pts, strict=True)
        ax.plot(r, q, style, label=name)
    ax.set_xlabel("recall@10")
    ax.set_ylabel("queries per second (one thread)")
    ax.set_yscale("log")
    ax.set_title(f"graphrep demo: {summary['n']}+{summary['inserted']} x {summary['dim']} gmm, "
                 f"{summary['deleted']} deleted")
    ax.grid(True, alpha=0.3)
    ax.legend(title=f"digests equal: {summary['digests_equal']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

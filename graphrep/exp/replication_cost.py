"""What replicating edge deltas costs against replaying inserts, as the index grows.

A cell: three replicas start from the same index of ``initial`` Gaussian-mixture
vectors (a bootstrap snapshot), then a client inserts ``writes`` more at write concern
``majority``, in the simulator, under ``nemesis``, with one replication ``policy``
(``leader``: followers apply the leader's edge deltas; ``replay``: every follower runs
each insert; ``snapshot``: followers install the leader's whole index periodically).
The same inserts also run on a bare index, one at a time, timed.

Its row: bytes per insert by part (replica-to-replica traffic), replica distance
computations and CPU per insert (applying the log, every replica summed), lag and write
latency percentiles, top-10 agreement, whether the replicas converged with no
acknowledged write lost, the overhead of the simulator plus the protocol over the
leader's own inserts in the same run (``overhead_in_run``) and over the bare inserts
(``overhead_vs_bare``), and the process's peak resident memory during the cluster run
(``peak_rss_mb``, :mod:`.memory`; every cell runs in a process of its own, so this is
the run's alone).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from graphrep.exp.core import Experiment, Profile, register
from graphrep.exp.memory import peak_rss_mb, reset_peak_rss
from graphrep.plotstyle import new_figure, save_all, style

__all__ = ["NEMESES", "POLICIES", "ReplicationCell", "grid", "run", "warm_up"]

POLICIES = ("leader", "replay", "snapshot")
NEMESES = ("none", "partitions")


@dataclass(frozen=True)
class ReplicationCell:
    policy: str = "leader"
    nemesis: str = "none"
    initial: int = 100_000
    writes: int = 20_000
    dim: int = 128
    R: int = 64
    L: int = 100
    queries: int = 200
    apply_batch: int = 32
    max_inflight: int = 0


def warm_up(dim: int) -> None:
    """Load every kernel the runs use (insert, delta encode/decode, apply, record hashes,
    snapshots) once, so that no timing pays Numba's cache loading or compilation."""
    from graphrep.ann import EdgeDelta, VamanaIndex

    rng = np.random.default_rng(0)
    a, b = VamanaIndex(dim, R=8, L=16), VamanaIndex(dim, R=8, L=16)
    deltas = a.build(rng.random((64, dim), dtype=np.float32))
    deltas += [a.insert(1000 + i, rng.random(dim, dtype=np.float32)) for i in range(4)]
    deltas.append(a.delete(1000))
    b.apply([EdgeDelta.from_bytes(d.to_bytes()) for d in deltas])
    VamanaIndex(dim, R=8, L=16).apply_bytes([d.to_bytes() for d in deltas])  # followers' path
    a.record_hashes()
    VamanaIndex.from_bytes(a.to_bytes()).search(rng.random(dim, dtype=np.float32), k=5)


def run(cell: ReplicationCell, seed: int) -> list[dict[str, Any]]:
    from graphrep.ann import VamanaIndex
    from graphrep.cluster import ClusterConfig, run_cluster
    from graphrep.datasets import gmm_dataset

    base = dict(nodes=3, writes=cell.writes, deletes=0, dim=cell.dim, initial=cell.initial,
                queries=cell.queries, seed=seed, concern="majority",
                write_interval_ns=1_000_000, max_outstanding=64)
    replica = dict(R=cell.R, L=cell.L, snapshot_every=0, apply_batch=cell.apply_batch,
                   snapshot_ticks=500, max_inflight=cell.max_inflight, policy=cell.policy)
    cfg = ClusterConfig(nemesis=cell.nemesis, **base, replica=replica)
    n_base = cell.initial + cell.writes
    X, _ = gmm_dataset(n_base, 1, cell.dim, n_clusters=16 if n_base < 20_000 else 100,
                       seed=seed)
    X = np.ascontiguousarray(X[:n_base], dtype=np.float32)
    index = cfg.replica_config(("r0",)).index()
    t0 = time.perf_counter()
    index.build(X[: cell.initial], np.arange(cell.initial))
    build_s = time.perf_counter() - t0
    bootstrap = index.to_bytes()
    warm_up(cell.dim)
    bare = VamanaIndex.from_bytes(bootstrap)
    t0 = time.process_time()
    for i in range(cell.initial, n_base):
        bare.insert(i, X[i])
    bare_cpu = time.process_time() - t0
    del bare, index, X  # the cluster run regenerates the vectors: not counted twice
    reset_peak_rss()
    s = run_cluster(cfg, bootstrap=bootstrap)
    peak = peak_rss_mb()
    inserts = max(s["acked_writes"], 1)
    apply_cpu = sum(s["apply_cpu_s"].values())
    op_cpu = sum(s["op_cpu_s"].values())
    row: dict[str, Any] = {
        "converged": s["converged"], "lost_writes": s["lost_writes"],
        "acked_writes": s["acked_writes"], "build_s": round(build_s, 1),
        "replica_distance_computations_per_insert":
            round(s["replica_distance_computations_per_insert"], 1),
        "replica_cpu_us_per_insert": round(1e6 * apply_cpu / inserts, 1),
        "bare_insert_us": round(1e6 * bare_cpu / max(cell.writes, 1), 1),
        "topk_agreement": s["topk_agreement"],
        "overhead_in_run": round((s["sim_cpu_s"] - apply_cpu - op_cpu) / max(op_cpu, 1e-9),
                                 3),
        "overhead_vs_bare": round((s["sim_cpu_s"] - apply_cpu - bare_cpu) / max(bare_cpu, 1e-9),
                                  3),
        "leader_insert_over_bare": round(op_cpu / max(bare_cpu, 1e-9), 3),
        "sim_cpu_s": s["sim_cpu_s"], "apply_cpu_s": round(apply_cpu, 3),
        "op_cpu_s": round(op_cpu, 3), "bare_cpu_s": round(bare_cpu, 3),
        "recall_at_10_min": min(s["recall_at_10"].values()),
        "peak_rss_mb": peak,
        "trace_hash": s["trace_hash"],
    }
    for part, v in s["bytes_per_insert"].items():
        row[f"bytes_per_insert.{part}"] = round(v, 1)
    for q, v in s["lag_ms"].items():
        row[f"lag_ms.{q}"] = round(v, 2)
    for q, v in s["write_latency_ms"].items():
        row[f"write_latency_ms.{q}"] = round(v, 2)
    return [row]


def plot(frame: Any, out: Path) -> list[Path]:
    """Bytes and replica CPU per insert against the index size, per policy (no faults;
    median over seeds, band from the lowest to the highest seed)."""
    with style():
        fig = new_figure(11, 4)
        ax1, ax2 = fig.subplots(1, 2)
        calm = frame[frame["cfg.nemesis"] == "none"]
        for policy, g in calm.groupby("cfg.policy"):
            by = g.groupby("cfg.initial")
            n = list(by.groups)
            for ax, col in ((ax1, "bytes_per_insert.total"),
                            (ax2, "replica_cpu_us_per_insert")):
                ax.plot(n, by[col].median(), "o-", label=policy)
                ax.fill_between(n, by[col].min(), by[col].max(), alpha=0.2)
        for ax, label in ((ax1, "bytes per insert (replica traffic)"),
                          (ax2, "replica CPU per insert (µs, all replicas)")):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("index size before the inserts (vectors)")
            ax.set_ylabel(label)
            ax.legend()
        return save_all(fig, out / "replication_cost")


def grid(sizes: tuple[int, ...], writes: int, dim: int, R: int, L: int, **kw: Any
         ) -> list[ReplicationCell]:
    """Every (size, policy, nemesis) cell; ``kw``: the cells' other settings."""
    return [ReplicationCell(policy=p, nemesis=n, initial=i, writes=writes, dim=dim, R=R, L=L,
                            **kw)
            for i in sizes for n in NEMESES for p in POLICIES]


EXPERIMENT = register(Experiment(
    "replication_cost", ReplicationCell, run,
    profiles={"tiny": Profile(lambda: grid((300, 600), 60, 8, 8, 16), (7,)),
              "small": Profile(lambda: grid((2_000, 5_000), 1_000, 64, 32, 64), (7,)),
              "full": Profile(lambda: grid((10_000, 100_000, 1_000_000), 20_000, 128, 64,
                                            100), (7, 8))},
    description="bytes and replica CPU per insert of leader, replay and snapshot, as the "
                "index grows",
    plot=plot,
    fresh_process=True,  # each cell's peak_rss_mb is its own
    caption="Three replicas, inserts at write concern majority in the simulator; bytes "
            "and replica CPU per insert by policy, no faults; median over seeds, band "
            "min to max."))

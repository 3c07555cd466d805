"""What does replicating edge deltas save, and what does it cost, against replaying inserts?

Three replicas start from the same index (``--initial`` vectors of a Gaussian mixture,
built once and handed to every replica as a bootstrap snapshot); a client then inserts
``--writes`` more vectors at write concern ``majority``, in the simulator, under two
nemeses (``none`` and ``partitions``), once per policy:

- ``leader``: the leader ships edge deltas; followers apply them (graphrep's design);
- ``replay``: the leader ships the operations; every follower runs the insert itself
  (what Qdrant, Weaviate and Milvus do);
- ``snapshot``: followers store the operations (for acknowledgements) and install the
  leader's whole index, shipped every 5 virtual seconds.

Per run: bytes per insert by part (replica-to-replica traffic only), replica distance
computations and replica CPU seconds per insert (time spent applying the log on every
replica, summed), replication lag and write latency percentiles, top-10 agreement across
replicas, whether the replicas converged with no acknowledged write lost, and the
process's peak resident memory during the run (``peak_rss_mb``; Linux: VmHWM, reset
before each run, so each run's own peak; the top-level ``peak_rss_mb`` is the largest).

Overhead of the simulator plus the protocol, two ways:

- ``overhead_in_run`` (the target's figure): (CPU of the simulated run until convergence
  - replica apply CPU - the leader's own inserts) / the leader's own inserts, all timed
  inside the same run. Numerator and denominator interleave at the scale of one insert,
  so a machine that slows down or speeds up during the run moves both alike.
- ``overhead_vs_bare``: the same, against the same inserts run beforehand on a bare
  index, one at a time. On a shared machine the two timings are seconds apart and can
  differ by 30% on their own; ``leader_insert_over_bare`` shows by how much they did
  (above 1 also when the other replicas' indexes, in the same process, evict the
  leader's from the cache).

Set-up (loading the common index into each replica) and the final recall computation
are outside both.

The goals these figures are read against: replica CPU per insert <= 2% of replay's;
bytes per insert <= 2x replay's; simulator + protocol overhead <= 25% over the bare
inserts.

Results go to ``experiments/results/replication_cost.json`` and ``.png`` (with
``--max-inflight N``, ``replication_cost_inflightN``); the last line of output is one
JSON object with the figures and the leader/replay ratios.

Usage::

    python experiments/replication_cost.py                 # 100k initial, 20k inserts
    python experiments/replication_cost.py --quick         # 5k initial, 1k inserts
    python experiments/replication_cost.py --max-inflight 1   # with flow control
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
import one_thread  # noqa: E402,F401  (pins BLAS/numba threads before numpy work)
from bench_common import (  # noqa: E402
    GRAPH_OPTIONS,
    add_options,
    peak_rss_mb,
    reset_peak_rss,
)

from graphrep.ann import VamanaIndex  # noqa: E402
from graphrep.cluster import ClusterConfig, run_cluster  # noqa: E402
from graphrep.datasets import gmm_dataset  # noqa: E402
from graphrep.exp.replication_cost import warm_up  # noqa: E402

RESULTS = ROOT / "results"
POLICIES = ("leader", "replay", "snapshot")
"""The one-group policies (the active-active ones: experiments/active_active.py). The
same runs as cells of a sweep: ``graphrep exp run replication_cost``."""

NEMESES = ("none", "partitions")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--initial", type=int, default=100_000)
    p.add_argument("--writes", type=int, default=20_000)
    p.add_argument("--dim", type=int, default=128)
    add_options(p, GRAPH_OPTIONS)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--apply-batch", type=int, default=32,
                   help="followers apply committed entries in batches of this many (and at "
                   "every 10 ms tick): one kernel call for many deltas")
    p.add_argument("--max-inflight", type=int, default=0,
                   help="flow control: Append messages in flight per follower (0: no "
                   "limit, the protocol's default); results go to replication_cost_"
                   "inflight<N>.json/.png")
    p.add_argument("--quick", action="store_true", help="5k initial, 1k inserts, d=64")
    args = p.parse_args(argv)
    if args.quick:
        args.initial, args.writes, args.dim, args.R, args.L = 5_000, 1_000, 64, 32, 64
    base = dict(nodes=3, writes=args.writes, deletes=0, dim=args.dim, initial=args.initial,
                queries=args.queries, seed=args.seed, concern="majority",
                write_interval_ns=1_000_000, max_outstanding=64)
    replica = dict(R=args.R, L=args.L, snapshot_every=0, apply_batch=args.apply_batch,
                   snapshot_ticks=500, max_inflight=args.max_inflight)

    # the common starting index, built once
    probe = ClusterConfig(**base, replica=replica)
    rcfg = probe.replica_config(("r0",))
    n_base = args.initial + args.writes
    X, _ = gmm_dataset(n_base, 1, args.dim, n_clusters=16 if n_base < 20_000 else 100,
                       seed=args.seed)
    X = np.ascontiguousarray(X[:n_base], dtype=np.float32)
    t0 = time.perf_counter()
    index = rcfg.index()
    index.build(X[: args.initial], np.arange(args.initial))
    build_s = time.perf_counter() - t0
    bootstrap = index.to_bytes()
    print(f"built the common index of {args.initial} x {args.dim} in {build_s:.1f} s",
          flush=True)

    warm_up(args.dim)
    # the same inserts on a bare index
    bare = VamanaIndex.from_bytes(bootstrap)
    t0 = time.process_time()
    for i in range(args.initial, n_base):
        bare.insert(i, X[i])
    bare_cpu = time.process_time() - t0
    bare_dist = bare.stats()["counters"]["insert"]["distance_computations"]
    print(f"bare index: {args.writes} inserts in {bare_cpu:.1f} s CPU "
          f"({1e6 * bare_cpu / args.writes:.0f} us each)", flush=True)
    assert probe.initial == args.initial

    runs: dict[str, dict] = {}
    for nemesis in NEMESES:
        for policy in POLICIES:
            cfg = ClusterConfig(nemesis=nemesis, **base, replica={**replica, "policy": policy})
            reset_peak_rss()
            t0 = time.process_time()
            s = run_cluster(cfg, bootstrap=bootstrap)
            run_peak = peak_rss_mb()
            total_cpu = time.process_time() - t0
            inserts = max(s["acked_writes"], 1)
            apply_cpu = sum(s["apply_cpu_s"].values())
            op_cpu = sum(s["op_cpu_s"].values())  # the leader's inserts, inside the run
            row = {
                "converged": s["converged"], "lost_writes": s["lost_writes"],
                "acked_writes": s["acked_writes"], "faults": s["faults"],
                "bytes_per_insert": {k: round(v, 1) for k, v in s["bytes_per_insert"].items()},
                "replica_distance_computations_per_insert":
                    round(s["replica_distance_computations_per_insert"], 1),
                "replica_cpu_us_per_insert": round(1e6 * apply_cpu / inserts, 1),
                "lag_ms": {k: round(v, 2) for k, v in s["lag_ms"].items()},
                "write_latency_ms": {k: round(v, 2) for k, v in s["write_latency_ms"].items()},
                "topk_agreement": s["topk_agreement"],
                "recall_at_10": s["recall_at_10"],
                "cpu_s": {"total": round(total_cpu, 2), "apply": round(apply_cpu, 2),
                          "leader_ops": round(op_cpu, 2), "sim": s["sim_cpu_s"],
                          **s["cpu_s"]},
                "overhead_vs_bare": round((s["sim_cpu_s"] - apply_cpu - bare_cpu) / bare_cpu, 3),
                "overhead_in_run": round((s["sim_cpu_s"] - apply_cpu - op_cpu) / op_cpu, 3),
                "leader_insert_over_bare": round(op_cpu / bare_cpu, 3),
                "trace_hash": s["trace_hash"],
                "peak_rss_mb": run_peak,
            }
            runs[f"{policy}/{nemesis}"] = row
            print(f"{policy:7s} {nemesis:10s} converged={row['converged']} lost="
                  f"{row['lost_writes']} bytes/insert={row['bytes_per_insert']['total']:.0f} "
                  f"replica dist/insert={row['replica_distance_computations_per_insert']:.0f}"
                  f" replica CPU/insert={row['replica_cpu_us_per_insert']:.0f} us "
                  f"lag p50/p99={row['lag_ms']['p50']:.1f}/{row['lag_ms']['p99']:.1f} ms "
                  f"agreement={row['topk_agreement']:.3f} "
                  f"overhead={row['overhead_in_run']:.2f} in run, "
                  f"{row['overhead_vs_bare']:.2f} vs bare; peak RSS {run_peak:.0f} MB",
                  flush=True)

    ratios = {}
    for nemesis in NEMESES:
        a, b = runs[f"leader/{nemesis}"], runs[f"replay/{nemesis}"]
        ratios[nemesis] = {
            "replica_cpu": round(a["replica_cpu_us_per_insert"]
                                 / max(b["replica_cpu_us_per_insert"], 1e-9), 4),
            "bytes": round(a["bytes_per_insert"]["total"] / b["bytes_per_insert"]["total"], 3),
        }
    result = {
        "workload": {"initial": args.initial, "writes": args.writes, "dim": args.dim,
                     "R": args.R, "L": args.L, "replicas": 3, "concern": "majority",
                     "seed": args.seed, "apply_batch": args.apply_batch,
                     "max_inflight": args.max_inflight},
        "build_s": round(build_s, 1),
        "bare_insert_us": round(1e6 * bare_cpu / args.writes, 1),
        "bare_distance_computations_per_insert": round(bare_dist / args.writes, 1),
        "runs": runs,
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs.values()),
        "ratios_leader_over_replay": ratios,
        "targets": {
            "replica_cpu_at_most_2pct": all(r["replica_cpu"] <= 0.02 for r in ratios.values()),
            "bytes_at_most_2x": all(r["bytes"] <= 2.0 for r in ratios.values()),
            "overhead_at_most_25pct": runs["leader/none"]["overhead_in_run"] <= 0.25,
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "replication_cost" + (f"_inflight{args.max_inflight}" if args.max_inflight else "")
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(runs, RESULTS / f"{name}.png")
    print(json.dumps(result))
    return 0


def plot(runs: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(runs)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    bottom = np.zeros(len(names))
    for part in ("vector", "edges", "metadata", "snapshot", "repair"):
        vals = np.array([runs[n]["bytes_per_insert"][part] for n in names])
        ax1.bar(names, vals, bottom=bottom, label=part)
        bottom += vals
    ax1.set_ylabel("bytes per insert (replica traffic)")
    ax1.set_yscale("log")
    ax1.legend()
    ax2.bar(names, [runs[n]["replica_cpu_us_per_insert"] for n in names])
    ax2.set_ylabel("replica CPU per insert (us, all replicas)")
    ax2.set_yscale("log")
    for ax in (ax1, ax2):
        ax.tick_params(axis="x", rotation=20)
    fig.suptitle("edge deltas (leader) vs replayed inserts (replay)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())

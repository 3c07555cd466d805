"""What does replicating edge deltas save, and what does it cost, against replaying inserts?

An entry point over ``graphrep exp run replication_cost``: its six runs are cells of
that experiment (:mod:`graphrep.exp.replication_cost`), run one after the other through
:func:`graphrep.exp.run_sweep` and stored under ``--root``, so a rerun reuses the cells
it finished (``--force`` runs them again).

Three replicas start from the same index (``--initial`` vectors of a Gaussian mixture,
handed to every replica as a bootstrap snapshot); a client then inserts
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
before the cluster run, so each run's own peak; the top-level ``peak_rss_mb`` is the
largest).

Overhead of the simulator plus the protocol, two ways:

- ``overhead_in_run`` (the target's figure): (CPU of the simulated run until convergence
  - replica apply CPU - the leader's own inserts) / the leader's own inserts, all timed
  inside the same run. Numerator and denominator interleave at the scale of one insert,
  so a machine that slows down or speeds up during the run moves both alike.
- ``overhead_vs_bare``: the same, against the same inserts run beforehand on a bare
  index, one at a time, in the same cell. On a shared machine the two timings are
  seconds apart and can differ by 30% on their own; ``leader_insert_over_bare`` shows by
  how much they did (above 1 also when the other replicas' indexes, in the same process,
  evict the leader's from the cache).

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
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
import one_thread  # noqa: E402,F401  (pins BLAS/numba threads before numpy work)
from bench_common import GRAPH_OPTIONS, add_options  # noqa: E402

from graphrep.exp import cell_key, load, run_sweep  # noqa: E402
from graphrep.exp.replication_cost import NEMESES, POLICIES, grid  # noqa: E402

RESULTS = ROOT / "results"


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
    p.add_argument("--root", type=Path, default=RESULTS / "exp",
                   help="where the sweep's cells are stored")
    p.add_argument("--force", action="store_true", help="run finished cells again")
    args = p.parse_args(argv)
    if args.quick:
        args.initial, args.writes, args.dim, args.R, args.L = 5_000, 1_000, 64, 32, 64
    cells = grid((args.initial,), args.writes, args.dim, args.R, args.L,
                 queries=args.queries, apply_batch=args.apply_batch,
                 max_inflight=args.max_inflight)
    # one after the other: each cell times its own runs
    report = run_sweep("replication_cost", cells, (args.seed,), root=args.root, jobs=1,
                       force=args.force)
    if report.failed:
        print(json.dumps(report.to_json()), file=sys.stderr)
        return 1
    frame = load("replication_cost", args.root)
    keys = {cell_key("replication_cost", c, args.seed): c for c in cells}
    runs: dict[str, dict[str, Any]] = {}
    for _, r in frame[frame["cell"].isin(list(keys))].iterrows():
        c = keys[r["cell"]]
        runs[f"{c.policy}/{c.nemesis}"] = run_row(r)
    runs = {f"{pol}/{nem}": runs[f"{pol}/{nem}"] for nem in NEMESES for pol in POLICIES}
    for name, row in runs.items():
        print(f"{name:20s} converged={row['converged']} lost={row['lost_writes']} "
              f"bytes/insert={row['bytes_per_insert']['total']:.0f} "
              f"replica dist/insert={row['replica_distance_computations_per_insert']:.0f}"
              f" replica CPU/insert={row['replica_cpu_us_per_insert']:.0f} us "
              f"lag p50/p99={row['lag_ms']['p50']:.1f}/{row['lag_ms']['p99']:.1f} ms "
              f"agreement={row['topk_agreement']:.3f} "
              f"overhead={row['overhead_in_run']:.2f} in run, "
              f"{row['overhead_vs_bare']:.2f} vs bare; peak RSS {row['peak_rss_mb']:.0f} MB")

    ratios = {}
    for nemesis in NEMESES:
        a, b = runs[f"leader/{nemesis}"], runs[f"replay/{nemesis}"]
        ratios[nemesis] = {
            "replica_cpu": round(a["replica_cpu_us_per_insert"]
                                 / max(b["replica_cpu_us_per_insert"], 1e-9), 4),
            "bytes": round(a["bytes_per_insert"]["total"] / b["bytes_per_insert"]["total"], 3),
        }
    first = frame[frame["cell"].isin(list(keys))].iloc[0]
    result = {
        "workload": {"initial": args.initial, "writes": args.writes, "dim": args.dim,
                     "R": args.R, "L": args.L, "replicas": 3, "concern": "majority",
                     "seed": args.seed, "apply_batch": args.apply_batch,
                     "max_inflight": args.max_inflight},
        "sweep": report.to_json(),
        "build_s": float(first["build_s"]),
        "bare_insert_us": float(first["bare_insert_us"]),
        "runs": runs,
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs.values()),
        "ratios_leader_over_replay": ratios,
        "targets": {
            "replica_cpu_at_most_2pct": all(r["replica_cpu"] <= 0.02 for r in ratios.values()),
            "bytes_at_most_1_5x": all(r["bytes"] <= 1.5 for r in ratios.values()),
            "overhead_at_most_25pct": runs["leader/none"]["overhead_in_run"] <= 0.25,
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "replication_cost" + (f"_inflight{args.max_inflight}" if args.max_inflight else "")
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(runs, RESULTS / f"{name}.png")
    print(json.dumps(result))
    return 0


def run_row(r: Any) -> dict[str, Any]:
    """One stored row as the report shows a run (parts and percentiles nested)."""
    def nested(prefix: str) -> dict[str, float]:
        return {c.split(".", 1)[1]: float(r[c]) for c in r.index
                if c.startswith(prefix + ".") and r[c] == r[c]}

    return {
        "converged": bool(r["converged"]), "lost_writes": int(r["lost_writes"]),
        "acked_writes": int(r["acked_writes"]),
        "bytes_per_insert": nested("bytes_per_insert"),
        "replica_distance_computations_per_insert":
            float(r["replica_distance_computations_per_insert"]),
        "replica_cpu_us_per_insert": float(r["replica_cpu_us_per_insert"]),
        "lag_ms": nested("lag_ms"), "write_latency_ms": nested("write_latency_ms"),
        "topk_agreement": float(r["topk_agreement"]),
        "recall_at_10_min": float(r["recall_at_10_min"]),
        "cpu_s": {"apply": float(r["apply_cpu_s"]), "leader_ops": float(r["op_cpu_s"]),
                  "sim": float(r["sim_cpu_s"]), "bare": float(r["bare_cpu_s"])},
        "overhead_vs_bare": float(r["overhead_vs_bare"]),
        "overhead_in_run": float(r["overhead_in_run"]),
        "leader_insert_over_bare": float(r["leader_insert_over_bare"]),
        "peak_rss_mb": float(r["peak_rss_mb"]),
        "trace_hash": r["trace_hash"],
    }


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

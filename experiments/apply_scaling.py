"""How does a follower's apply cost grow with the index, against the insert it replaces?

For each index size n: build an n-vector Gaussian-mixture index (d=128, R=64, L=100 by
default), then insert ``--inserts`` more vectors on a copy of it (a leader), keeping
each insert's delta as wire bytes. Timed, on fresh copies of the same index (process
CPU time, median of ``--repeats``):

- ``insert``: the leader's inserts, one at a time: what a ``replay`` follower spends
  per insert (it runs the same insert);
- ``apply``: a follower applying the deltas from their bytes in batches of
  ``--batch`` (``VamanaIndex.apply_bytes``): what a ``leader``-policy follower spends.

Also counted per delta: the node records it changes and the list values (neighbour ids)
it carries, since the apply kernel's work is proportional to them. The ratio
apply/insert is the per-follower version of the replication benchmark's replica-CPU
ratio (experiments/replication_cost.py; issue 4's target is 2%).

Results go to ``experiments/results/apply_scaling.json`` and ``.png``; the last line
of output is one JSON object.

Usage::

    python experiments/apply_scaling.py            # n = 10k, 30k, 100k (about 4 minutes)
    python experiments/apply_scaling.py --quick    # n = 2k, 5k, 10k
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
import one_thread  # noqa: E402,F401  (pins BLAS/numba threads before numpy work)
from bench_common import GRAPH_OPTIONS, add_options  # noqa: E402

from graphrep.ann import EdgeDelta, VamanaIndex  # noqa: E402
from graphrep.datasets import gmm_dataset  # noqa: E402

RESULTS = ROOT / "results"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    p.add_argument("--inserts", type=int, default=2_000)
    p.add_argument("--dim", type=int, default=128)
    add_options(p, GRAPH_OPTIONS)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--quick", action="store_true", help="n = 2k, 5k, 10k; 500 inserts")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.inserts = [2_000, 5_000, 10_000], 500
    warm_up(args.dim)
    rows = []
    for n in args.sizes:
        X, _ = gmm_dataset(n + args.inserts, 1, args.dim, n_clusters=100, seed=args.seed)
        X = np.ascontiguousarray(X[: n + args.inserts], dtype=np.float32)
        index = VamanaIndex(args.dim, R=args.R, L=args.L, seed=args.seed)
        t0 = time.perf_counter()
        index.build(X[:n], np.arange(n))
        build_s = time.perf_counter() - t0
        base = index.to_bytes()
        del index
        insert_s, deltas = [], []
        for _ in range(args.repeats):
            leader = VamanaIndex.from_bytes(base)
            t0 = time.process_time()
            out = [leader.insert(i, X[i]) for i in range(n, n + args.inserts)]
            insert_s.append(time.process_time() - t0)
            deltas = [d.to_bytes() for d in out]
        apply_s = []
        for _ in range(args.repeats):
            follower = VamanaIndex.from_bytes(base)
            t0 = time.process_time()
            for k in range(0, len(deltas), args.batch):
                follower.apply_bytes(deltas[k : k + args.batch])
            apply_s.append(time.process_time() - t0)
        if follower.digest() != leader.digest():
            raise SystemExit(f"n={n}: the follower's digest differs from the leader's")
        decoded = [EdgeDelta.from_bytes(b) for b in deltas]
        records = float(np.mean([d.n_records for d in decoded]))
        values = float(np.mean([d.values.shape[0] for d in decoded]))
        us_insert = 1e6 * statistics.median(insert_s) / args.inserts
        us_apply = 1e6 * statistics.median(apply_s) / args.inserts
        row = {
            "n": n, "build_s": round(build_s, 1),
            "insert_us": round(us_insert, 1), "apply_us": round(us_apply, 1),
            "apply_over_insert": round(us_apply / us_insert, 4),
            "records_per_delta": round(records, 1), "values_per_delta": round(values, 1),
            "apply_ns_per_record_or_value": round(1e3 * us_apply / (records + values), 1),
            "bytes_per_delta": round(float(np.mean([len(b) for b in deltas])), 1),
        }
        rows.append(row)
        print(f"n={n:>7}: insert {us_insert:7.1f} us, apply {us_apply:5.1f} us "
              f"(ratio {row['apply_over_insert']:.3f}); a delta changes {records:.0f} "
              f"records carrying {values:.0f} values: "
              f"{row['apply_ns_per_record_or_value']:.0f} ns of apply per record or value",
              flush=True)
    result = {"workload": {"dim": args.dim, "R": args.R, "L": args.L, "inserts": args.inserts,
                           "batch": args.batch, "repeats": args.repeats, "seed": args.seed},
              "sizes": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "apply_scaling.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(rows, RESULTS / "apply_scaling.png")
    print(json.dumps(result))
    return 0


def warm_up(dim: int) -> None:
    """Compile or load every kernel used here once, outside the timings."""
    rng = np.random.default_rng(0)
    a = VamanaIndex(dim, R=8, L=16)
    a.build(rng.random((64, dim), dtype=np.float32))
    b = VamanaIndex.from_bytes(a.to_bytes())
    d = [a.insert(1000 + i, rng.random(dim, dtype=np.float32)).to_bytes() for i in range(3)]
    b.apply_bytes(d)
    a.digest()


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["n"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(n, [r["insert_us"] for r in rows], "o-", label="insert (a replay follower)")
    ax1.plot(n, [r["apply_us"] for r in rows], "o-", label="apply delta (a leader follower)")
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("index size (vectors)")
    ax1.set_ylabel("CPU us per insert, one follower")
    ax1.legend()
    ax2.plot(n, [100 * r["apply_over_insert"] for r in rows], "o-")
    ax2.axhline(2.0, color="grey", linestyle="--", label="issue 4's target (2%)")
    ax2.set_xscale("log")
    ax2.set_xlabel("index size (vectors)")
    ax2.set_ylabel("apply / insert (%)")
    ax2.set_ylim(bottom=0)
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())

"""Index writes on a live 3-process cluster against the leader's bare insert rate.

What it measures (one run, fsync on, every number from this run):

- bare: the same index in this process, ``--writes`` inserts one at a time
  (``VamanaIndex.insert``): inserts per second, the rate replication is held to;
- live: three node processes (``graphrep.net.local``), every store seeded with the
  same ``--n`` x ``--dim`` index as a snapshot, then ``--writes`` inserts at
  ``majority`` through one client with 1 and ``--clients`` writes outstanding:
  writes/s, write latency p50/p99, each node's commit time (SQLite transaction with
  its fsync) p50/p99 from its own status, and each node's CPU per write (user + system
  time of its process, from /proc, over the phase), and the replication lag: the
  leader's histogram of the time from an entry's append to a follower acknowledging it
  (``graphrep_replication_lag_seconds``, scraped before and after the phase), as its
  buckets, count and p50/p99 (interpolated within a bucket).

Goals it reports against: writes/s >= 0.8 x the bare insert rate (replication costs at
most 20%), and a follower's CPU per write <= 5% of the leader's.

Outputs in ``--out`` (default ``experiments/results``): ``live_bench.json`` and
``live_bench.png``; the LAST line of stdout is one JSON object.

Examples::

    .venv/bin/python experiments/live_bench.py --quick
    .venv/bin/python experiments/live_bench.py --n 100000 --dim 128 --writes 2000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import trio
from bench_common import cpu_seconds

from graphrep.ann import VamanaIndex
from graphrep.datasets import gaussian_mixture
from graphrep.net.client import Client
from graphrep.net.config import ClusterFile
from graphrep.net.load import drive, plan
from graphrep.net.local import LocalCluster
from graphrep.net.store import SQLiteStore
from graphrep.net.top import histograms, quantile, window


def lag_buckets(cfg: ClusterFile, leader: str) -> dict[str, Any] | None:
    """The leader's replication-lag histogram now (cumulative buckets; None if its
    endpoint did not answer)."""
    url = cfg.nodes[leader].metrics_url
    return histograms(url)["lag"] if url else None


def lag_summary(buckets: list[list[float]] | None) -> dict[str, Any]:
    """A phase's lag buckets (:func:`graphrep.net.top.window` of two scrapes) with their
    count and p50/p99 in ms; empty without observations."""
    if not buckets or buckets[-1][1] <= 0:
        return {}
    return {"buckets": buckets, "count": int(buckets[-1][1]),
            "p50_ms": round(1e3 * (quantile(0.5, buckets) or 0.0), 3),
            "p99_ms": round(1e3 * (quantile(0.99, buckets) or 0.0), 3)}


def seed_stores(cfg: ClusterFile, data: bytes, end: int) -> None:
    """Every node's store holds ``data`` (an index's bytes) as the snapshot of a log of
    ``end`` committed entries of term 1: the nodes start from the same index."""
    for node in cfg.nodes:
        store = SQLiteStore(cfg.node_dir(node) / "store.sqlite3")
        for key, value in (("snapshot", (end, 1, data)), ("log_start", end),
                           ("start_term", 1), ("commit", end), ("term", 1)):
            store.put((0, key), value)
        store.request_sync()
        store.sync_now()
        store.close()


def bare_rate(index_bytes: bytes, X: np.ndarray, first: int) -> float:
    """Inserts per second into a copy of the index, one at a time, in this process."""
    copy = VamanaIndex.from_bytes(index_bytes)
    copy.insert(first + len(X) + 1, X[0])  # warm (compiled already; the copy's scratch)
    t0 = time.perf_counter()
    for i, x in enumerate(X):
        copy.insert(first + i, x)
    return len(X) / (time.perf_counter() - t0)


async def phase(cfg: ClusterFile, ops: list, concurrency: int, pids: dict[str, int]
                ) -> dict[str, Any]:
    async with Client(cfg, timeout=30.0, history=True) as client:
        status = await client.status()
        leader = next(n for n, s in status["nodes"].items()
                      if s.get("up") and s["shards"][0]["role"] == "leader")
        lag0 = await trio.to_thread.run_sync(lag_buckets, cfg, leader)
        before = {n: cpu_seconds(p) for n, p in pids.items()}
        summary = await drive(client, ops, concurrency=concurrency)
        after = {n: cpu_seconds(p) for n, p in pids.items()}
        await trio.sleep(0.5)  # the last acknowledgements reach the leader
        status = await client.status()
        lag1 = await trio.to_thread.run_sync(lag_buckets, cfg, leader)
    roles = {n: s["shards"][0]["role"] for n, s in status["nodes"].items() if s.get("up")}
    acked = max(summary["acknowledged"], 1)
    return {
        **{k: summary[k] for k in ("acknowledged", "failed", "writes_per_s",
                                   "latency_ms_p50", "latency_ms_p99")},
        "nodes": {n: {"role": roles.get(n, "down"),
                      "cpu_ms_per_write": round((after[n] - before[n]) * 1e3 / acked, 3),
                      "commit_ms_p50": status["nodes"][n]["store"]["commit_ms_p50"],
                      "commit_ms_p99": status["nodes"][n]["store"]["commit_ms_p99"]}
                  for n in sorted(pids)},
        "lag": lag_summary(window(lag1, lag0)),
    }


def plot(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    labels = ["bare insert"] + [f"live, {c} outstanding" for c in result["phases"]]
    rates = [result["bare_inserts_per_s"]] + [p["writes_per_s"]
                                               for p in result["phases"].values()]
    a.bar(labels, rates, color=["grey"] + ["tab:blue"] * len(result["phases"]))
    a.set_ylabel("writes / s")
    a.set_title(f"{result['n']} x {result['dim']} index, majority, fsync on")
    a.tick_params(axis="x", labelrotation=15)
    width = 0.35
    for i, p in enumerate(result["phases"].values()):
        leader = [v["cpu_ms_per_write"] for v in p["nodes"].values() if v["role"] == "leader"]
        follower = [v["cpu_ms_per_write"] for v in p["nodes"].values()
                    if v["role"] == "follower"]
        b.bar(i - width / 2, leader[0] if leader else 0, width, color="tab:red",
              label="leader" if i == 0 else None)
        b.bar(i + width / 2, float(np.mean(follower)) if follower else 0, width,
              color="tab:green", label="follower (mean)" if i == 0 else None)
    b.set_xticks(range(len(result["phases"])),
                 [f"{c} outstanding" for c in result["phases"]])
    b.set_ylabel("CPU ms per write")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000, help="vectors in the index")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--writes", type=int, default=2000, help="inserts per phase")
    p.add_argument("--clients", type=int, default=16, help="writes outstanding, phase 2")
    p.add_argument("--max-inflight", type=int, default=0,
                   help="the protocol's max_inflight (0: one Append per write)")
    p.add_argument("--election-ms", type=int, default=3000,
                   help="election timeout (ms; drawn up to twice that): above the node "
                   "loop's longest stall, which grows with the index (a new leader "
                   "rebuilds its index from its snapshot, about 0.5 s at 100k x 128)")
    p.add_argument("--quick", action="store_true", help="a 20k x 64 index, 500 writes")
    p.add_argument("--out", default="experiments/results")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.dim, args.writes = 20_000, 64, 500
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    phases_c = [1, args.clients]
    X = gaussian_mixture(args.n + args.writes * (len(phases_c) + 1), args.dim, seed=0)
    base, extra = X[: args.n], X[args.n:]
    t0 = time.perf_counter()
    index = VamanaIndex(args.dim, "l2")
    index.build(base)
    build_s = time.perf_counter() - t0
    data = index.to_bytes()
    bare = bare_rate(data, extra[: args.writes], first=args.n + 10 * args.writes)
    print(f"built {args.n} x {args.dim} in {build_s:.1f} s; bare insert {bare:.0f}/s",
          file=sys.stderr)

    result: dict[str, Any] = {
        "n": args.n, "dim": args.dim, "writes": args.writes, "build_s": round(build_s, 1),
        "bare_inserts_per_s": round(bare, 1), "max_inflight": args.max_inflight,
        "election_ms": args.election_ms,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "phases": {}}
    ms = 1_000_000
    protocol: dict[str, Any] = {"election_timeout_ns": (args.election_ms * ms,
                                                         2 * args.election_ms * ms)}
    if args.max_inflight:
        protocol["max_inflight"] = args.max_inflight
    with tempfile.TemporaryDirectory(prefix="graphrep-bench-") as tmp, \
            LocalCluster(tmp, nodes=3, dim=args.dim, protocol=protocol, wait=300,
                         prepare=lambda cfg: seed_stores(cfg, data, args.n)) as cluster:
        cfg = cluster.cfg
        pids = {n: int((cluster.dir / f"{n}.pid").read_text()) for n in sorted(cfg.nodes)}
        for k, c in enumerate(phases_c):
            chunk = extra[(k + 1) * args.writes:(k + 2) * args.writes]
            ops = plan(chunk, args.n + (k + 1) * args.writes, 0)
            result["phases"][str(c)] = trio.run(phase, cfg, ops, c, pids)
            print(f"{c} outstanding: {result['phases'][str(c)]['writes_per_s']} writes/s",
                  file=sys.stderr)
    best = max(p["writes_per_s"] for p in result["phases"].values())
    ratios = []
    for ph in result["phases"].values():
        lead = [v["cpu_ms_per_write"] for v in ph["nodes"].values() if v["role"] == "leader"]
        fol = [v["cpu_ms_per_write"] for v in ph["nodes"].values() if v["role"] == "follower"]
        if lead and fol and lead[0] > 0:
            ratios.append(max(fol) / lead[0])
    result["throughput_over_bare"] = round(best / bare, 3)
    result["follower_cpu_over_leader"] = round(max(ratios), 3) if ratios else None
    result["goals"] = {"throughput >= 0.8 x bare": best >= 0.8 * bare,
                       "follower CPU <= 5% of leader": bool(ratios) and max(ratios) <= 0.05}
    result["plot"] = str(plot(result, out / "live_bench.png"))
    (out / "live_bench.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

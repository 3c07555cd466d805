"""Protocol throughput on a live 3-process cluster, beside PySyncObj in the same run.

graphrep: for each payload size (``--sizes``, about 1, 4 and 16 KB), inserts into an
index of the cluster's parameters are recorded once as edge deltas (the dimension is
chosen so that a delta is about that size; the mean size is reported), then written
to a fresh 3-node cluster (``graphrep.net.local``: one process per node, SQLite WAL
with ``synchronous=FULL``, so every node fsyncs before it acknowledges) through
:meth:`graphrep.net.Client.write_deltas` at ``majority``, with 1 and 32 writes
outstanding (``--concurrency``) on one connection to the leader. The leader applies
each recorded delta to its index and logs it as is, the followers apply it: the
protocol and the delta apply are measured, not the search an insert runs. A fresh
cluster per point: a recorded run starts from an empty index. The first ``--warmup``
writes of a point are not measured.

PySyncObj (``experiments/pysyncobj_ref.py``): three local processes of its own virtual
environment, its default settings (which do not fsync), payloads of the same sizes,
the same numbers of calls outstanding. Its calls are issued inside the node processes
(as its own benchmark does), graphrep's by a client process over TCP.

Per point: writes/s, latency p50/p99 (client-side), and for graphrep each node's commit
(transaction + fsync) p50/p99 and CPU ms per write. Goal reported: graphrep's writes/s
>= 1.0 x PySyncObj's at every size and concurrency.

Outputs in ``--out`` (default ``experiments/results``): ``protocol_bench.json`` and
``protocol_bench.png``; the LAST line of stdout is one JSON object.

Examples::

    .venv/bin/python experiments/protocol_bench.py
    .venv/bin/python experiments/protocol_bench.py --sizes 1024 --concurrency 1,32 --quick
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
from graphrep.net.client import Client
from graphrep.net.config import ClusterFile, NodeSpec
from graphrep.net.local import LocalCluster


def index_for(dim: int) -> VamanaIndex:
    """An empty index of the parameters a local cluster of dimension ``dim`` uses."""
    cfg = ClusterFile(cluster="calibrate", data_dir=Path("."), dim=dim, replication=1,
                      nodes={"n1": NodeSpec("n1", "127.0.0.1:1")}, shards={0: ("local",)})
    return cfg.replica_configs("n1")[0].index()


def record(dim: int, n: int, seed: int = 0) -> list[tuple[int, bytes]]:
    """``n`` inserts of Gaussian vectors into an empty index, as ``(id, delta bytes)``."""
    index = index_for(dim)
    X = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return [(i, index.insert(i, X[i]).to_bytes()) for i in range(n)]


def dim_for(size: int, sample: int = 300) -> int:
    """The dimension whose insert deltas are about ``size`` bytes on average (a delta is
    the new vector, 4 bytes a float, plus edges and headers, which do not depend on it)."""
    probe = 16
    rest = float(np.mean([len(b) for _, b in record(probe, sample)])) - 4 * probe
    return max(4, round((size - rest) / 4))


def percentile_ms(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)) * 1e3, 3) if values else float("nan")


async def phase(cfg: ClusterFile, deltas: list[tuple[int, bytes]], window: int,
                warmup: int, pids: dict[str, int]) -> dict[str, Any]:
    async with Client(cfg, timeout=60.0, history=True) as client:
        await client.write_deltas(deltas[:warmup], concern="majority", window=window)
        client.history.clear()
        before = {n: cpu_seconds(p) for n, p in pids.items()}
        t0 = time.perf_counter()
        acks = await client.write_deltas(deltas[warmup:], concern="majority", window=window)
        elapsed = time.perf_counter() - t0
        after = {n: cpu_seconds(p) for n, p in pids.items()}
        rows = list(client.history)
        # every node applies the last writes once it hears the commit (the leader's next
        # Append or heartbeat): wait for the three digests to agree
        t1 = time.perf_counter()
        with trio.move_on_after(10):
            while True:
                status = await client.status(digest=True)
                nodes = status["nodes"]
                digests = {n: s["shards"][0].get("digest") for n, s in nodes.items()
                           if s.get("up")}
                if len(set(digests.values())) == 1 and len(digests) == len(pids):
                    break
                await trio.sleep(0.05)
        converged_s = time.perf_counter() - t1
    lat = [r["done"] - r["sent"] for r in rows if r["status"] == "ok"]
    return {
        "acknowledged": len(acks), "failed": sum(r["status"] != "ok" for r in rows),
        "writes_per_s": round(len(acks) / elapsed, 1),
        "latency_ms_p50": percentile_ms(lat, 50), "latency_ms_p99": percentile_ms(lat, 99),
        "digests_equal": len(set(digests.values())) == 1 and len(digests) == len(pids),
        "converged_s": round(converged_s, 3),
        "nodes": {n: {"role": nodes[n]["shards"][0]["role"],
                      "cpu_ms_per_write": round((after[n] - before[n]) * 1e3 / len(acks), 3),
                      "commit_ms_p50": nodes[n]["store"]["commit_ms_p50"],
                      "commit_ms_p99": nodes[n]["store"]["commit_ms_p99"]}
                  for n in sorted(pids)},
    }


def run_graphrep(size: int, concurrencies: list[int], writes: dict[int, int], warmup: int,
                 ) -> dict[str, Any]:
    dim = dim_for(size)
    need = max(writes.values()) + warmup
    t0 = time.perf_counter()
    deltas = record(dim, need, seed=size)
    sizes = [len(b) for _, b in deltas]
    out: dict[str, Any] = {"size": size, "dim": dim, "delta_bytes_mean": round(
        float(np.mean(sizes)), 1), "delta_bytes_p50": int(np.median(sizes)),
        "record_s": round(time.perf_counter() - t0, 1), "points": {}}
    print(f"{size} B: dim {dim}, deltas of {out['delta_bytes_mean']:.0f} B on average",
          file=sys.stderr)
    for c in concurrencies:
        with tempfile.TemporaryDirectory(prefix="graphrep-protocol-") as tmp, \
                LocalCluster(tmp, nodes=3, dim=dim, wait=120) as cluster:
            cfg = cluster.cfg
            pids = {n: int((cluster.dir / f"{n}.pid").read_text()) for n in sorted(cfg.nodes)}
            point = trio.run(phase, cfg, deltas[: warmup + writes[c]], c, warmup, pids)
        out["points"][str(c)] = point
        print(f"  graphrep, {c} outstanding: {point['writes_per_s']} writes/s, p50 "
              f"{point['latency_ms_p50']} ms", file=sys.stderr)
    return out


def plot(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    concs = result["concurrency"]
    fig, axes = plt.subplots(1, len(concs), figsize=(5 * len(concs), 4), squeeze=False)
    for ax, c in zip(axes[0], concs, strict=True):
        labels = [f"{s // 1024} KB" if s >= 1024 else f"{s} B" for s in result["sizes"]]
        ours = [result["graphrep"][str(s)]["points"][str(c)]["writes_per_s"]
                for s in result["sizes"]]
        theirs = [result["pysyncobj"].get((s, c), {}).get("rps", 0) for s in result["sizes"]]
        x = np.arange(len(labels))
        ax.bar(x - 0.2, ours, 0.4, label="graphrep (fsync, majority)", color="tab:blue")
        ax.bar(x + 0.2, theirs, 0.4, label="PySyncObj (defaults, no fsync)",
               color="tab:orange")
        ax.set_xticks(x, labels)
        ax.set_ylabel("writes / s")
        ax.set_title(f"3 local nodes, {c} outstanding")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1024,4096,16384", help="payload bytes, comma-separated")
    p.add_argument("--concurrency", default="1,32", help="writes outstanding, comma-separated")
    p.add_argument("--writes", type=int, default=4000,
                   help="measured writes per point with more than one outstanding")
    p.add_argument("--writes-serial", type=int, default=800,
                   help="measured writes per point with one outstanding")
    p.add_argument("--warmup", type=int, default=200, help="writes before measuring")
    p.add_argument("--seconds", type=float, default=5.0, help="PySyncObj's time per point")
    p.add_argument("--no-pysyncobj", action="store_true", help="graphrep only")
    p.add_argument("--quick", action="store_true", help="fewer writes (a smoke run)")
    p.add_argument("--out", default="experiments/results")
    args = p.parse_args(argv)
    if args.quick:
        args.writes, args.writes_serial, args.warmup, args.seconds = 600, 150, 50, 2.0
    sizes = [int(s) for s in args.sizes.split(",")]
    concs = [int(c) for c in args.concurrency.split(",")]
    writes = {c: args.writes_serial if c == 1 else args.writes for c in concs}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    result: dict[str, Any] = {
        "sizes": sizes, "concurrency": concs, "writes": writes, "warmup": args.warmup,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "graphrep": {}, "pysyncobj": {}}
    for size in sizes:
        result["graphrep"][str(size)] = run_graphrep(size, concs, writes, args.warmup)
    if not args.no_pysyncobj:
        import pysyncobj_ref

        ref = pysyncobj_ref.run(sizes, concs, args.seconds)
        result["pysyncobj_version"] = ref.get("version")
        result["pysyncobj"] = {(pt["size"], pt["concurrency"]): pt for pt in ref["points"]}
    ratios = {}
    for size in sizes:
        for c in concs:
            theirs = result["pysyncobj"].get((size, c), {}).get("rps")
            ours = result["graphrep"][str(size)]["points"][str(c)]["writes_per_s"]
            ratios[f"{size}/{c}"] = round(ours / theirs, 3) if theirs else None
    result["graphrep_over_pysyncobj"] = ratios
    done = [r for r in ratios.values() if r is not None]
    result["goals"] = {">= 1.0 x PySyncObj at every point": bool(done) and min(done) >= 1.0
                       and len(done) == len(ratios)}
    result["plot"] = str(plot(result, out / "protocol_bench.png"))
    result["pysyncobj"] = {f"{s}/{c}": v for (s, c), v in result["pysyncobj"].items()}
    (out / "protocol_bench.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

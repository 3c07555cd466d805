"""``graphrep demo``: a live 3-node cluster, a leader killed mid-write, and the proof.

Starts three node processes in a temporary directory, loads ``n`` base vectors, then
writes ``inserts`` inserts and ``deletes`` deletes at ``majority`` through the client;
SIGKILLs the leader halfway, keeps writing through the new leader, restarts the killed
node, and waits until every replica has applied the whole log. It then reports: writes
acknowledged, acknowledged writes lost (checked against every node's live ids), the
digests of the three processes, recall@10 per node, top-10 agreement across nodes, the
time until the client's writes were acknowledged by a new leader, write latency
p50/p99, and the replication bytes per write; and writes a plot of write latency over
time (kill and restart marked) and each node's applied position over time.

The cluster is taken down on every way out, an interrupt included.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import trio

from graphrep.errors import ClusterError
from graphrep.net.client import Client
from graphrep.net.load import drive, latency_summary, plan
from graphrep.net.local import LocalCluster, kill, leader_of, start, wait_for_leaders

__all__ = ["run_live_demo"]


async def _sample(cfg: Any, samples: list, stop: trio.Event, every: float = 0.2) -> None:
    """Every node's applied position (and role) over time, for the plot."""
    async with Client(cfg, timeout=1.0, attempt_timeout=0.3) as probe:
        t0 = time.time()
        while not stop.is_set():
            st = await probe.status(timeout=0.3, digest=False)
            for name, s in st["nodes"].items():
                if not s.get("up"):  # a gap in its line, not a line across its downtime
                    samples.append((time.time() - t0, name, float("nan"), "down"))
                for row in s.get("shards", []):
                    samples.append((time.time() - t0, name, row["applied"], row["role"]))
            with trio.move_on_after(every):
                await stop.wait()


async def _run(cluster: LocalCluster, base: np.ndarray, new: np.ndarray, deletes: int,
               concurrency: int, restart_after: float, progress: bool) -> dict[str, Any]:
    cfg = cluster.cfg
    assert cfg is not None
    out: dict[str, Any] = {}
    samples: list = []
    stop = trio.Event()
    async with Client(cfg, timeout=15.0, attempt_timeout=0.5, history=True) as client, \
            trio.open_nursery() as nursery:
        nursery.start_soon(_sample, cfg, samples, stop)
        t_base = time.time()
        out["base"] = await drive(client, plan(base, 0, 0), concurrency=32)
        out["base_seconds"] = round(time.time() - t_base, 2)
        ops = plan(new, len(base), deletes, seed=1)
        half = len(ops) // 2
        first = len(client.history)
        bar = _bar(len(ops), progress)
        tick = bar.update if bar is not None else None
        out["before_kill"] = await drive(client, ops[:half], concurrency=concurrency,
                                         progress=tick)
        leader = leader_of(await client.status(digest=False))
        if leader is None:
            raise ClusterError("no leader to kill: the cluster lost its leader under load")
        killed_at = time.time()
        await trio.to_thread.run_sync(kill, cluster.dir, leader)
        out["killed"] = leader

        async def restart() -> None:
            await trio.sleep(restart_after)
            await trio.to_thread.run_sync(start, cluster.dir, leader)
            out["restarted_at"] = time.time()

        nursery.start_soon(restart)
        out["after_kill"] = await drive(client, ops[half:], concurrency=concurrency,
                                        progress=tick)
        if bar is not None:
            bar.close()
        while "restarted_at" not in out:
            await trio.sleep(0.05)
        out["converged_s"] = await _converge(client, cfg)
        rows = client.history[first:]
        stop.set()
    term0 = _term_before(rows, killed_at)
    after = [r["done"] for r in rows
             if r["status"] == "ok" and r["done"] > killed_at and r["term"] > term0]
    out["new_leader_s"] = round(min(after) - killed_at, 3) if after else -1.0
    out["killed_at"] = killed_at
    out["rows"] = rows
    out["history"] = client.history
    out["samples"] = samples
    return out


def _term_before(rows: list[dict], t: float) -> int:
    return max((r["term"] for r in rows if r["status"] == "ok" and r["done"] <= t), default=0)


def _bar(total: int, progress: bool) -> Any:
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="writes", unit="w", leave=False)


async def _converge(client: Client, cfg: Any, timeout: float = 60.0) -> float:
    """Wait until every node is up, has applied its leader's whole commit and holds the
    same digest; seconds. Positions are polled without digests (a digest hashes the
    whole index in the node's loop); digests are asked for once positions agree."""
    started = time.time()
    while time.time() - started < timeout:
        if _caught_up(await client.status(timeout=1.0, digest=False)):
            rows = _rows(await client.status(timeout=1.0))
            if rows and len({row["digest"] for row in rows}) == 1:
                return round(time.time() - started, 2)
        await trio.sleep(0.1)
    return -1.0


def _rows(st: dict[str, Any]) -> list[dict[str, Any]]:
    """Every shard row of a status, or [] if a node is down."""
    nodes = st["nodes"].values()
    return [row for s in nodes for row in s["shards"]] if all(s.get("up") for s in nodes) \
        else []


def _caught_up(st: dict[str, Any]) -> bool:
    rows = _rows(st)
    commits = {row["commit"] for row in rows if row["role"] == "leader"}
    return len(commits) == 1 and all(row["applied"] == row["commit"] == max(commits)
                                     for row in rows)


def run_live_demo(*, n: int = 10_000, dim: int = 32, inserts: int = 2_000,
                  deletes: int = 200, queries: int = 200, concurrency: int = 8,
                  seed: int = 7, out: str | Path = "results/live-demo",
                  progress: bool = True) -> dict[str, Any]:
    """Run the live demo; returns the summary (also written as ``summary.json``)."""
    from graphrep.datasets import gaussian_mixture, ground_truth, recall_at_k

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = gaussian_mixture(n + inserts + queries, dim, seed=seed)
    base, new, qs = data[:n], data[n:n + inserts], data[n + inserts:]
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="graphrep-live-") as tmp, \
            LocalCluster(tmp, nodes=3, dim=dim) as cluster:
        t_up = time.time() - started
        run = trio.run(_run, cluster, base, new, deletes, concurrency, 2.0, progress)
        wait_for_leaders(cluster.dir, timeout=30)
        check = _check(cluster, run["history"], qs, n + inserts, data[:n + inserts],
                       ground_truth, recall_at_k)
    lat = latency_summary(run["rows"])
    acked_rows = [r for r in run["rows"] if r["status"] == "ok"]
    summary = {
        "nodes": 3, "base_vectors": n, "dim": dim, "inserts": inserts, "deletes": deletes,
        "cluster_up_s": round(t_up, 2), "base_load_s": run["base_seconds"],
        "base_writes_per_s": run["base"]["writes_per_s"],
        "writes_acknowledged": len(acked_rows),
        "writes_failed": sum(r["status"] == "failed" for r in run["rows"]),
        "writes_skipped": run["before_kill"]["skipped"] + run["after_kill"]["skipped"],
        "acknowledged_writes_lost": check["lost"],
        "digests": check["digests"], "digests_equal": len(set(check["digests"].values())) == 1,
        "recall_at_10": check["recall"], "top10_agreement": check["agreement"],
        "killed": run["killed"], "time_to_new_leader_s": run["new_leader_s"],
        "converged_after_restart_s": run["converged_s"],
        "write_latency_ms_p50": lat["latency_ms_p50"],
        "write_latency_ms_p99": lat["latency_ms_p99"],
        "replication_bytes_per_write": check["bytes_per_write"],
        "seconds": round(time.time() - started, 1),
    }
    summary["plot"] = str(_plot(run, out / "live-demo.png"))
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _check(cluster: LocalCluster, history: list[dict], qs: np.ndarray, n_all: int,
           vectors: np.ndarray, ground_truth: Any, recall_at_k: Any) -> dict[str, Any]:
    """Every node against the acknowledged writes, and against each other."""
    from graphrep.net.client import SyncClient

    cfg = cluster.cfg
    assert cfg is not None
    inserted = {r["id"] for r in history if r["status"] == "ok" and r["op"] == "insert"}
    deleted = {r["id"] for r in history if r["status"] == "ok" and r["op"] == "delete"}
    must_live = np.array(sorted(inserted - deleted), dtype=np.int64)
    must_not = np.array(sorted(deleted), dtype=np.int64)
    lost = 0
    digests, recall, answers = {}, {}, {}
    with SyncClient(cfg, timeout=10.0) as c:
        st = c.status()
        byte_total = sum(s.get("counters", {}).get("peer_bytes_sent", 0)
                         for s in st["nodes"].values())
        live_ids = None
        for name in sorted(cfg.nodes):
            _, live = c.ids(name)
            if live_ids is None:
                live_ids = np.sort(live)
            lost += int(np.count_nonzero(~np.isin(must_live, live)))
            lost += int(np.count_nonzero(np.isin(must_not, live)))
            digests[name] = st["nodes"][name]["shards"][0]["digest"][:16]
            found = np.stack([c.search(q, k=10, node=name)[0] for q in qs])
            answers[name] = found
    truth, _ = ground_truth(vectors[live_ids], qs, k=10, ids=live_ids)
    for name, found in answers.items():
        recall[name] = round(float(recall_at_k(found, truth, 10)), 4)
    names = sorted(answers)
    agreement = float(np.mean([all(np.array_equal(answers[names[0]][i], answers[m][i])
                                   for m in names) for i in range(len(qs))]))
    writes = sum(r["status"] == "ok" for r in history)
    return {"lost": lost, "digests": digests, "recall": recall,
            "agreement": round(agreement, 4),
            "bytes_per_write": round(byte_total / max(writes, 1), 1)}


def _plot(run: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(run["rows"], key=lambda r: r["sent"])
    t0 = rows[0]["sent"] if rows else run["killed_at"]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=False)
    ok = [r for r in rows if r["status"] == "ok"]
    ax1.scatter([r["sent"] - t0 for r in ok], [(r["done"] - r["sent"]) * 1e3 for r in ok],
                s=4, alpha=0.6, label="acknowledged write")
    ax1.set_yscale("log")
    ax1.set_ylabel("write latency (ms)")
    marks = [("kill " + run["killed"], run["killed_at"])]
    if "restarted_at" in run:
        marks.append(("restart " + run["killed"], run["restarted_at"]))
    for label, t in marks:
        ax1.axvline(t - t0, color="red" if label.startswith("kill") else "green", ls="--",
                    label=label)
    ax1.set_xlabel("seconds since the first write of the kill phase")
    ax1.legend(loc="upper right", fontsize=8)
    ax1.set_title("live 3-node cluster: writes at majority, leader SIGKILLed")
    by_node: dict[str, list] = {}
    for t, name, applied, _role in run["samples"]:
        by_node.setdefault(name, []).append((t, applied))
    for name, pts in sorted(by_node.items()):
        ax2.plot([p[0] for p in pts], [p[1] for p in pts], label=name, lw=1.2, marker=".",
                 ms=3)
    ax2.set_xlabel("seconds since the cluster's first sample")
    ax2.set_ylabel("applied log position")
    ax2.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

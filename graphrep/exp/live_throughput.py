"""The live cluster's write throughput: three node processes on this machine, real sockets
(127.0.0.1) and real fsyncs, against the leader's bare insert rate.

A cell runs ``experiments/live_bench.py`` in a process of its own: it seeds every node's
store with the same ``n`` x ``dim`` index, starts three node processes
(:mod:`graphrep.net.local`, stopped on every path), and sends ``writes`` inserts at write
concern ``majority`` through one client with one write outstanding, then with
``clients``. One row per phase: writes per second, write latency p50/p99, the leader's
and the followers' CPU milliseconds per write (user + system time of their processes),
their commit (SQLite transaction with its fsync) p50/p99, the replication lag (the
leader's histogram of the time from an entry's append to a follower acknowledging it:
p50/p99 interpolated within its buckets, and the share of entries at or under each
bucket bound, ``lag_le_<ms>``), and the bare insert rate of the same index in one
process, measured in the same cell. The script's data do not
depend on the seed: seeds are repetitions.

Timings are wall times on a shared machine: the cells run one at a time, and what they
mean is the ratio to the bare rate measured beside them. Needs a source checkout (the
script lives in ``experiments/``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from graphrep.exp.core import Experiment, Profile, register
from graphrep.exp.scripts import run_script
from graphrep.plotstyle import colors, new_figure, save_all, style

__all__ = ["LiveCell", "run"]



@dataclass(frozen=True)
class LiveCell:
    n: int = 20_000
    dim: int = 64
    writes: int = 500
    clients: int = 16


def run(cell: LiveCell, seed: int) -> list[dict[str, Any]]:
    data, _ = run_script("live_bench.py", [
        "--n", str(cell.n), "--dim", str(cell.dim), "--writes", str(cell.writes),
        "--clients", str(cell.clients)], report="live_bench.json")
    rows = []
    for outstanding, ph in data["phases"].items():
        nodes = ph["nodes"].values()
        leader = [x for x in nodes if x["role"] == "leader"]
        followers = [x for x in nodes if x["role"] != "leader"]
        rows.append({
            "outstanding": int(outstanding), "acknowledged": int(ph["acknowledged"]),
            "failed": int(ph["failed"]), "writes_per_s": float(ph["writes_per_s"]),
            "latency_ms_p50": float(ph["latency_ms_p50"]),
            "latency_ms_p99": float(ph["latency_ms_p99"]),
            "bare_inserts_per_s": float(data["bare_inserts_per_s"]),
            "leader_cpu_ms_per_write": float(leader[0]["cpu_ms_per_write"]) if leader
            else float("nan"),
            "follower_cpu_ms_per_write": float(np.mean([x["cpu_ms_per_write"]
                                                        for x in followers]))
            if followers else float("nan"),
            "commit_ms_p50": float(np.median([x["commit_ms_p50"] for x in nodes])),
            "commit_ms_p99": float(max(x["commit_ms_p99"] for x in nodes)),
            **_lag_columns(ph.get("lag") or {}),
        })
    return rows


def _lag_columns(lag: dict[str, Any]) -> dict[str, float]:
    """A phase's lag as flat columns: p50/p99 (ms), the entries observed, and the share
    of them at or under each finite bucket bound (``lag_le_<ms>``)."""
    buckets = lag.get("buckets")
    if not buckets or buckets[-1][1] <= 0:
        return {"lag_ms_p50": float("nan"), "lag_ms_p99": float("nan"), "lag_entries": 0.0}
    total = float(buckets[-1][1])
    out = {"lag_ms_p50": float(lag["p50_ms"]), "lag_ms_p99": float(lag["p99_ms"]),
           "lag_entries": total}
    for le, count in buckets:
        if np.isfinite(le):
            out[f"lag_le_{le * 1e3:g}"] = float(count) / total
    return out


def plot(frame: Any, out: Path) -> list[Path]:
    """Writes per second by writes outstanding, beside the bare insert rate (medians over
    seeds), the CPU per write of the leader and of a follower, and the replication lag's
    distribution (entries pooled over seeds, at the histogram's bucket bounds)."""
    with style():
        lag_cols = sorted((c for c in frame.columns if c.startswith("lag_le_")),
                          key=lambda c: float(c[len("lag_le_"):]))
        fig = new_figure(13.5 if lag_cols else 9, 3.4)
        a, b, *rest = fig.subplots(1, 3 if lag_cols else 2)
        by = frame.groupby("outstanding").median(numeric_only=True).sort_index()
        labels = ["bare insert"] + [f"{o} outstanding" for o in by.index]
        shade = colors(["bare", "live"])
        a.bar(labels, [float(by["bare_inserts_per_s"].iloc[0]), *by["writes_per_s"]],
              color=[shade["bare"]] + [shade["live"]] * len(by))
        a.set_ylabel("writes per second")
        a.set_title("majority, fsync on, three processes")
        x = np.arange(len(by))
        b.bar(x - 0.2, by["leader_cpu_ms_per_write"], 0.4, label="leader")
        b.bar(x + 0.2, by["follower_cpu_ms_per_write"], 0.4, label="follower (mean)")
        b.set_xticks(x, [f"{o} outstanding" for o in by.index])
        b.set_ylabel("CPU per write (ms)")
        b.legend()
        if lag_cols:
            c = rest[0]
            bounds = [float(col[len("lag_le_"):]) for col in lag_cols]
            top = bounds[0]
            for o, part in frame.groupby("outstanding"):
                w = part["lag_entries"].to_numpy(dtype=float)
                if w.sum() <= 0:
                    continue
                share = [float(np.nansum(part[col].to_numpy(dtype=float) * w) / w.sum())
                         for col in lag_cols]
                c.step(bounds, share, where="post", marker="o", markersize=3,
                       label=f"{o} outstanding")
                reach = [b for b, v in zip(bounds, share, strict=True) if v >= 0.999]
                top = max(top, reach[0] if reach else bounds[-1])
            c.set_xscale("log")
            c.set_xlim(bounds[0], 2 * top)
            c.set_xlabel("append to follower's acknowledgement (ms)")
            c.set_ylabel("share of entries at or under")
            c.set_ylim(0, 1.02)
            c.legend()
        return save_all(fig, out / "live_throughput")


EXPERIMENT = register(Experiment(
    "live_throughput", LiveCell, run,
    profiles={"tiny": Profile(lambda: [LiveCell(n=2_000, dim=16, writes=100, clients=8)],
                              (0,)),
              "small": Profile(lambda: [LiveCell()], (0, 1, 2)),
              "full": Profile(lambda: [LiveCell(n=100_000, dim=128, writes=2_000)],
                              (0, 1, 2))},
    description="the live cluster's writes per second against the bare insert rate",
    plot=plot,
    exclusive=True,
    caption="Writes per second of a live three-process cluster (127.0.0.1, SQLite with "
            "fsync) at write concern majority, with one and with several writes "
            "outstanding, beside the leader's bare insert rate in one process; CPU per "
            "write of the leader and of a follower (medians over seeds); and the "
            "distribution of replication lag, from the leader appending an entry to a "
            "follower acknowledging it, read from the leader's histogram at its bucket "
            "bounds (entries pooled over seeds)."))

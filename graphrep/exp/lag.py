"""Replication lag under load: its distribution (a CDF) per policy and write rate, in the
simulator with the CPU cost model.

A cell: three replicas (:func:`graphrep.cluster.run_cluster`) starting from an index of
``initial`` vectors, links with an exponential one-way delay of mean ``latency_us`` (a
data centre's), no faults, and a client inserting ``writes`` vectors at write concern
``majority``, one every ``write_interval_us``. The simulator charges each replica CPU
time for its work (``cpu_ns_per_distance`` per distance computation,
``cpu_ns_per_entry`` per log entry a follower applies), so that a replica busy with one
write delays the next: under ``replay`` every follower runs every insert's search
itself, under ``leader`` it applies the leader's edge delta. The defaults price a
distance at what one costs at 784 dimensions on a 2-core machine; the index holds
``dim``-dimensional vectors, so the *count* of distances is that of a small index and
only their price is modelled.

One row per sample: the lag of one log position at one follower, from the leader's
append to that follower applying it (:func:`graphrep.cluster.checker.lag_samples`);
``follower_busy_share`` is the share of the time between two writes a follower spends
on distance computations for one (replica distance computations per insert, priced).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from graphrep.exp.core import Experiment, Profile, register
from graphrep.plotstyle import colors, new_figure, save_all, style

__all__ = ["LagCell", "run"]

POLICIES = ("leader", "replay")
INTERVALS_US = (3_000, 1_500, 1_250)


@dataclass(frozen=True)
class LagCell:
    policy: str = "leader"
    writes: int = 1_000
    initial: int = 5_000
    write_interval_us: int = 1_500
    latency_us: int = 200
    cpu_ns_per_distance: int = 540
    cpu_ns_per_entry: int = 20_000
    dim: int = 32


def run(cell: LagCell, seed: int) -> list[dict[str, Any]]:
    from graphrep.cluster import ClusterConfig, run_cluster
    from graphrep.cluster.checker import lag_samples
    from graphrep.cluster.config import Layout
    from graphrep.sim.network import LatencyModel

    interval_ns = cell.write_interval_us * 1_000
    cfg = ClusterConfig(writes=cell.writes, initial=cell.initial, deletes=0, dim=cell.dim,
                        queries=10, seed=seed, write_interval_ns=interval_ns,
                        latency=LatencyModel.exponential(cell.latency_us * 1_000),
                        cpu_ns_per_distance=cell.cpu_ns_per_distance,
                        cpu_ns_per_entry=cell.cpu_ns_per_entry,
                        replica={"policy": cell.policy})
    layout = Layout.of(cfg)
    lags: list[float] = []
    summary = run_cluster(cfg, settled=lambda sim: lags.extend(lag_samples(sim, layout)))
    busy = summary["replica_distance_computations_per_insert"] * cell.cpu_ns_per_distance
    return [{"lag_ms": float(v), "converged": bool(summary["converged"]),
             "lost_writes": int(summary["lost_writes"]),
             "writes_per_s": 1e6 / cell.write_interval_us,
             "follower_busy_share": busy / interval_ns} for v in lags]


def plot(frame: Any, out: Path) -> list[Path]:
    """The CDF of the lag (all seeds pooled), one panel per write rate, one curve per
    policy, log-scaled time."""
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    with style():
        rates = sorted(set(frame["cfg.write_interval_us"]), reverse=True)
        fig = new_figure(4.2 * len(rates), 3.4)
        axes = fig.subplots(1, len(rates), squeeze=False, sharey=True)[0]
        shade = colors(POLICIES)
        for ax, iv in zip(axes, rates, strict=True):
            sel = frame[frame["cfg.write_interval_us"] == iv]
            for policy, g in sel.groupby("cfg.policy"):
                v = np.sort(g["lag_ms"].to_numpy())
                ax.step(v, np.arange(1, len(v) + 1) / len(v), where="post",
                        label=policy, color=shade[policy])
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_title(f"{1e6 / iv:.0f} writes/s")
            ax.set_xlabel("lag (ms, virtual, log scale)")
            ax.set_ylim(0, 1.02)
            ax.legend(loc="lower right")
        axes[0].set_ylabel("share of (entry, follower) pairs applied")
        return save_all(fig, out / "lag_cdf")


def _grid(writes: int) -> list[LagCell]:
    return [LagCell(p, writes=writes, write_interval_us=iv)
            for iv in INTERVALS_US for p in POLICIES]


EXPERIMENT = register(Experiment(
    "lag", LagCell, run,
    profiles={"tiny": Profile(lambda: [LagCell(p, writes=150, initial=500,
                                               write_interval_us=iv)
                                       for iv in (3_000, 1_250) for p in POLICIES], (1,)),
              "small": Profile(lambda: _grid(1_000), (1, 2, 3)),
              "full": Profile(lambda: _grid(5_000), tuple(range(1, 6)))},
    description="the distribution of replication lag under load, per policy, with the "
                "CPU cost model",
    plot=plot,
    caption="CDF of replication lag (from the leader's append to a replica applying the "
            "entry) with no faults, pooled over seeds; the simulator's CPU cost model "
            "charges 540 ns per distance computation and 20 us per applied entry."))

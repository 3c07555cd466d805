"""Recall over time while one replica is cut off and writes go on.

A cell: three replicas (:func:`graphrep.cluster.run_cluster`), a client inserting
``writes`` vectors at write concern ``majority``; replica ``r2`` is cut off from the
others and the client from ``start_ms`` for ``partition_ms``, then healed. Every
``sample_ms`` of virtual time each live replica is searched for the run's queries and
its recall@10 measured against the exact neighbours of the inserts acknowledged so far.
One row per (time, replica): what a reader of that replica would have got.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from graphrep.exp.core import Experiment, Profile, register
from graphrep.plotstyle import colors, new_figure, save_all, style

__all__ = ["TimelineCell", "run"]

POLICIES = ("leader", "replay")


@dataclass(frozen=True)
class TimelineCell:
    policy: str = "leader"
    writes: int = 1_000
    start_ms: int = 600
    partition_ms: int = 800
    sample_ms: int = 50
    dim: int = 16


def run(cell: TimelineCell, seed: int) -> list[dict[str, Any]]:
    from graphrep.cluster import ClusterConfig, run_cluster
    from graphrep.cluster.runner import dataset
    from graphrep.datasets import ground_truth, recall_at_k
    from graphrep.sansio import MS
    from graphrep.sim.nemesis import Fault

    cfg = ClusterConfig(writes=cell.writes, deletes=0, dim=cell.dim, queries=50, seed=seed,
                        replica={"policy": cell.policy})
    vectors, queries = dataset(cfg)
    rows: list[dict[str, Any]] = []

    def sample(sim: Any) -> None:
        client = sim.process("client")
        ids = sorted(a["id"] for a in client.acked if a["op"] == "insert")
        if len(ids) < 10:
            return
        truth, _ = ground_truth(vectors[ids], queries, 10, ids=np.asarray(ids))
        for name in ("r0", "r1", "r2"):
            r = sim.process(name)
            if r is None or len(r.index) < 10:
                continue
            found, _ = r.index.search(queries, k=10)
            rows.append({"t_ms": sim.now / MS, "replica": name,
                         "recall": recall_at_k(found, truth, 10), "acked": len(ids)})

    start = cell.start_ms * MS
    schedule = [Fault(start, "partition", groups=(("r0", "r1", "client"), ("r2",))),
                Fault(start + cell.partition_ms * MS, "heal")]
    end = cfg.write_phase_ns + 2_000 * MS
    actions = [(t, sample) for t in range(cell.sample_ms * MS, end, cell.sample_ms * MS)]
    run_cluster(cfg, schedule=schedule, actions=actions)
    return rows


def plot(frame: Any, out: Path) -> list[Path]:
    """Recall@10 of each replica against time (median over seeds), one panel per policy,
    the partition shaded."""
    with style():
        policies = sorted(set(frame["cfg.policy"]))
        fig = new_figure(6 * len(policies), 3.8)
        axes = fig.subplots(1, len(policies), squeeze=False)[0]
        shade = colors(["r0", "r1", "r2"])
        for ax, policy in zip(axes, policies, strict=True):
            sel = frame[frame["cfg.policy"] == policy]
            for rep, g in sel.groupby("replica"):
                m = g.groupby("t_ms")["recall"].median()
                ax.plot(m.index, m.values, label=rep, color=shade[rep])
            s0 = float(sel["cfg.start_ms"].iloc[0])
            ax.axvspan(s0, s0 + float(sel["cfg.partition_ms"].iloc[0]), color="grey",
                       alpha=0.2, label="r2 cut off")
            ax.set_title(policy)
            ax.set_xlabel("time (ms, virtual)")
            ax.set_ylabel("recall@10 of the inserts acknowledged so far")
            ax.set_ylim(0, 1.05)
            ax.legend()
        return save_all(fig, out / "recall_timeline")


EXPERIMENT = register(Experiment(
    "recall_timeline", TimelineCell, run,
    profiles={"tiny": Profile(lambda: [TimelineCell(p, writes=150, start_ms=150,
                                                    partition_ms=150, sample_ms=100)
                                       for p in POLICIES], (1,)),
              "small": Profile(lambda: [TimelineCell(p) for p in POLICIES], (1, 2, 3)),
              "full": Profile(lambda: [TimelineCell(p, writes=5_000, partition_ms=4_000)
                                       for p in POLICIES], tuple(range(1, 6)))},
    description="each replica's recall over time while one replica is cut off and "
                "writes go on",
    plot=plot,
    caption="Recall@10 of each replica against the inserts acknowledged so far, sampled "
            "in virtual time; replica r2 cut off during the shaded span; median over "
            "seeds."))

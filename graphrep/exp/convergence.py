"""How long replicas take to converge after a partition, and what it costs in bytes, as
the partition grows and messages get lost, per policy.

A cell: three replicas (:func:`graphrep.cluster.run_cluster`), a client inserting
``writes`` vectors at write concern ``majority``; replica ``r2`` is cut off from the
others (and the client) for the last ``partition_ms`` of the write phase, with message
loss ``loss`` on every link over the same window; then everything heals and the run
continues until the replicas have converged. Its row: convergence time after the heal
(virtual ms), bytes per insert (all replica traffic, catch-up included), whether the
replicas converged and acknowledged writes lost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphrep.exp.core import Experiment, Profile, register
from graphrep.plotstyle import new_figure, save_all, style

__all__ = ["ConvergenceCell", "run"]

POLICIES = ("leader", "replay", "snapshot")
CONFIDENCE = 0.95
"""The level of the confidence intervals drawn (normal, across seeds)."""
_Z = 1.959964  # the normal quantile of CONFIDENCE, two-sided


@dataclass(frozen=True)
class ConvergenceCell:
    policy: str = "leader"
    partition_ms: int = 500
    loss: float = 0.0
    writes: int = 500
    dim: int = 16


def run(cell: ConvergenceCell, seed: int) -> list[dict[str, Any]]:
    from graphrep.cluster import ClusterConfig, run_cluster
    from graphrep.sim.nemesis import Fault

    cfg = ClusterConfig(writes=cell.writes, deletes=0, dim=cell.dim, queries=50, seed=seed,
                        replica={"policy": cell.policy})
    end = cfg.write_phase_ns
    schedule: list[Fault] = []
    if cell.partition_ms:
        start = end - cell.partition_ms * 1_000_000
        schedule.append(Fault(start, "partition", groups=(("r0", "r1", "client"), ("r2",))))
        if cell.loss:
            schedule.append(Fault(start, "loss", p=cell.loss))
    s = run_cluster(cfg, schedule=schedule)
    return [{"converged": s["converged"], "lost_writes": s["lost_writes"],
             "converge_ms": s["converge_ms_after_heal"],
             "bytes_per_insert": s["bytes_per_insert"]["total"],
             "acked_writes": s["acked_writes"]}]


def _ci(values: Any) -> tuple[float, float, float]:
    """Mean and a :data:`CONFIDENCE` normal confidence interval of the mean across seeds."""
    v = [float(x) for x in values if x == x]  # NaN (not converged) left out
    if not v:
        return math.nan, math.nan, math.nan
    mean = sum(v) / len(v)
    if len(v) < 2:
        return mean, mean, mean
    sd = math.sqrt(sum((x - mean) ** 2 for x in v) / (len(v) - 1))
    half = _Z * sd / math.sqrt(len(v))
    return mean, mean - half, mean + half


def plot(frame: Any, out: Path) -> list[Path]:
    """Convergence time and bytes per insert against the partition's length, per policy
    and loss rate: the mean over seeds with its 95% confidence interval."""
    with style():
        losses = sorted(set(frame["cfg.loss"]))
        fig = new_figure(5 * len(losses), 7.5)
        axes = fig.subplots(2, len(losses), squeeze=False)
        for j, loss in enumerate(losses):
            sel = frame[frame["cfg.loss"] == loss]
            for policy, g in sel.groupby("cfg.policy"):
                for i, col in enumerate(("converge_ms", "bytes_per_insert")):
                    by = g.groupby("cfg.partition_ms")[col]
                    xs = list(by.groups)
                    stats = [_ci(by.get_group(x)) for x in xs]
                    ax = axes[i][j]
                    ax.plot(xs, [m for m, _, _ in stats], "o-", label=policy)
                    ax.fill_between(xs, [lo for _, lo, _ in stats],
                                    [hi for _, _, hi in stats], alpha=0.2)
            axes[0][j].set_title(f"message loss {loss:g} during the partition")
            axes[0][j].set_ylabel("convergence after the heal (ms, virtual time)")
            axes[1][j].set_ylabel("bytes per insert (replica traffic)")
            for i in range(2):
                axes[i][j].set_xlabel("partition of one replica (ms, virtual time)")
                axes[i][j].legend()
        return save_all(fig, out / "convergence")


def _grid(writes: int, lengths: tuple[int, ...], losses: tuple[float, ...]
          ) -> list[ConvergenceCell]:
    return [ConvergenceCell(policy=p, partition_ms=ms, loss=loss, writes=writes)
            for p in POLICIES for ms in lengths for loss in losses]


EXPERIMENT = register(Experiment(
    "convergence", ConvergenceCell, run,
    profiles={"tiny": Profile(lambda: _grid(60, (0, 200), (0.0, 0.2)), (1, 2)),
              "small": Profile(lambda: _grid(500, (0, 250, 500, 1000), (0.0, 0.2)),
                               (1, 2, 3)),
              "full": Profile(lambda: _grid(2000, (0, 500, 1000, 2000, 4000),
                                            (0.0, 0.1, 0.3)), tuple(range(1, 11)))},
    description="convergence time and bytes after a partition of one replica, against "
                "its length and message loss, per policy, over seeds",
    plot=plot,
    caption="One of three replicas cut off for the last part of the write phase, with "
            "message loss on every link meanwhile; mean over seeds with its "
            f"{100 * CONFIDENCE:.0f}% confidence interval."))

"""Replica drift: do the replicas of one shard answer a query the same way, over time and
after restarts?

A cell: three replicas (:func:`graphrep.cluster.run_cluster`), a client inserting
``writes`` vectors at write concern ``majority``. Replica ``r1`` is crashed at
``restarts_ms[0]`` and ``r2`` at ``restarts_ms[1]``, each restarted ``down_ms`` later;
``r0`` runs throughout. Every ``sample_ms`` of virtual time every live replica is
searched for the run's queries (the client pauses its writes ``quiet_ms`` before, so
that the replicas compare equal logs, and resumes after), and its top-10 compared with
``r0``'s: the share of queries whose ten ids are the same list (``identical``) and the
mean share of ``r0``'s ten that it also returns (``overlap``), searching with a beam of
``search_L`` (a small beam, as a latency-bound reader uses, is where two graphs answer
differently); ``same_graph`` says whether its index digest equals ``r0``'s; ``behind``
is how many log entries fewer than ``r0`` it had applied (the plot and the paper use the
rows where it is 0). A last row per replica (``final``) compares them once the run has
settled.

Under ``leader`` a replica applies the leader's edge deltas, so every replica holds the
same graph, restarted or not. Under ``replay`` each replica runs every insert itself:
in the same order that gives the same graph, but a replica that restarts without a
snapshot re-indexes its log in bulk, as a vector database rebuilds a segment, and from
then on holds a graph of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from graphrep.exp.core import Experiment, Profile, register
from graphrep.plotstyle import colors, new_figure, save_all, style

__all__ = ["DriftCell", "compare", "run"]

POLICIES = ("leader", "replay")
FOLLOWERS = ("r1", "r2")
K = 10


@dataclass(frozen=True)
class DriftCell:
    policy: str = "replay"
    writes: int = 1_500
    restarts_ms: tuple[int, ...] = (800, 1_800)
    down_ms: int = 200
    sample_ms: int = 100
    quiet_ms: int = 30
    dim: int = 32
    search_L: int = 12


def compare(mine: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """``(identical, overlap)`` of two top-k answers (one row of ids per query, -1 for
    none): the share of queries answered with the same list, and the mean share of the
    reference's ids also returned."""
    same = float(np.mean([np.array_equal(a, b) for a, b in zip(mine, ref, strict=True)]))
    over = [len(set(a[a >= 0].tolist()) & set(b[b >= 0].tolist())) / max(int((b >= 0).sum()), 1)
            for a, b in zip(mine, ref, strict=True)]
    return same, float(np.mean(over))


def run(cell: DriftCell, seed: int) -> list[dict[str, Any]]:
    from graphrep.cluster import ClusterConfig, run_cluster
    from graphrep.cluster.runner import dataset
    from graphrep.sansio import MS
    from graphrep.sim.nemesis import Fault

    cfg = ClusterConfig(writes=cell.writes, deletes=0, dim=cell.dim, queries=50, seed=seed,
                        replica={"policy": cell.policy})
    _, queries = dataset(cfg)
    rows: list[dict[str, Any]] = []

    def sample(sim: Any, final: bool = False) -> None:
        ref = sim.process("r0")
        if ref is None or len(ref.index) < K:
            return
        want, _ = ref.index.search(queries, k=K, L=cell.search_L)
        for name in FOLLOWERS:
            r = sim.process(name)
            if r is None or len(r.index) < K:
                continue
            got, _ = r.index.search(queries, k=K, L=cell.search_L)
            identical, overlap = compare(got, want)
            rows.append({"t_ms": sim.now / MS, "replica": name, "identical": identical,
                         "overlap": overlap, "final": final,
                         "same_graph": r.index.digest() == ref.index.digest(),
                         "behind": int(ref.applied) - int(r.applied)})

    def pause(sim: Any) -> None:
        sim.pause("client")

    def sample_and_resume(sim: Any) -> None:
        sample(sim)
        sim.resume("client")

    schedule = []
    for name, at in zip(FOLLOWERS, cell.restarts_ms, strict=False):
        schedule += [Fault(at * MS, "crash", node=name),
                     Fault((at + cell.down_ms) * MS, "restart", node=name)]
    end = cfg.write_phase_ns + 1_000 * MS
    actions: list[tuple[int, Any]] = []
    for t in range(cell.sample_ms * MS, end, cell.sample_ms * MS):
        actions += [(t - cell.quiet_ms * MS, pause), (t, sample_and_resume)]
    run_cluster(cfg, schedule=schedule, actions=actions, min_settle_ns=1_000 * MS,
                settled=lambda sim: sample(sim, final=True))
    return rows


def plot(frame: Any, out: Path) -> list[Path]:
    """Top-10 overlap of r1 and r2 with r0 against time (median over seeds), one panel per
    policy, each restart marked."""
    with style():
        policies = sorted(set(frame["cfg.policy"]))
        fig = new_figure(6 * len(policies), 3.6)
        axes = fig.subplots(1, len(policies), squeeze=False)[0]
        shade = colors(FOLLOWERS)
        shown = frame[~frame["final"] & (frame["behind"] == 0)]
        low = float(shown[["identical", "overlap"]].min().min()) if len(shown) else 0.0
        bottom = max(0.0, np.floor((low - 0.02) * 10) / 10)  # the differences stay visible
        for ax, policy in zip(axes, policies, strict=True):
            sel = frame[(frame["cfg.policy"] == policy) & ~frame["final"]
                        & (frame["behind"] == 0)]
            for rep, g in sel.groupby("replica"):
                m = g.groupby("t_ms")["overlap"].median()
                ax.plot(m.index, m.values, label=f"{rep}: top-10 overlap with r0",
                        color=shade[rep])
                m = g.groupby("t_ms")["identical"].median()
                ax.plot(m.index, m.values, ls="--", color=shade[rep],
                        label=f"{rep}: queries with the identical top-10")
            first = sel.iloc[0] if len(sel) else None
            if first is not None:
                down = float(first["cfg.down_ms"])
                for rep, at in zip(FOLLOWERS, first["cfg.restarts_ms"], strict=False):
                    ax.axvspan(at, at + down, color=shade[rep], alpha=0.15,
                               label=f"{rep} down")
            ax.set_title(policy)
            ax.set_xlabel("time (ms, virtual)")
            ax.set_ylabel("agreement with r0 (share)")
            ax.set_ylim(bottom, 1.005)
            ax.legend(loc="lower left")
        return save_all(fig, out / "drift")


EXPERIMENT = register(Experiment(
    "drift", DriftCell, run,
    profiles={"tiny": Profile(lambda: [DriftCell(p, writes=400, restarts_ms=(500, 750),
                                                 down_ms=50, sample_ms=200)
                                       for p in POLICIES], (1,)),
              "small": Profile(lambda: [DriftCell(p) for p in POLICIES], (1, 2, 3)),
              "full": Profile(lambda: [DriftCell(p, writes=6_000, restarts_ms=(3_000, 8_000),
                                                 down_ms=500, sample_ms=250)
                                       for p in POLICIES], tuple(range(1, 6)))},
    description="top-10 agreement between replicas over time, across restarts",
    plot=plot,
    caption="Agreement of replicas r1 and r2 with r0 on the top-10 of 50 queries, sampled "
            "in virtual time; each follower down in its shaded span, then restarted; "
            "median over seeds."))

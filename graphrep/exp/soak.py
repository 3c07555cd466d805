"""A bounded soak of the live cluster: steady load on three node processes, a node
SIGKILLed and restarted every ``kill_every`` seconds, then every promise checked.

A cell runs ``experiments/live_soak.py`` in a process of its own (it starts the nodes
with :mod:`graphrep.net.local` and stops them on every path): three nodes in two
emulated regions, fsync and authentication on, writes at ``majority`` at ``load`` times
the maximum rate it measured first, deletes and read-your-writes searches mixed in, for
``duration`` seconds. One row: writes sent, acknowledged and failed, kills (and how many
hit the leader), whether the cluster converged with equal digests, acknowledged writes
lost, read-your-writes violations, top-10 agreement, the write p99 in the steady state
and the worst minute's outside failover windows, and the followers' lag in entries.

Wall-clock and machine-dependent: cells run one at a time, and seeds drive the chaos
(which node is killed) and the workload. Needs a source checkout (the script lives in
``experiments/``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphrep.exp.core import Experiment, Profile, register
from graphrep.exp.scripts import run_script
from graphrep.plotstyle import new_figure, save_all, style

__all__ = ["SoakCell", "run"]



@dataclass(frozen=True)
class SoakCell:
    duration: float = 60.0
    kill_every: float = 15.0
    down: float = 3.0
    base: int = 2_000
    probe_seconds: float = 5.0
    load: float = 0.7
    dim: int = 32


def run(cell: SoakCell, seed: int) -> list[dict[str, Any]]:
    # a goal the soak misses is a finding (its exit code, recorded), not a failed cell
    s, code = run_script("live_soak.py", [
        "--duration", str(cell.duration), "--kill-every", str(cell.kill_every),
        "--down", str(cell.down), "--base", str(cell.base),
        "--probe-seconds", str(cell.probe_seconds), "--load", str(cell.load),
        "--dim", str(cell.dim), "--seed", str(seed)], check=False)
    minutes = s["write_p99_ms_per_minute_outside_failover"] or [float("nan")]
    return [{
        "writes_sent": s["writes"]["sent"], "writes_acknowledged": s["writes"]["acknowledged"],
        "writes_failed": s["writes"]["failed"], "max_writes_per_s": s["max_writes_per_s"],
        "achieved_writes_per_s": s["achieved_writes_per_s"], "kills": s["kills"],
        "leader_kills": s["leader_kills"], "restarts_failed": s["restarts_failed"],
        "found_dead": s["found_dead"], "converged": bool(s["converged"]),
        "converge_s": s["converge_s"], "digests_equal": bool(s["digests_equal"]),
        "lost_acknowledged_writes": s["lost_acknowledged_writes"],
        "phantoms": s["phantoms"], "top10_agreement": s["top10_agreement"],
        "ryw_checks": s["ryw_checks"], "ryw_violations": s["ryw_violations"],
        "write_p99_ms_steady": s["write_p99_ms_steady"],
        "write_p99_ms_worst_minute": float(max(minutes)),
        "follower_lag_max": s["follower_lag_max"],
        "follower_lag_p99_outside_failover": s["follower_lag_p99_outside_failover"],
        "exit_code": code,
    }]


def plot(frame: Any, out: Path) -> list[Path]:
    """Per run: writes acknowledged and lost, and the write p99 in the steady state and in
    the worst minute outside failover windows."""
    with style():
        fig = new_figure(9, 3.4)
        a, b = fig.subplots(1, 2)
        runs = [f"seed {s}" for s in frame["seed"]]
        a.bar(runs, frame["writes_acknowledged"], label="acknowledged")
        a.bar(runs, frame["lost_acknowledged_writes"], label="acknowledged, then lost")
        a.set_ylabel("writes")
        a.set_title("writes under kills")
        a.legend()
        x = range(len(runs))
        b.bar([i - 0.2 for i in x], frame["write_p99_ms_steady"], 0.4, label="steady state")
        b.bar([i + 0.2 for i in x], frame["write_p99_ms_worst_minute"], 0.4,
              label="worst minute outside failover")
        b.set_xticks(list(x), runs)
        b.set_ylabel("write latency p99 (ms)")
        b.legend()
        return save_all(fig, out / "soak")


EXPERIMENT = register(Experiment(
    "soak", SoakCell, run,
    profiles={"tiny": Profile(lambda: [SoakCell(duration=10.0, kill_every=3.0, down=1.0,
                                                base=300, probe_seconds=1.0)], (0,)),
              "small": Profile(lambda: [SoakCell()], (0,)),
              "full": Profile(lambda: [SoakCell(duration=600.0, kill_every=30.0,
                                                base=5_000, probe_seconds=10.0)], (0, 1))},
    description="a bounded soak of the live cluster with a node killed and restarted "
                "at intervals",
    plot=plot,
    exclusive=True,
    caption="A soak of a live three-process cluster (two emulated regions, fsync and "
            "authentication on, writes at majority at 0.7 of the measured maximum) with a "
            "node SIGKILLed and restarted at intervals: writes acknowledged and lost, and "
            "write latency p99 in the steady state and in the worst minute outside the "
            "failover windows."))

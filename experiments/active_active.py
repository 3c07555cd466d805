"""Active-active writes across simulated regions: crdt and ordered groups against one leader.

Three regions (``eu``, ``us``, ``ap``: the latency presets of
:mod:`graphrep.sim.regions`, 40 to 120 ms one way between them), three replica nodes
and one writer in each; every writer sends ``--writes`` inserts, one every 5 ms of
virtual time (:func:`graphrep.cluster.active.run_active`). The grid:

- policy ``crdt`` (a replica group per region, a write acknowledged in its own region,
  committed entries pulled and merged by the other regions), ``lww`` (the same groups
  and shipping, entries of the full records a write changed, kept per node by the
  largest timestamp), ``ordered`` (the same
  groups and shipping, every replica running every write in one timestamp order once
  no earlier write can arrive) or ``leader`` (one group stretched over the three
  regions, every write sent to its one leader);
- overlap ``0.0`` (each region writes its own clusters of a Gaussian mixture) or
  ``1.0`` (every region writes all of the clusters);
- nemesis ``none`` or ``region-partition`` (``eu`` cut off from the other two regions
  from 20% to 70% of the way through the write phase, then healed);

each over ``--seeds`` seeds (``--seed``, ``--seed + 1``, ...).

Per run, one row: the configuration and the summary's figures: whether the replicas
converged and how long after the last write (virtual ms), whether their digests are
equal, recall@10 of the worst replica against that of one writer that inserted every
surviving vector (and the gap, single writer minus worst replica: negative when every
replica did better than the single writer), the most unreachable
nodes and lost acknowledged writes on any replica, write latency p50/p99 per region
(virtual ms, first send to acknowledgement), bytes per insert (all replica traffic and
between regions), replica CPU (a leader's own insert against applying one replicated
entry, and every replica's CPU per write), and when an insert became searchable in its
writer's region and on every replica (virtual ms from its first send, at 5 ms
resolution). Before the grid, one small run per policy loads the kernels, so no
measured run pays Numba's loading.

Results go to ``experiments/results/active_active.json`` and ``.png`` (with a
``--writes`` other than 500, ``active_active_w<N>``; with a ``--dim`` other than 32,
``_d<dim>``); the rows, the medians over seeds
per (policy, overlap, nemesis) cell and the headline figures. The output ends with a
table of the medians and then, as its last line, one JSON object: the medians per cell
and the headline (``crdt``: whether every run converged with equal digests, the worst
recall gap, the largest p99 write latency; ``leader``: p50 write latency per region,
median over its runs, per nemesis).

Usage::

    python experiments/active_active.py              # 500 writes per writer, 2 seeds
    python experiments/active_active.py --small      # 60 writes per writer, 1 seed
    python experiments/active_active.py --writes 60  # 60 writes, 2 seeds
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
import one_thread  # noqa: E402,F401  (pins BLAS/numba threads before numpy work)

from graphrep.cluster.active import ActiveConfig, run_active  # noqa: E402

RESULTS = ROOT / "results"
REGIONS = ("eu", "us", "ap")
POLICIES = ("crdt", "lww", "ordered", "leader")
OVERLAPS = (0.0, 1.0)
NEMESES = ("none", "region-partition")
DEFAULT_WRITES = 500
DEFAULT_DIM = 32


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--writes", type=int, default=None,
                   help=f"inserts per writer (default {DEFAULT_WRITES}; 60 with --small)")
    p.add_argument("--seeds", type=int, default=None,
                   help="seeds per cell of the grid (default 2; 1 with --small)")
    p.add_argument("--seed", type=int, default=7, help="the first seed")
    p.add_argument("--dim", type=int, default=DEFAULT_DIM,
                   help=f"vector dimension (default {DEFAULT_DIM})")
    p.add_argument("--small", action="store_true",
                   help="a quick smoke run: 60 writes per writer, 1 seed")
    p.add_argument("--out", type=Path, default=RESULTS,
                   help="directory for the JSON results and the plot")
    args = p.parse_args(argv)
    writes = args.writes if args.writes is not None else 60 if args.small else DEFAULT_WRITES
    seeds = args.seeds if args.seeds is not None else 1 if args.small else 2
    if writes < 1 or seeds < 1:
        p.error("--writes and --seeds must be >= 1")
    base = dict(regions=REGIONS, nodes_per_region=3, writers_per_region=1, writes=writes,
                dim=args.dim)

    t_start = time.perf_counter()
    warm_up()
    rows: list[dict[str, Any]] = []
    for seed in range(args.seed, args.seed + seeds):
        for policy in POLICIES:
            for overlap in OVERLAPS:
                for nemesis in NEMESES:
                    cfg = ActiveConfig(**base, policy=policy, overlap=overlap,
                                       nemesis=nemesis, seed=seed)
                    t0 = time.perf_counter()
                    s = run_active(cfg)
                    row = make_row(cfg, s, time.perf_counter() - t0)
                    rows.append(row)
                    print(progress_line(row), flush=True)
    wall_s = time.perf_counter() - t_start

    cells = {cell_key(*c): cell_medians([r for r in rows if cell_of(r) == c])
             for c in grid()}
    headline = make_headline(rows)
    name = "active_active" + ("" if writes == DEFAULT_WRITES else f"_w{writes}") + (
        "" if args.dim == DEFAULT_DIM else f"_d{args.dim}")
    args.out.mkdir(parents=True, exist_ok=True)
    path_json, path_png = args.out / f"{name}.json", args.out / f"{name}.png"
    workload = {**base, "seeds": list(range(args.seed, args.seed + seeds)),
                "policies": list(POLICIES), "overlaps": list(OVERLAPS),
                "nemeses": list(NEMESES), "cut_region": REGIONS[0],
                "write_interval_ms": ActiveConfig().write_interval_ns / 1e6,
                "R": ActiveConfig().R, "L": ActiveConfig().L}
    result = {"workload": workload, "wall_s": round(wall_s, 1), "headline": headline,
              "cells": cells, "rows": rows}
    path_json.write_text(json.dumps(result, indent=2) + "\n")
    plot(rows, path_png)

    print()
    print_table(cells)
    print()
    print(f"{len(rows)} runs in {wall_s:.0f} s; results in {path_json}, plot in {path_png}")
    print(json.dumps({"workload": workload, "wall_s": round(wall_s, 1),
                      "headline": headline, "cells": cells,
                      "results": str(path_json), "plot": str(path_png)}))
    return 0


def warm_up() -> None:
    """One small run per policy, so that no measured run loads or compiles a kernel."""
    for policy in POLICIES:
        run_active(ActiveConfig(policy=policy, writes=10, queries=10, settle_ns=10**10))


def grid() -> list[tuple[str, float, str]]:
    return [(p, o, n) for p in POLICIES for o in OVERLAPS for n in NEMESES]


def cell_key(policy: str, overlap: float, nemesis: str) -> str:
    return f"{policy}/{overlap:g}/{nemesis}"


def cell_of(row: dict[str, Any]) -> tuple[str, float, str]:
    return row["policy"], row["overlap"], row["nemesis"]


def make_row(cfg: ActiveConfig, s: dict[str, Any], wall_s: float) -> dict[str, Any]:
    """The scalar figures of one run's summary."""
    recall_min = min(s["recall_at_10"].values())
    return {
        "policy": cfg.policy, "overlap": cfg.overlap, "nemesis": cfg.nemesis,
        "seed": cfg.seed, "writes": cfg.writes,
        "converged": s["converged"], "convergence_ms": s["convergence_ms"],
        "quiet_ms": s["quiet_ms"],
        "digests_equal": s["digests_equal"],
        "writes_acknowledged": s["writes_acknowledged"], "writes_sent": s["writes_sent"],
        "lost_max": max(s["lost"].values()),
        "recall_min": recall_min, "recall_single_writer": s["recall_single_writer"],
        "recall_gap": round(s["recall_single_writer"] - recall_min, 4),
        "unreachable_max": max(s["unreachable"].values()),
        "unreachable_single_writer": s["unreachable_single_writer"],
        "latency_ms": {r: {"p50": s["latency"].get(r, {}).get("p50_ms"),
                           "p99": s["latency"].get(r, {}).get("p99_ms"),
                           "acked": s["latency"].get(r, {}).get("acked", 0)}
                       for r in cfg.regions},
        "bytes_per_insert": s["bytes_per_insert"],
        "cross_region_bytes_per_insert": s["cross_region_bytes_per_insert"],
        "op_cpu_us_per_write": s["op_cpu_us_per_write"],
        "apply_cpu_us_per_entry": s["apply_cpu_us_per_entry"],
        "apply_to_insert_cpu": s["apply_to_insert_cpu"],
        "replica_cpu_us_per_write": s["replica_cpu_us_per_write"],
        "visible_local_p50_ms": s["visible_ms"]["local_p50"],
        "visible_all_p50_ms": s["visible_ms"]["all_p50"],
        "visible_all_p99_ms": s["visible_ms"]["all_p99"],
        "sim_cpu_s": s["sim_cpu_s"], "wall_s": round(wall_s, 2),
        "trace_hash": s["trace_hash"],
    }


def median(xs: Sequence[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return round(statistics.median(vals), 4) if vals else None


def cell_medians(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over a cell's seeds (``convergence_ms``: over the runs that converged)."""
    def med(key: str) -> float | None:
        return median([r[key] for r in rows])

    return {
        "runs": len(rows),
        "converged_runs": sum(r["converged"] for r in rows),
        "quiet_ms": med("quiet_ms"),
        "digests_equal_runs": sum(r["digests_equal"] for r in rows),
        "convergence_ms": med("convergence_ms"),
        "lost_max": max(r["lost_max"] for r in rows),
        "recall_min": med("recall_min"), "recall_single_writer": med("recall_single_writer"),
        "recall_gap": med("recall_gap"),
        "unreachable_max": max(r["unreachable_max"] for r in rows),
        "unreachable_single_writer": max(r["unreachable_single_writer"] for r in rows),
        "p50_ms": {g: median([r["latency_ms"][g]["p50"] for r in rows]) for g in REGIONS},
        "p99_ms": {g: median([r["latency_ms"][g]["p99"] for r in rows]) for g in REGIONS},
        "bytes_per_insert": med("bytes_per_insert"),
        "cross_region_bytes_per_insert": med("cross_region_bytes_per_insert"),
        "apply_to_insert_cpu": med("apply_to_insert_cpu"),
        "replica_cpu_us_per_write": med("replica_cpu_us_per_write"),
        "visible_local_p50_ms": med("visible_local_p50_ms"),
        "visible_all_p50_ms": med("visible_all_p50_ms"),
        "visible_all_p99_ms": med("visible_all_p99_ms"),
    }


def make_headline(rows: list[dict[str, Any]]) -> dict[str, Any]:
    crdt = [r for r in rows if r["policy"] == "crdt"]
    ordered = [r for r in rows if r["policy"] == "ordered"]
    lww = [r for r in rows if r["policy"] == "lww"]
    leader = [r for r in rows if r["policy"] == "leader"]
    p99s = [r["latency_ms"][g]["p99"] for r in crdt for g in REGIONS]
    return {
        "crdt": {
            "all_converged_digests_equal": all(r["converged"] and r["digests_equal"]
                                               for r in crdt),
            "worst_recall_gap": max(r["recall_gap"] for r in crdt),
            "max_p99_ms": max((x for x in p99s if x is not None), default=None),
            "replica_cpu_us_per_write": median([r["replica_cpu_us_per_write"] for r in crdt]),
        },
        "lww": {
            "runs_with_digests_equal": sum(r["digests_equal"] for r in lww),
            "runs": len(lww),
            "worst_recall_gap": max(r["recall_gap"] for r in lww),
            "unreachable_max": max(r["unreachable_max"] for r in lww),
        },
        "ordered": {
            "all_converged_digests_equal": all(r["converged"] and r["digests_equal"]
                                               for r in ordered),
            "replica_cpu_us_per_write": median([r["replica_cpu_us_per_write"]
                                                for r in ordered]),
        },
        "leader": {
            "p50_ms": {n: {g: median([r["latency_ms"][g]["p50"] for r in leader
                                      if r["nemesis"] == n]) for g in REGIONS}
                       for n in NEMESES},
        },
    }


def progress_line(r: dict[str, Any]) -> str:
    lat = " ".join(f"{g} {r['latency_ms'][g]['p50']}/{r['latency_ms'][g]['p99']}"
                   for g in REGIONS)
    return (f"{r['policy']:6s} overlap {r['overlap']:.1f} {r['nemesis']:16s} seed {r['seed']}: "
            f"converged {r['converged']} ({r['convergence_ms']} ms) digests equal "
            f"{r['digests_equal']} lost {r['lost_max']} recall {r['recall_min']:.4f} vs "
            f"{r['recall_single_writer']:.4f} unreachable {r['unreachable_max']} vs "
            f"{r['unreachable_single_writer']}; p50/p99 ms "
            f"{lat}; {r['bytes_per_insert']:.0f} B/insert; {r['wall_s']:.1f} s")


def print_table(cells: dict[str, dict[str, Any]]) -> None:
    def fmt(x: float | None, spec: str = ".1f") -> str:
        return "-" if x is None else format(x, spec)

    head = (f"{'policy/overlap/nemesis':29s} {'conv':>5s} {'quiet ms':>8s} {'rec min':>7s} "
            f"{'single':>7s} {'gap':>6s} {'lost':>4s} {'unr':>3s} {'1w':>3s}  "
            f"{'p50 ms eu/us/ap':>20s}  {'p99 ms eu/us/ap':>22s} {'B/ins':>7s} "
            f"{'xreg B':>7s} {'apply/ins':>9s} {'cpu us/w':>9s} {'vis loc/all ms':>15s}")
    print("medians over seeds (conv: runs converged with equal digests / runs; quiet: "
          "nothing left to ship or run, after the last write)")
    print(head)
    for key, c in cells.items():
        conv = f"{min(c['converged_runs'], c['digests_equal_runs'])}/{c['runs']}"
        p50 = "/".join(fmt(c["p50_ms"][g]) for g in REGIONS)
        p99 = "/".join(fmt(c["p99_ms"][g]) for g in REGIONS)
        vis = f"{fmt(c['visible_local_p50_ms'], '.0f')}/{fmt(c['visible_all_p50_ms'], '.0f')}"
        print(f"{key:29s} {conv:>5s} {fmt(c['quiet_ms'], '.0f'):>8s} "
              f"{fmt(c['recall_min'], '.4f'):>7s} {fmt(c['recall_single_writer'], '.4f'):>7s} "
              f"{fmt(c['recall_gap'], '.4f'):>6s} {c['lost_max']:>4d} "
              f"{c['unreachable_max']:>3d} {c['unreachable_single_writer']:>3d}  "
              f"{p50:>20s}  {p99:>22s} "
              f"{fmt(c['bytes_per_insert'], '.0f'):>7s} "
              f"{fmt(c['cross_region_bytes_per_insert'], '.0f'):>7s} "
              f"{fmt(c['apply_to_insert_cpu'], '.3f'):>9s} "
              f"{fmt(c['replica_cpu_us_per_write'], '.0f'):>9s} "
              f"{vis:>15s}")


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(17, 5.5))

    # (a) write latency p99 per region, per policy and nemesis (median over seeds and
    # overlaps)
    combos = [(p, n) for p in POLICIES for n in NEMESES]
    width = 0.8 / len(combos)
    x = np.arange(len(REGIONS))
    for i, (pol, nem) in enumerate(combos):
        vals = [median([r["latency_ms"][g]["p99"] for r in rows
                        if r["policy"] == pol and r["nemesis"] == nem]) for g in REGIONS]
        ax1.bar(x + (i - (len(combos) - 1) / 2) * width,
                [np.nan if v is None else v for v in vals], width, label=f"{pol}, {nem}")
    ax1.set_xticks(x, [f"writer in {g}" for g in REGIONS])
    ax1.set_yscale("log")
    ax1.set_ylabel("write latency p99 (ms, virtual time)")
    ax1.set_title("(a) write latency p99 per region\n(median over seeds and overlaps)")
    ax1.legend(fontsize=8, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.1))

    # (b) recall@10: worst replica against one writer, per policy / overlap / nemesis
    cells = grid()
    x = np.arange(len(cells))
    rec_min = [median([r["recall_min"] for r in rows if cell_of(r) == c]) for c in cells]
    rec_one = [median([r["recall_single_writer"] for r in rows if cell_of(r) == c])
               for c in cells]
    ax2.bar(x - 0.2, [np.nan if v is None else v for v in rec_min], 0.4,
            label="replicas (min over replicas)")
    ax2.bar(x + 0.2, [np.nan if v is None else v for v in rec_one], 0.4,
            label="one writer, no replication")
    ax2.set_xticks(x, [f"{p}\noverlap {o:g}\n{'part.' if n != 'none' else 'none'}"
                       for p, o, n in cells], fontsize=7)
    lo = min(v for v in rec_min + rec_one if v is not None)
    ax2.set_ylim(0.0 if lo < 0.9 else lo - 0.02, 1.005)
    ax2.set_ylabel("recall@10 (median over seeds)")
    ax2.set_title("(b) recall@10: worst replica vs single writer")
    ax2.legend(fontsize=8, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.26))

    # (c) convergence after the last write, per policy and nemesis (every run a dot)
    x = np.arange(len(combos))
    for i, (pol, nem) in enumerate(combos):
        vals = [r["convergence_ms"] for r in rows if r["policy"] == pol and r["nemesis"] == nem]
        done = [v for v in vals if v is not None]
        if done:
            ax3.bar(i, statistics.median(done), 0.6, color=f"C{i}", alpha=0.6)
            ax3.plot([i] * len(done), done, "k.", markersize=5)
        missed = len(vals) - len(done)
        if missed:
            ax3.annotate(f"{missed} not converged", (i, 1), ha="center", fontsize=7,
                         xycoords=("data", "axes fraction"), va="top", color="red")
    ax3.set_xticks(x, [f"{p}\n{n}" for p, n in combos], fontsize=8)
    ax3.set_ylim(bottom=0)
    ax3.set_ylabel("convergence after the last write (ms, virtual time)")
    ax3.set_title("(c) convergence time\n(bar: median; dots: runs, both overlaps)")

    fig.suptitle(f"active-active, regions {'/'.join(REGIONS)}, 3 nodes and 1 writer each, "
                 f"{rows[0]['writes']} writes per writer; eu cut off under region-partition")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())

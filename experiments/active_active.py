"""Active-active writes across simulated regions: crdt, lww and ordered groups against one
stretched leader (an entry point over ``graphrep exp run active_active``).

Three regions (``eu``, ``us``, ``ap``: the latency presets of
:mod:`graphrep.sim.regions`, 40 to 120 ms one way between them), three replica nodes
and one writer in each; every writer sends ``--writes`` inserts, one every 5 ms of
virtual time (:func:`graphrep.cluster.active.run_active`). The grid
(:mod:`graphrep.exp.active_active`):

- policy ``crdt`` (a replica group per region, a write acknowledged in its own region,
  committed entries pulled and merged by the other regions), ``lww`` (the same groups
  and shipping, entries of the full records a write changed, kept per node by the
  largest timestamp), ``ordered`` (the same groups and shipping, every replica running
  every write in one timestamp order once no earlier write can arrive) or ``leader``
  (one group stretched over the three regions, every write sent to its one leader);
- overlap ``0.0`` (each region writes its own clusters of a Gaussian mixture) or
  ``1.0`` (every region writes all of the clusters);
- nemesis ``none`` or ``region-partition`` (``eu`` cut off from the other two regions
  from 20% to 70% of the way through the write phase, then healed);

each over ``--seeds`` seeds (``--seed``, ``--seed + 1``, ...). The cells run through
:func:`graphrep.exp.run_sweep` (``--jobs`` processes) and are stored under ``--root``
like any sweep's, so a rerun skips the cells it finished.

This script prints, per (policy, overlap, nemesis), the medians over seeds: runs that
converged with equal digests, when they went quiet, recall@10 of the worst replica and
of one writer that inserted every surviving vector (and the gap), lost writes,
unreachable nodes, write latency p50/p99 per region (virtual ms), bytes per insert (all
replica traffic and between regions), replica CPU (applying one replicated entry
against a leader's own insert, and every replica's CPU per write) and when an insert
became searchable in its writer's region and everywhere (virtual ms, 5 ms resolution).
It writes them, the headline and every row to ``--out`` (``active_active.json``, with
a ``--writes`` other than 500 ``active_active_w<N>``, with a ``--dim`` other than 32
``_d<dim>``) beside the experiment's figure, and its last line is one JSON object: the
medians per cell and the headline (``crdt``: whether every run converged with equal
digests, the worst recall gap, the largest p99 write latency; ``leader``: p50 write
latency per region, median over its runs, per nemesis).

Usage::

    python experiments/active_active.py              # 500 writes per writer, 2 seeds
    python experiments/active_active.py --small      # 60 writes per writer, 1 seed
    python experiments/active_active.py --writes 60  # 60 writes, 2 seeds
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
import one_thread  # noqa: E402,F401  (pins BLAS/numba threads before numpy work)

from graphrep.exp import get, load, run_sweep  # noqa: E402
from graphrep.exp.active_active import NEMESES, POLICIES, grid  # noqa: E402

RESULTS = ROOT / "results"
REGIONS = ("eu", "us", "ap")
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
    p.add_argument("--jobs", type=int, default=2, help="local processes (default 2)")
    p.add_argument("--root", type=Path, default=RESULTS / "exp",
                   help="where the sweep's cells are stored")
    p.add_argument("--out", type=Path, default=RESULTS,
                   help="directory for the JSON results and the figure")
    args = p.parse_args(argv)
    writes = args.writes if args.writes is not None else 60 if args.small else DEFAULT_WRITES
    seeds = args.seeds if args.seeds is not None else 1 if args.small else 2
    if writes < 1 or seeds < 1 or args.jobs < 1:
        p.error("--writes, --seeds and --jobs must be >= 1")
    seed_list = list(range(args.seed, args.seed + seeds))

    t_start = time.perf_counter()
    report = run_sweep("active_active", grid(writes, args.dim), seed_list, root=args.root,
                       jobs=args.jobs)
    wall_s = time.perf_counter() - t_start
    if report.failed:
        print(json.dumps(report.to_json()), file=sys.stderr)
        return 1
    frame = load("active_active", args.root)
    frame = frame[(frame["cfg.writes"] == writes) & (frame["cfg.dim"] == args.dim)
                  & frame["seed"].isin(seed_list)]
    rows = json.loads(frame.to_json(orient="records"))
    groups = frame.groupby(["cfg.policy", "cfg.overlap", "cfg.nemesis"])
    order = sorted(groups.groups, key=lambda k: (POLICIES.index(k[0]), k[1],
                                                 NEMESES.index(k[2])))
    cells = {f"{pol}/{ov:g}/{nem}": cell_medians(groups.get_group((pol, ov, nem)))
             for pol, ov, nem in order}
    headline = make_headline(frame)
    name = "active_active" + ("" if writes == DEFAULT_WRITES else f"_w{writes}") + (
        "" if args.dim == DEFAULT_DIM else f"_d{args.dim}")
    args.out.mkdir(parents=True, exist_ok=True)
    path_json = args.out / f"{name}.json"
    figures = [str(x) for x in get("active_active").plot(frame, args.out / name)]
    workload = {"regions": list(REGIONS), "nodes_per_region": 3, "writers_per_region": 1,
                "writes": writes, "dim": args.dim, "seeds": seed_list,
                "policies": list(POLICIES), "nemeses": list(NEMESES), "cut_region": "eu"}
    result = {"workload": workload, "wall_s": round(wall_s, 1), "sweep": report.to_json(),
              "headline": headline, "cells": cells, "rows": rows}
    path_json.write_text(json.dumps(result, indent=2) + "\n")

    print()
    print_table(cells)
    print()
    print(f"{len(rows)} runs ({report.ran} run now, {report.skipped} reused) in "
          f"{wall_s:.0f} s; results in {path_json}, figures {figures}")
    print(json.dumps({"workload": workload, "wall_s": round(wall_s, 1),
                      "headline": headline, "cells": cells,
                      "results": str(path_json), "figures": figures}))
    return 0


def _med(frame: Any, col: str) -> float | None:
    vals = frame[col].dropna()
    return round(float(vals.median()), 4) if len(vals) else None


def cell_medians(g: Any) -> dict[str, Any]:
    """Medians over a cell's seeds (``convergence_ms``: over the runs that converged)."""
    out: dict[str, Any] = {
        "runs": len(g), "converged_runs": int(g["converged"].sum()),
        "digests_equal_runs": int(g["digests_equal"].sum()),
        "lost_max": int(g["lost_max"].max()),
        "unreachable_max": int(g["unreachable_max"].max()),
        "unreachable_single_writer": int(g["unreachable_single_writer"].max()),
        "p50_ms": {r: _med(g, f"p50_ms.{r}") for r in REGIONS},
        "p99_ms": {r: _med(g, f"p99_ms.{r}") for r in REGIONS},
    }
    for col in ("quiet_ms", "convergence_ms", "recall_min", "recall_single_writer",
                "recall_gap", "bytes_per_insert", "cross_region_bytes_per_insert",
                "apply_to_insert_cpu", "replica_cpu_us_per_write", "visible_local_p50_ms",
                "visible_all_p50_ms", "visible_all_p99_ms"):
        out[col] = _med(g, col)
    return out


def make_headline(frame: Any) -> dict[str, Any]:
    def pol(name: str) -> Any:
        return frame[frame["cfg.policy"] == name]

    crdt, lww, ordered, leader = pol("crdt"), pol("lww"), pol("ordered"), pol("leader")
    p99 = crdt[[f"p99_ms.{r}" for r in REGIONS]].to_numpy().ravel()
    p99 = [float(x) for x in p99 if x == x]  # NaN: a region with no acknowledged write
    return {
        "crdt": {
            "all_converged_digests_equal": bool((crdt["converged"]
                                                 & crdt["digests_equal"]).all()),
            "worst_recall_gap": float(crdt["recall_gap"].max()),
            "max_p99_ms": max(p99, default=None),
            "replica_cpu_us_per_write": _med(crdt, "replica_cpu_us_per_write"),
        },
        "lww": {
            "runs_with_digests_equal": int(lww["digests_equal"].sum()), "runs": len(lww),
            "worst_recall_gap": float(lww["recall_gap"].max()),
            "unreachable_max": int(lww["unreachable_max"].max()),
        },
        "ordered": {
            "all_converged_digests_equal": bool((ordered["converged"]
                                                 & ordered["digests_equal"]).all()),
            "replica_cpu_us_per_write": _med(ordered, "replica_cpu_us_per_write"),
        },
        "leader": {
            "p50_ms": {n: {r: _med(leader[leader["cfg.nemesis"] == n], f"p50_ms.{r}")
                           for r in REGIONS} for n in NEMESES},
        },
    }


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


if __name__ == "__main__":
    raise SystemExit(main())

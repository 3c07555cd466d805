"""The write-up ``papers/edge-delta-replication``, built from results.

:func:`build` runs the sweeps the paper needs (:mod:`graphrep.exp`, the experiments of
:data:`EXPERIMENTS`; cells finished before are reused), reads their
results, computes every number the text quotes (:func:`numbers`), draws the figures
(each experiment's plot), and renders ``paper.md`` from the template ``paper.md.in`` with
:meth:`str.format_map`: no number in the text is typed by hand. ``numbers.json`` beside
it records the numbers, the profile and the cells they came from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import numpy as np

from graphrep.errors import InvalidArgument

__all__ = ["EXPERIMENTS", "PAPER", "RECOVERED_WITHIN", "build", "numbers", "render"]

PAPER = Path(__file__).resolve().parent.parent / "papers" / "edge-delta-replication"
"""The paper's directory in a source checkout."""
RECOVERED_WITHIN = 0.01
"""A cut-off replica has recovered once its recall is within this of the others'."""
EXPERIMENTS = ("ann_quality", "replication_cost", "apply_scaling", "convergence", "recall_timeline",
               "drift", "lag", "live_throughput", "soak", "sim_speed", "active_active")


def _med(frame: Any, col: str) -> float:
    return float(frame[col].median())


def numbers(root: Path) -> dict[str, Any]:
    """Every number the paper quotes, from the finished results under ``root``."""
    from graphrep.exp import load

    frames = {name: load(name, root) for name in EXPERIMENTS}
    for name, frame in frames.items():
        if frame.empty:
            raise InvalidArgument(f"no results of {name} under {root}: build runs them")
    rc, ap, aa = frames["replication_cost"], frames["apply_scaling"], frames["active_active"]
    cv, rt, dr = frames["convergence"], frames["recall_timeline"], frames["drift"]
    lg, aq, lt = frames["lag"], frames["ann_quality"], frames["live_throughput"]
    ss = frames["sim_speed"].groupby("engine")["deliveries_per_s"].median()
    out: dict[str, Any] = {}
    out.update(_ann_numbers(aq))
    # the simulator's speed (SimPy's engines only where SimPy was installed)
    out["ss_graphrep"] = float(ss["graphrep"])
    variants = frames["sim_speed"].query("engine == 'graphrep'")["variant"]
    out["ss_variant"] = ("compiled with mypyc" if set(variants) == {"mypyc"}
                         else "plain Python" if set(variants) == {"python"} else "mixed")
    out["ss_over_heapq"] = float(ss["graphrep"] / ss["bare_heapq"])
    for style in ("callback", "process"):
        other = ss.get(f"simpy_{style}")
        out[f"ss_over_simpy_{style}"] = ("n/a" if other is None
                                         else round(float(ss["graphrep"] / other), 1))
    # replication cost, at the largest index of the sweep
    big = rc["cfg.initial"].max()
    out["rc_initial"] = int(big)
    out["rc_writes"] = int(rc["cfg.writes"].max())
    out["rc_dim"] = int(rc["cfg.dim"].max())
    out["rc_seeds"] = int(rc["seed"].nunique())
    for nem in ("none", "partitions"):
        sel = rc[(rc["cfg.initial"] == big) & (rc["cfg.nemesis"] == nem)]
        for pol in ("leader", "replay", "snapshot"):
            g = sel[sel["cfg.policy"] == pol]
            out[f"rc_{pol}_{nem}_bytes"] = _med(g, "bytes_per_insert.total")
            out[f"rc_{pol}_{nem}_cpu_us"] = _med(g, "replica_cpu_us_per_insert")
            out[f"rc_{pol}_{nem}_dist"] = _med(g, "replica_distance_computations_per_insert")
        out[f"rc_cpu_ratio_{nem}"] = (out[f"rc_leader_{nem}_cpu_us"]
                                      / out[f"rc_replay_{nem}_cpu_us"])
        out[f"rc_bytes_ratio_{nem}"] = (out[f"rc_leader_{nem}_bytes"]
                                        / out[f"rc_replay_{nem}_bytes"])
    out["rc_all_converged"] = bool(rc["converged"].all())
    out["rc_lost"] = int(rc["lost_writes"].sum())
    out["rc_overhead_leader"] = _med(rc[(rc["cfg.initial"] == big)
                                        & (rc["cfg.policy"] == "leader")
                                        & (rc["cfg.nemesis"] == "none")], "overhead_in_run")
    # apply scaling
    by_n = ap.groupby("n")
    ns = sorted(by_n.groups)
    out["ap_n_min"], out["ap_n_max"] = int(ns[0]), int(ns[-1])
    out["ap_ratio_min_n"] = float(by_n["apply_over_insert"].median()[ns[0]]) * 100
    out["ap_ratio_max_n"] = float(by_n["apply_over_insert"].median()[ns[-1]]) * 100
    out["ap_records"] = float(by_n["records_per_delta"].median()[ns[-1]])
    out["ap_values"] = float(by_n["values_per_delta"].median()[ns[-1]])
    # convergence after a partition, at the longest one, without and with the most loss
    longest = cv["cfg.partition_ms"].max()
    out["cv_partition_ms"] = int(longest)
    out["cv_loss"] = float(cv["cfg.loss"].max())
    out["cv_seeds"] = int(cv["seed"].nunique())
    from graphrep.exp.convergence import CONFIDENCE

    out["cv_ci_percent"] = 100 * CONFIDENCE
    out["cv_all_converged"] = bool(cv["converged"].all())
    out["cv_lost"] = int(cv["lost_writes"].sum())
    for tag, loss in (("calm", 0.0), ("lossy", out["cv_loss"])):
        sel = cv[(cv["cfg.partition_ms"] == longest) & (cv["cfg.loss"] == loss)]
        for pol in ("leader", "replay", "snapshot"):
            g = sel[sel["cfg.policy"] == pol]
            out[f"cv_{pol}_{tag}_ms"] = float(g["converge_ms"].mean())
    base = cv[(cv["cfg.partition_ms"] == 0) & (cv["cfg.policy"] == "leader")]
    cut = cv[(cv["cfg.partition_ms"] == longest) & (cv["cfg.loss"] == 0.0)
             & (cv["cfg.policy"] == "leader")]
    out["cv_leader_bytes_base"] = float(base["bytes_per_insert"].mean())
    out["cv_leader_bytes_cut"] = float(cut["bytes_per_insert"].mean())
    # recall over time: the cut-off replica during the partition, and its recovery
    lows, backs = [], []
    for (_pol, _seed), g in rt.groupby(["cfg.policy", "seed"]):
        start = float(g["cfg.start_ms"].iloc[0])
        heal = start + float(g["cfg.partition_ms"].iloc[0])
        cut = g[g["replica"] == "r2"].set_index("t_ms")["recall"]
        others = g[g["replica"] != "r2"].groupby("t_ms")["recall"].min()
        during = cut[(cut.index >= start) & (cut.index <= heal)]
        if len(during):
            lows.append(float(during.min()))
        after = [t for t in cut.index if t >= heal and t in others.index
                 and cut[t] >= others[t] - RECOVERED_WITHIN]
        if after:
            backs.append(min(after) - heal)
    out["rt_partition_ms"] = int(rt["cfg.partition_ms"].max())
    out["rt_low"] = float(np.median(lows)) if lows else float("nan")
    out["rt_back_ms"] = float(np.median(backs)) if backs else float("nan")
    out["rt_sample_ms"] = int(rt["cfg.sample_ms"].max())
    out["rt_seeds"] = int(rt["seed"].nunique())
    out["rt_within"] = RECOVERED_WITHIN
    # drift: agreement with r0 at equal logs, and once settled
    eq = dr[dr["behind"] == 0]
    out["dr_seeds"] = int(dr["seed"].nunique())
    out["dr_writes"] = int(dr["cfg.writes"].max())
    out["dr_search_L"] = int(dr["cfg.search_L"].max())
    for pol in ("leader", "replay"):
        g = eq[eq["cfg.policy"] == pol]
        fin = g[g["final"]]
        out[f"dr_{pol}_same_graph_final"] = int(fin["same_graph"].sum())
        out[f"dr_{pol}_final_rows"] = len(fin)
        out[f"dr_{pol}_identical_min"] = float(g["identical"].min())
        out[f"dr_{pol}_identical_final"] = float(fin["identical"].median())
        out[f"dr_{pol}_overlap_final"] = float(fin["overlap"].median())
    # lag under load, at the highest write rate
    busiest = int(lg["cfg.write_interval_us"].min())
    out["lg_writes_per_s"] = 1e6 / busiest
    out["lg_seeds"] = int(lg["seed"].nunique())
    out["lg_ns_per_distance"] = int(lg["cfg.cpu_ns_per_distance"].max())
    out["lg_latency_us"] = int(lg["cfg.latency_us"].max())
    top = lg[lg["cfg.write_interval_us"] == busiest]
    out["lg_replay_busy"] = float(top[top["cfg.policy"] == "replay"]
                                  ["follower_busy_share"].median())
    for pol in ("leader", "replay"):
        v = top[top["cfg.policy"] == pol]["lag_ms"].to_numpy()
        out[f"lg_{pol}_p50"] = float(np.percentile(v, 50))
        out[f"lg_{pol}_p99"] = float(np.percentile(v, 99))
    out["lg_all_converged"] = bool(lg["converged"].all())
    # the live cluster: medians over seeds, per number of writes outstanding
    by = lt.groupby("outstanding").median(numeric_only=True).sort_index()
    many = int(by.index.max())
    out["lt_n"], out["lt_dim"] = int(lt["cfg.n"].max()), int(lt["cfg.dim"].max())
    out["lt_writes"] = int(lt["cfg.writes"].max())
    out["lt_seeds"] = int(lt["seed"].nunique())
    out["lt_outstanding"] = many
    out["lt_bare"] = float(by["bare_inserts_per_s"].median())
    out["lt_one_wps"] = float(by.loc[1, "writes_per_s"])
    out["lt_many_wps"] = float(by.loc[many, "writes_per_s"])
    out["lt_over_bare"] = out["lt_many_wps"] / out["lt_bare"]
    out["lt_bare_ms"] = 1_000 / out["lt_bare"]
    out["lt_p99_many"] = float(by.loc[many, "latency_ms_p99"])
    out["lt_commit_p50"] = float(by.loc[many, "commit_ms_p50"])
    out["lt_leader_cpu"] = float(by.loc[many, "leader_cpu_ms_per_write"])
    out["lt_follower_cpu"] = float(by.loc[many, "follower_cpu_ms_per_write"])
    out["lt_follower_over_leader"] = out["lt_follower_cpu"] / out["lt_leader_cpu"]
    out["lt_failed"] = int(lt["failed"].sum())
    out["lt_lag_p50_one"] = float(by.loc[1, "lag_ms_p50"])
    out["lt_lag_p99_one"] = float(by.loc[1, "lag_ms_p99"])
    out["lt_lag_p50_many"] = float(by.loc[many, "lag_ms_p50"])
    out["lt_lag_p99_many"] = float(by.loc[many, "lag_ms_p99"])
    # the soak
    sk = frames["soak"]
    out["sk_runs"] = len(sk)
    out["sk_duration_s"] = float(sk["cfg.duration"].max())
    out["sk_kill_every_s"] = float(sk["cfg.kill_every"].max())
    out["sk_load"] = float(sk["cfg.load"].max())
    for col in ("kills", "leader_kills", "writes_acknowledged", "writes_failed",
                "lost_acknowledged_writes", "phantoms", "ryw_checks", "ryw_violations",
                "restarts_failed"):
        out[f"sk_{col}"] = int(sk[col].sum())
    out["sk_converged"] = int((sk["converged"] & sk["digests_equal"]).sum())
    out["sk_agreement_min"] = float(sk["top10_agreement"].min())
    out["sk_p99_steady"] = float(sk["write_p99_ms_steady"].median())
    out["sk_p99_worst_minute"] = float(sk["write_p99_ms_worst_minute"].max())
    out["sk_lag_p99"] = float(sk["follower_lag_p99_outside_failover"].median())
    # active-active
    p99 = [c for c in aa.columns if c.startswith("p99_ms.")]
    out["aa_writes"] = int(aa["cfg.writes"].max())
    for pol in ("crdt", "lww", "ordered", "leader"):
        g = aa[aa["cfg.policy"] == pol]
        out[f"aa_{pol}_runs"] = len(g)
        out[f"aa_{pol}_converged"] = int(g["converged"].sum())
        out[f"aa_{pol}_p99_max"] = float(g[p99].max().max())
        out[f"aa_{pol}_visible_local"] = _med(g, "visible_local_p50_ms")
        out[f"aa_{pol}_visible_all"] = _med(g, "visible_all_p50_ms")
        out[f"aa_{pol}_recall_gap"] = float((g["recall_single_writer"]
                                             - g["recall_min"]).max())
        out[f"aa_{pol}_bytes"] = _med(g, "bytes_per_insert")
    out["aa_crdt_over_ordered_bytes"] = out["aa_crdt_bytes"] / out["aa_ordered_bytes"]
    calm = aa[(aa["cfg.policy"] == "leader") & (aa["cfg.nemesis"] == "none")]
    p50 = calm[[c.replace("p99", "p50") for c in p99]].median()
    out["aa_leader_p50_min"], out["aa_leader_p50_max"] = float(p50.min()), float(p50.max())
    return out


ANN_TARGET = 0.95
"""The recall@10 at which the paper's text compares queries per second."""


def _ann_numbers(aq: Any) -> dict[str, Any]:
    """The ANN-quality table, and graphrep against the best reference at recall@10
    :data:`ANN_TARGET` on the first data set ("n/a" where no reference ran or none
    reaches the recall; queries per second as text with thousands separators)."""
    from graphrep.exp.ann_quality import qps_at, table

    out: dict[str, Any] = {"aq_table": table(aq), "aq_target": ANN_TARGET}
    name = sorted(set(aq["cfg.dataset"]))[0]
    sel = aq[aq["cfg.dataset"] == name]
    out["aq_dataset"] = name
    out["aq_n"], out["aq_dim"] = int(sel["n_base"].iloc[0]), int(sel["dim"].iloc[0])
    refs = sorted(r for r in set(sel["lib"]) if not r.startswith("graphrep"))
    out["aq_references"] = ", ".join(refs) or "none"
    mine = sel[sel["lib"] == "graphrep"]
    for mode in ("batched", "single"):
        g = qps_at(mine, mode, ANN_TARGET)
        theirs = {r: qps_at(sel[sel["lib"] == r], mode, ANN_TARGET) for r in refs}
        theirs = {r: q for r, q in theirs.items() if q is not None}
        best = max(theirs, key=lambda r: (theirs[r], r)) if theirs else None
        out[f"aq_graphrep_{mode}"] = "n/a" if g is None else f"{g:,.0f}"
        out[f"aq_best_{mode}"] = best or "none"
        out[f"aq_best_{mode}_qps"] = "n/a" if best is None else f"{theirs[best]:,.0f}"
        out[f"aq_ratio_{mode}"] = ("n/a" if g is None or best is None
                                   else round(g / theirs[best], 2))
        coded = sel[sel["lib"] == "graphrep-u8"]
        c = qps_at(coded, mode, ANN_TARGET) if len(coded) else None
        out[f"aq_codes_{mode}"] = "n/a" if c is None else f"{c:,.0f}"
        out[f"aq_codes_ratio_{mode}"] = ("n/a" if c is None or best is None
                                         else round(c / theirs[best], 2))
    builds = {r: float(sel[sel["lib"] == r]["build_s"].iloc[0]) for r in refs}
    fastest = min(builds, key=lambda r: (builds[r], r)) if builds else None
    out["aq_fastest_build"] = fastest or "none"
    out["aq_build_ratio"] = ("n/a" if fastest is None else
                             round(float(mine["build_s"].iloc[0]) / builds[fastest], 2))
    return out


def render(template: str, values: Mapping[str, Any]) -> str:
    """The template with every ``{name:spec}`` filled from ``values`` (a missing name
    raises :class:`InvalidArgument`)."""
    try:
        return template.format_map(dict(values))
    except KeyError as exc:
        raise InvalidArgument(f"the paper's template names {exc}, which numbers() does "
                              "not compute") from None


def build(profile: str = "small", root: Path = Path("results"), out: Path = PAPER,
          executor: Executor | None = None, jobs: int = 1, progress: bool = True
          ) -> dict[str, Any]:
    """Run the sweeps of ``profile``, then write ``out/paper.md``, ``out/figures/`` and
    ``out/numbers.json``; returns a summary."""
    from graphrep.exp import get, load, run_sweep

    template_path = PAPER / "paper.md.in"
    if not template_path.exists():
        raise InvalidArgument(f"no paper template at {template_path}: build from a source "
                              "checkout")
    out = Path(out)
    root = Path(root) / profile
    sweeps = {}
    for name in EXPERIMENTS:
        exp = get(name)
        prof = exp.profile(profile)
        r = run_sweep(name, prof.configs(), prof.seeds, root=root, executor=executor,
                      jobs=jobs, progress=progress)
        if r.failed:
            raise InvalidArgument(f"{len(r.failed)} cell(s) of {name} failed, e.g. "
                                  f"{r.failed[0]['error']}; see {root}/{name}")
        sweeps[name] = r.to_json()
    figures = out / "figures"
    drawn = []
    for name in EXPERIMENTS:
        exp = get(name)
        if exp.plot is not None:
            drawn += [str(p) for p in exp.plot(load(name, root), figures)]
    values = numbers(root)
    text = render(template_path.read_text(), {**values, "profile": profile})
    out.mkdir(parents=True, exist_ok=True)
    (out / "paper.md").write_text(text)
    cells = {name: sorted(set(load(name, root)["cell"])) for name in EXPERIMENTS}
    (out / "numbers.json").write_text(json.dumps(
        {"profile": profile, "numbers": values, "cells": cells}, indent=2, sort_keys=True)
        + "\n")
    return {"paper": str(out / "paper.md"), "figures": drawn, "profile": profile,
            "sweeps": sweeps}

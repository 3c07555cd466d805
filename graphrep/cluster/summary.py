"""The summary of a cluster run: the JSON-able dict and its human-readable form.

:func:`summarize` gathers what the checker (:mod:`graphrep.cluster.checker`) measured,
the client's counts and the simulation's totals into the dict that ``run_cluster``
returns and ``graphrep sim --json`` prints; :func:`render` turns it into the lines
``graphrep sim`` prints without ``--json``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from graphrep.cluster.checker import (
    entry_bytes,
    lag,
    lost_writes,
    metric_count,
    metric_sum,
    percentiles,
    replica_sends,
    search_quality,
)
from graphrep.cluster.client import Client
from graphrep.cluster.config import ClusterConfig, Layout
from graphrep.sansio import MS
from graphrep.sim.engine import Simulation

__all__ = ["render", "summarize"]


def summarize(cfg: ClusterConfig, sim: Simulation, layout: Layout, client: Client,
             vectors: np.ndarray, queries: np.ndarray, heal_at: int,
             converged_at: int | None) -> dict[str, Any]:
    """The summary of a finished run (see :func:`graphrep.cluster.run_cluster`):
    convergence, lost writes, bytes per insert by part, latencies and lag, recall and
    agreement, the client's searches, the replicas' counters, the simulation's totals,
    the trace hash and ``config`` (the run's ``ClusterConfig`` as JSON-able data).

    ``bytes_per_insert`` divides replica-to-replica traffic by the acknowledged inserts:
    ``total`` is every byte one replica node sent another (the simulator's link
    counts); ``vector`` and ``edges`` are those parts of the log entries sent in
    ``Append`` messages, read from the entries' bodies in the trace, each entry counted
    once per follower of its shard however often it was sent
    (:func:`~graphrep.cluster.checker.entry_bytes`); ``snapshot`` and ``repair`` are the
    snapshot chunks and anti-entropy repairs as sent (the ``snapshot_bytes`` and
    ``repair_bytes`` metrics); ``metadata`` is the rest of ``total``: message headers,
    entries' own metadata, retransmissions, heartbeats, votes and replies."""
    reps = {(n, s): layout.replica(sim, n, s) for n, s in layout.slots()}
    digests = {layout.label(n, s): (r.index.digest().hex()[:16] if r is not None else None)
               for (n, s), r in reps.items()}
    converged = converged_at is not None and all(
        len({digests[layout.label(n, s)] for n in layout.shards[s]}) == 1
        for s in layout.shards)
    n_lost, lost = lost_writes(client.acked, layout, reps)
    inserts = sum(1 for a in client.acked if a["op"] == "insert")
    # replication traffic: bytes between replicas, by part
    replica_set = set(layout.names)
    repl_bytes = sum(row["bytes"] for row in sim.link_stats()
                     if row["src"] in replica_set and row["dst"] in replica_set)
    metrics = sim.metric_columns()
    entries = entry_bytes(replica_sends(sim, layout), layout)
    per = max(inserts, 1)
    parts = {"vector": entries["vector"] / per, "edges": entries["edges"] / per,
             "snapshot": metric_sum(metrics, "snapshot_bytes") / per,
             "repair": metric_sum(metrics, "repair_bytes") / per}
    parts["metadata"] = max(repl_bytes / per - sum(parts.values()), 0.0)
    parts["total"] = repl_bytes / per
    recall, agreement, merged = search_quality(cfg, layout, reps, vectors, queries)
    dist = metric_sum(metrics, "replica_distance_computations")
    summary = {
        "policy": cfg.policy, "seed": cfg.seed, "nemesis": cfg.nemesis,
        "converged": converged, "digests": digests,
        "acked_writes": len(client.acked), "failed_writes": len(client.errors),
        "unacked_writes": len(client.outstanding) + len(client.plan) - client.next_op,
        "lost_writes": n_lost, "lost_write_replicas": len(lost),
        "lost_examples": lost[:5],
        "bytes_per_insert": parts,
        "replica_distance_computations_per_insert": dist / per,
        "write_latency_ms": percentiles([a["latency_ns"] / MS for a in client.acked]),
        "lag_ms": lag(sim, layout),
        "converge_ms_after_heal": (converged_at - heal_at) / MS if converged_at else None,
        "recall_at_10": recall, "topk_agreement": agreement,
        **_searches(client),
        "protocol_errors": int(metric_count(metrics, "protocol_errors")),
        "elections": int(metric_count(metrics, "leader_elected")),
        **{name: metric_sum(metrics, name) for name in (
            "snapshots", "snapshot_installs", "snapshot_bytes", "anti_entropy_mismatches",
            "repaired_records", "repair_bytes", "apply_failures", "repair_failures",
            "damaged_entries", "damaged_snapshots", "follower_regressions")},
        "virtual_duration_ms": sim.now / MS, "events": sim.events_processed,
        "delivered": sim.delivered, "dropped": sim.dropped,
        "trace_hash": sim.trace.hash(), "config": _jsonable(asdict(cfg)),
    }
    if layout.sharded:
        summary["shards"] = {str(s): list(r) for s, r in layout.shards.items()}
        summary["recall_at_10_merged"] = merged
    return summary


def _searches(client: Client) -> dict[str, Any]:
    """The searches' part of the summary."""
    return {"searches": {**client.search_counts, "unanswered": len(client.searching)},
            "read_your_writes_violations": client.ryw_violations,
            "search_latency_ms": percentiles(client.search_latency_ms)}


def render(s: dict[str, Any], cfg: ClusterConfig) -> str:
    """The summary ``s`` of a run of ``cfg`` as the lines ``graphrep sim`` prints."""
    b, lag_ms = s["bytes_per_insert"], s["lag_ms"]
    shape = (f"{cfg.nodes} nodes, {cfg.shards} shard(s) of {len(s['shards']['0'])} "
             f"replicas" if cfg.sharded else f"{cfg.nodes} replicas")
    missing = (f" (missing {s['lost_write_replicas']} replica copies)"
               if s["lost_write_replicas"] else "")
    unmeasured = "none measured (no query, or no live vector)"
    recall = ", ".join(f"{n} {r:.3f}" for n, r in s["recall_at_10"].items()) or unmeasured
    out = [f"policy {s['policy']}, {shape}, seed {s['seed']}, nemesis {s['nemesis']} "
           f"({s['faults']} faults), concern {cfg.concern}"]
    if cfg.replica_regions:
        nodes: dict[str, list[str]] = {}
        for i, region in enumerate(cfg.replica_regions):
            nodes.setdefault(region, []).append(f"r{i}")
        out.append("regions             " + "; ".join(
            f"{r}: {', '.join(n)}" for r, n in nodes.items())
            + f"; client in {cfg.client_region}")
    if cfg.sharded:
        out.append("placement           " + "; ".join(
            f"shard {k}: {', '.join(v)}" for k, v in s["shards"].items()))
    out += [
        f"converged           {s['converged']} (after heal: {s['converge_ms_after_heal']} "
        f"ms)",
        f"writes              {s['acked_writes']} acknowledged, {s['lost_writes']} lost"
        f"{missing}, {s['failed_writes']} refused, {s['unacked_writes']} unacknowledged",
        f"bytes per insert    {b['total']:.0f} (vector {b['vector']:.0f}, edges "
        f"{b['edges']:.0f}, metadata {b['metadata']:.0f}, snapshot {b['snapshot']:.0f}, "
        f"repair {b['repair']:.0f})",
        f"replica distance computations per insert "
        f"{s['replica_distance_computations_per_insert']:.1f}",
        f"lag                 p50 {lag_ms['p50']:.1f} ms, p95 {lag_ms['p95']:.1f}, "
        f"p99 {lag_ms['p99']:.1f}",
        f"recall@10           {recall}; top-10 agreement {s['topk_agreement']:.3f}"]
    if cfg.sharded:
        merged = s["recall_at_10_merged"]
        out.append(f"scatter-gather      recall@10 "
                   f"{unmeasured if merged is None else format(merged, '.3f')} (each "
                   "shard's first replica, merged by distance)")
    out.append(f"elections           {s['elections']}; protocol errors {s['protocol_errors']}")
    if cfg.searches:
        q, sl = s["searches"], s["search_latency_ms"]
        out.append(f"searches            {q['sent']} to {cfg.read_preference}: {q['ok']} ok, "
                   f"{q['stale']} stale ({q['retried']} retried at the leader), "
                   f"{q['errors']} errors, {q['unanswered']} unanswered; read-your-writes "
                   f"violations {s['read_your_writes_violations']}; latency p50 "
                   f"{sl['p50']:.1f} ms, p99 {sl['p99']:.1f}")
    out.append(f"trace hash          {s['trace_hash']}")
    return "\n".join(out)


def _jsonable(obj: Any) -> Any:
    """``obj`` with containers as dicts and lists, and anything not JSON-able as its repr."""
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, int | float | str | bool) or obj is None:
        return obj
    return repr(obj)

"""What the checker of a cluster run measures, from the end state, the metrics and the
trace.

It asserts nothing: every function returns figures, the run's summary
(:mod:`graphrep.cluster.summary`) reports them, and the tests assert on the summary.

* :func:`lost_writes`: acknowledged writes not in effect on a live replica;
* :func:`search_quality`: every replica's recall@10 (recall@n on a shard with fewer
  live vectors), the replicas' top-10 agreement and, sharded, a scatter-gather search's
  recall;
* :func:`lag`: replication lag, from the ``appended`` and ``applied`` metrics;
* :func:`entry_bytes`: the vector and edge bytes of the log entries the replicas sent
  each other (:func:`replica_sends`, from the trace), split by the entries' own formats;
* :func:`metric_sum`, :func:`metric_count` and :func:`percentiles`: what the summary
  adds up.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from graphrep.cluster.config import SEARCH_K, ClusterConfig, Layout
from graphrep.datasets import ground_truth, recall_at_k
from graphrep.errors import InvalidArgument, ProtocolError
from graphrep.protocol.entries import entry_parts
from graphrep.protocol.messages import Append, decode
from graphrep.sansio import MS
from graphrep.sim.engine import Simulation

__all__ = ["entry_bytes", "lag", "lag_samples", "lost_writes", "metric_count", "metric_sum",
           "percentiles", "replica_sends", "search_quality"]


def percentiles(values: list[float]) -> dict[str, float]:
    """The 50th, 95th and 99th percentiles of ``values`` (all 0.0 if there are none)."""
    if not values:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0}
    a = np.asarray(values, dtype=np.float64)
    return {f"p{q}": float(np.percentile(a, q)) for q in (50, 95, 99)}


def lost_writes(acked: Sequence[Mapping[str, Any]], layout: Layout,
                reps: Mapping[tuple[str, int], Any]) -> tuple[int, list[dict[str, Any]]]:
    """Acknowledged writes not in effect on some live replica of the write's shard (an
    insert absent, unless a later acknowledged delete removed it; a delete's id still
    present): how many distinct writes, and every (write, replica) pair missing, as the
    write's record plus ``replica`` (one write may be missing from several replicas)."""
    pairs: list[dict[str, Any]] = []
    writes = 0
    deleted = {a["id"] for a in acked if a["op"] == "delete"}
    for a in acked:
        missing = 0
        for n in layout.shards[a["shard"]]:
            r = reps[(n, a["shard"])]
            if r is None:
                continue
            present = a["id"] in r.index and not r.index.is_deleted(a["id"])
            if (a["op"] == "insert" and a["id"] not in deleted and not present) or \
                    (a["op"] == "delete" and present):
                pairs.append({"replica": layout.label(n, a["shard"]), **a})
                missing += 1
        writes += missing > 0
    return writes, pairs


def search_quality(cfg: ClusterConfig, layout: Layout, reps: Mapping[tuple[str, int], Any],
                   vectors: np.ndarray, queries: np.ndarray,
                   ) -> tuple[dict[str, float], float, float | None]:
    """Recall@10 of every replica against exact ground truth of its shard's live set
    (recall@n for a shard with n < 10 live vectors);
    the share of (shard, query) pairs on which all of a shard's replicas return the
    same top 10; and, sharded, the recall of a scatter-gather search (every shard's
    first live replica searched, results merged by distance) against the whole set."""
    recall: dict[str, float] = {}
    same: list[bool] = []
    gathered: list[tuple[np.ndarray, np.ndarray]] = []  # each shard's first replica
    all_live: list[np.ndarray] = []
    if not len(queries):
        return recall, 0.0, None
    beam = cfg.search_L or cfg.setting("L")
    for s in sorted(layout.shards):
        up = [(n, reps[(n, s)]) for n in layout.shards[s] if reps[(n, s)] is not None]
        some = next((r for _, r in up if len(r.index)), None)
        if some is None:
            continue
        live = some.index.ids()
        all_live.append(live)
        gt, _ = ground_truth(vectors[live], queries, min(SEARCH_K, len(live)), ids=live)
        results = [r.index.search(queries, k=SEARCH_K, L=beam) for _, r in up]
        gathered.append(results[0])
        for (n, _), (ids, _) in zip(up, results, strict=True):
            recall[layout.label(n, s)] = recall_at_k(ids, gt, gt.shape[1])
        first = results[0][0]
        same += [all(np.array_equal(ids[i], first[i]) for ids, _ in results)
                 for i in range(len(queries))]
    agreement = float(np.mean(same)) if same else 0.0
    merged = None
    if layout.sharded and all_live:
        live = np.concatenate(all_live)
        gt, _ = ground_truth(vectors[live], queries, min(SEARCH_K, len(live)), ids=live)
        ids = np.concatenate([g[0] for g in gathered], axis=1)
        dists = np.concatenate([g[1] for g in gathered], axis=1)
        order = np.argsort(dists, axis=1, kind="stable")[:, :SEARCH_K]
        merged = recall_at_k(np.take_along_axis(ids, order, axis=1), gt, gt.shape[1])
    return recall, agreement, merged


def metric_count(metrics: dict[str, list], name: str) -> float:
    """How many ``name`` metrics (a shard's ``name@shard`` included) the run emitted."""
    return float(sum(1 for k in metrics["name"] if k == name or k.startswith(name + "@")))


def metric_sum(metrics: dict[str, list], name: str) -> float:
    """The sum of the ``name`` metrics (a shard's ``name@shard`` included)."""
    return float(sum(v for k, v in zip(metrics["name"], metrics["value"], strict=True)
                     if k == name or k.startswith(name + "@")))


def lag_samples(sim: Simulation, layout: Layout) -> list[float]:
    """Replication lag in ms: for each log position a leader appended, from that append
    to each follower applying it (one value per position and follower that applied it;
    a leader applies what it appends at once and reports nothing).
    Measured from the ``appended`` and ``applied`` metrics the replicas emit (per shard:
    positions are a shard's own)."""
    appended: dict[int, dict[int, int]] = {s: {} for s in layout.shards}
    applied = {s: {n: [] for n in reps} for s, reps in layout.shards.items()}
    names = {layout.metric(k, s): (k, s) for s in layout.shards for k in ("appended", "applied")}
    for t, node, name, value in sim.metrics:  # in time order
        kind, s = names.get(name, ("", -1))
        if kind == "appended":
            appended[s].setdefault(int(value), t)
        elif kind == "applied" and node in applied[s]:
            applied[s][node].append((t, int(value)))
    lags = []
    for s, reps in layout.shards.items():
        times = {n: [t for t, _ in applied[s][n]] for n in reps}
        for pos, t0 in appended[s].items():
            for n in reps:
                seen = applied[s][n]
                for i in range(bisect_left(times[n], t0), len(seen)):
                    if seen[i][1] > pos:
                        lags.append((seen[i][0] - t0) / MS)
                        break
    return lags


def lag(sim: Simulation, layout: Layout) -> dict[str, float]:
    """The percentiles of :func:`lag_samples`."""
    return percentiles(lag_samples(sim, layout))


def replica_sends(sim: Simulation, layout: Layout) -> Iterator[tuple[str, str, Any]]:
    """Every message one replica node sent another, as ``(src, dst, payload)`` in the
    order sent, read from the run's trace (the sends the simulator counts in
    ``link_stats``, lost ones included). Needs a traced run (``run_cluster`` always
    traces)."""
    if not sim.config.trace:
        raise InvalidArgument("the messages between replicas are read from the trace: run "
                              "the simulation with SimConfig(trace=True)")
    nodes = set(layout.names)
    for record in sim.trace.records:
        if record[1] == "send" and record[2] in nodes and record[3] in nodes:
            yield record[2], record[3], record[4]


def entry_bytes(sends: Iterable[tuple[str, str, Any]], layout: Layout) -> dict[str, int]:
    """The ``vector`` and ``edges`` bytes of the log entries in the ``Append`` messages
    ``sends`` (``(src, dst, payload)``, as :func:`replica_sends` gives them), each part as
    :func:`~graphrep.protocol.entries.entry_parts` reads it from the entry's body.

    An entry counts once for each follower of its shard (the shard's replicas but one),
    however many times it was sent: it is named by (shard, term, log position), which
    Raft gives to one entry only, so a retransmission, or the entries a new leader sends
    a replica that holds them already, add nothing here (they are metadata in the
    summary). An entry counts if it was sent at all: one that a later leader overwrote
    counts too, as it crossed the network, and one that its leader wrote but never sent
    (it crashed or was deposed first) does not. A message that does not decode or is
    for a shard the layout does not have, and an entry whose body is damaged, count
    nothing (the replicas refuse them)."""
    seen: set[tuple[int, int, int]] = set()
    total = {"vector": 0, "edges": 0}
    for _, _, payload in sends:
        try:
            msg = decode(payload)
        except ProtocolError:
            continue
        if type(msg) is not Append or msg.shard not in layout.shards:
            continue
        followers = len(layout.shards[msg.shard]) - 1
        for i, entry in enumerate(msg.entries):
            key = (msg.shard, entry[0], msg.prev_end + i)
            if key in seen:
                continue
            try:
                parts = entry_parts(entry)
            except ProtocolError:
                continue
            seen.add(key)
            total["vector"] += parts["vector"] * followers
            total["edges"] += parts["edges"] * followers
    return total

"""Recovery paths of the leader policy: snapshot catch-up after log truncation,
anti-entropy repair of a corrupted replica, a rolled-back replica, and the replay
baseline drifting where edge deltas do not."""

from __future__ import annotations

import dataclasses

import numpy as np

from graphrep.cluster import ClusterConfig, run_cluster
from graphrep.protocol.replica import FOLLOWER
from graphrep.sansio import MS
from graphrep.sim.engine import Simulation
from graphrep.sim.nemesis import Fault

from .test_runner import check_invariants


def a_follower(sim: Simulation) -> str:
    return next(n for n in sim.nodes if n.startswith("r")
                and sim.process(n) is not None and sim.process(n).role == FOLLOWER)


def test_a_follower_behind_the_truncated_log_catches_up_by_snapshot():
    cfg = ClusterConfig(writes=300, deletes=20, seed=4, queries=30,
                        replica={"snapshot_every": 50, "log_keep": 10})
    cut = [Fault(300 * MS, "partition", groups=(("r0", "r1"), ("r2",))),
           Fault(900 * MS, "heal")]
    s = run_cluster(cfg, schedule=cut)
    check_invariants(s)
    assert s["snapshot_installs"] >= 1 and s["snapshot_bytes"] > 0
    assert run_cluster(cfg, schedule=cut)["trace_hash"] == s["trace_hash"]


def corrupt(sim: Simulation) -> None:
    """Rewire one node's neighbour list on a follower, behind the protocol's back."""
    index = sim.process(a_follower(sim)).index
    ids = index.ids()
    victim = int(ids[len(ids) // 2])
    records = index.export_records([victim])
    others = np.sort(ids[ids != victim][: records.neighbours.size]).astype(np.int64)
    index.overwrite_records(dataclasses.replace(records, neighbours=others))


def test_anti_entropy_finds_and_repairs_a_corrupted_replica():
    cfg = ClusterConfig(writes=120, deletes=0, seed=6, queries=30)
    end_of_writes = 2 * MS * 130 + 400 * MS
    s = run_cluster(cfg, actions=[(end_of_writes, corrupt)], min_settle_ns=3_000 * MS)
    check_invariants(s)
    assert s["anti_entropy_mismatches"] >= 1 and 0 < s["repaired_records"] < 20
    # the same corruption with anti-entropy off stays: the convergence check catches it
    off = run_cluster(cfg.with_replica(anti_entropy_ticks=0),
                      actions=[(end_of_writes, corrupt)], min_settle_ns=3_000 * MS)
    assert len(set(off["digests"].values())) == 2 and not off["converged"]


def test_a_replica_rolled_back_behind_the_protocols_back_recovers():
    saved: dict = {}

    def save(sim: Simulation) -> None:
        name = a_follower(sim)
        saved["name"], saved["bytes"] = name, sim.process(name).index.to_bytes()

    def roll_back(sim: Simulation) -> None:
        from graphrep.ann import VamanaIndex
        sim.process(saved["name"]).index = VamanaIndex.from_bytes(saved["bytes"])

    cfg = ClusterConfig(writes=150, deletes=0, seed=8, queries=30)
    s = run_cluster(cfg, actions=[(400 * MS, save), (500 * MS, roll_back)],
                    min_settle_ns=2_000 * MS)
    check_invariants(s)
    assert s["apply_failures"] + s["repaired_records"] >= 1


def test_replay_drifts_where_edge_deltas_do_not():
    crash = [Fault(800 * MS, "crash", node="r2"), Fault(900 * MS, "restart", node="r2")]
    common = dict(writes=300, deletes=20, seed=9, queries=100, search_L=12)
    leader = run_cluster(ClusterConfig(**common, replica={"policy": "leader"}), schedule=crash)
    replay = run_cluster(ClusterConfig(**common, replica={"policy": "replay"}), schedule=crash)
    check_invariants(leader)
    assert replay["lost_writes"] == 0 and replay["acked_writes"] == leader["acked_writes"]
    assert len(set(replay["digests"].values())) > 1  # the rebuilt replica has another graph
    assert replay["topk_agreement"] < 1.0
    assert replay["replica_distance_computations_per_insert"] > 0
    assert leader["replica_distance_computations_per_insert"] == 0


def test_the_snapshot_baseline_ships_whole_indexes_and_converges():
    common = dict(writes=200, deletes=10, seed=5, queries=30, nemesis="crashes")
    snap = run_cluster(ClusterConfig(**common, replica={"policy": "snapshot"}))
    check_invariants(snap)
    assert snap["snapshot_installs"] >= 2 and snap["snapshot_bytes"] > 0
    assert snap["replica_distance_computations_per_insert"] == 0

"""The leader policy under each nemesis: DESIGN.md's invariants on small clusters.

Each scenario runs a 3-replica cluster through a fault schedule, undoes the faults and
checks: convergence (equal digests, identical top-10 everywhere), no lost acknowledged
write, no unreachable node, zero distance computations on followers, and determinism
(the same trace hash when run again).
"""

from __future__ import annotations

import pytest

from graphrep.errors import InvalidArgument
from graphrep.sim.cluster import ClusterConfig, run_cluster


def check_invariants(s: dict) -> None:
    assert s["converged"], s
    assert len(set(s["digests"].values())) == 1
    assert s["lost_writes"] == 0, s["lost_examples"]
    assert s["unacked_writes"] == 0 and s["failed_writes"] == 0
    assert s["topk_agreement"] == 1.0
    assert min(s["recall_at_10"].values()) >= 0.9
    assert s["replica_distance_computations_per_insert"] == 0.0


@pytest.mark.parametrize("nemesis", ["none", "partitions", "crashes", "loss", "leader-kill",
                                     "mixed"])
def test_leader_policy_keeps_every_invariant_under(nemesis: str):
    cfg = ClusterConfig(writes=150, deletes=15, nemesis=nemesis, seed=11, queries=40)
    s = run_cluster(cfg)
    check_invariants(s)
    assert s["acked_writes"] == 165
    if nemesis == "leader-kill":
        assert s["faults"] > 0 and s["elections"] >= 2  # the leader really died
    elif nemesis != "none":
        assert s["faults"] > 0 and s["dropped"] > 0  # the faults really happened
    assert run_cluster(cfg)["trace_hash"] == s["trace_hash"]


def test_leader_kill_forces_failover_without_losing_majority_writes():
    s = run_cluster(ClusterConfig(writes=200, deletes=0, nemesis="leader-kill", seed=3,
                                  queries=20))
    check_invariants(s)
    assert s["elections"] >= 2


def test_duplicated_and_reordered_deliveries_change_nothing():
    s = run_cluster(ClusterConfig(writes=150, deletes=10, seed=5, queries=20,
                                  duplicate=0.2, reorder=0.3))
    check_invariants(s)


@pytest.mark.parametrize("concern", ["one", "all"])
def test_other_write_concerns(concern: str):
    s = run_cluster(ClusterConfig(writes=100, deletes=5, seed=2, queries=20, concern=concern,
                                  nemesis="partitions"))
    check_invariants(s)


def test_bad_cluster_configs_are_refused_clearly():
    for kwargs, match in (({"nemesis": "meteor"}, "unknown nemesis"),
                          ({"policy": "gossip"}, "unknown policy"),
                          ({"concern": "most"}, "write concern"),
                          ({"deletes": 10, "writes": 5}, "cannot exceed"),
                          ({"nodes": 0}, "nodes")):
        with pytest.raises(InvalidArgument, match=match):
            ClusterConfig(**kwargs)

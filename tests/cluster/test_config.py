"""ClusterConfig: what it refuses, the replica settings given once, and the layout."""

from __future__ import annotations

import dataclasses

import pytest

from graphrep.cluster import REPLICA_DEFAULTS, ClusterConfig, Layout
from graphrep.errors import InvalidArgument
from graphrep.protocol.replica import ReplicaConfig


@pytest.mark.parametrize("kwargs,match", [
    ({"nemesis": "meteor"}, "unknown nemesis"),
    ({"replica": {"policy": "gossip"}}, "unknown policy"),
    ({"concern": "most"}, "write concern"),
    ({"deletes": 10, "writes": 5}, "cannot exceed"),
    ({"nodes": 0}, "nodes"),
    ({"replica": {"sync": "sometimes"}}, "sync"),
    ({"replica": {"max_inflight": -1}}, "max_inflight"),
    ({"cpu_ns_per_distance": -1}, "cpu_ns_per_distance"),
    ({"cpu_ns_per_entry": 1.5}, "cpu_ns_per_entry"),
    ({"shards": 0}, "shards must be an int in"),
    ({"shards": 65}, "shards must be an int in"),
    ({"replication": 4}, r"replication must be an int in \[0, nodes=3\]"),
    ({"shards": 2, "searches": 5}, "client searches .* one shard only"),
    ({"read_preference": "closest"}, "read preference.*nearest"),
    ({"dataset": "sift"}, "unknown dataset.*fmnist"),
    ({"dataset": "fmnist", "dim": 32}, "784"),
    ({"searches": 5, "queries": 0}, "queries >= 1"),
    ({"searches": -1}, "searches"),
    ({"replica_regions": ("a",)}, "one per replica"),
    ({"replica": {"Rr": 8}}, r"unknown replica setting\(s\) 'Rr'; ReplicaConfig has .*policy"),
    ({"replica": {"dim": 8}}, "come from the run.*set dim and seed on ClusterConfig"),
    ({"replica": {"replicas": ("a",), "index_seed": 1}}, "'index_seed', 'replicas'"),
    ({"replica": [("R", 8)]}, "replica must be a mapping"),
])
def test_a_bad_config_is_refused_clearly(kwargs: dict, match: str):
    with pytest.raises(InvalidArgument, match=match):
        ClusterConfig(**kwargs)


def test_replica_settings_are_given_once_and_read_back_with_their_defaults():
    cfg = ClusterConfig()
    assert cfg.replica == dict(REPLICA_DEFAULTS) == {"R": 16, "L": 48}
    assert cfg.policy == cfg.setting("policy") == ReplicaConfig.policy
    assert cfg.setting("snapshot_every") == ReplicaConfig.snapshot_every
    other = cfg.with_replica(policy="replay", L=24)
    assert other.replica == {"L": 24, "R": 16, "policy": "replay"}
    assert list(other.replica) == ["L", "R", "policy"]  # by name
    assert ClusterConfig(replica={"policy": "leader", "sync": "always"}) == cfg
    assert other.policy == "replay" and cfg.policy == "leader"  # cfg itself unchanged
    assert ClusterConfig(replica={"R": 16}) == cfg
    with pytest.raises(InvalidArgument, match="not a replica setting"):
        cfg.setting("dim")


def test_the_replicas_config_is_the_settings_plus_who_and_what():
    cfg = ClusterConfig(dim=8, seed=5, replica={"policy": "snapshot", "sync": "tick",
                                                "anti_entropy_ticks": 0})
    assert cfg.replica_config(("r0", "r1"), 2) == ReplicaConfig(
        replicas=("r0", "r1"), shard=2, dim=8, index_seed=5, R=16, L=48, policy="snapshot",
        sync="tick", anti_entropy_ticks=0)


def test_one_shard_on_every_node_is_the_unsharded_layout():
    cfg = ClusterConfig(writes=60, deletes=6, seed=2, queries=10)
    assert not cfg.sharded and Layout.of(cfg).shards == {0: ("r0", "r1", "r2")}
    assert not dataclasses.replace(cfg, replication=3).sharded  # 3 of 3 nodes: all
    assert dataclasses.replace(cfg, replication=2).sharded  # one shard on 2 of 3 nodes
    layout = Layout.of(dataclasses.replace(cfg, nodes=4, shards=3, replication=3))
    assert layout.sharded and sorted(layout.shards) == [0, 1, 2]
    assert all(len(r) == 3 for r in layout.shards.values())
    assert layout.label("r1", 2) == "r1@2" and layout.metric("applied", 2) == "applied@2"

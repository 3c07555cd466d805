"""Sharded clusters: every node a ShardHost, one replica and one index per shard it holds.

Each scenario checks the invariants shard by shard (equal digests among a shard's
replicas, no lost acknowledged write, identical top-10), that every id lives in its own
shard and nowhere else, that the replicas sit where placement put them, and determinism.
A host that lets its shards' durable state collide shows that these checks can fail.
"""

from __future__ import annotations

import pytest

from graphrep.cluster import ClusterConfig, run_cluster, runner
from graphrep.errors import InvalidArgument
from graphrep.protocol.host import ShardHost
from graphrep.protocol.placement import place
from graphrep.sansio import DurableWrite
from graphrep.sim.engine import Simulation

SHARDED = dict(nodes=5, shards=4, replication=3, writes=240, deletes=24, queries=30, seed=3)


def check_sharded(s: dict, cfg: ClusterConfig) -> None:
    assert s["converged"], s
    assert s["lost_writes"] == 0, s["lost_examples"]
    assert s["unacked_writes"] == 0 and s["failed_writes"] == 0
    assert s["acked_writes"] == cfg.writes + cfg.deletes
    assert s["topk_agreement"] == 1.0
    assert s["damaged_entries"] == s["damaged_snapshots"] == s["apply_failures"] == 0
    assert min(s["recall_at_10"].values()) >= 0.9 and s["recall_at_10_merged"] >= 0.9
    for shard, nodes in s["shards"].items():
        assert len({s["digests"][f"{n}@{shard}"] for n in nodes}) == 1
    assert len({s["digests"][f"{nodes[0]}@{shard}"] for shard, nodes in s["shards"].items()}) \
        == cfg.shards  # different data, different indexes


def keep_sim(holder: list) -> tuple[int, object]:
    """An action that hands the run's Simulation to the test (at virtual time 0)."""
    return (0, holder.append)


@pytest.mark.parametrize("nemesis", ["none", "mixed", "leader-kill"])
def test_a_sharded_cluster_keeps_every_invariant_in_every_shard_under(nemesis: str):
    cfg = ClusterConfig(nemesis=nemesis, **SHARDED)
    held: list[Simulation] = []
    s = run_cluster(cfg, actions=[keep_sim(held)])
    check_sharded(s, cfg)
    regions = {f"r{i}": "local" for i in range(cfg.nodes)}
    expected = {str(p.shard): list(p.replicas) for p in place(regions, {
        k: ("local",) for k in range(cfg.shards)}, 3)}
    assert s["shards"] == expected
    (sim,) = held
    for shard, nodes in expected.items():
        for n in nodes:
            ids = sim.process(n).replicas[int(shard)].index.ids(include_deleted=True)
            assert len(ids) and all(i % cfg.shards == int(shard) for i in ids.tolist())
    for n in regions:  # a node holds exactly the shards placed on it
        assert sorted(sim.process(n).replicas) == sorted(
            int(k) for k, nodes in expected.items() if n in nodes)
    if nemesis == "leader-kill":
        assert s["faults"] > 0 and s["elections"] > cfg.shards  # leaders really died
    elif nemesis == "mixed":
        assert s["faults"] > 0 and s["dropped"] > 0
    assert run_cluster(cfg)["trace_hash"] == s["trace_hash"]


def test_sharded_replicas_start_from_their_shards_share_of_the_initial_index():
    cfg = ClusterConfig(nodes=3, shards=2, writes=60, deletes=0, initial=200, queries=20,
                        seed=1)
    held: list[Simulation] = []
    s = run_cluster(cfg, actions=[keep_sim(held)])
    check_sharded(s, cfg)
    index = held[0].process("r1").replicas[1].index
    assert len(index) == 130 and index.ids().tolist() == list(range(1, 260, 2))


def test_one_shard_on_every_node_is_the_unsharded_cluster():
    cfg = ClusterConfig(writes=60, deletes=6, seed=2, queries=10)
    s = run_cluster(cfg)
    assert "shards" not in s and set(s["digests"]) == {"r0", "r1", "r2"}


class _CollidingHost(ShardHost):
    """A broken host: its shards' durable writes share one key space, so on a restart
    each replica may read another shard's log."""

    @staticmethod
    def _wrap(shard: int, effects: list) -> list:
        out = ShardHost._wrap(shard, effects)
        return [DurableWrite((0, e.key[1]), e.value) if type(e) is DurableWrite else e
                for e in out]


def test_a_host_whose_shards_overwrite_each_others_disk_is_noticed_and_repaired(monkeypatch):
    """A restarted replica reads another shard's log records: their entries do not apply
    to its snapshot and log, so it cuts its log there as damaged (and says so), and the
    leader sends the entries again: the run still converges with no write lost."""
    monkeypatch.setattr(runner, "ShardHost", _CollidingHost)
    cfg = ClusterConfig(nemesis="crashes", **SHARDED)
    s = run_cluster(cfg)
    assert s["damaged_entries"] > 0 and s["follower_regressions"] > 0
    assert s["converged"] and s["lost_writes"] == 0


def test_a_bootstrap_index_is_refused_for_a_sharded_run():
    with pytest.raises(InvalidArgument, match="builds one per shard"):
        run_cluster(ClusterConfig(nodes=3, shards=2, writes=10, deletes=0, initial=20),
                    bootstrap=b"not used")


def test_a_shard_with_fewer_than_ten_live_vectors_is_measured_at_recall_at_n():
    """20 writes over 3 shards leave 6-7 live vectors a shard: recall is recall@n of
    that shard (it raised "k=10 is larger than the base set" after the whole run)."""
    cfg = ClusterConfig(nodes=3, shards=3, writes=20, deletes=2, queries=5, seed=1)
    s = run_cluster(cfg)
    assert s["converged"] and s["lost_writes"] == 0
    assert len(s["recall_at_10"]) == 9 and min(s["recall_at_10"].values()) == 1.0
    assert s["recall_at_10_merged"] == 1.0

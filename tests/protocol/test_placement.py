"""Shard placement: residency, determinism, spreading, and the errors it refuses with."""

from __future__ import annotations

import pytest

from graphrep.errors import GraphrepError, PlacementError
from graphrep.protocol.placement import ShardPlacement, place

NODES = {"eu1": "eu", "eu2": "eu", "eu3": "eu", "eu4": "eu",
         "us1": "us", "us2": "us", "us3": "us",
         "ap1": "ap"}


def test_replicas_live_only_in_the_shards_allowed_regions():
    shards = {0: ["eu"], 1: ["us"], 2: ["eu", "ap"], 3: ["us", "ap"]}
    out = place(NODES, shards, replication=3)
    assert [p.shard for p in out] == [0, 1, 2, 3]
    for p in out:
        assert p.regions == tuple(sorted(shards[p.shard]))
        assert len(p.replicas) == 3 and len(set(p.replicas)) == 3
        assert {NODES[n] for n in p.replicas} <= set(p.regions), p
    # the only ap node is a candidate for shards 2 and 3, never for 0 or 1
    assert all(NODES[n] == "eu" for n in out[0].replicas)
    assert all(NODES[n] == "us" for n in out[1].replicas)


def test_a_shard_gets_exactly_the_nodes_of_a_region_that_has_just_enough():
    (p,) = place(NODES, {5: ["us"]}, replication=3)
    assert p == ShardPlacement(5, ("us",), ("us1", "us2", "us3"))


def test_regions_are_deduplicated_and_sorted():
    (p,) = place(NODES, {0: ["us", "eu", "us"]}, replication=2)
    assert p.regions == ("eu", "us")


def test_placement_is_deterministic_and_ignores_dict_insertion_order():
    shards = {0: ["eu", "us"], 1: ["eu"], 2: ["us", "ap"], 7: ["eu", "us", "ap"]}
    first = place(NODES, shards)
    assert place(NODES, shards) == first
    reversed_nodes = dict(reversed(list(NODES.items())))
    reversed_shards = {s: list(reversed(r)) for s, r in reversed(list(shards.items()))}
    assert list(reversed_nodes) != list(NODES)  # really another insertion order
    assert place(reversed_nodes, reversed_shards) == first
    assert place(reversed_nodes, shards) == first


def test_shard_s_starts_at_candidate_s_and_wraps_around():
    nodes = {f"n{i}": "r" for i in range(5)}
    got = {p.shard: p.replicas for p in place(nodes, {s: ["r"] for s in range(7)}, 3)}
    assert got[0] == ("n0", "n1", "n2")
    assert got[1] == ("n1", "n2", "n3")
    assert got[2] == ("n2", "n3", "n4")
    assert got[3] == ("n0", "n3", "n4")  # wrapped, then sorted
    assert got[4] == ("n0", "n1", "n4")
    assert got[5] == got[0] and got[6] == got[1]  # s mod 5
    # every shard is on distinct nodes, and the load is spread evenly over the five
    load = {n: sum(n in r for s, r in got.items() if s < 5) for n in nodes}
    assert set(load.values()) == {3}


def test_shards_sharing_regions_do_not_all_land_on_the_same_nodes():
    out = place(NODES, {s: ["eu"] for s in range(4)}, replication=1)
    assert sorted(p.replicas[0] for p in out) == ["eu1", "eu2", "eu3", "eu4"]


def test_no_shards_places_nothing():
    assert place(NODES, {}) == []


def test_too_few_nodes_names_the_shard_the_regions_and_the_count():
    with pytest.raises(PlacementError) as info:
        place(NODES, {0: ["eu"], 4: ["ap"]}, replication=2)
    msg = str(info.value)
    assert "shard 4" in msg and "'ap'" in msg and "1 node" in msg and "ap1" in msg
    assert "add nodes" in msg
    with pytest.raises(PlacementError, match="only 0 node"):
        place(NODES, {0: ["mars"]}, replication=1)


def test_a_shard_without_regions_is_refused():
    with pytest.raises(PlacementError, match="shard 3 has no allowed region"):
        place(NODES, {3: []}, replication=1)


@pytest.mark.parametrize("replication", [0, -1, 1.5, "3", None])
def test_bad_replication_is_refused(replication):
    with pytest.raises(PlacementError, match="replication must be an int >= 1"):
        place(NODES, {0: ["eu"]}, replication=replication)


@pytest.mark.parametrize("shard", [-1, "0", 1.0, None])
def test_bad_shard_ids_are_refused(shard):
    with pytest.raises(PlacementError, match="shard ids are ints >= 0"):
        place(NODES, {shard: ["eu"]}, replication=1)


def test_placement_errors_belong_to_the_graphrep_and_value_error_families():
    with pytest.raises(GraphrepError):
        place(NODES, {0: ["eu"]}, replication=0)
    with pytest.raises(ValueError):
        place(NODES, {0: ["eu"]}, replication=0)


def test_a_bad_shard_id_among_good_ones_is_a_placement_error():
    with pytest.raises(PlacementError, match="shard ids are ints >= 0"):
        place(NODES, {0: ["eu"], "x": ["eu"]}, replication=1)

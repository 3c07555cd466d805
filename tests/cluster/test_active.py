"""Active-active runs (graphrep.cluster.active): writers in three regions at once."""

from __future__ import annotations

import numpy as np
import pytest

from graphrep.cluster.active import ActiveConfig, Writer, run_active
from graphrep.errors import InvalidArgument
from graphrep.protocol.crdt import CrdtApplier

SMALL = dict(writes=60, queries=40)


@pytest.fixture(scope="module")
def partitioned():
    return run_active(ActiveConfig(nemesis="region-partition", overlap=0.5, deletes=6,
                                   **SMALL))


def test_crdt_converges_after_a_region_partition_with_nothing_lost(partitioned):
    s = partitioned
    assert s["converged"] and s["digests_equal"]
    assert s["writes_acknowledged"] == s["writes_sent"] == 3 * 60
    assert set(s["lost"].values()) == {0}
    assert set(s["unreachable"].values()) == {0}
    # within 0.01 of one writer that applied every surviving insert
    assert min(s["recall_at_10"].values()) >= s["recall_single_writer"] - 0.01


def test_without_links_a_partition_costs_recall(monkeypatch):
    """The links are what keeps recall: without them, nodes written near each other in
    two regions during the partition were never offered to each other (all reachable,
    the digests equal, and recall@10 far below one writer's)."""
    monkeypatch.setattr(CrdtApplier, "_link", lambda self, *a: None)
    s = run_active(ActiveConfig(nemesis="region-partition", overlap=0.5, deletes=6,
                                **SMALL))
    assert s["converged"] and s["digests_equal"]
    assert min(s["recall_at_10"].values()) < s["recall_single_writer"] - 0.05


def test_crdt_writes_wait_for_their_own_region_only(partitioned):
    # the nearest other region is 40 ms away one way: no write waited for one
    assert all(d["p99_ms"] < 40 for d in partitioned["latency"].values())


def test_one_stretched_leader_makes_writes_cross_regions():
    s = run_active(ActiveConfig(policy="leader", **SMALL))
    assert s["converged"] and s["digests_equal"]
    # a majority of 9 spans two regions: every write waits for at least eu <-> us
    assert all(d["p50_ms"] > 40 for d in s["latency"].values())


def test_a_run_is_deterministic():
    a = run_active(ActiveConfig(writes=30, queries=10, seed=3))
    b = run_active(ActiveConfig(writes=30, queries=10, seed=3))
    assert a["trace_hash"] == b["trace_hash"] and a["digests"] == b["digests"]


def test_residency_keeps_a_region_without_the_shard_out():
    cfg = ActiveConfig(allowed=("eu", "us"), **SMALL)
    s = run_active(cfg)
    assert s["converged"] and s["digests_equal"] and s["residency_violations"] == 0
    # ap's group holds only its own writes: its digest differs from the shard's
    assert {s["digests"][n] for n in cfg.group("ap")}.isdisjoint({s["digests"]["eu0"]})


@pytest.mark.parametrize("bad", [
    dict(regions=("eu", "mars")), dict(policy="gossip"), dict(nemesis="partitions"),
    dict(cut="ap", regions=("eu", "us")), dict(allowed=("ap",), regions=("eu", "us")),
    dict(allowed=("eu",), policy="leader"), dict(writes=0), dict(deletes=40, writes=60),
    dict(overlap=1.5)])
def test_bad_configs_are_refused(bad):
    with pytest.raises(InvalidArgument):
        ActiveConfig(**bad)


def test_a_writer_resends_what_was_not_acknowledged():
    w = Writer([("insert", 1, b"x")], ("a", "b"), start=0, interval=5, retry=100)
    assert len(w.on_timer(10, "write")) == 2  # to both targets
    assert w.on_timer(50, "retry") == []  # not yet due
    assert len(w.on_timer(110, "retry")) == 2


def test_ordered_converges_bit_for_bit_running_every_write_everywhere():
    s = run_active(ActiveConfig(policy="ordered", nemesis="region-partition", overlap=0.5,
                                deletes=6, **SMALL))
    assert s["converged"] and s["digests_equal"] and set(s["lost"].values()) == {0}
    assert all(d["p99_ms"] < 40 for d in s["latency"].values())  # acknowledged locally
    # the same inserts in the same order as one writer: the same recall
    assert min(s["recall_at_10"].values()) == s["recall_single_writer"]


def test_ordered_waits_for_every_region_before_running_a_write():
    """A write runs only once every region has been heard from past it: with one region
    cut off, the others' writes wait (acknowledged, not yet in the index)."""
    from graphrep.protocol.ordered import OrderedState

    cfg = ActiveConfig(policy="ordered", writes=40, queries=10)
    c = cfg.replica_configs()["eu0"]
    st = OrderedState(c)
    st.queue(0, 100, 0, 7, np.zeros(c.dim, "<f4").tobytes())
    assert st.run_ready() == 0 and 7 not in st  # regions 1 and 2 not heard past 100
    st.queue(1, 150, 2, 0, b"")  # a tick of region 1
    assert st.run_ready() == 0
    st.queue(2, 99, 2, 0, b"")  # region 2 is still behind
    assert st.run_ready() == 0
    st.queue(2, 101, 2, 0, b"")
    assert st.run_ready() == 1 and 7 in st


def test_visibility_crdt_at_home_at_once_ordered_after_every_region():
    crdt = run_active(ActiveConfig(**SMALL))
    ordered = run_active(ActiveConfig(policy="ordered", **SMALL))
    # crdt: searchable in its own region by the first look after the write (5 ms steps)
    assert crdt["visible_ms"]["local_p99"] <= 10
    # ordered: a write waits until every region has been heard from past it, which
    # takes at least the nearest other region's one-way delay (40 ms)
    assert ordered["visible_ms"]["local_p50"] > 40
    for s in (crdt, ordered):
        assert s["visible_ms"]["never_all"] == 0
        assert s["visible_ms"]["all_p50"] >= s["visible_ms"]["local_p50"]


def test_lww_regions_differ_after_merging_the_same_entries():
    """The naive baseline: full records, last writer wins per node. Nothing acknowledged
    is lost, but the regions end with different graphs from the same entries (a list
    written concurrently in two regions keeps only the later one, and what each region's
    own inserts changed before the other's records arrived differs). Shipping is causal
    (a shipper's log order), so no edge dangles."""
    s = run_active(ActiveConfig(policy="lww", overlap=1.0, **SMALL))
    assert s["quiet_ms"] is not None and set(s["lost"].values()) == {0}
    assert not s["digests_equal"] and not s["converged"]
    assert set(s["dangling_edges"].values()) == {0}
    assert all(d["p99_ms"] < 40 for d in s["latency"].values())


def test_crdt_forgets_every_deleted_node_once_every_region_has_passed_it(partitioned):
    # the pools still name some (ghosts); the dead keep no slot and no tombstone
    assert partitioned["garbage"] and all(g["tombstones"] == 0 and g["dead"] == 0
                                          for g in partitioned["garbage"].values())


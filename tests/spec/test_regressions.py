"""Schedules the fuzzer found breaking an invariant, shrunk, kept once fixed.

Each is the world config and the shrunk steps; each must now finish with every
invariant holding. The comment says what broke and what the fix was.
"""

from __future__ import annotations

from graphrep.spec import Step, WorldConfig, replay


def test_fuzz_seed_50_snapshot_reply_claimed_unsynced_entries():
    """sync=tick: a follower that had applied (not synced) entries 2..5 answered the
    leader's snapshot with "I hold it all"; the leader acknowledged an ``all`` write
    whose copy on that follower was only in memory (durability). Fixed: the follower
    syncs before claiming the snapshot."""
    cfg = WorldConfig(seed=50, sync="tick")
    steps = [Step("release", dst="n3", src="n2"),
             Step("insert", concern="one", count=7, read=-1, replica=2, shard=1),
             Step("heal"), Step("region_split"), Step("advance", ms=287),
             Step("insert", concern="all", count=5, read=-1, replica=1, shard=0),
             Step("hold_message", pick=72), Step("advance", ms=161)]
    summary = replay(cfg, steps)
    assert summary["acks"] >= 5


def test_fuzz_snapshot_seed_63_deposed_leader_claimed_a_snapshot_it_did_not_hold():
    """A deposed leader had applied entries of its own (uncommitted, later overwritten)
    up to position 9; offered the new leader's snapshot of 7 entries it answered "I hold
    it" because 7 <= applied, and the new leader counted it for an ``all`` write
    (durability), and it never caught up (convergence). Fixed: a snapshot counts as held
    only up to the commit position."""
    from graphrep.spec.fuzz import fuzz_seed

    result = fuzz_seed(63, "snapshot", 200, "mixed")
    assert result.ok, result.detail
    assert fuzz_seed(16, "leader", 200, "mixed").ok  # the same cause, under leader


def test_fuzz_leader_seeds_where_a_damaged_replica_became_leader():
    """Seeds 18 and 100: a follower's graph was damaged behind the protocol's back
    (seed 100: and persisted in its own snapshot); it became leader and its deltas were
    diffs against the damage, which the other replicas could not apply (a process
    error). Fixed: a new leader rebuilds its index from its durable snapshot and log,
    and a snapshot is checked against the log before it is persisted. Seed 242: the
    end-of-run anti-entropy round reached only the followers that were caught up at
    that moment; a follower is now compared as soon as it catches up."""
    from graphrep.spec.fuzz import fuzz_seed

    for seed in (18, 100, 242):
        result = fuzz_seed(seed, "leader", 200, "mixed")
        assert result.ok, (seed, result.detail)


def test_replay_is_not_given_damage_it_does_not_claim_to_repair():
    """Seed 135: ``replay`` has no graph anti-entropy (vector databases compare objects),
    so a corrupted list stayed and left a node unreachable. The ``corrupt`` step now
    applies only to policies registered with ``repairs_damage``."""
    from graphrep.spec.fuzz import fuzz_seed

    assert fuzz_seed(135, "replay", 200, "mixed").ok


def test_fuzz_seed_50041_a_retry_of_a_compacted_write_named_a_term_no_replica_held():
    """A delete of an id already deleted (term 1, position 17) reached a leader of term 9
    whose log had been compacted past 17; taken for a retry, it was acknowledged as
    (term 9, position 17), a pair no replica held (durability). Fixed: an acknowledgement
    of a write covered by a snapshot names the snapshot's last entry."""
    from graphrep.spec.fuzz import fuzz_seed

    result = fuzz_seed(50041, "leader", 200, "mixed")
    assert result.ok, result.detail


def test_fuzz_snapshot_seed_300430_a_damaged_follower_elected_shipped_its_damage():
    """Under ``snapshot`` a follower's graph was damaged behind the protocol's back (one
    list changed, leaving a node without in-edges); it became leader and shipped the
    damaged index as its snapshot to every replica (reachability). Fixed: as under
    ``leader``, a new leader rebuilds its index from its durable snapshot and log."""
    from graphrep.spec.fuzz import fuzz_seed

    result = fuzz_seed(300430, "snapshot", 200, "mixed")
    assert result.ok, result.detail


def test_crdt_seed_18_a_retried_insert_overtook_an_acknowledged_delete():
    """crdt: the client's insert of id 17 was dropped, its delete of 17 arrived and was
    acknowledged (a tombstone for an id the region did not hold), then the insert's retry
    came with a newer timestamp and brought 17 back (no_lost_writes). Fixed: a region
    deletes only ids it holds (ordered likewise: only ids it has seen inserted)."""
    cfg = WorldConfig(policy="crdt", seed=18, sync="always")
    release = Step("release", dst="n1", src="n0")
    steps = [Step("advance", ms=300),
             Step("delete", concern="one", pick=0, replica=0, shard=0),
             Step("insert", concern="one", count=5, read=0, replica=1, shard=1),
             release, release,
             Step("insert", concern="one", count=5, read=0, replica=1, shard=1),
             release, release, release, release,
             Step("insert", concern="one", count=1, read=2, replica=0, shard=0),
             release, release,
             Step("insert", concern="one", count=3, read=2, replica=0, shard=0),
             Step("drop", pick=218),
             Step("insert", concern="one", count=3, read=2, replica=0, shard=0),
             Step("insert", concern="one", count=3, read=0, replica=0, shard=0),
             Step("drop", pick=0),
             Step("delete", concern="one", pick=37, replica=0, shard=0),
             release]
    replay(cfg, steps)


def test_fuzz_crdt_seed_15_a_snapshot_of_only_dead_nodes_loaded_empty():
    """crdt: a leader's snapshot of a state whose one node had been inserted and deleted
    loaded as an empty graph (the state took a graph of length 0 for none), so replicas
    rebuilt from it lacked the dead incarnation and its tombstone (convergence)."""
    from graphrep.spec.fuzz import fuzz_seed

    result = fuzz_seed(15, "crdt", 150, "partitions")
    assert result.ok, result.detail


def test_fuzz_crdt_seed_69_a_pruned_node_was_unreachable_from_the_entry_points():
    """crdt: prunes left one live node with no in-edge from anything the entry points
    reach, so no search found it (reachability). Fixed: queries also start from the
    pool graph's rescue points."""
    from graphrep.spec.fuzz import fuzz_seed

    result = fuzz_seed(69, "crdt", 150, "partitions")
    assert result.ok, result.detail

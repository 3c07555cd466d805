"""Appliers: the policy registry, each policy's entries and flags, how entries apply
(including where a batch that does not apply stops), rebuilding from a snapshot."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from graphrep.ann import EdgeDelta
from graphrep.errors import GraphrepError, InvalidArgument
from graphrep.protocol import (
    APPLIERS,
    POLICIES,
    Applier,
    DeltaApplier,
    Policy,
    ReplayApplier,
    ReplicaConfig,
    Seams,
    SnapshotApplier,
    SnapshotSchedule,
    applier_class,
    register_applier,
)
from graphrep.protocol.entries import entry_parts
from graphrep.protocol.log import Log
from graphrep.protocol.messages import DELTA, NOOP, OP

DIM = 4


def config(policy: str = "leader") -> ReplicaConfig:
    return ReplicaConfig(replicas=("a", "b", "c"), dim=DIM, R=8, L=16, policy=policy)


def vec(i: int) -> bytes:
    return np.random.default_rng(i).random(DIM, dtype=np.float32).tobytes()


def leader_log(policy: str, writes: list[tuple[str, int]]) -> tuple[Applier, Log]:
    """A leader's applier and log after the writes (op, id), each logged as its policy
    writes it, after a NOOP at position 0."""
    cfg = config(policy)
    a = applier_class(policy)(cfg)
    log = Log({}, cfg)
    out: list = []
    log.append((1, NOOP, b""), out)
    a.caught_up(log.end)
    for op, id_ in writes:
        v = vec(id_) if op == "insert" else b""
        delta = a.execute(op, id_, v)
        entry = a.entry_for(1, op, id_, v, delta)
        a.executed(op, id_, log.append(entry, out))
    return a, log


WRITES = [("insert", i) for i in range(8)] + [("delete", 3), ("insert", 8)]


# ---------------------------------------------------------------------- the registry

def test_every_policy_has_an_applier_and_the_config_chooses_it():
    for policy in POLICIES:  # the active-active ones register when first asked for
        cls = applier_class(policy)
        assert cls.policy == policy and issubclass(cls, Applier)
    assert set(APPLIERS) == set(POLICIES) == {p.value for p in Policy}
    assert applier_class(Policy.REPLAY) is ReplayApplier


def test_an_unknown_policy_or_a_bad_registration_is_refused():
    with pytest.raises(InvalidArgument, match="no applier for policy 'gossip'"):
        applier_class("gossip")
    with pytest.raises(InvalidArgument):
        register_applier(int)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        register_applier(Applier)  # no policy name


def test_seams_replace_one_policys_applier_only():
    class Mine(DeltaApplier):
        pass

    seams = Seams(appliers={"leader": Mine})
    assert seams.applier("leader") is Mine and seams.applier("replay") is ReplayApplier
    assert Seams().applier("leader") is DeltaApplier


def test_the_flags_of_each_policy():
    flags = {cls.policy: (cls.followers_apply, cls.anti_entropy, cls.rebuild_when_elected,
                          cls.checks_snapshots, cls.snapshot_schedule)
             for cls in (DeltaApplier, ReplayApplier, SnapshotApplier)}
    assert flags == {
        "leader": (True, True, True, True, SnapshotSchedule.COMPACTION),
        "replay": (True, False, False, False, SnapshotSchedule.COMPACTION),
        "snapshot": (False, True, True, False, SnapshotSchedule.PERIODIC),
    }


# ---------------------------------------------------------------------- entries

def test_the_leader_policy_logs_the_delta_and_the_others_the_operation():
    _, dlog = leader_log("leader", [("insert", 1)])
    term, kind, body = dlog.entry(1)
    assert (term, kind) == (1, DELTA) and EdgeDelta.from_bytes(body).op == "insert"
    for policy in ("replay", "snapshot"):
        _, log = leader_log(policy, [("insert", 1)])
        term, kind, body = log.entry(1)
        assert (term, kind) == (1, OP)
        assert msgpack.unpackb(body) == ["insert", 1, vec(1)]


def test_an_entrys_parts_are_read_from_its_body():
    # the leader's applier only writes the entry; its size by part is read back from the
    # body (what the cluster's checker does with the entries it sees sent)
    a = DeltaApplier(config())
    delta = a.execute("insert", 1, vec(1))
    entry = a.entry_for(1, "insert", 1, vec(1), delta)
    assert entry == (1, DELTA, delta.to_bytes())
    assert entry_parts(entry) == delta.size_by_part()
    r = ReplayApplier(config("replay"))
    entry = r.entry_for(1, "insert", 1, vec(1), r.execute("insert", 1, vec(1)))
    parts = entry_parts(entry)
    assert parts["vector"] == len(vec(1)) and parts["edges"] == 0
    assert parts["vector"] + parts["metadata"] == parts["total"] == len(entry[2])
    deleted = entry_parts(r.entry_for(2, "delete", 1, b"", r.execute("delete", 1, b"")))
    assert deleted["vector"] == deleted["edges"] == 0 < deleted["metadata"]
    assert entry_parts((3, NOOP, b"")) == dict.fromkeys(("vector", "edges", "metadata",
                                                           "total"), 0)


def test_known_writes_are_the_ones_executed_and_logged():
    a, log = leader_log("leader", WRITES)
    assert a.applied == log.end == 1 + len(WRITES)
    assert a.known("insert", 0) == 1 and a.known("insert", 8) == 10
    assert a.known("delete", 3) == 9 and a.known("delete", 0) is None
    assert a.known("insert", 99) is None
    assert a.op_distances > 0 and a.work == 0


# ---------------------------------------------------------------------- applying

@pytest.mark.parametrize("policy", ["leader", "replay"])
def test_a_follower_that_applies_the_log_has_the_leaders_bookkeeping(policy):
    leader, log = leader_log(policy, WRITES)
    follower = applier_class(policy)(config(policy))
    follower.apply_to(log, log.end)
    assert follower.applied == log.end
    assert follower.id_pos == leader.id_pos and follower.deleted_pos == leader.deleted_pos
    if policy == "leader":  # deltas: the same graph, without a distance computation
        assert follower.index.digest() == leader.index.digest() and follower.work == 0
    else:  # operations: every insert runs its search again
        assert follower.work > 0


def test_applying_stops_where_the_index_refuses_an_entry():
    """Two deltas swapped: one kernel call refuses the batch; the applier finds the
    delta at fault, keeps everything before it applied and noted, and raises."""
    _, log = leader_log("leader", WRITES)
    bad = Log({}, config())
    out: list = []
    entries = list(log.entries)
    entries[4], entries[5] = entries[5], entries[4]
    for e in entries:
        bad.append(e, out)
    follower = DeltaApplier(config())
    with pytest.raises(GraphrepError):
        follower.apply_to(bad, bad.end)
    assert follower.applied == 4
    assert follower.index.seq == 3  # the three deltas before it
    assert sorted(follower.id_pos) == [0, 1, 2]
    # and the index took them as the leader did: the rest applies from there
    good = DeltaApplier(config())
    good.apply_to(log, 4)
    assert good.index.digest() == follower.index.digest()


def test_nothing_to_apply_is_nothing():
    a, log = leader_log("leader", WRITES[:2])
    before = a.index.digest()
    a.apply_to(log, 2)  # already applied
    assert a.index.digest() == before and a.applied == log.end


# ---------------------------------------------------------------------- rebuilding

def test_adopting_a_snapshot_notes_its_writes_at_its_last_position():
    leader, log = leader_log("leader", WRITES)
    data = leader.snapshot_bytes()
    b = DeltaApplier(config())
    b.adopt(b.load(data), log.end)
    assert b.applied == log.end and b.index.digest() == leader.index.digest()
    assert set(b.id_pos) == set(range(9)) and set(b.id_pos.values()) == {log.end - 1}
    assert b.deleted_pos == {3: log.end - 1}
    with pytest.raises(GraphrepError):
        b.load(b"not an index")


def test_reset_forgets_everything():
    a, _ = leader_log("leader", WRITES)
    a.reset()
    assert (a.applied, len(a.index), a.id_pos, a.deleted_pos) == (0, 0, {}, {})


def test_replay_reindexes_in_bulk_from_the_log_without_a_snapshot():
    leader, log = leader_log("replay", WRITES)
    r = ReplayApplier(config("replay"))
    r.bulk_load(log, log.end)
    assert r.applied == log.end
    assert sorted(r.index.ids().tolist()) == [i for i in range(9) if i != 3]
    assert r.id_pos == {i: i + 1 for i in range(8)} | {8: 10} and r.deleted_pos == {3: 9}
    assert r.work > 0
    # with a snapshot, a replica starts from it instead
    log.snap = (1, 1, leader.snapshot_bytes())
    again = ReplayApplier(config("replay"))
    again.bulk_load(log, log.end)
    assert again.applied == 0 and len(again.index) == 0
    # and the other policies apply entries one by one
    d = DeltaApplier(config())
    d.bulk_load(log, log.end)
    assert d.applied == 0

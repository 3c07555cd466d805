"""ShardHost: one replica per shard on a node, with timers, disk keys and metrics
namespaced by shard, and misrouted or malformed messages refused without harm."""

from __future__ import annotations

import numpy as np
import pytest

from graphrep.errors import PlacementError
from graphrep.protocol.host import ShardHost
from graphrep.protocol.messages import NOOP, Append, AppendReply, decode, encode
from graphrep.protocol.replica import LEADER, Replica, ReplicaConfig
from graphrep.sansio import MS, CancelTimer, DurableWrite, Metric, Send, SetTimer, Sync

SOLO = ReplicaConfig(replicas=("a",), dim=4, R=8, L=16, shard=0)  # a shard of one
PAIR = ReplicaConfig(replicas=("a", "b"), dim=4, R=8, L=16, shard=1)
LATE = 400 * MS  # past the longest election timeout (300 ms)


def host(disk: dict | None = None, configs=(SOLO, PAIR)) -> ShardHost:
    return ShardHost("a", disk or {}, list(configs), lambda s: np.random.default_rng(s))


class Disk:
    """What the simulator does with DurableWrite/Sync: only synced writes survive."""

    def __init__(self) -> None:
        self.synced: dict = {}
        self.buffer: dict = {}

    def take(self, effects: list) -> list:
        for e in effects:
            if type(e) is DurableWrite:
                self.buffer[e.key] = e.value
            elif type(e) is Sync:
                self.synced.update(self.buffer)
                self.buffer.clear()
        return effects


def state(r: Replica) -> tuple:
    return (r.term, r.terms.voted_for, list(r.log.entries), r.role, r.commit, r.ticks)


def test_each_config_gets_its_own_replica():
    h = host(configs=(PAIR, SOLO))  # given out of order
    assert list(h.replicas) == [0, 1]
    assert h.replicas[0].config is SOLO and h.replicas[1].config is PAIR
    assert h.replicas[0].peers == [] and h.replicas[1].peers == ["b"]
    assert all(r.name == "a" for r in h.replicas.values())


def test_the_same_shard_twice_is_a_placement_error():
    other = ReplicaConfig(replicas=("a", "c"), dim=4, shard=1)
    with pytest.raises(PlacementError, match=r"node 'a' was given shard\(s\) twice"):
        host(configs=(SOLO, PAIR, other))


def test_timers_are_namespaced_by_shard():
    effects = host().on_start(0)
    timers = [e for e in effects if type(e) is SetTimer]
    assert timers == [SetTimer((0, "tick"), SOLO.tick_ns, True),
                      SetTimer((1, "tick"), PAIR.tick_ns, True)]


def test_wrap_namespaces_every_kind_of_effect_and_passes_the_rest_through():
    send = Send("b", b"x", 1)
    wrapped = ShardHost._wrap(3, [SetTimer("t", 5, True), CancelTimer("t"),
                                  DurableWrite(("log", 2), "v"), Metric("m", 2.0), Sync(),
                                  send])
    assert [(type(e), e) for e in wrapped] == [
        (SetTimer, SetTimer((3, "t"), 5, True)), (CancelTimer, CancelTimer((3, "t"))),
        (DurableWrite, DurableWrite((3, ("log", 2)), "v")), (Metric, Metric("m@3", 2.0)),
        (Sync, Sync()), (Send, send)]


def test_on_timer_routes_a_namespaced_timer_to_its_shard_only():
    h = host()
    h.on_start(0)
    before = state(h.replicas[1])
    out = h.on_timer(LATE, (0, "tick"))
    solo = h.replicas[0]
    assert solo.role == LEADER and solo.term == 1 and solo.ticks == 1
    assert state(h.replicas[1]) == before  # the other shard saw nothing
    assert Metric("leader_elected@0", 1.0) in out
    assert all(e.key[0] == 0 for e in out if type(e) is DurableWrite)
    # shard 1's tick starts its own election: a vote request tagged with shard 1
    out = h.on_timer(LATE, (1, "tick"))
    (req,) = [decode(e.payload) for e in out if type(e) is Send]
    assert req.shard == 1 and req.term == 1 and req.candidate == "a"
    assert h.replicas[1].ticks == 1 and solo.ticks == 1


@pytest.mark.parametrize("name", ["tick", (9, "tick"), (0, "tick", 1), None])
def test_a_timer_that_names_no_hosted_shard_does_nothing(name):
    h = host()
    h.on_start(0)
    before = [state(r) for r in h.replicas.values()]
    assert h.on_timer(LATE, name) == []
    assert [state(r) for r in h.replicas.values()] == before


def test_a_restarted_host_gives_each_replica_back_its_own_durable_state():
    disk = Disk()
    h = host()
    disk.take(h.on_start(0))
    disk.take(h.on_timer(LATE, (0, "tick")))  # shard 0 elects itself, appends a NOOP
    disk.take(h.on_timer(LATE, (1, "tick")))  # shard 1: a candidate in term 1
    disk.take(h.on_timer(2 * LATE, (1, "tick")))  # ... no votes: term 2
    solo, pair = h.replicas[0], h.replicas[1]
    assert (solo.term, solo.log.entries) == (1, [(1, NOOP, b"")])
    assert (pair.term, pair.terms.voted_for, pair.log.entries) == (2, "a", [])
    # every key on disk is (shard, key), and each shard wrote its own
    assert all(isinstance(k, tuple) and len(k) == 2 for k in disk.synced)
    assert disk.synced[(0, "term")] == 1 and disk.synced[(1, "term")] == 2
    assert (0, ("log", 0)) in disk.synced and (1, ("log", 0)) not in disk.synced

    again = host(dict(disk.synced))  # a restart: only what was synced
    r0, r1 = again.replicas[0], again.replicas[1]
    assert (r0.term, r0.terms.voted_for, r0.log.entries) == (1, "a", [(1, NOOP, b"")])
    assert (r1.term, r1.terms.voted_for, r1.log.entries) == (2, "a", [])
    assert r0.log.damaged == r1.log.damaged == 0


def test_disk_keys_of_other_shards_or_not_namespaced_are_not_handed_out():
    disk = {"term": 9, ("log", 0): "junk", (5, "term"): 7, (1, "term"): 4, (0, "term"): 3}
    h = host(disk)
    assert h.replicas[0].term == 3 and h.replicas[1].term == 4
    assert h.replicas[0].log.entries == [] and h.replicas[1].log.entries == []


def test_a_message_is_handed_to_its_shards_replica_and_the_reply_names_that_shard():
    h = host()
    h.on_start(0)
    out = h.on_message(1, "b", encode(Append(1, 3, "b", 0, 0, [], 0)), 0)
    assert h.replicas[1].term == 3 and h.replicas[1].leader == "b"
    assert h.replicas[0].term == 0
    sends = [(e.to, decode(e.payload)) for e in out if type(e) is Send]
    assert sends == [("b", AppendReply(1, 3, True, 0))]
    assert all(k[0] == 1 for k in (e.key for e in out if type(e) is DurableWrite))
    assert h.errors == 0


def test_a_message_for_a_shard_not_hosted_is_a_counted_protocol_error():
    h = host()
    h.on_start(0)
    before = [state(r) for r in h.replicas.values()]
    for shard in (2, 7):
        out = h.on_message(1, "x", encode(Append(shard, 5, "x", 0, 0, [], 0)), 0)
        assert [(type(e), e) for e in out] == [
            (Metric, Metric("protocol_errors", 1.0)),
            (Metric, Metric("protocol_error:UnknownShard", 1.0))]
    assert h.errors == 2
    assert [state(r) for r in h.replicas.values()] == before  # term 5 was not adopted
    assert all(r.errors == 0 for r in h.replicas.values())


@pytest.mark.parametrize("junk", [b"\xc1", b"", b"\x93\x09\x06\x00", b"not msgpack at all"])
def test_malformed_bytes_are_a_counted_protocol_error(junk):
    h = host()
    h.on_start(0)
    before = [state(r) for r in h.replicas.values()]
    out = h.on_message(1, "x", junk, len(junk))
    assert [type(e) for e in out] == [Metric, Metric]
    assert out[0] == Metric("protocol_errors", 1.0)
    assert out[1].name.startswith("protocol_error:") and "UnknownShard" not in out[1].name
    assert h.errors == 1
    assert [state(r) for r in h.replicas.values()] == before
    # and the host keeps working
    h.on_message(2, "b", encode(Append(1, 1, "b", 0, 0, [], 0)), 0)
    assert h.replicas[1].leader == "b"


def test_a_replica_factory_can_be_passed_in():
    built = []

    class Counting(Replica):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self.config.shard)

    h = ShardHost("a", {}, [PAIR, SOLO], lambda s: np.random.default_rng(s), replica=Counting)
    assert built == [0, 1] and all(type(r) is Counting for r in h.replicas.values())

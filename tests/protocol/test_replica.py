"""The replica state machine driven by hand: fencing, gaps, recovery, malformed input."""

from __future__ import annotations

import numpy as np

from graphrep.protocol.messages import (
    DELTA,
    Append,
    AppendReply,
    ClientWrite,
    WriteReply,
    decode,
    encode,
)
from graphrep.protocol.replica import FOLLOWER, LEADER, Replica, ReplicaConfig
from graphrep.sansio import DurableWrite, Send, Sync

CFG = ReplicaConfig(replicas=("a", "b", "c"), dim=4, R=8, L=16)


def replica(name: str = "b", disk: dict | None = None) -> Replica:
    r = Replica(name, disk or {}, CFG, np.random.default_rng(0))
    r.on_start(0)
    return r


def sent(effects: list) -> list:
    return [(e.to, decode(e.payload)) for e in effects if type(e) is Send]


def leader_with_writes(n: int) -> tuple[Replica, list]:
    """Replica a made leader by hand, with n inserts acknowledged at 'one'."""
    a = replica("a")
    out: list = []
    a._become_leader(0, out)
    rng = np.random.default_rng(1)
    for i in range(n):
        msg = ClientWrite(0, i, "insert", i, rng.random(4, dtype=np.float32).tobytes(), "one")
        out += a.on_message(1, "client", encode(msg), 0)
    return a, out


def test_a_stale_term_is_refused_and_changes_nothing():
    b = replica()
    b.on_message(0, "a", encode(Append(0, 5, "a", 0, 0, [], 0)), 0)
    assert b.term == 5 and b.leader == "a"
    out = b.on_message(1, "x", encode(Append(0, 3, "x", 0, 0, [(3, DELTA, b"late")], 0)), 0)
    assert b.log == [] and b.leader == "a"
    assert sent(out) == [("x", AppendReply(0, 5, False, -1))]


def test_a_gap_asks_for_the_missing_range():
    b = replica()
    out = b.on_message(0, "a", encode(Append(0, 1, "a", 4, 1, [], 0)), 0)  # a heartbeat
    assert sent(out) == [("a", AppendReply(0, 1, False, 0))]


def test_an_overtaking_append_waits_for_the_gap_to_fill():
    a, _ = leader_with_writes(4)
    first = Append(0, a.term, "a", 0, 0, list(a.log[:3]), 0)
    second = Append(0, a.term, "a", 3, a.log[2][0], list(a.log[3:]), len(a.log))
    b = replica()
    assert sent(b.on_message(0, "a", encode(second), 0)) == []  # held, not refused
    assert b.log == []
    out = b.on_message(1, "a", encode(first), 0)
    assert [m for _, m in sent(out)] == [AppendReply(0, a.term, True, 3),
                                         AppendReply(0, a.term, True, 5)]
    assert b.end == 5 and b.index.digest() == a.index.digest()


def test_followers_apply_committed_deltas_and_recover_them_from_disk():
    a, out = leader_with_writes(5)
    assert a.role == LEADER and len(a.log) == 6  # the leader's NOOP, then 5 deltas
    acks = [m for to, m in sent(out) if to == "client"]
    assert [m.status for m in acks] == ["ok"] * 5 and all(isinstance(m, WriteReply)
                                                           for m in acks)
    b = replica("b")
    disk: dict = {}
    msg = Append(0, a.term, "a", 0, 0, list(a.log), len(a.log))
    effects = b.on_message(2, "a", encode(msg), 0)
    for e in effects:  # what the simulated disk would keep
        if type(e) is DurableWrite:
            disk[e.key] = e.value
        assert type(e) is not Sync or True
    assert b.applied == 6 and b.index.digest() == a.index.digest()
    assert sent(effects)[-1] == ("a", AppendReply(0, a.term, True, 6))
    again = replica("b", disk)  # a restart
    assert again.role == FOLLOWER and again.term == a.term
    assert again.index.digest() == a.index.digest() and again.applied == 6


def test_malformed_messages_are_counted_and_the_replica_keeps_working():
    b = replica()
    for junk in (b"\xc1", encode(AppendReply(7, 1, True, 0)), b"\x93\x09\x06\x00"):
        out = b.on_message(0, "x", junk, len(junk))
        assert [type(e) for e in out] == [type(out[0])] * len(out)  # metrics only
    assert b.errors == 3
    out = b.on_message(1, "a", encode(Append(0, 1, "a", 0, 0, [], 0)), 0)
    assert sent(out) == [("a", AppendReply(0, 1, True, 0))]


def test_a_bad_vector_is_an_error_reply_and_changes_nothing():
    a, _ = leader_with_writes(2)
    before = (a.index.digest(), len(a.log))
    for vec in (np.full(4, np.nan, dtype=np.float32).tobytes(), b"\x00" * 12):
        out = a.on_message(3, "client", encode(ClientWrite(0, 9, "insert", 99, vec, "one")), 0)
        (reply,) = [m for _, m in sent(out)]
        assert reply.status == "error" and reply.error
    assert (a.index.digest(), len(a.log)) == before

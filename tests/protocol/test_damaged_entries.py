"""Damaged log entries: refused on arrival, cut like a torn tail on restart or when the
index refuses them, never an exception out of a callback; and the leader sends the
entries again to a follower that lost them."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from graphrep.errors import DamagedEntry
from graphrep.protocol.entries import check_entry, entry_parts, wal_record
from graphrep.protocol.messages import (
    DELTA,
    NOOP,
    OP,
    Append,
    AppendReply,
    ClientWrite,
    decode,
    encode,
)
from graphrep.protocol.replica import LEADER, Replica, ReplicaConfig
from graphrep.sansio import MS, DurableWrite, Metric, Send
from tests.protocol.support import store

CFG = ReplicaConfig(replicas=("a", "b", "c"), dim=4, R=8, L=16)
REPLAY = ReplicaConfig(replicas=("a", "b", "c"), dim=4, R=8, L=16, policy="replay")


def replica(name: str, cfg: ReplicaConfig = CFG, disk: dict | None = None) -> Replica:
    r = Replica(name, disk or {}, cfg, np.random.default_rng(0))
    r.on_start(0)
    return r


def leader(n: int, cfg: ReplicaConfig = CFG) -> Replica:
    """Replica a made leader by hand with n inserts (acknowledged at 'one')."""
    a = replica("a", cfg)
    a.become_leader(0, [])
    rng = np.random.default_rng(1)
    for i in range(n):
        vec = rng.random(4, dtype=np.float32).tobytes()
        a.on_message(1, "client", encode(ClientWrite(0, i, "insert", i, vec, "one")), 0)
    return a


def flip(body: bytes, bit: int) -> bytes:
    b = bytearray(body)
    b[bit // 8 % len(b)] ^= 1 << (bit % 8)
    return bytes(b)


def metrics(effects: list) -> dict[str, float]:
    out: dict[str, float] = {}
    for e in effects:
        if type(e) is Metric:
            out[e.name] = out.get(e.name, 0.0) + e.value
    return out


def state(r: Replica) -> tuple:
    return (r.term, r.terms.voted_for, r.leader, list(r.log.entries), r.commit, r.applied,
            r.index.digest())


# ------------------------------------------------------------------ check_entry

DAMAGED = [
    (1, NOOP, b"x"),
    (1, 7, b""),
    (-1, NOOP, b""),
    (1, DELTA, b"short"),
    (1, OP, b"\xc1"),                                          # not msgpack
    (1, OP, msgpack.packb([1])),                                # not [op, id, vector]
    (1, OP, msgpack.packb(["upsert", 1, b""])),                 # unknown op
    (1, OP, msgpack.packb(["insert", True, b"\x00" * 16])),     # a bool is not an id
]


@pytest.mark.parametrize("entry", [
    *DAMAGED,
    (1, OP, msgpack.packb(["insert", 1, b"\x00" * 12])),        # wrong dimension
])
def test_check_entry_refuses_bodies_that_are_not_what_their_kind_promises(entry):
    with pytest.raises(DamagedEntry):
        check_entry(entry, 4)


@pytest.mark.parametrize("entry", DAMAGED)
def test_entry_parts_refuses_the_same_bodies(entry):
    with pytest.raises(DamagedEntry):
        entry_parts(entry)


def test_check_entry_and_entry_parts_refuse_every_single_bit_flip_of_a_delta():
    a = leader(1)
    _, kind, body = a.log.entries[1]
    assert kind == DELTA
    check_entry(a.log.entries[1], 4)
    for bit in range(len(body) * 8):
        with pytest.raises(DamagedEntry):
            check_entry((1, DELTA, flip(body, bit)), 4)
        with pytest.raises(DamagedEntry):
            entry_parts((1, DELTA, flip(body, bit)))


# ------------------------------------------------------------------ on arrival

@pytest.mark.parametrize("damage", ["bit_flip", "op_not_msgpack", "op_list_of_one",
                                    "term_above_leader", "terms_decrease"])
def test_an_append_with_a_damaged_entry_is_refused_and_changes_nothing(damage):
    cfg = REPLAY if damage.startswith("op") else CFG
    a = leader(3, cfg)
    entries = list(a.log.entries)
    if damage == "bit_flip":
        t, k, body = entries[2]
        entries[2] = (t, k, flip(body, 77))
    elif damage == "op_not_msgpack":
        entries[2] = (entries[2][0], OP, b"\xc1")
    elif damage == "op_list_of_one":
        entries[2] = (entries[2][0], OP, msgpack.packb([1]))
    elif damage == "term_above_leader":
        entries[2] = (a.term + 1, entries[2][1], entries[2][2])
    else:
        entries[1] = (a.term + 1, entries[1][1], entries[1][2])
    b = replica("b", cfg)
    b.on_message(0, "a", encode(Append(0, a.term, "a", 0, 0, [], 0)), 0)
    before = state(b)
    bad = Append(0, a.term, "a", 0, 0, entries, len(entries))
    out = b.on_message(1, "a", encode(bad), 0)  # must not raise
    assert state(b) == before
    assert [type(e) for e in out] == [Metric, Metric] and b.errors == 1
    assert metrics(out)["protocol_errors"] == 1
    # the leader's retransmission (the intact entries) is taken as usual
    good = Append(0, a.term, "a", 0, 0, list(a.log.entries), len(a.log.entries))
    b.on_message(2, "a", encode(good), 0)
    assert b.log.entries == a.log.entries and b.applied == len(a.log.entries)
    assert b.index.digest() == a.index.digest()


def test_an_append_contradicting_a_committed_entry_is_refused_not_raised():
    a = leader(2)
    b = replica("b")
    log = list(a.log.entries)
    b.on_message(0, "a", encode(Append(0, a.term, "a", 0, 0, log, len(log))), 0)
    assert b.commit == len(a.log.entries) == 3
    before = state(b)
    # a "leader" of the next term whose entries at the committed positions 1, 2 differ
    lying = Append(0, a.term + 1, "c", 1, a.term, [(a.term + 1, NOOP, b"")] * 2, 3)
    out = b.on_message(1, "c", encode(lying), 0)  # must not raise
    assert state(b) == before and metrics(out) == {"protocol_errors": 1.0,
                                                   "protocol_error:ProtocolError": 1.0}


# ------------------------------------------------------------------ on restart

def disk_of(log: list, commit: int, term: int = 1) -> dict:
    disk: dict = {("log", p): wal_record(e) for p, e in enumerate(log)}
    disk.update({"term": term, "commit": commit})
    return disk


@pytest.mark.parametrize("damage", ["delta_bit_flip", "op_not_msgpack", "op_list_of_one"])
def test_a_durable_damaged_entry_below_commit_ends_the_log_like_a_torn_tail(damage):
    cfg = CFG if damage.startswith("delta") else REPLAY
    a = leader(5, cfg)
    log = list(a.log.entries)
    t, k, body = log[3]
    log[3] = (t, k, flip(body, 9) if damage == "delta_bit_flip" else
              b"\xc1" if damage == "op_not_msgpack" else msgpack.packb([1]))
    disk = disk_of(log, commit=len(log))  # the WAL checksum is over the damaged body
    b = Replica("b", disk, cfg, np.random.default_rng(0))  # must not raise
    assert b.log.entries == log[:3] and b.commit == 3 and b.applied == 3 and b.log.damaged == 1
    b.on_start(0)
    assert b.index.digest() == Replica("b", disk_of(log[:3], 3), cfg,
                                       np.random.default_rng(0)).index.digest()


def test_a_committed_delta_that_no_rebuilt_index_accepts_is_cut_and_nothing_raises():
    """Sound bytes (the checksum holds) that do not apply: two deltas swapped. The
    follower rebuilds, finds that the entry itself is at fault, cuts its log there and
    moves its commit back: the leader sends the entries again."""
    a = leader(3)
    log = list(a.log.entries)
    log[2], log[3] = log[3], log[2]
    b = replica("b")
    out = b.on_message(1, "a", encode(Append(0, a.term, "a", 0, 0, log, len(log))), 0)
    assert b.end == 2 and b.commit == 2 and b.applied == 2 and b.log.entries == a.log.entries[:2]
    m = metrics(out)
    assert m["apply_failures"] == 1 and m["damaged_entries"] == 1
    erased = {e.key for e in out if type(e) is DurableWrite and e.value is None}
    assert {("log", 2), ("log", 3)} <= erased
    assert (DurableWrite("commit", 2)) in out
    # restarted from what it wrote, it is the same replica
    disk: dict = {}
    store(disk, out)
    again = Replica("b", disk, CFG, np.random.default_rng(0))
    assert again.log.entries == b.log.entries and again.commit == 2


def test_a_snapshot_that_does_not_load_leaves_an_empty_replica_not_a_crash():
    a = leader(3)
    disk = {"term": a.term, "commit": 4, "snapshot": (4, 1, b"not an index"), "log_start": 4,
            "start_term": 1, ("log", 4): wal_record((1, NOOP, b""))}
    b = Replica("b", disk, CFG, np.random.default_rng(0))
    assert b.log.snap is None and b.log.entries == [] and b.commit == 0 and b.end == 0
    out = b.on_start(0)
    assert DurableWrite("snapshot", None) in out and DurableWrite("log_start", 0) in out
    assert DurableWrite(("log", 4), None) in out
    log = list(a.log.entries)
    b.on_message(1, "a", encode(Append(0, a.term, "a", 0, 0, log, len(log))), 0)
    assert b.index.digest() == a.index.digest()


# ------------------------------------------------------------------ the leader resends

def pump(nodes: dict[str, Replica], effects: list[tuple[str, list]], now: int,
         drop_to: str | None = None) -> None:
    """Deliver every Send among ``nodes`` until none is left (``drop_to`` loses all
    messages to that node)."""
    queue = [(src, e) for src, out in effects for e in out if type(e) is Send]
    while queue:
        src, e = queue.pop(0)
        if e.to not in nodes or e.to == drop_to:
            continue
        out = nodes[e.to].on_message(now, src, e.payload, e.size)
        queue += [(e.to, x) for x in out if type(x) is Send]


def test_a_follower_that_lost_acknowledged_entries_gets_them_again():
    a = replica("a")
    b = replica("b")
    c = replica("c")
    nodes = {"a": a, "b": b, "c": c}
    out = a.on_timer(400 * MS, "tick")
    pump(nodes, [("a", out)], 400 * MS)
    assert a.role == LEADER
    rng = np.random.default_rng(1)
    for i in range(6):
        vec = rng.random(4, dtype=np.float32).tobytes()
        out = a.on_message(401 * MS, "client", encode(ClientWrite(0, i, "insert", i, vec,
                                                                  "majority")), 0)
        pump(nodes, [("a", out)], 401 * MS)
    pump(nodes, [("a", a.on_timer(402 * MS, "tick"))], 402 * MS)
    assert a.tracker["b"].match == a.end == b.end == b.commit == 7
    # b restarts from a disk whose entry 4 is damaged (a torn tail below its commit)
    disk = disk_of(list(b.log.entries), commit=7, term=a.term)
    t, k, body = b.log.entries[4]
    disk[("log", 4)] = wal_record((t, k, flip(body, 100)))
    b = nodes["b"] = Replica("b", disk, CFG, np.random.default_rng(0))
    pump(nodes, [("b", b.on_start(403 * MS))], 403 * MS)
    assert b.end == 4 and a.tracker["b"].match == 7
    # one gap report below match could be a stale reply; the second in a row is believed
    t_ = 404
    for t_ in range(404, 420):
        effects = [("a", a.on_timer(t_ * MS, "tick")), ("b", b.on_timer(t_ * MS, "tick"))]
        pump(nodes, effects, t_ * MS)
        if b.end == a.end:
            break
    assert b.end == a.end == b.commit and b.index.digest() == a.index.digest(), t_
    assert a.tracker["b"].match == a.end


def test_a_single_gap_report_below_match_is_taken_for_a_stale_reply():
    a = leader(3)
    for p in a.peers:  # both followers acknowledged everything
        a.tracker[p].acknowledged(a.end, 0)
    out = a.on_message(5, "b", encode(AppendReply(0, a.term, False, 1)), 0)
    assert a.tracker["b"].match == a.end and [e for e in out if type(e) is Send] == []
    out = a.on_message(6, "b", encode(AppendReply(0, a.term, True, a.end)), 0)
    out = a.on_message(7, "b", encode(AppendReply(0, a.term, False, 1)), 0)
    assert a.tracker["b"].match == a.end  # an acknowledgement came between the two
    out = a.on_message(8, "b", encode(AppendReply(0, a.term, False, 1)), 0)
    assert a.tracker["b"].match == 1 and metrics(out)["follower_regressions"] == 1
    (resend,) = [decode(e.payload) for e in out if type(e) is Send]
    assert resend.prev_end == 1 and len(resend.entries) == a.end - 1


def test_impossible_positions_are_refused_and_change_nothing():
    a = leader(2)
    for p in a.peers:  # both followers acknowledged everything
        a.tracker[p].acknowledged(a.end, 0)
    def matches() -> list[int]:
        return [a.tracker[p].match for p in a.peers]

    before = (matches(), a.commit)
    out = a.on_message(5, "b", encode(AppendReply(0, a.term, True, a.end + 100)), 0)
    assert (matches(), a.commit) == before and metrics(out)["protocol_errors"] == 1
    b = replica("b")
    b.on_message(0, "a", encode(Append(0, a.term, "a", 0, 0, [], 0)), 0)
    before_b = state(b)
    for bad in (Append(0, a.term, "a", -1, 0, list(a.log.entries), 0),
                Append(0, a.term, "a", 0, 0, list(a.log.entries), -5)):
        out = b.on_message(1, "a", encode(bad), 0)
        assert state(b) == before_b and metrics(out)["protocol_errors"] == 1

"""The replica state machine driven by hand: fencing, gaps, recovery, malformed input."""

from __future__ import annotations

import numpy as np
import pytest

from graphrep.errors import ProtocolError
from graphrep.protocol.entries import wal_entry, wal_record
from graphrep.protocol.messages import (
    DELTA,
    NOOP,
    Append,
    AppendReply,
    ClientWrite,
    VoteReply,
    WriteReply,
    decode,
    encode,
)
from graphrep.protocol.replica import FOLLOWER, LEADER, Replica, ReplicaConfig
from graphrep.sansio import MS, DurableWrite, Metric, Send, Sync

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
    a.become_leader(0, out)
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
    assert b.log.entries == [] and b.leader == "a"
    assert sent(out) == [("x", AppendReply(0, 5, False, -1))]


def test_a_gap_asks_for_the_missing_range():
    b = replica()
    out = b.on_message(0, "a", encode(Append(0, 1, "a", 4, 1, [], 0)), 0)  # a heartbeat
    assert sent(out) == [("a", AppendReply(0, 1, False, 0))]


def test_an_overtaking_append_waits_for_the_gap_to_fill():
    a, _ = leader_with_writes(4)
    log = list(a.log.entries)
    first = Append(0, a.term, "a", 0, 0, log[:3], 0)
    second = Append(0, a.term, "a", 3, log[2][0], log[3:], len(log))
    b = replica()
    assert sent(b.on_message(0, "a", encode(second), 0)) == []  # held, not refused
    assert b.log.entries == []
    out = b.on_message(1, "a", encode(first), 0)
    assert [m for _, m in sent(out)] == [AppendReply(0, a.term, True, 3),
                                         AppendReply(0, a.term, True, 5)]
    assert b.end == 5 and b.index.digest() == a.index.digest()


def test_a_held_append_that_a_resend_overtook_is_dropped():
    """An append held for a gap that a larger resend then filled past its start is of no
    use: it is dropped, so held leftovers never fill the buffer (once full, every append
    past a gap was answered "gap", and the leader resent for nothing)."""
    a, _ = leader_with_writes(4)
    log = list(a.log.entries)
    held = Append(0, a.term, "a", 2, log[1][0], log[2:4], 0)
    resend = Append(0, a.term, "a", 0, 0, log[:3], 0)
    b = replica()
    assert sent(b.on_message(0, "a", encode(held), 0)) == [] and list(b.early) == [2]
    out = b.on_message(1, "a", encode(resend), 0)
    assert [m for _, m in sent(out)] == [AppendReply(0, a.term, True, 3)]
    assert b.end == 3 and b.early == {}


def test_followers_apply_committed_deltas_and_recover_them_from_disk():
    a, out = leader_with_writes(5)
    assert a.role == LEADER and len(a.log.entries) == 6  # the leader's NOOP, then 5 deltas
    acks = [m for to, m in sent(out) if to == "client"]
    assert [m.status for m in acks] == ["ok"] * 5 and all(isinstance(m, WriteReply)
                                                           for m in acks)
    b = replica("b")
    disk: dict = {}
    msg = Append(0, a.term, "a", 0, 0, list(a.log.entries), len(a.log.entries))
    effects = b.on_message(2, "a", encode(msg), 0)
    for e in effects:  # what the simulated disk would keep
        if type(e) is DurableWrite:
            disk[e.key] = e.value
    last_write = max(i for i, e in enumerate(effects) if type(e) is DurableWrite)
    assert any(type(e) is Sync for e in effects[last_write:])  # all of it synced
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
    before = (a.index.digest(), len(a.log.entries))
    for vec in (np.full(4, np.nan, dtype=np.float32).tobytes(), b"\x00" * 12):
        out = a.on_message(3, "client", encode(ClientWrite(0, 9, "insert", 99, vec, "one")), 0)
        (reply,) = [m for _, m in sent(out)]
        assert reply.status == "error" and reply.error
    assert (a.index.digest(), len(a.log.entries)) == before


# ---------------------------------------------------------------------- sync policy

TICK = ReplicaConfig(replicas=("a", "b", "c"), dim=4, R=8, L=16, sync="tick")


def elected(cfg: ReplicaConfig) -> tuple[Replica, list]:
    """Replica a elected leader of term 1 through real messages (b's vote)."""
    a = Replica("a", {}, cfg, np.random.default_rng(0))
    a.on_start(0)
    out = a.on_timer(400 * MS, "tick")  # past the election timeout: a candidate
    out += a.on_message(400 * MS, "b", encode(VoteReply(0, 1, True)), 0)
    assert a.role == LEADER and a.term == 1 and a.log.entries == [(1, NOOP, b"")]
    return a, out


def write(i: int, concern: str = "one") -> bytes:
    vec = np.random.default_rng(i).random(4, dtype=np.float32).tobytes()
    return encode(ClientWrite(0, i, "insert", i, vec, concern))


def client_replies(effects: list) -> list:
    return [m for to, m in sent(effects) if to == "client"]


def kinds(effects: list) -> list[str]:
    return [type(e).__name__ for e in effects]


def test_the_default_sync_policy_is_always():
    assert CFG.sync == "always"


@pytest.mark.parametrize("bad", ["never", "", "Always", None, 1])
def test_an_unknown_sync_policy_is_a_protocol_error(bad):
    with pytest.raises(ProtocolError, match=r"unknown sync policy .*'always', 'tick'"):
        ReplicaConfig(replicas=("a",), dim=4, sync=bad)


def test_sync_always_acknowledges_a_one_write_at_once_after_its_sync():
    a, _ = elected(CFG)
    out = a.on_message(401 * MS, "client", write(1), 0)
    (reply,) = client_replies(out)
    assert reply.status == "ok" and reply.seq == 1 and a.clients.pending == []
    names = kinds(out)
    assert "Sync" in names
    assert names.index("DurableWrite") < names.index("Sync") < len(names) - 1
    ack = next(i for i, e in enumerate(out) if type(e) is Send
               and decode(e.payload) == reply)
    assert names.index("Sync") < ack  # durable before acknowledged


def test_sync_tick_acknowledges_a_one_write_only_after_the_next_ticks_sync():
    a, _ = elected(TICK)
    out = a.on_message(401 * MS, "client", write(1), 0)
    assert client_replies(out) == [] and "Sync" not in kinds(out)
    assert DurableWrite(("log", 1), wal_record(a.log.entries[1])) in out  # buffered, not synced
    out2 = a.on_message(402 * MS, "client", write(2), 0)  # a second one shares the sync
    assert client_replies(out2) == [] and len(a.clients.pending) == 2
    tick = a.on_timer(410 * MS, "tick")
    names = kinds(tick)
    assert names.count("Sync") == 1
    replies = client_replies(tick)
    assert [(m.req, m.status, m.seq) for m in replies] == [(1, "ok", 1), (2, "ok", 2)]
    first_ack = next(i for i, e in enumerate(tick) if type(e) is Send
                     and decode(e.payload) == replies[0])
    assert names.index("Sync") < first_ack and a.clients.pending == []
    assert a.on_timer(420 * MS, "tick").count(Sync()) == 0  # nothing left to sync


def test_sync_tick_a_leader_counts_only_its_synced_entries_toward_commit():
    a, _ = elected(TICK)
    a.on_message(401 * MS, "client", write(1, "majority"), 0)
    # b acknowledges everything; c nothing: the majority must include a itself, durably
    out = a.on_message(402 * MS, "b", encode(AppendReply(0, 1, True, a.end)), 0)
    assert a.commit == 0 and client_replies(out) == []
    tick = a.on_timer(410 * MS, "tick")
    assert a.commit == a.end == 2
    assert [(m.req, m.status) for m in client_replies(tick)] == [(1, "ok")]


def test_sync_tick_a_follower_claims_only_synced_entries_until_the_tick():
    leader, _ = leader_with_writes(4)  # 5 entries of term 0
    log = list(leader.log.entries)
    b = Replica("b", {}, TICK, np.random.default_rng(0))
    b.on_start(0)
    out = b.on_message(1, "a", encode(Append(0, 1, "a", 0, 0, log[:2], 0)), 0)
    names = kinds(out)
    assert b.end == 2 and names.count("Sync") == 1  # the new term is synced at once...
    assert names.index("Sync") < names.index("DurableWrite", names.index("Sync"))
    assert sent(out) == [("a", AppendReply(0, 1, True, 0))]  # ...the entries are not
    tick = b.on_timer(2, "tick")
    assert kinds(tick) == ["Sync", "Send"] and sent(tick) == [("a", AppendReply(0, 1, True, 2))]
    out = b.on_message(2, "a", encode(Append(0, 1, "a", 2, 0, log[2:], 0)), 0)
    assert b.end == 5 and "Sync" not in kinds(out)
    assert sent(out) == [("a", AppendReply(0, 1, True, 2))]  # only what is on disk
    tick = b.on_timer(3, "tick")
    assert kinds(tick).count("Sync") == 1
    assert sent(tick) == [("a", AppendReply(0, 1, True, 5))]
    assert kinds(tick).index("Sync") < kinds(tick).index("Send")
    assert sent(b.on_timer(4, "tick")) == []  # nothing new: no second reply


def test_sync_always_a_follower_claims_every_entry_at_once():
    leader, _ = leader_with_writes(4)
    b = replica("b")
    b.on_message(1, "a", encode(Append(0, 1, "a", 0, 0, list(leader.log.entries[:2]), 0)), 0)
    out = b.on_message(2, "a", encode(Append(0, 1, "a", 2, 0, list(leader.log.entries[2:]), 0)), 0)
    assert kinds(out).count("Sync") == 3  # one per appended entry
    assert sent(out) == [("a", AppendReply(0, 1, True, 5))]


def test_sync_tick_an_unsynced_tail_is_not_on_the_disk_a_restart_sees():
    leader, _ = leader_with_writes(2)
    b = Replica("b", {}, TICK, np.random.default_rng(0))
    b.on_start(0)
    disk: dict = {}
    buffer: dict = {}

    def keep(effects: list) -> None:
        for e in effects:
            if type(e) is DurableWrite:
                buffer[e.key] = e.value
            elif type(e) is Sync:
                disk.update(buffer)
                buffer.clear()

    def restarted() -> list:
        return Replica("b", dict(disk), TICK, np.random.default_rng(0)).log.entries

    log = list(leader.log.entries)
    keep(b.on_message(1, "a", encode(Append(0, 1, "a", 0, 0, log[:1], 0)), 0))
    assert restarted() == []
    keep(b.on_timer(2, "tick"))
    keep(b.on_message(2, "a", encode(Append(0, 1, "a", 1, 0, log[1:], 0)), 0))
    assert len(restarted()) == 1
    keep(b.on_timer(3, "tick"))
    assert restarted() == log


# ---------------------------------------------------------------------- WAL checksums


def test_wal_records_round_trip():
    leader, _ = leader_with_writes(2)
    entries = [*leader.log.entries, (7, 2, b"\x00" * 100), (2**40, 1, b"")]
    for entry in entries:
        record = wal_record(entry)
        assert type(record) is tuple and len(record) == 4 and record[:3] == tuple(entry)
        assert isinstance(record[3], int)
        assert wal_entry(record) == tuple(entry)
    assert len({wal_record(e)[3] for e in entries}) == len(entries)


def test_wal_entry_refuses_a_damaged_or_misshapen_record():
    term, kind, body, crc = wal_record((3, DELTA, b"abcdef"))
    damaged = [
        (term, kind, body, crc ^ 1),             # checksum
        (term, kind, b"abcdeg", crc),            # a flipped body byte
        (term + 1, kind, body, crc),             # the term
        (term, kind + 1, body, crc),             # the kind
        (term, kind, body[:-1], crc),            # a torn body
        (term, kind, body),                      # no checksum (an old record)
        [term, kind, body, crc],                 # not a tuple
        (term, kind, body, crc, 0),              # too long
        (term, kind, bytearray(body), crc),      # not bytes
        (str(term), kind, body, crc),            # not an int
        "garbage",
        0,
    ]
    for record in damaged:
        assert wal_entry(record) is None, record
    assert wal_entry((term, kind, body, crc)) == (3, DELTA, b"abcdef")


def disk_of(log: list, commit: int) -> dict:
    disk: dict = {("log", p): wal_record(e) for p, e in enumerate(log)}
    disk.update({"term": 1, "commit": commit})
    return disk


def test_a_restart_keeps_the_log_up_to_the_first_damaged_record():
    leader, _ = leader_with_writes(4)  # 5 entries
    log = list(leader.log.entries)
    intact = replica("b", disk_of(log, 5))
    assert intact.log.entries == log and intact.log.damaged == 0
    assert intact.index.digest() == leader.index.digest()
    for damage in ("checksum", "shape"):
        disk = disk_of(log, 5)
        t, k, body, crc = disk[("log", 3)]
        disk[("log", 3)] = (t, k, body, crc + 1) if damage == "checksum" else (t, k, body)
        b = replica("b", disk)
        assert b.log.entries == log[:3] and b.end == 3 and b.log.damaged == 1
        assert b.commit == 3 and b.applied == 3  # the commit is clamped to the log
        assert b.index.digest() == replica("b", disk_of(log[:3], 3)).index.digest()
        assert b.index.digest() != leader.index.digest()


def test_a_damaged_first_record_leaves_an_empty_log():
    leader, _ = leader_with_writes(2)
    disk = disk_of(list(leader.log.entries), 3)
    t, k, body, crc = disk[("log", 0)]
    disk[("log", 0)] = (t, k, body + b"x", crc)
    b = replica("b", disk)
    assert b.log.entries == [] and b.log.damaged == 1 and b.commit == 0 and b.applied == 0
    # it takes the log back from the leader as usual
    out = b.on_message(1, "a", encode(Append(0, 1, "a", 0, 0, list(leader.log.entries), 3)), 0)
    assert b.log.entries == leader.log.entries
    assert sent(out)[-1] == ("a", AppendReply(0, 1, True, 3))


def test_records_behind_a_damaged_one_do_not_come_back_after_a_rewrite():
    disk = disk_of([(1, NOOP, b"")] * 4, 0)
    t, k, body, crc = disk[("log", 1)]
    disk[("log", 1)] = (t, k, body, crc + 1)
    b = replica("b", disk)
    assert b.log.entries == [(1, NOOP, b"")] and b.log.damaged == 1
    # a leader of term 2 sends its entry for position 1; b syncs it (sync="always")
    out = b.on_message(1, "c", encode(Append(0, 2, "c", 1, 1, [(2, NOOP, b"")], 0)), 0)
    for e in out:
        if type(e) is DurableWrite:
            disk[e.key] = e.value
    assert b.log.entries == [(1, NOOP, b""), (2, NOOP, b"")]
    again = replica("b", disk)
    assert again.log.entries == b.log.entries  # not [..., (2,..), (1,..), (1,..)]


# ---------------------------------------------------------------- flow control

CAPPED = ReplicaConfig(replicas=("a", "b", "c"), dim=4, R=8, L=16, max_inflight=1)


def appends_to(effects: list, peer: str) -> list[Append]:
    return [m for to, m in sent(effects) if to == peer and isinstance(m, Append)]


def test_without_a_cap_every_write_leaves_in_its_own_append():
    a, _ = elected(CFG)
    out: list = []
    for i in range(1, 5):
        out += a.on_message(400 * MS + i, "client", write(i), 0)
    assert [len(m.entries) for m in appends_to(out, "b")] == [1, 1, 1, 1]


def test_at_the_cap_new_entries_wait_and_leave_together_on_the_next_acknowledgement():
    a, first = elected(CAPPED)
    # the election's no-op is in flight to b: the writes wait
    assert [len(m.entries) for m in appends_to(first, "b")] == [1]
    out: list = []
    for i in range(1, 5):
        out += a.on_message(400 * MS + i, "client", write(i), 0)
    assert appends_to(out, "b") == [] and a.end == 5
    # b acknowledges the no-op: the four writes leave in one message
    out = a.on_message(401 * MS, "b", encode(AppendReply(0, 1, True, 1)), 0)
    (m,) = appends_to(out, "b")
    assert (m.prev_end, len(m.entries)) == (1, 4) and list(a.tracker["b"].inflight) == [5]
    # an acknowledgement of part of it releases nothing more; of all of it, the cap
    a.on_message(401 * MS + 1, "client", write(5), 0)
    assert appends_to(a.on_message(402 * MS, "b", encode(AppendReply(0, 1, True, 3)), 0),
                      "b") == []
    (m,) = appends_to(a.on_message(403 * MS, "b", encode(AppendReply(0, 1, True, 5)), 0), "b")
    assert (m.prev_end, len(m.entries)) == (5, 1)


def test_a_capped_leader_resends_after_a_stall_when_an_acknowledgement_is_lost():
    a, _ = elected(CAPPED)
    a.on_message(400 * MS + 1, "client", write(1), 0)
    assert list(a.tracker["b"].inflight) == [1]  # the no-op's Append; its reply never comes
    heartbeat = appends_to(a.on_timer(410 * MS, "tick"), "b")
    assert [m.entries for m in heartbeat] == [[]]  # at the cap: a heartbeat carries none
    (m,) = appends_to(a.on_timer(400 * MS + a.config.retransmit_ns, "tick"), "b")
    assert (m.prev_end, len(m.entries)) == (0, 2) and list(a.tracker["b"].inflight) == [2]


def test_a_rejected_append_clears_the_flight_and_resends_from_the_followers_end():
    a, _ = elected(CAPPED)
    for i in range(1, 4):
        a.on_message(400 * MS + i, "client", write(i), 0)
    # b says it holds nothing (it lost the no-op's Append): resend everything at once
    (m,) = appends_to(a.on_message(401 * MS, "b", encode(AppendReply(0, 1, False, 0)), 0), "b")
    assert (m.prev_end, len(m.entries)) == (0, 4) and list(a.tracker["b"].inflight) == [4]


@pytest.mark.parametrize("bad", [-1, 1.5, "2", None, True])
def test_a_bad_inflight_cap_is_a_protocol_error(bad):
    with pytest.raises(ProtocolError, match=r"max_inflight must be an int >= 0"):
        ReplicaConfig(replicas=("a",), dim=4, max_inflight=bad)


def test_the_snapshot_baseline_takes_a_due_snapshot_at_the_first_tick_all_is_committed():
    cfg = ReplicaConfig(replicas=("a", "b", "c"), dim=4, R=8, L=16, policy="snapshot",
                        snapshot_ticks=4)
    a, _ = elected(cfg)
    a.on_message(400 * MS + 1, "b", encode(AppendReply(0, 1, True, 1)), 0)  # the no-op
    a.on_message(401 * MS, "client", write(1, "majority"), 0)
    assert a.commit == 1 < a.end == 2
    snaps = [Metric("snapshots", 1.0)]
    ticks = [a.on_timer((410 + 10 * i) * MS, "tick") for i in range(3)]  # ticks 2, 3, 4
    assert a.ticks == 4 and not any(e in t for t in ticks for e in snaps)  # due, not taken
    a.on_message(441 * MS, "b", encode(AppendReply(0, 1, True, 2)), 0)
    assert a.commit == 2
    assert Metric("snapshots", 1.0) in a.on_timer(450 * MS, "tick")  # tick 5: taken now
    assert a.log.snap[0] == 2 and a.snapshots.due == {"b", "c"}
    assert Metric("snapshots", 1.0) not in a.on_timer(460 * MS, "tick")  # once


def test_a_heartbeat_is_anchored_at_the_acknowledged_end_so_entries_in_flight_stay_put():
    a, _ = elected(CFG)
    a.on_message(400 * MS + 1, "b", encode(AppendReply(0, 1, True, 1)), 0)  # b holds the no-op
    for i in range(1, 4):
        a.on_message(400 * MS + 1 + i, "client", write(i), 0)
    assert (a.tracker["b"].match, a.tracker["b"].next) == (1, 4)  # three entries in flight to b
    (hb,) = appends_to(a.on_timer(410 * MS, "tick"), "b")
    assert (hb.prev_end, hb.prev_term, hb.entries) == (1, 1, [])  # not at next (4)
    # b, which holds the no-op only so far, answers it as a match, not as a gap
    b = Replica("b", {}, CFG, np.random.default_rng(0))
    b.on_start(0)
    b.on_message(400 * MS, "a", encode(Append(0, 1, "a", 0, 0, [(1, NOOP, b"")], 0)), 0)
    (reply,) = [m for _, m in sent(b.on_message(411 * MS, "a", encode(hb), 0))]
    assert reply == AppendReply(0, 1, True, 1)
    out = a.on_message(412 * MS, "b", encode(reply), 0)
    assert appends_to(out, "b") == [] and a.tracker["b"].next == 4  # nothing rewound or resent


# ---------------------------------------------------------------------- delta writes


def recorded(n: int, deletes: tuple[int, ...] = ()) -> tuple[list, str]:
    """``n`` inserts (then ``deletes``) on an index of the shard's parameters, as
    ``(op, id, delta bytes)``, and that index's digest."""
    index = CFG.index()
    rng = np.random.default_rng(5)
    out = [("insert", i, index.insert(i, rng.random(4, dtype=np.float32)).to_bytes())
           for i in range(n)]
    out += [("delete", i, index.delete(i).to_bytes()) for i in deletes]
    return out, index.digest()


def delta_write(req: int, id_: int, body: bytes) -> bytes:
    return encode(ClientWrite(0, req, "delta", id_, body, "one"))


def test_a_recorded_run_written_as_deltas_gives_the_recording_index_on_every_replica():
    deltas, digest = recorded(12, deletes=(3, 7))
    a = replica("a")
    out: list = []
    a.become_leader(0, out)
    for req, (_, id_, body) in enumerate(deltas):
        out += a.on_message(1, "client", delta_write(req, id_, body), 0)
    acks = [m for to, m in sent(out) if to == "client"]
    assert [m.status for m in acks] == ["ok"] * len(deltas)
    assert [m.seq for m in acks] == list(range(1, len(deltas) + 1))  # after the NOOP
    assert a.index.digest() == digest
    assert all(e[1] == DELTA and e[2] == body
               for e, (_, _, body) in zip(a.log.entries[1:], deltas, strict=True))
    b = replica("b")
    b.on_message(2, "a", encode(Append(0, a.term, "a", 0, 0, list(a.log.entries),
                                       len(a.log.entries))), 0)
    assert b.index.digest() == digest
    # a retry of an acknowledged delta write is acknowledged at its position, once
    out = a.on_message(3, "client", delta_write(99, deltas[4][1], deltas[4][2]), 0)
    assert [(m.status, m.seq) for _, m in sent(out)] == [("ok", 5)]
    assert len(a.log.entries) == len(deltas) + 1


@pytest.mark.parametrize("case", ["out_of_order", "wrong_id", "garbage", "replay_policy"])
def test_a_bad_delta_write_is_an_error_reply_and_changes_nothing(case):
    deltas, _ = recorded(4)
    a = replica("a") if case != "replay_policy" else Replica(
        "a", {}, ReplicaConfig(replicas=("a", "b", "c"), dim=4, R=8, L=16, policy="replay"),
        np.random.default_rng(0))
    a.on_start(0)
    a.become_leader(0, [])
    a.on_message(1, "client", delta_write(0, deltas[0][1], deltas[0][2]), 0)
    before = (a.index.digest(), len(a.log.entries))
    msg = {"out_of_order": delta_write(1, deltas[2][1], deltas[2][2]),  # skips seq 1
           "wrong_id": delta_write(1, 3, deltas[1][2]),
           "garbage": delta_write(1, 1, b"GRD\x01" + bytes(60)),
           "replay_policy": delta_write(1, deltas[1][1], deltas[1][2])}[case]
    (reply,) = [m for _, m in sent(a.on_message(2, "client", msg, 0))]
    assert reply.status == "error"
    assert reply.error.startswith({"out_of_order": "DeltaOutOfOrder", "wrong_id":
                                   "InvalidArgument", "garbage": "DeltaError",
                                   "replay_policy": "InvalidArgument"}[case])
    assert (a.index.digest(), len(a.log.entries)) == before


def test_a_follower_silent_since_the_election_is_resent_the_new_terms_entries_not_the_log():
    """b missed a's election (cut off, or its replies lost): a knows nothing of b's log.
    After each retransmission timeout a resends from where its log ended when it was
    elected, not from 0; b's first answer (a gap at its end) says where to send from."""
    a, _ = leader_with_writes(40)  # term 0, 41 entries
    out: list = []
    a.see_term(1, out)
    a.become_leader(0, out)  # term 1: a NOOP at 41
    assert a.end == 42 and a.tracker["b"].match == 0
    to_b = appends_to(out, "b")
    t = 0
    for _ in range(200):  # two seconds of ticks, b silent; c acknowledges everything
        t += 10 * MS
        out = a.on_timer(t, "tick")
        out += a.on_message(t, "c", encode(AppendReply(0, 1, True, a.end)), 0)
        to_b += appends_to(out, "b")
    # the NOOP, heartbeats at 41 asking where b's log ends, and the NOOP again after
    # each doubled timeout; on the old code the first retransmission sent from 0
    assert len(to_b) > 100 and min(m.prev_end for m in to_b) == 41
    assert 1 < sum(len(m.entries) for m in to_b) <= 7
    out = a.on_message(t + MS, "b", encode(AppendReply(0, 1, False, 30)), 0)  # b ends at 30
    (m,) = appends_to(out, "b")
    assert (m.prev_end, len(m.entries)) == (30, 12)


def test_a_follower_that_reported_its_end_far_past_match_is_sent_from_there():
    """b reports a gap at 290 and has acknowledged nothing in this term: the window
    counts from 290, not from match 0 (from 0, nothing past 256 could leave, and b
    would be asked for ever whether it holds entry 0)."""
    a, _ = leader_with_writes(300)  # term 0, 301 entries
    out: list = []
    a.see_term(1, out)
    a.become_leader(0, out)
    out = a.on_message(MS, "b", encode(AppendReply(0, 1, False, 290)), 0)
    (m,) = appends_to(out, "b")
    assert (m.prev_end, len(m.entries)) == (290, 12)
    (beat,) = appends_to(a.on_timer(30 * MS, "tick"), "b")
    assert (beat.prev_end, beat.entries) == (290, [])  # on the old code: at 0
    out = a.on_message(31 * MS, "b", encode(AppendReply(0, 1, True, 290)), 0)
    assert a.tracker["b"].match == 290


def test_a_follower_cut_off_is_probed_with_one_batch_not_sent_the_window_again_and_again():
    """Writes go on (c acknowledges them) while b hears nothing for two seconds: b is
    sent a batch after each doubled timeout, not the whole window every 50 ms; once b
    answers a heartbeat it is sent everything it lacks."""
    a, _ = elected(CFG)
    a.on_message(400 * MS, "c", encode(AppendReply(0, 1, True, 1)), 0)
    a.on_message(400 * MS, "b", encode(AppendReply(0, 1, True, 1)), 0)
    to_b = 0
    t = 400 * MS
    for i in range(1, 201):  # a write every 10 ms, and a tick
        t += 10 * MS
        out = a.on_message(t, "client", write(i), 0) + a.on_timer(t, "tick")
        out += a.on_message(t, "c", encode(AppendReply(0, 1, True, a.end)), 0)
        to_b += sum(len(m.entries) for m in appends_to(out, "b"))
    assert a.commit == a.end == 201 and a.tracker["b"].match == 1
    # the writes as they came (until 50 ms of silence), then a batch at each of the
    # resends 50, 100, 200, 400 and 800 ms apart: far below a window every 50 ms
    assert to_b <= 5 + 5 * CFG.max_batch, to_b
    # b answers the next heartbeat: it is sent what it lacks at once, batch by batch
    beat = appends_to(a.on_timer(t + 10 * MS, "tick"), "b")
    assert beat and not beat[-1].entries
    out = a.on_message(t + 11 * MS, "b", encode(AppendReply(0, 1, True, 1)), 0)
    (m,) = appends_to(out, "b")
    assert (m.prev_end, len(m.entries)) == (1, CFG.max_batch)

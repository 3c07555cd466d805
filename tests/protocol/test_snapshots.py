"""Snapshots: the check of a leader's index against the log before it is saved."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from graphrep.ann import VamanaIndex
from graphrep.protocol import ReplicaConfig
from graphrep.protocol.messages import (
    Append,
    AppendReply,
    ClientWrite,
    RequestVote,
    Snapshot,
    SnapshotReply,
    VoteReply,
    decode,
    encode,
)
from graphrep.protocol.replica import Replica
from graphrep.sansio import Metric, Send

CFG = ReplicaConfig(replicas=("a",), dim=4, R=8, L=16, snapshot_every=4, log_keep=2)


def solo(writes: int) -> tuple[Replica, list]:
    """A shard of one that elected itself and took ``writes`` inserts."""
    a = Replica("a", {}, CFG, np.random.default_rng(0))
    a.on_start(0)
    out = a.on_timer(400 * 10**6, "tick")
    rng = np.random.default_rng(1)
    for i in range(writes):
        vec = rng.random(4, dtype=np.float32).tobytes()
        out += a.on_message(401 * 10**6, "client",
                            encode(ClientWrite(0, i, "insert", i, vec, "one")), 0)
    return a, out


def damage(index) -> None:
    """Change one neighbour of one record behind the protocol's back."""
    ids = index.ids()
    victim = int(ids[0])
    records = index.export_records([victim])
    mine = set(records.neighbours.tolist())
    spare = [int(i) for i in ids if int(i) != victim and int(i) not in mine]
    nbrs = records.neighbours.copy()
    nbrs[0] = spare[0]
    nbrs.sort()
    index.overwrite_records(replace(records, neighbours=nbrs))


def test_an_intact_index_is_kept():
    a, _ = solo(6)
    before = a.index.digest()
    out: list = []
    a.snapshots.check_index(out)
    assert out == [] and a.index.digest() == before


def test_an_index_damaged_in_memory_is_replaced_not_saved():
    a, _ = solo(6)
    intact = a.index.digest()
    damage(a.index)
    assert a.index.digest() != intact
    out: list = []
    a.snapshots.check_index(out)
    assert out == [Metric("index_damage_repaired", 1.0)] and a.index.digest() == intact


def test_a_scheduled_snapshot_saves_the_checked_index():
    a, _ = solo(6)  # the NOOP and six inserts, all committed: a snapshot is due
    intact = solo(6)[0].index.digest()
    damage(a.index)
    out = a.on_timer(410 * 10**6, "tick")
    names = [e.name for e in out if type(e) is Metric]
    assert names.index("index_damage_repaired") < names.index("snapshots")
    assert a.log.snap is not None and a.log.snap[0] == 7
    assert VamanaIndex.from_bytes(a.log.snap[2]).digest() == a.index.digest() == intact


def leader_b_needs_the_snapshot(**cfg_changes) -> tuple[Replica, int, int, Any]:
    """Replica a elected leader of (a, b, c); c took 8 writes, b none, and the log is
    compacted past b's end. Returns (a, its term, now, write(i) -> effects)."""
    cfg = replace(CFG, replicas=("a", "b", "c"), **cfg_changes)
    a = Replica("a", {}, cfg, np.random.default_rng(0))
    a.on_start(0)
    now = 10**9
    out = a.on_timer(now, "tick")  # no leader heard: a stands
    term = next(decode(e.payload) for e in out if type(e) is Send).term
    assert all(isinstance(decode(e.payload), RequestVote) for e in out if type(e) is Send)
    a.on_message(now, "b", encode(VoteReply(0, term, True)), 0)
    assert a.role == "leader"
    rng = np.random.default_rng(1)

    def write(i: int) -> list:
        vec = rng.random(4, dtype=np.float32).tobytes()
        return a.on_message(now, "client", encode(ClientWrite(0, i, "insert", i, vec, "one")),
                            0)

    for i in range(8):  # c takes every entry; b answers nothing
        write(i)
        a.on_message(now, "c", encode(AppendReply(0, term, True, a.log.end)), 0)
    a.on_timer(now + 10**7, "tick")  # committed past snapshot_every: snapshot, compact
    assert a.log.start > 0
    return a, term, now, write


def chunks_to_b(out: list) -> list[int]:
    return [m.offset for e in out if type(e) is Send and e.to == "b"
            and isinstance(m := decode(e.payload), Snapshot)]


def test_a_follower_being_sent_the_snapshot_gets_no_chunk_per_write():
    """A write goes to the followers that take entries; a follower that needs the
    snapshot gets its next chunk when it answers the last one, not one per write (a
    chunk per write sent hundreds of megabytes to a restarted node under load)."""
    a, term, now, write = leader_b_needs_the_snapshot()
    out = a.on_message(now, "b", encode(AppendReply(0, term, False, 0)), 0)  # b is empty
    first = [decode(e.payload) for e in out if type(e) is Send and e.to == "b"]
    assert [type(m) for m in first] == [Snapshot] and first[0].offset == 0
    sent = [(e.to, decode(e.payload)) for i in range(8, 12) for e in write(i)
            if type(e) is Send]
    assert not any(isinstance(m, Snapshot) for _, m in sent), sent
    assert sum(to == "c" and isinstance(m, Append) and bool(m.entries) for to, m in sent) == 4


def test_a_chunk_sent_again_adds_no_chunk_in_flight():
    """A chunk resent after a stall is answered twice; only the answer that shows
    progress sends the next chunk. (Every answer sent one: each retransmission added a
    chunk in flight for the rest of the transfer, and a 24 MB snapshot cost 10 GB.)"""
    a, term, now, _ = leader_b_needs_the_snapshot(snapshot_chunk=64)
    total = len(a.log.snap[2])
    assert total > 4 * 64
    assert chunks_to_b(a.on_message(now, "b", encode(AppendReply(0, term, False, 0)), 0)) == [0]
    later = now + a.config.retransmit_ns + a.config.tick_ns
    assert chunks_to_b(a.on_timer(later, "tick")) == [0]  # stalled: sent again
    end = a.log.snap[0]

    def answer(offset: int, t: int = later) -> list[int]:
        return chunks_to_b(a.on_message(t, "b", encode(SnapshotReply(0, term, end, offset)),
                                        0))

    assert answer(64) == [64]  # the first answer: progress, the next chunk
    assert answer(64) == []  # the answer to the chunk sent again: nothing new
    assert answer(128) == [128]
    assert answer(0) == [0]  # b lost what it held (a restart): from where it is
    sent = 0
    offset = 0
    while offset < total:  # the rest, one answer each: one chunk each
        got = answer(offset + 64 if offset + 64 < total else total)
        offset = min(offset + 64, total)
        sent += len(got)
    assert a.tracker["b"].match == end and sent == -(-total // 64) - 1


def test_one_chunk_at_a_time_however_many_answers_come():
    """A follower back from a restart answers the heartbeats queued for it while it was
    down (anchored at what it had acknowledged: it accepts them, "I hold up to there"):
    one chunk leaves, not one per answer (hundreds of copies of the first chunk did, in
    a live cluster), and the next leaves when that one is answered."""
    a, term, now, _ = leader_b_needs_the_snapshot(snapshot_chunk=64)
    refusal = encode(AppendReply(0, term, False, 0))
    assert chunks_to_b(a.on_message(now, "b", refusal, 0)) == [0]
    held = encode(AppendReply(0, term, True, 0))
    sent = [chunks_to_b(a.on_message(now, "b", held, 0)) for _ in range(20)]
    assert sent == [[]] * 20
    end = a.log.snap[0]
    out = a.on_message(now, "b", encode(SnapshotReply(0, term, end, 64)), 0)
    assert chunks_to_b(out) == [64]
    assert chunks_to_b(a.on_message(now, "b", held, 0)) == []

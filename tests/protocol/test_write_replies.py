"""What a write's acknowledgement names, and a shard of one replica."""

from __future__ import annotations

import numpy as np
import pytest

from graphrep.protocol.messages import ClientWrite, WriteReply, decode, encode
from graphrep.protocol.replica import LEADER, Replica, ReplicaConfig
from graphrep.sansio import MS, Send
from tests.protocol.support import store


def one(**kw) -> ReplicaConfig:
    return ReplicaConfig(replicas=("a",), dim=4, R=8, L=16, **kw)


def start(cfg: ReplicaConfig, disk: dict, now: int) -> Replica:
    """Replica a started from ``disk`` and elected (a shard of one elects itself)."""
    a = Replica("a", disk, cfg, np.random.default_rng(0))
    store(disk, a.on_start(now))
    store(disk, a.on_timer(now + 400 * MS, "tick"))
    assert a.role == LEADER
    return a


def write(a: Replica, disk: dict, now: int, op: str, i: int, concern: str,
          req: int | None = None) -> WriteReply:
    vec = np.random.default_rng(i).random(4, dtype=np.float32).tobytes()
    out = a.on_message(now, "client", encode(ClientWrite(0, i if req is None else req, op, i,
                                                         vec if op == "insert" else b"",
                                                         concern)), 0)
    store(disk, out)
    (reply,) = [decode(e.payload) for e in out if type(e) is Send and e.to == "client"]
    return reply


@pytest.mark.parametrize("concern", ["one", "majority", "all"])
def test_a_shard_of_one_acknowledges_every_concern_at_once(concern):
    disk: dict = {}
    a = start(one(), disk, 0)
    for i in range(5):
        reply = write(a, disk, 500 * MS, "insert", i, concern)
        assert reply.status == "ok" and a.term_at(reply.seq) == reply.term
    assert a.commit == a.end == 6 and len(a.index) == 5


def test_a_shard_of_one_with_group_commit_acknowledges_at_the_tick():
    disk: dict = {}
    a = start(one(sync="tick"), disk, 0)
    vec = np.zeros(4, np.float32).tobytes()
    out = a.on_message(500 * MS, "client", encode(ClientWrite(0, 1, "insert", 1, vec,
                                                              "majority")), 0)
    assert [e for e in out if type(e) is Send] == []  # waits for the sync
    out = a.on_timer(510 * MS, "tick")
    (reply,) = [decode(e.payload) for e in out if type(e) is Send]
    assert reply.status == "ok" and reply.seq == 1 and a.commit == 2


def test_a_retry_of_a_compacted_write_names_the_snapshot_entry_that_holds_it():
    """A write whose log entry was compacted away is acknowledged, on a retry, as the
    snapshot's last entry (its term and position), which holds it; not as the current
    term at its old position, a pair no replica holds."""
    cfg = one(snapshot_every=4, log_keep=0, verify_snapshots=False)
    disk: dict = {}
    a = start(cfg, disk, 0)
    first = write(a, disk, 500 * MS, "insert", 0, "majority")
    assert (first.term, first.seq) == (1, 1)
    write(a, disk, 500 * MS, "delete", 0, "majority")
    for i in range(1, 9):
        write(a, disk, 500 * MS, "insert", i, "majority")
    store(disk, a.on_timer(510 * MS, "tick"))  # snapshot and compact
    assert a.log.snap is not None and a.log_start == a.log.snap[0] > 2
    a = start(cfg, disk, 600 * MS)  # restarted: a new term
    assert a.term == 2 and a.term_at(1) is None
    for op in ("insert", "delete"):
        again = write(a, disk, 1000 * MS, op, 0, "majority", req=99)
        assert again.status == "ok"
        end, term, _ = a.log.snap
        assert (again.term, again.seq) == (term, end - 1) == (1, end - 1)
        assert a.term_at(again.seq) == again.term


@pytest.mark.parametrize("policy", ["leader", "replay", "snapshot", "crdt", "lww"])
def test_an_insert_of_a_written_id_is_a_retry_only_with_the_same_vector(policy):
    """A retry is acknowledged again and logs nothing; an insert of a written id with
    another vector (or a malformed one) is refused and changes nothing, where it used to
    be acknowledged as a retry that changed nothing."""
    kw = ({"regions": (("eu", ("a",)),), "region": "eu"} if policy in ("crdt", "lww")
          else {})
    disk: dict = {}
    a = start(one(policy=policy, **kw), disk, 0)

    def send(req: int, vec: bytes) -> WriteReply:
        out = a.on_message(500 * MS, "client", encode(ClientWrite(0, req, "insert", 5, vec,
                                                                  "one")), 0)
        store(disk, out)
        (reply,) = [decode(e.payload) for e in out if type(e) is Send and e.to == "client"]
        return reply

    v1 = np.arange(4, dtype=np.float32).tobytes()
    assert send(1, v1).status == "ok"
    end = a.end
    again = send(2, v1)
    assert again.status == "ok" and a.end == end  # the retry: acknowledged, nothing logged
    for req, vec, words in ((3, np.ones(4, np.float32).tobytes(), "another vector"),
                            (4, v1[:8], "not a retry")):
        reply = send(req, vec)
        assert reply.status == "error" and "DuplicateId" in reply.error
        assert words in reply.error and a.end == end
    held = a.index.graph.vector(5, a.index.graph.version(5)) if policy == "crdt" else \
        (a.index.reads if policy == "lww" else a.index).vector(5)
    assert held.tobytes() == v1

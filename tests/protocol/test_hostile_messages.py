"""Any message that passes the decoder, with any field values, is answered or refused by
a replica in any role; no callback raises (in a live node an exception is a crash)."""

from __future__ import annotations

import msgpack
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graphrep.protocol import messages as m
from graphrep.protocol.replica import Replica, ReplicaConfig
from graphrep.sansio import MS, Send

CFG = ReplicaConfig(replicas=("a", "b", "c"), dim=4, R=8, L=16, snapshot_every=4, log_keep=1)

ints = st.one_of(st.integers(-3, 12), st.integers(-(2**63), 2**63 - 1))
strs = st.sampled_from(["a", "b", "c", "x", "", "insert", "delete", "one", "majority", "all",
                        "ok", "bogus"])
blobs = st.one_of(st.binary(max_size=40), st.just(np.ones(4, np.float32).tobytes()),
                  st.just(np.full(4, np.nan, np.float32).tobytes()))
entries = st.lists(st.tuples(st.integers(0, 12), st.sampled_from([m.DELTA, m.NOOP, m.OP]), blobs)
                   .map(list), max_size=4)
FIELD = {"_int": ints, "_str": strs, "_bytes": blobs, "_bool": st.booleans(),
         "_entries": entries, "_bytes_list": st.lists(blobs, max_size=3),
         "_int_list": st.lists(ints, max_size=3)}


@st.composite
def frames(draw) -> bytes:
    code = draw(st.sampled_from(sorted(m._SCHEMA)))
    _, checks = m._SCHEMA[code]
    fields = [draw(FIELD[c.__name__]) for c in checks]
    if draw(st.booleans()):
        fields[0] = 0  # mostly for this shard
    return msgpack.packb([m.PROTOCOL_VERSION, code, *fields], use_bin_type=True)


def leader_follower() -> tuple[Replica, Replica]:
    """A leader (with writes, a snapshot, a compacted log) and a follower holding its log."""
    a = Replica("a", {}, CFG, np.random.default_rng(0))
    a.on_start(0)
    a.become_leader(0, [])
    rng = np.random.default_rng(1)
    for i in range(10):
        vec = rng.random(4, dtype=np.float32).tobytes()
        a.on_message(1, "client", m.encode(m.ClientWrite(0, i, "insert", i, vec, "one")), 0)
    for p in a.peers:  # both followers acknowledge everything: all committed
        a.on_message(1, p, m.encode(m.AppendReply(0, a.term, True, a.end)), 0)
    a.on_timer(2 * MS, "tick")  # a snapshot, the log compacted
    assert a.commit == a.end and a.log_start > 0
    b = Replica("b", {}, CFG, np.random.default_rng(0))
    b.on_start(0)
    b.on_message(3 * MS, "a", m.encode(m.Append(0, a.term, "a", 0, 0, [], 0)), 0)
    for _ in range(a.log_start):  # b takes the leader's snapshot, then the log tail
        out = a.on_message(4 * MS, "b", m.encode(m.AppendReply(0, a.term, False, 0)), 0)
        for e in out:
            if type(e) is Send and e.to == "b":
                b.on_message(5 * MS, "a", e.payload, e.size)
        if b.end == a.end:
            break
    assert b.end == a.end and b.index.digest() == a.index.digest()
    return a, b


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frames(), min_size=1, max_size=6), st.sampled_from(["a", "b"]))
def test_no_decodable_message_makes_a_replica_raise(payloads, who):
    a, b = leader_follower()
    r = a if who == "a" else b
    for k, payload in enumerate(payloads):
        r.on_message((10 + k) * MS, "x" if k % 2 else "c", payload, len(payload))
        r.on_timer((10 + k) * MS + 1, "tick")

"""The checker's figures on hand-made end states and messages (runs check them in
test_runner.py)."""

from __future__ import annotations

import msgpack
import numpy as np

from graphrep.ann import VamanaIndex
from graphrep.cluster import Layout
from graphrep.cluster.checker import entry_bytes, lost_writes, percentiles
from graphrep.protocol.messages import DELTA, NOOP, OP, Append, AppendReply, encode


class _Index:
    def __init__(self, live: set[int], deleted: frozenset[int] = frozenset()) -> None:
        self.ids = live | deleted
        self.deleted = deleted

    def __contains__(self, i: int) -> bool:
        return i in self.ids

    def is_deleted(self, i: int) -> bool:
        return i in self.deleted


class _Replica:
    def __init__(self, index: _Index) -> None:
        self.index = index


def test_lost_writes_of_given_replicas():
    layout = Layout(("r0", "r1", "r2"), {0: ("r0", "r1", "r2")}, False)
    acked = [{"op": "insert", "id": 1, "shard": 0}, {"op": "insert", "id": 2, "shard": 0},
             {"op": "insert", "id": 3, "shard": 0}, {"op": "delete", "id": 3, "shard": 0}]
    reps = {("r0", 0): _Replica(_Index({1, 2}, frozenset({3}))),
            ("r1", 0): _Replica(_Index({1}, frozenset({3}))),  # misses id 2
            ("r2", 0): _Replica(_Index({3}))}  # misses 1 and 2, still has deleted 3
    writes, pairs = lost_writes(acked, layout, reps)
    assert writes == 3  # inserts 1 and 2, the delete of 3; not the insert of 3
    assert [(p["replica"], p["op"], p["id"]) for p in pairs] == [
        ("r2", "insert", 1), ("r1", "insert", 2), ("r2", "insert", 2), ("r2", "delete", 3)]
    reps[("r2", 0)] = None  # a crashed replica is not looked at
    assert lost_writes(acked, layout, reps)[0] == 1


def test_percentiles_of_nothing_are_zero():
    assert percentiles([]) == {"p50": 0.0, "p95": 0.0, "p99": 0.0}
    assert percentiles([1.0, 2.0, 3.0])["p50"] == 2.0


def _append(shard: int, prev_end: int, entries: list) -> bytes:
    return encode(Append(shard, 1, "r0", prev_end, 1, entries, 0))


def test_entry_bytes_counts_each_entry_sent_once_per_follower_by_its_bodys_parts():
    index = VamanaIndex(dim=4, R=8, L=16, seed=1)
    rng = np.random.default_rng(0)
    deltas = [index.insert(i, rng.random(4, dtype=np.float32)) for i in range(3)]
    deltas.append(index.delete(1))
    entries = [(1, NOOP, b"")] + [(1, DELTA, d.to_bytes()) for d in deltas]
    sizes = [d.size_by_part() for d in deltas]
    layout = Layout(("r0", "r1", "r2"), {0: ("r0", "r1", "r2")}, False)
    damaged = (1, DELTA, entries[2][2][:-1] + bytes([entries[2][2][-1] ^ 1]))
    sends = [
        ("r0", "r1", _append(0, 0, entries[:2])),
        ("r0", "r1", _append(0, 1, entries[1:2])),  # a retransmission: counted already
        ("r0", "r2", _append(0, 0, [entries[0], damaged])),  # refused: counts nothing
        ("r0", "r2", _append(0, 1, entries[1:])),  # the same entries to the other follower
        ("r1", "r0", encode(AppendReply(0, 1, True, 5))),  # no entries in it
        ("r0", "r1", b"\xc1 not a message"),
        ("r0", "r1", _append(3, 0, entries[1:])),  # a shard this layout does not have
    ]
    got = entry_bytes(sends, layout)
    assert got == {"vector": 2 * sum(p["vector"] for p in sizes),
                   "edges": 2 * sum(p["edges"] for p in sizes)}
    assert got["vector"] == 2 * 3 * 16  # three new vectors of 4 float32, to two followers
    # the first message alone: one entry, as if sent to both followers
    assert entry_bytes(sends[:1], layout)["edges"] == 2 * sizes[0]["edges"]


def test_entry_bytes_of_operations_counts_their_vectors_per_shard_followers():
    vec = np.arange(4, dtype="<f4").tobytes()
    insert = (2, OP, msgpack.packb(["insert", 7, vec], use_bin_type=True))
    delete = (2, OP, msgpack.packb(["delete", 7, b""], use_bin_type=True))
    layout = Layout(("r0", "r1", "r2", "r3"), {0: ("r0", "r1"), 1: ("r1", "r2", "r3")}, True)
    sends = [("r0", "r1", _append(0, 4, [insert, delete])),
             ("r1", "r2", _append(1, 4, [insert])),
             ("r1", "r3", _append(1, 4, [insert]))]
    # one follower in shard 0, two in shard 1; deletes and NOOPs carry no vector
    assert entry_bytes(sends, layout) == {"vector": 1 * 16 + 2 * 16, "edges": 0}

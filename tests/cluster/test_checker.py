"""The checker's figures on hand-made end states (runs check them in test_runner.py)."""

from __future__ import annotations

from graphrep.cluster import Layout
from graphrep.cluster.checker import lost_writes, percentiles


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

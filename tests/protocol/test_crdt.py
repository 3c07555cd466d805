"""The crdt policy: entries merge in any order to the same state (the specification of
its merge), timestamps, the entry codec, and what a replica refuses."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graphrep.ann.pools import PoolGraph
from graphrep.errors import DamagedEntry, InvalidArgument, MalformedMessage
from graphrep.protocol.crdt import merge, write
from graphrep.protocol.entries import (
    DELETE,
    INSERT,
    LINK,
    check_entry,
    decode_entry,
    encode_entry,
    entry_parts,
)
from graphrep.protocol.hlc import HLC, pack, unpack
from graphrep.protocol.messages import MERGE

DIM = 4
REGIONS = 3
VECTORS = np.random.default_rng(5).standard_normal((64, DIM)).astype(np.float32)


class Region:
    """One region's copy, as the protocol keeps it: a graph, a log of entry bodies in
    merge order, the version vector, a clock."""

    def __init__(self, k: int, cls: type[PoolGraph]) -> None:
        self.k = k
        self.graph = cls(DIM, R=4, L=8)
        self.log: list[bytes] = []
        self.vv = [0] * REGIONS
        self.hlc = HLC(k)

    def write(self, now_ms: int, op: str, id_: int, vec: int) -> None:
        ts = self.hlc.tick(now_ms * 1_000_000)
        self.vv[self.k] += 1
        body = write(self.graph, self.k, self.vv[self.k], ts, op, id_,
                     VECTORS[vec].tobytes() if op == "insert" else b"")
        self.log.append(body)

    def link(self, now_ms: int, i: int, j: int) -> None:
        """A LINK entry (as a leader makes after merging a remote insert): the i-th and
        j-th incarnations this region knows offered to each other."""
        keys = sorted(self.graph.keys())
        if len(keys) < 2:
            return
        x, y = keys[i % len(keys)], keys[j % len(keys)]
        if x == y:
            return
        ts = self.hlc.tick(now_ms * 1_000_000)
        self.vv[self.k] += 1
        body = encode_entry(self.k, self.vv[self.k], ts, LINK, 0, b"", [x, y], [y, x])
        merge(self.graph, decode_entry(body, DIM, REGIONS))
        self.log.append(body)

    def pull(self, other: Region) -> None:
        """Merge what ``other`` has and this lacks, in ``other``'s log order."""
        for body in other.log:
            f = decode_entry(body, DIM, REGIONS)
            if f[1] == self.vv[f[0]] + 1:
                merge(self.graph, f)
                self.hlc.observe(f[2])
                self.vv[f[0]] += 1
                self.log.append(body)


def run_program(program: list, cls: type[PoolGraph] = PoolGraph) -> list[Region]:
    regions = [Region(k, cls) for k in range(REGIONS)]
    for now, step in enumerate(program):
        if step[0] == "write":
            _, k, op, id_, vec = step
            regions[k].write(now, op, id_, vec)
        elif step[0] == "link":
            _, k, i, j = step
            regions[k].link(now, i, j)
        else:
            _, src, dst = step
            if src != dst:
                regions[dst].pull(regions[src])
    return regions


def merged(bodies: list[bytes], cls: type[PoolGraph] = PoolGraph) -> PoolGraph:
    g = cls(DIM, R=4, L=8)
    for body in bodies:
        merge(g, decode_entry(body, DIM, REGIONS))
    return g


def check(program: list, order_a: list[int], order_b: list[int],
          cls: type[PoolGraph] = PoolGraph) -> None:
    """The specification of the merge: every delivery order of the same entries, with
    duplicates, gives one state, the state of one order, with sound lists; regions that
    exchanged everything hold it."""
    regions = run_program(program, cls)
    bodies = sorted({b for r in regions for b in r.log})
    if not bodies:
        return
    one = merged(bodies, cls)
    for order in (order_a, order_b):
        seq = [bodies[i % len(bodies)] for i in order] + bodies  # all, some twice
        g = merged(seq, cls)
        assert g.pending == 0
        assert g.digest() == one.digest()
    assert one.graph_problems() == []
    for _ in range(2):  # two rounds of pulls between every pair: everyone has everything
        for a in regions:
            for b in regions:
                if a is not b:
                    a.pull(b)
    assert {r.graph.digest() for r in regions} == {one.digest()}


step = st.one_of(
    st.tuples(st.just("write"), st.integers(0, REGIONS - 1),
              st.sampled_from(["insert", "insert", "insert", "delete"]),
              st.integers(0, 15), st.integers(0, 63)),
    st.tuples(st.just("pull"), st.integers(0, REGIONS - 1), st.integers(0, REGIONS - 1)),
    st.tuples(st.just("link"), st.integers(0, REGIONS - 1), st.integers(0, 63),
              st.integers(0, 63)),
)
orders = st.lists(st.integers(0, 10**6), max_size=80)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, max_size=60), orders, orders)
def test_any_two_delivery_orders_of_the_same_entries_give_the_same_state(program, a, b):
    check(program, a, b)


# ---------------------------------------------------------------- planted bugs


class TombstoneLosesToAnOlderWrite(PoolGraph):
    """An incarnation that arrives after a tombstone lives, whatever its version."""

    def add(self, id_, version, vector):  # type: ignore[override]
        self._tomb.pop(int(id_), None)
        return super().add(id_, version, vector)


class CapByArrival(PoolGraph):
    """A full pool refuses newcomers, however close: the cap depends on arrival order."""

    def _offer_pairs(self, pairs):  # type: ignore[override]
        pairs = [(t, c) for t, c in pairs if self.pn[t] < self.pool]
        super()._offer_pairs(pairs)


@pytest.mark.parametrize("cls", [TombstoneLosesToAnOlderWrite, CapByArrival])
def test_the_property_catches_a_planted_bug(cls):
    rnd = random.Random(1)
    for _ in range(200):
        program = [("write", rnd.randrange(REGIONS), rnd.choice(["insert"] * 3 + ["delete"]),
                    rnd.randrange(16), rnd.randrange(64)) if rnd.random() < 0.8 else
                   ("pull", rnd.randrange(REGIONS), rnd.randrange(REGIONS))
                   for _ in range(60)]
        order = [rnd.randrange(10**6) for _ in range(80)]
        try:
            check(program, order, order[::-1], cls)
        except AssertionError:
            return
    pytest.fail(f"the merge property did not catch {cls.__name__}")


# ---------------------------------------------------------------- timestamps and entries


def test_a_clock_never_runs_backwards_and_follows_what_it_observed():
    c = HLC(2)
    t1 = c.tick(5_000_000)
    t2 = c.tick(4_000_000)  # the clock stepped back: still later
    assert t2 > t1
    c.observe(pack(90, 3, 0))
    t3 = c.tick(6_000_000)
    assert t3 > pack(90, 3, 0) and unpack(t3) == (90, 4, 2)


def test_timestamps_of_two_regions_never_tie():
    a, b = HLC(0), HLC(1)
    assert a.tick(10**6) != b.tick(10**6)
    with pytest.raises(InvalidArgument):
        HLC(256)


def test_an_entry_decodes_to_what_was_written_and_damage_is_refused():
    g = PoolGraph(DIM, R=4, L=8)
    body = write(g, 1, 1, pack(3, 0, 1), "insert", 9, VECTORS[0].tobytes(),
                 [0] * REGIONS)
    origin, seq, _ts, kind, id_, vec, _a, _b, vv = decode_entry(body, DIM, REGIONS)
    assert (origin, seq, kind, id_, vec) == (1, 1, INSERT, 9, VECTORS[0].tobytes())
    assert vv == [0] * REGIONS
    with pytest.raises(MalformedMessage):  # a version vector of another shard's regions
        decode_entry(write(PoolGraph(DIM, R=4, L=8), 1, 1, 5, "insert", 9,
                           VECTORS[0].tobytes(), [0] * (REGIONS + 1)), DIM, REGIONS)
    check_entry((1, MERGE, body), DIM)
    parts = entry_parts((1, MERGE, body))
    assert parts["vector"] == 4 * DIM and parts["total"] == len(body)
    for bad in (body[:-3], body + b"x", b"\x93\x01\x02\x03"):
        with pytest.raises(MalformedMessage):
            decode_entry(bad, DIM, REGIONS)
        with pytest.raises(DamagedEntry):
            check_entry((1, MERGE, bad), DIM)
    with pytest.raises(MalformedMessage):
        decode_entry(body, DIM + 1, REGIONS)  # another shard's dimension
    with pytest.raises(MalformedMessage):
        decode_entry(body, DIM, 1)  # an origin the shard does not have
    delete = write(g, 1, 2, pack(4, 0, 1), "delete", 9, b"")
    assert decode_entry(delete, DIM, REGIONS)[3] == DELETE

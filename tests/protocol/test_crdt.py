"""The crdt policy: entries merge in any order to the same state (the specification of
its merge), timestamps, the entry codec, and what a replica refuses."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from graphrep.ann.pools import PoolGraph
from graphrep.errors import DamagedEntry, InvalidArgument, MalformedMessage
from graphrep.protocol.crdt import write
from graphrep.protocol.entries import (
    DELETE,
    INSERT,
    LINK,
    check_entry,
    decode_entry,
    entry_parts,
)
from graphrep.protocol.hlc import HLC, pack, unpack
from graphrep.protocol.messages import MERGE
from graphrep.spec.merge import check, merge_property, run_program

DIM = 4
REGIONS = 3
VECTORS = np.random.default_rng(5).standard_normal((64, DIM)).astype(np.float32)


test_any_two_delivery_orders_of_the_same_entries_give_the_same_state = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])(
    merge_property())
"""The merge specification (graphrep.spec.merge) under the loaded profile: random
examples on a workstation; its planted bugs are caught in tests/spec/test_mutants.py."""


def test_a_program_replays_to_the_same_regions():
    program = [("write", 0, "insert", 1, 3), ("write", 1, "insert", 2, 4), ("pull", 0, 1),
               ("link", 1, 0, 1), ("write", 2, "delete", 1, 0), ("pull", 1, 2)]
    a, b = run_program(program), run_program(program)
    assert [r.graph.digest() for r in a] == [r.graph.digest() for r in b]
    check(program, list(range(10)), list(range(10))[::-1])


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


@pytest.mark.parametrize("module", ["crdt", "lww", "ordered"])
def test_each_active_active_module_can_be_imported_first(module):
    """The policies' modules import the appliers and register with them; the appliers
    find them on first use. Importing one first, in a fresh process, must work."""
    import subprocess
    import sys

    code = (f"import graphrep.protocol.{module}\n"
            "from graphrep.protocol.appliers import applier_class\n"
            "print(*(applier_class(p).policy for p in ('crdt', 'lww', 'ordered')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.split() == ["crdt", "lww", "ordered"]


def test_an_entry_whose_keys_do_not_match_their_counts_is_refused():
    import zlib

    import msgpack

    g = PoolGraph(DIM, R=4, L=8)
    write(g, 0, 1, pack(1, 0, 0), "insert", 1, VECTORS[1].tobytes(), [0] * REGIONS)
    body = write(g, 0, 2, pack(2, 0, 0), "insert", 2, VECTORS[2].tobytes(), [1, 0, 0])
    f = msgpack.unpackb(body)
    assert f[7] == 1 and f[8] >= 1
    bomb = zlib.compress(b"\x00" * (1 << 22))  # inflates far past what it names
    for bad in ({7: f[7] + 1}, {8: 0}, {6: bomb}, {6: b"not deflate"}, {7: -1},
                {8: 1 << 30}):
        g2 = list(f)
        for k, v in bad.items():
            g2[k] = v
        with pytest.raises(MalformedMessage):
            decode_entry(msgpack.packb(g2, use_bin_type=True), DIM, REGIONS)
    a, b = decode_entry(body, DIM, REGIONS)[6:8]
    assert a.tolist() == [[1, pack(1, 0, 0)]] and b.tolist() == [[1, pack(1, 0, 0)]]


def test_a_state_whose_every_node_is_dead_survives_its_bytes():
    """A snapshot of a state holding only dead incarnations (an insert, then its delete)
    loaded as an empty graph: the pool graph's length is its live count, and the state
    took an empty graph for "no graph given". Found by ``graphrep fuzz --policy crdt
    --nemesis partitions --steps 150 --seed 15`` (digests differed after quiescence)."""
    from graphrep.protocol.config import ReplicaConfig
    from graphrep.protocol.crdt import CrdtState

    cfg = ReplicaConfig(replicas=("a",), dim=DIM, R=8, L=16, policy="crdt")
    st = CrdtState(cfg)
    write(st.graph, 0, 1, 10 << 8, "insert", 3, VECTORS[3].tobytes())
    write(st.graph, 0, 2, 11 << 8, "delete", 3, b"")
    assert len(st.graph) == 0 and st.graph.version(3) is not None
    back = CrdtState.from_bytes(cfg, st.to_bytes())
    assert back.digest() == st.digest()
    assert back.graph.tombstone_version(3) == 11 << 8


def test_a_death_is_collected_once_every_other_region_said_it_merged_it():
    from graphrep.protocol.crdt import Collector

    c = Collector(3)
    assert c.merged(0, 1, DELETE, 5, 100, [0, 0, 0]) == []  # region 0 deletes id 5
    assert c.waits_for(1) and c.waits_for(2) and not c.waits_for(0)
    # region 1 writes having merged it; region 2 has not said so yet: it may still ship
    # an entry naming id 5's incarnation, written before it merged the delete
    assert c.merged(1, 1, INSERT, 6, 101, [1, 0, 0]) == []
    assert not c.waits_for(1) and c.waits_for(2)
    assert c.merged(2, 1, LINK, 0, 102, [1, 1, 0]) == [(5, 100)]
    assert not c.waits_for(2)
    assert c.merged(0, 2, LINK, 0, 103, [1, 1, 1]) == [(6, 101)]  # region 0 passed 6
    back = Collector.from_list(c.to_list())
    assert back.to_list() == c.to_list() == [[[1, 1, 1], [1, 0, 0], [1, 1, 0]],
                                             [[], [], []]]  # links kill nothing


def test_an_idle_leader_marks_what_it_merged_so_that_deletes_can_be_collected():
    """A region that writes nothing would hold every other region's deletes back: once a
    delete it merged waits for it and it has logged nothing for MARK_ROUNDS rounds, its
    leader logs an empty LINK carrying its version vector."""
    from graphrep.protocol.config import ReplicaConfig
    from graphrep.protocol.crdt import MARK_ROUNDS, CrdtApplier

    groups = (("eu", ("eu0",)), ("us", ("us0",)))
    cfg = ReplicaConfig(replicas=("eu0",), dim=DIM, R=8, L=16, policy="crdt",
                        regions=groups, region="eu")
    a = CrdtApplier(cfg)
    us = CrdtApplier(ReplicaConfig(replicas=("us0",), dim=DIM, R=8, L=16, policy="crdt",
                                   regions=groups, region="us"))
    bodies = [us.execute("insert", 7, VECTORS[7].tobytes()),
              us.execute("delete", 7, b"")]
    for pos, body in enumerate(bodies):
        a.merge_remote(body, pos)
    assert a.take_links() is None  # it wrote nothing, but rounds have not passed
    assert a.state.graph.garbage()["tombstones"] == 1
    for _ in range(MARK_ROUNDS):
        a.on_round()
    mark = a.take_links()
    assert mark is not None
    f = decode_entry(mark, DIM, 2)
    assert f[3] == LINK and f[6].size == 0 and f[8] == [0, 2]
    assert a.take_links() is None  # said once
    # two regions: each forgets once it has the other's word (eu: its own mark)
    assert a.state.graph.garbage() == {"tombstones": 0, "dead": 0, "ghosts": 0}
    assert us.state.graph.garbage()["tombstones"] == 1
    assert list(us.state.keys[1]) == [1] and a.state.keys[1] == {}  # its own inserts only
    us.merge_remote(mark, 2)
    assert us.state.keys[1] == {}  # eu has seen them: no link will name them
    assert us.state.graph.garbage() == {"tombstones": 0, "dead": 0, "ghosts": 0}


def test_an_idle_leader_marks_an_update_it_merged_and_not_a_plain_insert():
    """Two regions insert id 7 at once (each before the other's arrived): the later
    timestamp's incarnation supersedes the other, which is dead and waits for the cut. The
    region whose word it waits for marks once idle; a plain insert kills nothing and
    waits for no mark."""
    from graphrep.protocol.config import ReplicaConfig
    from graphrep.protocol.crdt import MARK_ROUNDS, CrdtApplier

    groups = (("eu", ("eu0",)), ("us", ("us0",)))

    def applier(region: str) -> CrdtApplier:
        return CrdtApplier(ReplicaConfig(replicas=(f"{region}0",), dim=DIM, R=8, L=16,
                                         policy="crdt", regions=groups, region=region))

    eu, us = applier("eu"), applier("us")
    plain = us.execute("insert", 3, VECTORS[3].tobytes())
    eu.merge_remote(plain, 0)
    for _ in range(MARK_ROUNDS):
        eu.on_round()
    assert eu.take_links() is None  # a plain insert: nothing to collect, no mark
    mine = eu.execute("insert", 7, VECTORS[7].tobytes())
    theirs = us.execute("insert", 7, VECTORS[8].tobytes())  # later: us's clock ran on
    eu.merge_remote(theirs, 2)
    us.merge_remote(mine, 1)
    for a in (eu, us):
        assert a.state.graph.garbage()["dead"] == 1  # eu's incarnation of 7 lost
        assert a.state.waiting  # something will still happen
    for _ in range(MARK_ROUNDS):
        eu.on_round()
        us.on_round()
    mark = eu.take_links()  # us's insert waits for eu's word
    assert mark is not None and decode_entry(mark, DIM, 2)[3] == LINK
    us.merge_remote(mark, 3)
    for a in (eu, us):  # (a pool may still name it: a ghost)
        g = a.state.graph.garbage()
        assert g["tombstones"] == g["dead"] == 0 and not a.state.waiting
    assert eu.state.digest() == us.state.digest()

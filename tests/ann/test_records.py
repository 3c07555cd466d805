"""Anti-entropy records: per-node hashes, exporting records, and repairing a replica
by writing a trusted copy's records over it.

The repair these tests run is the one the protocol runs: compare the two
indexes' record_hashes(), export from the good index the records the bad one
lacks or holds differently, drop the ids the good one lacks, and overwrite.
After it the digests are equal and the graph is healthy; a repair that doesn't
fit raises and changes nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graphrep.ann import VamanaIndex
from graphrep.ann.kernels import DELETED, LIVE
from graphrep.ann.records import RecordSet
from graphrep.datasets import gmm_dataset
from graphrep.errors import (
    CorruptDelta,
    DeltaError,
    DimensionMismatch,
    GraphrepError,
    InvalidArgument,
    InvalidId,
    UnknownId,
)
from graphrep.spec.profiles import scaled_examples
from tests.ann.test_properties import (
    Scenario,
    assert_replica_equal,
    new_id,
    replay,
    run_scenario,
    scenarios,
    vector_st,
)

DIM = 8
PROJECT_ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- helpers


def primary(metric: str = "l2") -> tuple[VamanaIndex, list, np.ndarray, np.ndarray]:
    """A built index with inserts, a consolidation and pending tombstones, and its log."""
    base, q = gmm_dataset(300, 8, DIM, n_clusters=6, seed=11)
    idx = VamanaIndex(DIM, metric, R=6, L=20)
    log = idx.build(base[:150], ids=np.arange(150) * 3 + 2)
    log += [idx.insert(1000 + i, base[150 + i]) for i in range(50)]
    log += [idx.delete(int(i)) for i in idx.ids()[:40:4]]
    log += idx.consolidate()
    log += [idx.delete(int(i)) for i in idx.ids()[5:30:5]]
    return idx, log, base, q


def copy_of(idx: VamanaIndex) -> VamanaIndex:
    return VamanaIndex.from_bytes(idx.to_bytes())


def differing(good: VamanaIndex, bad: VamanaIndex) -> tuple[np.ndarray, np.ndarray]:
    """(ids to send from good: changed or missing in bad, ids to drop from bad)."""
    ig, hg = good.record_hashes()
    ib, hb = bad.record_hashes()
    common, ga, ba = np.intersect1d(ig, ib, return_indices=True)
    send = np.union1d(common[hg[ga] != hb[ba]], np.setdiff1d(ig, ib))
    return send, np.setdiff1d(ib, ig)


def repair(good: VamanaIndex, bad: VamanaIndex) -> tuple[np.ndarray, np.ndarray]:
    """The protocol's repair, through bytes; returns what it sent and dropped."""
    send, drop = differing(good, bad)
    records = RecordSet.from_bytes(good.export_records(send).to_bytes())
    seq = bad.seq
    bad.overwrite_records(records, drop_ids=drop,
                          entry_id=good.entry_id if good.entry_id >= 0 else None)
    assert bad.seq == seq  # a repair is not a log entry
    assert bad.last_op["op"] == "overwrite_records"
    return send, drop


def assert_repaired(good: VamanaIndex, bad: VamanaIndex, q) -> None:
    assert bad.graph_problems() == []
    assert_replica_equal(good, bad, q)
    for key in ("size", "live", "deleted", "degree_histogram", "in_degree_histogram"):
        assert bad.stats()[key] == good.stats()[key], key
    hg, hb = good.record_hashes(), bad.record_hashes()
    assert np.array_equal(hg[0], hb[0]) and np.array_equal(hg[1], hb[1])
    assert [len(a) for a in differing(good, bad)] == [0, 0]


def set_list(idx: VamanaIndex, id_: int, new: list[int]) -> None:
    """Corrupt a list through the internal arrays, keeping the in-degree counters exact
    (a replica that diverged is consistent with itself, only different)."""
    g = idx._g
    s = idx._idmap.get(id_)
    for t in g.nbrs[s, : g.deg[s]]:
        g.indeg[t] -= 1
    g.nbrs[s] = -1
    slots = [idx._idmap.get(i) for i in new]
    g.nbrs[s, : len(slots)] = slots
    g.deg[s] = len(slots)
    for t in slots:
        g.indeg[t] += 1


def state(idx: VamanaIndex) -> tuple:
    """Everything a failed repair must leave alone."""
    st_ = idx.stats()
    ids, hashes = idx.record_hashes()
    return (idx.digest(), idx.seq, len(idx), idx.entry_id, ids.tobytes(), hashes.tobytes(),
            *(json.dumps(st_[k]) for k in ("size", "live", "deleted", "capacity",
                                           "degree_histogram", "in_degree_histogram")),
            idx._n_slots, idx._n_free)


def assert_unchanged(idx: VamanaIndex, exc, fn, *args, **kw) -> GraphrepError:
    before = state(idx)
    with pytest.raises(exc) as info:
        fn(*args, **kw)
    assert type(info.value) is exc, f"raised {type(info.value).__name__}, want {exc.__name__}"
    assert str(info.value)
    assert state(idx) == before
    assert idx.graph_problems() == []
    return info.value


# --------------------------------------------------------------------------- record_hashes


def test_record_hashes_cover_every_stored_node() -> None:
    idx, _, _, _ = primary()
    ids, hashes = idx.record_hashes()
    assert ids.dtype == np.int64 and hashes.dtype == np.uint64
    assert np.array_equal(ids, idx.ids(include_deleted=True))  # live and deleted, sorted
    assert len(ids) == idx.stats()["size"] > len(idx)
    assert np.unique(hashes).size == hashes.size
    empty = VamanaIndex(DIM).record_hashes()
    assert empty[0].shape == empty[1].shape == (0,)


def test_record_hashes_ignore_slot_layout_and_list_order() -> None:
    a, log, _, _ = primary()
    want = a.record_hashes()
    # a replica by deltas, with another capacity
    b = VamanaIndex(DIM, R=6, L=20, capacity=3)
    b.apply(log)
    # a copy written node by node in a shuffled order: another slot for every id
    c = VamanaIndex(DIM, R=6, L=20)
    rs = a.export_records(want[0])
    perm = np.random.default_rng(1).permutation(len(rs))
    lists = [rs.neighbours_of(int(i))[::-1] for i in perm]  # and each list reversed
    c.overwrite_records(RecordSet(DIM, rs.ids[perm], rs.flags[perm], rs.vectors[perm],
                                  rs.counts[perm], np.concatenate(lists)),
                        entry_id=a.entry_id)
    assert not np.array_equal(c._g.ext[: c._n_slots], a._g.ext[: a._n_slots])
    # lists permuted in memory
    d = copy_of(a)
    rng = np.random.default_rng(2)
    for s in range(d._n_slots):
        k = d._g.deg[s]
        d._g.nbrs[s, :k] = d._g.nbrs[s, :k][rng.permutation(k)]
    for other in (b, c, d):
        got = other.record_hashes()
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
        assert other.digest() == a.digest()


@pytest.mark.parametrize("change", ["list", "vector", "vector-sign-of-zero", "flags"])
def test_one_change_changes_exactly_that_hash(change) -> None:
    a, _, _, _ = primary()
    b = copy_of(a)
    ids = a.ids()
    victim = int(ids[17])
    s = b._idmap.get(victim)
    if change == "list":
        nb = b.neighbors(victim).tolist()
        other = next(int(i) for i in ids if int(i) not in nb and int(i) != victim)
        set_list(b, victim, [*nb[:-1], other])
    elif change == "vector":
        b._g.vecs[s, 3] = np.nextafter(b._g.vecs[s, 3], np.float32(np.inf))
    elif change == "vector-sign-of-zero":  # equal as numbers, not as bytes
        a._g.vecs[a._idmap.get(victim), 0] = 0.0
        b._g.vecs[s, 0] = -0.0
    else:
        b._g.flags[s] = DELETED
    (ia, ha), (ib, hb) = a.record_hashes(), b.record_hashes()
    assert np.array_equal(ia, ib)
    assert ia[ha != hb].tolist() == [victim]
    assert a.digest() != b.digest()


def test_record_hashes_are_the_same_in_another_process() -> None:
    """No Python hash(), no seed: a child process with another PYTHONHASHSEED agrees."""
    code = textwrap.dedent(
        """
        import hashlib
        import numpy as np
        from graphrep.ann import VamanaIndex
        from graphrep.datasets import gmm_dataset
        base, _ = gmm_dataset(200, 1, 8, n_clusters=5, seed=4)
        idx = VamanaIndex(8, "cosine", R=6, L=16)
        idx.build(base[:150], ids=np.arange(150)[::-1] * 7)
        for i in range(150, 200):
            idx.insert(5000 + i, base[i])
        idx.delete(7)
        ids, h = idx.record_hashes()
        print(hashlib.blake2b(ids.tobytes() + h.tobytes()).hexdigest())
        """
    )
    outs = set()
    for seed in ("0", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(PROJECT_ROOT))
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True, cwd=PROJECT_ROOT, check=True)
        outs.add(r.stdout.strip())
    namespace: dict = {}
    exec(code.replace("print(", "out = ("), namespace)  # and this process too
    outs.add(namespace["out"])
    assert len(outs) == 1


# --------------------------------------------------------------------------- export


def test_export_records_are_the_index_contents() -> None:
    a, _, _, _ = primary("cosine")
    ids = a.ids(include_deleted=True)
    want = [int(ids[i]) for i in (9, 0, 3, 3)]  # any order, repeats
    rs = a.export_records(want)
    assert rs.ids.tolist() == sorted(set(want))
    for i, id_ in enumerate(rs.ids.tolist()):
        assert rs.flags[i] == (DELETED if a.is_deleted(id_) else LIVE)
        assert rs.vectors[i].tobytes() == a.vector(id_).tobytes()
        assert rs.neighbours_of(i).tolist() == a.neighbors(id_).tolist()
    assert rs.offsets[-1] == rs.neighbours.size == int(rs.counts.sum())
    assert len(a.export_records([])) == 0
    assert len(a.export_records(np.array([], dtype=np.int64))) == 0


def test_export_unknown_id_raises() -> None:
    a, _, _, _ = primary()
    freed = 2  # id 2 was deleted and consolidated away
    assert freed not in a.ids(include_deleted=True)
    for bad in ([10**9], [int(a.ids()[0]), freed]):
        with pytest.raises(UnknownId, match="not stored"):
            a.export_records(bad)
    with pytest.raises(InvalidId):
        a.export_records([-1])
    with pytest.raises(InvalidId):
        a.export_records(["x"])


def test_record_set_bytes_round_trip_and_sizes() -> None:
    a, _, _, _ = primary()
    rs = a.export_records(a.ids(include_deleted=True)[:40])
    data = rs.to_bytes()
    back = RecordSet.from_bytes(data)
    assert back == rs and back is not rs
    parts = rs.size_by_part()
    assert parts["total"] == len(data) == rs.nbytes
    assert parts["vector"] == 40 * DIM * 4
    assert parts["edges"] == 4 * 40 + 8 * rs.neighbours.size
    assert parts["vector"] + parts["edges"] + parts["metadata"] == parts["total"]
    empty = RecordSet.empty(DIM)
    assert RecordSet.from_bytes(empty.to_bytes()) == empty
    assert RecordSet.from_bytes(bytearray(data)) == rs


def test_record_set_damage_raises_corrupt_delta() -> None:
    a, log, _, _ = primary()
    data = a.export_records(a.ids()[:5]).to_bytes()
    for pos in range(len(data)):  # CRC-32 catches every single flipped byte
        bad = bytearray(data)
        bad[pos] ^= 0x41
        with pytest.raises(CorruptDelta, match="corrupt record set"):
            RecordSet.from_bytes(bytes(bad))
    for cut in range(len(data)):
        with pytest.raises(CorruptDelta):
            RecordSet.from_bytes(data[:cut])
    for foreign in (b"", b"GRR1" + bytes(40), log[0].to_bytes(), a.to_bytes()[:500]):
        with pytest.raises(CorruptDelta):
            RecordSet.from_bytes(foreign)
    with pytest.raises(InvalidArgument):
        RecordSet.from_bytes("text")  # type: ignore[arg-type]


def test_record_set_checks_its_shapes() -> None:
    ok = dict(dim=2, ids=[1, 2], flags=[1, 1], vectors=np.zeros((2, 2)), counts=[1, 1],
              neighbours=[2, 1])
    RecordSet(**ok)
    for change in ({"dim": 0}, {"dim": "2"}, {"ids": [[1, 2]]}, {"flags": [1]},
                   {"vectors": np.zeros((2, 3))}, {"counts": [1, 2]}, {"counts": [-1, 3]},
                   {"ids": [1.5, 2.0]}, {"vectors": np.array([["a", "b"], ["c", "d"]])}):
        with pytest.raises(InvalidArgument):
            RecordSet(**(ok | change))
    # a RecordSet copies what it is given: editing the input afterwards changes nothing
    ids = np.array([1, 2])
    rs = RecordSet(**(ok | {"ids": ids}))
    ids[0] = 99
    assert rs.ids.tolist() == [1, 2]
    with pytest.raises(ValueError):
        rs.ids[0] = 5


# --------------------------------------------------------------------------- repairs


def _corrupt_list(a, b, ids, base):
    victim = int(ids[11])
    nb = b.neighbors(victim).tolist()
    other = next(int(i) for i in ids if int(i) not in nb and int(i) != victim)
    set_list(b, victim, [*nb[1:], other])


def _corrupt_vector(a, b, ids, base):
    b._g.vecs[b._idmap.get(int(ids[20])), 0] += 0.5


def _corrupt_flag(a, b, ids, base):
    s = b._idmap.get(int(ids[30]))
    b._g.flags[s] = DELETED
    b._n_live -= 1
    b._n_deleted += 1


def _corrupt_undelete(a, b, ids, base):
    deleted = [int(i) for i in a.ids(include_deleted=True) if a.is_deleted(int(i))]
    b._g.flags[b._idmap.get(deleted[0])] = LIVE
    b._n_live += 1
    b._n_deleted -= 1


def _lose_a_node(a, b, ids, base):
    """b lacks a node a has: b deletes and consolidates it away on its own."""
    b.delete(int(ids[40]))
    b.consolidate()


def _bogus_node(a, b, ids, base):
    """b holds a node a never had (and the lists its insert changed)."""
    b.insert(77_777, base[-1])


def _bogus_then_lost_entry(a, b, ids, base):
    """b deletes its entry point and consolidates: another entry, lists, freed slots."""
    if not b.is_deleted(b.entry_id):
        b.delete(b.entry_id)
    entry = b.entry_id
    b.consolidate()
    assert b.entry_id != entry
    b.insert(88_888, base[-2])


def _diverged_by_deltas(a, b, ids, base):
    """b missed a's last deltas and made others of its own."""
    b.insert(55_555, base[-3])
    b.delete(int(ids[3]))
    b.insert(55_556, base[-4])


CORRUPTIONS = [_corrupt_list, _corrupt_vector, _corrupt_flag, _corrupt_undelete, _lose_a_node,
               _bogus_node, _bogus_then_lost_entry, _diverged_by_deltas]


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=lambda f: f.__name__.strip("_"))
@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_repair_from_the_differing_records(corrupt, metric) -> None:
    a, log, base, q = primary(metric)
    if corrupt is _diverged_by_deltas:
        b = VamanaIndex(DIM, metric, R=6, L=20)
        b.apply(log[:-4])
    else:
        b = copy_of(a)
    corrupt(a, b, a.ids(), base)
    assert b.digest() != a.digest()
    send, drop = repair(a, b)
    assert 0 < len(send) + len(drop) < 60  # a repair, not a copy
    assert_repaired(a, b, q)
    # the repaired replica keeps working like the original
    for idx in (a, b):
        idx.insert(99_999, base[-5])
        idx.delete(int(idx.ids()[1]))
        idx.consolidate()
    assert_repaired(a, b, q)


def test_repair_the_other_way_and_between_empty_and_full() -> None:
    a, _, base, q = primary()
    b = copy_of(a)
    _bogus_node(a, b, a.ids(), base)
    repair(b, a)  # the bogus node is what is trusted now
    assert_repaired(b, a, q)
    # from nothing to everything, and back to nothing
    empty = VamanaIndex(DIM, R=6, L=20)
    send, drop = repair(a, empty)
    assert len(send) == a.stats()["size"] and len(drop) == 0
    assert_repaired(a, empty, q)
    gone = copy_of(a)
    repair(VamanaIndex(DIM, R=6, L=20), gone)
    assert gone.digest() == VamanaIndex(DIM, R=6, L=20).digest()
    assert gone.entry_id == -1 and len(gone) == 0 and gone.graph_problems() == []


def test_cosine_vectors_are_stored_as_given() -> None:
    """A cosine copy's vectors are normalised already; renormalising would change bits."""
    a, _, _, q = primary("cosine")
    b = VamanaIndex(DIM, "cosine", R=6, L=20)
    repair(a, b)
    assert_repaired(a, b, q)
    odd = np.full((1, DIM), 3.0, np.float32)  # not unit: stored bit for bit all the same
    rs = RecordSet(DIM, [5_000_000], [LIVE], odd, [1], [int(a.ids()[0])])
    b.overwrite_records(rs)
    assert b.vector(5_000_000).tobytes() == odd[0].tobytes()


def test_repair_reuses_freed_slots_and_grows() -> None:
    a, _, base, q = primary()
    b = VamanaIndex(DIM, R=6, L=20, capacity=1)
    repair(a, b)  # grows from capacity 1
    assert_repaired(a, b, q)
    c = copy_of(a)
    free, used = c._n_free, c._n_slots
    assert free >= 6
    _bogus_node(a, c, a.ids(), base)
    for i in range(5):
        c.insert(66_000 + i, base[i] + 0.01)
    assert c._n_free == free - 6  # the inserts took freed slots
    send, drop = repair(a, c)
    assert len(drop) == 6 and np.isin(send, a.ids(include_deleted=True)).all()
    assert (c._n_free, c._n_slots) == (free, used)  # and the repair gave them back
    assert_repaired(a, c, q)


@given(sc=scenarios(max_build=20, max_ops=20), cut=st.floats(0, 1), data=st.data())
@settings(max_examples=scaled_examples(0.6))
def test_any_divergence_is_repaired(sc: Scenario, cut: float, data) -> None:
    """A replica that applied a prefix of the primary's deltas and then went its own way
    (inserts, deletes, consolidations of its own) is repaired from its record diff."""
    a, deltas = run_scenario(sc, check=False)
    b = replay(sc, deltas[: int(cut * len(deltas))], via_bytes=False)
    own = data.draw(st.lists(st.one_of(
        st.tuples(st.just("insert"), st.integers(0, 60), vector_st(sc.params.dim,
                                                                   sc.params.metric)),
        st.tuples(st.just("delete"), st.integers(0, 1000)),
        st.just(("consolidate",)),
    ), max_size=8), label="replica's own ops")
    for op in own:
        if op[0] == "insert":  # ids that may collide with the primary's later ones
            i = new_id(op[1])
            if i not in b.ids(include_deleted=True):
                b.insert(i, np.asarray(op[2], np.float32))
        elif op[0] == "delete" and len(b):
            b.delete(int(b.ids()[op[1] % len(b)]))
        elif op[0] == "consolidate":
            b.consolidate()
    repair(a, b)
    assert_repaired(a, b, sc.queries)


# --------------------------------------------------------------------------- bad repairs


@pytest.fixture
def pair() -> tuple[VamanaIndex, VamanaIndex]:
    a, _, _, _ = primary()
    return a, copy_of(a)


def _with(rs: RecordSet, **changes) -> RecordSet:
    kw = {k: getattr(rs, k) for k in ("dim", "ids", "flags", "vectors", "counts",
                                      "neighbours")}
    return RecordSet(**(kw | changes))


def test_dropping_a_node_others_still_point_at_raises(pair) -> None:
    a, b = pair
    target = int(a.ids()[12])
    pointers = [int(i) for i in a.ids(include_deleted=True) if target in a.neighbors(int(i))]
    assert pointers
    err = assert_unchanged(b, DeltaError, b.overwrite_records, RecordSet.empty(DIM),
                           drop_ids=[target])
    assert "dangling" in str(err) and str(target) in str(err)
    # overwriting all but one of the nodes that point at it is still not enough
    src = a.export_records(pointers[:-1])
    lists = [[j for j in src.neighbours_of(k).tolist() if j != target] for k in range(len(src))]
    fixed = _with(src, counts=[len(x) for x in lists], neighbours=[j for x in lists for j in x])
    err = assert_unchanged(b, DeltaError, b.overwrite_records, fixed, drop_ids=[target])
    assert str(pointers[-1]) in str(err)
    # all of them: then the drop is fine
    src = a.export_records(pointers)
    lists = [[j for j in src.neighbours_of(k).tolist() if j != target] for k in range(len(src))]
    flat = [j for x in lists for j in x]
    b.overwrite_records(_with(src, counts=[len(x) for x in lists], neighbours=flat),
                        drop_ids=[target])
    assert target not in b.ids(include_deleted=True) and b.graph_problems() == []


def test_unknown_neighbour_raises(pair) -> None:
    a, b = pair
    rs = a.export_records(a.ids()[:3])
    nb = rs.neighbours.copy()
    nb[-1] = 123_456_789  # stored nowhere
    err = assert_unchanged(b, DeltaError, b.overwrite_records, _with(rs, neighbours=nb))
    assert "123456789" in str(err)
    # a neighbour that this very repair drops
    victim = int(rs.neighbours[0])
    assert_unchanged(b, DeltaError, b.overwrite_records, rs, drop_ids=[victim])
    # a neighbour that only a record of the same repair creates is fine
    new = RecordSet(DIM, [4242], [LIVE], np.ones((1, DIM)), [0], [])
    nb = rs.neighbours.copy()
    nb[rs.offsets[1] - 1] = 4242
    both = RecordSet(DIM, np.r_[rs.ids, 4242], np.r_[rs.flags, LIVE],
                     np.vstack([rs.vectors, new.vectors]), np.r_[rs.counts, 0], nb)
    b.overwrite_records(both)
    assert b.graph_problems() == [] and 4242 in b


def test_wrong_dimension_raises(pair) -> None:
    a, b = pair
    rs = a.export_records(a.ids()[:2])
    wide = RecordSet(DIM + 1, rs.ids, rs.flags, np.hstack([rs.vectors, np.ones((2, 1))]),
                     rs.counts, rs.neighbours)
    assert_unchanged(b, DimensionMismatch, b.overwrite_records, wide)


@pytest.mark.parametrize("case", [
    "flags-free", "flags-7", "list-longer-than-R", "self-loop", "repeated-neighbour",
    "repeated-record", "nan-vector", "negative-id", "drop-and-overwrite", "entry-unknown",
    "drop-twice",
])
def test_bad_repairs_change_nothing(pair, case) -> None:
    a, b = pair
    rs = a.export_records(a.ids()[:4])
    ids = rs.ids
    first = int(ids[0])
    nb = rs.neighbours.copy()
    kw: dict = {}
    if case == "flags-free":
        records = _with(rs, flags=[0, 1, 1, 1])
    elif case == "flags-7":
        records = _with(rs, flags=[1, 7, 1, 1])
    elif case == "list-longer-than-R":
        extra = [int(i) for i in a.ids() if int(i) not in nb[: rs.counts[0]]
                 and int(i) != first][: a.R + 1 - int(rs.counts[0])]
        nb0 = list(nb[: rs.counts[0]]) + extra
        records = _with(rs, counts=np.r_[len(nb0), rs.counts[1:]],
                        neighbours=np.r_[nb0, nb[rs.counts[0]:]])
    elif case == "self-loop":
        nb[0] = first
        records = _with(rs, neighbours=nb)
    elif case == "repeated-neighbour":
        nb[1] = nb[0]
        records = _with(rs, neighbours=nb)
    elif case == "repeated-record":
        records = _with(rs, ids=[first, first, ids[2], ids[3]])
    elif case == "nan-vector":
        v = rs.vectors.copy()
        v[2, 1] = np.nan
        records = _with(rs, vectors=v)
    elif case == "negative-id":
        records = _with(rs, ids=[-5, *ids[1:]])
    elif case == "drop-and-overwrite":
        records, kw = rs, {"drop_ids": [first]}
    elif case == "entry-unknown":
        records, kw = rs, {"entry_id": 31_337}
    else:
        records, kw = rs, {"drop_ids": [int(a.ids()[-1])] * 2}
    assert_unchanged(b, DeltaError, b.overwrite_records, records, **kw)


def test_bad_arguments_raise_their_own_errors(pair) -> None:
    a, b = pair
    rs = a.export_records(a.ids()[:2])
    assert_unchanged(b, InvalidArgument, b.overwrite_records, "records")
    assert_unchanged(b, UnknownId, b.overwrite_records, rs, drop_ids=[10**9])
    assert_unchanged(b, InvalidId, b.overwrite_records, rs, drop_ids=[-3])
    assert_unchanged(b, InvalidId, b.overwrite_records, rs, drop_ids=["x"])
    assert_unchanged(b, InvalidId, b.overwrite_records, rs, entry_id="x")


def test_removing_the_entry_needs_a_new_one() -> None:
    """Dropping every node but some: the entry point goes unless entry_id names another."""
    a, _, _, _ = primary()
    keep = int(a.ids()[0]) if int(a.ids()[0]) != a.entry_id else int(a.ids()[1])
    b = copy_of(a)
    everything = b.ids(include_deleted=True)
    lone = RecordSet(DIM, [keep], [LIVE], b.vector(keep)[None, :], [0], [])
    drop = everything[everything != keep]
    err = assert_unchanged(b, DeltaError, b.overwrite_records, lone, drop_ids=drop)
    assert "entry_id" in str(err)
    b.overwrite_records(lone, drop_ids=drop, entry_id=keep)
    assert b.ids(include_deleted=True).tolist() == [keep] and b.entry_id == keep
    assert b.graph_problems() == [] and b.search(np.ones(DIM), k=3)[0][0] == keep

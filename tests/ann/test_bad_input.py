"""Every bad input raises its specific GraphrepError subclass and changes nothing.

"Changes nothing" is checked on the observable state: digest, len, seq, the
stats (size, live, deleted, degree histograms) and, where the index holds
vectors, search results; and the index still works afterwards.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
import zlib

import numpy as np
import pytest

from graphrep.ann import EdgeDelta, VamanaIndex
from graphrep.ann.records import RecordSet
from graphrep.datasets import gmm_dataset
from graphrep.errors import (
    CorruptDelta,
    CorruptIndexFile,
    DeltaError,
    DeltaOutOfOrder,
    DimensionMismatch,
    DuplicateId,
    EmptyIndex,
    GraphrepError,
    IndexNotEmpty,
    InvalidArgument,
    InvalidId,
    InvalidVector,
    UnknownId,
)

DIM = 6
NAN, INF = float("nan"), float("inf")


def snapshot(idx: VamanaIndex) -> tuple:
    st = idx.stats()
    keys = ("size", "live", "deleted", "degree_histogram", "in_degree_histogram", "entry_id")
    out = (idx.digest(), len(idx), idx.seq, tuple(idx.ids(include_deleted=True).tolist()),
           *(json.dumps(st[k]) for k in keys))
    if len(idx):
        out += (idx.search(np.ones(DIM, np.float32), k=5)[0].tobytes(),)
    return out


def assert_rejected(idx: VamanaIndex, exc, fn, *args, exact=True, **kw):
    """``fn(*args, **kw)`` raises ``exc`` (that very class unless ``exact`` is False) and
    leaves ``idx`` exactly as it was."""
    before = snapshot(idx)
    with pytest.raises(exc) as info:
        fn(*args, **kw)
    if exact:
        assert type(info.value) is exc, f"raised {type(info.value).__name__}, want {exc.__name__}"
    assert isinstance(info.value, GraphrepError)
    assert str(info.value)  # says what was wrong
    assert snapshot(idx) == before
    assert idx.graph_problems() == []
    return info.value


@pytest.fixture
def data() -> np.ndarray:
    base, _ = gmm_dataset(80, 1, DIM, n_clusters=4, seed=7)
    return base


@pytest.fixture
def idx(data) -> VamanaIndex:
    """A built index with a pending tombstone (id 3), ids 0..59 minus 3 live."""
    i = VamanaIndex(DIM, R=5, L=16)
    i.build(data[:60])
    i.delete(3)
    return i


def still_works(idx: VamanaIndex, data: np.ndarray) -> None:
    new = max(idx.ids(include_deleted=True).tolist(), default=-1) + 1000
    idx.insert(new, data[0] + 0.25)
    assert new in idx and idx.graph_problems() == []


# --------------------------------------------------------------------------- vectors


@pytest.mark.parametrize("bad", [np.zeros(DIM - 1), np.zeros(DIM + 1), np.zeros(0)])
def test_insert_wrong_dimension(idx, data, bad) -> None:
    assert_rejected(idx, DimensionMismatch, idx.insert, 500, bad)
    still_works(idx, data)


@pytest.mark.parametrize("bad_dim", [DIM - 1, DIM + 3])
def test_search_and_build_wrong_dimension(idx, data, bad_dim) -> None:
    assert_rejected(idx, DimensionMismatch, idx.search, np.zeros(bad_dim), k=3)
    assert_rejected(idx, DimensionMismatch, idx.search, np.zeros((4, bad_dim)), k=3)
    empty = VamanaIndex(DIM, R=5, L=16)
    assert_rejected(empty, DimensionMismatch, empty.build, np.zeros((10, bad_dim)))
    still_works(empty, data)


@pytest.mark.parametrize("value", [NAN, INF, -INF])
def test_non_finite_vectors(idx, data, value) -> None:
    v = data[0].astype(np.float64).copy()
    v[2] = value
    assert_rejected(idx, InvalidVector, idx.insert, 500, v)
    assert_rejected(idx, InvalidVector, idx.insert, 500, v.astype(np.float32))
    assert_rejected(idx, InvalidVector, idx.search, v, k=3)
    batch = data[:5].copy()
    batch[4, 0] = value
    assert_rejected(idx, InvalidVector, idx.search, batch, k=3)
    empty = VamanaIndex(DIM, R=5, L=16)
    assert_rejected(empty, InvalidVector, empty.build, batch)
    still_works(idx, data)


def test_float64_overflowing_float32(idx, data) -> None:
    v = data[0].astype(np.float64)
    v[0] = 1e300
    assert_rejected(idx, InvalidVector, idx.insert, 500, v)
    empty = VamanaIndex(DIM, R=5, L=16)
    assert_rejected(empty, InvalidVector, empty.build, v[None, :])


@pytest.mark.parametrize(
    "bad",
    [
        ["a"] * DIM,
        "abcdef",
        [1, 2, 3, "x", 5, 6],
        None,
        {"a": 1},
        [[1, 2, 3, 4, 5, 6], [1, 2]],  # ragged
        np.array([object()] * DIM),
        np.zeros(DIM, dtype=complex),
    ],
    ids=["strings", "str", "mixed", "none", "dict", "ragged", "objects", "complex"],
)
def test_non_numeric_or_ragged(idx, data, bad) -> None:
    assert_rejected(idx, InvalidVector, idx.insert, 500, bad)
    assert_rejected(idx, InvalidVector, idx.search, bad, k=3)
    empty = VamanaIndex(DIM, R=5, L=16)
    assert_rejected(empty, InvalidVector, empty.build, bad)
    still_works(idx, data)


def test_ragged_batches(idx) -> None:
    ragged = [list(range(DIM)), list(range(DIM - 1))]
    assert_rejected(idx, InvalidVector, idx.search, ragged, k=3)
    empty = VamanaIndex(DIM, R=5, L=16)
    assert_rejected(empty, InvalidVector, empty.build, ragged)
    assert_rejected(empty, InvalidVector, empty.build, [[list(range(DIM))]])  # 3-d
    assert_rejected(idx, InvalidVector, idx.search, np.zeros((2, 2, DIM)), k=3)


def test_wrong_shapes(idx, data) -> None:
    assert_rejected(idx, InvalidVector, idx.insert, 500, data[:2])  # 2-d for one vector
    assert_rejected(idx, InvalidVector, idx.insert, 500, 3.0)  # scalar
    empty = VamanaIndex(DIM, R=5, L=16)
    assert_rejected(empty, InvalidVector, empty.build, data[0])  # 1-d for a batch
    assert_rejected(empty, InvalidVector, empty.build, np.zeros((0, DIM)))  # nothing


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("scale", [1e19, 3e38])
def test_vectors_whose_distances_overflow_float32(data, metric, scale) -> None:
    """A finite vector whose squared norm is beyond float32 made ip searches return
    -inf and NaN distances (and l2 ones inf): insert, build and search refuse it."""
    idx = VamanaIndex(DIM, metric, R=5, L=16)
    idx.build(data[:40])
    v = np.full(DIM, scale)
    for bad in (v, v.astype(np.float32), np.r_[scale, np.zeros(DIM - 1)]):
        err = assert_rejected(idx, InvalidVector, idx.insert, 500, bad)
        assert "squared norm" in str(err)
        assert_rejected(idx, InvalidVector, idx.search, bad, k=3)
    batch = data[:5].copy()
    batch[3] = v
    assert_rejected(idx, InvalidVector, idx.search, batch, k=3)
    empty = VamanaIndex(DIM, metric, R=5, L=16)
    assert_rejected(empty, InvalidVector, empty.build, batch)
    # the largest accepted vectors give finite distances
    edge = np.full(DIM, 2.0**62 / np.sqrt(DIM), np.float32)
    idx.insert(500, edge)
    idx.insert(501, -edge)
    _, dists = idx.search(np.stack([edge, -edge, data[0]]), k=10)
    assert np.isfinite(dists).all()
    assert idx.graph_problems() == []


def test_cosine_vectors_whose_norm_overflows_or_underflows_float32(data) -> None:
    """[3e38, 3e38, 0...] was stored as the zero vector (its float32 norm is inf), and
    [1e-30, 0...] refused as the zero vector (its squares underflow): both are
    normalised in float64 now."""
    cos = VamanaIndex(DIM, "cosine", R=5, L=16)
    cos.build(data[:20])
    huge = np.r_[3e38, 3e38, np.zeros(DIM - 2)].astype(np.float32)
    tiny = np.r_[1e-30, np.zeros(DIM - 1)].astype(np.float32)
    cos.insert(500, huge)
    cos.insert(501, tiny)
    half = np.float32(np.sqrt(0.5))
    assert np.array_equal(cos.vector(500), np.r_[half, half, np.zeros(DIM - 2, np.float32)])
    assert np.array_equal(cos.vector(501), np.r_[1, np.zeros(DIM - 1)].astype(np.float32))
    ids, dists = cos.search(huge * 0.5, k=1)
    assert ids[0] == 500 and abs(dists[0]) < 1e-6
    ids, _ = cos.search(tiny, k=1)
    assert ids[0] == 501
    both = VamanaIndex(DIM, "cosine", R=5, L=16)
    both.build(np.stack([huge, tiny, data[0]]))
    assert np.array_equal(both.vector(0), cos.vector(500))
    assert np.array_equal(both.vector(2), cos.vector(0))  # ordinary rows as before
    assert cos.graph_problems() == [] and both.graph_problems() == []


def test_cosine_zero_vector(data) -> None:
    cos = VamanaIndex(DIM, "cosine", R=5, L=16)
    assert_rejected(cos, InvalidVector, cos.build, np.zeros((3, DIM)))
    cos.build(data[:20])
    assert_rejected(cos, InvalidVector, cos.insert, 500, np.zeros(DIM))
    assert_rejected(cos, InvalidVector, cos.search, np.zeros(DIM), k=3)


# --------------------------------------------------------------------------- ids


def test_duplicate_ids(idx, data) -> None:
    assert_rejected(idx, DuplicateId, idx.insert, 10, data[61])  # live
    assert_rejected(idx, DuplicateId, idx.insert, 3, data[61])  # tombstoned, not yet freed
    assert_rejected(idx, DuplicateId, idx.insert, np.int64(10), data[61])
    empty = VamanaIndex(DIM, R=5, L=16)
    assert_rejected(empty, DuplicateId, empty.build, data[:4], ids=[1, 2, 3, 2])
    assert_rejected(empty, DuplicateId, empty.build, data[:4], ids=np.array([9, 9, 9, 9]))
    still_works(idx, data)


def test_delete_unknown_or_deleted(idx, data) -> None:
    assert_rejected(idx, UnknownId, idx.delete, 999)
    assert_rejected(idx, UnknownId, idx.delete, 3)  # already deleted
    idx.consolidate()
    assert_rejected(idx, UnknownId, idx.delete, 3)  # deleted and freed
    empty = VamanaIndex(DIM, R=5, L=16)
    assert_rejected(empty, UnknownId, empty.delete, 0)
    still_works(idx, data)


@pytest.mark.parametrize(
    "bad", [True, False, 1.0, 2.5, -1, -(2**40), "7", None, np.float64(4), 2**62, 2**70],
)
def test_invalid_ids(idx, data, bad) -> None:
    assert_rejected(idx, InvalidId, idx.insert, bad, data[61])
    if isinstance(bad, int) and bad >= 2**62:  # out of range: it can't be there either
        assert_rejected(idx, (InvalidId, UnknownId), idx.delete, bad, exact=False)
    else:
        assert_rejected(idx, InvalidId, idx.delete, bad)
    still_works(idx, data)


@pytest.mark.parametrize(
    "odd", [True, 1.0, -1, "7", None, 2**62, 2**63, 2**70, -(2**70)],
)
def test_membership_of_odd_ids_is_false(idx, odd) -> None:
    """``in`` answers False for anything that is not a stored id, and never raises."""
    assert (odd in idx) is False


@pytest.mark.parametrize(
    "ids",
    [
        [0, 1, -2, 3],
        [0.0, 1.0, 2.0, 3.0],
        [True, False, True, False],
        ["0", "1", "2", "3"],
        np.array([0, 1, 2, 2**62], dtype=np.uint64),
        [[0, 1], [2, 3]],
        [0, 1, 2, 2**62],
    ],
    ids=["negative", "floats", "bools", "strings", "huge-uint", "2-d", "huge"],
)
def test_build_invalid_ids(data, ids) -> None:
    empty = VamanaIndex(DIM, R=5, L=16)
    assert_rejected(empty, InvalidId, empty.build, data[:4], ids=ids)
    still_works(empty, data)


def test_build_ids_length_mismatch(data) -> None:
    empty = VamanaIndex(DIM, R=5, L=16)
    assert_rejected(empty, InvalidArgument, empty.build, data[:4], ids=[0, 1, 2])


# --------------------------------------------------------------------------- search & state


@pytest.mark.parametrize("k", [0, -1, -100])
def test_k_below_one(idx, k) -> None:
    assert_rejected(idx, InvalidArgument, idx.search, np.ones(DIM), k=k)
    assert_rejected(idx, InvalidArgument, idx.search, np.ones((3, DIM)), k=k)


@pytest.mark.parametrize("kw", [{"k": 2.0}, {"k": True}, {"k": "3"}, {"L": 0}, {"L": -5},
                                {"L": 1.5}])
def test_bad_search_parameters(idx, kw) -> None:
    assert_rejected(idx, InvalidArgument, idx.search, np.ones(DIM), **{"k": 3, **kw})


def test_search_on_an_empty_index(data) -> None:
    empty = VamanaIndex(DIM, R=5, L=16)
    assert_rejected(empty, EmptyIndex, empty.search, np.ones(DIM), k=1)
    assert_rejected(empty, EmptyIndex, empty.search, np.ones((3, DIM)), k=1)
    # every node deleted: nothing live to return, before and after consolidation
    idx = VamanaIndex(DIM, R=5, L=16)
    idx.build(data[:10])
    for i in range(10):
        idx.delete(i)
    assert_rejected(idx, EmptyIndex, idx.search, np.ones(DIM), k=1)
    idx.consolidate()
    assert_rejected(idx, EmptyIndex, idx.search, np.ones(DIM), k=1)


def test_build_on_a_non_empty_index(idx, data) -> None:
    assert_rejected(idx, IndexNotEmpty, idx.build, data[60:70], ids=np.arange(100, 110))
    one = VamanaIndex(DIM, R=5, L=16)
    one.insert(0, data[0])
    assert_rejected(one, IndexNotEmpty, one.build, data[60:70], ids=np.arange(100, 110))
    tomb = VamanaIndex(DIM, R=5, L=16)
    tomb.insert(0, data[0])
    tomb.delete(0)  # nothing live, but a tombstone is held
    assert_rejected(tomb, IndexNotEmpty, tomb.build, data[60:70], ids=np.arange(100, 110))


# --------------------------------------------------------------------------- constructor


@pytest.mark.parametrize(
    "kw",
    [
        {"dim": 0}, {"dim": -3}, {"dim": 2.0}, {"dim": True}, {"dim": "8"}, {"dim": None},
        {"R": 1}, {"R": 0}, {"R": -4}, {"R": 8.0},
        {"L": 0}, {"L": -1}, {"L": 10.5},
        {"alpha": 0.99}, {"alpha": -1.0}, {"alpha": float("nan")}, {"alpha": float("inf")},
        {"alpha": "1.2"}, {"alpha": None}, {"alpha": 10**400},
        {"alpha": True}, {"build_slack": 10**400},
        {"metric": "hamming"}, {"metric": "L2"}, {"metric": None},
        {"build_slack": 0.5}, {"build_slack": 5.0}, {"build_slack": float("nan")},
        {"seed": -1}, {"seed": 1.5}, {"seed": None},
        {"capacity": 0}, {"capacity": -10}, {"capacity": 2.0},
    ],
    ids=lambda kw: "-".join(f"{k}={v!r}" for k, v in kw.items()),
)
def test_invalid_constructor_arguments(kw) -> None:
    args = {"dim": 8, "metric": "l2", "R": 8, "L": 16, "alpha": 1.2, **kw}
    with pytest.raises(InvalidArgument) as info:
        VamanaIndex(args.pop("dim"), **args)
    assert type(info.value) is InvalidArgument and str(info.value)


# --------------------------------------------------------------------------- deltas


@pytest.fixture
def primary(data) -> tuple[VamanaIndex, list[EdgeDelta]]:
    p = VamanaIndex(DIM, R=5, L=16)
    log = p.build(data[:40])
    log += [p.insert(i, data[i]) for i in range(40, 50)]
    log.append(p.delete(7))
    log += p.consolidate()
    return p, log


def test_delta_for_another_dimension(primary, data) -> None:
    _, log = primary
    other = VamanaIndex(DIM + 1, R=5, L=16)
    assert_rejected(other, DimensionMismatch, other.apply, log[0])
    replica = VamanaIndex(DIM, R=5, L=16)
    replica.apply(log[:3])
    foreign = VamanaIndex(DIM - 2, R=5, L=16)
    flog = foreign.build(data[:5, : DIM - 2])
    flog += [foreign.insert(i, data[i, : DIM - 2]) for i in range(5, 8)]
    assert flog[3].seq == replica.seq  # only the dimension is wrong
    assert_rejected(replica, DimensionMismatch, replica.apply, flog[3])
    assert_rejected(replica, DimensionMismatch, replica.apply,
                    EdgeDelta.from_bytes(flog[3].to_bytes()))
    replica.apply(log[3:])
    assert replica.digest() == primary[0].digest()


def test_delta_out_of_order(primary) -> None:
    p, log = primary
    replica = VamanaIndex(DIM, R=5, L=16)
    assert_rejected(replica, DeltaOutOfOrder, replica.apply, log[1])  # skips the build
    replica.apply(log[0])
    assert_rejected(replica, DeltaOutOfOrder, replica.apply, log[2])  # skips one
    assert_rejected(replica, DeltaOutOfOrder, replica.apply, log[0])  # applied twice
    replica.apply(log[1])
    assert_rejected(replica, DeltaOutOfOrder, replica.apply, log[1])  # applied twice
    assert_rejected(replica, DeltaOutOfOrder, replica.apply, log[-1])  # far ahead
    replica.apply(log[2:])
    assert_rejected(replica, DeltaOutOfOrder, replica.apply, log[-1])  # the last one again
    assert replica.digest() == p.digest()


def test_a_list_of_deltas_stops_at_the_first_bad_one(primary) -> None:
    _, log = primary
    replica = VamanaIndex(DIM, R=5, L=16)
    with pytest.raises(DeltaOutOfOrder):
        replica.apply([log[0], log[1], log[3]])
    assert replica.seq == 2  # the deltas before the failing one stay applied
    ref = VamanaIndex(DIM, R=5, L=16)
    ref.apply(log[:2])
    assert replica.digest() == ref.digest()


@pytest.mark.parametrize("where", ["header", "body", "vector", "crc", "magic", "version"])
def test_corrupt_delta_bytes(primary, where) -> None:
    _, log = primary
    b = bytearray(log[1].to_bytes())  # an insert: header, body, vector, crc
    body_end = len(b) - 4 - 4 * DIM  # the new vector, then the CRC, end the delta
    assert body_end > 20
    pos = {"header": 12, "body": body_end - 2, "vector": len(b) - 8, "crc": len(b) - 1,
           "magic": 0, "version": 4}[where]
    b[pos] ^= 0x5A
    replica = VamanaIndex(DIM, R=5, L=16)
    replica.apply(log[0])
    assert_rejected(replica, CorruptDelta, lambda: replica.apply(EdgeDelta.from_bytes(bytes(b))))


@pytest.mark.parametrize("cut", [0, 1, 4, 20, 47, -5, -4, -1])
def test_truncated_or_empty_delta_bytes(primary, cut) -> None:
    _, log = primary
    b = log[1].to_bytes()
    replica = VamanaIndex(DIM, R=5, L=16)
    replica.apply(log[0])
    assert_rejected(replica, CorruptDelta, lambda: replica.apply(EdgeDelta.from_bytes(b[:cut])))


def test_empty_delta_bytes() -> None:
    with pytest.raises(CorruptDelta):
        EdgeDelta.from_bytes(b"")
    with pytest.raises(CorruptDelta):
        EdgeDelta.from_bytes(bytearray())


def test_delta_that_does_not_fit(primary, data) -> None:
    """An insert delta of another index, at the right seq, whose neighbours this
    index has never heard of."""
    p, log = primary
    replica = VamanaIndex(DIM, R=5, L=16)
    replica.apply(log[0])
    other = VamanaIndex(DIM, R=5, L=16)
    other.build(data[:30], ids=np.arange(1000, 1030))
    foreign = other.insert(5000, data[60])
    assert foreign.seq == replica.seq
    assert_rejected(replica, DeltaError, replica.apply, foreign)
    assert_rejected(replica, DeltaError, replica.apply, EdgeDelta.from_bytes(foreign.to_bytes()))
    # a delete of an id this replica doesn't hold
    other2 = VamanaIndex(DIM, R=5, L=16)
    other2.build(data[:30], ids=np.arange(1000, 1030))
    assert_rejected(replica, DeltaError, replica.apply, other2.delete(1004))
    # the primary's next delta still applies
    replica.apply(log[1:])
    assert replica.digest() == p.digest()


def test_delta_whose_new_id_exists(primary, data) -> None:
    """A foreign insert delta, at the right seq, whose new id this replica already holds
    (ids are never reused, so two origins minted the same id)."""
    _, log = primary
    replica = VamanaIndex(DIM, R=5, L=16)
    replica.apply(log[0])  # ids 0..39
    other = VamanaIndex(DIM, R=5, L=16)
    other.build(data[:30], ids=np.arange(1000, 1030))
    clash = other.insert(5, data[60])
    assert clash.seq == replica.seq
    err = assert_rejected(replica, (DuplicateId, DeltaError), replica.apply, clash, exact=False)
    assert "5" in str(err)


def test_apply_of_something_else(primary) -> None:
    _, log = primary
    replica = VamanaIndex(DIM, R=5, L=16)
    assert_rejected(replica, DeltaError, replica.apply, "not a delta")
    assert_rejected(replica, DeltaError, replica.apply, log[0].to_bytes())
    assert_rejected(replica, DeltaError, replica.apply, [object()])


# --------------------------------------------------------------------------- deltas as bytes


def wire(log: list[EdgeDelta]) -> list[bytes]:
    return [d.to_bytes() for d in log]


def test_apply_bytes_is_apply(primary) -> None:
    p, log = primary
    a, b = VamanaIndex(DIM, R=5, L=16), VamanaIndex(DIM, R=5, L=16)
    b.apply_bytes([])  # nothing to do
    for lo, hi in ((0, 1), (1, 5), (5, 6), (6, len(log))):
        a.apply(log[lo:hi])
        batch = b.apply_bytes(wire(log[lo:hi]))
        assert len(batch) == hi - lo and batch.ops() == [d.op for d in log[lo:hi]]
        assert [batch.delta(k) for k in range(len(batch))] == log[lo:hi]
        assert b.digest() == a.digest() and b.seq == a.seq == hi
        assert b.stats() == a.stats()
    assert b.digest() == p.digest() and b.stats()["distance_computations"] == 0


def test_apply_bytes_takes_any_bytes_like(primary) -> None:
    p, log = primary
    b = VamanaIndex(DIM, R=5, L=16)
    raw = wire(log)
    b.apply_bytes((bytearray(raw[0]), memoryview(raw[1]), *raw[2:]))
    assert b.digest() == p.digest()


@pytest.mark.parametrize("bad", [0, 1, 2])
@pytest.mark.parametrize("damage", ["flip", "cut", "empty", "version"])
def test_apply_bytes_checks_every_delta_before_changing_anything(primary, bad, damage) -> None:
    """Damage in any delta of a batch, even the last, and the index is left as it was
    (no delta of the batch is applied)."""
    _, log = primary
    replica = VamanaIndex(DIM, R=5, L=16)
    replica.apply(log[0])
    raw = wire(log[1:4])
    b = bytearray(raw[bad])
    if damage == "flip":
        b[len(b) // 2] ^= 0x10
    elif damage == "cut":
        b = b[:-5]
    elif damage == "empty":
        b = bytearray()
    else:  # a version this build does not read, with a valid CRC
        b[4] = 1
        b[-4:] = zlib.crc32(bytes(b[:-4])).to_bytes(4, "little")
    raw[bad] = bytes(b)
    err = assert_rejected(replica, CorruptDelta, replica.apply_bytes, raw)
    assert f"delta {bad} of 3" in str(err)
    if damage == "version":
        assert "unknown format version 1" in str(err)
    replica.apply_bytes(wire(log[1:]))  # the sound bytes still apply


def test_apply_bytes_checks_seq_and_dim_of_the_whole_batch_first(primary, data) -> None:
    p, log = primary
    replica = VamanaIndex(DIM, R=5, L=16)
    replica.apply_bytes(wire(log[:2]))
    assert_rejected(replica, DeltaOutOfOrder, replica.apply_bytes, wire([log[2], log[4]]))
    assert_rejected(replica, DeltaOutOfOrder, replica.apply_bytes, wire([log[1], log[2]]))
    assert_rejected(replica, DeltaOutOfOrder, replica.apply_bytes, wire(log[3:5]))
    foreign = VamanaIndex(DIM - 2, R=5, L=16)
    flog = foreign.build(data[:5, : DIM - 2])
    flog += [foreign.insert(i, data[i, : DIM - 2]) for i in range(5, 8)]
    assert flog[3].seq == replica.seq + 1
    assert_rejected(replica, DimensionMismatch, replica.apply_bytes, wire([log[2], flog[3]]))
    assert_rejected(replica, DeltaError, replica.apply_bytes, log[2].to_bytes())  # not a list
    replica.apply_bytes(wire(log[2:]))
    assert replica.digest() == p.digest()


def test_apply_bytes_stops_at_a_delta_that_does_not_fit(primary, data) -> None:
    """Like apply with a list: the deltas before a misfit stay applied, the misfit
    changes nothing."""
    p, log = primary
    replica = VamanaIndex(DIM, R=5, L=16)
    replica.apply_bytes(wire(log[:2]))
    other = VamanaIndex(DIM, R=5, L=16)
    olog = other.build(data[:30], ids=np.arange(1000, 1030))
    olog += [other.insert(5000 + i, data[60 + i]) for i in range(3)]
    assert olog[3].seq == replica.seq + 1
    with pytest.raises(DeltaError) as info:
        replica.apply_bytes(wire([log[2], olog[3]]))
    assert "seq 3" in str(info.value)
    ref = VamanaIndex(DIM, R=5, L=16)
    ref.apply(log[:3])
    assert replica.seq == 3 and replica.digest() == ref.digest()
    assert replica.graph_problems() == []
    assert_rejected(replica, DeltaError, replica.apply_bytes, wire([olog[3]]))
    replica.apply_bytes(wire(log[3:]))
    assert replica.digest() == p.digest()


def _diff(replica: VamanaIndex, node: int, removed: list[int], added: list[int]) -> EdgeDelta:
    """A delta at the replica's next seq whose one record is a diff of ``node``'s list."""
    return EdgeDelta(
        seq=replica.seq, op="repair", dim=DIM, entry=replica.entry_id,
        ids=np.array([node], np.int64), flags=np.ones(1, np.uint8),
        kinds=np.array([2], np.uint8), counts=np.array([[len(removed), len(added)]], np.int32),
        values=np.array(sorted(removed) + sorted(added), np.int64),
        vectors=np.zeros((0, DIM), np.float32), removed=np.zeros(0, np.int64),
    )


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("case", ["remove-absent", "remove-twice", "add-present", "add-twice",
                                  "add-self", "add-unknown", "too-long"])
def test_diff_records_that_do_not_fit_the_list(data, case, padded) -> None:
    """A diff is checked against the list it changes, whether it names a few ids
    (checked by scanning the list) or many (by stamping it): same verdicts."""
    replica = VamanaIndex(DIM, R=8, L=16)
    replica.build(data[:60])
    node = next(i for i in range(60) if len(replica.neighbors(i)) >= 7)
    lst = sorted(replica.neighbors(node).tolist())
    other = next(i for i in range(60) if i != node and i not in lst)
    removed, added = {
        "remove-absent": ([other], []),
        "remove-twice": ([lst[0], lst[0]], []),
        "add-present": ([], [lst[0]]),
        "add-twice": ([], [other, other]),
        "add-self": ([], [node]),
        "add-unknown": ([], [10**6]),
        "too-long": ([], [i for i in range(60) if i != node and i not in lst][:9 - len(lst)]),
    }[case]
    if padded:  # four more sound removals: more ids than the scanning check takes
        if case == "too-long":
            removed = lst[:3]
            added = [i for i in range(60) if i != node and i not in lst][:12 - len(lst)]
        else:
            removed = removed + lst[3:7]
    want = {"remove-absent": "removes", "remove-twice": "removes", "add-present": "adds",
            "add-twice": "adds", "add-self": "to itself", "add-unknown": "doesn't hold",
            "too-long": "more than R"}[case]
    d = _diff(replica, node, removed, added)
    err = assert_rejected(replica, DeltaError, replica.apply, d)
    assert want in str(err)
    err = assert_rejected(replica, DeltaError, replica.apply_bytes, [d.to_bytes()])
    assert want in str(err)
    # removing a neighbour and adding it back is sound
    ok = _diff(replica, node, [lst[0]] + (lst[3:7] if padded else []), [lst[0]])
    replica.apply_bytes([ok.to_bytes()])
    assert replica.graph_problems() == []
    assert sorted(replica.neighbors(node).tolist()) == (
        sorted(set(lst) - set(lst[3:7])) if padded else lst)


# --------------------------------------------------------------------------- files


def test_load_missing_file(tmp_path) -> None:
    with pytest.raises(CorruptIndexFile):
        VamanaIndex.load(tmp_path / "nope.npz")
    with pytest.raises(CorruptIndexFile):
        VamanaIndex.load(tmp_path)  # a directory


@pytest.mark.parametrize("damage", ["garbage", "empty", "truncated", "flipped-tail"])
def test_load_corrupt_file(tmp_path, idx, damage) -> None:
    good = tmp_path / "good.npz"
    idx.save(good)
    raw = good.read_bytes()
    bad = tmp_path / "bad.npz"
    bad.write_bytes({
        "garbage": b"this is not an index" * 10,
        "empty": b"",
        "truncated": raw[: len(raw) // 2],
        "flipped-tail": raw[:-30] + bytes(b ^ 0xFF for b in raw[-30:]),
    }[damage])
    with pytest.raises(CorruptIndexFile):
        VamanaIndex.load(bad)


def _rewrite(src, dst, **changes) -> None:
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(bytes(arrays["meta"]).decode())
    for k, v in changes.items():
        if k.startswith("meta_"):
            meta[k[5:]] = v
        else:
            arrays[k] = v
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(dst, "wb") as f:
        np.savez(f, **arrays)


def test_load_inconsistent_files(tmp_path, idx) -> None:
    good = tmp_path / "good.npz"
    idx.save(good)
    with np.load(good) as z:
        nbrs, flags, ext, deg = z["nbrs"].copy(), z["flags"].copy(), z["ext"].copy(), z["deg"]
    out_of_range = nbrs.copy()
    out_of_range[0, 0] = 10_000
    dup_ext = ext.copy()
    dup_ext[1] = dup_ext[0]
    bad_flags = flags.copy()
    bad_flags[0] = 7
    cases = {
        "future-format": {"meta_format": 99},
        "no-meta-dim": {"meta_dim": "eight"},
        "edge-out-of-range": {"nbrs": out_of_range},
        "repeated-ids": {"ext": dup_ext},
        "bad-flags": {"flags": bad_flags},
        "degree-above-R": {"deg": np.full_like(deg, 99)},
        "wrong-shape": {"vecs": np.zeros((3, DIM + 1), np.float32)},
        "bad-entry": {"meta_entry": 10_000},
    }
    for name, change in cases.items():
        path = tmp_path / f"{name}.npz"
        _rewrite(good, path, **change)
        with pytest.raises(CorruptIndexFile):
            VamanaIndex.load(path)
    # a file without the arrays at all
    with zipfile.ZipFile(tmp_path / "hollow.npz", "w") as zf:
        zf.writestr("other.npy", b"")
    with pytest.raises(CorruptIndexFile):
        VamanaIndex.load(tmp_path / "hollow.npz")
    assert VamanaIndex.load(good).digest() == idx.digest()


def test_repair_records_whose_vectors_overflow_distances(idx) -> None:
    """overwrite_records stores vectors bit for bit: one whose squared norm is beyond
    what float32 distances hold is refused like a delta's."""
    rs = idx.export_records([0, 1])
    vectors = rs.vectors.copy()
    vectors[1] = 1e19
    rs = dataclasses.replace(rs, vectors=vectors)
    err = assert_rejected(idx, DeltaError, idx.overwrite_records, rs)
    assert "squared norm" in str(err)


@pytest.mark.parametrize("field", ["flags", "counts", "ids"])
def test_record_set_values_a_cast_would_change(idx, field) -> None:
    """RecordSet stores flags as uint8, counts as int32 and ids as int64: a value the
    cast would change (flags 257 read as 1) is refused, not silently changed."""
    rs = idx.export_records([0, 1])
    arrays = {"flags": rs.flags.astype(np.int64), "counts": rs.counts.astype(np.int64),
              "ids": rs.ids.astype(np.uint64)}
    arrays[field][0] += {"flags": 256, "counts": 2**32, "ids": 2**63}[field]
    kw = {"dim": rs.dim, "ids": rs.ids, "flags": rs.flags, "vectors": rs.vectors,
          "counts": rs.counts, "neighbours": rs.neighbours, field: arrays[field]}
    with pytest.raises(InvalidArgument, match="outside the range"):
        RecordSet(**kw)

"""EdgeDelta: contents, wire format round trip, sizes, and apply."""

from __future__ import annotations

import dataclasses
import functools
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graphrep.ann import EdgeDelta, VamanaIndex
from graphrep.ann.delta import decode_many
from graphrep.ann.delta_wire import crc32
from graphrep.datasets import gmm_dataset
from graphrep.errors import CorruptDelta, DeltaError, GraphrepError
from graphrep.spec.profiles import scaled_examples

KIND_NONE, KIND_FULL, KIND_DIFF = 0, 1, 2
OPS = ("build", "insert", "delete", "consolidate", "repair")


def history(n_build: int = 150, n_insert: int = 60, dim: int = 8, R: int = 6, seed: int = 3):
    """A primary with a bit of everything, its deltas and its vectors."""
    base, _ = gmm_dataset(n_build + n_insert, 1, dim, n_clusters=6, seed=seed)
    idx = VamanaIndex(dim, R=R, L=20)
    log = idx.build(base[:n_build])
    log += [idx.insert(i, base[i]) for i in range(n_build, n_build + n_insert)]
    log += [idx.delete(i) for i in range(0, n_build, 9)]
    log += idx.consolidate()
    log.append(idx.delete(n_build + 1))
    return idx, log, base


def built(n: int, dim: int = 8, R: int = 6) -> VamanaIndex:
    base, _ = gmm_dataset(n, 1, dim, n_clusters=4, seed=0)
    idx = VamanaIndex(dim, R=R, L=20)
    idx.build(base)
    return idx


def full_list_equivalent(idx: VamanaIndex, d: EdgeDelta) -> EdgeDelta:
    """The same delta with every record's current list sent in full (no diffs)."""
    lists = [idx.neighbors(int(i)).astype(np.int64) for i in d.ids]
    return dataclasses.replace(
        d, kinds=np.full(d.n_records, KIND_FULL, np.uint8),
        counts=np.array([[len(x), 0] for x in lists], np.int32).reshape(-1, 2),
        values=np.concatenate(lists) if lists else np.zeros(0, np.int64), _wire=[],
    )


# --------------------------------------------------------------------------- contents


def test_sequence_numbers_and_ops() -> None:
    idx, log, _ = history()
    assert [d.seq for d in log] == list(range(len(log)))
    assert log[0].op == "build"
    assert {d.op for d in log[1:61]} == {"insert"}
    assert log[-2].op == "consolidate" and log[-1].op == "delete"
    assert idx.seq == len(log)


def test_insert_delta_records_match_the_index() -> None:
    base, _ = gmm_dataset(120, 1, 8, n_clusters=4, seed=1)
    idx = VamanaIndex(8, R=6, L=20)
    idx.build(base[:100])
    for i in range(100, 120):
        before = {int(j): idx.neighbors(int(j)) for j in idx.ids()}
        d = idx.insert(i, base[i])
        recs = d.records()
        assert recs[0].id == i and recs[0].flags == 1
        np.testing.assert_array_equal(recs[0].vector, base[i])
        np.testing.assert_array_equal(recs[0].neighbours, idx.neighbors(i))
        assert [r.id for r in recs[1:]] == sorted(r.id for r in recs[1:])  # canonical order
        changed = {j for j, nb in before.items() if not np.array_equal(nb, idx.neighbors(j))}
        assert changed <= {r.id for r in recs}, "a changed list is missing from the delta"
        for r in recs[1:]:
            assert r.vector is None
            now = idx.neighbors(r.id)
            if r.neighbours is not None:
                np.testing.assert_array_equal(r.neighbours, now)
            elif r.added is not None:
                got = (set(before[r.id].tolist()) - set(r.removed.tolist())) | set(r.added.tolist())
                assert got == set(now.tolist())
            else:
                assert np.array_equal(before[r.id], now)


def test_delete_delta_is_a_flag() -> None:
    idx = built(40)
    d = idx.delete(5)
    (r,) = d.records()
    assert (r.id, r.flags, r.vector, r.neighbours, r.added) == (5, 2, None, None, None)
    sizes = d.size_by_part()
    assert sizes["vector"] == 0 and sizes["edges"] == 0
    assert sizes["total"] == len(d.to_bytes()) < 64


def test_consolidate_delta_lists_the_freed_ids() -> None:
    idx = built(60)
    for i in (1, 2, 30):
        idx.delete(i)
    (d,) = idx.consolidate()
    assert d.op == "consolidate" and d.removed.tolist() == [1, 2, 30]
    assert d.n_new == 0
    for r in d.records():
        assert r.id not in (1, 2, 30)


# --------------------------------------------------------------------------- wire format


def test_round_trip_of_every_delta() -> None:
    _, log, _ = history()
    for d in log:
        b = d.to_bytes()
        assert b[:4] == b"GRD1"
        back = EdgeDelta.from_bytes(b)
        assert back == d
        assert back.to_bytes() == b
        assert EdgeDelta.from_bytes(bytearray(b)) == d
        assert EdgeDelta.from_bytes(memoryview(b)) == d
        assert d.to_bytes() == b  # stable


def test_equality_is_by_content() -> None:
    _, log, _ = history(n_build=30, n_insert=3)
    a, b = log[1], log[2]
    assert a == EdgeDelta.from_bytes(a.to_bytes())
    assert a != b
    assert a != dataclasses.replace(a, seq=a.seq + 1, _wire=[])
    assert a != dataclasses.replace(a, entry=a.entry + 1, _wire=[])
    v = a.vectors.copy()
    v[0, 0] += 1
    assert a != dataclasses.replace(a, vectors=v, _wire=[])
    assert a != "not a delta"


def test_size_by_part_adds_up() -> None:
    _, log, _ = history()
    for d in log:
        s = d.size_by_part()
        assert set(s) == {"vector", "edges", "metadata", "total"}
        assert s["vector"] + s["edges"] + s["metadata"] == s["total"] == len(d.to_bytes())
        assert s["vector"] == 4 * d.dim * d.n_new
        assert min(s.values()) >= 0


def test_insert_deltas_are_small_diffs() -> None:
    """An insert changes a few back-links in each neighbour's list: the delta sends
    diffs, and its edge bytes are well below those of sending the lists in full."""
    base, _ = gmm_dataset(2200, 1, 16, n_clusters=20, seed=3)
    idx = VamanaIndex(16, R=16, L=40)
    idx.build(base[:2000])
    diff_bytes = full_bytes = 0
    kinds = np.zeros(3, int)
    for i in range(2000, 2200):
        d = idx.insert(i, base[i])
        s = d.size_by_part()
        assert s["vector"] == 16 * 4
        assert d.n_records <= 1 + 4 * idx.R  # the new node and a few lists it touched
        diff_bytes += s["edges"]
        full_bytes += full_list_equivalent(idx, d).size_by_part()["edges"]
        kinds += np.bincount(d.kinds[1:], minlength=3)
        assert s["total"] < 16 * 4 + 2 * 16 * (1 + 4 * idx.R)
    assert kinds[KIND_DIFF] > kinds[KIND_FULL], kinds
    assert diff_bytes < 0.6 * full_bytes, (diff_bytes, full_bytes)


def test_to_bytes_is_deterministic_across_equal_histories() -> None:
    _, log1, _ = history(seed=8)
    _, log2, _ = history(seed=8)
    assert [d.to_bytes() for d in log1] == [d.to_bytes() for d in log2]


# --------------------------------------------------------------------------- codec properties


@st.composite
def raw_deltas(draw) -> EdgeDelta:
    """Arbitrary well-formed deltas (not necessarily applicable to any index)."""
    dim = draw(st.integers(1, 6))
    n = draw(st.integers(0, 8))
    ids = draw(st.lists(st.integers(0, 2**62 - 1), min_size=n, max_size=n, unique=True))
    n_new = draw(st.integers(0, n))
    kinds, counts, values = [], [], []
    ident = st.integers(0, 2**62 - 1)
    if n and draw(st.booleans()):  # lists that hold the first record's id, and close ids
        ident = st.one_of(st.just(ids[0]), st.integers(max(ids[0] - 40, 0), ids[0] + 40))
    for i in range(n):
        k = KIND_FULL if i < n_new else draw(st.sampled_from([KIND_NONE, KIND_FULL, KIND_DIFF]))
        kinds.append(k)
        if k == KIND_NONE:
            counts.append((0, 0))
        elif k == KIND_FULL:
            lst = sorted(draw(st.sets(ident, max_size=6)))
            counts.append((len(lst), 0))
            values += lst
        else:
            rem = sorted(draw(st.sets(ident, max_size=4)))
            add = sorted(draw(st.sets(ident, max_size=4)))
            counts.append((len(rem), len(add)))
            values += rem + add
    vec = st.floats(width=32, allow_nan=True, allow_infinity=True)
    vectors = draw(st.lists(st.lists(vec, min_size=dim, max_size=dim),
                            min_size=n_new, max_size=n_new))
    removed = draw(st.lists(ident, max_size=4, unique=True))
    return EdgeDelta(
        seq=draw(st.integers(0, 2**63 - 1)), op=draw(st.sampled_from(OPS)), dim=dim,
        entry=draw(st.integers(-1, 2**62 - 1)), ids=np.array(ids, np.int64),
        flags=np.array(draw(st.lists(st.sampled_from([1, 2]), min_size=n, max_size=n)),
                       np.uint8),
        kinds=np.array(kinds, np.uint8), counts=np.array(counts, np.int32).reshape(n, 2),
        values=np.array(values, np.int64),
        vectors=np.array(vectors, np.float32).reshape(n_new, dim),
        removed=np.array(removed, np.int64),
    )


@given(d=raw_deltas())
@settings(max_examples=scaled_examples(2.0))
def test_codec_round_trips_any_well_formed_delta(d: EdgeDelta) -> None:
    b = d.to_bytes()
    back = EdgeDelta.from_bytes(b)
    assert back.seq == d.seq and back.op == d.op and back.entry == d.entry
    for name in ("ids", "flags", "kinds", "counts", "values", "removed"):
        np.testing.assert_array_equal(getattr(back, name), getattr(d, name))
    # vectors bit for bit (NaN payloads included)
    assert back.vectors.tobytes() == d.vectors.astype("<f4").tobytes()
    assert back.to_bytes() == b
    s = d.size_by_part()
    assert s["total"] == len(b) and s["vector"] == 4 * d.dim * d.n_new


@st.composite
def insert_shaped_deltas(draw) -> EdgeDelta:
    """Deltas shaped like an insert's: a first record with a full list, then records by
    id, many of them only gaining the first id (back-links), some of them in its list,
    and now and then one out of order, deleted, or changed otherwise."""
    dim = draw(st.integers(1, 3))
    first = draw(st.integers(0, 300))
    pool = st.integers(0, 300).filter(lambda x: x != first)
    lst = sorted(draw(st.sets(pool, max_size=20)))
    others = sorted(draw(st.sets(st.one_of(st.sampled_from(lst), pool) if lst else pool,
                                 max_size=20)))
    if len(others) > 1 and draw(st.integers(0, 2)) == 0:
        i, j = draw(st.permutations(range(len(others))))[:2]
        others[i], others[j] = others[j], others[i]
    ids, kinds, counts, values, flags = [first], [KIND_FULL], [(len(lst), 0)], list(lst), [1]
    for x in others:
        ids.append(x)
        flags.append(2 if draw(st.integers(0, 9)) == 0 else 1)
        shape = draw(st.sampled_from(["back", "back", "back", "full", "diff", "none"]))
        if shape == "back":
            kinds.append(KIND_DIFF)
            counts.append((0, 1))
            values.append(first)
        elif shape == "full":
            more = sorted(draw(st.sets(pool, max_size=3)) | {first})
            kinds.append(KIND_FULL)
            counts.append((len(more), 0))
            values += more
        elif shape == "diff":
            rem = sorted(draw(st.sets(pool, max_size=3)))
            add = sorted(draw(st.sets(st.one_of(pool, st.just(first)), max_size=2)))
            kinds.append(KIND_DIFF)
            counts.append((len(rem), len(add)))
            values += rem + add
        else:
            kinds.append(KIND_NONE)
            counts.append((0, 0))
    n_new = draw(st.integers(0, 1))
    return EdgeDelta(
        seq=draw(st.integers(0, 99)), op="insert", dim=dim, entry=first,
        ids=np.array(ids, np.int64), flags=np.array(flags, np.uint8),
        kinds=np.array(kinds, np.uint8), counts=np.array(counts, np.int32).reshape(-1, 2),
        values=np.array(values, np.int64), vectors=np.ones((n_new, dim), np.float32),
        removed=np.zeros(0, np.int64),
    )


@given(d=insert_shaped_deltas())
@settings(max_examples=max(300, scaled_examples(2.0)))  # cheap: a codec round trip
def test_codec_round_trips_insert_shaped_deltas_with_back_links(d: EdgeDelta) -> None:
    """Back-links are put back in their places, and only the records that are in the
    first list and only gained its id become one (whatever else surrounds them)."""
    b = d.to_bytes()
    back = EdgeDelta.from_bytes(b)
    assert back == d and back.to_bytes() == b
    in_order = bool(np.all(np.diff(d.ids[1:]) > 0))
    lst = set(d.values[:d.counts[0, 0]].tolist())
    starts = np.concatenate([[0], np.cumsum(d.counts.sum(axis=1))])
    links = sum(1 for i in range(1, d.n_records)
                if in_order and d.flags[i] == 1 and d.kinds[i] == KIND_DIFF
                and tuple(d.counts[i]) == (0, 1) and d.values[starts[i]] == d.ids[0]
                and int(d.ids[i]) in lst)
    hdr = b[6:]  # dim, seq, entry + 1, then the records written out and the back-links
    fields, pos = [], 0
    for _ in range(5):
        v, shift = 0, 0
        while True:
            byte = hdr[pos]
            pos += 1
            v |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        fields.append(v)
    assert fields[3:] == [d.n_records - links, links]


@given(data=st.binary(max_size=200))
@settings(max_examples=scaled_examples(2.0))
def test_from_bytes_rejects_garbage_with_corrupt_delta(data: bytes) -> None:
    with pytest.raises(CorruptDelta):
        EdgeDelta.from_bytes(data)


def varint(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def header(version: int, op: int, dim: int, seq: int, entry: int, n: int, n_new: int,
           n_removed: int, n_values: int, n_back: int = 0) -> bytes:
    """A header (see graphrep.ann.delta_wire): version 3 writes ``n_back`` after ``n``,
    version 2 has no back-links."""
    sizes = (n, n_back) if version == 3 else (n,)
    return b"GRD1" + bytes([version, op]) + b"".join(
        varint(v) for v in (dim, seq, entry + 1, *sizes, n_new, n_removed, n_values))


def sealed(raw: bytes) -> bytes:
    return raw + struct.pack("<I", zlib.crc32(raw))


@given(
    version=st.sampled_from([2, 2, 2, 1, 3]),
    op=st.integers(0, 7),
    dim=st.integers(0, 5),
    n=st.integers(0, 6),
    n_new=st.integers(0, 6),
    n_removed=st.integers(0, 4),
    n_values=st.integers(0, 10),
    body=st.binary(max_size=120),
    tags=st.lists(st.integers(0, 255), max_size=6),
)
@settings(max_examples=scaled_examples(3.0))
def test_from_bytes_of_a_checksummed_random_body_never_crashes(
    version, op, dim, n, n_new, n_removed, n_values, body, tags
) -> None:
    """Bytes that pass the CRC but hold an arbitrary body: the decoder either returns
    a delta or raises CorruptDelta, never anything else; what it returns encodes
    back to a delta equal to it."""
    ids = b"".join(varint(2 * i) for i in range(len(tags)))  # record ids 0, 1, 2...
    for raw_body in (body, ids + bytes(tags) + body):
        raw = sealed(header(version, op, dim, 0, -1, n, n_new, n_removed, n_values) + raw_body)
        try:
            d = EdgeDelta.from_bytes(raw)
        except CorruptDelta:
            continue
        assert d.n_records == n and d.n_new == n_new and d.dim == dim
        assert EdgeDelta.from_bytes(d.to_bytes()) == d


def test_version_1_bytes_are_refused_by_name() -> None:
    """Version 1 (a fixed 44-byte header) is no longer read: the error says which
    version arrived and which ones this build reads."""
    v1_header = struct.Struct("<4sBBHIQqIIII").pack(b"GRD1", 1, 1, 0, 4, 0, -1, 0, 0, 0, 0)
    with pytest.raises(CorruptDelta, match="unknown format version 1; this build reads "
                                           "versions 2 and 3"):
        EdgeDelta.from_bytes(sealed(v1_header))
    with pytest.raises(CorruptDelta, match="unknown format version 9"):
        EdgeDelta.from_bytes(sealed(header(9, 1, 4, 0, -1, 0, 0, 0, 0)))


def small_insert(new_list: list[int]) -> EdgeDelta:
    """An insert of node 100000 whose list is ``new_list``; nodes 5 and 6 gain it."""
    new = 100_000
    return EdgeDelta(
        seq=0, op="insert", dim=4, entry=new, ids=np.array([new, 5, 6], np.int64),
        flags=np.ones(3, np.uint8), kinds=np.array([KIND_FULL, KIND_DIFF, KIND_DIFF], np.uint8),
        counts=np.array([[len(new_list), 0], [0, 1], [0, 1]], np.int32),
        values=np.array([*new_list, new, new], np.int64), vectors=np.ones((1, 4), np.float32),
        removed=np.zeros(0, np.int64),
    )


def test_a_list_that_gains_the_new_node_costs_its_tag_byte_only() -> None:
    """Wire layout of a small insert delta, byte for byte: records that gain a link to
    the new node (the first record) but are not in its list write no id for it."""
    new = 100_000
    d = small_insert([1, 2])
    b = d.to_bytes()
    head = header(3, 1, 4, 0, new, 3, 1, 0, 4, n_back=0)
    ids = varint(2 * new) + varint(2 * (new - 5) - 1) + varint(2)  # zigzag differences
    tags = bytes([0x21, 0x0A, 0x0A])  # full of 2; diff adding the first id, nothing written
    # the new node's list [1, 2]: Rice parameters 0 and 0, then 1 (first id) and 1 (the
    # difference) as one zero bit and a one bit each, from the low bit: 0b1010
    lists = bytes([0, 0, 0b1010])
    assert b == sealed(head + ids + tags + lists + np.ones(4, "<f4").tobytes())
    assert d.size_by_part() == {"vector": 16, "edges": 3, "metadata": len(b) - 19,
                                "total": len(b)}
    assert EdgeDelta.from_bytes(b) == d
    # the same delta in version 2 (no back-link count in the header, varint lists) reads
    v2 = sealed(header(2, 1, 4, 0, new, 3, 1, 0, 4) + ids + tags + varint(1) + varint(1)
                + np.ones(4, "<f4").tobytes())
    assert EdgeDelta.from_bytes(v2) == d


# The list [5, 6, 9] Rice coded: parameters 1 (first ids) and 1 (differences); then 5 as
# 00 1 1 (5 >> 1 zero bits, a one, the low bit), 1 as 1 1, 3 as 0 1 1: nine bits from the
# low bit of the first byte, 0b10111100 0b1
LIST_569 = bytes([1, 1, 0b10111100, 0b1])


def test_a_back_link_in_the_new_nodes_list_costs_one_bit() -> None:
    """Records that gain a link to the new node and are in its list (most of an insert's
    records) are one bit each of a bitmap over that list: no id, no tag."""
    new = 100_000
    d = small_insert([5, 6, 9])
    b = d.to_bytes()
    head = header(3, 1, 4, 0, new, 1, 1, 0, 3, n_back=2)
    bitmap = bytes([0b011])  # 5 and 6 gained the new node; 9 did not change
    assert b == sealed(head + varint(2 * new) + bytes([0x31]) + LIST_569 + bitmap
                       + np.ones(4, "<f4").tobytes())
    assert d.size_by_part() == {"vector": 16, "edges": 5, "metadata": len(b) - 21,
                                "total": len(b)}
    assert EdgeDelta.from_bytes(b) == d


@pytest.mark.parametrize("bitmap, why", [
    (bytes([0b001]), "back-links"),  # one bit for two back-links
    (bytes([0b1011]), "back-links"),  # a padding bit set
    (bytes([0b111]), "back-links"),  # three bits for two back-links
])
def test_malformed_back_links_are_refused(bitmap, why) -> None:
    new = 100_000
    head = header(3, 1, 4, 0, new, 1, 1, 0, 3, n_back=2)
    raw = sealed(head + varint(2 * new) + bytes([0x31]) + LIST_569 + bitmap
                 + np.ones(4, "<f4").tobytes())
    with pytest.raises(CorruptDelta, match=why):
        EdgeDelta.from_bytes(raw)


@pytest.mark.parametrize("lists", [
    bytes([63, 0, 0b1010]),  # a Rice parameter above 62
    bytes([0, 0, 0b11010]),  # a padding bit set after the four bits
    bytes([0, 0]),  # the bit stream cut off
    bytes([0, 0, 0b0000]),  # no one bit: a unary run that never ends
])
def test_malformed_rice_values_are_refused(lists) -> None:
    new = 100_000
    head = header(3, 1, 4, 0, new, 3, 1, 0, 4, n_back=0)
    ids = varint(2 * new) + varint(2 * (new - 5) - 1) + varint(2)
    raw = sealed(head + ids + bytes([0x21, 0x0A, 0x0A]) + lists
                 + np.ones(4, "<f4").tobytes())
    with pytest.raises(CorruptDelta, match=r"malformed or out-of-range id|body"):
        EdgeDelta.from_bytes(raw)


def test_a_back_link_that_a_written_record_repeats_is_refused() -> None:
    """Node 6 both as a back-link and as a record written out: refused, not doubled."""
    new = 100_000
    head = header(3, 1, 4, 0, new, 2, 1, 0, 4, n_back=2)
    ids = varint(2 * new) + varint(2 * (new - 6) - 1)
    tags = bytes([0x31, 0x0A])
    raw = sealed(head + ids + tags + LIST_569 + bytes([0b011])
                 + np.ones(4, "<f4").tobytes())
    with pytest.raises(CorruptDelta, match="back-links"):
        EdgeDelta.from_bytes(raw)


@pytest.mark.parametrize("change", ["flags", "kind", "counts", "unsorted", "negative", "entry"])
def test_to_bytes_refuses_what_the_format_cannot_carry(change) -> None:
    _, log, _ = history(n_build=30, n_insert=2)
    d = log[1]
    full = int(np.flatnonzero((d.kinds == KIND_FULL) & (d.counts[:, 0] >= 2))[0])
    start = int(d.counts[:full].sum())
    stop = start + int(d.counts[full, 0])
    values = d.values.copy()
    field = {
        "flags": {"flags": np.full_like(d.flags, 3)},
        "kind": {"kinds": np.full_like(d.kinds, 3)},
        "counts": {"counts": d.counts + 1},
        "unsorted": {"values": np.concatenate([values[:start], values[start:stop][::-1],
                                               values[stop:]])},
        "negative": {"values": np.where(np.arange(values.size) == start, -1, values)},
        "entry": {"entry": -2},
    }[change]
    bad = dataclasses.replace(d, **field, _wire=[])
    with pytest.raises(DeltaError, match="cannot encode"):
        bad.to_bytes()


@pytest.mark.parametrize("change", ["short flags", "long kinds", "counts 1-d", "vectors 1-d",
                                    "flags 257", "ids as floats", "a list", "op", "seq 1.5"])
def test_to_bytes_refuses_arrays_the_kernel_would_misread(change) -> None:
    """The encoder reads the arrays in a kernel, without bounds checks and after a cast
    to its dtypes: arrays of other lengths, or values a cast would change, are refused
    before it runs (they were read past their end, or encoded as another delta)."""
    _, log, _ = history(n_build=30, n_insert=2)
    d = log[1]
    field = {
        "short flags": {"flags": d.flags[:-1]},
        "long kinds": {"kinds": np.append(d.kinds, d.kinds[:1])},
        "counts 1-d": {"counts": d.counts[:, 0].copy()},
        "vectors 1-d": {"vectors": d.vectors.reshape(-1)},
        "flags 257": {"flags": d.flags.astype(np.int64) + 256},
        "ids as floats": {"ids": d.ids.astype(np.float64)},
        "a list": {"values": d.values.tolist()},
        "op": {"op": "upsert"},
        "seq 1.5": {"seq": 1.5},
    }[change]
    bad = dataclasses.replace(d, **field, _wire=[])
    with pytest.raises(DeltaError, match="cannot encode"):
        bad.to_bytes()


@given(data=st.binary(max_size=300), cut=st.integers(0, 300))
@settings(max_examples=scaled_examples(1.0))
def test_crc_is_zlibs(data: bytes, cut: int) -> None:
    buf = np.frombuffer(data, np.uint8)
    cut = min(cut, len(data))
    assert crc32(buf, cut, len(data)) == zlib.crc32(data[cut:])


def test_decode_many_is_from_bytes_of_each() -> None:
    _, log, _ = history()
    batch = decode_many([d.to_bytes() for d in log])
    assert len(batch) == len(log) and batch.ops() == [d.op for d in log]
    assert [batch.delta(k) for k in range(len(log))] == log
    assert len(decode_many([])) == 0


@given(pos=st.data(), xor=st.integers(1, 255))
@settings(max_examples=scaled_examples(2.0))
def test_mutated_bytes_with_a_fixed_crc_never_break_a_replica(pos, xor) -> None:
    """Change one byte of a real insert or consolidate delta and recompute its CRC (a
    bug upstream, not line noise): the replica either rejects it with a GraphrepError
    and stays unchanged, or applies it and is still a healthy index (whose own
    snapshot loads back). Semantic changes (arrays changed, then encoded) are in
    tests/ann/test_delta_invariants.py."""
    which = pos.draw(st.sampled_from(["insert", "consolidate"]), label="delta")
    log, d = _replica_log(which)
    replica = VamanaIndex(4, R=4, L=10)
    replica.apply(log)
    raw = bytearray(d.to_bytes()[:-4])
    i = pos.draw(st.integers(0, len(raw) - 1), label="byte")
    raw[i] ^= xor
    raw += struct.pack("<I", zlib.crc32(bytes(raw)))
    before = (replica.digest(), len(replica), replica.seq)
    twin = VamanaIndex(4, R=4, L=10)  # the same, fed the bytes directly
    twin.apply_bytes([x.to_bytes() for x in log])
    try:
        bad = EdgeDelta.from_bytes(bytes(raw))
        replica.apply(bad)
    except GraphrepError as exc:
        assert (replica.digest(), len(replica), replica.seq) == before
        assert replica.graph_problems() == []
        with pytest.raises(type(exc)):
            twin.apply_bytes([bytes(raw)])
        assert (twin.digest(), len(twin), twin.seq) == before
        return
    assert replica.graph_problems() == []
    assert replica.stats()["max_degree"] <= replica.R
    assert len(replica) == len(replica.ids())
    assert VamanaIndex.from_bytes(replica.to_bytes()).digest() == replica.digest()
    twin.apply_bytes([bytes(raw)])
    assert twin.digest() == replica.digest()


@functools.cache
def _replica_log(which: str = "insert") -> tuple[list[EdgeDelta], EdgeDelta]:
    """The deltas a replica applies first, and the primary's next delta: an insert
    after a build, or a consolidate after a build and some deletes."""
    base, _ = gmm_dataset(41, 1, 4, n_clusters=3, seed=2)
    primary = VamanaIndex(4, R=4, L=10)
    log = primary.build(base[:40])
    if which == "insert":
        return log, primary.insert(40, base[40])
    log += [primary.delete(i) for i in (3, 8, 20, 21)]
    return log, primary.consolidate()[0]


def test_every_single_byte_flip_and_truncation_is_detected() -> None:
    _, log, _ = history(n_build=30, n_insert=2)
    for d in (log[0], log[1], log[-1], log[-2]):
        b = d.to_bytes()
        for i in range(len(b)):
            for x in (0x01, 0x80, 0xFF):
                bad = bytearray(b)
                bad[i] ^= x
                with pytest.raises(CorruptDelta):
                    EdgeDelta.from_bytes(bytes(bad))
        for cut in range(len(b)):
            with pytest.raises(CorruptDelta):
                EdgeDelta.from_bytes(b[:cut])
        with pytest.raises(CorruptDelta):
            EdgeDelta.from_bytes(b + b"\x00")

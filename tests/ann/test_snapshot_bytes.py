"""Snapshots as bytes: ``to_bytes``/``from_bytes`` carry what ``save``/``load`` carry.

A replica too far behind to catch up by deltas gets a snapshot; it must digest
and search like the origin, and go on applying the origin's deltas from the
snapshot's seq. Damaged or foreign bytes raise CorruptIndexFile and nothing else.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graphrep.ann import VamanaIndex
from graphrep.ann.records import RecordSet
from graphrep.datasets import gmm_dataset
from graphrep.errors import CorruptIndexFile, InvalidArgument
from graphrep.spec.profiles import scaled_examples

DIM = 8


def churned(metric: str = "l2", n: int = 160) -> tuple[VamanaIndex, list, np.ndarray, np.ndarray]:
    """A primary after a build, inserts, deletes and a consolidation (so its free list
    is not empty), with every delta it emitted."""
    base, q = gmm_dataset(n + 80, 12, DIM, n_clusters=6, seed=3)
    idx = VamanaIndex(DIM, metric, R=6, L=20, seed=2)
    log = idx.build(base[:n], ids=np.arange(n) * 5 + 1)
    log += [idx.insert(10_000 + i, base[n + i]) for i in range(40)]
    log += [idx.delete(int(i)) for i in idx.ids()[:30:3]]
    log += idx.consolidate()
    log += [idx.delete(int(idx.ids()[7]))]  # a tombstone still pending
    return idx, log, base, q


def same_index(a: VamanaIndex, b: VamanaIndex, q: np.ndarray) -> None:
    assert b.digest() == a.digest()
    assert b.seq == a.seq
    assert b.entry_id == a.entry_id
    assert np.array_equal(b.ids(include_deleted=True), a.ids(include_deleted=True))
    for key in ("size", "live", "deleted", "degree_histogram", "in_degree_histogram"):
        assert b.stats()[key] == a.stats()[key], key
    assert b.graph_problems() == []
    if len(a):
        ia, da = a.search(q, k=5)
        ib, db = b.search(q, k=5)
        assert np.array_equal(ia, ib) and np.array_equal(da, db)
        ha, hb = a.record_hashes(), b.record_hashes()
        assert np.array_equal(ha[0], hb[0]) and np.array_equal(ha[1], hb[1])


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("metric", ["l2", "cosine", "ip"])
def test_round_trip_keeps_digest_seq_and_search(metric) -> None:
    idx, _, _, q = churned(metric)
    data = idx.to_bytes()
    assert isinstance(data, bytes)
    copy = VamanaIndex.from_bytes(data)
    same_index(idx, copy, q)
    assert (copy.metric, copy.R, copy.L, copy.alpha) == (idx.metric, idx.R, idx.L, idx.alpha)
    # bytearray and memoryview are bytes too
    same_index(idx, VamanaIndex.from_bytes(bytearray(data)), q)
    same_index(idx, VamanaIndex.from_bytes(memoryview(data)), q)


def test_snapshot_then_later_deltas_equals_the_origin() -> None:
    """The catch-up path: snapshot at seq s, then the origin's deltas from s on."""
    base, q = gmm_dataset(400, 10, DIM, n_clusters=6, seed=5)
    a = VamanaIndex(DIM, R=6, L=20)
    a.build(base[:200])
    for i in range(200, 230):
        a.insert(i, base[i])
    for i in range(0, 40, 4):
        a.delete(i)
    snap, s = a.to_bytes(), a.seq
    later = [a.insert(i, base[i]) for i in range(230, 300)]
    later += [a.delete(i) for i in range(1, 40, 4)]
    later += a.consolidate()
    later += [a.insert(i, base[i]) for i in range(300, 330)]
    b = VamanaIndex.from_bytes(snap)
    assert b.seq == s
    for d in later:
        b.apply(d)
    same_index(a, b, q)
    # and the two go on alike: the same insert makes the same delta
    assert b.insert(999, base[399]) == a.insert(999, base[399])
    same_index(a, b, q)


def test_bytes_are_the_save_file(tmp_path) -> None:
    """One format: a saved file's content loads with from_bytes, and to_bytes with load."""
    idx, _, _, q = churned()
    path = tmp_path / "idx.npz"
    idx.save(path)
    same_index(idx, VamanaIndex.from_bytes(path.read_bytes()), q)
    path.write_bytes(idx.to_bytes())
    same_index(idx, VamanaIndex.load(path), q)


def test_empty_and_single_node_indexes_round_trip() -> None:
    empty = VamanaIndex(DIM, R=4)
    copy = VamanaIndex.from_bytes(empty.to_bytes())
    assert copy.digest() == empty.digest() and len(copy) == 0 and copy.entry_id == -1
    one = VamanaIndex(DIM, R=4)
    one.insert(42, np.ones(DIM))
    copy = VamanaIndex.from_bytes(one.to_bytes())
    same_index(one, copy, np.ones((1, DIM), np.float32))


def test_snapshot_does_not_share_memory_with_the_origin() -> None:
    idx, _, base, _ = churned()
    copy = VamanaIndex.from_bytes(idx.to_bytes())
    before = copy.digest()
    idx.insert(77_777, base[-1])
    assert copy.digest() == before != idx.digest()


# --------------------------------------------------------------------------- damage


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _with_meta(data: bytes, **changes) -> bytes:
    with np.load(io.BytesIO(data)) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(bytes(arrays["meta"]).decode())
    meta.update(changes)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    return _npz(**arrays)


def _rejected(data) -> str:
    with pytest.raises(CorruptIndexFile) as info:
        VamanaIndex.from_bytes(data)
    assert "snapshot" in str(info.value)
    return str(info.value)


def test_foreign_bytes_are_rejected() -> None:
    idx, log, _, _ = churned()
    good = idx.to_bytes()
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("other.npy", b"")
    foreign = {
        "empty": b"",
        "garbage": b"this is not an index" * 10,
        "a delta": log[-1].to_bytes(),
        "a record set": idx.export_records(idx.ids()[:3]).to_bytes(),
        "one .npy array": (lambda b: (np.save(b, np.arange(5)), b.getvalue())[1])(io.BytesIO()),
        "another zip": zipped.getvalue(),
        "an npz without meta": _npz(vecs=np.zeros((2, DIM), np.float32)),
        "a pickled npz": _npz(meta=np.array([{"format": 1}], dtype=object)),
        "future format": _with_meta(good, format=99),
        "meta not a dict": _npz(meta=np.frombuffer(b"[1, 2]", np.uint8),
                                **{k: np.zeros(1) for k in ("vecs", "nbrs", "deg", "flags",
                                                            "ext")}),
        "bad dim": _with_meta(good, dim="eight"),
        "bad totals": _with_meta(good, totals=[1, 2]),
        "n_slots beyond the arrays": _with_meta(good, n_slots=1 << 30),
        "entry not a node": _with_meta(good, entry=10**6),
    }
    for name, data in foreign.items():
        msg = _rejected(data)
        assert msg, name


def test_truncations_are_rejected() -> None:
    good = churned()[0].to_bytes()
    for cut in [0, 1, 4, 22, 30, 100, *range(200, len(good), max(1, len(good) // 60)),
                len(good) - 22, len(good) - 1]:
        _rejected(good[:cut])


def test_flipped_bytes_are_rejected_or_harmless() -> None:
    """Every member of the archive carries a CRC-32, so a flipped byte in the content is
    always found. A flip in the zip's own bookkeeping that zipfile doesn't read (a
    timestamp, a field it ignores) may go unnoticed, but then the index read back is
    exactly the original."""
    idx, _, _, q = churned()
    good = idx.to_bytes()
    rejected = 0
    positions = range(0, len(good), 7)
    for pos in positions:
        bad = bytearray(good)
        bad[pos] ^= 0x5A
        try:
            copy = VamanaIndex.from_bytes(bytes(bad))
        except CorruptIndexFile as e:
            assert "snapshot" in str(e)
            rejected += 1
        else:
            same_index(idx, copy, q)
    assert rejected > 0.9 * len(positions)


def test_from_bytes_takes_bytes_only() -> None:
    with pytest.raises(InvalidArgument):
        VamanaIndex.from_bytes("not bytes")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        VamanaIndex.from_bytes(RecordSet.empty(DIM))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- crafted archives
#
# Well-formed zip archives with valid CRCs whose content no index wrote: each is refused
# with CorruptIndexFile naming what is wrong, before any allocation larger than the
# archive, and whatever loads keeps every invariant a delta keeps.


def _arrays(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data)) as z:
        return {k: z[k].copy() for k in z.files}


def _meta(data: bytes) -> dict:
    return json.loads(bytes(_arrays(data)["meta"]).decode())


def _npy_header(shape: tuple, descr: str = "<f4", fortran: bool = False) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": descr, "fortran_order": fortran, "shape": shape})
    return buf.getvalue()


def _zip(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, raw in members.items():
            zf.writestr(name, raw)
    return buf.getvalue()


def _members(data: bytes, **replace: bytes) -> bytes:
    """The archive ``data`` with some members' bytes replaced (``vecs=b"..."``)."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        members = {info.filename: zf.read(info) for info in zf.infolist()}
    for key, raw in replace.items():
        members[f"{key}.npy"] = raw
    return _zip(members)


def _with_arrays(data: bytes, **changes) -> bytes:
    arrays = _arrays(data)
    arrays.update(changes)
    return _npz(**arrays)


def _meta_bytes(meta: dict | str) -> bytes:
    text = meta if isinstance(meta, str) else json.dumps(meta)
    buf = io.BytesIO()
    np.save(buf, np.frombuffer(text.encode(), dtype=np.uint8))
    return buf.getvalue()


def test_deeply_nested_metadata_is_refused() -> None:
    """json.loads of metadata nested 100,000 deep raised RecursionError."""
    good = churned()[0].to_bytes()
    deep = '{"format": 1, "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    msg = _rejected(_members(good, meta=_meta_bytes(deep)))
    assert "nested" in msg


@pytest.mark.parametrize("rows", [2**40, 2**31])
def test_an_array_header_announcing_more_than_the_archive_holds_is_refused(rows) -> None:
    """A .npy header announcing 2**40 rows made np.load allocate them (MemoryError):
    the header is now checked against the metadata and the member's size first."""
    idx = churned()[0]
    good = idx.to_bytes()
    lying = _npy_header((rows, DIM)) + b"\0" * 64
    msg = _rejected(_members(good, vecs=lying))
    assert "vecs" in msg and "shape" in msg
    # metadata that agrees with the lie: n_slots beyond the limit, or at it with data
    # far shorter than the header announces
    meta = _meta(good)
    meta["n_slots"] = rows
    msg = _rejected(_members(good, vecs=lying, meta=_meta_bytes(meta)))
    assert ("n_slots" in msg) if rows > 2**31 else ("bytes of data" in msg)


def test_array_headers_of_another_dtype_or_order_are_refused() -> None:
    idx = churned()[0]
    good = idx.to_bytes()
    vecs = _arrays(good)["vecs"]
    n = vecs.shape[0]
    cases = {
        "float64": _with_arrays(good, vecs=vecs.astype(np.float64)),
        "object": _members(good, vecs=_npy_header((n, DIM), "|O") + b"\0" * 8 * n * DIM),
        "fortran": _members(good, vecs=_npy_header((n, DIM), "<f4", True)
                            + np.asfortranarray(vecs).tobytes("F")),
        "deg as int64": _with_arrays(good, deg=_arrays(good)["deg"].astype(np.int64)),
        "too many bytes": _members(good, vecs=_npy_header((n, DIM)) + vecs.tobytes() + b"x"),
    }
    for name, data in cases.items():
        assert _rejected(data), name
    # the same values in the other byte order are fine
    swapped = _members(good, vecs=_npy_header((n, DIM), ">f4") + vecs.astype(">f4").tobytes())
    assert VamanaIndex.from_bytes(swapped).digest() == idx.digest()


def test_compressed_or_encrypted_members_are_refused() -> None:
    """save stores its arrays uncompressed, so no member expands beyond the archive."""
    idx = churned()[0]
    with zipfile.ZipFile(io.BytesIO(idx.to_bytes())) as zf:
        members = {info.filename: zf.read(info) for info in zf.infolist()}
    msg = _rejected(_zip(members, zipfile.ZIP_DEFLATED))
    assert "compressed" in msg
    bomb = _zip({**members, "vecs.npy": _npy_header((2**31, DIM)) + b"\0" * 2**20},
                zipfile.ZIP_DEFLATED)
    assert "compressed" in _rejected(bomb)


@pytest.mark.parametrize("seq", [2**70, 2**63, 2**62 + 1, -1, 1.5, "7", True])
def test_seq_out_of_range_is_refused(seq) -> None:
    """seq 2**70 loaded, and apply_bytes then failed with a numba TypingError."""
    msg = _rejected(_with_meta(churned()[0].to_bytes(), seq=seq))
    assert "seq" in msg


def test_the_largest_seq_loads_and_applies() -> None:
    idx = churned()[0]
    big = VamanaIndex.from_bytes(_with_meta(idx.to_bytes(), seq=2**62))
    assert big.seq == 2**62
    other = VamanaIndex.from_bytes(idx.to_bytes())
    d = dataclasses.replace(other.delete(int(other.ids()[0])), seq=2**62, _wire=[])
    big.apply_bytes([d.to_bytes()])
    assert big.seq == 2**62 + 1 and big.graph_problems() == []


def test_a_slot_listed_twice_in_the_free_list_is_refused() -> None:
    """It used to load, and two inserts then took the same slot: the second overwrote
    the first's vector."""
    good = churned()[0].to_bytes()
    free = _meta(good)["free"]
    assert len(free) >= 2
    msg = _rejected(_with_meta(good, free=[*free, free[0]]))
    assert "free list" in msg
    for bad in ([free[0]] * len(free), free[1:], [*free, 0], [*free, -1], [*free, 10**9],
                [float(x) for x in free], [*free, True], "0"):
        _rejected(_with_meta(good, free=bad))


def _first_list(arrays: dict[str, np.ndarray]) -> int:
    """A used slot with at least two edges."""
    return int(np.flatnonzero((arrays["flags"] != 0) & (arrays["deg"] >= 2))[0])


def test_self_loops_and_repeated_edges_are_refused() -> None:
    good = churned()[0].to_bytes()
    a = _arrays(good)
    s = _first_list(a)
    loop = a["nbrs"].copy()
    loop[s, 0] = s
    assert "itself" in _rejected(_with_arrays(good, nbrs=loop))
    twice = a["nbrs"].copy()
    twice[s, 1] = twice[s, 0]
    assert "twice" in _rejected(_with_arrays(good, nbrs=twice))


def test_every_graph_invariant_is_checked() -> None:
    idx = churned()[0]
    good = idx.to_bytes()
    a = _arrays(good)
    meta = _meta(good)
    s = _first_list(a)
    free_slot = meta["free"][0]

    def changed(name, i, v):
        arr = a[name].copy()
        arr[i] = v
        return _with_arrays(good, **{name: arr})

    edge_to_free = a["nbrs"].copy()
    edge_to_free[s, 0] = free_slot
    vecs_nan, vecs_big = a["vecs"].copy(), a["vecs"].copy()
    vecs_nan[s, 0] = np.nan
    vecs_big[s] = 1e19
    cases = {
        "flags 3": changed("flags", s, 3),
        "degree above R": changed("deg", s, idx.R + 1),
        "negative degree": changed("deg", s, -1),
        "free slot with edges": changed("deg", free_slot, 1),
        "edge to a free slot": _with_arrays(good, nbrs=edge_to_free),
        "edge outside": changed("nbrs", (s, 0), 10**6),
        "negative edge": changed("nbrs", (s, 0), -5),
        "id above 2**62": changed("ext", s, 2**62),
        "negative id": changed("ext", s, -3),
        "repeated id": changed("ext", s, a["ext"][_first_list(a) + 1]),
        "NaN vector": _with_arrays(good, vecs=vecs_nan),
        "vector beyond float32 distances": _with_arrays(good, vecs=vecs_big),
        "free slot not listed": _with_meta(good, free=meta["free"][1:]),
        "used slot listed free": _with_meta(good, free=[*meta["free"], s]),
        "entry a free slot": _with_meta(good, entry=free_slot),
        "entry -1 in a non-empty index": _with_meta(good, entry=-1),
    }
    for name, data in cases.items():
        assert _rejected(data), name
    empty = VamanaIndex(DIM, R=4).to_bytes()
    _rejected(_with_meta(empty, entry=0))


@pytest.mark.parametrize("field,value", [
    ("dim", 0), ("dim", 2**70), ("R", 1), ("R", 10**6), ("L", 0), ("seed", -1),
    ("n_slots", -1), ("entry", -2), ("metric", ["l2"]), ("metric", "hamming"),
    ("alpha", float("nan")), ("alpha", 0.5), ("alpha", 10**400), ("alpha", "1.2"),
    ("build_slack", 9.0), ("counters", [0, 0]), ("counters", [-1, 0, 0]),
    ("counters", [2**70, 0, 0]), ("totals", {"insert": {"calls": 2**70}}),
    ("totals", {"insert": {"calls": -1}}), ("totals", {"fly": {"calls": 1}}),
    ("totals", {"insert": {"speed": 1}}), ("totals", {"insert": 5}), ("free", None),
    ("format", "1"),
])
def test_metadata_fields_out_of_range_are_refused(field, value) -> None:
    _rejected(_with_meta(churned()[0].to_bytes(), **{field: value}))


def test_missing_metadata_fields_are_refused() -> None:
    good = churned()[0].to_bytes()
    for key in ("seq", "free", "totals", "counters", "entry", "alpha"):
        meta = _meta(good)
        del meta[key]
        assert key in _rejected(_members(good, meta=_meta_bytes(meta)))


def test_list_padding_is_not_read() -> None:
    """Past a list's degree the slots are ignored (and kept as -1 in memory)."""
    idx, _, _, q = churned()
    good = idx.to_bytes()
    a = _arrays(good)
    nbrs = a["nbrs"].copy()
    pad = np.arange(idx.R)[None, :] >= a["deg"][:, None]
    nbrs[pad] = 3
    copy = VamanaIndex.from_bytes(_with_arrays(good, nbrs=nbrs))
    same_index(idx, copy, q)


_WEIRD = st.one_of(
    st.integers(-(2**70), 2**70), st.sampled_from([0, 1, -1, 2**31, 2**62, 2**63]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5), st.none(),
    st.booleans(), st.lists(st.integers(-3, 300), max_size=5),
    st.dictionaries(st.sampled_from(["insert", "calls", "x"]),
                    st.integers(-2, 5) | st.dictionaries(st.just("calls"), st.integers(-2, 5)),
                    max_size=2),
)


def usable(copy: VamanaIndex, base: np.ndarray) -> None:
    """A loaded index keeps working: healthy, round trips, and three inserts leave every
    other node's vector alone and make deltas that a copy of it applies from bytes."""
    assert copy.graph_problems() == []
    twin = VamanaIndex.from_bytes(copy.to_bytes())
    assert twin.digest() == copy.digest()
    before = {int(i): copy.vector(int(i)) for i in copy.ids(include_deleted=True)}
    fresh = int(max(copy.ids(include_deleted=True).max(initial=0), 10**9)) + 1
    deltas = [copy.insert(fresh + k, base[-1 - k]) for k in range(3)]
    assert copy.graph_problems() == []
    for i, v in before.items():
        assert np.array_equal(copy.vector(i), v), i
    twin.apply_bytes([d.to_bytes() for d in deltas])
    assert twin.digest() == copy.digest()


def refused_or_usable(data: bytes, base: np.ndarray) -> None:
    """The snapshot ``data`` is refused with a CorruptIndexFile that says so, or loads as
    an index that is :func:`usable`."""
    try:
        copy = VamanaIndex.from_bytes(data)
    except CorruptIndexFile as e:
        assert "snapshot" in str(e)
        return
    usable(copy, base)


@given(field=st.sampled_from(["dim", "metric", "R", "L", "alpha", "build_slack", "seed",
                              "n_slots", "entry", "seq", "free", "totals", "counters"]),
       value=_WEIRD, data=st.data())
@settings(max_examples=scaled_examples(2.0), deadline=None)
def test_any_metadata_value_is_refused_or_harmless(field, value, data) -> None:
    """One metadata field set to anything (the free list also to a shuffle, a part or a
    repeat of itself): the snapshot is refused, or loads as an index that works."""
    idx, _, base, _ = _churned_once()
    good = idx.to_bytes()
    if field == "free" and data.draw(st.booleans(), label="from the free list"):
        free = _meta(good)["free"]
        value = data.draw(st.lists(st.sampled_from([*free, 0, -1]), max_size=len(free) + 2),
                          label="free")
    elif field == "seq" and data.draw(st.booleans(), label="a large seq"):
        value = data.draw(st.integers(2**62 - 2, 2**64), label="seq")
    refused_or_usable(_with_meta(good, **{field: value}), base)


@given(name=st.sampled_from(["vecs", "nbrs", "deg", "flags", "ext"]), pos=st.data(),
       value=st.integers(-(2**31), 2**31 - 1) | st.sampled_from([0, 1, 2, 3, -1]))
@settings(max_examples=scaled_examples(3.0), deadline=None)
def test_any_array_value_is_refused_or_harmless(name, pos, value) -> None:
    """One element of one array changed (the CRC recomputed by the archive): the
    snapshot is refused, or loads as an index that works."""
    idx, _, base, _ = _churned_once()
    good = idx.to_bytes()
    arr = _arrays(good)[name].copy()
    flat = arr.reshape(-1)
    i = pos.draw(st.integers(0, flat.size - 1), label="element")
    if name == "vecs":
        flat[i] = np.float32(value) * np.float32(1e12)
    elif name == "nbrs" and pos.draw(st.booleans(), label="a slot of its own row"):
        row = i // arr.shape[1]
        flat[i] = pos.draw(st.sampled_from([*arr[row].tolist(), row]), label="slot")
    else:
        flat[i] = np.array(value).astype(arr.dtype)
    refused_or_usable(_with_arrays(good, **{name: arr}), base)


@functools.cache
def _churned_once():
    return churned()

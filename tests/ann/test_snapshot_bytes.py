"""Snapshots as bytes: ``to_bytes``/``from_bytes`` carry what ``save``/``load`` carry.

A replica too far behind to catch up by deltas gets a snapshot; it must digest
and search like the origin, and go on applying the origin's deltas from the
snapshot's seq. Damaged or foreign bytes raise CorruptIndexFile and nothing else.
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from graphrep.ann import VamanaIndex
from graphrep.ann.datasets import gmm_dataset
from graphrep.ann.records import RecordSet
from graphrep.errors import CorruptIndexFile, InvalidArgument

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

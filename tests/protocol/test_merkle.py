"""The Merkle tree over node hashes: equal states give equal roots, a changed record
shows up as exactly its leaf, and the descent two replicas make over the network
finds the leaves whose ids have different hashes, and nothing else."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from graphrep.ann import VamanaIndex
from graphrep.ann.records import RecordSet
from graphrep.datasets import gmm_dataset
from graphrep.errors import InvalidArgument, InvalidId
from graphrep.protocol.merkle import (
    DIGEST_SIZE,
    EMPTY_LEAF,
    MerkleTree,
    diff_leaves,
    ids_in_leaves,
    leaf_of,
    splitmix64,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def records(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(10 * n + 10, size=n, replace=False)).astype(np.int64)
    return ids, rng.integers(0, 2**64, size=n, dtype=np.uint64)


def descend(a: MerkleTree, b: MerkleTree, span: int = 1) -> tuple[list[int], int]:
    """The network descent: ``a`` asks ``b`` for the children of the nodes that still
    differ, ``span`` levels at a time. Returns the differing leaves and the round trips."""
    if a.root == b.root:
        return [], 1
    depth, frontier, trips = 0, [0], 1
    while depth < a.depth:
        step = min(span, a.depth - depth)
        answer = b.children(depth, frontier, span=step)  # what b sends back
        frontier = a.differing_children(depth, frontier, answer, span=step)
        depth += step
        trips += 1
    return frontier, trips


# --------------------------------------------------------------------------- structure


def test_levels_and_hashing_rules() -> None:
    ids, hashes = records(1000)
    t = MerkleTree.build(ids, hashes, leaves=16)
    assert t.depth == 4 and t.n_leaves == 16
    assert [len(t.level(d)) for d in range(5)] == [1, 2, 4, 8, 16]
    assert t.root == t.level(0)[0] and len(t.root) == DIGEST_SIZE
    assert int(t.counts.sum()) == 1000
    assert t.counts.tolist() == np.bincount(leaf_of(ids, 16), minlength=16).tolist()
    # a leaf hashes its (id, hash) pairs in id order; a node its two children
    b = 5
    mine = ids[leaf_of(ids, 16) == b]
    pairs = np.empty((mine.size, 2), "<u8")
    pairs[:, 0] = mine
    pairs[:, 1] = hashes[leaf_of(ids, 16) == b]
    want = hashlib.blake2b(pairs.tobytes(), digest_size=DIGEST_SIZE,
                           person=b"graphrep-leaf-v1").digest()
    assert t.leaf_hashes[b] == want
    node = hashlib.blake2b(t.level(4)[4] + t.level(4)[5], digest_size=DIGEST_SIZE,
                           person=b"graphrep-node-v1").digest()
    assert t.level(3)[2] == node
    assert t.children(3, [2]) == [t.level(4)[4], t.level(4)[5]]
    assert t.children(0, [0], span=4) == t.level(4)


def test_empty_buckets_hash_to_a_constant() -> None:
    t = MerkleTree.build([], np.zeros(0, np.uint64), leaves=8)
    assert t.leaf_hashes == (EMPTY_LEAF,) * 8
    assert MerkleTree.build([], [], leaves=8).root == t.root
    one = MerkleTree.build([7], np.array([1], np.uint64), leaves=8)
    assert sum(h != EMPTY_LEAF for h in one.leaf_hashes) == 1
    assert one.leaf_hashes.index(next(h for h in one.leaf_hashes if h != EMPTY_LEAF)) \
        == int(leaf_of([7], 8)[0])
    single = MerkleTree.build([7], np.array([1], np.uint64), leaves=1)
    assert single.depth == 0 and single.root == single.leaf_hashes[0] != EMPTY_LEAF


def test_the_format_is_pinned() -> None:
    """Replicas of different builds must agree: these values may only change with a
    new format version. (SplitMix64 checked against a plain-Python reference.)"""
    mask = (1 << 64) - 1

    def reference(x: int) -> int:
        z = (x + 0x9E3779B97F4A7C15) & mask
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    xs = [0, 1, 2**62, 2**63 - 1, 123456789]
    assert splitmix64(xs).tolist() == [reference(x) for x in xs]
    assert reference(0) == 0xE220A8397B1DCDAF  # SplitMix64's published first output
    ids = np.arange(1000, dtype=np.int64)
    t = MerkleTree.build(ids, splitmix64(ids * 3), leaves=64)
    assert t.root.hex() == "b135e092a79e3ec8d7a06c15d5f4c80a"
    assert EMPTY_LEAF.hex() == "89c08e97288f56529a7fca5b23df2c9d"


def test_equal_states_give_equal_roots_whatever_the_input_order() -> None:
    ids, hashes = records(5000, seed=3)
    t = MerkleTree.build(ids, hashes)
    perm = np.random.default_rng(0).permutation(ids.size)
    u = MerkleTree.build(ids[perm], hashes[perm])
    assert u.root == t.root and u == t
    assert MerkleTree.build(ids.astype(np.uint64), hashes).root == t.root
    assert diff_leaves(t, u) == []
    assert MerkleTree.build(ids, hashes, leaves=512).root != t.root  # another shape


def test_same_root_in_another_process() -> None:
    code = textwrap.dedent(
        """
        import numpy as np
        from graphrep.protocol.merkle import MerkleTree
        rng = np.random.default_rng(9)
        ids = rng.choice(10**9, 20000, replace=False)
        h = rng.integers(0, 2**64, 20000, dtype=np.uint64)
        print(MerkleTree.build(ids, h, 1024).root.hex())
        """
    )
    outs = set()
    for seed in ("0", "4242"):
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(PROJECT_ROOT))
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True, cwd=PROJECT_ROOT, check=True)
        outs.add(r.stdout.strip())
    assert len(outs) == 1


# --------------------------------------------------------------------------- differences


@pytest.mark.parametrize("leaves", [1, 2, 256, 4096])
def test_one_changed_record_is_one_leaf_and_the_descent_finds_it(leaves) -> None:
    ids, hashes = records(20_000, seed=1)
    a = MerkleTree.build(ids, hashes, leaves)
    changed = hashes.copy()
    changed[1234] ^= np.uint64(1 << 17)
    b = MerkleTree.build(ids, changed, leaves)
    want = [int(leaf_of(ids[1234:1235], leaves)[0])]
    assert [i for i in range(leaves) if a.leaf_hashes[i] != b.leaf_hashes[i]] == want
    assert diff_leaves(a, b) == want == diff_leaves(b, a)
    for span in (1, 3, 8):
        found, trips = descend(a, b, span)
        assert found == want
        assert trips == 1 + -(-a.depth // span)
    assert ids_in_leaves(ids, want, leaves).tolist() == \
        ids[leaf_of(ids, leaves) == want[0]].tolist()
    assert ids[1234] in ids_in_leaves(ids, want, leaves)


def test_added_and_removed_ids_show_up() -> None:
    ids, hashes = records(3000, seed=2)
    a = MerkleTree.build(ids, hashes, 128)
    extra = int(ids.max()) + 17
    b = MerkleTree.build(np.r_[ids, extra], np.r_[hashes, np.uint64(5)], 128)
    c = MerkleTree.build(ids[1:], hashes[1:], 128)
    assert diff_leaves(a, b) == leaf_of([extra], 128).tolist()
    assert diff_leaves(a, c) == leaf_of(ids[:1], 128).tolist()


ids_st = st.lists(st.integers(0, 2**62 - 1) | st.integers(0, 300), unique=True, max_size=400)


@given(
    base_ids=ids_st,
    seed=st.integers(0, 2**32 - 1),
    n_changed=st.integers(0, 20),
    added=st.lists(st.integers(0, 2**62 - 1), max_size=10),
    n_removed=st.integers(0, 10),
    log_leaves=st.integers(0, 10),
)
def test_differing_leaves_are_the_buckets_of_differing_ids(
        base_ids, seed, n_changed, added, n_removed, log_leaves) -> None:
    """The property: the leaves found by the descent are exactly the buckets of the ids
    whose hashes differ between the two sides (or that one side lacks)."""
    leaves = 1 << log_leaves
    rng = np.random.default_rng(seed)
    ids = np.array(base_ids, dtype=np.int64)
    h = rng.integers(0, 2**64, size=ids.size, dtype=np.uint64)
    side_a = dict(zip(ids.tolist(), h.tolist(), strict=True))
    side_b = dict(side_a)
    keys = list(side_b)
    for i in rng.permutation(len(keys))[:n_changed]:
        side_b[keys[i]] ^= int(rng.integers(1, 2**63))
    for i in rng.permutation(len(keys))[:n_removed]:
        side_b.pop(keys[i], None)
    for i in added:
        side_b[i] = int(rng.integers(0, 2**63))
    differ = [i for i in set(side_a) | set(side_b) if side_a.get(i) != side_b.get(i)]

    def tree(side: dict) -> MerkleTree:
        return MerkleTree.build(np.array(list(side), dtype=np.int64),
                                np.array(list(side.values()), dtype=np.uint64), leaves)

    a, b = tree(side_a), tree(side_b)
    want = sorted(set(leaf_of(np.array(differ, dtype=np.int64), leaves).tolist()))
    assert diff_leaves(a, b) == want
    assert descend(a, b, span=3)[0] == want
    assert (a.root == b.root) == (not differ)
    # the ids each side then compares cover every differing id
    cover = set(ids_in_leaves(np.array(list(side_a), dtype=np.int64), want, leaves).tolist()) \
        | set(ids_in_leaves(np.array(list(side_b), dtype=np.int64), want, leaves).tolist())
    assert set(differ) <= cover


# --------------------------------------------------------------------------- with indexes


def test_two_replicas_find_their_differences() -> None:
    """End to end: two replicas, one record damaged on one of them; the descent names
    one leaf, the ids in it are compared, and a repair of that one record makes the
    roots equal again."""
    base, _ = gmm_dataset(600, 1, 8, n_clusters=6, seed=8)
    a = VamanaIndex(8, R=6, L=20)
    a.build(base)
    b = VamanaIndex.from_bytes(a.to_bytes())
    victim = 321
    s = b._idmap.get(victim)
    b._g.vecs[s, 2] += 1.0
    ta, tb = MerkleTree.build(*a.record_hashes()), MerkleTree.build(*b.record_hashes())
    leaves, trips = descend(ta, tb, span=4)
    assert leaves == leaf_of([victim], 256).tolist() and trips == 3
    ia, ha = a.record_hashes()
    ib, hb = b.record_hashes()
    cand = ids_in_leaves(ia, leaves, 256)
    pos = np.searchsorted(ia, cand)
    assert cand[ha[pos] != hb[np.searchsorted(ib, cand)]].tolist() == [victim]
    rs = RecordSet.from_bytes(a.export_records([victim]).to_bytes())
    b.overwrite_records(rs)
    assert MerkleTree.build(*b.record_hashes()).root == ta.root
    assert b.digest() == a.digest()


def test_hundred_thousand_records_build_fast() -> None:
    ids, hashes = records(100_000, seed=4)
    MerkleTree.build(ids[:10], hashes[:10])
    t0 = time.perf_counter()
    MerkleTree.build(ids, hashes)
    assert time.perf_counter() - t0 < 1.0


# --------------------------------------------------------------------------- bad input


def test_bad_input_raises() -> None:
    ids, hashes = records(10)
    for leaves in (0, 3, 100, 2**21, -4, 2.0, True, "256"):
        with pytest.raises(InvalidArgument, match="power of two"):
            MerkleTree.build(ids, hashes, leaves)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="appears twice"):
        MerkleTree.build(np.r_[ids, ids[:1]], np.r_[hashes, hashes[:1]])
    with pytest.raises(InvalidArgument, match="one hash per id"):
        MerkleTree.build(ids, hashes[:-1])
    with pytest.raises(InvalidArgument, match="unsigned"):
        MerkleTree.build(ids, hashes.astype(np.int64))
    with pytest.raises(InvalidId):
        MerkleTree.build(np.r_[ids, -1], np.r_[hashes, hashes[:1]])
    with pytest.raises(InvalidId):
        MerkleTree.build([[1, 2]], [[1, 2]])
    with pytest.raises(InvalidId):
        leaf_of([1.5], 8)
    t = MerkleTree.build(ids, hashes, 8)
    with pytest.raises(InvalidArgument):
        t.level(4)
    with pytest.raises(InvalidArgument):
        t.children(3, [0])  # the leaves have no children
    with pytest.raises(InvalidArgument):
        t.children(1, [2])  # depth 1 has nodes 0 and 1
    with pytest.raises(InvalidArgument):
        t.children(0, [0], span=4)
    with pytest.raises(InvalidArgument, match="expected 2 digests"):
        t.differing_children(0, [0], [t.root])
    with pytest.raises(InvalidArgument, match="same leaf count"):
        diff_leaves(t, MerkleTree.build(ids, hashes, 16))
    with pytest.raises(InvalidArgument):
        diff_leaves(t, "tree")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        ids_in_leaves(ids, [8], 8)

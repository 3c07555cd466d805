"""A delta that no mutation could produce is refused whole, by ``apply`` and ``apply_bytes``.

The invariants a delta must keep (stated in :mod:`graphrep.ann.delta_apply`): ids unique
and in [0, 2**62), new ids not stored yet; every neighbour a node that exists after
the delta, no self loop, no repeated edge, degree <= R; every freed id stored,
deleted, named once, not rewritten by the delta and linked to by no list afterwards;
an entry point that exists afterwards; new vectors finite and not so large that
distances overflow. A delta that breaks one raises a DeltaError subclass and leaves
the replica exactly as it was; one that keeps them all leaves a healthy replica,
whatever else is odd about it. Deltas go through both entry points: objects
(``apply``) and wire bytes decoded in the kernel (``apply_bytes``).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

from graphrep.ann import EdgeDelta, VamanaIndex
from graphrep.datasets import gmm_dataset
from graphrep.errors import DeltaError, GraphrepError
from graphrep.spec.profiles import scaled_examples

DIM = 4
R = 4
MAX_ID = 2**62 - 1
KIND_NONE, KIND_FULL, KIND_DIFF = 0, 1, 2


# --------------------------------------------------------------------------- helpers


def observable(idx: VamanaIndex) -> tuple:
    st_ = idx.stats()
    return (idx.digest(), len(idx), idx.seq, idx.entry_id,
            tuple(idx.ids(include_deleted=True).tolist()),
            *(str(st_[k]) for k in ("size", "live", "deleted", "degree_histogram",
                                    "in_degree_histogram")))


def healthy(idx: VamanaIndex, vector: np.ndarray) -> None:
    """The graph invariants hold, the counts agree with the ids, the index's own
    snapshot loads back (the loader checks every invariant), and a further insert
    stores its vector without touching any other node's."""
    assert idx.graph_problems() == []
    stats = idx.stats()
    stored = idx.ids(include_deleted=True)
    assert np.unique(stored).size == stored.size == stats["size"]
    assert stats["live"] == len(idx.ids()) == len(idx) >= 0
    assert stats["deleted"] == stored.size - len(idx) >= 0
    assert stats["max_degree"] <= idx.R
    copy = VamanaIndex.from_bytes(idx.to_bytes())
    assert copy.digest() == idx.digest()
    before = {int(i): idx.vector(int(i)) for i in stored}
    taken = set(stored.tolist())
    new = next(i for i in range(10**6, 10**7) if i not in taken)
    idx.insert(new, vector)
    assert idx.graph_problems() == []
    assert np.array_equal(idx.vector(new), vector.astype(np.float32))
    for i, v in before.items():
        assert np.array_equal(idx.vector(i), v), i


def refused(idx: VamanaIndex, delta: EdgeDelta, match: str) -> None:
    """``delta`` is refused by ``apply`` and (when it can be encoded) by ``apply_bytes``,
    with a message matching ``match``, and ``idx`` is unchanged by either."""
    before = observable(idx)
    with pytest.raises(DeltaError, match=match):
        idx.apply(delta)
    assert observable(idx) == before and idx.graph_problems() == []
    try:
        raw = delta.to_bytes()
    except DeltaError:  # the wire format cannot carry it: apply is the only way in
        return
    with pytest.raises(DeltaError, match=match):
        idx.apply_bytes([raw])
    assert observable(idx) == before and idx.graph_problems() == []


def replace(d: EdgeDelta, **fields) -> EdgeDelta:
    return dataclasses.replace(d, _wire=[], **fields)


@functools.cache
def _history() -> tuple[dict[str, tuple[tuple[EdgeDelta, ...], EdgeDelta]], np.ndarray]:
    """A primary's deltas: for each kind of mutation, the log before one such delta
    and the delta."""
    base, _ = gmm_dataset(60, 1, DIM, n_clusters=3, seed=4)
    p = VamanaIndex(DIM, R=R, L=10)
    log = p.build(base[:40])
    cases = {}

    def take(name: str, d: EdgeDelta) -> None:
        cases[name] = (tuple(log), d)
        log.append(d)

    take("insert", p.insert(40, base[40]))
    for i in (2, 5, 9, 40):
        log.append(p.delete(i))
    take("delete", p.delete(11))
    (c,) = p.consolidate()
    take("consolidate", c)
    take("insert into a freed slot", p.insert(41, base[41]))
    return cases, base


def at(name: str) -> tuple[VamanaIndex, EdgeDelta]:
    """A replica that applied the log up to the delta ``name``, and that delta."""
    cases, _ = _history()
    log, d = cases[name]
    replica = VamanaIndex(DIM, R=R, L=10)
    replica.apply(list(log))
    return replica, d


def _no_records(idx: VamanaIndex, **fields) -> EdgeDelta:
    base = dict(seq=idx.seq, op="consolidate", dim=idx.dim, entry=idx.entry_id,
                ids=np.zeros(0, np.int64), flags=np.zeros(0, np.uint8),
                kinds=np.zeros(0, np.uint8), counts=np.zeros((0, 2), np.int32),
                values=np.zeros(0, np.int64), vectors=np.zeros((0, idx.dim), np.float32),
                removed=np.zeros(0, np.int64))
    base.update(fields)
    return EdgeDelta(**base)


# --------------------------------------------------------------------------- freed ids


def test_freeing_a_node_that_lists_still_link_to_is_refused() -> None:
    """The defect report's example: a consolidate without records frees id 3, which
    other lists point to. It used to apply and leave edges to a freed slot (and a
    snapshot that its own loader refused)."""
    base, _ = gmm_dataset(60, 1, 8, n_clusters=4, seed=0)
    a = VamanaIndex(8, R=8, L=16)
    a.build(base[:50])
    a.delete(3)
    refused(a, _no_records(a, removed=np.array([3])), "still links to it")
    assert a.graph_problems() == []
    assert VamanaIndex.from_bytes(a.to_bytes()).digest() == a.digest()


def test_freeing_a_node_whose_in_edges_the_delta_removes_is_accepted() -> None:
    """The in-degree check counts the edges the delta itself takes away: every list
    that links to the freed node rewritten without it, in full or as a diff."""
    base, _ = gmm_dataset(60, 1, 8, n_clusters=4, seed=0)
    a = VamanaIndex(8, R=8, L=16)
    a.build(base[:50])
    a.delete(3)
    sources = [i for i in a.ids() if 3 in a.neighbors(int(i))]
    assert len(sources) >= 2
    ids, kinds, counts, values = [], [], [], []
    for k, s in enumerate(sources):
        lst = [int(x) for x in a.neighbors(int(s)) if x != 3]
        ids.append(int(s))
        if k % 2:  # a full list without 3
            kinds.append(KIND_FULL)
            counts.append((len(lst), 0))
            values += lst
        else:  # a diff that removes 3
            kinds.append(KIND_DIFF)
            counts.append((1, 0))
            values.append(3)
    d = _no_records(a, ids=np.array(ids, np.int64), flags=np.ones(len(ids), np.uint8),
                    kinds=np.array(kinds, np.uint8), counts=np.array(counts, np.int32),
                    values=np.array(values, np.int64), removed=np.array([3]))
    # one list short, and it dangles
    short = replace(d, ids=d.ids[1:], flags=d.flags[1:], kinds=d.kinds[1:],
                    counts=d.counts[1:], values=d.values[1:] if kinds[0] == KIND_DIFF
                    else d.values)
    refused(a, short, "still links to it")
    twin = VamanaIndex.from_bytes(a.to_bytes())
    a.apply(d)
    twin.apply_bytes([d.to_bytes()])
    assert twin.digest() == a.digest()
    assert 3 not in a.ids(include_deleted=True)
    healthy(a, base[55])


def test_a_freed_id_named_twice_is_refused() -> None:
    """It used to free the slot twice: deleted count -1, the slot twice on the free
    stack, and a later insert overwrote another id's vector."""
    replica, c = at("consolidate")
    assert c.removed.size >= 2
    twice = np.sort(np.concatenate([c.removed, c.removed[:1]]))
    refused(replica, replace(c, removed=twice), "frees id .* twice")
    replica.apply(c)
    healthy(replica, _history()[1][50])


def test_a_freed_id_that_the_delta_also_rewrites_is_refused() -> None:
    replica, c = at("consolidate")
    rid = int(c.removed[0])
    d = replace(c, ids=np.append(c.ids, rid), flags=np.append(c.flags, np.uint8(1)),
                kinds=np.append(c.kinds, np.uint8(KIND_NONE)),
                counts=np.concatenate([c.counts, np.zeros((1, 2), np.int32)]))
    refused(replica, d, f"rewrites id {rid}, which the same delta frees")


def test_a_list_that_links_to_a_freed_id_is_refused() -> None:
    replica, c = at("consolidate")
    rid = int(c.removed[0])
    i = next(k for k in range(c.n_records) if c.kinds[k] == KIND_FULL and c.counts[k, 0] < R)
    start = int(c.counts[:i].sum())
    m = int(c.counts[i, 0])
    lst = np.sort(np.append(c.values[start:start + m], rid))
    values = np.concatenate([c.values[:start], lst, c.values[start + m:]])
    counts = c.counts.copy()
    counts[i, 0] += 1
    refused(replica, replace(c, values=values, counts=counts),
            f"links to id {rid}, which the same delta frees")


# --------------------------------------------------------------------------- record ids


def _renamed(d: EdgeDelta, old: int, new: int) -> EdgeDelta:
    """``d`` with id ``old`` called ``new`` everywhere (records, lists, entry)."""
    values = np.where(d.values == old, new, d.values)
    # keep every list part sorted
    pos = 0
    for i in range(d.n_records):
        for part in range(2):
            m = int(d.counts[i, part])
            values[pos:pos + m].sort()
            pos += m
    return replace(d, ids=np.where(d.ids == old, new, d.ids), values=values,
                   entry=new if d.entry == old else d.entry)


@pytest.mark.parametrize("case", ["insert", "insert into a freed slot"])
def test_a_new_id_beyond_the_largest_id_is_refused(case) -> None:
    replica, d = at(case)
    new = int(d.ids[0])
    twin = VamanaIndex.from_bytes(replica.to_bytes())
    refused(replica, _renamed(d, new, MAX_ID + 1), "outside")
    refused(replica, _renamed(d, new, 2**63 - 1), "outside")
    # the largest id an insert accepts applies
    replica.apply(_renamed(d, new, MAX_ID))
    twin.apply_bytes([_renamed(d, new, MAX_ID).to_bytes()])
    assert twin.digest() == replica.digest() and MAX_ID in replica
    healthy(replica, _history()[1][55])


def test_two_new_records_with_the_same_id_are_refused() -> None:
    replica, d = at("insert")
    # a second new node with the insert's id: few new records are compared pairwise
    two = replace(d, ids=np.insert(d.ids, 1, d.ids[0]), flags=np.insert(d.flags, 1, d.flags[0]),
                  kinds=np.insert(d.kinds, 1, np.uint8(KIND_FULL)),
                  counts=np.insert(d.counts, 1, [1, 0], axis=0),
                  values=np.insert(d.values, int(d.counts[0].sum()), d.values[0]),
                  vectors=np.concatenate([d.vectors, d.vectors + 1]))
    refused(replica, two, "has two records")
    # many new records (a build) are hashed
    cases, _ = _history()
    build = cases["insert"][0][0]
    empty = VamanaIndex(DIM, R=R, L=10)
    ids = build.ids.copy()
    ids[30] = ids[12]
    refused(empty, replace(build, ids=ids), "has two records")
    empty.apply(build)


def test_a_record_whose_kind_and_lengths_disagree_is_refused() -> None:
    """A flags-only record that carries values, or a full list with an 'added' part:
    the wire format cannot say either, and apply used to skip the values."""
    replica, d = at("delete")
    assert d.kinds[0] == KIND_NONE
    extra = int(replica.neighbors(int(d.ids[0]))[0])
    refused(replica, replace(d, counts=np.array([[1, 0]], np.int32),
                             values=np.array([extra], np.int64)), "do not fit its kind")
    replica, d = at("insert")
    counts = d.counts.copy()
    counts[0] = [counts[0, 0] - 1, 1]
    refused(replica, replace(d, counts=counts), "do not fit its kind")


def test_values_that_do_not_survive_the_cast_are_refused() -> None:
    """apply reads each array as the kernel's dtype; a value that the cast would change
    (flags 257 read as 1) makes the delta malformed instead."""
    replica, d = at("delete")
    refused(replica, replace(d, flags=np.array([258], np.int64)), "outside the range")
    refused(replica, replace(d, ids=d.ids.astype(np.float64)), "not integers")
    refused(replica, replace(d, removed=[]), "numpy arrays")
    refused(replica, replace(d, entry=2**70), "entry")


# --------------------------------------------------------------------------- vectors


@pytest.mark.parametrize("scale", [1e19, 3e38])
def test_a_new_vector_whose_distances_overflow_is_refused(scale) -> None:
    """A finite vector whose squared norm is beyond float32 gives inf and NaN distances;
    an insert refuses it, and so does a replica that receives it in a delta."""
    replica, d = at("insert")
    v = np.full_like(d.vectors, np.float32(scale))
    refused(replica, replace(d, vectors=v), "squared norm")
    replica.apply(d)


# --------------------------------------------------------------------------- batches


def test_a_batch_is_checked_delta_by_delta() -> None:
    """Delta k + 1 is checked against the state delta k leaves: a delete and then a
    consolidate that frees that id go through in one call, and a batch whose second
    delta doesn't fit the first's result stops there with the first applied."""
    replica, c = at("consolidate")
    cases, _ = _history()
    log, last_delete = cases["delete"]
    start = VamanaIndex(DIM, R=R, L=10)
    start.apply(list(log))
    for use_bytes in (False, True):
        r = VamanaIndex.from_bytes(start.to_bytes())
        batch = [last_delete, c]
        if use_bytes:
            r.apply_bytes([x.to_bytes() for x in batch])
        else:
            r.apply(batch)
        ref = VamanaIndex.from_bytes(replica.to_bytes())
        ref.apply(c)
        assert r.digest() == ref.digest()
        # the same batch with the consolidate also naming a freed id twice
        r = VamanaIndex.from_bytes(start.to_bytes())
        bad = replace(c, removed=np.sort(np.concatenate([c.removed, c.removed[-1:]])))
        with pytest.raises(DeltaError, match="twice"):
            if use_bytes:
                r.apply_bytes([last_delete.to_bytes(), bad.to_bytes()])
            else:
                r.apply([last_delete, bad])
        assert observable(r) == observable(replica)


# --------------------------------------------------------------------------- property


@st.composite
def mutated(draw) -> tuple[str, EdgeDelta, list[str]]:
    """A real delta with one to three of its arrays changed the way a buggy leader
    might change them (ids swapped, values renamed, freed ids added or repeated,
    records dropped or repeated, kinds and lengths changed, huge or NaN vectors)."""
    name = draw(st.sampled_from(["insert", "delete", "consolidate", "insert into a freed slot"]))
    _, d = _history()[0][name]
    replica, _ = at(name)
    stored = [int(x) for x in replica.ids(include_deleted=True)]
    deleted = [i for i in stored if replica.is_deleted(i)]
    ids, flags, kinds = d.ids.copy(), d.flags.copy(), d.kinds.copy()
    counts, values, vectors = d.counts.copy(), d.values.copy(), d.vectors.copy()
    removed, entry = d.removed.copy(), d.entry
    pool = st.sampled_from(sorted({*stored, *ids.tolist(), *removed.tolist(), 1000, -1,
                                   MAX_ID, MAX_ID + 1}))
    log = []
    for _ in range(draw(st.integers(1, 3))):
        what = draw(st.sampled_from(["id", "value", "add-removed", "drop-removed", "flags",
                                     "kind", "count", "entry", "vector", "drop-record",
                                     "repeat-record"]))
        n = ids.shape[0]
        if what == "id" and n:
            i = draw(st.integers(0, n - 1))
            ids[i] = draw(pool)
        elif what == "value" and values.size:
            j = draw(st.integers(0, values.size - 1))
            values[j] = draw(pool)
        elif what == "add-removed":
            removed = np.append(removed, draw(st.sampled_from(
                [*deleted, *stored[:3], *removed.tolist(), *ids.tolist(), 1000])))
        elif what == "drop-removed" and removed.size:
            removed = np.delete(removed, draw(st.integers(0, removed.size - 1)))
        elif what == "flags" and n:
            flags[draw(st.integers(0, n - 1))] = draw(st.integers(0, 3))
        elif what == "kind" and n:
            kinds[draw(st.integers(0, n - 1))] = draw(st.integers(0, 3))
        elif what == "count" and n:
            i, part = draw(st.integers(0, n - 1)), draw(st.integers(0, 1))
            counts[i, part] += draw(st.sampled_from([-1, 1]))
        elif what == "entry":
            entry = draw(pool)
        elif what == "vector" and vectors.size:
            vectors[draw(st.integers(0, vectors.shape[0] - 1)), 0] = draw(
                st.sampled_from([3e38, 1e19, np.inf, np.nan, -1e30]))
        elif what in ("drop-record", "repeat-record") and n:
            i = draw(st.integers(0, n - 1))
            lo = int(counts[:i].sum())
            hi = lo + int(counts[i].sum())
            if what == "drop-record":
                ids, flags, kinds = np.delete(ids, i), np.delete(flags, i), np.delete(kinds, i)
                counts = np.delete(counts, i, axis=0)
                values = np.concatenate([values[:lo], values[hi:]])
                if i < vectors.shape[0]:
                    vectors = np.delete(vectors, i, axis=0)
            else:
                ids, flags, kinds = np.append(ids, ids[i]), np.append(flags, flags[i]), \
                    np.append(kinds, kinds[i])
                counts = np.concatenate([counts, counts[i:i + 1]])
                values = np.concatenate([values, values[lo:hi]])
        else:
            continue
        log.append(what)
    bad = replace(d, ids=ids, flags=flags, kinds=kinds, counts=counts, values=values,
                  vectors=vectors, removed=removed, entry=int(entry))
    return name, bad, log


@given(case=mutated())
@settings(max_examples=scaled_examples(2.0), deadline=None)
def test_semantically_mutated_deltas_never_break_a_replica(case) -> None:
    """A real delta with its arrays changed (and, where the wire format can carry it,
    encoded again with a valid CRC): the replica either refuses it with a
    GraphrepError and is unchanged, or applies it and is healthy; ``apply`` and
    ``apply_bytes`` agree."""
    name, bad, log = case
    note(f"{name}: {log}")
    replica, _ = at(name)
    before = observable(replica)
    try:
        raw = bad.to_bytes()
    except DeltaError:
        raw = None
    error = None
    try:
        replica.apply(bad)
    except GraphrepError as e:
        error = e
        assert observable(replica) == before
        assert replica.graph_problems() == []
    if raw is not None:
        twin, _ = at(name)
        if error is not None:
            with pytest.raises(type(error)):
                twin.apply_bytes([raw])
            assert observable(twin) == before
        else:
            twin.apply_bytes([raw])
            assert twin.digest() == replica.digest()
    if error is None:
        healthy(replica, _history()[1][58])


# --------------------------------------------------------------------------- the oracle


def test_graph_problems_notices_the_bookkeeping_a_bad_delta_broke() -> None:
    """The damage the refused deltas used to do, made by hand: graph_problems names it
    (it used to see a consistent graph and say nothing)."""
    replica, c = at("consolidate")
    replica.apply(c)
    assert replica.graph_problems() == []
    free = int(replica._free[0])

    def broken(change) -> list[str]:
        r = VamanaIndex.from_bytes(replica.to_bytes())
        change(r)
        return r.graph_problems()

    def twice_free(r):
        r._free[r._n_free] = free
        r._n_free += 1

    def counts(r):
        r._n_deleted -= 1

    def same_id(r):
        a, b = r._idmap.get(0), r._idmap.get(1)
        r._g.ext[b] = r._g.ext[a]

    assert any("free list" in p for p in broken(twice_free))
    assert any("counts" in p for p in broken(counts))
    assert any("stored twice" in p for p in broken(same_id))

"""Hypothesis properties of VamanaIndex and its edge deltas.

The properties an index and its deltas must have:

* graph health after every operation: out-degree <= R, no edge to an unknown
  id, no self loop or repeated edge, in-degrees consistent; after
  consolidation no edge to (and no node that is) a deleted id, and every live
  node reachable from the entry point;
* a delete hides the id from search results at once;
* replaying an index's deltas, in order, onto an empty index with the same
  dim/metric/R gives an equal digest and identical search results, without
  a single distance computation, also when every delta goes through
  ``to_bytes``/``from_bytes`` first;
* a replica that was built by replay and then takes over writing makes
  exactly the deltas the primary would have made (lists are sets: their
  order in memory changes nothing).

Examples are kept small (dim 4-8, R 4-8, a few dozen vectors) so that lists
fill up and re-prunes, orphan repairs and consolidations actually happen.
The last tests show that the replay check is able to fail: a replica that
lost a delta, or whose neighbour list was tampered with, is caught.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import assume, event, given, note, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from graphrep.ann import EdgeDelta, VamanaIndex
from graphrep.datasets import gmm_dataset
from graphrep.spec.profiles import scaled_examples

METRICS = ("l2", "cosine", "ip")

# --------------------------------------------------------------------------- strategies


@dataclass(frozen=True)
class Params:
    dim: int
    metric: str
    R: int
    L: int
    alpha: float
    seed: int
    capacity: int

    def make(self, **override) -> VamanaIndex:
        kw = dataclasses.asdict(self) | override
        return VamanaIndex(kw["dim"], kw["metric"], kw["R"], kw["L"], kw["alpha"],
                           seed=kw["seed"], capacity=kw["capacity"])

    def replica(self) -> VamanaIndex:
        """An empty index that only shares dim/metric/R (and L, the default search beam)
        with the primary: another capacity, alpha and build seed must not matter."""
        return VamanaIndex(self.dim, self.metric, self.R, self.L, alpha=1.7,
                           seed=self.seed + 99, capacity=1)


params_st = st.builds(
    Params,
    dim=st.integers(4, 8),
    metric=st.sampled_from(METRICS),
    R=st.integers(3, 8),
    L=st.integers(4, 16),
    alpha=st.sampled_from([1.0, 1.2, 1.5]),
    seed=st.integers(0, 3),
    capacity=st.sampled_from([1, 7, 64]),
)

# small integers give many exact distance ties and duplicate vectors (the
# tie-breaking by id is exercised); fractions in [-8, 8] give everything else
coord_st = st.one_of(
    st.integers(-3, 3).map(float),
    st.integers(-8000, 8000).map(lambda i: i / 1000),
)


def _not_zero(xs: list[float]) -> list[float]:
    return xs if any(xs) else [1.0, *xs[1:]]


def vector_st(dim: int, metric: str) -> st.SearchStrategy[list[float]]:
    v = st.lists(coord_st, min_size=dim, max_size=dim)
    if metric == "cosine":  # the zero vector has no cosine distance
        v = v.map(_not_zero)
    return v


@dataclass
class Scenario:
    params: Params
    build: list[list[float]]  # [] means: no build, start with inserts
    ops: list[tuple]  # ("insert", vec) | ("delete", pick) | ("consolidate",)
    queries: list[list[float]]


@st.composite
def scenarios(draw, max_build: int = 24, max_ops: int = 30) -> Scenario:
    p = draw(params_st)
    vec = vector_st(p.dim, p.metric)
    # sizes uniform in their range (plain st.lists favours short lists, and short
    # lists never fill a neighbour list)
    n_build = draw(st.integers(0, max_build), label="n_build")
    build = draw(st.lists(vec, min_size=n_build, max_size=n_build), label="build")
    ins = st.tuples(st.just("insert"), vec)
    dele = st.tuples(st.just("delete"), st.integers(0, 10_000))
    cons = st.just(("consolidate",))
    n_ops = draw(st.integers(0, max_ops), label="n_ops")
    ops = draw(st.lists(st.one_of(ins, ins, dele, dele, cons), min_size=n_ops, max_size=n_ops),
               label="ops")
    queries = draw(st.lists(vec, min_size=1, max_size=3))
    return Scenario(p, build, ops, queries)


def new_id(counter: int) -> int:
    """Ids that are neither dense nor in insertion order."""
    return (counter * 7919) % 100_003 + 3


# --------------------------------------------------------------------------- checks


def assert_healthy(idx: VamanaIndex) -> None:
    """Invariant 3 for any state: degree <= R, no edge to an unknown id, no self loop or
    repeated edge, and graph_problems() agrees."""
    assert idx.graph_problems() == []
    known = set(idx.ids(include_deleted=True).tolist())
    assert idx.stats()["max_degree"] <= idx.R
    for i in known:
        nb = idx.neighbors(i).tolist()
        assert len(nb) <= idx.R, f"id {i} has {len(nb)} neighbours > R={idx.R}"
        assert len(set(nb)) == len(nb), f"id {i} has a repeated neighbour"
        assert i not in nb, f"id {i} links to itself"
        assert set(nb) <= known, f"id {i} links to unknown ids {set(nb) - known}"


def assert_consolidated(idx: VamanaIndex) -> None:
    """After a consolidation (one that had deletions to consolidate, and so re-linked
    and repaired): no deleted node left, no edge to a deleted id, all live nodes
    reachable from the entry point."""
    assert_healthy(idx)
    live = set(idx.ids().tolist())
    assert set(idx.ids(include_deleted=True).tolist()) == live
    assert idx.stats()["deleted"] == 0
    for i in live:
        assert set(idx.neighbors(i).tolist()) <= live
    assert idx.stats()["unreachable"] == 0


def assert_hidden(idx: VamanaIndex, deleted_id: int, vector) -> None:
    """A deleted id never appears in results, even when searching for its own vector
    with k and L large enough to return every reachable live node."""
    if len(idx) == 0:
        return
    n = len(idx.ids(include_deleted=True))
    ids, _ = idx.search(np.asarray(vector, dtype=np.float32), k=n, L=n)
    assert deleted_id not in ids.tolist()
    assert set(ids[ids >= 0].tolist()) <= set(idx.ids().tolist())
    ids, _ = idx.search(np.asarray(vector, dtype=np.float32), k=1)
    assert deleted_id not in ids.tolist()


def assert_replica_equal(primary: VamanaIndex, replica: VamanaIndex, queries) -> None:
    """The replay property: equal digest, then identical search results."""
    assert replica.digest() == primary.digest(), "replica digest differs from the primary's"
    assert len(replica) == len(primary)
    assert np.array_equal(replica.ids(include_deleted=True), primary.ids(include_deleted=True))
    assert replica.entry_id == primary.entry_id
    if len(primary) == 0:
        return
    q = np.asarray(queries, dtype=np.float32)
    n = len(primary.ids(include_deleted=True))
    for k, L in ((1, None), (5, None), (min(n, 10), 3), (n, n)):
        ia, da = primary.search(q, k=k, L=L)
        ib, db = replica.search(q, k=k, L=L)
        assert np.array_equal(ia, ib), f"search ids differ (k={k}, L={L})"
        assert np.array_equal(da, db), f"search distances differ (k={k}, L={L})"


def run_scenario(sc: Scenario, check: bool = True) -> tuple[VamanaIndex, list[EdgeDelta]]:
    """Play the scenario on a fresh primary, checking the invariants after every op;
    returns the primary and every delta it emitted, in order."""
    idx = sc.params.make()
    deltas: list[EdgeDelta] = []
    vectors: dict[int, list[float]] = {}
    counter = 0
    max_degree_seen = 0
    if sc.build:
        ids = [new_id(c) for c in range(len(sc.build))]
        counter = len(ids)
        out = idx.build(np.asarray(sc.build, dtype=np.float32), ids=np.asarray(ids))
        assert len(out) == 1 and out[0].op == "build"
        deltas += out
        vectors.update(zip(ids, sc.build, strict=True))
        max_degree_seen = idx.stats()["max_degree"]
        if check:
            assert_healthy(idx)
            assert idx.stats()["unreachable"] == 0
    for op in sc.ops:
        if op[0] == "insert":
            i = new_id(counter)
            counter += 1
            d = idx.insert(i, np.asarray(op[1], dtype=np.float32))
            assert d.op == "insert"
            deltas.append(d)
            vectors[i] = op[1]
            max_degree_seen = max(max_degree_seen, idx.stats()["max_degree"])
            if check:
                assert i in idx
                assert_healthy(idx)
        elif op[0] == "delete":
            live = idx.ids().tolist()
            if not live:
                continue
            i = live[op[1] % len(live)]
            d = idx.delete(i)
            assert d.op == "delete"
            deltas.append(d)
            if check:
                assert i not in idx and idx.is_deleted(i)
                assert_healthy(idx)
                assert_hidden(idx, i, vectors[i])
        else:
            had_deleted = idx.stats()["deleted"]
            out = idx.consolidate()
            assert (out == []) == (had_deleted == 0)
            deltas += out
            if check and out:
                assert_consolidated(idx)
            elif check:  # nothing to consolidate: a no-op (reachability after inserts
                assert_healthy(idx)  # alone is test_index.py's concern)
    assert [d.seq for d in deltas] == list(range(len(deltas)))
    assert idx.seq == len(deltas)
    if check and currently_in_test_context():  # what the example exercised
        event(f"metric={sc.params.metric}")
        event("some list filled up to R (re-prunes happen)" if max_degree_seen == idx.R
              else "no list filled up")
        if any(d.op == "consolidate" and len(d.removed) for d in deltas):
            event("consolidation freed nodes")
    return idx, deltas


def replay(sc: Scenario, deltas: list[EdgeDelta], via_bytes: bool = True) -> VamanaIndex:
    replica = sc.params.replica()
    for d in deltas:
        if via_bytes:
            d2 = EdgeDelta.from_bytes(d.to_bytes())
            assert d2 == d
            d = d2
        replica.apply(d)
        assert replica.last_op["distance_computations"] == 0
    assert replica.stats()["distance_computations"] == 0
    return replica


def check_replay_property(sc: Scenario, tamper=None) -> None:
    """The property: replay (through bytes) gives the primary's digest and search
    results. ``tamper`` may alter the list of deltas the replica receives."""
    primary, deltas = run_scenario(sc)
    if tamper is not None:
        deltas = tamper(deltas)
    replica = replay(sc, deltas)
    assert_replica_equal(primary, replica, sc.queries)


# --------------------------------------------------------------------------- properties


# Found by the nightly profile: many exact duplicates with a small R; the build
# (and the consolidation that follows a delete) left a live copy unreachable.
_DUPLICATES = Scenario(
    Params(dim=6, metric="l2", R=3, L=4, alpha=1.0, seed=0, capacity=1),
    build=[[0.0] * 5 + [1.0]] + [[0.0] * 6] * 9,
    ops=[("delete", 1), ("consolidate",)],
    queries=[[0.0] * 6],
)


@given(sc=scenarios())
@settings(max_examples=scaled_examples(1.0))
def test_replay_gives_equal_digest_and_search(sc: Scenario) -> None:
    check_replay_property(sc)


def test_replay_property_on_many_duplicates() -> None:
    """The nightly find, kept as its own test (an @example that fails would stop the
    property above before it tries any generated example)."""
    check_replay_property(_DUPLICATES)


@given(sc=scenarios())
@settings(max_examples=scaled_examples(0.3))
def test_replay_without_bytes_equals_replay_with_bytes(sc: Scenario) -> None:
    primary, deltas = run_scenario(sc, check=False)
    direct = replay(sc, deltas, via_bytes=False)
    wired = replay(sc, deltas, via_bytes=True)
    assert direct.digest() == wired.digest() == primary.digest()


@given(sc=scenarios(max_ops=20), more=st.data())
@settings(max_examples=scaled_examples(0.5))
def test_promoted_replica_makes_the_primarys_deltas(sc: Scenario, more) -> None:
    """A replica built by replay that takes over writing computes the same deltas as
    the primary would: the replayed graph is the primary's graph, list order aside."""
    primary, deltas = run_scenario(sc, check=False)
    replica = replay(sc, deltas)
    replica.alpha = primary.alpha  # the replica was created with another alpha
    replica.build_slack = primary.build_slack
    vec = vector_st(sc.params.dim, sc.params.metric)
    for c in range(more.draw(st.integers(1, 6), label="n_more")):
        v = np.asarray(more.draw(vec, label="vector"), dtype=np.float32)
        i = 10**9 + c
        da, db = primary.insert(i, v), replica.insert(i, v)
        assert da == db
        assert da.to_bytes() == db.to_bytes()
    live = primary.ids().tolist()
    if live:
        victim = live[more.draw(st.integers(0, len(live) - 1), label="victim")]
        assert primary.delete(victim) == replica.delete(victim)
    assert primary.consolidate() == replica.consolidate()
    assert_replica_equal(primary, replica, sc.queries)


class ReplicatedIndex(RuleBasedStateMachine):
    """A primary and a replica that applies every delta as it is emitted (through
    bytes); the invariants are checked after every step, and at the end a fresh
    replica replays the whole log."""

    @initialize(p=params_st, data=st.data())
    def setup(self, p: Params, data) -> None:
        self.p = p
        self.vec = vector_st(p.dim, p.metric)
        self.primary = p.make()
        self.replica = p.replica()
        self.log: list[EdgeDelta] = []
        self.vectors: dict[int, list[float]] = {}
        self.counter = 0
        n = data.draw(st.integers(0, 20), label="n_build")
        build = data.draw(st.lists(self.vec, min_size=n, max_size=n), label="build")
        if build:
            ids = [self._next_id() for _ in build]
            self._ship(self.primary.build(np.asarray(build, np.float32), ids=np.asarray(ids)))
            self.vectors.update(zip(ids, build, strict=True))
            assert self.primary.stats()["unreachable"] == 0

    def _next_id(self) -> int:
        self.counter += 1
        return new_id(self.counter)

    def _ship(self, deltas: list[EdgeDelta]) -> None:
        for d in deltas:
            assert d.seq == len(self.log)
            wire = EdgeDelta.from_bytes(d.to_bytes())
            assert wire == d
            self.replica.apply(wire)
            assert self.replica.last_op["distance_computations"] == 0
            self.log.append(d)

    @rule(data=st.data())
    def insert(self, data) -> None:
        v = data.draw(self.vec, label="vector")
        i = self._next_id()
        self._ship([self.primary.insert(i, np.asarray(v, np.float32))])
        self.vectors[i] = v
        assert i in self.primary and i in self.replica

    @precondition(lambda self: len(self.primary) > 0)
    @rule(data=st.data())
    def delete(self, data) -> None:
        i = data.draw(st.sampled_from(self.primary.ids().tolist()), label="victim")
        self._ship([self.primary.delete(i)])
        assert i not in self.primary and i not in self.replica
        assert_hidden(self.primary, i, self.vectors[i])
        assert_hidden(self.replica, i, self.vectors[i])

    @rule()
    def consolidate(self) -> None:
        had = self.primary.stats()["deleted"]
        out = self.primary.consolidate()
        assert (out == []) == (had == 0)
        self._ship(out)
        if out:
            assert_consolidated(self.primary)
            assert_consolidated(self.replica)

    @precondition(lambda self: len(self.primary) > 0)
    @rule(data=st.data(), k=st.integers(1, 12), L=st.one_of(st.none(), st.integers(1, 20)))
    def searches_agree(self, data, k, L) -> None:
        q = np.asarray(data.draw(self.vec, label="query"), np.float32)
        ia, da = self.primary.search(q, k=k, L=L)
        ib, db = self.replica.search(q, k=k, L=L)
        assert np.array_equal(ia, ib) and np.array_equal(da, db)
        found = ia[ia >= 0]
        assert set(found.tolist()) <= set(self.primary.ids().tolist())
        assert len(set(found.tolist())) == found.size

    @invariant()
    def healthy_and_converged(self) -> None:
        if not hasattr(self, "primary"):
            return
        assert_healthy(self.primary)
        assert_healthy(self.replica)
        assert self.replica.digest() == self.primary.digest()
        assert self.replica.seq == self.primary.seq == len(self.log)

    def teardown(self) -> None:
        if not hasattr(self, "primary"):
            return
        fresh = self.p.replica()
        fresh.apply([EdgeDelta.from_bytes(d.to_bytes()) for d in self.log])
        assert fresh.stats()["distance_computations"] == 0
        queries = list(self.vectors.values())[:4] or [[1.0] * self.p.dim]
        assert_replica_equal(self.primary, fresh, queries)


TestReplicatedIndex = ReplicatedIndex.TestCase
TestReplicatedIndex.settings = settings(
    max_examples=scaled_examples(0.7), stateful_step_count=25
)


# --------------------------------------------------------------------------- the check can fail


def _fixed_scenario() -> Scenario:
    base, q = gmm_dataset(80, 3, 6, n_clusters=4, seed=11)
    p = Params(dim=6, metric="l2", R=5, L=10, alpha=1.2, seed=0, capacity=16)
    ops: list[tuple] = [("insert", v.tolist()) for v in base[60:]]
    ops += [("delete", 17), ("delete", 3), ("consolidate",), ("delete", 40)]
    return Scenario(p, base[:60].tolist(), ops, q.tolist())


def _retarget_one_edge(d: EdgeDelta, known: set[int]) -> EdgeDelta:
    """The same delta with one neighbour of its first full list replaced by another
    known id (still a valid list: sorted, no repeat, no self loop, <= R)."""
    pos = 0
    for rec, (kind, (a, b)) in enumerate(zip(d.kinds, d.counts, strict=True)):
        if kind == 1 and a > 0:
            lst = d.values[pos : pos + a]
            me = int(d.ids[rec])
            other = min(known - set(lst.tolist()) - {me})
            new = np.sort(np.concatenate([lst[1:], [other]])).astype(np.int64)
            values = d.values.copy()
            values[pos : pos + a] = new
            return dataclasses.replace(d, values=values, _wire=[])
        pos += a + (b if kind == 2 else 0)
    raise AssertionError("no full list to tamper with")


def test_replay_check_catches_a_lost_delta() -> None:
    sc = _fixed_scenario()
    check_replay_property(sc)  # the honest replica passes
    with pytest.raises(AssertionError, match="digest"):
        check_replay_property(sc, tamper=lambda ds: ds[:-1])  # the last delete never arrived


def test_replay_check_catches_a_tampered_neighbour_list() -> None:
    sc = _fixed_scenario()
    sc.ops = sc.ops[:5]  # build + 5 inserts; the last insert's new list is final

    def tamper(ds: list[EdgeDelta]) -> list[EdgeDelta]:
        known = {int(i) for d in ds for i in d.ids[: d.n_new]}
        bad = _retarget_one_edge(ds[-1], known)
        assert bad != ds[-1]
        return [*ds[:-1], EdgeDelta.from_bytes(bad.to_bytes())]

    with pytest.raises(AssertionError, match="digest"):
        check_replay_property(sc, tamper=tamper)


@given(sc=scenarios(max_ops=12))
@settings(max_examples=scaled_examples(0.3))
def test_replay_check_catches_any_lost_last_delta(sc: Scenario) -> None:
    """For every scenario, dropping the last delta (every delta changes the state)
    is detected by the property check."""
    _, deltas = run_scenario(sc, check=False)
    assume(deltas)
    note(f"last delta: {deltas[-1]!r}")
    with pytest.raises(AssertionError):
        check_replay_property(sc, tamper=lambda ds: ds[:-1])

"""The networkx view of an index, and networkx as an oracle for the index's reachability.

``VamanaIndex.to_networkx`` builds a ``networkx.DiGraph`` in ascending id order. A
breadth-first search over that graph from the entry point (through deleted nodes, as
search walks) must find exactly the live nodes the index's own kernel BFS finds:
``unreachable_count()`` and ``stats()["unreachable"]`` agree with it after builds,
inserts, deletes, consolidations and repairs, and after damage written through
``overwrite_records`` (lists cut so that some nodes lose every path from the entry).
"""

from __future__ import annotations

import doctest

import networkx as nx
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from graphrep.ann import VamanaIndex
from graphrep.ann.records import RecordSet
from graphrep.spec.profiles import scaled_examples

DIM = 4


def unreachable_by_networkx(idx: VamanaIndex) -> int:
    """Live nodes that a BFS over ``idx.to_networkx(include_deleted=True)`` from the
    entry point does not reach."""
    g = idx.to_networkx(include_deleted=True)
    entry = g.graph["entry_id"]
    if entry < 0:
        return 0
    reached = nx.descendants(g, entry) | {entry}
    return sum(1 for v, deleted in g.nodes(data="deleted") if not deleted and v not in reached)


def assert_oracle_agrees(idx: VamanaIndex) -> int:
    """The index's unreachable count, after checking it against the networkx BFS."""
    want = unreachable_by_networkx(idx)
    assert idx.unreachable_count() == want
    assert idx.stats()["unreachable"] == want
    return want


def rewrite_lists(idx: VamanaIndex, lists: dict[int, list[int]]) -> None:
    """Overwrite the lists of the nodes ``lists`` names (flags and vectors kept)."""
    ids = np.array(sorted(lists), dtype=np.int64)
    rs = idx.export_records(ids)
    nb = [sorted(lists[int(i)]) for i in ids]
    idx.overwrite_records(RecordSet(DIM, rs.ids, rs.flags, rs.vectors,
                                    [len(x) for x in nb], [v for x in nb for v in x]))


def cut_in_edges(idx: VamanaIndex, target: int) -> None:
    """Remove every edge to ``target``: it (and what only it leads to) loses its paths."""
    lists = {int(u): idx.neighbors(int(u)).tolist() for u in idx.ids(include_deleted=True)}
    rewrite_lists(idx, {u: [v for v in nb if v != target]
                        for u, nb in lists.items() if target in nb})


def small_index(n: int = 120, seed: int = 5, metric: str = "l2") -> VamanaIndex:
    idx = VamanaIndex(DIM, metric, R=6, L=12)
    idx.build(np.random.default_rng(seed).standard_normal((n, DIM)))
    return idx


# --------------------------------------------------------------------------- the view


def test_nodes_edges_and_attributes_match_the_index() -> None:
    idx = small_index()
    for i in (3, 50, 77):
        idx.delete(i)
    live = idx.to_networkx()
    every = idx.to_networkx(include_deleted=True, vectors=True)
    assert list(live.nodes) == idx.ids().tolist()
    assert list(every.nodes) == idx.ids(include_deleted=True).tolist()
    assert every.graph == {"dim": DIM, "metric": "l2", "R": 6, "seq": idx.seq,
                           "entry_id": idx.entry_id}
    for i, attrs in every.nodes(data=True):
        assert attrs["id"] == i
        assert attrs["deleted"] == idx.is_deleted(i)
        assert np.array_equal(attrs["vector"], idx.vector(i))
        assert list(every.successors(i)) == idx.neighbors(i).tolist()
    assert "vector" not in live.nodes[0]
    assert all(not d for _, d in live.nodes(data="deleted"))
    kept = set(live.nodes)
    for i in live.nodes:  # edges to deleted nodes are left out with them
        assert list(live.successors(i)) == [v for v in idx.neighbors(i).tolist() if v in kept]


def test_nodes_and_edges_come_in_id_order() -> None:
    ids = np.random.default_rng(2).permutation(10_000)[:150] * 3
    idx = VamanaIndex(DIM, R=6, L=12)
    idx.build(np.random.default_rng(7).standard_normal((150, DIM)), ids=ids)
    g = idx.to_networkx()
    assert list(g.nodes) == sorted(g.nodes)
    assert list(g.edges) == sorted(g.edges)
    again = VamanaIndex(DIM, R=6, L=12)
    again.build(np.random.default_rng(7).standard_normal((150, DIM)), ids=ids)
    assert list(again.to_networkx().edges) == list(g.edges)


def test_the_view_is_a_copy() -> None:
    idx = small_index()
    before = idx.digest()
    g = idx.to_networkx(vectors=True)
    g.remove_node(idx.entry_id)
    g.nodes[1]["vector"][:] = 7.0
    assert idx.digest() == before


def test_the_docstring_example_runs() -> None:
    """The example in ``to_networkx``'s docstring (reachability, strongly connected
    components, in-degrees, BFS levels) runs and says what it shows."""
    found = doctest.DocTestFinder().find(VamanaIndex.to_networkx, "to_networkx",
                                         globs={"np": np, "VamanaIndex": VamanaIndex})
    runner = doctest.DocTestRunner()
    for test in found:
        runner.run(test)
    assert runner.summarize(verbose=False).attempted > 5
    assert runner.failures == 0


def test_empty_index() -> None:
    g = VamanaIndex(DIM).to_networkx(include_deleted=True)
    assert g.number_of_nodes() == 0
    assert g.graph["entry_id"] == -1


# --------------------------------------------------------------------------- the oracle


def test_cutting_in_edges_makes_nodes_unreachable_and_both_bfs_see_it() -> None:
    idx = small_index()
    assert assert_oracle_agrees(idx) == 0
    victims = [i for i in idx.ids().tolist() if i != idx.entry_id][:3]
    for v in victims:
        cut_in_edges(idx, v)
    assert assert_oracle_agrees(idx) >= len(victims)
    assert idx.graph_problems() == []
    idx.repair()
    assert assert_oracle_agrees(idx) == 0


def test_muting_the_entry_point_leaves_only_it_reachable() -> None:
    idx = small_index(metric="cosine")
    rewrite_lists(idx, {idx.entry_id: []})
    assert assert_oracle_agrees(idx) == len(idx) - 1


_OPS = st.one_of(
    st.tuples(st.just("insert"), st.integers(1, 15)),
    st.tuples(st.just("delete"), st.integers(0, 10**6)),
    st.tuples(st.just("consolidate")),
    st.tuples(st.just("repair")),
    st.tuples(st.just("cut"), st.integers(0, 10**6)),  # every edge to one node
    st.tuples(st.just("mute"), st.integers(0, 10**6)),  # one node's whole list
)


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 60),
       copies=st.integers(0, 20), metric=st.sampled_from(["l2", "cosine"]),
       R=st.integers(2, 8), ops=st.lists(_OPS, max_size=10))
@settings(max_examples=scaled_examples(2.0), deadline=None)
def test_unreachable_count_agrees_with_networkx(seed, n, copies, metric, R, ops) -> None:
    """After every step of a random history the index's BFS and networkx's agree."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, DIM)) + 0.5  # (no zero vector: cosine refuses it)
    base[: min(copies, n - 1)] = base[-1]  # exact copies of one point
    idx = VamanaIndex(DIM, metric, R=R, L=12, seed=seed)
    idx.build(base)
    assert_oracle_agrees(idx)
    next_id = n
    for op in ops:
        stored = idx.ids(include_deleted=True)
        if op[0] == "insert":
            for v in rng.standard_normal((op[1], DIM)) + 0.5:
                idx.insert(next_id, v)
                next_id += 1
        elif op[0] == "delete" and len(idx):
            idx.delete(int(idx.ids()[op[1] % len(idx)]))
        elif op[0] == "consolidate":
            idx.consolidate()
        elif op[0] == "repair":
            idx.repair()
        elif op[0] == "cut" and stored.size:
            cut_in_edges(idx, int(stored[op[1] % stored.size]))
        elif op[0] == "mute" and stored.size:
            rewrite_lists(idx, {int(stored[op[1] % stored.size]): []})
        assert_oracle_agrees(idx)
        assert idx.graph_problems() == []

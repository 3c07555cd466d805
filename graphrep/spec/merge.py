"""The specification of the ``crdt`` merge: any delivery order gives one state.

A *program* is a list of steps over three regions, each holding a
:class:`~graphrep.ann.pools.PoolGraph`, a log of entry bodies in merge order, a version
vector, a hybrid logical clock and a :class:`~graphrep.protocol.crdt.Collector`, which
tells it what to forget (:class:`Region`):

* ``("write", region, op, id, vector_row)``: a local insert or delete
  (:func:`graphrep.protocol.crdt.write`);
* ``("link", region, i, j)``: a ``LINK`` entry offering the i-th and j-th live
  incarnations the region knows to each other, as a leader does after merging a remote
  insert;
* ``("pull", src, dst)``: ``dst`` merges what ``src`` has that it lacks, in ``src``'s
  log order.

:func:`check` runs a program, takes every entry any region wrote, and merges them into
fresh graphs in two arbitrary orders with duplicates; the digests must equal that of one
order, the lists must be sound, and after every region has pulled from every other, and
again after each has logged a mark (an empty ``LINK`` with its version vector), all
regions must hold that same state, less what they forgot, and must have forgotten every
delete's victims. :func:`merge_property` is the Hypothesis property
over programs and orders; :func:`run_merge_spec` runs it against a graph class (the real
one, or a planted bug of :data:`graphrep.spec.mutants.MERGE_MUTANTS`) and reports.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from graphrep.ann.pools import PoolGraph
from graphrep.errors import InvariantViolation
from graphrep.protocol.crdt import Collector, merge, write
from graphrep.protocol.entries import LINK, decode_entry, encode_entry
from graphrep.protocol.hlc import HLC
from graphrep.spec.profiles import source_free_draws

__all__ = ["DIM", "POOL", "REGIONS", "Region", "check", "merge_property", "run_merge_spec",
           "run_program", "step_strategy"]

REGIONS = 3
DIM = 4
POOL = 6
"""Small pools (R = 4), so that programs of a few dozen steps fill them: the cap is
where order could leak in."""
_VECTORS = np.random.default_rng(5).standard_normal((64, DIM)).astype(np.float32)


class Region:
    """One region's copy, as the protocol keeps it: a graph, a log of entry bodies in
    merge order, the version vector, a clock."""

    def __init__(self, k: int, cls: type[PoolGraph],
                 collector: type[Collector] = Collector) -> None:
        self.k = k
        self.graph = cls(DIM, R=4, L=8, pool=POOL)
        self.log: list[bytes] = []
        self.vv = [0] * REGIONS
        self.hlc = HLC(k)
        self.collector = collector(REGIONS)
        self.forgot: list[tuple[int, int]] = []

    def _collect(self, f: tuple) -> None:
        for i, t in self.collector.merged(f[0], f[1], f[3], f[4], f[2], f[8]):
            self.graph.forget(i, t)
            self.forgot.append((i, t))
        # at once, not in batches as a replica does (the same state either way): an
        # entry that names what was forgotten too early then meets a slot that is gone
        self.graph.compact()

    def write(self, now_ms: int, op: str, id_: int, row: int) -> None:
        ts = self.hlc.tick(now_ms * 1_000_000)
        self.vv[self.k] += 1
        body = write(self.graph, self.k, self.vv[self.k], ts, op, id_,
                     _VECTORS[row].tobytes() if op == "insert" else b"", self.vv)
        self.log.append(body)
        self._collect(decode_entry(body, DIM, REGIONS))

    def link(self, now_ms: int, i: int, j: int) -> None:
        """Offer the i-th and j-th live incarnations to each other; with ``i == j ==
        -1``, a mark (no offers)."""
        g = self.graph
        live = sorted(k for k in g.keys() if g.is_live(*k))  # noqa: SIM118 (a method)
        if i == j == -1:
            a: list = []
            b: list = []
        elif len(live) < 2 or live[i % len(live)] == live[j % len(live)]:
            return
        else:
            x, y = live[i % len(live)], live[j % len(live)]
            a, b = [x, y], [y, x]
        ts = self.hlc.tick(now_ms * 1_000_000)
        self.vv[self.k] += 1
        body = encode_entry(self.k, self.vv[self.k], ts, LINK, 0, b"", a, b, self.vv)
        f = decode_entry(body, DIM, REGIONS)
        merge(self.graph, f)
        self.log.append(body)
        self._collect(f)

    def pull(self, other: Region) -> None:
        """Merge what ``other`` has and this lacks, in ``other``'s log order."""
        for body in other.log:
            f = decode_entry(body, DIM, REGIONS)
            if f[1] == self.vv[f[0]] + 1:
                merge(self.graph, f)
                self.hlc.observe(f[2])
                self.vv[f[0]] += 1
                self.log.append(body)
                self._collect(f)


def run_program(program: Sequence[tuple], cls: type[PoolGraph] = PoolGraph,
                collector: type[Collector] = Collector) -> list[Region]:
    regions = [Region(k, cls, collector) for k in range(REGIONS)]
    for now, step in enumerate(program):
        if step[0] == "write":
            _, k, op, id_, row = step
            regions[k].write(now, op, id_, row)
        elif step[0] == "link":
            _, k, i, j = step
            regions[k].link(now, i, j)
        else:
            _, src, dst = step
            if src != dst:
                regions[dst].pull(regions[src])
    return regions


def _merged(bodies: Sequence[bytes], cls: type[PoolGraph]) -> PoolGraph:
    g = cls(DIM, R=4, L=8, pool=POOL)
    for body in bodies:
        merge(g, decode_entry(body, DIM, REGIONS))
    return g


def check(program: Sequence[tuple], order_a: Sequence[int], order_b: Sequence[int],
          cls: type[PoolGraph] = PoolGraph, collector: type[Collector] = Collector) -> None:
    """Raise :class:`InvariantViolation` unless every delivery order of the program's
    entries (``order_a``, ``order_b``: indexes into them, then all of them again) gives
    the state of one order, with sound lists, and regions that exchanged everything
    hold it, less what they forgot, and forget every delete's victims once each has
    logged a mark."""
    regions = run_program(program, cls, collector)
    bodies = sorted({b for r in regions for b in r.log})
    if not bodies:
        return
    one = _merged(bodies, cls)
    for order in (order_a, order_b):
        g = _merged([bodies[i % len(bodies)] for i in order] + bodies, cls)
        if g.pending:
            raise InvariantViolation("merge_complete", f"{g.pending} offers still wait "
                                     "after every entry was merged")
        if g.digest() != one.digest():
            raise InvariantViolation("merge_order_free", "two delivery orders of the same "
                                     "entries gave different graphs")
    problems = one.graph_problems()
    if problems:
        raise InvariantViolation("merge_graph_health", "; ".join(problems[:3]))
    _exchange(regions)
    _agree(regions, cls)
    for r in regions:  # a mark each: every region says what it has merged
        r.link(len(program), -1, -1)
    _exchange(regions)
    _agree(regions, cls)
    for r in regions:
        left = r.collector.killers_waiting(r.graph.holds_past)
        garbage = r.graph.garbage()
        if left or garbage["tombstones"] or garbage["dead"]:
            raise InvariantViolation("merge_collects", f"region {r.k} still holds "
                                     f"{len(left)} deletes or updates uncollected "
                                     f"({garbage['tombstones']} tombstones, "
                                     f"{garbage['dead']} dead incarnations) after every "
                                     "region said it merged them")


def _exchange(regions: Sequence[Region]) -> None:
    for _ in range(2):  # two rounds of pulls between every pair: everyone has everything
        for a in regions:
            for b in regions:
                if a is not b:
                    a.pull(b)


def _agree(regions: Sequence[Region], cls: type[PoolGraph]) -> None:
    """The regions hold one state: the merge of every entry they hold, less what a region
    forgot (the same for each)."""
    bodies = sorted({b for r in regions for b in r.log})
    want = _merged(bodies, cls)
    for i, t in regions[0].forgot:
        want.forget(i, t)
    if want.pending or {r.graph.digest() for r in regions} != {want.digest()}:
        raise InvariantViolation("merge_regions_agree", "regions that pulled everything "
                                 "from each other hold different graphs (or not the merge "
                                 "of every entry less what they forgot)")


def step_strategy() -> st.SearchStrategy:
    """One step of a program (writes, links, pulls)."""
    write_step = st.tuples(st.just("write"), st.integers(0, REGIONS - 1),
                           st.sampled_from(["insert", "insert", "insert", "delete"]),
                           st.integers(0, 23), st.integers(0, 63))
    return st.one_of(
        write_step, write_step,
        st.tuples(st.just("pull"), st.integers(0, REGIONS - 1), st.integers(0, REGIONS - 1)),
        st.tuples(st.just("link"), st.integers(0, REGIONS - 1), st.integers(0, 63),
                  st.integers(0, 63)),
    )


def merge_property(cls: type[PoolGraph] = PoolGraph, record: list | None = None,
                   collector: type[Collector] = Collector) -> Callable[..., None]:
    """The Hypothesis property (programs of up to 60 steps, two orders of up to 80
    deliveries) against ``cls``; ``record`` collects the failing examples."""
    orders = st.lists(st.integers(0, 10**6), min_size=10, max_size=80)

    @given(st.lists(step_strategy(), min_size=10, max_size=60), orders, orders)
    def prop(program: list, a: list, b: list) -> None:
        try:
            check(program, a, b, cls, collector)
        except InvariantViolation:
            if record is not None:
                record.append((program, a, b))
            raise

    return prop


def run_merge_spec(cls: type[PoolGraph] = PoolGraph, max_examples: int = 150,
                   collector: type[Collector] = Collector, shrink: bool = True
                   ) -> dict[str, Any]:
    """Run :func:`merge_property` against ``cls``, derandomized (the same examples in
    every process: :func:`~.profiles.source_free_draws`); a JSON-able report:
    ``passed``, the ``invariant`` broken, the shortest failing program found
    (``steps``) and its two delivery orders (``orders``: :func:`check` of the three
    breaks the same invariant). ``shrink=False`` reports the first failing example as
    found (Hypothesis's shrinking takes most of a failing run's time)."""
    failing: list = []
    prop = merge_property(cls, failing, collector)
    run = settings(max_examples=max_examples, derandomize=True, database=None,
                   deadline=None, suppress_health_check=list(HealthCheck),
                   report_multiple_bugs=False,
                   phases=[Phase.generate, Phase.shrink] if shrink else [Phase.generate]
                   )(prop)
    try:
        with source_free_draws():
            run()
    except InvariantViolation as exc:
        program, a, b = min(failing, key=lambda f: len(f[0]))
        return {"passed": False, "invariant": exc.invariant, "detail": str(exc)[:300],
                "steps": [list(s) for s in program], "orders": [list(a), list(b)]}
    return {"passed": True, "invariant": None, "detail": "", "steps": [], "orders": []}

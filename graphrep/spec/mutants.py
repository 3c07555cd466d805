"""Planted bugs: deliberately broken variants of the protocol the specification must catch.

Each :class:`Mutant` is a replica with one seam replaced (a collaborator class of
:class:`~graphrep.protocol.seams.Seams` that breaks one rule, in the public method where
that rule lives) or a placement function:

==========================  ============  ==========================================
mutant                      seam          what it replaces
==========================  ============  ==========================================
ack-before-sync             log           ``Log.durable_end``
majority-one-ack-early      tracker       ``Tracker.quorum_end``
apply-out-of-order          log           ``Log.anchor`` (gaps)
no-conflict-check           log           ``Log.anchor`` (conflicts)
no-retransmit               progress      ``Progress.rewind``
accept-stale-term           terms         ``Terms.admits``
anti-entropy-wrong-range    anti_entropy  ``AntiEntropy.differing_leaves``
merge-repruned-lists        log           ``Log.accept`` (a follower's copy)
snapshot-without-tail       snapshots     ``Snapshots.installed_end``
search-ignores-token        clients       ``Clients.can_answer``
placement-ignores-regions   (placer)      the placement function
==========================  ============  ==========================================

The ``crdt`` merge has planted bugs of its own (:data:`MERGE_MUTANTS`): graph classes
that break the order-freedom of the merge, and collectors that forget what an entry
still on its way names or keep what no entry can name any more, caught by the merge
specification (:mod:`graphrep.spec.merge`):

===================================  ==============================================
mutant                               what it breaks
===================================  ==============================================
crdt-cap-by-arrival                  a full pool keeps what came first
crdt-tombstone-loses-to-older-write  a late older insert outlives a delete
crdt-prune-in-arrival-order          lists pruned from the pool in arrival order
crdt-forgets-before-the-cut          the dead forgotten once one region passed them
crdt-keeps-what-updates-killed       an update's victims never forgotten
===================================  ==============================================

and one of a whole active-active run (:data:`ACTIVE_MUTANTS`), caught by the run's
residency check: ``crdt-ships-outside-residency`` (the shard's groups configured with
every region, so entries reach a region the shard is not allowed in).

No mutant overrides a private method of the replica, so a refactoring of the replica
that keeps the seams keeps every mutant armed. The replica is built as
``Replica(name, disk, config, rng, seams=mutant.seams)`` (``Mutant.replica`` is that
factory). They exist for tests and for ``graphrep mutants``, which runs the
specification against each and reports whether it was caught, by which invariant, after
how many examples, and the shrunk failing steps. No user-facing option selects them.

A specification that passes on a mutant is too weak: the test suite asserts that every
mutant here is caught (tests/spec/test_mutants.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from graphrep.ann import EdgeDelta
from graphrep.ann.delta import KIND_DIFF
from graphrep.ann.pools import PoolGraph, _prune_from
from graphrep.errors import InvalidArgument
from graphrep.protocol.antientropy import AntiEntropy
from graphrep.protocol.clients import Clients
from graphrep.protocol.crdt import Collector
from graphrep.protocol.entries import INSERT, LINK
from graphrep.protocol.log import CONFLICT, Log
from graphrep.protocol.messages import DELTA, Entry
from graphrep.protocol.placement import ShardPlacement
from graphrep.protocol.progress import Progress, Tracker
from graphrep.protocol.replica import Replica
from graphrep.protocol.seams import Seams
from graphrep.protocol.snapshots import Snapshots
from graphrep.protocol.terms import Terms

__all__ = ["ACTIVE_MUTANTS", "MERGE_MUTANTS", "MUTANTS", "MergeMutant", "Mutant",
           "run_active_mutant", "run_merge_mutant", "run_mutant"]


# ---------------------------------------------------------------------- the planted bugs

class AckBeforeSync(Log):
    """Counts appended log records as durable before they are synced (under
    ``sync="tick"`` a write is acknowledged, and a follower's copy counted, too early)."""

    def durable_end(self) -> int:
        return self.end


class CountMajorityEarly(Tracker):
    """Counts a write as acknowledged by a majority one acknowledgement too early."""

    def quorum_end(self, own: int) -> int:
        return self.durable_ends(own)[max(self.majority - 2, 0)]


class ApplyOutOfOrder(Log):
    """Skips gap detection: an append that overtook a missing range is appended at the
    end of the follower's log, out of order, instead of waiting for the gap to fill."""

    def anchor(self, prev_end: int, prev_term: int, count: int) -> int:
        if prev_end > self.end and count:
            return self.end
        return super().anchor(prev_end, prev_term, count)


class NoConflictCheck(Log):
    """Accepts a leader's entries without checking that the entry before them matches
    (the previous term), so a deposed leader's leftovers stay in the log."""

    def anchor(self, prev_end: int, prev_term: int, count: int) -> int:
        at = super().anchor(prev_end, prev_term, count)
        return prev_end if at == CONFLICT else at


class NoRetransmit(Progress):
    """Never sends a log entry twice: a lost append is never repaired."""

    __slots__ = ()

    def rewind(self, to: int) -> None:
        pass  # ``next`` never goes back


class AcceptStaleTerm(Terms):
    """Follows a leader of an older term (goes back to its term) instead of refusing it:
    a deposed leader's late appends are accepted, so terms no longer fence it."""

    def admits(self, term: int) -> bool:
        if term < self.term:
            self.term = term
            self.voted_for = None
        return True


class AntiEntropyWrongRange(AntiEntropy):
    """Anti-entropy ships the records of the leaf next to each differing one: an
    off-by-one in the compared range, so a damaged replica is never repaired."""

    @staticmethod
    def differing_leaves(mine: list[bytes], theirs: list[bytes]) -> list[int]:
        n = len(mine)
        return sorted({(i + 1) % n for i, (a, b) in enumerate(zip(mine, theirs, strict=True))
                       if a != b})


class MergeRePrunedLists(Log):
    """Applies a re-pruned neighbour list incrementally: a diff's added neighbours are
    merged in, but the pruned ones are kept (the leader's list replaced, not merged, is
    what makes a replica equal to it)."""

    def accept(self, start: int, entries: Sequence[Entry], out: list,
               truncate: Callable[[int, list], None]) -> None:
        kept = [(t, k, _keep_pruned(b)) if k == DELTA else (t, k, b) for t, k, b in entries]
        super().accept(start, kept, out, truncate)


def _keep_pruned(body: bytes) -> bytes:
    d = EdgeDelta.from_bytes(body)
    if not (d.kinds == KIND_DIFF).any():
        return body
    counts = d.counts.copy()
    keep = np.ones(d.values.shape[0], dtype=bool)
    pos = 0
    for i in range(d.n_records):
        a, b = int(d.counts[i, 0]), int(d.counts[i, 1])
        if d.kinds[i] == KIND_DIFF:
            keep[pos : pos + a] = False  # drop the "removed" part: nothing gets pruned
            counts[i, 0] = 0
            pos += a + b
        elif d.kinds[i] != 0:
            pos += a
    changed = EdgeDelta(d.seq, d.op, d.dim, d.entry, d.ids, d.flags, d.kinds, counts,
                        d.values[keep], d.vectors, d.removed)
    return changed.to_bytes()


class SnapshotWithoutTail(Snapshots):
    """After a follower installs a snapshot, the leader assumes it holds the whole log
    (it never sends the tail appended after the snapshot)."""

    def installed_end(self, end: int) -> int:
        return self.r.log.end


class SearchIgnoresToken(Clients):
    """Answers a search from whatever it has applied, ignoring the session token."""

    def can_answer(self, min_seq: int) -> bool:
        return True


def placement_ignoring_regions(nodes: Mapping[str, str], shards: Mapping[int, Sequence[str]],
                               replication: int = 3) -> list[ShardPlacement]:
    """Places every shard on the last ``replication`` nodes by name, whatever their
    region (a placement that forgot the residency rule)."""
    names = sorted(nodes)[-replication:]
    return [ShardPlacement(s, tuple(sorted(set(shards[s]))), tuple(names))
            for s in sorted(shards)]


# ---------------------------------------------------------------------- the registry

@dataclass(frozen=True)
class Mutant:
    """A planted bug: ``seams`` (a replica with one seam replaced) and ``replica``, the
    factory that builds it (``Replica(..., seams=seams)``); or ``placer``."""

    name: str
    description: str
    replica: Callable[..., Replica] | None = None
    placer: Any = None
    seams: Seams | None = None


def _mutant(name: str, **seam: type) -> Mutant:
    """The mutant replacing one seam (``log=AckBeforeSync``, say), described by the
    replacing class's docstring. Its factory carries the class's name, which the
    specification names its state machine after (and derives its examples from)."""
    ((_, cls),) = seam.items()
    seams = Seams(**seam)
    build = partial(Replica, seams=seams)
    build.__name__ = cls.__name__  # type: ignore[attr-defined]
    return Mutant(name, " ".join((cls.__doc__ or "").split()), replica=build, seams=seams)


MUTANTS: dict[str, Mutant] = {m.name: m for m in (
    _mutant("ack-before-sync", log=AckBeforeSync),
    _mutant("majority-one-ack-early", tracker=CountMajorityEarly),
    _mutant("apply-out-of-order", log=ApplyOutOfOrder),
    _mutant("no-conflict-check", log=NoConflictCheck),
    _mutant("no-retransmit", progress=NoRetransmit),
    _mutant("accept-stale-term", terms=AcceptStaleTerm),
    _mutant("anti-entropy-wrong-range", anti_entropy=AntiEntropyWrongRange),
    _mutant("merge-repruned-lists", log=MergeRePrunedLists),
    _mutant("snapshot-without-tail", snapshots=SnapshotWithoutTail),
    _mutant("search-ignores-token", clients=SearchIgnoresToken),
    Mutant("placement-ignores-regions", " ".join(
        (placement_ignoring_regions.__doc__ or "").split()), placer=placement_ignoring_regions),
)}


def run_mutant(name: str, max_examples: int | None = None, steps: int = 50,
               policy: str = "leader") -> dict[str, Any]:
    """Run the specification against one mutant; a JSON-able report. The budget is
    eight times the loaded profile's ``max_examples`` (400 under ``ci``) unless given:
    a bug that needs a failover with writes on both sides, or a damaged replica and
    then anti-entropy, takes 60-180 examples. (The run is derandomized and draws no
    constant from the project's source, :func:`~.profiles.source_free_draws`, so the
    same examples come in any process; the margin is for edits to the specification,
    which change them.) A caught mutant stops at its first failure, so only a survivor
    costs the whole budget."""
    from hypothesis import settings

    from graphrep.spec.machine import run_spec

    m = MUTANTS.get(name)
    if m is None:
        raise InvalidArgument(f"unknown mutant {name!r}; choose from {', '.join(MUTANTS)}")
    if max_examples is not None and (type(max_examples) is not int or max_examples < 1):
        raise InvalidArgument(f"max_examples must be an int >= 1 (or None: eight times the "
                              f"profile's), got {max_examples!r}")
    if type(steps) is not int or steps < 1:
        raise InvalidArgument(f"steps must be an int >= 1, got {steps!r}")
    budget = max_examples or 8 * settings.default.max_examples
    report = run_spec(policy, replica=m.replica, placer=m.placer, max_examples=budget,
                      steps=steps)
    return {"mutant": name, "description": m.description, "caught": not report.passed,
            "invariant": report.invariant, "examples_to_failure": report.examples_to_failure,
            "examples": report.examples, "shrunk_steps": [repr(s) for s in report.steps],
            "steps_json": [s.to_json() for s in report.steps],
            "detail": report.detail, "seed": report.config.get("seed"),
            "sync": report.config.get("replica_settings", {}).get("sync")}


# ---------------------------------------------------------------------- the crdt merge
# Planted bugs in the graph whose merge must be order-free (graphrep.ann.pools): each is a
# PoolGraph subclass, and the merge specification (graphrep.spec.merge) must catch it.


class CapByArrival(PoolGraph):
    """A full candidate pool refuses newcomers, however close: the cap keeps whatever
    came first, so the pool depends on the arrival order."""

    def _offer_slots(self, ts: np.ndarray, cs: np.ndarray) -> None:
        room = self.pn[ts] < self.pool
        super()._offer_slots(np.ascontiguousarray(ts[room]), np.ascontiguousarray(cs[room]))


class TombstoneLosesToAnOlderWrite(PoolGraph):
    """An incarnation that arrives after a tombstone lives, whatever its timestamp: the
    delete loses to an older write that happens to arrive later."""

    def add(self, id_: int, version: int, vector: Any) -> bool:
        self._tomb.pop(int(id_), None)
        return super().add(id_, version, vector)


class PruneInArrivalOrder(PoolGraph):
    """A list is pruned from the pool taken in arrival order (slot order) instead of the
    canonical (distance, id, version) order."""

    def _offer_slots(self, ts: np.ndarray, cs: np.ndarray) -> None:
        super()._offer_slots(ts, cs)
        for t in sorted(set(ts.tolist())):
            n = int(self.pn[t])
            order = np.argsort(self.ps[t, :n], kind="stable")
            self.ps[t, :n] = self.ps[t, :n][order]
            self.pd[t, :n] = self.pd[t, :n][order]
            _prune_from(t, 0, 0, self.vecs, self.alive, self.ps, self.pd, self.pn, self.nbrs,
                        self.deg, self.kd, self.R, self.alpha, self.counters)


class CutAtOneRegion(Collector):
    """A killed incarnation is forgotten once any one other region has said it merged
    the write that killed it, not every region: an entry still on its way from a third
    region may name what was forgotten."""

    def cut(self, origin: int) -> int:
        n = len(self.heard)
        return max((self.heard[q][origin] for q in range(n) if q != origin),
                   default=1 << 62)


class KeepsWhatUpdatesKilled(Collector):
    """Only deletes wait for the cut: the older incarnation an update (an insert of an id
    already here) killed is never forgotten, and its vector, pool and list are held for
    ever."""

    def merged(self, origin: int, seq: int, kind: int, id_: int, ts: int,
               vv: list[int] | tuple[int, ...]) -> list[tuple[int, int]]:
        return super().merged(origin, seq, LINK if kind == INSERT else kind, id_, ts, vv)


@dataclass(frozen=True)
class MergeMutant:
    """A planted bug in the crdt merge: a graph class that breaks one of its rules, or a
    collector that forgets too early."""

    name: str
    description: str
    graph: type[PoolGraph]
    collector: type[Collector] = Collector


MERGE_MUTANTS: dict[str, MergeMutant] = {m.name: m for m in (
    MergeMutant(name, " ".join((cls.__doc__ or "").split()),
                cls if issubclass(cls, PoolGraph) else PoolGraph,
                cls if issubclass(cls, Collector) else Collector) for name, cls in (
        ("crdt-cap-by-arrival", CapByArrival),
        ("crdt-tombstone-loses-to-older-write", TombstoneLosesToAnOlderWrite),
        ("crdt-prune-in-arrival-order", PruneInArrivalOrder),
        ("crdt-forgets-before-the-cut", CutAtOneRegion),
        ("crdt-keeps-what-updates-killed", KeepsWhatUpdatesKilled),
    ))}


def run_merge_mutant(name: str, max_examples: int = 150, shrink: bool = True
                     ) -> dict[str, Any]:
    """Run the merge specification (:func:`graphrep.spec.merge.run_merge_spec`) against
    one planted bug of :data:`MERGE_MUTANTS`; a JSON-able report like
    :func:`run_mutant`'s, with the failing program (``steps_json``) and its delivery
    orders (``orders``) to replay with :func:`graphrep.spec.merge.check`.
    ``shrink=False``: the first failing program as found."""
    from graphrep.spec.merge import run_merge_spec

    m = MERGE_MUTANTS.get(name)
    if m is None:
        raise InvalidArgument(f"unknown merge mutant {name!r}; choose from "
                              f"{', '.join(MERGE_MUTANTS)}")
    r = run_merge_spec(m.graph, max_examples, m.collector, shrink=shrink)
    return {"mutant": name, "description": m.description, "caught": not r["passed"],
            "invariant": r["invariant"], "detail": r["detail"],
            "shrunk_steps": [repr(tuple(s)) for s in r["steps"]],
            "steps_json": r["steps"], "orders": r["orders"]}


# ---------------------------------------------------------------------- active-active runs
# Planted bugs of a whole active-active run (graphrep.cluster.active), caught by the
# run's own checks.


def _ships_outside_residency() -> Any:
    from dataclasses import replace

    from graphrep.cluster.active import ActiveConfig

    class ShipsOutsideResidency(ActiveConfig):
        """The shard's groups are configured with every region, ignoring the regions
        the shard is allowed in: entries are shipped to a disallowed region."""

        def replica_configs(self) -> dict:
            return ActiveConfig.replica_configs(replace(self, allowed=()))

    return ShipsOutsideResidency


ACTIVE_MUTANTS: dict[str, Callable[[], Any]] = {
    "crdt-ships-outside-residency": _ships_outside_residency,
}
"""Name -> a factory of the broken :class:`~graphrep.cluster.active.ActiveConfig`
subclass."""


def run_active_mutant(name: str) -> dict[str, Any]:
    """Run an active-active run (three regions, the shard allowed in ``eu`` and ``us``
    only, a region partition) with the planted bug ``name``; caught when the run's
    residency check sees writes of other regions in ``ap``."""
    from graphrep.cluster.active import run_active

    make = ACTIVE_MUTANTS.get(name)
    if make is None:
        raise InvalidArgument(f"unknown active-active mutant {name!r}; choose from "
                              f"{', '.join(ACTIVE_MUTANTS)}")
    cls = make()
    s = run_active(cls(allowed=("eu", "us"), writes=60, queries=20,
                       nemesis="region-partition"))
    caught = s["residency_violations"] > 0
    return {"mutant": name, "description": " ".join((cls.__doc__ or "").split()),
            "caught": caught, "invariant": "residency" if caught else None,
            "detail": f"{s['residency_violations']} writes of eu and us held in ap",
            "shrunk_steps": []}

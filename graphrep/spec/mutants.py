"""Planted bugs: deliberately broken variants of the protocol the specification must catch.

Each :class:`Mutant` is a replica class (a subclass of
:class:`~graphrep.protocol.replica.Replica` that breaks one rule) or a placement
function. They exist for tests and for ``graphrep mutants``, which runs the
specification against each and reports whether it was caught, by which invariant, after
how many examples, and the shrunk failing steps. No user-facing option selects them.

A specification that passes on a mutant is too weak: the test suite asserts that every
mutant here is caught (tests/spec/test_mutants.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphrep.ann import EdgeDelta
from graphrep.ann.delta import KIND_DIFF
from graphrep.errors import InvalidArgument
from graphrep.protocol.messages import DELTA, Append
from graphrep.protocol.placement import ShardPlacement
from graphrep.protocol.replica import Replica

__all__ = ["MUTANTS", "Mutant", "run_mutant"]


# ---------------------------------------------------------------------- the planted bugs

class AckBeforeSync(Replica):
    """Counts appended log records as durable before they are synced (under
    ``sync="tick"`` a write is acknowledged, and a follower's copy counted, too early)."""

    def _durable_end(self) -> int:
        return self.end


class CountMajorityEarly(Replica):
    """Counts a write as acknowledged by a majority one acknowledgement too early."""

    def _quorum_end(self) -> int:
        return self._durable_ends()[max(self.majority - 2, 0)]


class ApplyOutOfOrder(Replica):
    """Skips gap detection: an append that overtook a missing range is appended at the
    end of the follower's log, out of order, instead of waiting for the gap to fill."""

    def _on_append(self, now: int, src: str, m: Append, out: list) -> None:
        if m.prev_end > self.end and m.entries and m.term >= self.term:
            m = m._replace(prev_end=self.end, prev_term=self.term_at(self.end - 1) or 0)
        super()._on_append(now, src, m, out)


class NoConflictCheck(Replica):
    """Accepts a leader's entries without checking that the entry before them matches
    (the previous term), so a deposed leader's leftovers stay in the log."""

    def _on_append(self, now: int, src: str, m: Append, out: list) -> None:
        if m.prev_end <= self.end:
            mine = self.term_at(m.prev_end - 1)
            if mine is not None:
                m = m._replace(prev_term=mine)
        super()._on_append(now, src, m, out)


class NoRetransmit(Replica):
    """Never sends a log entry twice: a lost append is never repaired."""

    def _send_append(self, peer: str, out: list, heartbeat: bool = False) -> None:
        sent = getattr(self, "_sent", None)
        if sent is None:
            sent = self._sent = {}
        key = (peer, self.term)
        if peer in self.next:
            self.next[peer] = max(self.next[peer], sent.get(key, 0))
        super()._send_append(peer, out, heartbeat)
        if peer in self.next:
            sent[key] = max(sent.get(key, 0), self.next[peer])


class AcceptStaleTerm(Replica):
    """Follows a leader of an older term (goes back to its term) instead of refusing it:
    a deposed leader's late appends are accepted, so terms no longer fence it."""

    def _hear_leader(self, now: int, src: str, term: int, out: list) -> bool:
        if term < self.term:
            self.term = term
            self.voted_for = None
            self._become_follower()
        return super()._hear_leader(now, src, term, out)


class AntiEntropyWrongRange(Replica):
    """Anti-entropy ships the records of the leaf next to each differing one: an
    off-by-one in the compared range, so a damaged replica is never repaired."""

    @staticmethod
    def _differing_leaves(mine: list[bytes], theirs: list[bytes]) -> list[int]:
        n = len(mine)
        return sorted({(i + 1) % n for i, (a, b) in enumerate(zip(mine, theirs, strict=True))
                       if a != b})


class MergeRePrunedLists(Replica):
    """Applies a re-pruned neighbour list incrementally: a diff's added neighbours are
    merged in, but the pruned ones are kept (the leader's list replaced, not merged, is
    what makes a replica equal to it)."""

    def _append_local(self, entry: Any, out: list) -> int:
        term, kind, body = entry
        if kind == DELTA and self.role != "leader":
            entry = (term, kind, _keep_pruned(body))
        return super()._append_local(entry, out)


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


class SnapshotWithoutTail(Replica):
    """After a follower installs a snapshot, the leader assumes it holds the whole log
    (it never sends the tail appended after the snapshot)."""

    def _on_snapshot_reply(self, now: int, src: str, m: Any, out: list) -> None:
        done = (self.role == "leader" and m.term == self.term and src in self.match
                and self.snap is not None and m.end == self.snap[0]
                and m.offset >= len(self.snap[2]))
        if done:
            self.match[src] = self.next[src] = self.end
        super()._on_snapshot_reply(now, src, m, out)


class SearchIgnoresToken(Replica):
    """Answers a search from whatever it has applied, ignoring the session token."""

    def _on_search(self, now: int, src: str, m: Any, out: list) -> None:
        super()._on_search(now, src, m._replace(min_seq=0), out)


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
    name: str
    description: str
    replica: type[Replica] | None = None
    placer: Any = None


def _mutant(name: str, cls: type[Replica]) -> Mutant:
    return Mutant(name, " ".join((cls.__doc__ or "").split()), replica=cls)


MUTANTS: dict[str, Mutant] = {m.name: m for m in (
    _mutant("ack-before-sync", AckBeforeSync),
    _mutant("majority-one-ack-early", CountMajorityEarly),
    _mutant("apply-out-of-order", ApplyOutOfOrder),
    _mutant("no-conflict-check", NoConflictCheck),
    _mutant("no-retransmit", NoRetransmit),
    _mutant("accept-stale-term", AcceptStaleTerm),
    _mutant("anti-entropy-wrong-range", AntiEntropyWrongRange),
    _mutant("merge-repruned-lists", MergeRePrunedLists),
    _mutant("snapshot-without-tail", SnapshotWithoutTail),
    _mutant("search-ignores-token", SearchIgnoresToken),
    Mutant("placement-ignores-regions", " ".join(
        (placement_ignoring_regions.__doc__ or "").split()), placer=placement_ignoring_regions),
)}


def run_mutant(name: str, max_examples: int | None = None, steps: int = 50,
               policy: str = "leader") -> dict[str, Any]:
    """Run the specification against one mutant; a JSON-able report. The budget is
    four times the loaded profile's ``max_examples`` (200 under ``ci``) unless given:
    a bug that needs a failover with writes on both sides takes 60-90 examples."""
    from hypothesis import settings

    from graphrep.spec.machine import run_spec

    m = MUTANTS.get(name)
    if m is None:
        raise InvalidArgument(f"unknown mutant {name!r}; choose from {', '.join(MUTANTS)}")
    if max_examples is not None and (type(max_examples) is not int or max_examples < 1):
        raise InvalidArgument(f"max_examples must be an int >= 1 (or None: four times the "
                              f"profile's), got {max_examples!r}")
    if type(steps) is not int or steps < 1:
        raise InvalidArgument(f"steps must be an int >= 1, got {steps!r}")
    budget = max_examples or 4 * settings.default.max_examples
    report = run_spec(policy, replica=m.replica, placer=m.placer, max_examples=budget,
                      steps=steps)
    return {"mutant": name, "description": m.description, "caught": not report.passed,
            "invariant": report.invariant, "examples_to_failure": report.examples_to_failure,
            "examples": report.examples, "shrunk_steps": [repr(s) for s in report.steps],
            "steps_json": [s.to_json() for s in report.steps],
            "detail": report.detail, "seed": report.config.get("seed"),
            "sync": report.config.get("replica_settings", {}).get("sync")}

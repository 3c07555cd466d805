"""A grow-only counter (G-counter CRDT), in the spirit of Maelstrom's g-counter workload.

Clients ``add`` positive deltas at any node and ``read`` the total. Each node keeps one
count per node (the adds it took itself in its own slot); the value is their sum, and
two states merge by taking the maximum slot by slot, which is commutative, associative
and idempotent, so gossip may be lost, duplicated or reordered freely. The protocol:

* on ``add`` the node bumps its own slot, writes its counts (and the ids of the adds it
  applied), **syncs, then** acknowledges. The network may duplicate a request, so an add
  is applied once per ``(client, msg_id)``; an add is never retried by the client
  (a retry of an add that did land would count twice);
* every ``gossip_ns`` a node sends its whole state to each peer not known to have it
  already (the last state received from a peer is a lower bound of the peer's, since a
  correct node's state only grows and is synced before it is sent on); a receiver merges
  by max and syncs what changed;
* ``read`` returns the sum.

Planted bugs (``bug=``):

``"merge_sum"``
    Merging adds the peer's slots to one's own instead of taking the maximum: every
    gossip round counts everything again. Fails with no faults at all (a schedule of
    zero faults is the minimal example).
``"memory_only"``
    Counts live only in memory: a crash resets the node to zero. Peers restore what they
    had heard of it, but adds it acknowledged and had not gossiped yet are gone, and adds
    it takes after a restart, before hearing from a peer, are overwritten by the peers'
    larger (older) count for its slot. Needs one crash.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from graphrep.sansio import DurableWrite, Effects, Send, Sync
from graphrep.sim.examples.harness import Example, GossipNode, body_size, exponential_plan

if TYPE_CHECKING:
    from graphrep.sim.examples.harness import Op, PlannedOp

__all__ = ["COUNTER", "CounterNode", "check_counter", "counter_plan", "run_counter",
           "simulate_counter"]

READ_FRACTION = 0.2
MAX_DELTA = 5


def _dominates(a: Mapping[str, int], b: Mapping[str, int]) -> bool:
    """Whether state ``a`` has at least every count of state ``b``."""
    return all(a.get(k, 0) >= v for k, v in b.items())


class CounterNode(GossipNode):
    """One G-counter server (see the module docstring for the protocol and its bugs)."""

    EXAMPLE = "counter"
    BUGS = ("merge_sum", "memory_only")

    def restore(self, disk: Mapping[Hashable, Any]) -> None:
        self.counts: dict[str, int] = dict(disk.get("counts", ()))
        self.applied: set[tuple[str, int]] = set(disk.get("applied", ()))
        self.known: dict[str, dict[str, int]] = {}  # volatile: last state heard from a peer

    @property
    def value(self) -> int:
        """The counter's value as this node sees it."""
        return sum(self.counts.values())

    def _persist(self, applied: bool) -> list:
        if self.bug == "memory_only":
            return []  # BUG: nothing reaches the disk
        effects: list = [DurableWrite("counts", tuple(sorted(self.counts.items())))]
        if applied:
            effects.append(DurableWrite("applied", tuple(sorted(self.applied))))
        effects.append(Sync())
        return effects

    def on_message(self, now: int, src: str, payload: Any, size: int) -> Effects:
        kind = payload["type"]
        if kind == "add":
            key = (src, payload["msg_id"])
            effects: list = []
            if key not in self.applied:  # a duplicated request is acknowledged, not re-added
                self.applied.add(key)
                self.counts[self.name] = self.counts.get(self.name, 0) + payload["delta"]
                effects = self._persist(applied=True)
            reply = {"type": "add_ok", "in_reply_to": payload["msg_id"]}
            effects.append(Send(src, reply, body_size(reply)))
            return effects
        if kind == "read":
            reply = {"type": "read_ok", "in_reply_to": payload["msg_id"], "value": self.value}
            return [Send(src, reply, body_size(reply))]
        if kind == "state":
            theirs = dict(payload["counts"])
            self.known[src] = theirs  # replace, not merge: a lower bound of theirs right now
            changed = False
            for k, v in payload["counts"]:
                mine = self.counts.get(k, 0)
                if self.bug == "merge_sum":
                    if v:
                        self.counts[k] = mine + v  # BUG: counts the same adds again
                        changed = True
                elif v > mine:
                    self.counts[k] = v
                    changed = True
            return self._persist(applied=False) if changed else None
        return None

    def on_timer(self, now: int, name: Hashable) -> Effects:
        body = {"type": "state", "counts": tuple(sorted(self.counts.items()))}
        size = body_size(body) + 8 * len(self.counts)  # a slot is a name and a count
        return [Send(p, body, size) for p in self.peers
                if p not in self.known or not _dominates(self.known[p], self.counts)]


def counter_plan(rng: np.random.Generator, names: list[str],
                 duration_ns: int) -> list[PlannedOp]:
    """Adds of 1..MAX_DELTA with reads mixed in."""
    def draw(rng: np.random.Generator, i: int) -> tuple[str, Any]:
        if rng.random() < READ_FRACTION:
            return "read", None
        return "add", int(rng.integers(1, MAX_DELTA + 1))

    return exponential_plan(rng, names, duration_ns, draw)


def check_counter(ops: Sequence[Op], nodes: Sequence[str]) -> dict[str, Any]:
    """Maelstrom's g-counter checker over a client history.

    An acknowledged add is *definite*; one sent but never acknowledged is *uncertain*
    (it may have landed). Every final read must lie in ``[sum of definite adds, that
    plus the sum of uncertain adds]``, and, the faults being healed and the run settled,
    all final reads must agree. Reads during the run may lag (the counter is only
    eventually consistent) but can never exceed the adds invoked before they returned;
    one that does is reported as ``impossible_reads``.
    """
    adds = [op for op in ops if op.f == "add"]
    definite = [op for op in adds if op.ok]
    uncertain = [op for op in adds if not op.ok]
    lower = sum(op.arg for op in definite)
    upper = lower + sum(op.arg for op in uncertain)
    final: dict[str, int] = {}
    impossible: list[dict[str, Any]] = []
    for op in ops:
        if op.f != "read" or op.result is None:
            continue
        value = op.result["value"]
        if op.final:
            final[op.node] = value
            continue
        bound = sum(a.arg for a in adds if a.invoke_ns <= op.complete_ns)  # type: ignore[operator]
        if not 0 <= value <= bound:
            impossible.append({"node": op.node, "time_ns": op.complete_ns, "value": value,
                               "upper": bound})
    missing_final = [n for n in nodes if n not in final]
    out_of_bounds = {n: v for n, v in final.items() if not lower <= v <= upper}
    converged = not missing_final and len(set(final.values())) == 1
    return {
        "valid": not missing_final and not out_of_bounds and converged and not impossible,
        "adds": len(adds),
        "definite": len(definite),
        "uncertain": len(uncertain),
        "lower": lower,
        "upper": upper,
        "final_reads": {n: final[n] for n in nodes if n in final},
        "out_of_bounds": out_of_bounds,
        "converged": converged,
        "impossible_reads": impossible,
        "missing_final_reads": missing_final,
    }


COUNTER = Example(CounterNode, counter_plan, check_counter)
simulate_counter = COUNTER.simulate
run_counter = COUNTER.run

"""Gossip broadcast, in the spirit of Maelstrom's broadcast workload.

Clients broadcast distinct integers to nodes; every value a node acknowledges must end
up on every node, whatever the network did meanwhile. The protocol:

* on ``broadcast`` a node adds the value, writes its set to disk, **syncs, then**
  acknowledges: an acknowledged value survives a crash of the node that took it;
* every ``gossip_ns`` a node sends each peer the values that peer has not confirmed
  (``gossip``); the peer adds them, syncs, and confirms (``gossip_ok``). Until
  confirmed, a value is sent again on every tick: that retransmission is what carries
  values across loss, partitions and crashes. What a node knows its peers have is
  volatile: after a restart it resends everything once, and peers ignore duplicates;
* ``read`` returns the node's set.

Planted bugs (``bug=``), for tests that must see Hypothesis find and shrink a failure:

``"ack_before_sync"``
    The node acknowledges (to clients, and ``gossip_ok`` to peers) as soon as the value
    is in memory and the write is *buffered*; it syncs on a group commit every
    ``FLUSH_TICKS`` gossip ticks (100 ms). Gossip goes on as usual, so after a crash
    the peers believe the node has values it lost, and never resend them: acknowledged
    values go missing on the crashed node. Needs one crash.
``"no_retransmit"``
    Fire-and-forget flooding: a node sends each value it learns to every peer once, on
    the next tick, and never again. A partition or a crash that swallows the only copies
    sent to a node loses the value there. Needs one partition (or crash).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from graphrep.sansio import DurableWrite, Effects, Send, Sync
from graphrep.sim.examples.harness import Example, GossipNode, body_size, exponential_plan

if TYPE_CHECKING:
    from graphrep.sim.examples.harness import Op, PlannedOp

__all__ = ["BROADCAST", "BroadcastNode", "broadcast_plan", "check_broadcast", "run_broadcast",
           "simulate_broadcast"]

READ_FRACTION = 0.25
FLUSH_TICKS = 5  # ack_before_sync: ticks per group commit


class BroadcastNode(GossipNode):
    """One broadcast server (see the module docstring for the protocol and its bugs)."""

    EXAMPLE = "broadcast"
    BUGS = ("ack_before_sync", "no_retransmit")

    def restore(self, disk: Mapping[Hashable, Any]) -> None:
        self.values: set[int] = set(disk.get("values", ()))
        # volatile: what each peer confirmed (or sent us); lost on a crash, rebuilt by resending
        self.peer_has: dict[str, set[int]] = {p: set() for p in self.peers}
        self.outbox: list[int] = []  # no_retransmit: values to flood once
        self.unsynced = False  # ack_before_sync: buffered writes await the group commit
        self.ticks = 0

    def _learn(self, values: Sequence[int]) -> list:
        """Add ``values``; the effects that make them durable (per the bug) come back."""
        new = [v for v in values if v not in self.values]
        if not new:
            return []
        self.values.update(new)
        if self.bug == "no_retransmit":
            self.outbox.extend(new)
        write = DurableWrite("values", tuple(sorted(self.values)))
        if self.bug == "ack_before_sync":
            self.unsynced = True
            return [write]  # BUG: the acknowledgement that follows precedes the sync
        return [write, Sync()]

    def on_message(self, now: int, src: str, payload: Any, size: int) -> Effects:
        kind = payload["type"]
        if kind == "broadcast":
            effects = self._learn([payload["message"]])
            reply = {"type": "broadcast_ok", "in_reply_to": payload["msg_id"]}
            effects.append(Send(src, reply, body_size(reply)))
            return effects
        if kind == "read":
            reply = {"type": "read_ok", "in_reply_to": payload["msg_id"],
                     "messages": tuple(sorted(self.values))}
            return [Send(src, reply, body_size(reply))]
        if kind == "gossip":
            values = payload["messages"]
            if self.bug == "no_retransmit":
                return self._learn(values)
            self.peer_has[src].update(values)
            effects = self._learn(values)
            reply = {"type": "gossip_ok", "messages": values}
            effects.append(Send(src, reply, body_size(reply)))
            return effects
        if kind == "gossip_ok":
            self.peer_has[src].update(payload["messages"])
        return None

    def on_timer(self, now: int, name: Hashable) -> Effects:
        effects: list = []
        self.ticks += 1
        if self.unsynced and self.ticks % FLUSH_TICKS == 0:
            effects.append(Sync())
            self.unsynced = False
        if self.bug == "no_retransmit":
            if self.outbox:
                body = {"type": "gossip", "messages": tuple(sorted(self.outbox))}
                self.outbox.clear()
                effects += [Send(p, body, body_size(body)) for p in self.peers]
            return effects
        for p in self.peers:
            missing = self.values - self.peer_has[p]
            if missing:
                body = {"type": "gossip", "messages": tuple(sorted(missing))}
                effects.append(Send(p, body, body_size(body)))
        return effects


def broadcast_plan(rng: np.random.Generator, names: list[str],
                   duration_ns: int) -> list[PlannedOp]:
    """Broadcasts of 0, 1, 2, ... (distinct by construction) with reads mixed in."""
    counter = iter(range(1 << 62))

    def draw(rng: np.random.Generator, i: int) -> tuple[str, Any]:
        if rng.random() < READ_FRACTION:
            return "read", None
        return "broadcast", next(counter)

    return exponential_plan(rng, names, duration_ns, draw)


def check_broadcast(ops: Sequence[Op], nodes: Sequence[str]) -> dict[str, Any]:
    """Maelstrom's set checker over a client history.

    * **lost**: acknowledged, yet missing from some node's final read (invalid);
    * **unexpected**: read somewhere but never broadcast (invalid);
    * **stale**: acknowledged and in every final read, but missing from some read that
      was invoked after the acknowledgement: visible only after a delay (allowed for a
      gossip protocol; counted, with the worst lag from acknowledgement to that read);
    * a node whose final read never came back makes the run invalid too.

    Indeterminate broadcasts (no acknowledgement) may be present or not.
    """
    attempted: set[int] = set()
    acked: dict[int, int] = {}
    reads: list[Op] = []
    final: dict[str, set[int]] = {}
    for op in ops:
        if op.f == "broadcast":
            attempted.add(op.arg)
            if op.complete_ns is not None and op.arg not in acked:
                acked[op.arg] = op.complete_ns
        elif op.f == "read" and op.result is not None:
            reads.append(op)
            if op.final:
                final[op.node] = set(op.result["messages"])
    missing_final = [n for n in nodes if n not in final]
    lost_on = {n: sorted(v for v in acked if v not in final[n]) for n in nodes if n in final}
    lost_on = {n: vs for n, vs in lost_on.items() if vs}
    lost = sorted({v for vs in lost_on.values() for v in vs})
    seen: set[int] = set()
    stale_lag: dict[int, int] = {}
    for op in reads:
        got = set(op.result["messages"])  # type: ignore[index]
        seen |= got
        for v, t in acked.items():
            if op.invoke_ns > t and v not in got:
                stale_lag[v] = max(stale_lag.get(v, 0), op.invoke_ns - t)
    lost_set = set(lost)
    stale = sorted(v for v in stale_lag if v not in lost_set)
    unexpected = sorted(seen - attempted)
    return {
        "valid": not lost and not unexpected and not missing_final,
        "attempted": len(attempted),
        "acknowledged": len(acked),
        "indeterminate": len(attempted) - len(acked),
        "reads": len(reads),
        "lost_count": len(lost),
        "lost": lost,
        "lost_on": lost_on,
        "stale_count": len(stale),
        "stale": stale,
        "max_stale_ns": max((stale_lag[v] for v in stale), default=0),
        "unexpected_count": len(unexpected),
        "unexpected": unexpected,
        "missing_final_reads": missing_final,
    }


BROADCAST = Example(BroadcastNode, broadcast_plan, check_broadcast)
simulate_broadcast = BROADCAST.simulate
run_broadcast = BROADCAST.run

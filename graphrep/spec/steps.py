"""The steps of a specification run: the :class:`Step` data type, the vocabulary of step
kinds (:data:`STEP_KINDS`) and what each kind does to a world (:class:`StepActions`).

A step is plain data, such as ``Step("insert", shard=0, replica=1, concern="majority",
count=2)`` (two inserts sent to the shard's second replica): the stateful machines of
:mod:`graphrep.spec.machine` let Hypothesis choose steps, the fuzzer draws them from a
seed, and :func:`graphrep.spec.world.replay` runs a list of them again.

:class:`StepActions` holds one handler per kind, bound to one world; its ``table`` maps
each kind to its handler, and :meth:`graphrep.spec.world.SpecWorld.act` runs a step by
looking its kind up there. A handler only acts (sends requests, injects faults); the
world then lets virtual time pass and checks the invariants.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from graphrep.errors import InvalidArgument
from graphrep.protocol.replica import LEADER
from graphrep.sansio import MS
from graphrep.spec.client import CLIENT

if TYPE_CHECKING:
    from graphrep.spec.world import SpecWorld

__all__ = ["STEP_KINDS", "Step", "StepActions"]

STEP_KINDS = ("insert", "delete", "search", "partition", "one_way", "region_split",
              "isolate_leader", "split_brain", "heal", "crash", "restart", "kill_leader", "drop",
              "duplicate", "delay", "hold_message", "hold", "release", "advance",
              "anti_entropy", "corrupt")


class Step:
    """One action on the world, as data: ``Step(kind, **args)``.

    Prints as a readable call (``insert(concern='majority', replica=1, shard=0)``) and
    round-trips through JSON (:meth:`to_json` / :meth:`from_json`), so a failing
    schedule can be printed, saved and replayed.
    """

    __slots__ = ("args", "kind")

    def __init__(self, kind: str, **args: Any) -> None:
        if kind not in STEP_KINDS:
            raise InvalidArgument(f"unknown step {kind!r}; choose from {STEP_KINDS}")
        self.kind = kind
        self.args = dict(sorted(args.items()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.args.items())
        return f"{self.kind}({inner})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Step) and (self.kind, self.args) == (other.kind, other.args)

    def __hash__(self) -> int:
        return hash((self.kind, json.dumps(self.args, sort_keys=True)))

    def to_json(self) -> list:
        """``[kind, {args}]``."""
        return [self.kind, self.args]

    @classmethod
    def from_json(cls, data: Any) -> Step:
        """The step of a :meth:`to_json` value (lists become tuples again)."""
        if not (isinstance(data, list | tuple) and len(data) == 2
                and isinstance(data[1], dict)):
            raise InvalidArgument(f"a step is [kind, {{args}}], got {data!r}")
        args = {k: _untuple(v) for k, v in data[1].items()}
        return cls(data[0], **args)


def _untuple(v: Any) -> Any:
    """JSON turns tuples into lists; steps use tuples for groups."""
    if isinstance(v, list):
        return tuple(_untuple(x) for x in v)
    return v


class StepActions:
    """What every step kind does to ``world``: one method per kind, named after it, and
    ``table``, the kind -> handler map the world dispatches through.

    Requests go out through the world's client (:class:`~graphrep.spec.client.SpecClient`);
    faults go to the simulator. A step that names something absent (no leader, no
    message in flight, a replica that is down) does nothing.
    """

    def __init__(self, world: SpecWorld) -> None:
        self.world = world
        self.table: dict[str, Callable[..., None]] = {
            # the workload
            "insert": self.insert,
            "delete": self.delete,
            "search": self.search,
            # partitions
            "partition": self.partition,
            "one_way": self.one_way,
            "region_split": self.region_split,
            "isolate_leader": self.isolate_leader,
            "split_brain": self.split_brain,
            "heal": self.heal,
            # processes
            "crash": self.crash,
            "restart": self.restart,
            "kill_leader": self.kill_leader,
            # messages and links
            "drop": self.drop,
            "duplicate": self.duplicate,
            "delay": self.delay,
            "hold_message": self.hold_message,
            "hold": self.hold,
            "release": self.release,
            # time, repair and damage
            "advance": self.advance,
            "anti_entropy": self.anti_entropy,
            "corrupt": self.corrupt,
        }

    # ------------------------------------------------------------------ the workload

    def insert(self, shard: int, replica: int, concern: str, count: int = 1,
               read: int = -1) -> None:
        """``count`` inserts of new ids, sent back to back. ``read`` >= 0: as each is
        acknowledged, the client searches for its vector at the shard's ``read``-th
        replica with the new session token (read-your-writes, exercised where it is
        hardest: right after the write, at a replica that may lag)."""
        for _ in range(count):
            self.world.client.insert(shard, replica, concern, read)

    def delete(self, shard: int, replica: int, concern: str, pick: int) -> None:
        """Delete the ``pick``-th id inserted into the shard (modulo their number)."""
        self.world.client.delete(shard, replica, concern, pick)

    def search(self, shard: int, replica: int, pick: int) -> None:
        """Search for the ``pick``-th query at the shard's ``replica``-th replica."""
        w = self.world
        w.client.search(shard, replica, w.queries[pick % len(w.queries)])

    # ------------------------------------------------------------------ partitions

    def partition(self, groups: tuple[tuple[str, ...], ...]) -> None:
        self.world.sim.partition([list(g) for g in groups])

    def one_way(self, sources: tuple[str, ...], destinations: tuple[str, ...]) -> None:
        self.world.sim.partition_one_way(list(sources), list(destinations))

    def region_split(self) -> None:
        regions = sorted(set(self.world.regions.values()))
        self.world.sim.partition_regions([[r] for r in regions])

    def isolate_leader(self, shard: int) -> None:
        """Cut the shard's leader off from every other node (the client included)."""
        leader = self.world.leader_of(shard)
        if leader is not None:
            sim = self.world.sim
            others = [n for n in sim.nodes if n != leader and n != CLIENT]
            sim.partition([[leader], others])

    def split_brain(self, shard: int, count: int) -> None:
        """Jepsen's classic: cut the shard's leader off from every other node (the client
        still reaches it) and write to it at ``one``; let the others elect a leader and
        write there at ``majority``; heal. The deposed leader's writes must give way."""
        w = self.world
        old = w.leader_of(shard)
        if old is None:
            return
        replicas = w.placement[shard].replicas
        self.isolate_leader(shard)
        self.insert(shard, replicas.index(old), "one", count)
        w.sim.run_until(w.sim.now + 400 * MS)
        new = w.leader_of(shard)
        if new is not None and new != old:
            self.insert(shard, replicas.index(new), "majority", count)
            w.sim.run_until(w.sim.now + 20 * MS)
        w.sim.heal()

    def heal(self) -> None:
        self.world.sim.heal()

    # ------------------------------------------------------------------ processes

    def crash(self, node: str) -> None:
        self.world.sim.crash(node)

    def restart(self, node: str) -> None:
        self.world.sim.restart(node)

    def kill_leader(self, shard: int) -> None:
        leader = self.world.leader_of(shard)
        if leader is not None:
            self.world.sim.crash(leader)

    # ------------------------------------------------------------------ messages and links

    def _pick_message(self, pick: int) -> int | None:
        msgs = self.world.sim.messages_in_flight()
        return msgs[pick % len(msgs)].key if msgs else None

    def drop(self, pick: int) -> None:
        key = self._pick_message(pick)
        if key is not None:
            self.world.sim.drop_message(key)

    def duplicate(self, pick: int, ms: int) -> None:
        key = self._pick_message(pick)
        if key is not None:
            self.world.sim.duplicate_message(key, ms * MS)

    def delay(self, pick: int, ms: int) -> None:
        key = self._pick_message(pick)
        if key is not None:
            self.world.sim.delay_message(key, ms * MS)

    def hold_message(self, pick: int) -> None:
        """Hold the link of one message in flight: it and what follows on that link wait
        until the link is released (or the end-of-run heal)."""
        msgs = self.world.sim.messages_in_flight()
        if msgs:
            m = msgs[pick % len(msgs)]
            self.world.sim.hold(m.src, m.dst)

    def hold(self, src: str, dst: str) -> None:
        self.world.sim.hold(src, dst)

    def release(self, src: str, dst: str) -> None:
        self.world.sim.release(src, dst)

    # ------------------------------------------------------------------ time, repair, damage

    def advance(self, ms: int) -> None:
        """Nothing: the world lets ``ms`` pass after the step (see ``SpecWorld.act``)."""

    def anti_entropy(self, shard: int) -> None:
        """Fire the anti-entropy timer of the shard's leader now."""
        leader = self.world.leader_of(shard)
        if leader is not None:
            self.world.sim.set_timer(leader, (shard, "anti_entropy"))

    def corrupt(self, shard: int, node: str, pick: int) -> None:
        """Change one neighbour of one record of a follower's graph behind the protocol's
        back (a bit flip, a bad disk): the graph stays valid, only different. A no-op for
        a policy that does not claim to repair damage."""
        w = self.world
        r = w.replica(node, shard)
        if r is None or r.role == LEADER or not w.policy.repairs_damage:
            return
        ids = r.index.ids()
        if len(ids) < 3:
            return
        victim = int(ids[pick % len(ids)])
        records = r.index.export_records([victim])
        mine = set(records.neighbours.tolist())
        spare = [int(i) for i in ids if int(i) != victim and int(i) not in mine]
        if not spare or not records.neighbours.size:
            return
        nbrs = records.neighbours.copy()
        nbrs[pick % nbrs.size] = spare[pick % len(spare)]
        nbrs.sort()
        r.index.overwrite_records(replace(records, neighbours=nbrs))
        r.tree = None

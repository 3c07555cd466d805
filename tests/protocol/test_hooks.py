"""Measurement hooks: entered around the right work, never nested, and changing nothing."""

from __future__ import annotations

from collections import Counter
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from graphrep.protocol import ReplicaConfig, ReplicaHooks
from graphrep.protocol.messages import ClientWrite, encode
from graphrep.protocol.replica import LEADER, Replica
from graphrep.sansio import MS, Send

CFG = ReplicaConfig(replicas=("a", "b", "c"), dim=4, R=8, L=16)


class _Enter(AbstractContextManager):
    def __init__(self, hooks: Recording, kind: str) -> None:
        self.hooks, self.kind = hooks, kind

    def __enter__(self) -> None:
        h = self.hooks
        h.entered[self.kind] += 1
        h.depth[self.kind] += 1
        assert h.depth[self.kind] == 1, f"{self.kind} entered inside itself"
        if self.kind != "callback" and h.built:
            assert h.depth["callback"] == 1, f"{self.kind} outside a callback"

    def __exit__(self, *exc: Any) -> None:
        self.hooks.depth[self.kind] -= 1


class Recording(ReplicaHooks):
    """Counts what is entered, and fails on nesting."""

    def __init__(self) -> None:
        self.entered: Counter[str] = Counter()
        self.depth: Counter[str] = Counter()
        self.built = False

    def callback(self) -> _Enter:
        return _Enter(self, "callback")

    def op(self) -> _Enter:
        return _Enter(self, "op")

    def apply(self) -> _Enter:
        return _Enter(self, "apply")


def run(hooks: dict[str, Recording] | None, writes: int = 6) -> list:
    """Three replicas elect a leader and take ``writes`` inserts; every effect, in
    order."""
    nodes: dict[str, Replica] = {}
    for n in CFG.replicas:
        h = hooks[n] if hooks else None
        nodes[n] = Replica(n, {}, CFG, np.random.default_rng(0), hooks=h)
        if h:
            h.built = True
    trail: list = []

    def pump(src: str, out: list, now: int) -> None:
        trail.extend(out)
        queue = [(src, e) for e in out if type(e) is Send]
        while queue:
            s, e = queue.pop(0)
            if e.to in nodes:
                got = nodes[e.to].on_message(now, s, e.payload, e.size)
                trail.extend(got)
                queue += [(e.to, x) for x in got if type(x) is Send]

    for n, r in nodes.items():
        pump(n, r.on_start(0), 0)
    pump("a", nodes["a"].on_timer(400 * MS, "tick"), 400 * MS)
    assert nodes["a"].role == LEADER
    rng = np.random.default_rng(1)
    for i in range(writes):
        msg = ClientWrite(0, i, "insert", i, rng.random(4, dtype=np.float32).tobytes(),
                          "majority")
        pump("a", nodes["a"].on_message(401 * MS, "client", encode(msg), 0), 401 * MS)
    for n, r in nodes.items():
        pump(n, r.on_timer(410 * MS, "tick"), 410 * MS)
    return trail


def test_hooks_see_ops_on_the_leader_and_applies_on_the_followers():
    hooks = {n: Recording() for n in CFG.replicas}
    run(hooks)
    assert hooks["a"].entered["op"] == 6
    assert hooks["b"].entered["op"] == hooks["c"].entered["op"] == 0
    assert hooks["b"].entered["apply"] > 0 and hooks["c"].entered["apply"] > 0
    assert all(h.entered["callback"] > 0 and not +h.depth for h in hooks.values())


def test_measuring_changes_nothing():
    assert run({n: Recording() for n in CFG.replicas}) == run(None)


def test_the_default_hooks_do_nothing():
    h = ReplicaHooks()
    for cm in (h.callback(), h.op(), h.apply()):
        with cm:
            pass

"""Fault schedules as plain data: validated, applied to a simulation, or drawn from a seed.

A schedule is a list of :class:`Fault` values, not code, so Hypothesis can generate and
shrink it (see :mod:`graphrep.sim.strategies`) and a failing one can be printed and
pasted into a regression test. Applying a schedule only registers each fault with
``Simulation.at``; the engine does the rest and traces it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from graphrep.errors import InvalidSchedule

__all__ = ["FAULT_KINDS", "Fault", "apply_schedule", "draw_schedule", "validate_schedule"]

FaultKind = Literal["crash", "restart", "pause", "resume", "partition", "partition_one_way",
                    "partition_regions", "heal", "hold", "release", "clock", "loss",
                    "duplicate", "reorder"]
FAULT_KINDS: tuple[str, ...] = ("crash", "restart", "pause", "resume", "partition",
                                "partition_one_way", "partition_regions", "heal", "hold",
                                "release", "clock", "loss", "duplicate", "reorder")
_NODE_KINDS = ("crash", "restart", "pause", "resume", "clock", "hold", "release")
_PROBABILITY_KINDS = ("loss", "duplicate", "reorder")


@dataclass(frozen=True, slots=True)
class Fault:
    """One timed fault.

    - ``crash``/``restart``/``pause``/``resume``: ``node`` is the target.
    - ``partition``: ``groups`` are the sides (node names); ``partition_one_way``:
      exactly (sources, destinations); ``partition_regions``: sides of region names.
    - ``hold``/``release``: the link ``node -> peer``.
    - ``clock``: ``node``'s clock reads ``now + offset_ns + now * drift_ppm / 1e6``.
    - ``loss``/``duplicate``/``reorder``: ``p`` is the new probability.
    - ``heal`` removes every partition (held links stay held until released).
    """

    time_ns: int
    kind: FaultKind
    node: str = ""
    groups: tuple[tuple[str, ...], ...] = ()
    p: float = 0.0
    peer: str = ""
    offset_ns: int = 0
    drift_ppm: int = 0


def validate_schedule(schedule: Sequence[Fault], nodes: Sequence[str], seed: int,
                      regions: Sequence[str] | None = None) -> None:
    """Raise :class:`InvalidSchedule` (naming the fault, its time and the seed) on bad data.

    ``regions`` are the regions in use; without them a region partition is not checked.
    """
    known = set(nodes)
    for i, f in enumerate(schedule):
        def bad(detail: str, f: Fault = f, i: int = i) -> InvalidSchedule:
            t = f.time_ns if isinstance(f.time_ns, int) else -1
            return InvalidSchedule(detail, event=f"schedule[{i}] = {f!r}", time_ns=t, seed=seed)

        if not isinstance(f, Fault):
            raise bad(f"not a Fault: {type(f).__name__}")
        if not isinstance(f.time_ns, int) or isinstance(f.time_ns, bool) or f.time_ns < 0:
            raise bad(f"time must be an int >= 0, got {f.time_ns!r}")
        if f.kind not in FAULT_KINDS:
            raise bad(f"unknown fault kind {f.kind!r}")
        if f.kind in _NODE_KINDS and f.node not in known:
            raise bad(f"unknown node {f.node!r}")
        if f.kind in ("hold", "release") and (f.peer not in known or f.peer == f.node):
            raise bad(f"unknown or same peer {f.peer!r} for the link from {f.node!r}")
        if f.kind == "clock" and not (
                isinstance(f.offset_ns, int) and isinstance(f.drift_ppm, int)
                and f.drift_ppm > -1_000_000):
            raise bad(f"clock needs int offset_ns and int drift_ppm > -1e6, got "
                      f"{f.offset_ns!r}, {f.drift_ppm!r}")
        if f.kind == "partition_regions" and regions is not None:
            for g in f.groups:
                for r in g:
                    if r not in regions:
                        raise bad(f"unknown region {r!r}")
        if f.kind in ("partition", "partition_one_way"):
            if f.kind == "partition_one_way" and len(f.groups) != 2:
                raise bad("a one-way partition needs exactly (sources, destinations)")
            for g in f.groups:
                for n in g:
                    if n not in known:
                        raise bad(f"unknown node {n!r}")
        if f.kind in _PROBABILITY_KINDS and not (
                isinstance(f.p, int | float) and 0.0 <= f.p <= 1.0):
            raise bad(f"probability must be in [0, 1], got {f.p!r}")


def apply_schedule(sim, schedule: Sequence[Fault]) -> None:
    """Validate ``schedule`` against ``sim``'s nodes and register every fault with it."""
    validate_schedule(schedule, sim.nodes, sim.seed,
                      sorted({sim.region(n) for n in sim.nodes}))
    for f in schedule:
        if f.time_ns < sim.now:
            raise InvalidSchedule(f"fault at {f.time_ns} ns is in the past", event=repr(f),
                                  time_ns=sim.now, seed=sim.seed)
        sim.at(f.time_ns, _action(f))


def _action(f: Fault):
    if f.kind in ("crash", "restart", "pause", "resume"):
        return lambda sim: getattr(sim, f.kind)(f.node)
    if f.kind in ("hold", "release"):
        return lambda sim: getattr(sim, f.kind)(f.node, f.peer)
    if f.kind == "clock":
        return lambda sim: sim.set_clock(f.node, f.offset_ns, f.drift_ppm)
    if f.kind == "partition_regions":
        return lambda sim: sim.partition_regions([list(g) for g in f.groups])
    if f.kind == "partition":
        return lambda sim: sim.partition([list(g) for g in f.groups])
    if f.kind == "partition_one_way":
        return lambda sim: sim.partition_one_way(list(f.groups[0]), list(f.groups[1]))
    if f.kind == "heal":
        return lambda sim: sim.heal()
    if f.kind == "loss":
        return lambda sim: sim.set_network_faults(loss=f.p)
    if f.kind == "reorder":
        return lambda sim: sim.set_network_faults(reorder=f.p)
    return lambda sim: sim.set_network_faults(duplicate=f.p)


def draw_schedule(rng: np.random.Generator, nodes: Sequence[str], duration_ns: int, *,
                  crash_rate: float = 0.0, pause_rate: float = 0.0,
                  partition_rate: float = 0.0, hold_rate: float = 0.0,
                  mean_fault_ns: int = 100_000_000) -> list[Fault]:
    """A random schedule: each rate is faults per virtual second; every fault is undone
    (restart, resume, heal, release) after an exponential duration of mean
    ``mean_fault_ns``. A hold holds one random directed link and releases it later.

    Pass a stream of its own (``sim.rng("nemesis")``) so that the schedule does not
    depend on any other component's draws.
    """
    for name, rate in (("crash_rate", crash_rate), ("pause_rate", pause_rate),
                       ("partition_rate", partition_rate), ("hold_rate", hold_rate)):
        if not (math.isfinite(rate) and rate >= 0):
            raise InvalidSchedule(f"{name} must be finite and >= 0, got {rate!r}",
                                  event="draw_schedule", time_ns=0, seed=-1)
    names = list(nodes)
    seconds = duration_ns / 1e9
    out: list[Fault] = []
    for kind, undo, rate in (("crash", "restart", crash_rate), ("pause", "resume", pause_rate),
                             ("partition", "heal", partition_rate),
                             ("hold", "release", hold_rate)):
        for _ in range(int(rng.poisson(rate * seconds))):
            start = int(rng.integers(0, max(duration_ns, 1)))
            end = start + int(rng.exponential(mean_fault_ns)) + 1
            if kind == "partition":
                side = rng.random(len(names)) < 0.5
                a = tuple(n for n, s in zip(names, side, strict=True) if s)
                b = tuple(n for n, s in zip(names, side, strict=True) if not s)
                out.append(Fault(start, "partition", groups=(a, b)))
                out.append(Fault(end, "heal"))
            elif kind == "hold":
                i, j = (int(x) for x in rng.choice(len(names), 2, replace=False))
                out.append(Fault(start, "hold", node=names[i], peer=names[j]))
                out.append(Fault(end, "release", node=names[i], peer=names[j]))
            else:
                node = names[int(rng.integers(0, len(names)))]
                out.append(Fault(start, kind, node=node))  # type: ignore[arg-type]
                out.append(Fault(end, undo, node=node))  # type: ignore[arg-type]
    out.sort(key=lambda f: f.time_ns)  # stable: equal times keep draw order
    return out

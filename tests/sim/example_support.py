"""What the example-protocol tests share: short runs, schedules on a millisecond grid,
``find``, and history entries written by hand.

Why a grid: Hypothesis draws an integer from a wide range with a strong bias towards
small magnitudes, so fault times drawn in nanoseconds over a 300 ms run land almost all
in its first millisecond, before the workload has done anything (measured: about 100
schedules with a crash passed before one hit a planted bug). Drawn in milliseconds and
scaled, faults spread over the run, a planted bug is found within a few dozen examples,
and a shrunk schedule reads ``Fault(7 * MS, "crash", node="n1")``.

A shrunk schedule is reproducible under the derandomized ``ci`` profile, but its exact
times may change with the set of test modules collected: Hypothesis also draws literal
constants found in the project modules loaded at the time. So the tests assert its shape
(how many faults, which kinds), and the pasted regressions stand on their own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from hypothesis import Phase, find, settings
from hypothesis import strategies as st

from graphrep.sansio import MS
from graphrep.sim.examples.harness import Example, Op, fault_to_json
from graphrep.sim.nemesis import Fault
from graphrep.sim.strategies import schedules

NODES = ["n0", "n1", "n2"]
DURATION_MS = 300
SETTLE_NS = 200 * MS

# the classic nemesis: crashes, pauses, partitions, loss and duplication
CLASSIC = ("crash", "restart", "pause", "resume", "partition", "partition_one_way", "heal",
           "loss", "duplicate")


def short_run(example: Example, schedule: Sequence[Fault], *, bug: str | None = None,
              seed: int = 1, trace: bool = False) -> dict:
    """The summary of a run of ``example`` on :data:`NODES` for ``DURATION_MS`` under
    ``schedule`` (untraced unless ``trace``)."""
    return example.run(len(NODES), seed, schedule=schedule, bug=bug,
                       duration_ns=DURATION_MS * MS, settle_ns=SETTLE_NS, trace=trace)


def op(i: int, f: str, node: str, arg: object, invoke: int, complete: int | None = None,
       result: dict | None = None, final: bool = False) -> Op:
    """A client history entry, as a checker sees it."""
    return Op(i, f, node, arg, invoke, final=final, complete_ns=complete, result=result)


def _at(f: Fault, time_ns: int) -> Fault:
    """``f`` at another time (a dataclass today; a NamedTuple would do as well)."""
    if hasattr(f, "_replace"):
        return f._replace(time_ns=time_ns)
    return dataclasses.replace(f, time_ns=time_ns)


def ms_schedules(nodes: Sequence[str], max_ms: int, **kwargs) -> st.SearchStrategy[list[Fault]]:
    """:func:`graphrep.sim.strategies.schedules` drawn in ms, times scaled to ns."""
    return schedules(nodes, max_ms, **kwargs).map(
        lambda fs: [_at(f, f.time_ns * MS) for f in fs])


def shrunk_failure(example: Example, bug: str) -> list[Fault]:
    """The shrunk classic-fault schedule (at most 8 faults) on which Hypothesis finds
    ``example`` running ``bug`` invalid in a :func:`short_run`."""
    return minimal_failure(ms_schedules(NODES, DURATION_MS, max_faults=8, kinds=CLASSIC),
                           lambda s: not short_run(example, s, bug=bug)["valid"])


def minimal_failure(strategy: st.SearchStrategy[list[Fault]],
                    fails: Callable[[list[Fault]], bool], max_examples: int = 300) -> list[Fault]:
    """The shrunk schedule Hypothesis finds for ``fails`` (``NoSuchExample`` if none).

    Only the generate and shrink phases run: the explain phase traces every example
    (several times slower) and keeps generating after the first failure.
    """
    return find(strategy, fails, settings=settings(
        settings.default, max_examples=max_examples, database=None, deadline=None,
        phases=[Phase.generate, Phase.shrink]))


def show(schedule: Sequence[Fault]) -> str:
    """A schedule as code to paste into a regression test."""
    parts = []
    for f in schedule:
        args = [f"{f.time_ns // MS} * MS" if f.time_ns % MS == 0 else str(f.time_ns),
                repr(f.kind)]
        for name, value in fault_to_json(f).items():
            if name == "groups":
                value = tuple(tuple(g) for g in value)
            if name not in ("time_ns", "kind"):
                args.append(f"{name}={value!r}")
        parts.append(f"Fault({', '.join(args)})")
    return "[" + ", ".join(parts) + "]"

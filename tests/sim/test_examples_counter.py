"""The G-counter example: its planted bugs found and shrunk by Hypothesis, and its checker
right on hand-made histories (test_examples_harness.py runs both examples under generated
faults and checks that they are reproducible)."""

from __future__ import annotations

from functools import partial

from graphrep.sim.examples.counter import COUNTER, check_counter
from graphrep.sim.nemesis import Fault

from .example_support import MS, op, short_run, show, shrunk_failure

run = partial(short_run, COUNTER)


def test_loss_leaves_adds_uncertain_and_the_bounds_matter():
    lossy = COUNTER.run(4, 3, nemesis="loss", duration_ns=400 * MS, trace=False)["checker"]
    assert lossy["valid"] and lossy["uncertain"] > 0 and lossy["lower"] < lossy["upper"]


# ------------------------------------------------------------------ planted bugs

# What test_hypothesis_finds_and_shrinks_* found under the ci profile (this file run
# alone), pasted back as regressions: the broken protocol fails on it, the correct one
# does not. See example_support for why the shrunk times can differ in a larger run.
MEMORY_ONLY_MINIMAL = [Fault(256 * MS, "crash", node="n0")]


def test_hypothesis_finds_and_shrinks_merge_sum():
    minimal = shrunk_failure(COUNTER, "merge_sum")
    print("merge_sum, minimal schedule:", show(minimal))
    assert minimal == []  # it needs no fault at all: gossip alone counts twice


def test_hypothesis_finds_and_shrinks_memory_only():
    minimal = shrunk_failure(COUNTER, "memory_only")
    print("memory_only, minimal schedule:", show(minimal))
    assert 1 <= len(minimal) <= 2, show(minimal)
    assert any(f.kind == "crash" for f in minimal), show(minimal)  # nothing else forgets


def test_minimal_schedules_fail_only_the_broken_protocols():
    broken = run(MEMORY_ONLY_MINIMAL, bug="memory_only")["checker"]
    assert not broken["valid"] and broken["out_of_bounds"], broken
    assert all(v < broken["lower"] for v in broken["final_reads"].values())  # adds forgotten
    assert run(MEMORY_ONLY_MINIMAL)["valid"]
    assert run([], bug="memory_only")["valid"]
    over = run([], bug="merge_sum")["checker"]
    assert all(v > over["upper"] for v in over["final_reads"].values())  # counted again


# ------------------------------------------------------------------ the checker


def test_checker_bounds_final_reads_by_definite_and_uncertain_adds():
    adds = [op(0, "add", "a", 2, 0, 5), op(1, "add", "b", 3, 0, 5),
            op(2, "add", "b", 4, 10)]  # uncertain: no acknowledgement
    finals = [op(3, "read", "a", None, 50, 55, {"value": 5}, final=True),
              op(4, "read", "b", None, 50, 55, {"value": 5}, final=True)]
    v = check_counter([*adds, *finals], ["a", "b"])
    assert v["valid"] and (v["lower"], v["upper"]) == (5, 9) and v["uncertain"] == 1

    finals[1] = op(4, "read", "b", None, 50, 55, {"value": 9}, final=True)
    v = check_counter([*adds, *finals], ["a", "b"])
    assert not v["valid"] and not v["converged"] and not v["out_of_bounds"]

    finals = [op(3 + i, "read", n, None, 50, 55, {"value": 4}, final=True)
              for i, n in enumerate("ab")]
    v = check_counter([*adds, *finals], ["a", "b"])
    assert not v["valid"] and v["out_of_bounds"] == {"a": 4, "b": 4}

    early = op(5, "read", "a", None, 1, 2, {"value": 7})  # more than was ever invoked
    v = check_counter([*adds, early, *finals[:1]], ["a", "b"])
    assert v["impossible_reads"] == [{"node": "a", "time_ns": 2, "value": 7, "upper": 5}]
    assert v["missing_final_reads"] == ["b"]

"""The gossip broadcast example: its planted bugs found and shrunk by Hypothesis, and its
checker right on hand-made histories (test_examples_harness.py runs both examples under
generated faults and checks that they are reproducible)."""

from __future__ import annotations

from functools import partial

from graphrep.sim.examples.broadcast import BROADCAST, check_broadcast
from graphrep.sim.nemesis import Fault

from .example_support import MS, op, short_run, show, shrunk_failure

run = partial(short_run, BROADCAST)


# ------------------------------------------------------------------ planted bugs

# What test_hypothesis_finds_and_shrinks_* found under the ci profile (this file run
# alone), pasted back as regressions: the broken protocol fails on it, the correct one
# does not. See example_support for why the shrunk times can differ in a larger run.
ACK_BEFORE_SYNC_MINIMAL = [Fault(7 * MS, "crash", node="n1")]
NO_RETRANSMIT_MINIMAL = [Fault(0, "crash", node="n0")]


def test_hypothesis_finds_and_shrinks_ack_before_sync():
    minimal = shrunk_failure(BROADCAST, "ack_before_sync")
    print("ack_before_sync, minimal schedule:", show(minimal))
    assert 1 <= len(minimal) <= 2, show(minimal)
    assert any(f.kind == "crash" for f in minimal), show(minimal)  # nothing else loses data


def test_hypothesis_finds_and_shrinks_no_retransmit():
    minimal = shrunk_failure(BROADCAST, "no_retransmit")
    print("no_retransmit, minimal schedule:", show(minimal))
    assert 1 <= len(minimal) <= 2, show(minimal)  # a no-fault run gets everything through


def test_minimal_schedules_fail_only_the_broken_protocols():
    for bug, schedule in (("ack_before_sync", ACK_BEFORE_SYNC_MINIMAL),
                          ("no_retransmit", NO_RETRANSMIT_MINIMAL)):
        broken = run(schedule, bug=bug)
        assert not broken["valid"] and broken["checker"]["lost_count"] > 0, bug
        assert run(schedule)["valid"], bug
    assert run([], bug="ack_before_sync")["valid"] and run([], bug="no_retransmit")["valid"]


# ------------------------------------------------------------------ the checker


def test_checker_tells_lost_stale_unexpected_and_indeterminate_apart():
    ops = [
        op(0, "broadcast", "a", 1, 0, 10),
        op(1, "broadcast", "a", 2, 0, 10),
        op(2, "broadcast", "b", 3, 0),  # indeterminate: may be anywhere or nowhere
        op(3, "read", "b", None, 20, 25, {"messages": (1,)}),  # misses 2: stale or lost
        op(4, "read", "a", None, 50, 55, {"messages": (1, 2, 3)}, final=True),
        op(5, "read", "b", None, 50, 55, {"messages": (1, 2, 9)}, final=True),
    ]
    v = check_broadcast(ops, ["a", "b"])
    assert v["valid"] is False
    assert (v["lost"], v["stale"], v["unexpected"]) == ([], [2], [9])
    assert v["max_stale_ns"] == 10 and v["indeterminate"] == 1

    ops[5] = op(5, "read", "b", None, 50, 55, {"messages": (1,)}, final=True)
    v = check_broadcast(ops, ["a", "b"])
    assert (v["lost"], v["lost_on"], v["stale"]) == ([2], {"b": [2]}, [])

    v = check_broadcast(ops[:5], ["a", "b"])
    assert v["missing_final_reads"] == ["b"] and v["valid"] is False
    v = check_broadcast([*ops[:4], ops[4], op(5, "read", "b", None, 50, 55,
                                                 {"messages": (1, 2)}, final=True)], ["a", "b"])
    assert v["valid"] is True and v["stale_count"] == 1

"""What both examples share: correctness under generated faults and every named nemesis,
the repair, the client, bad input, and reproducibility (same seed, same summary and
trace hash; in fresh processes too)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graphrep.errors import InvalidArgument, InvalidSchedule
from graphrep.sim.examples.broadcast import (
    BROADCAST,
    BroadcastNode,
    run_broadcast,
    simulate_broadcast,
)
from graphrep.sim.examples.counter import COUNTER, CounterNode, run_counter, simulate_counter
from graphrep.sim.examples.harness import (
    CLIENT,
    NEMESES,
    Example,
    draw_nemesis,
    fault_to_json,
    repair_faults,
)
from graphrep.sim.nemesis import Fault, validate_schedule
from graphrep.sim.strategies import ALL_KINDS
from graphrep.spec.profiles import scaled_examples

from .example_support import (
    CLASSIC,
    DURATION_MS,
    MS,
    NODES,
    SETTLE_NS,
    ms_schedules,
    short_run,
    show,
)

ROOT = Path(__file__).resolve().parents[2]
NAMES = ["n0", "n1", "n2", "n3"]
EXAMPLES = [pytest.param(BROADCAST, id="broadcast"), pytest.param(COUNTER, id="counter")]


def did_work(example: Example, checker: dict) -> bool:
    """Whether a run's history shows the workload happened: broadcasts sent and every
    node read, or adds made and every final read agreeing."""
    if example is BROADCAST:
        return checker["attempted"] > 0 and checker["reads"] >= len(NODES)
    return checker["adds"] > 0 and len(set(checker["final_reads"].values())) == 1


# ------------------------------------------------------------------ the correct protocols


@pytest.mark.parametrize("example", EXAMPLES)
@settings(max_examples=scaled_examples(2.0))  # 100 under ci and dev (about 1 s)
@given(seed=st.integers(0, 2**16),
       schedule=ms_schedules(NODES, DURATION_MS, max_faults=10, kinds=CLASSIC, max_p=0.9))
def test_a_correct_example_is_valid_under_classic_faults(example, seed, schedule):
    s = short_run(example, schedule, seed=seed)
    assert s["valid"], (show(schedule), s["checker"])
    assert did_work(example, s["checker"]), s["checker"]


@pytest.mark.parametrize("example", EXAMPLES)
@settings(max_examples=scaled_examples(1.0))
@given(seed=st.integers(0, 2**16),
       schedule=ms_schedules(NODES, DURATION_MS, max_faults=10, kinds=ALL_KINDS))
def test_a_correct_example_is_valid_under_every_fault_kind(example, seed, schedule):
    """Holds, clock skew and reordering too: the repair undoes them all."""
    s = short_run(example, schedule, seed=seed)
    assert s["valid"], (show(schedule), s["checker"])


@pytest.mark.parametrize("example", EXAMPLES)
def test_a_correct_example_is_valid_under_every_named_nemesis(example):
    for nemesis in NEMESES:
        s = example.run(4, 3, nemesis=nemesis, duration_ns=400 * MS, settle_ns=SETTLE_NS,
                        trace=False)
        assert s["valid"], (nemesis, s["checker"])
        assert (s["faults"] > 0) == (nemesis != "none")


@pytest.mark.parametrize("example", EXAMPLES)
def test_same_seed_same_summary_and_trace_hash(example):
    one = example.run(4, 11, nemesis="mixed", duration_ns=400 * MS)
    two = example.run(4, 11, nemesis="mixed", duration_ns=400 * MS)
    assert one == two and len(one["trace_hash"]) == 64
    other = example.run(4, 12, nemesis="mixed", duration_ns=400 * MS)
    assert other["trace_hash"] != one["trace_hash"]
    untraced = example.run(4, 11, nemesis="mixed", duration_ns=400 * MS, trace=False)
    assert untraced["trace_hash"] is None
    assert {**untraced, "trace_hash": one["trace_hash"]} == one  # tracing changes nothing


# ------------------------------------------------------------------ the harness


@pytest.mark.parametrize("name", NEMESES)
def test_named_nemeses_are_reproducible_valid_and_undo_what_they_do(name):
    def draw(seed: int) -> list[Fault]:
        return draw_nemesis(name, np.random.default_rng(seed), NAMES, 2_000 * MS)

    one = draw(1)
    assert one == draw(1)
    validate_schedule(one, NAMES, seed=1)
    assert [f.time_ns for f in one] == sorted(f.time_ns for f in one)
    kinds = [f.kind for f in one]
    assert (len(one) == 0) == (name == "none")
    assert kinds.count("crash") == kinds.count("restart")
    assert kinds.count("pause") == kinds.count("resume")
    assert kinds.count("partition") == kinds.count("heal")
    for kind in ("loss", "duplicate", "reorder"):  # every period ends with p = 0
        ps = [f.p for f in one if f.kind == kind]
        assert ps[1::2] == [0.0] * (len(ps) // 2) and all(p > 0 for p in ps[::2])
    wanted = {"partitions": {"partition"}, "crashes": {"crash"}, "loss": {"loss"},
              "mixed": {"crash", "pause", "partition", "loss"}}.get(name, set())
    assert wanted <= set(kinds)


def test_after_the_repair_every_fault_is_undone():
    schedule = [Fault(10 * MS, "crash", node="n0"), Fault(20 * MS, "pause", node="n1"),
                Fault(30 * MS, "partition", groups=(("n2",), ("n0", "n1", "n3"))),
                Fault(40 * MS, "hold", node="n3", peer="n2"),
                Fault(50 * MS, "clock", node="n2", offset_ns=5 * MS, drift_ppm=1000),
                Fault(60 * MS, "loss", p=0.3), Fault(61 * MS, "duplicate", p=0.2),
                Fault(62 * MS, "reorder", p=0.4)]
    run = simulate_broadcast(4, 2, schedule=schedule, duration_ns=100 * MS,
                             settle_ns=100 * MS)
    sim = run.sim
    assert [sim.state(n) for n in sim.nodes] == ["up"] * 5
    net = sim.network
    assert not net.blocked and not net.held
    assert (net.loss, net.duplicate, net.reorder) == (0.0, 0.0, 0.0)
    clocks = [r for r in sim.trace.records if r[1] == "clock"]
    assert clocks[-1][2] == "n2" and clocks[-1][5] == [0, 0]
    assert run.summary["valid"] and run.summary["repair_ns"] == 100 * MS
    assert repair_faults(7, ["a"], schedule) == [
        Fault(7, "heal"), Fault(7, "loss", p=0.0), Fault(7, "duplicate", p=0.0),
        Fault(7, "reorder", p=0.0), Fault(7, "release", node="n3", peer="n2"),
        Fault(7, "clock", node="n2"), Fault(7, "resume", node="a"),
        Fault(7, "restart", node="a")]


def test_late_faults_push_the_repair_back():
    run = simulate_counter(3, 1, schedule=[Fault(250 * MS, "crash", node="n1")],
                           duration_ns=100 * MS, settle_ns=50 * MS)
    assert run.summary["repair_ns"] == 250 * MS + 1
    assert run.summary["final_read_ns"] == 300 * MS + 1
    assert run.summary["virtual_duration_ns"] >= run.summary["final_read_ns"]


def test_client_history_records_what_was_acknowledged_and_what_was_not():
    run = simulate_broadcast(3, 4, schedule=[Fault(0, "crash", node="n1")],
                             duration_ns=200 * MS, settle_ns=100 * MS)
    ops = run.client.ops
    to_n1 = [op for op in ops if op.node == "n1" and not op.final]
    assert to_n1 and not any(op.ok for op in to_n1)  # n1 was down: every op timed out
    others = [op for op in ops if op.node != "n1" and not op.final]
    assert others and all(op.ok and op.complete_ns > op.invoke_ns for op in others)
    finals = [op for op in ops if op.final]
    assert [op.node for op in finals] == ["n0", "n1", "n2"] and all(op.ok for op in finals)
    assert run.client.done


def test_processes_are_rebuilt_from_their_synced_disk():
    node = BroadcastNode("a", {"values": (3, 1)}, ["a", "b"])
    assert node.values == {1, 3} and node.peers == ["b"]
    counter = CounterNode("a", {"counts": (("a", 2), ("b", 5)), "applied": (("c0", 1),)},
                          ["a", "b"])
    assert counter.value == 7 and counter.applied == {("c0", 1)}
    # a duplicated add is acknowledged, not counted twice
    effects = counter.on_message(0, "c0", {"type": "add", "msg_id": 1, "delta": 4}, 0)
    assert counter.value == 7 and [type(e).__name__ for e in effects] == ["Send"]


@pytest.mark.parametrize("kwargs,error,match", [
    ({"nodes": 1}, InvalidArgument, r"nodes must be an int in \[2, 50\], got 1"),
    ({"nodes": True}, InvalidArgument, "nodes must be an int"),
    ({"nodes": 51}, InvalidArgument, "nodes must be"),
    ({"seed": -1}, InvalidArgument, "seed must be an int >= 0"),
    ({"nemesis": "chaos"}, InvalidArgument, "unknown nemesis 'chaos'; choose one of none"),
    ({"nemesis": "mixed", "schedule": []}, InvalidArgument, "either a schedule or a nemesis"),
    ({"duration_ns": 0}, InvalidArgument, "duration_ns must be"),
    ({"settle_ns": -5}, InvalidArgument, "settle_ns must be"),
    ({"bug": "typo"}, InvalidArgument, "unknown (broadcast|counter) bug 'typo'"),
    ({"schedule": [Fault(1, "crash", node=CLIENT)]}, InvalidSchedule, "unknown node 'c0'"),
    ({"schedule": [Fault(1, "crash", node="n9")]}, InvalidSchedule, "unknown node 'n9'"),
])
@pytest.mark.parametrize("runner", [run_broadcast, run_counter])
def test_bad_input_is_refused_with_a_clear_error(runner, kwargs, error, match):
    with pytest.raises(error, match=match):
        runner(**{"nodes": 3, "duration_ns": 10 * MS, **kwargs})


def test_fault_json_keeps_only_the_fields_of_its_kind():
    assert fault_to_json(Fault(5, "crash", node="n1")) == {"time_ns": 5, "kind": "crash",
                                                           "node": "n1"}
    assert fault_to_json(Fault(5, "partition", groups=(("a",), ("b", "c")))) == {
        "time_ns": 5, "kind": "partition", "groups": [["a"], ["b", "c"]]}
    assert fault_to_json(Fault(5, "loss", p=0.25)) == {"time_ns": 5, "kind": "loss", "p": 0.25}
    assert fault_to_json(Fault(5, "hold", node="a", peer="b"))["peer"] == "b"


def test_summaries_are_the_same_in_fresh_processes_with_other_hash_seeds():
    """Sets are everywhere in the protocols; none may leak its iteration order."""
    code = ("import json; from graphrep.sim.examples.broadcast import run_broadcast; "
            "from graphrep.sim.examples.counter import run_counter; "
            "print(json.dumps([f(4, 9, nemesis='mixed', duration_ns=300_000_000) "
            "for f in (run_broadcast, run_counter)]))")
    expected = [run_broadcast(4, 9, nemesis="mixed", duration_ns=300 * MS),
                run_counter(4, 9, nemesis="mixed", duration_ns=300 * MS)]
    for hashseed in ("0", "4242"):
        env = dict(os.environ, PYTHONHASHSEED=hashseed)
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                             capture_output=True, text=True, check=True)
        assert json.loads(out.stdout) == json.loads(json.dumps(expected))

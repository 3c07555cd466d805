"""The sequence chart and fault timeline draw one element per thing in the trace.

Every drawn element has a gid (``deliver-3``, ``crash-0``...), which SVG output keeps as
the element's id, so these tests count what is in the written file itself.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest

from graphrep.errors import InvalidArgument
from graphrep.sim.examples.broadcast import simulate_broadcast
from graphrep.sim.examples.counter import simulate_counter
from graphrep.sim.nemesis import Fault
from graphrep.sim.plots import fault_intervals, fault_timeline, pair_messages, sequence_chart
from graphrep.sim.trace import Trace

from .example_support import MS

SCHEDULE = [
    Fault(15 * MS, "partition", groups=(("n0",), ("n1", "n2"))),
    Fault(20 * MS, "crash", node="n2"),
    Fault(25 * MS, "loss", p=0.4),
    Fault(26 * MS, "duplicate", p=0.5),
    Fault(30 * MS, "hold", node="n1", peer="n0"),
    Fault(35 * MS, "pause", node="n1"),
    Fault(40 * MS, "heal"),
    Fault(45 * MS, "loss", p=0.0),
    Fault(50 * MS, "restart", node="n2"),
    Fault(55 * MS, "partition_one_way", groups=(("n0",), ("n2",))),
]


@pytest.fixture(scope="module")
def run():
    # seed 4: a busy workload, and drops for each reason (loss, partition, node down)
    return simulate_broadcast(3, 4, schedule=SCHEDULE, duration_ns=70 * MS,
                              settle_ns=30 * MS)


def ids(path) -> Counter:
    """How many SVG elements have an id of each gid prefix (``deliver``, ``crash``...)."""
    found = re.findall(r'id="([a-z_]+)-[0-9a-z]+"', path.read_text())
    return Counter(found)


def test_pairing_accounts_for_every_delivery_and_drop(run):
    trace = run.sim.trace
    messages = pair_messages(trace)
    assert sum(m.delivered for m in messages) == trace.count("deliver")
    assert sum(not m.delivered for m in messages) == trace.count("drop")
    assert trace.count("duplicate") > 0 and trace.count("drop") > 0
    assert all(m.end_ns >= m.sent_ns for m in messages)
    reasons = Counter(m.reason for m in messages if not m.delivered)
    assert {"loss", "partition", "down"} <= set(reasons)
    assert all(m.end_ns == m.sent_ns for m in messages if m.reason == "loss")
    labels = {m.label for m in messages}
    assert {"broadcast", "broadcast_ok", "gossip", "gossip_ok", "read", "read_ok"} <= labels


def test_sequence_chart_draws_an_arrow_per_delivery_and_an_x_per_drop(run, tmp_path):
    trace = run.sim.trace
    path = sequence_chart(trace, run.all_nodes, tmp_path / "messages.svg", max_messages=None)
    assert path == tmp_path / "messages.svg"
    drawn = ids(path)
    assert drawn["deliver"] == trace.count("deliver") > 50
    assert drawn["drop"] == trace.count("drop") > 5
    for kind in ("crash", "restart", "pause", "resume"):
        assert drawn[kind] == trace.count(kind), kind
    assert drawn["down"] == 1 and drawn["paused"] == 1  # n2 down 20-50 ms, n1 paused 35-70


def test_sequence_chart_window_and_cap(run, tmp_path):
    trace = run.sim.trace
    path = sequence_chart(trace, run.all_nodes, tmp_path / "first.svg", max_messages=7)
    drawn = ids(path)
    assert drawn["deliver"] + drawn["drop"] == 7
    assert "first 7 of" in path.read_text()
    window = [m for m in pair_messages(trace) if 20 * MS <= m.sent_ns <= 40 * MS]
    path = sequence_chart(trace, run.all_nodes, tmp_path / "window.svg", start_ns=20 * MS,
                          end_ns=40 * MS, max_messages=None)
    drawn = ids(path)
    assert drawn["deliver"] == sum(m.delivered for m in window)
    assert drawn["drop"] == sum(not m.delivered for m in window)
    assert drawn["crash"] == 1 and drawn["restart"] == 0  # the crash at 20, the restart at 50
    # only the lifelines named are drawn, and messages between them
    path = sequence_chart(trace, ["n0", "n1"], tmp_path / "two.svg", max_messages=None)
    assert ids(path)["deliver"] == sum(
        m.delivered and {m.src, m.dst} <= {"n0", "n1"} for m in pair_messages(trace))


def test_fault_timeline_draws_every_fault_interval(run, tmp_path):
    trace = run.sim.trace
    path = fault_timeline(trace, run.all_nodes, tmp_path / "timeline.svg")
    drawn = ids(path)
    assert drawn["down"] == trace.count("crash") == 1
    assert drawn["paused"] == trace.count("pause") == 1
    assert drawn["partition"] == trace.count("partition") == 2
    assert drawn["hold"] == 1 and drawn["loss"] == 1 and drawn["duplicate"] == 1
    assert drawn["restarts"] == 1 and drawn["drops"] >= 1
    spans = {(iv.kind, iv.node, iv.start_ns, iv.end_ns) for iv in fault_intervals(trace)}
    repair = run.summary["repair_ns"]
    assert ("down", "n2", 20 * MS, 50 * MS) in spans
    assert ("paused", "n1", 35 * MS, repair) in spans
    assert ("partition", None, 15 * MS, 40 * MS) in spans
    assert ("partition", None, 55 * MS, repair) in spans
    assert ("hold", "n1", 30 * MS, repair) in spans
    assert ("loss", None, 25 * MS, 45 * MS) in spans
    assert ("duplicate", None, 26 * MS, repair) in spans


def test_outputs_are_deterministic_and_png_works(run, tmp_path):
    trace = run.sim.trace
    a = sequence_chart(trace, run.all_nodes, tmp_path / "a.svg")
    b = sequence_chart(trace, run.all_nodes, tmp_path / "b.svg")
    assert a.read_bytes() == b.read_bytes()
    png = fault_timeline(trace, run.all_nodes, tmp_path / "sub" / "t.png")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    png = sequence_chart(trace, run.all_nodes, tmp_path / "m.png")
    assert png.stat().st_size > 10_000


def test_counter_run_plots_too(tmp_path):
    run = simulate_counter(3, 2, nemesis="mixed", duration_ns=200 * MS, settle_ns=50 * MS)
    trace = run.sim.trace
    drawn = ids(sequence_chart(trace, run.all_nodes, tmp_path / "m.svg", max_messages=None))
    assert drawn["deliver"] == trace.count("deliver")
    drawn = ids(fault_timeline(trace, run.all_nodes, tmp_path / "t.svg"))
    assert drawn["down"] == trace.count("crash")


def test_empty_trace_and_bad_input(tmp_path):
    path = sequence_chart(Trace(), ["a"], tmp_path / "empty.svg")
    assert ids(path)["deliver"] == 0 and path.stat().st_size > 1000
    assert fault_timeline(Trace(), ["a"], tmp_path / "empty-t.svg").exists()
    with pytest.raises(InvalidArgument, match="distinct node names"):
        sequence_chart(Trace(), [], tmp_path / "x.svg")
    with pytest.raises(InvalidArgument, match="distinct node names"):
        fault_timeline(Trace(), ["a", "a"], tmp_path / "x.svg")
    with pytest.raises(InvalidArgument, match="max_messages"):
        sequence_chart(Trace(), ["a"], tmp_path / "x.svg", max_messages=-1)
